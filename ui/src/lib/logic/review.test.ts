import { describe, expect, it } from 'vitest';
import { buildRequest, defaultForm, targetExpression } from './wizard';
import { describeSafety, describeTarget, describeWaves, newestForModel, outdatedByFirmware, reviewForm, selectionByModel, wizardParams } from './review';
import { dev, fw } from './fixtures';

const library = [
  fw({ id: 1, version: '1.0.0', model: 'demo' }),
  fw({ id: 2, version: '2.0.0', model: 'demo' }),
  fw({ id: 3, version: '2.1.0', model: 'demo', blocked: true }),
  fw({ id: 4, version: '2.0.0', model: 'demo', channel: 'beta' }),
  fw({ id: 5, version: '5.0.0', model: 'pump', chip: 'esp8266' }),
];

describe('the review’s plan', () => {
  it('from a firmware: its model’s online devices that run an older version, default waves and pause', () => {
    const f = reviewForm(library[1]);
    const req = buildRequest(f, library[1], true);
    expect(req.target).toBe('model:demo and outdated and online');
    expect(req.firmware).toBe('2');
    expect(req.waves).toEqual([{ count: 1 }, { percent: 10 }, { percent: 50 }, { percent: 100 }]);
    expect(req.max_failures).toEqual({ percent: 10 });
    // the engine's defaults for the rest (flotilla-proto RolloutSpec)
    expect([req.success_gate, req.concurrency, req.step_timeout_secs, req.retries, req.manual_approval, req.window, req.allow_downgrade]).toEqual([90, 20, 300, 1, false, null, false]);
    expect(req.start).toBe(true);
  });
  it('from a selection: exactly those devices', () => {
    const f = reviewForm(library[1], ['aa:00:00:00:00:01', 'aa:00:00:00:00:02']);
    expect(targetExpression(f, library[1])).toBe('device:aa:00:00:00:00:01,aa:00:00:00:00:02');
  });
  it('"Change settings…" opens the wizard with the same spec', () => {
    for (const f of [reviewForm(library[1]), reviewForm(library[1], ['aa:00:00:00:00:01'])]) {
      const p = wizardParams(f);
      // What the wizard builds from its route parameters (Wizard.svelte): the defaults, the
      // selection, the two flags, then the firmware it is given.
      const w = Object.assign(defaultForm(undefined, p.devices ?? []), { onlyOutdated: p.onlyOutdated, onlyOnline: p.onlyOnline }, { firmware: p.firmware, name: f.name });
      expect(buildRequest(w, library[1], true)).toEqual(buildRequest(f, library[1], true));
    }
  });
  it('picks the newest usable firmware of a model (stable before beta, never blocked)', () => {
    expect(newestForModel(library, 'demo')?.id).toBe(2);
    expect(newestForModel(library, 'pump')?.id).toBe(5);
    expect(newestForModel(library, 'boiler')).toBeUndefined();
  });
});

describe('selections and outdated devices, one review per firmware', () => {
  const fleet = [
    dev({ mac: 'd1', version: '1.0.0' }),
    dev({ mac: 'd2', version: '1.0.0' }),
    dev({ mac: 'd3', version: '2.0.0' }),
    dev({ mac: 'p1', model: 'pump', chip: 'esp8266', version: '4.0.0' }),
    dev({ mac: 'x1', model: null, chip: null, version: null }),
    dev({ mac: 'b1', model: 'boiler', version: '1.0.0' }),
  ];
  it('groups a selection by model, each with its newest firmware; largest first, no-firmware last', () => {
    const g = selectionByModel(fleet, library);
    expect(g.map((c) => [c.model, c.firmware?.id ?? null, c.macs])).toEqual([
      ['demo', 2, ['d1', 'd2', 'd3']],
      ['pump', 5, ['p1']],
      ['boiler', null, ['b1']],
      [null, null, ['x1']],
    ]);
    expect(selectionByModel(fleet.slice(0, 2), library)).toHaveLength(1);
  });
  it('lists, per firmware, the devices outdated against it (the overview tile’s count)', () => {
    const g = outdatedByFirmware(fleet, library);
    expect(g.map((c) => [c.model, c.firmware?.id, c.macs])).toEqual([
      ['demo', 2, ['d1', 'd2']],
      ['pump', 5, ['p1']],
    ]);
    expect(outdatedByFirmware(fleet.filter((d) => d.mac !== 'p1'), library)).toHaveLength(1);
    expect(outdatedByFirmware([dev({ mac: 'd3', version: '2.0.0' })], library)).toEqual([]);
  });
});

describe('the plan in words', () => {
  const f2 = library[1];
  it('says who is targeted', () => {
    expect(describeTarget(reviewForm(f2), f2)).toBe('online devices of model demo that run a version older than 2.0.0');
    expect(describeTarget(reviewForm(f2, ['a', 'b', 'c']), f2)).toBe('the 3 selected devices');
    expect(describeTarget(reviewForm(f2, ['a']), f2)).toBe('the selected device');
    expect(describeTarget({ ...defaultForm(f2, ['a', 'b']) }, f2)).toBe('the 2 selected devices that are online and run a version older than 2.0.0');
    expect(describeTarget({ ...defaultForm(f2), scope: 'label', label: 'line-3', onlyOnline: false }, f2)).toBe('devices labelled line-3 that run a version older than 2.0.0');
    expect(describeTarget({ ...defaultForm(f2), scope: 'all', onlyOnline: false, onlyOutdated: false }, f2)).toBe('every device');
    expect(describeTarget({ ...defaultForm(f2), scope: 'custom', custom: 'label:x and online' }, f2)).toBe('devices matching label:x and online');
  });
  it('says the waves and the safety settings', () => {
    expect(describeWaves([1, 4, 19, 24])).toBe('1 device first, then 4, then 19, then 24');
    expect(describeWaves([3])).toBe('3 devices, in one wave');
    expect(describeWaves([])).toBe('no device');
    expect(describeSafety(reviewForm(f2))).toEqual([
      'Pauses by itself when more than 10 % of a wave fail.',
      'The next wave starts once 90 % of a wave succeeded.',
      'At most 20 devices update at once.',
      'A device that does not finish a step within 300 s times out; 1 retry after a transient failure.',
      'Runs at any time of day.',
    ]);
    expect(describeSafety({ ...reviewForm(f2), maxFailures: '2', manualApproval: true, retries: 0, window: 'mon-fri 22:00-05:00' })).toEqual([
      'Pauses by itself when more than 2 devices fail.',
      'The next wave starts once 90 % of a wave succeeded and you approve it.',
      'At most 20 devices update at once.',
      'A device that does not finish a step within 300 s times out.',
      'New devices are commanded only within mon-fri 22:00-05:00.',
    ]);
  });
});
