import { describe, expect, it } from 'vitest';
import { editPatch } from './firmware';

const fw = { notes: 'old notes', channel: 'stable' as const, min_version: null, version: '2.0.0' };

describe('the firmware edit as a patch', () => {
  it('sends only what changed', () => {
    expect(editPatch(fw, { notes: 'old notes', channel: 'stable', minVersion: '' })).toEqual({});
    expect(editPatch(fw, { notes: 'new', channel: 'beta', minVersion: '' })).toEqual({ notes: 'new', channel: 'beta' });
  });
  it('clears notes with "" (null would mean unchanged)', () => {
    expect(editPatch(fw, { notes: '  ', channel: 'stable', minVersion: '' })).toEqual({ notes: '' });
  });
  it('sets and removes the stepping stone', () => {
    expect(editPatch(fw, { notes: 'old notes', channel: 'stable', minVersion: ' 1.2.0 ' })).toEqual({ min_version: '1.2.0' });
    expect(editPatch({ ...fw, min_version: '1.2.0' }, { notes: 'old notes', channel: 'stable', minVersion: '' })).toEqual({ min_version: '' });
    expect(editPatch(fw, { notes: 'old notes', channel: 'stable', minVersion: 'soon' })).toMatch(/not a version/);
    expect(editPatch(fw, { notes: 'old notes', channel: 'stable', minVersion: '3.0.0' })).toMatch(/above this firmware/);
  });
});
