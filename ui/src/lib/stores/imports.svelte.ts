// Firmware files waiting to be imported: each is previewed first — what the parser read and the
// verdict of an import with the options chosen (the engine decides it with the import's own
// rules and library checks) — then imported on request with those options. Changing the version
// or model asks for the verdict again, so what the list says is what the import will do.

import { api } from '../api/client';
import type { Channel, ImportOptions, ImportResponse, InspectReport, Verdict } from '../api/types';
import type { PickedFile } from '../platform';
import { isFirmwareName } from '../platform';
import { firmware } from './firmware.svelte';

export type ImportState = 'inspecting' | 'ready' | 'duplicate' | 'refused' | 'importing' | 'imported' | 'failed';

export interface PendingImport {
  key: number;
  src: PickedFile;
  state: ImportState;
  /** The engine's preview: image facts and verdict; null until it answered, or when the file is no image. */
  report: InspectReport | null;
  /** Why it is refused or why the import failed. */
  error: string | null;
  /** What importing it does when it is already in the library. */
  note: string | null;
  result: ImportResponse | null;
  channel: Channel;
  notes: string;
  version: string;
  model: string;
  /** Which preview request is the newest (older answers are dropped). */
  asked: number;
}

/** The state a preview's verdict puts a file in, with the text that explains it. */
export function fromVerdict(v: Verdict): { state: 'ready' | 'duplicate' | 'refused'; error: string | null; note: string | null } {
  switch (v.kind) {
    case 'ready':
      return { state: 'ready', error: null, note: null };
    case 'duplicate':
      return {
        state: 'duplicate',
        error: null,
        note: `Already imported as firmware ${v.firmware} (${v.model} ${v.version}); importing ${v.adds_gzip ? 'adds its .bin.gz form' : 'changes nothing'}.`,
      };
    case 'refused':
      return { state: 'refused', error: v.message, note: null };
  }
}

/** Does the Import button do anything for this file? Never for a refusal, nor for a duplicate that adds nothing. */
export function importable(it: Pick<PendingImport, 'state' | 'report'>): boolean {
  if (it.state === 'ready' || it.state === 'failed') return true;
  return it.state === 'duplicate' && it.report?.verdict.kind === 'duplicate' && it.report.verdict.adds_gzip;
}

/** The import options a file's form gives, the same for its preview and its import. */
export function optionsOf(it: Pick<PendingImport, 'channel' | 'notes' | 'version' | 'model'>): Partial<ImportOptions> {
  return {
    channel: it.channel,
    notes: it.notes.trim() || null,
    version: it.version.trim() || null,
    model: it.model.trim() || null,
  };
}

/** How long the form must be still before the verdict is asked again. */
const RECHECK_MS = 350;

let seq = 0;

class ImportQueue {
  items = $state<PendingImport[]>([]);
  private timers = new Map<number, ReturnType<typeof setTimeout>>();

  add(files: PickedFile[]): void {
    for (const src of files) {
      const item: PendingImport = {
        key: ++seq, src, state: 'inspecting', report: null, error: null, note: null, result: null,
        channel: 'stable', notes: '', version: '', model: '', asked: 0,
      };
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

  /** Asks the engine what importing the file with its current options would do. */
  async inspect(key: number): Promise<void> {
    const it = this.find(key);
    if (!it || it.state === 'importing' || it.state === 'imported') return;
    const asked = ++it.asked;
    it.state = 'inspecting';
    const opts = optionsOf(it);
    try {
      const report = it.src.kind === 'file' ? await api.inspectBytes(it.src.file, opts) : await api.inspectPath(it.src.path, opts);
      const cur = this.find(key);
      if (!cur || cur.asked !== asked) return;
      const { state, error, note } = fromVerdict(report.verdict);
      Object.assign(cur, { report, state, error, note });
    } catch (e) {
      const cur = this.find(key);
      if (!cur || cur.asked !== asked) return;
      Object.assign(cur, { report: null, state: 'refused', error: (e as Error).message, note: null });
    }
  }

  /** Asks for the verdict again once the form has been still for a moment (version, model typed). */
  recheckSoon(key: number): void {
    const t = this.timers.get(key);
    if (t) clearTimeout(t);
    this.timers.set(
      key,
      setTimeout(() => {
        this.timers.delete(key);
        void this.inspect(key);
      }, RECHECK_MS),
    );
  }

  async import(key: number): Promise<void> {
    const it = this.find(key);
    if (!it || it.state === 'importing' || !importable(it)) return;
    it.state = 'importing';
    ++it.asked; // a preview still on its way no longer applies
    const opts = optionsOf(it);
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
    await Promise.all(this.items.filter((i) => i.state === 'ready').map((i) => this.import(i.key)));
  }

  remove(key: number): void {
    const t = this.timers.get(key);
    if (t) clearTimeout(t);
    this.timers.delete(key);
    this.items = this.items.filter((i) => i.key !== key);
  }

  clearDone(): void {
    this.items = this.items.filter((i) => i.state !== 'imported');
  }
}

export const imports = new ImportQueue();
