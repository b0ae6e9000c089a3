import { describe, expect, it } from 'vitest';
import { STEPS, buildRequest, canOpenStep, defaultForm, outdatedCount, skipReason, parseThreshold, parseWaves, pickDefaultFirmware, stepsValid, targetExpression, waveEnds, waveSizes, formatWaves, groupSkipped } from './wizard';
import { dev, fw } from './fixtures';

describe('wizard defaults', () => {
  it('preselects the newest non-blocked firmware, stable over beta at the same version', () => {
    const list = [
      fw({ id: 1, version: '1.0.0' }),
      fw({ id: 2, version: '3.0.0', blocked: true }),
      fw({ id: 3, version: '2.0.0', channel: 'beta' }),
      fw({ id: 4, version: '2.0.0', channel: 'stable' }),
      fw({ id: 5, version: '2.0.0-rc.9' }),
    ];
    expect(pickDefaultFirmware(list)?.id).toBe(4);
    expect(pickDefaultFirmware([fw({ version: '1.0.0', blocked: true })])).toBeUndefined();
    // prefers firmware that some device actually needs
    expect(pickDefaultFirmware(list, (f) => (f.id === 1 ? 5 : 0))?.id).toBe(1);
    expect(pickDefaultFirmware(list, () => 0)?.id).toBe(4);
  });
  it('targets the firmware model, only outdated and online, waves 1,10%,50%,100%, gate 10%', () => {
    const f = defaultForm(fw({ id: 7, version: '2.0.0', model: 'boiler' }));
    expect(targetExpression(f, { model: 'boiler', chip: 'esp32' })).toBe('model:boiler and outdated and online');
    const req = buildRequest(f, undefined, true);
    expect(req.firmware).toBe('7');
    expect(req.waves).toEqual([{ count: 1 }, { percent: 10 }, { percent: 50 }, { percent: 100 }]);
    expect(req.max_failures).toEqual({ percent: 10 });
    expect(req.start).toBe(true);
  });
  it('builds expressions for a selection, a label, and nothing', () => {
    const f = defaultForm(undefined, ['aa:bb:cc:00:11:22', 'aa:bb:cc:00:11:23']);
    expect(f.scope).toBe('selection');
    expect(targetExpression({ ...f, onlyOutdated: false }, undefined)).toBe('device:aa:bb:cc:00:11:22,aa:bb:cc:00:11:23 and online');
    expect(targetExpression({ ...f, scope: 'label', label: ' line-3 ' }, undefined)).toBe('label:line-3 and outdated and online');
    expect(targetExpression({ ...f, scope: 'all', onlyOnline: false, onlyOutdated: false }, undefined)).toBe('all');
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

describe('skip reasons and outdated counts', () => {
  const f2 = fw({ id: 9, version: '2.0.0' });
  const devices = [
    dev({ mac: 'a1', version: '1.0.0' }),
    dev({ mac: 'a2', version: '2.0.0' }),
    dev({ mac: 'a3', version: '1.0.0', online: false }),
    dev({ mac: 'a4', version: '1.0.0', chip: 'esp8266', model: null }),
    dev({ mac: 'a5', version: '1.0.0', family: 'tasmota', labels: ['x'] }),
    dev({ mac: 'a6', version: '3.0.0', labels: ['x'] }),
    dev({ mac: 'a7', version: '1.0.0', model: 'other' }),
  ];
  it('says why a device cannot take a firmware', () => {
    const reasons = Object.fromEntries(devices.map((d) => [d.mac, skipReason(f2, d, false)]));
    expect(reasons.a1).toBeNull();
    expect(reasons.a2).toMatch(/already on 2.0.0/);
    expect(reasons.a4).toMatch(/chip esp8266/);
    expect(reasons.a5).toMatch(/family tasmota/);
    expect(reasons.a6).toMatch(/downgrade/);
    expect(skipReason(f2, devices[5], true)).toBeNull();
  });
  it('counts the devices of the model on an older version that could take it', () => {
    expect(outdatedCount(f2, devices)).toBe(2); // a1, a3 (offline devices count: a rollout may wait for them)
  });
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
  it('opens any step once the steps before it are valid (all of them, with the defaults)', () => {
    const valid = stepsValid(defaultForm(f2), f2, null);
    expect(valid).toEqual([true, true, true, true]);
    for (let i = 0; i < STEPS.length; i++) expect(canOpenStep(i, valid)).toBe(true);
  });
  it('stops at the first step that needs something', () => {
    const noFw = stepsValid(defaultForm(undefined), undefined, null);
    expect(noFw[0]).toBe(false);
    expect([0, 1, 2, 3].map((i) => canOpenStep(i, noFw))).toEqual([true, false, false, false]);
    const badWaves = stepsValid({ ...defaultForm(f2), waves: '1,0%' }, f2, null);
    expect([0, 1, 2, 3].map((i) => canOpenStep(i, badWaves))).toEqual([true, true, true, false]);
    const refused = stepsValid(defaultForm(f2), f2, 'The engine refused this target: unknown word');
    expect([0, 1, 2, 3].map((i) => canOpenStep(i, refused))).toEqual([true, true, false, false]);
    expect(stepsValid({ ...defaultForm(f2), scope: 'label', label: ' ' }, f2, null)[1]).toBe(false);
    expect(stepsValid({ ...defaultForm(f2), concurrency: 0 }, f2, null)[2]).toBe(false);
    expect(stepsValid({ ...defaultForm(f2), maxFailures: 'lots' }, f2, null)[2]).toBe(false);
  });
});
