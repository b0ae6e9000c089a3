// Hash routes. Everything a view is asked to show lives in the URL, so every view (filtered ones
// included) can be linked to, bookmarked and reached with the back button:
//   #/                                   overview
//   #/devices?q=…&family=…&version=…&online=…&label=…   devices, filtered (no query: all)
//   #/devices/<mac>                      one device
//   #/firmware
//   #/rollouts?state=running,paused      rollouts, by state (no query: all)
//   #/rollouts/review?firmware=<id>&devices=<mac>,…&target=<expr>   ready-to-start review (see logic/review)
//   #/rollouts/new?firmware=<id>&devices=<mac>,…&target=<expr>&outdated=0&online=0   the wizard, pre-filled
//   #/rollouts/<id>                      one rollout, live
//   #/events
//   #/settings

import type { RolloutState } from '../api/types';
import { EMPTY_FILTER, type DeviceFilter, type OnlineFilter, type VersionFilter } from './devices';

export type Route =
  | { view: 'overview' }
  | { view: 'devices'; filter: DeviceFilter }
  | { view: 'device'; mac: string }
  | { view: 'firmware' }
  | { view: 'rollouts'; states: RolloutState[] }
  | { view: 'review'; firmware?: string; devices?: string[]; target?: string }
  | { view: 'wizard'; firmware?: string; devices?: string[]; target?: string; onlyOutdated?: boolean; onlyOnline?: boolean }
  | { view: 'rollout'; id: number }
  | { view: 'events' }
  | { view: 'settings' };

export const ROLLOUT_STATES: readonly RolloutState[] = ['draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled'];
/** Rollouts that are not over: what the overview's "in progress" tile counts. */
export const IN_PROGRESS: readonly RolloutState[] = ['running', 'paused'];

function list(q: URLSearchParams, key: string): string[] | undefined {
  const v = q.get(key)?.split(',').filter(Boolean);
  return v?.length ? v : undefined;
}

function flag(q: URLSearchParams, key: string): boolean | undefined {
  const v = q.get(key);
  return v === null ? undefined : v !== '0' && v !== 'false';
}

/** The devices filter a query asks for; anything it does not understand is left out. */
export function filterFromQuery(q: URLSearchParams): DeviceFilter {
  const version = q.get('version') ?? '';
  const online = q.get('online') ?? '';
  return {
    text: q.get('q') ?? '',
    family: q.get('family') ?? '',
    version: (['', 'outdated', 'current', 'unknown'].includes(version) || version.startsWith('=') ? version : '') as VersionFilter,
    online: (['', 'online', 'offline'].includes(online) ? online : '') as OnlineFilter,
    label: q.get('label') ?? '',
  };
}

function filterQuery(f: DeviceFilter): URLSearchParams {
  const q = new URLSearchParams();
  if (f.text) q.set('q', f.text);
  if (f.family) q.set('family', f.family);
  if (f.version) q.set('version', f.version);
  if (f.online) q.set('online', f.online);
  if (f.label) q.set('label', f.label);
  return q;
}

export function parseRoute(hash: string): Route {
  const h = hash.replace(/^#\/?/, '');
  const cut = h.indexOf('?');
  const pathPart = cut < 0 ? h : h.slice(0, cut);
  const q = new URLSearchParams(cut < 0 ? '' : h.slice(cut + 1));
  let parts: string[];
  try {
    parts = pathPart.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    return { view: 'overview' };
  }
  switch (parts[0]) {
    case undefined:
    case '':
    case 'overview':
      return { view: 'overview' };
    case 'devices':
      return parts[1] ? { view: 'device', mac: parts[1] } : { view: 'devices', filter: filterFromQuery(q) };
    case 'firmware':
      return { view: 'firmware' };
    case 'rollouts':
      if (parts[1] === 'new') {
        const r: Route = { view: 'wizard', firmware: q.get('firmware') ?? undefined, devices: list(q, 'devices'), target: q.get('target') ?? undefined };
        const o = flag(q, 'outdated');
        const n = flag(q, 'online');
        if (o !== undefined) r.onlyOutdated = o;
        if (n !== undefined) r.onlyOnline = n;
        return r;
      }
      if (parts[1] === 'review') return { view: 'review', firmware: q.get('firmware') ?? undefined, devices: list(q, 'devices'), target: q.get('target') ?? undefined };
      if (parts[1] && /^\d+$/.test(parts[1])) return { view: 'rollout', id: Number(parts[1]) };
      return { view: 'rollouts', states: (list(q, 'state') ?? []).filter((s): s is RolloutState => (ROLLOUT_STATES as string[]).includes(s)) };
    case 'events':
      return { view: 'events' };
    case 'settings':
      return { view: 'settings' };
    default:
      return { view: 'overview' };
  }
}

function withQuery(path: string, q: URLSearchParams): string {
  // MACs, commas and `=` read better unescaped, and stay unambiguous in a query value.
  const s = q.toString().replace(/%3A/gi, ':').replace(/%2C/gi, ',').replace(/%3D/gi, '=');
  return s ? `${path}?${s}` : path;
}

export function href(r: Route): string {
  switch (r.view) {
    case 'overview':
      return '#/';
    case 'devices':
      return withQuery('#/devices', filterQuery(r.filter));
    case 'device':
      return `#/devices/${encodeURIComponent(r.mac)}`;
    case 'rollouts': {
      const q = new URLSearchParams();
      if (r.states.length) q.set('state', r.states.join(','));
      return withQuery('#/rollouts', q);
    }
    case 'rollout':
      return `#/rollouts/${r.id}`;
    case 'review':
    case 'wizard': {
      const q = new URLSearchParams();
      if (r.firmware) q.set('firmware', r.firmware);
      if (r.devices?.length) q.set('devices', r.devices.join(','));
      if (r.target) q.set('target', r.target);
      if (r.view === 'wizard') {
        if (r.onlyOutdated !== undefined) q.set('outdated', r.onlyOutdated ? '1' : '0');
        if (r.onlyOnline !== undefined) q.set('online', r.onlyOnline ? '1' : '0');
      }
      return withQuery(r.view === 'wizard' ? '#/rollouts/new' : '#/rollouts/review', q);
    }
    default:
      return `#/${r.view}`;
  }
}

/** All devices, or those matching `p` (a link to the devices view, filtered). */
export function devicesHref(p: Partial<DeviceFilter> = {}): string {
  return href({ view: 'devices', filter: { ...EMPTY_FILTER, ...p } });
}

/** The top-level section a route belongs to (for the nav highlight). */
export function section(r: Route): string {
  if (r.view === 'device') return 'devices';
  if (r.view === 'wizard' || r.view === 'rollout' || r.view === 'review') return 'rollouts';
  return r.view;
}
