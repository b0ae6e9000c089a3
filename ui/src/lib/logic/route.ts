// Hash routes: `#/`, `#/devices`, `#/devices/<mac>`, `#/firmware`, `#/rollouts`, `#/rollouts/new`,
// `#/rollouts/<id>`, `#/events`, `#/settings`.

export type Route =
  | { view: 'overview' }
  | { view: 'devices' }
  | { view: 'device'; mac: string }
  | { view: 'firmware' }
  | { view: 'rollouts' }
  | { view: 'wizard'; firmware?: string; devices?: string[] }
  | { view: 'rollout'; id: number }
  | { view: 'events' }
  | { view: 'settings' };

export function parseRoute(hash: string): Route {
  const h = hash.replace(/^#\/?/, '');
  const [pathPart, query = ''] = h.split('?');
  const parts = pathPart.split('/').filter(Boolean).map(decodeURIComponent);
  const q = new URLSearchParams(query);
  switch (parts[0]) {
    case undefined:
    case '':
    case 'overview':
      return { view: 'overview' };
    case 'devices':
      return parts[1] ? { view: 'device', mac: parts[1] } : { view: 'devices' };
    case 'firmware':
      return { view: 'firmware' };
    case 'rollouts':
      if (parts[1] === 'new')
        return { view: 'wizard', firmware: q.get('firmware') ?? undefined, devices: q.get('devices')?.split(',').filter(Boolean) };
      if (parts[1] && /^\d+$/.test(parts[1])) return { view: 'rollout', id: Number(parts[1]) };
      return { view: 'rollouts' };
    case 'events':
      return { view: 'events' };
    case 'settings':
      return { view: 'settings' };
    default:
      return { view: 'overview' };
  }
}

export function href(r: Route): string {
  switch (r.view) {
    case 'overview':
      return '#/';
    case 'device':
      return `#/devices/${encodeURIComponent(r.mac)}`;
    case 'rollout':
      return `#/rollouts/${r.id}`;
    case 'wizard': {
      const q = new URLSearchParams();
      if (r.firmware) q.set('firmware', r.firmware);
      if (r.devices?.length) q.set('devices', r.devices.join(','));
      const s = q.toString();
      return `#/rollouts/new${s ? '?' + s : ''}`;
    }
    default:
      return `#/${r.view}`;
  }
}

/** The top-level section a route belongs to (for the nav highlight). */
export function section(r: Route): string {
  if (r.view === 'device') return 'devices';
  if (r.view === 'wizard' || r.view === 'rollout') return 'rollouts';
  return r.view;
}
