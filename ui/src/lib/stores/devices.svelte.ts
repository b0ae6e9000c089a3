// The inventory: one raw array (no deep reactivity on 10,000 objects), replaced on change, plus
// a MAC → index map. Events patch devices in batches; unknown MACs are fetched.
// The devices table's sorted rows and its filter choices are cached here, not in the view: opening
// the view again reuses them, and a batch of events that changes no device's sort key updates the
// changed rows in place instead of sorting again.

import { api } from '../api/client';
import type { Device, Event } from '../api/types';
import { buildRows, labelCounts, patchDevice, sortRows, updateSorted, type NewestIndex, type Row, type Sort } from '../logic/devices';
import { versionSort } from '../logic/semver';

interface TableCache {
  list: Device[];
  key: string;
  idx: NewestIndex;
  rows: Row[];
  /** MAC → index in `rows`. */
  pos: Map<string, number>;
}

class DevicesStore {
  list = $state.raw<Device[]>([]);
  loaded = $state(false);
  loading = $state(false);
  error = $state<string | null>(null);
  private index = new Map<string, number>();

  private reindex(): void {
    this.index.clear();
    this.list.forEach((d, i) => this.index.set(d.mac, i));
  }

  private table: TableCache | null = null;
  private facets: { list: Device[]; labels: [string, number][]; versions: string[] } | null = null;

  /** Every device's table row, sorted; cached (and updated in place when the order cannot change). */
  sortedRows(sort: Sort, idx: NewestIndex): Row[] {
    const list = this.list;
    const key = `${sort.key}:${sort.dir}`;
    const c = this.table;
    if (c && c.list === list && c.key === key && c.idx === idx) return c.rows;
    const same = c && c.key === key && c.idx === idx ? updateSorted(c.rows, c.pos, list, idx, sort.key) : null;
    if (same && c) {
      this.table = { ...c, list, rows: same };
      return same;
    }
    const rows = sortRows(buildRows(list, idx), sort);
    const pos = new Map<string, number>();
    for (let i = 0; i < rows.length; i++) pos.set(rows[i].d.mac, i);
    this.table = { list, key, idx, rows, pos };
    return rows;
  }

  /** Labels in use (with counts) and versions seen, for the filters; cached per inventory change. */
  filterChoices(): { labels: [string, number][]; versions: string[] } {
    const list = this.list;
    if (this.facets?.list === list) return this.facets;
    const versions = [...new Set(list.map((d) => d.version).filter((v): v is string => !!v))].sort(versionSort).slice(0, 200);
    this.facets = { list, labels: labelCounts(list), versions };
    return this.facets;
  }

  /** The device with this MAC. Reads `list` first, so a view that asked before the inventory
   * arrived (or before the device was discovered) shows it when it does. */
  get(mac: string): Device | undefined {
    const list = this.list;
    const i = this.index.get(mac);
    return i === undefined ? undefined : list[i];
  }

  /** Events that arrived while a load was on its way, per load in flight. */
  private inFlight = new Set<Event[]>();

  async load(): Promise<void> {
    this.loading = true;
    const during: Event[] = [];
    this.inFlight.add(during);
    try {
      this.list = await api.devices();
      this.reindex();
      // The answer may be older than events that arrived meanwhile (a device discovered after it
      // was read, and fetched on its own): apply them again, in order, over it.
      if (during.length) this.applyNow(during);
      this.loaded = true;
      this.error = null;
    } catch (e) {
      this.error = (e as Error).message;
    } finally {
      this.inFlight.delete(during);
      this.loading = false;
    }
  }

  /** Replaces or adds whole devices (from an API answer). */
  upsert(devices: Device[]): void {
    if (!devices.length) return;
    const next = this.list.slice();
    for (const d of devices) {
      const i = this.index.get(d.mac);
      if (i === undefined) {
        this.index.set(d.mac, next.length);
        next.push(d);
      } else next[i] = d;
    }
    this.list = next;
  }

  /** Takes a forgotten device out (one array replacement). */
  remove(macs: readonly string[]): void {
    const gone = new Set(macs.filter((m) => this.index.has(m)));
    if (!gone.size) return;
    this.list = this.list.filter((d) => !gone.has(d.mac));
    this.reindex();
  }

  private held: Event[] = [];
  private holdTimer: ReturnType<typeof setTimeout> | null = null;

  /**
   * Applies a batch of `device.*` events with one array replacement. With a big inventory the
   * batches are held for up to 500 ms so the table re-derives at most twice a second.
   */
  applyEvents(events: Event[]): void {
    for (const during of this.inFlight) during.push(...events);
    if (this.list.length < 2000) return this.applyNow(events);
    this.held.push(...events);
    if (this.holdTimer) return;
    this.holdTimer = setTimeout(() => {
      this.holdTimer = null;
      const batch = this.held;
      this.held = [];
      this.applyNow(batch);
    }, 500);
  }

  private applyNow(events: Event[]): void {
    let next: Device[] | null = null;
    const unknown = new Set<string>();
    const forgotten: string[] = [];
    for (const e of events) {
      const data = e.data as Record<string, unknown>;
      const mac = (data.mac as string) ?? e.subject?.replace(/^device:/, '');
      if (!mac) continue;
      if (e.kind === 'device.forgotten') {
        forgotten.push(mac);
        unknown.delete(mac);
        continue;
      }
      const i = this.index.get(mac);
      if (i === undefined) {
        unknown.add(mac);
        continue;
      }
      const p: Partial<Device> = {};
      switch (e.kind) {
        case 'device.discovered':
        case 'device.changed':
          for (const k of ['device_id', 'ip', 'version', 'online'] as const) if (k in data) (p as Record<string, unknown>)[k] = data[k];
          p.last_seen = e.at;
          break;
        case 'device.offline':
          p.online = false;
          break;
        case 'device.labelled':
          if (Array.isArray(data.labels)) p.labels = data.labels as string[];
          break;
        case 'device.channel':
          if (data.channel === 'stable' || data.channel === 'beta') p.channel = data.channel;
          p.channel_from = typeof data.from === 'string' ? data.from : null;
          break;
        default:
          continue;
      }
      const cur = (next ?? this.list)[i];
      const upd = patchDevice(cur, p);
      if (upd !== cur) {
        next ??= this.list.slice();
        next[i] = upd;
      }
    }
    if (next) this.list = next;
    if (forgotten.length) this.remove(forgotten);
    if (unknown.size > 100) void this.load();
    else if (unknown.size) {
      void Promise.allSettled([...unknown].map((m) => api.device(m))).then((rs) =>
        this.upsert(rs.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))),
      );
    }
  }
}

export const devices = new DevicesStore();
