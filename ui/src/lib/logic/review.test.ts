import { describe, expect, it } from 'vitest';
import { buildRequest, defaultForm } from './wizard';
import { describeSafety, describeSuggestion, describeTarget, describeWaves, rankSuggestions, reviewForm, suggestionTarget, uncovered } from './review';
import { ENGINE_SPEC, fw } from './fixtures';
import type { FirmwareSuggestion } from '../api/types';

const f2 = fw({ id: 2, version: '2.0.0', model: 'demo' });
const sug = (p: Partial<FirmwareSuggestion>): FirmwareSuggestion => ({
  model: 'demo', channel: 'stable', device_channel: 'stable', firmware_id: 2, firmware_version: '2.0.0', outdated: 1, online: 1, target: 'model:demo and channel:stable and outdated', ...p,
});

describe('the review from a firmware', () => {
  it('targets its model’s online devices that run an older version, and leaves every setting to the engine', () => {
    const req = buildRequest(reviewForm(f2), f2, true);
    expect(req.target).toBe('model:demo and outdated and online');
    expect(req.firmware).toBe('2');
    expect(req.start).toBe(true);
    // no copy of the engine's defaults: the preview's spec says them
    expect(req.waves).toBeUndefined();
    expect(req.max_failures).toBeUndefined();
    expect(req.success_gate).toBeUndefined();
  });
});

describe('the engine’s suggestions: which firmware the outdated devices need', () => {
  it('reviews the suggestions with outdated devices, most first', () => {
    const s = rankSuggestions([
      sug({ model: 'pump', firmware_id: 5, outdated: 2 }),
      sug({ model: 'demo', firmware_id: 2, outdated: 7 }),
      sug({ model: 'boiler', firmware_id: 9, outdated: 0 }),
      sug({ model: 'demo', channel: 'beta', firmware_id: 4, outdated: 2, target: 'model:demo and channel:beta and outdated' }),
    ]);
    expect(s.map((x) => x.firmware_id)).toEqual([2, 4, 5]);
  });
  it('takes the engine’s ready target; the whole fleet’s outdated devices only while online', () => {
    expect(suggestionTarget(sug({}), true)).toBe('model:demo and channel:stable and outdated and online');
    expect(suggestionTarget(sug({ target: 'device:a,b and model:demo and outdated' }), false)).toBe('device:a,b and model:demo and outdated');
  });
  it('counts the selected devices no suggestion covers', () => {
    expect(uncovered(5, [sug({ outdated: 2 }), sug({ outdated: 1 })])).toBe(2);
    expect(uncovered(1, [sug({ outdated: 1 })])).toBe(0);
  });
  it('says whom a suggestion updates, with the channel they follow when the engine named it', () => {
    expect(describeSuggestion(sug({ device_channel: null, target: 'model:demo and outdated' }), { onlyOnline: true })).toBe('online devices of model demo that run a version older than 2.0.0');
    expect(describeSuggestion(sug({}), { onlyOnline: true })).toBe('online devices of model demo that run a version older than 2.0.0, following the stable channel');
    expect(describeSuggestion(sug({ device_channel: 'beta', target: 'device:a,b and model:demo and channel:beta and outdated' }), { onlyOnline: false, selected: 2 })).toBe(
      'the 2 selected devices of model demo that run a version older than 2.0.0, following the beta channel',
    );
    expect(describeSuggestion(sug({ device_channel: null, target: 'device:a and model:demo and outdated' }), { onlyOnline: false, selected: 1 })).toBe('the selected device of model demo that run a version older than 2.0.0');
  });
});

describe('the plan in words', () => {
  it('says who is targeted', () => {
    expect(describeTarget(reviewForm(f2), f2)).toBe('online devices of model demo that run a version older than 2.0.0');
    expect(describeTarget({ ...defaultForm(f2, ['a', 'b', 'c']), onlyOutdated: false, onlyOnline: false }, f2)).toBe('the 3 selected devices');
    expect(describeTarget({ ...defaultForm(f2, ['a']), onlyOutdated: false, onlyOnline: false }, f2)).toBe('the selected device');
    expect(describeTarget({ ...defaultForm(f2, ['a', 'b']) }, f2)).toBe('the 2 selected devices that are online and run a version older than 2.0.0');
    expect(describeTarget({ ...defaultForm(f2), scope: 'label', label: 'line-3', onlyOnline: false }, f2)).toBe('devices labelled line-3 that run a version older than 2.0.0');
    expect(describeTarget({ ...defaultForm(f2), scope: 'all', onlyOnline: false, onlyOutdated: false }, f2)).toBe('every device');
    expect(describeTarget({ ...defaultForm(f2), scope: 'custom', custom: 'label:x and online' }, f2)).toBe('devices matching label:x and online');
  });
  it('says the waves and the settings, from the spec the engine would run', () => {
    expect(describeWaves([1, 4, 19, 24])).toBe('1 device first, then 4, then 19, then 24');
    expect(describeWaves([3])).toBe('3 devices, in one wave');
    expect(describeWaves([])).toBe('no device');
    expect(describeSafety(ENGINE_SPEC)).toEqual([
      'Pauses by itself when more than 10 % of a wave fail.',
      'The next wave starts once 90 % of a wave succeeded.',
      'At most 20 devices update at once.',
      'A device that does not finish a step within 300 s times out; 1 retry after a transient failure.',
      'Runs at any time of day.',
    ]);
    expect(describeSafety({ ...ENGINE_SPEC, max_failures: { count: 2 }, manual_approval: true, retries: 0, window: 'mon-fri 22:00-05:00', command_rate: 0.5 })).toEqual([
      'Pauses by itself when more than 2 devices fail.',
      'The next wave starts once 90 % of a wave succeeded and you approve it.',
      'At most 20 devices update at once, and at most 30 commands/min are sent.',
      'A device that does not finish a step within 300 s times out.',
      'New devices are commanded only within mon-fri 22:00-05:00.',
    ]);
  });
  it('says when a scheduled rollout starts, and that a past start time starts it at once', () => {
    const now = Date.parse('2026-03-03T10:00:00Z');
    const later = describeSafety({ ...ENGINE_SPEC, start_at: '2026-03-03T12:00:00Z' }, now);
    expect(later[later.length - 1]).toMatch(/^Starts at .* \(in 2 h 0 min\); until then it waits, scheduled\.$/);
    const past = describeSafety({ ...ENGINE_SPEC, start_at: '2026-03-03T09:00:00Z' }, now);
    expect(past[past.length - 1]).toMatch(/has passed: it starts at once\.$/);
  });
});
