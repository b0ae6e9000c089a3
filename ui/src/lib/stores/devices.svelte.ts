// The inventory: one raw array (no deep reactivity on 10,000 objects), replaced on change, plus
// a MAC → index map. Events patch devices in batches; unknown MACs are fetched.

import { api } from '../api/client';
import type { Device, Event } from '../api/types';
import { patchDevice } from '../logic/devices';

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

  get(mac: string): Device | undefined {
    const i = this.index.get(mac);
    return i === undefined ? undefined : this.list[i];
  }

  async load(): Promise<void> {
    this.loading = true;
    try {
      this.list = await api.devices();
      this.reindex();
      this.loaded = true;
      this.error = null;
    } catch (e) {
      this.error = (e as Error).message;
    } finally {
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

  private held: Event[] = [];
  private holdTimer: ReturnType<typeof setTimeout> | null = null;

  /**
   * Applies a batch of `device.*` events with one array replacement. With a big inventory the
   * batches are held for up to 500 ms so the table re-derives at most twice a second.
   */
  applyEvents(events: Event[]): void {
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
    for (const e of events) {
      const data = e.data as Record<string, unknown>;
      const mac = (data.mac as string) ?? e.subject?.replace(/^device:/, '');
      if (!mac) continue;
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
    if (unknown.size > 100) void this.load();
    else if (unknown.size) {
      void Promise.allSettled([...unknown].map((m) => api.device(m))).then((rs) =>
        this.upsert(rs.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))),
      );
    }
  }
}

export const devices = new DevicesStore();
