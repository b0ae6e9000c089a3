// The live rollout's device list: what each row shows (the device's name, its versions, its
// progress) and the search over exactly what is shown. Rows and search keys are computed per job
// object (a job that changes is a new object), so typing in the search stays cheap at 2,000 jobs.

import type { Device } from '../api/types';
import { deviceName } from './devices';
import { STATE_LABEL } from './format';
import { TERMINAL, type LiveJob } from './progress';

/** "1.0.0 → 2.0.0": from where to where (the version the device ended on, once it is done). */
export function jobVersions(j: Pick<LiveJob, 'state' | 'fromVersion' | 'currentVersion'>, target: string): string {
  return `${j.fromVersion ?? '?'} → ${TERMINAL.has(j.state) ? (j.currentVersion ?? '?') : target}`;
}

/**
 * How far a device got, as a percentage of its download (null: nothing to show). A device that
 * succeeded downloaded everything; one that failed shows where it stopped.
 */
export function jobProgress(j: Pick<LiveJob, 'state' | 'progress'>): number | null {
  if (j.state === 'succeeded') return 100;
  if (j.state === 'queued' || j.state === 'skipped' || j.state === 'cancelled') return null;
  return j.progress;
}

const keys = new WeakMap<LiveJob, { d: Device | undefined; target: string; key: string }>();

/** Everything a row shows, lower-case: name, device id, MAC, IP, state, versions, error. */
export function jobSearchKey(j: LiveJob, d: Device | undefined, target: string): string {
  const hit = keys.get(j);
  if (hit && hit.d === d && hit.target === target) return hit.key;
  const key = [deviceName(d, j.mac), d?.device_id, j.mac, d?.ip, STATE_LABEL[j.state], jobVersions(j, target), j.error]
    .filter(Boolean)
    .join(' ')
    .toLowerCase();
  keys.set(j, { d, target, key });
  return key;
}

/** Whether a row matches a search: every word of it occurs somewhere in what the row shows. */
export function jobMatches(j: LiveJob, d: Device | undefined, target: string, query: string): boolean {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) return true;
  const key = jobSearchKey(j, d, target);
  return words.every((w) => key.includes(w));
}
