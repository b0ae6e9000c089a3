// What "Add by address" and "Scan now" say, in words a technician reads at a glance.

import type { Device, ProbeResult, ScanResult } from '../api/types';
import { ago, familyName, plural } from './format';

const SOURCE_NAME: Record<string, string> = {
  checkin: 'Check-in',
  mqtt: 'MQTT',
  mdns: 'mDNS',
  probe: 'HTTP probe',
  manual: 'Added by hand',
};

/** Each source's last report of a device, freshest first: "mDNS — 1.1.0 at 10.0.0.7, 2 min ago". */
export function sourceReports(d: Device, now = Date.now()): { source: string; text: string; left: boolean }[] {
  return [...d.seen]
    .sort((a, b) => b.last_seen.localeCompare(a.last_seen))
    .map((s) => {
      const said = [s.version, s.ip ? `at ${s.ip}` : null].filter(Boolean).join(' ');
      const when = ago(s.last_seen, now);
      const left = !s.online;
      const text = `${said ? `${said}, ` : ''}${left ? `said it left ${when}` : when}`;
      return { source: SOURCE_NAME[s.source] ?? s.source, text, left };
    });
}

/** The address to probe a device at again (vendor devices answer their HTTP API on port 80). */
export function probeAddress(d: Device): string | null {
  return d.ip && d.family !== 'native' ? d.ip : null;
}

/** One line for a probe's outcome, and whether it found a device. */
export function probeText(r: ProbeResult): { ok: boolean; text: string } {
  if (r.state === 'found' && r.device) {
    const d = r.device;
    const family = familyName(d.family, d.generation);
    const what = [family, d.model, d.version].filter(Boolean).join(' ');
    const lock = r.auth_required ? ' It protects its API with a password.' : '';
    return { ok: true, text: `${r.address}: ${what} — added as ${d.mac}.${lock}` };
  }
  const why: Record<string, string> = {
    authentication_required: 'wants a password to say what it is',
    unrecognised: 'answered, but like no device Flotilla knows',
    unreachable: 'did not answer',
    busy: 'is being probed already',
  };
  const detail = r.detail ? ` (${r.detail})` : '';
  return { ok: false, text: `${r.address} ${why[r.state] ?? r.state}${detail}.` };
}

/** One line for a scan. */
export function scanText(r: ScanResult): string {
  if (!r.subnet) {
    return r.mdns
      ? 'Asked the network again (mDNS): devices that answer appear in the list.'
      : 'mDNS discovery is off on this engine: add devices by address, or scan a subnet.';
  }
  const secs = (r.took_ms / 1000).toFixed(1);
  const parts = [
    `${plural(r.found.length, 'device')} found`,
    r.authentication_required.length ? `${r.authentication_required.length} want a password` : '',
    r.unrecognised ? `${r.unrecognised} unrecognised` : '',
  ].filter(Boolean);
  return `${r.subnet}: ${plural(r.addresses, 'address', 'addresses')} probed in ${secs} s — ${parts.join(', ')}.`;
}
