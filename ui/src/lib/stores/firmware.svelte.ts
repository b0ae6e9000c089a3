// Imported firmware, newest first, and the "newest compatible" index the devices table uses.

import { api } from '../api/client';
import type { Firmware } from '../api/types';
import { newestIndex, type NewestIndex } from '../logic/devices';

class FirmwareStore {
  list = $state.raw<Firmware[]>([]);
  loaded = $state(false);
  error = $state<string | null>(null);
  newest: NewestIndex = $derived(newestIndex(this.list));
  private pending: ReturnType<typeof setTimeout> | null = null;

  async load(): Promise<void> {
    try {
      this.list = await api.firmware();
      this.loaded = true;
      this.error = null;
    } catch (e) {
      this.error = (e as Error).message;
    }
  }

  /** Reload soon (coalesces bursts of firmware.* events). */
  reloadSoon(): void {
    if (this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = null;
      void this.load();
    }, 200);
  }

  put(fw: Firmware): void {
    const i = this.list.findIndex((f) => f.id === fw.id);
    this.list = i < 0 ? [fw, ...this.list] : this.list.map((f) => (f.id === fw.id ? fw : f));
  }

  byId(id: number | string): Firmware | undefined {
    return this.list.find((f) => String(f.id) === String(id));
  }
}

export const firmware = new FirmwareStore();
