// What "Add by address" and "Scan now" say, in words a technician reads at a glance.

import type { ProbeResult, ScanResult } from '../api/types';
import { familyText } from './families';
import { plural } from './format';

/** One line for a probe's outcome, and whether it found a device. */
export function probeText(r: ProbeResult): { ok: boolean; text: string } {
  if (r.state === 'found' && r.device) {
    const d = r.device;
    const family = familyText(d.family).split(' — ')[0];
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
  if (!r.subnet) return 'Asked the network again (mDNS): devices that answer appear in the list.';
  const secs = (r.took_ms / 1000).toFixed(1);
  const parts = [
    `${plural(r.found.length, 'device')} found`,
    r.authentication_required.length ? `${r.authentication_required.length} want a password` : '',
    r.unrecognised ? `${r.unrecognised} unrecognised` : '',
  ].filter(Boolean);
  return `${r.subnet}: ${plural(r.addresses, 'address', 'addresses')} probed in ${secs} s — ${parts.join(', ')}.`;
}
