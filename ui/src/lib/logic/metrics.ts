// The overview's dashboard panels, from `GET /metrics/fleet`: devices per version over time (a
// stacked area, with the same numbers as a table and in a sentence), how finished rollouts went,
// and failures by reason. The numbers are the engine's samples and results; this module only
// arranges them (the biggest versions kept, the rest summed as "other") and draws them.

import type { RolloutResult, VersionSample } from '../api/types';
import { plural } from './format';
import { versionSort } from './semver';

/** The versions drawn (bottom to top) and, per sample, the devices on each. */
export interface VersionSeries {
  versions: string[];
  points: { at: number; counts: number[]; total: number }[];
  /** The biggest total of a sample (the chart's height). */
  max: number;
}

/** The label of the versions summed together. */
export const OTHER = 'other';

/**
 * Samples as a series of at most `limit` versions: the versions with the most devices at any time
 * are kept (`unknown` is a version like the others), the rest are summed as "other". Oldest
 * version at the bottom, newest on top, "other" under them all.
 */
export function versionSeries(samples: readonly VersionSample[], limit = 6): VersionSeries {
  const peak = new Map<string, number>();
  for (const s of samples) for (const [v, n] of Object.entries(s.versions)) peak.set(v, Math.max(peak.get(v) ?? 0, n));
  const ranked = [...peak].sort((a, b) => b[1] - a[1] || versionSort(b[0], a[0])).map(([v]) => v);
  const kept = ranked.length > limit ? ranked.slice(0, limit - 1) : ranked;
  const other = ranked.length > kept.length;
  const versions = [...(other ? [OTHER] : []), ...[...kept].sort((a, b) => versionSort(a === 'unknown' ? null : a, b === 'unknown' ? null : b))];
  const index = new Map(versions.map((v, i) => [v, i]));
  let max = 0;
  const points = samples
    .map((s) => {
      const counts = versions.map(() => 0);
      let total = 0;
      for (const [v, n] of Object.entries(s.versions)) {
        counts[index.get(v) ?? 0] += n;
        total += n;
      }
      max = Math.max(max, total);
      return { at: Date.parse(s.at), counts, total };
    })
    .filter((p) => Number.isFinite(p.at))
    .sort((a, b) => a.at - b.at);
  return { versions, points, max };
}

/**
 * One SVG path per version (same order as `versions`): the stacked areas in a `width` × `height`
 * box, time left to right, devices bottom to top. A single sample is drawn as a full-width band.
 */
export function stackedAreas(s: VersionSeries, width: number, height: number): string[] {
  const pts = s.points.length === 1 ? [s.points[0], { ...s.points[0], at: s.points[0].at + 1 }] : s.points;
  if (!pts.length || !s.max) return s.versions.map(() => '');
  const t0 = pts[0].at;
  const span = Math.max(1, pts[pts.length - 1].at - t0);
  const x = (t: number) => ((t - t0) / span) * width;
  const y = (n: number) => height - (n / s.max) * height;
  const r = (n: number) => Math.round(n * 10) / 10;
  return s.versions.map((_, vi) => {
    const below = pts.map((p) => p.counts.slice(0, vi).reduce((a, b) => a + b, 0));
    const top = pts.map((p, i) => below[i] + p.counts[vi]);
    const upper = pts.map((p, i) => `${r(x(p.at))},${r(y(top[i]))}`);
    const lower = pts.map((p, i) => `${r(x(p.at))},${r(y(below[i]))}`).reverse();
    return `M${upper.join('L')}L${lower.join('L')}Z`;
  });
}

/** At most `rows` samples for the table: evenly spread, always the first and the last. */
export function tableRows<T>(points: readonly T[], rows = 10): T[] {
  if (points.length <= rows) return [...points];
  const out: T[] = [];
  for (let i = 0; i < rows; i++) out.push(points[Math.round((i * (points.length - 1)) / (rows - 1))]);
  return out;
}

/** The chart in one sentence (its text alternative): the versions now, and at the first sample. */
export function describeVersions(s: VersionSeries): string {
  if (!s.points.length) return 'No samples yet.';
  const say = (counts: number[]) =>
    s.versions
      .map((v, i) => [v, counts[i]] as const)
      .filter(([, n]) => n > 0)
      .sort((a, b) => b[1] - a[1])
      .map(([v, n]) => `${v} on ${plural(n, 'device')}`)
      .join(', ');
  const last = s.points[s.points.length - 1];
  if (s.points.length === 1) return `Now: ${say(last.counts)}.`;
  return `Now: ${say(last.counts)}. At the first sample: ${say(s.points[0].counts)}.`;
}

/** How one finished rollout went, in the words counts are read with everywhere. */
export function rolloutResultText(r: Pick<RolloutResult, 'succeeded' | 'failed' | 'planned'>): string {
  return `${r.succeeded} of ${r.planned} succeeded${r.failed ? ` · ${r.failed} failed` : ''}`;
}

/** Shares of a result's bar, 0..1: succeeded, failed, the rest (skipped by a person, cancelled). */
export function resultShares(r: Pick<RolloutResult, 'succeeded' | 'failed' | 'planned'>): { ok: number; bad: number; rest: number } {
  if (!r.planned) return { ok: 0, bad: 0, rest: 0 };
  const ok = r.succeeded / r.planned;
  const bad = r.failed / r.planned;
  return { ok, bad, rest: Math.max(0, 1 - ok - bad) };
}

/** All finished rollouts together: devices planned, succeeded, failed, and the success rate (percent, whole). */
export function overallSuccess(rs: readonly Pick<RolloutResult, 'succeeded' | 'failed' | 'planned'>[]): { planned: number; succeeded: number; failed: number; percent: number | null } {
  const planned = rs.reduce((n, r) => n + r.planned, 0);
  const succeeded = rs.reduce((n, r) => n + r.succeeded, 0);
  const failed = rs.reduce((n, r) => n + r.failed, 0);
  return { planned, succeeded, failed, percent: planned ? Math.floor((succeeded * 100) / planned) : null };
}
