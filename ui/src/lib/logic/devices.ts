// The devices table's logic: which firmware is the newest a device could take ("outdated"),
// precomputed search keys, filtering and sorting. Plain functions over arrays so 10,000 rows
// stay cheap: everything per-device is computed once per data change, not per keystroke.

import { compareText } from './format';
import type { Channel, Device, Firmware } from '../api/types';
import { compareVersions, versionSort } from './semver';

/** What people call a device: its name, else its own id, else its MAC. */
export function deviceName(d: Pick<Device, 'name' | 'device_id'> | null | undefined, mac: string): string {
  return d?.name || d?.device_id || mac;
}

/** Normalises a chip name the way the engine does (`ESP32-C3` → `esp32c3`). */
export function normChip(s: string | null | undefined): string {
  return (s ?? '').replace(/[-_]/g, '').toLowerCase();
}

/**
 * The newest usable (not blocked, not archived) firmware per compatibility key and channel, as
 * the engine offers it: a device on the stable channel takes stable firmware, one on beta takes
 * both. A device with a model is compatible with firmware for that model (and its chip, when
 * known); a device without a model with firmware for its chip.
 */
export interface NewestIndex {
  byModel: Map<string, Firmware>;
  byChip: Map<string, Firmware>;
}

const CHANNELS: readonly Channel[] = ['stable', 'beta'];
/** Channels whose firmware a device on `c` takes. */
const takes = (device: Channel, fw: Channel) => device === 'beta' || fw === 'stable';

export function newestIndex(firmware: readonly Firmware[]): NewestIndex {
  const byModel = new Map<string, Firmware>();
  const byChip = new Map<string, Firmware>();
  const better = (cur: Firmware | undefined, fw: Firmware) => !cur || (compareVersions(fw.version, cur.version) ?? 0) > 0;
  for (const fw of firmware) {
    if (fw.blocked || fw.archived) continue;
    for (const ch of CHANNELS) {
      if (!takes(ch, fw.channel)) continue;
      const mk = `${fw.model}\u0000${normChip(fw.chip)}\u0000${ch}`;
      if (better(byModel.get(mk), fw)) byModel.set(mk, fw);
      const ck = `${normChip(fw.chip)}\u0000${ch}`;
      if (better(byChip.get(ck), fw)) byChip.set(ck, fw);
    }
  }
  return { byModel, byChip };
}

/** The newest firmware this device could take on the channel it follows, if any. */
export function newestFor(d: Pick<Device, 'model' | 'chip'> & Partial<Pick<Device, 'channel'>>, idx: NewestIndex): Firmware | undefined {
  const ch = d.channel ?? 'stable';
  if (d.model) {
    if (d.chip) return idx.byModel.get(`${d.model}\u0000${normChip(d.chip)}\u0000${ch}`);
    for (const [k, fw] of idx.byModel) if (k.startsWith(d.model + '\u0000') && k.endsWith(`\u0000${ch}`)) return fw;
    return undefined;
  }
  if (d.chip) return idx.byChip.get(`${normChip(d.chip)}\u0000${ch}`);
  return undefined;
}

/** The version a device should be on when it is outdated, else null. Unknown / non-SemVer → null. */
export function outdatedTarget(d: Pick<Device, 'model' | 'chip' | 'version'> & Partial<Pick<Device, 'channel'>>, idx: NewestIndex): string | null {
  const fw = newestFor(d, idx);
  if (!fw || !d.version) return null;
  const c = compareVersions(d.version, fw.version);
  return c !== null && c < 0 ? fw.version : null;
}

/** One table row: the device plus everything precomputed for filtering, sorting and display. */
export interface Row {
  d: Device;
  /** Lower-case haystack for the text filter. */
  key: string;
  /** Newer firmware version available, else null. */
  newer: string | null;
  lastSeenMs: number;
}

// Rows are cached per device object (devices are immutable: a change makes a new object), so a
// batch of events touching a few devices rebuilds only their rows.
let cache = new WeakMap<Device, Row>();
let cacheIdx: NewestIndex | null = null;

function resetCache(idx: NewestIndex): void {
  if (idx !== cacheIdx) {
    cache = new WeakMap();
    cacheIdx = idx;
  }
}

/** The row of one device (cached per device object). */
export function rowOf(d: Device, idx: NewestIndex): Row {
  resetCache(idx);
  const hit = cache.get(d);
  if (hit) return hit;
  const row: Row = {
    d,
    key: [d.name, d.mac, d.ip, d.model, d.chip, d.version, d.device_id, d.family, d.labels.join(' ')]
      .filter(Boolean)
      .join(' ')
      .toLowerCase(),
    newer: outdatedTarget(d, idx),
    lastSeenMs: Date.parse(d.last_seen) || 0,
  };
  cache.set(d, row);
  return row;
}

export function buildRows(devices: readonly Device[], idx: NewestIndex): Row[] {
  resetCache(idx);
  const rows: Row[] = new Array(devices.length);
  for (let i = 0; i < devices.length; i++) rows[i] = rowOf(devices[i], idx);
  return rows;
}

export type VersionFilter = '' | 'outdated' | 'current' | 'unknown' | `=${string}`;
export type OnlineFilter = '' | 'online' | 'offline';

export interface DeviceFilter {
  text: string;
  family: string;
  version: VersionFilter;
  online: OnlineFilter;
  label: string;
}

export const EMPTY_FILTER: DeviceFilter = { text: '', family: '', version: '', online: '', label: '' };

export function isFiltering(f: DeviceFilter): boolean {
  return !!(f.text.trim() || f.family || f.version || f.online || f.label);
}

/** Filters rows; text is split on whitespace and every word must occur (AND). */
export function filterRows(rows: readonly Row[], f: DeviceFilter): readonly Row[] {
  if (!isFiltering(f)) return rows;
  const words = f.text.toLowerCase().split(/\s+/).filter(Boolean);
  const exactVersion = f.version.startsWith('=') ? f.version.slice(1) : null;
  return rows.filter((r) => {
    const d = r.d;
    if (f.family && d.family !== f.family) return false;
    if (f.online === 'online' && !d.online) return false;
    if (f.online === 'offline' && d.online) return false;
    if (f.label && !d.labels.includes(f.label)) return false;
    if (f.version) {
      if (f.version === 'outdated' && !r.newer) return false;
      if (f.version === 'current' && (r.newer || !d.version)) return false;
      if (f.version === 'unknown' && d.version) return false;
      if (exactVersion !== null && d.version !== exactVersion) return false;
    }
    for (const w of words) if (!r.key.includes(w)) return false;
    return true;
  });
}

export type SortKey = 'name' | 'mac' | 'ip' | 'model' | 'version' | 'online' | 'last_seen' | 'family';
export interface Sort {
  key: SortKey;
  dir: 1 | -1;
}

function ipNum(ip: string | null): number {
  if (!ip) return Number.MAX_SAFE_INTEGER;
  const p = ip.split('.');
  if (p.length !== 4) return Number.MAX_SAFE_INTEGER - 1;
  return ((+p[0] * 256 + +p[1]) * 256 + +p[2]) * 256 + +p[3];
}

const text = (a: string | null, b: string | null) => (a === b ? 0 : a === null ? 1 : b === null ? -1 : compareText(a, b));

/** Compares two rows by the sort key only (0: same key value), ascending. */
export function compareBy(key: SortKey): (x: Row, y: Row) => number {
  return (x: Row, y: Row): number => {
    const a = x.d;
    const b = y.d;
    switch (key) {
      case 'name':
        return text(a.name ?? a.device_id, b.name ?? b.device_id);
      case 'mac':
        return 0;
      case 'ip':
        return ipNum(a.ip) - ipNum(b.ip);
      case 'model':
        return text(a.model ?? a.chip, b.model ?? b.chip);
      case 'version':
        return versionSort(a.version, b.version);
      case 'online':
        return Number(b.online) - Number(a.online);
      case 'last_seen':
        return y.lastSeenMs - x.lastSeenMs;
      case 'family':
        return a.family < b.family ? -1 : a.family > b.family ? 1 : 0;
    }
  };
}

/** Sorts a copy; ties broken by MAC so the order is stable across updates. Missing values last. */
export function sortRows(rows: readonly Row[], s: Sort): Row[] {
  const cmp = compareBy(s.key);
  return rows.slice().sort((x, y) => s.dir * cmp(x, y) || (x.d.mac < y.d.mac ? -1 : x.d.mac > y.d.mac ? 1 : 0));
}

/**
 * Brings a sorted table up to date with a new device list without sorting: rows of changed
 * devices are replaced where they are. Returns the same array when nothing changed, and null when
 * that is not enough (a device came or went, or a changed device's sort key changed): sort again.
 * `pos` maps each MAC to its index in `sorted`.
 */
export function updateSorted(sorted: readonly Row[], pos: ReadonlyMap<string, number>, devices: readonly Device[], idx: NewestIndex, key: SortKey): Row[] | null {
  if (devices.length !== sorted.length) return null;
  const cmp = compareBy(key);
  let out: Row[] | null = null;
  for (const d of devices) {
    const p = pos.get(d.mac);
    if (p === undefined) return null;
    const old = sorted[p];
    if (old.d === d) continue;
    const row = rowOf(d, idx);
    if (cmp(old, row) !== 0) return null;
    out ??= sorted.slice();
    out[p] = row;
  }
  return out ?? (sorted as Row[]);
}

/** Every label in use, sorted, with counts. */
export function labelCounts(devices: readonly Device[]): [string, number][] {
  const m = new Map<string, number>();
  for (const d of devices) for (const l of d.labels) m.set(l, (m.get(l) ?? 0) + 1);
  return [...m].sort((a, b) => compareText(a[0], b[0]));
}

/** Applies a partial update (from an event) to a device, returning a new object or the same one if nothing changed. */
export function patchDevice(d: Device, p: Partial<Device>): Device {
  let changed = false;
  for (const k of Object.keys(p) as (keyof Device)[]) {
    if (p[k] !== undefined && p[k] !== d[k]) {
      changed = true;
      break;
    }
  }
  if (!changed) return d;
  const out = { ...d };
  for (const k of Object.keys(p) as (keyof Device)[]) if (p[k] !== undefined) (out as Record<string, unknown>)[k] = p[k];
  return out;
}

/** Label validation as the engine does it: 1-64 chars of A-Z a-z 0-9 . _ : / - */
export function validLabel(s: string): boolean {
  return /^[A-Za-z0-9._:/-]{1,64}$/.test(s);
}
