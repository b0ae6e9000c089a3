import { describe, expect, it } from 'vitest';
import { barShares, countJobs, groupByReason, percentDone } from './progress';
import type { JobState } from '../api/types';

const j = (state: JobState, wave: number | null = 1) => ({ state, wave });

describe('counts and progress', () => {
  it('counts per state and per wave, in-flight states together', () => {
    const { total, waves } = countJobs([j('succeeded'), j('downloading', 2), j('verifying', 2), j('failed', 2), j('timed_out', 3), j('queued', 3), j('skipped', null)], 4);
    expect(total).toEqual({ total: 7, queued: 1, in_flight: 2, succeeded: 1, failed: 1, timed_out: 1, skipped: 1, cancelled: 0, excluded: 1 });
    expect(waves.map((w) => w.total)).toEqual([1, 3, 2, 0]);
    expect(waves[1].in_flight).toBe(2);
  });
  it('never shows 100 % before every job is done', () => {
    const c = countJobs([...Array(999).fill(j('succeeded')), j('downloading')]).total;
    expect(percentDone(c)).toBe(99);
    expect(percentDone(countJobs([j('succeeded'), j('skipped')]).total)).toBe(100);
    expect(percentDone(countJobs([]).total)).toBe(0);
  });
  it('splits a bar into shares that add up', () => {
    const s = barShares(countJobs([j('succeeded'), j('failed'), j('timed_out'), j('installing')]).total);
    expect(s).toEqual({ ok: 0.25, bad: 0.5, other: 0, active: 0.25 });
  });
});

describe('errors grouped by reason', () => {
  it('groups reasons that differ in numbers, MACs and versions, largest first', () => {
    const g = groupByReason([
      { mac: 'a', reason: 'timed out in downloading after 300 s' },
      { mac: 'b', reason: 'device reported error: flash write failed' },
      { mac: 'c', reason: 'timed out in downloading after 301 s' },
      { mac: 'd', reason: null },
      { mac: 'e', reason: 'device reported error: flash write failed' },
      { mac: 'f', reason: 'timed out in downloading after 300 s' },
    ]);
    expect(g.map((x) => x.macs.length)).toEqual([3, 2, 1]);
    expect(g[0].reason).toBe('timed out in downloading after … s');
    expect(g[1].reason).toBe('device reported error: flash write failed');
    expect(g[2].reason).toBe('no reason given');
  });
  it('keeps digits that are part of words (shelly-gen1 vs shelly-gen2, esp32)', () => {
    const g = groupByReason([
      { mac: 'a', reason: 'no update adapter for family shelly-gen1 yet' },
      { mac: 'b', reason: 'no update adapter for family shelly-gen2 yet' },
      { mac: 'c', reason: 'chip esp32 does not match the firmware\'s esp32c3' },
    ]);
    expect(g.map((x) => x.reason).sort()).toEqual([
      "chip esp32 does not match the firmware's esp32c3",
      'no update adapter for family shelly-gen1 yet',
      'no update adapter for family shelly-gen2 yet',
    ]);
  });
});
