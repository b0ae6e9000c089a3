// The live rollout's device list: what each row shows (the device's name, its versions, its
// progress) and the search over exactly what is shown. Rows and search keys are computed per job
// object (a job that changes is a new object), so typing in the search stays cheap at 2,000 jobs.

import type { Device, JobState, JobTransition } from '../api/types';
import { deviceName } from './devices';
import { STATE_LABEL } from './format';
import { TERMINAL, type LiveJob } from './progress';

/**
 * The version column: `1.0.0 → 2.0.0` only when the device reported a version after it was
 * commanded (the engine's `current_version`); `1.0.0 → not heard from since` for a device that
 * finished without reporting one (timed out and never came back); `1.0.0 → not reported yet`
 * while it updates; only `1.0.0` for a device never commanded (queued, skipped by the plan,
 * cancelled before it began).
 */
export function jobVersions(j: Pick<LiveJob, 'state' | 'fromVersion' | 'currentVersion' | 'attempts'>): string {
  const from = j.fromVersion ?? 'unknown';
  if (j.currentVersion !== null) return `${from} → ${j.currentVersion}`;
  if (j.attempts === 0 || j.state === 'queued') return from;
  return `${from} → ${TERMINAL.has(j.state) ? 'not heard from since' : 'not reported yet'}`;
}

/**
 * The engine's `current_version` unless the device has not been heard from since it rebooted: a
 * version reported before the reboot (at a check-in while it downloaded) says nothing about what
 * it runs after, so a device that rebooted and never came back reads "not heard from since",
 * never "1.0.0 → 1.0.0". Heard from again means: the engine saw it running a version
 * (`verifying`, `succeeded`) or it reported progress again (`downloading`, on a retry).
 */
export function versionSinceReboot(current: string | null, history: readonly Pick<JobTransition, 'state'>[]): string | null {
  if (current === null) return null;
  let last = -1;
  for (let i = history.length - 1; i >= 0; i--) {
    if (history[i].state === 'rebooting') {
      last = i;
      break;
    }
  }
  if (last < 0) return current;
  const heard: ReadonlySet<JobState> = new Set(['verifying', 'succeeded', 'downloading', 'installing']);
  return history.slice(last + 1).some((t) => heard.has(t.state)) ? current : null;
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

const keys = new WeakMap<LiveJob, { d: Device | undefined; key: string }>();

/** Everything a row shows, lower-case: name, device id, MAC, IP, state, versions, error. */
export function jobSearchKey(j: LiveJob, d: Device | undefined): string {
  const hit = keys.get(j);
  if (hit && hit.d === d) return hit.key;
  const key = [deviceName(d, j.mac), d?.device_id, j.mac, d?.ip, STATE_LABEL[j.state], jobVersions(j), j.error]
    .filter(Boolean)
    .join(' ')
    .toLowerCase();
  keys.set(j, { d, key });
  return key;
}

/** Whether a row matches a search: every word of it occurs somewhere in what the row shows. */
export function jobMatches(j: LiveJob, d: Device | undefined, query: string): boolean {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) return true;
  const key = jobSearchKey(j, d);
  return words.every((w) => key.includes(w));
}
