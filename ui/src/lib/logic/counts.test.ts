import { describe, expect, it } from 'vitest';
import { failures, planned, summary } from './counts';
import { emptyCounts } from './progress';
import type { JobCounts } from '../api/types';

const c = (p: Partial<JobCounts>): JobCounts => ({ ...emptyCounts(), ...p });

describe('summary: the one way counts are read (JobCounts::summary)', () => {
  it('reads succeeded of planned, then every part that is not zero, in the engine’s order', () => {
    // 42 jobs, 1 left out by the plan: 41 planned, of which 1 a person skipped.
    expect(summary(c({ total: 42, succeeded: 12, failed: 1, timed_out: 1, in_flight: 3, queued: 23, skipped: 2, excluded: 1 }))).toBe(
      '12 of 41 succeeded · 2 failed · 3 updating · 23 queued · 1 skipped',
    );
    expect(summary(c({ total: 19, succeeded: 18, failed: 1 }))).toBe('18 of 19 succeeded · 1 failed');
    expect(summary(c({ total: 5, cancelled: 3, succeeded: 2 }))).toBe('2 of 5 succeeded · 3 cancelled');
  });
  it('always says the first part, even at zero', () => {
    expect(summary(emptyCounts())).toBe('0 of 0 succeeded');
    expect(summary(c({ total: 4, queued: 4 }))).toBe('0 of 4 succeeded · 4 queued');
  });
  it('counts the plan’s skips out of the planned, a person’s skips in, timed out as failed', () => {
    expect(planned(c({ total: 10, skipped: 3, excluded: 3 }))).toBe(7);
    expect(failures(c({ failed: 2, timed_out: 3 }))).toBe(5);
    expect(summary(c({ total: 10, skipped: 3, excluded: 3, succeeded: 7 }))).toBe('7 of 7 succeeded');
    // A device a person skipped was meant to be updated and was not.
    expect(summary(c({ total: 4, skipped: 1, succeeded: 3 }))).toBe('3 of 4 succeeded · 1 skipped');
  });
});
