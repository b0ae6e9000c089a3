import { describe, expect, it } from 'vitest';
import {
  STEPS, buildRequest, canOpenStep, commandRateText, defaultForm, parseRate, parseStartAt, parseThreshold, parseWaves, startAtInput, stepsValid, targetExpression, waveEnds, waveSizes,
  formatWaves, groupSkipped, withEngineDefaults, type WizardForm,
} from './wizard';
import { ENGINE_SPEC, fw } from './fixtures';
const ready = (f: WizardForm) => withEngineDefaults(f, ENGINE_SPEC);

describe('wizard defaults: the engine’s', () => {
  it('targets the firmware model, only outdated and online devices', () => {
    const f = defaultForm(fw({ id: 7, version: '2.0.0', model: 'boiler' }));
    expect(targetExpression(f, { model: 'boiler', chip: 'esp32' })).toBe('model:boiler and outdated and online');
    expect(f.name).toBe('boiler 2.0.0');
  });
  it('leaves every setting out of the request until the engine’s defaults are in (the engine fills them)', () => {
    const boiler = fw({ id: 7, version: '2.0.0', model: 'boiler' });
    const req = buildRequest(defaultForm(boiler), boiler, true);
    expect(req).toEqual({ firmware: '7', target: 'model:boiler and outdated and online', name: 'boiler 2.0.0', allow_downgrade: false, start_at: null, command_rate: null, start: true });
    expect(req.waves).toBeUndefined();
  });
  it('takes the engine’s defaults from a preview’s spec, once, and sends them back', () => {
    const f = ready(defaultForm(fw({ id: 7, version: '2.0.0', model: 'boiler' })));
    expect([f.waves, f.maxFailures, f.successGate, f.concurrency, f.stepTimeout, f.retries]).toEqual(['1,10%,50%,100%', '10%', 90, 20, 300, 1]);
    const req = buildRequest(f, undefined, true);
    expect(req.waves).toEqual(ENGINE_SPEC.waves);
    expect(req.max_failures).toEqual({ percent: 10 });
    expect([req.success_gate, req.concurrency, req.step_timeout_secs, req.retries, req.manual_approval, req.window]).toEqual([90, 20, 300, 1, false, null]);
    // what the technician changed stays (a later spec does not overwrite it)
    const edited = withEngineDefaults({ ...f, concurrency: 5 }, { ...ENGINE_SPEC, concurrency: 50 });
    expect(edited.concurrency).toBe(5);
  });
  it('builds expressions for a selection, a label, and nothing', () => {
    const f = defaultForm(undefined, ['aa:bb:cc:00:11:22', 'aa:bb:cc:00:11:23']);
    expect(f.scope).toBe('selection');
    expect(targetExpression({ ...f, onlyOutdated: false }, undefined)).toBe('device:aa:bb:cc:00:11:22,aa:bb:cc:00:11:23 and online');
    expect(targetExpression({ ...f, scope: 'label', label: ' line-3 ' }, undefined)).toBe('label:line-3 and outdated and online');
    expect(targetExpression({ ...f, scope: 'all', onlyOnline: false, onlyOutdated: false }, undefined)).toBe('all');
  });
});

describe('start time and command rate', () => {
  it('sends a start time as RFC 3339 and shows one back as a local datetime-local value', () => {
    expect(parseStartAt('')).toBeNull();
    const iso = parseStartAt('2026-03-03T22:00');
    expect(iso).toBe(new Date(2026, 2, 3, 22, 0).toISOString());
    expect(startAtInput(iso)).toBe('2026-03-03T22:00');
    expect(startAtInput(null)).toBe('');
    expect(() => parseStartAt('tomorrow-ish')).toThrow(/not a date/);
    const f = { ...ready(defaultForm(fw({ id: 1, version: '2.0.0' }))), startAt: '2026-03-03T22:00' };
    expect(buildRequest(f, undefined, true).start_at).toBe(iso);
  });
  it('sends a command rate per second, from per second or per minute; empty is no limit', () => {
    expect(parseRate('', 'second')).toBeNull();
    expect(parseRate('2', 'second')).toBe(2);
    expect(parseRate('30', 'minute')).toBe(0.5);
    expect(parseRate(30, 'minute')).toBe(0.5); // a number input binds a number
    expect(parseRate(null, 'second')).toBeNull(); // …and null once emptied
    expect(() => parseRate('0', 'second')).toThrow(/above 0/);
    expect(() => parseRate('fast', 'minute')).toThrow();
    const f = { ...ready(defaultForm(fw({ id: 1, version: '2.0.0' }))), rate: '30', rateUnit: 'minute' as const };
    expect(buildRequest(f, undefined, true).command_rate).toBe(0.5);
  });
  it('says a rate as people do', () => {
    expect(commandRateText(2)).toBe('2 commands/s');
    expect(commandRateText(1)).toBe('1 command/s');
    expect(commandRateText(0.5)).toBe('30 commands/min');
    expect(commandRateText(1 / 60)).toBe('1 command/min');
  });
});

describe('waves and thresholds', () => {
  it('parses and formats wave lists, refusing bad parts', () => {
    expect(formatWaves(parseWaves(' 1, 10% ,50%,100%'))).toBe('1,10%,50%,100%');
    expect(() => parseWaves('1,0%')).toThrow(/0%/);
    expect(() => parseWaves('1,abc')).toThrow(/abc/);
    expect(() => parseWaves('')).toThrow();
    expect(parseThreshold('3')).toEqual({ count: 3 });
    expect(() => parseThreshold('x')).toThrow();
  });
  it('computes wave sizes like the engine: percentages round up, empty waves dropped, tail implied', () => {
    const w = parseWaves('1,10%,50%,100%');
    expect(waveEnds(w, 200)).toEqual([1, 20, 100, 200]);
    expect(waveSizes(w, 200)).toEqual([1, 19, 80, 100]);
    expect(waveSizes(w, 5)).toEqual([1, 2, 2]); // 10% of 5 → 1 (same as wave 1: dropped), 50% → 3
    expect(waveSizes(w, 1)).toEqual([1]);
    expect(waveSizes(w, 0)).toEqual([]);
    expect(waveSizes(parseWaves('5,50%'), 30)).toEqual([5, 10, 15]);
    expect(waveEnds(parseWaves('10%'), 30)).toEqual([3, 30]);
  });
});

describe('skip reasons grouped', () => {
  it('groups skip reasons that differ only in numbers', () => {
    const g = groupSkipped([
      { mac: 'a', reason: 'would downgrade 3.0.0 → 2.0.0 (allow it explicitly)' },
      { mac: 'b', reason: 'would downgrade 3.1.0 → 2.0.0 (allow it explicitly)' },
      { mac: 'c', reason: 'running version unknown' },
    ]);
    expect(g[0].macs).toEqual(['a', 'b']);
    expect(g[0].reason).toBe('would downgrade … → … (allow it explicitly)');
    expect(g[1].reason).toBe('running version unknown');
  });
});

describe('wizard steps', () => {
  const f2 = fw({ id: 9, version: '2.0.0' });
  it('opens any step once the steps before it are valid (all of them, with the engine’s defaults)', () => {
    const valid = stepsValid(ready(defaultForm(f2)), f2, null);
    expect(valid).toEqual([true, true, true, true]);
    for (let i = 0; i < STEPS.length; i++) expect(canOpenStep(i, valid)).toBe(true);
  });
  it('stops at the first step that needs something', () => {
    const noFw = stepsValid(defaultForm(undefined), undefined, null);
    expect(noFw[0]).toBe(false);
    expect([0, 1, 2, 3].map((i) => canOpenStep(i, noFw))).toEqual([true, false, false, false]);
    // the settings step waits for the engine's defaults
    expect(stepsValid(defaultForm(f2), f2, null)).toEqual([true, true, false, false]);
    const badWaves = stepsValid({ ...ready(defaultForm(f2)), waves: '1,0%' }, f2, null);
    expect([0, 1, 2, 3].map((i) => canOpenStep(i, badWaves))).toEqual([true, true, true, false]);
    const refused = stepsValid(ready(defaultForm(f2)), f2, 'The engine refused this target: unknown word');
    expect([0, 1, 2, 3].map((i) => canOpenStep(i, refused))).toEqual([true, true, false, false]);
    expect(stepsValid({ ...defaultForm(f2), scope: 'label', label: ' ' }, f2, null)[1]).toBe(false);
    expect(stepsValid({ ...ready(defaultForm(f2)), concurrency: 0 }, f2, null)[2]).toBe(false);
    expect(stepsValid({ ...ready(defaultForm(f2)), maxFailures: 'lots' }, f2, null)[2]).toBe(false);
    expect(stepsValid({ ...ready(defaultForm(f2)), rate: '-1' }, f2, null)[2]).toBe(false);
    expect(stepsValid({ ...ready(defaultForm(f2)), startAt: 'soon' }, f2, null)[2]).toBe(false);
  });
});
