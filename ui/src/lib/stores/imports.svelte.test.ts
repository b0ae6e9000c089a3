import { beforeEach, describe, expect, it, vi } from 'vitest';
const inspectBytes = vi.fn();
const upload = vi.fn();
vi.mock('../api/client', () => ({
  api: { inspectBytes: (...a: unknown[]) => inspectBytes(...a), upload: (...a: unknown[]) => upload(...a) },
  ApiError: class {},
}));
vi.mock('./firmware.svelte', () => ({ firmware: { put: vi.fn() } }));
import { fromVerdict, importable, imports, optionsOf } from './imports.svelte';
import type { InspectReport, Verdict } from '../api/types';

const report = (verdict: Verdict): InspectReport =>
  ({ chip: 'esp32', version: '1.0.0', sha256: 'ab'.repeat(32), gzip: null, verdict, would_record: null, library_checked: true }) as unknown as InspectReport;
const slot = 'image is 4200000 bytes, larger than the 4089446-byte OTA slot of model demo';
const refused: Verdict = { kind: 'refused', code: 'refused', message: slot };
const file = (name = 'fw.bin') => ({ kind: 'file' as const, file: new File([new Uint8Array([0xe9])], name), name });
const settle = () => new Promise((r) => setTimeout(r, 0));

beforeEach(() => {
  inspectBytes.mockReset();
  upload.mockReset();
  imports.items = [];
});

describe('verdicts', () => {
  it('never reads a refusal as ready, and says what a duplicate import does', () => {
    expect(fromVerdict({ kind: 'ready' })).toEqual({ state: 'ready', error: null, note: null });
    expect(fromVerdict(refused)).toEqual({ state: 'refused', error: slot, note: null });
    const dup = fromVerdict({ kind: 'duplicate', firmware: 3, version: '1.0.0', model: 'demo', adds_gzip: false });
    expect(dup.state).toBe('duplicate');
    expect(dup.note).toBe('Already imported as firmware 3 (demo 1.0.0); importing changes nothing.');
    expect(fromVerdict({ kind: 'duplicate', firmware: 3, version: '1.0.0', model: 'demo', adds_gzip: true }).note).toContain('adds its .bin.gz form');
  });

  it('offers the import only when it would do something', () => {
    expect(importable({ state: 'ready', report: report({ kind: 'ready' }) })).toBe(true);
    expect(importable({ state: 'refused', report: report(refused) })).toBe(false);
    expect(importable({ state: 'duplicate', report: report({ kind: 'duplicate', firmware: 1, version: '1.0.0', model: 'd', adds_gzip: false }) })).toBe(false);
    expect(importable({ state: 'duplicate', report: report({ kind: 'duplicate', firmware: 1, version: '1.0.0', model: 'd', adds_gzip: true }) })).toBe(true);
  });

  it('previews and imports with the same options', () => {
    expect(optionsOf({ channel: 'beta', notes: ' ', version: ' 1.2.3 ', model: '' })).toEqual({ channel: 'beta', notes: null, version: '1.2.3', model: null });
  });
});

describe('the import queue', () => {
  it('shows the engine verdict, asks again with the options typed, and drops stale answers', async () => {
    let answerFirst: (r: InspectReport) => void = () => {};
    inspectBytes.mockImplementationOnce(() => new Promise((r) => (answerFirst = r)));
    imports.add([file()]);
    const it0 = imports.items[0];
    expect(it0.state).toBe('inspecting');
    // The technician types a version before the first answer came: the newer question wins.
    inspectBytes.mockResolvedValueOnce(report({ kind: 'ready' }));
    imports.items[0].version = '2.0.0';
    await imports.inspect(it0.key);
    expect(inspectBytes).toHaveBeenLastCalledWith(expect.any(File), { channel: 'stable', notes: null, version: '2.0.0', model: null });
    expect(imports.items[0].state).toBe('ready');
    answerFirst(report(refused));
    await settle();
    expect(imports.items[0].state).toBe('ready');

    inspectBytes.mockResolvedValueOnce(report(refused));
    await imports.inspect(it0.key);
    expect(imports.items[0].state).toBe('refused');
    expect(imports.items[0].error).toContain('OTA slot');
    await imports.import(it0.key);
    expect(upload).not.toHaveBeenCalled();
  });

  it('re-checks once the form is still', async () => {
    vi.useFakeTimers();
    try {
      inspectBytes.mockResolvedValue(report({ kind: 'ready' }));
      imports.add([file()]);
      await vi.advanceTimersByTimeAsync(0);
      expect(inspectBytes).toHaveBeenCalledTimes(1);
      const key = imports.items[0].key;
      imports.recheckSoon(key);
      imports.recheckSoon(key);
      await vi.advanceTimersByTimeAsync(1000);
      expect(inspectBytes).toHaveBeenCalledTimes(2);
    } finally {
      vi.useRealTimers();
    }
  });
});
