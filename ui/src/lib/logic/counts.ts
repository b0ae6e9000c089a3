// How people read a rollout's job counts: one sentence, the engine's own (`JobCounts::summary` in
// flotilla-proto), so the UI, the CLI, the reports and the events say the same thing with the
// same numbers. Nothing here counts jobs: it reads the engine's counts.

import type { JobCounts } from '../api/types';

/** Failed plus timed out: every job that counts as a failure. */
export function failures(c: JobCounts): number {
  return c.failed + c.timed_out;
}

/**
 * Jobs the plan meant to update: all but the devices it left out (`excluded`). A device a person
 * skipped during the rollout still counts: it was meant to be updated and was not.
 */
export function planned(c: JobCounts): number {
  return c.total - c.excluded;
}

/**
 * `12 of 40 succeeded · 2 failed · 3 updating · 20 queued · 1 skipped`: succeeded of planned,
 * then failed (failed + timed out), updating (in flight), queued, cancelled, skipped (by a person),
 * each left out when zero. Mirrors `JobCounts::summary` exactly (plain numbers, as the engine
 * writes them).
 */
export function summary(c: JobCounts): string {
  let out = `${c.succeeded} of ${planned(c)} succeeded`;
  const parts: [number, string][] = [
    [failures(c), 'failed'],
    [c.in_flight, 'updating'],
    [c.queued, 'queued'],
    [c.cancelled, 'cancelled'],
    [c.skipped - c.excluded, 'skipped'],
  ];
  for (const [n, what] of parts) if (n > 0) out += ` · ${n} ${what}`;
  return out;
}
