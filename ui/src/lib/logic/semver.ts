// SemVer 2.0.0 precedence, as the engine compares versions (a leading `v` is allowed).
// Build metadata is ignored; pre-releases sort below their release, identifiers compared
// numerically when both are numeric, numeric below alphanumeric, shorter list first.

import { compareText } from './format';

export interface SemVer {
  major: number;
  minor: number;
  patch: number;
  pre: (string | number)[];
}

const RE =
  /^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$/;

const cache = new Map<string, SemVer | null>();

export function parseSemver(s: string | null | undefined): SemVer | null {
  if (!s) return null;
  const hit = cache.get(s);
  if (hit !== undefined) return hit;
  const m = RE.exec(s.trim());
  const v = m
    ? {
        major: Number(m[1]),
        minor: Number(m[2]),
        patch: Number(m[3]),
        pre: m[4] ? m[4].split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : p)) : [],
      }
    : null;
  if (cache.size > 50000) cache.clear();
  cache.set(s, v);
  return v;
}

function cmpNum(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function cmpPre(a: (string | number)[], b: (string | number)[]): number {
  if (!a.length && !b.length) return 0;
  if (!a.length) return 1; // a release ranks above any of its pre-releases
  if (!b.length) return -1;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i];
    const y = b[i];
    if (x === y) continue;
    const xn = typeof x === 'number';
    const yn = typeof y === 'number';
    if (xn && yn) return cmpNum(x as number, y as number);
    if (xn) return -1;
    if (yn) return 1;
    return (x as string) < (y as string) ? -1 : 1;
  }
  return cmpNum(a.length, b.length);
}

/** -1, 0 or 1; `null` when either side is not SemVer. */
export function compareVersions(a: string | null | undefined, b: string | null | undefined): number | null {
  const x = parseSemver(a);
  const y = parseSemver(b);
  if (!x || !y) return null;
  return cmpNum(x.major, y.major) || cmpNum(x.minor, y.minor) || cmpNum(x.patch, y.patch) || cmpPre(x.pre, y.pre);
}

/** Sort comparator: SemVer order, non-SemVer after, then text. */
export function versionSort(a: string | null | undefined, b: string | null | undefined): number {
  const c = compareVersions(a, b);
  if (c !== null) return c;
  const pa = parseSemver(a) ? 0 : a ? 1 : 2;
  const pb = parseSemver(b) ? 0 : b ? 1 : 2;
  if (pa !== pb) return pa - pb;
  return compareText(a ?? '', b ?? '');
}
