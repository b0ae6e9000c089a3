import { describe, expect, it } from 'vitest';
import type { VersionSample } from '../api/types';
import { OTHER, describeVersions, overallSuccess, resultShares, rolloutResultText, stackedAreas, tableRows, versionSeries } from './metrics';

const at = (m: number) => new Date(Date.UTC(2026, 2, 3, 10, m)).toISOString();

describe('versions over time', () => {
  const samples: VersionSample[] = [
    { at: at(0), versions: { '1.0.0': 24 } },
    { at: at(1), versions: { '1.0.0': 15, '2.0.0': 9 } },
    { at: at(2), versions: { '1.0.0': 4, '2.0.0': 20 } },
  ];
  it('stacks the versions oldest at the bottom, with each sample’s counts', () => {
    const s = versionSeries(samples);
    expect(s.versions).toEqual(['1.0.0', '2.0.0']);
    expect(s.points.map((p) => p.counts)).toEqual([[24, 0], [15, 9], [4, 20]]);
    expect(s.max).toBe(24);
  });
  it('keeps the biggest versions and sums the rest as "other" (at the bottom)', () => {
    const s = versionSeries([{ at: at(0), versions: { '1.0.0': 10, '1.1.0': 1, '1.2.0': 2, '2.0.0': 30, unknown: 3 } }], 3);
    expect(s.versions).toEqual([OTHER, '1.0.0', '2.0.0']);
    expect(s.points[0].counts).toEqual([6, 10, 30]);
    expect(s.points[0].total).toBe(46);
  });
  it('draws closed areas that stack to the total', () => {
    const s = versionSeries(samples);
    const [a, b] = stackedAreas(s, 100, 50);
    expect(a).toBe('M0,0L50,18.8L100,41.7L100,50L50,50L0,50Z');
    expect(b).toBe('M0,0L50,0L100,0L100,41.7L50,18.8L0,0Z');
    expect(stackedAreas(versionSeries([samples[0]]), 100, 50)[0]).toBe('M0,0L100,0L100,50L0,50Z');
    expect(stackedAreas(versionSeries([]), 100, 50)).toEqual([]);
  });
  it('says the chart in a sentence and keeps the first and last samples in the table', () => {
    expect(describeVersions(versionSeries(samples))).toBe('Now: 2.0.0 on 20 devices, 1.0.0 on 4 devices. At the first sample: 1.0.0 on 24 devices.');
    expect(describeVersions(versionSeries([]))).toBe('No samples yet.');
    const rows = tableRows(Array.from({ length: 100 }, (_, i) => i), 10);
    expect(rows).toHaveLength(10);
    expect([rows[0], rows[9]]).toEqual([0, 99]);
    expect(tableRows([1, 2, 3], 10)).toEqual([1, 2, 3]);
  });
});

describe('finished rollouts', () => {
  it('reads each as succeeded of planned, failures apart', () => {
    expect(rolloutResultText({ succeeded: 18, failed: 1, planned: 19 })).toBe('18 of 19 succeeded · 1 failed');
    expect(rolloutResultText({ succeeded: 5, failed: 0, planned: 5 })).toBe('5 of 5 succeeded');
    expect(resultShares({ succeeded: 6, failed: 2, planned: 10 })).toEqual({ ok: 0.6, bad: 0.2, rest: expect.closeTo(0.2, 5) });
    expect(resultShares({ succeeded: 0, failed: 0, planned: 0 })).toEqual({ ok: 0, bad: 0, rest: 0 });
  });
  it('adds them up, never rounding a failure away into 100 %', () => {
    expect(overallSuccess([{ succeeded: 18, failed: 1, planned: 19 }, { succeeded: 5, failed: 0, planned: 5 }])).toEqual({ planned: 24, succeeded: 23, failed: 1, percent: 95 });
    expect(overallSuccess([{ succeeded: 999, failed: 1, planned: 1000 }]).percent).toBe(99);
    expect(overallSuccess([]).percent).toBeNull();
  });
});
