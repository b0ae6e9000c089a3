// Firmware files waiting to be imported: each is inspected first (what the parser read, or why
// it was refused), then imported on request with the options the technician chose.

import { api } from '../api/client';
import type { Channel, ImageInfo, ImportResponse } from '../api/types';
import type { PickedFile } from '../platform';
import { isFirmwareName } from '../platform';
import { firmware } from './firmware.svelte';

export type ImportState = 'inspecting' | 'ready' | 'refused' | 'importing' | 'imported' | 'failed';

export interface PendingImport {
  key: number;
  src: PickedFile;
  state: ImportState;
  info: ImageInfo | null;
  error: string | null;
  result: ImportResponse | null;
  channel: Channel;
  notes: string;
  version: string;
  model: string;
}

let seq = 0;

class ImportQueue {
  items = $state<PendingImport[]>([]);

  add(files: PickedFile[]): void {
    for (const src of files) {
      const item: PendingImport = { key: ++seq, src, state: 'inspecting', info: null, error: null, result: null, channel: 'stable', notes: '', version: '', model: '' };
      if (!isFirmwareName(src.name)) {
        item.state = 'refused';
        item.error = 'not a firmware file: expected .bin or .bin.gz';
        this.items.push(item);
        continue;
      }
      this.items.push(item);
      void this.inspect(item.key);
    }
  }

  private find(key: number): PendingImport | undefined {
    return this.items.find((i) => i.key === key);
  }

  async inspect(key: number): Promise<void> {
    const it = this.find(key);
    if (!it) return;
    it.state = 'inspecting';
    try {
      const info = it.src.kind === 'file' ? await api.inspectBytes(it.src.file) : await api.inspectPath(it.src.path);
      const cur = this.find(key);
      if (!cur) return;
      cur.info = info;
      cur.state = 'ready';
      cur.error = null;
    } catch (e) {
      const cur = this.find(key);
      if (!cur) return;
      cur.state = 'refused';
      cur.error = (e as Error).message;
    }
  }

  async import(key: number): Promise<void> {
    const it = this.find(key);
    if (!it || it.state === 'importing') return;
    it.state = 'importing';
    const opts = {
      channel: it.channel,
      notes: it.notes.trim() || null,
      version: it.version.trim() || null,
      model: it.model.trim() || null,
    };
    try {
      const res = it.src.kind === 'file' ? await api.upload(it.src.file, opts) : await api.importPath(it.src.path, opts);
      const cur = this.find(key);
      if (!cur) return;
      cur.result = res;
      cur.state = 'imported';
      cur.error = null;
      firmware.put(res.firmware);
    } catch (e) {
      const cur = this.find(key);
      if (!cur) return;
      cur.state = 'failed';
      cur.error = (e as Error).message;
    }
  }

  async importAll(): Promise<void> {
    await Promise.all(this.items.filter((i) => i.state === 'ready' || i.state === 'failed').map((i) => this.import(i.key)));
  }

  remove(key: number): void {
    this.items = this.items.filter((i) => i.key !== key);
  }

  clearDone(): void {
    this.items = this.items.filter((i) => i.state !== 'imported');
  }
}

export const imports = new ImportQueue();
