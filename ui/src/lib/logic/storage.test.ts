import { describe, expect, it } from 'vitest';
import type { EngineStatus, Event, JsonValue } from '../api/types';
import { diskFullIn, diskFullOf } from './storage';

const ev = (kind: string, data: JsonValue): Event => ({ id: 0, at: '', kind, actor: 'engine', subject: null, data });

describe('disk full', () => {
  it('comes from storage.changed events only', () => {
    expect(diskFullOf(ev('storage.changed', { disk_full: true }))).toBe(true);
    expect(diskFullOf(ev('storage.changed', { disk_full: false }))).toBe(false);
    expect(diskFullOf(ev('storage.changed', {}))).toBeNull();
    expect(diskFullOf(ev('device.seen', { disk_full: true }))).toBeNull();
  });
  it('is read from the status, false when absent', () => {
    expect(diskFullIn(null)).toBe(false);
    expect(diskFullIn({ storage: { disk_full: true, missing_firmware_files: [] } } as unknown as EngineStatus)).toBe(true);
    expect(diskFullIn({} as EngineStatus)).toBe(false);
  });
});
