// Live rollout math: job counts per state and per wave, progress fractions, and errors grouped by
// reason. The pace and the time left are the engine's (`Rollout.estimate`), never worked out here:
// the same number live and after a reload.

import type { JobCounts, JobState } from '../api/types';
import { compareText } from './format';

export const TERMINAL: ReadonlySet<JobState> = new Set(['succeeded', 'failed', 'timed_out', 'skipped', 'cancelled']);
export const IN_FLIGHT: ReadonlySet<JobState> = new Set(['commanded', 'downloading', 'installing', 'rebooting', 'verifying']);
export const FAILURE: ReadonlySet<JobState> = new Set(['failed', 'timed_out']);

/** The per-job facts the live view keeps (a Map of these, keyed by job id). */
export interface LiveJob {
  id: number;
  mac: string;
  /** Wave number from 1; null for a device the plan skipped (in no wave). */
  wave: number | null;
  state: JobState;
  progress: number | null;
  error: string | null;
  /** When the job reached a terminal state (ms since epoch), else null. */
  doneAt: number | null;
  updatedAt: number;
  fromVersion: string | null;
  currentVersion: string | null;
  attempts: number;
  /** What a success rests on (`authenticated+download`, `unauthenticated+download`). */
  evidence?: string | null;
}

export function emptyCounts(): JobCounts {
  return { total: 0, queued: 0, in_flight: 0, succeeded: 0, failed: 0, timed_out: 0, skipped: 0, cancelled: 0, excluded: 0 };
}

export function addToCounts(c: JobCounts, s: JobState): void {
  c.total++;
  if (s === 'queued') c.queued++;
  else if (IN_FLIGHT.has(s)) c.in_flight++;
  else c[s as 'succeeded' | 'failed' | 'timed_out' | 'skipped' | 'cancelled']++;
}

/** Counts for the whole rollout and per wave, from the jobs. */
export function countJobs(jobs: Iterable<Pick<LiveJob, 'state' | 'wave'>>, waveCount = 0): { total: JobCounts; waves: JobCounts[] } {
  const total = emptyCounts();
  const waves: JobCounts[] = Array.from({ length: waveCount }, emptyCounts);
  for (const j of jobs) {
    addToCounts(total, j.state);
    // The plan's skips are in no wave.
    if (j.wave === null) {
      total.excluded++;
      continue;
    }
    while (waves.length < j.wave) waves.push(emptyCounts());
    addToCounts(waves[j.wave - 1], j.state);
  }
  return { total, waves };
}

/** Finished jobs (any terminal state). */
export function done(c: JobCounts): number {
  return c.succeeded + c.failed + c.timed_out + c.skipped + c.cancelled;
}

/** Shares of a progress bar, 0..1 each, summing to ≤ 1: succeeded, failed (incl. timed out), other done, in flight. */
export function barShares(c: JobCounts): { ok: number; bad: number; other: number; active: number } {
  if (!c.total) return { ok: 0, bad: 0, other: 0, active: 0 };
  return {
    ok: c.succeeded / c.total,
    bad: (c.failed + c.timed_out) / c.total,
    other: (c.skipped + c.cancelled) / c.total,
    active: c.in_flight / c.total,
  };
}

/** Whole-number percent done, never 100 until everything is done. */
export function percentDone(c: JobCounts): number {
  if (!c.total) return 0;
  const d = done(c);
  const p = Math.floor((d * 100) / c.total);
  return d < c.total ? Math.min(p, 99) : 100;
}

export interface ReasonGroup {
  /** The reason; numbers/addresses shown as … when the group's members differ in them. */
  reason: string;
  macs: string[];
}

/** The grouping key of a reason: numbers, versions, MACs and IPs blanked out. */
export function reasonKey(reason: string): string {
  return reason
    .replace(/\b[0-9a-f]{2}(:[0-9a-f]{2}){5}\b/gi, '…')
    .replace(/(?<![A-Za-z])\d+(\.\d+)*(-[0-9A-Za-z.]+)?/g, '…')
    .trim();
}

/** Groups failures by reason, largest group first; single-member groups keep their exact text. */
export function groupByReason(items: readonly { mac: string; reason: string | null | undefined }[]): ReasonGroup[] {
  const groups = new Map<string, { first: string; same: boolean; macs: string[] }>();
  for (const it of items) {
    const reason = it.reason?.trim() || 'no reason given';
    const k = reasonKey(reason);
    const g = groups.get(k);
    if (g) {
      g.macs.push(it.mac);
      if (g.first !== reason) g.same = false;
    } else groups.set(k, { first: reason, same: true, macs: [it.mac] });
  }
  return [...groups]
    .map(([k, g]) => ({ reason: g.same ? g.first : k, macs: g.macs }))
    .sort((a, b) => b.macs.length - a.macs.length || compareText(a.reason, b.reason));
}
