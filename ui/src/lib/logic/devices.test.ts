import { describe, expect, it } from 'vitest';
import type { Device } from '../api/types';
import { dev, fw } from './fixtures';
import { buildRows, filterRows, newestIndex, outdatedTarget, sortRows, updateSorted, EMPTY_FILTER, patchDevice } from './devices';

describe('outdated marking', () => {
  const idx = newestIndex([
    fw({ id: 1, version: '2.0.0' }),
    fw({ id: 2, version: '3.0.0', blocked: true }),
    fw({ id: 3, version: '2.1.0-rc.1' }),
    fw({ id: 4, version: '9.0.0', model: 'other' }),
    fw({ id: 5, version: '1.5.0', model: 'plug', chip: 'esp8266' }),
  ]);
  it('compares against the newest non-blocked firmware of the same model and chip', () => {
    expect(outdatedTarget(dev({ mac: 'a', version: '1.0.0' }), idx)).toBe('2.1.0-rc.1');
    expect(outdatedTarget(dev({ mac: 'a', version: '2.1.0' }), idx)).toBeNull();
    expect(outdatedTarget(dev({ mac: 'a', version: '2.1.0-rc.1' }), idx)).toBeNull();
  });
  it('ignores firmware for another chip even when the model matches', () => {
    expect(outdatedTarget(dev({ mac: 'a', model: 'plug', chip: 'esp32', version: '1.0.0' }), idx)).toBeNull();
    expect(outdatedTarget(dev({ mac: 'a', model: 'plug', chip: 'ESP8266', version: '1.0.0' }), idx)).toBe('1.5.0');
  });
  it('falls back to the chip when the device has no model', () => {
    expect(outdatedTarget(dev({ mac: 'a', model: null, chip: 'esp8266', version: '1.0.0' }), idx)).toBe('1.5.0');
  });
  it('offers a device only firmware of its channel (beta takes both), never archived firmware', () => {
    const lib = newestIndex([
      fw({ id: 1, version: '2.0.0' }),
      fw({ id: 2, version: '2.5.0', channel: 'beta' }),
      fw({ id: 3, version: '3.0.0', archived: true }),
    ]);
    expect(outdatedTarget(dev({ mac: 'a', version: '1.0.0' }), lib)).toBe('2.0.0');
    expect(outdatedTarget(dev({ mac: 'a', version: '2.0.0' }), lib)).toBeNull();
    expect(outdatedTarget(dev({ mac: 'a', version: '1.0.0', channel: 'beta' }), lib)).toBe('2.5.0');
    expect(outdatedTarget(dev({ mac: 'a', version: '2.0.0', channel: 'beta', model: null }), lib)).toBe('2.5.0');
  });
  it('never marks unknown or non-SemVer versions', () => {
    expect(outdatedTarget(dev({ mac: 'a', version: null }), idx)).toBeNull();
    expect(outdatedTarget(dev({ mac: 'a', version: 'v1-custom' }), idx)).toBeNull();
  });
});

describe('filter and sort', () => {
  const idx = newestIndex([fw({ version: '2.0.0' })]);
  const rows = buildRows(
    [
      dev({ mac: 'aa:00', name: 'Boiler Room', ip: '10.0.0.20', version: '1.0.0', labels: ['line-1'] }),
      dev({ mac: 'aa:01', name: 'Press 7', ip: '10.0.0.3', version: '2.0.0', online: false, labels: ['line-2'] }),
      dev({ mac: 'aa:02', name: 'Kiosk', family: 'tasmota', model: null, chip: 'esp8266', version: null, ip: null }),
      dev({ mac: 'aa:03', name: 'press 10', ip: '10.0.0.100', version: '1.9.9', labels: ['line-1', 'vip'] }),
    ],
    idx,
  );
  const macs = (r: readonly { d: Device }[]) => r.map((x) => x.d.mac);

  it('matches every word of the text, case-insensitively, across fields', () => {
    expect(macs(filterRows(rows, { ...EMPTY_FILTER, text: 'PRESS' }))).toEqual(['aa:01', 'aa:03']);
    expect(macs(filterRows(rows, { ...EMPTY_FILTER, text: 'press vip' }))).toEqual(['aa:03']);
    expect(macs(filterRows(rows, { ...EMPTY_FILTER, text: '10.0.0.3' }))).toEqual(['aa:01']);
  });
  it('combines family, online, label and version filters', () => {
    expect(macs(filterRows(rows, { ...EMPTY_FILTER, family: 'tasmota' }))).toEqual(['aa:02']);
    expect(macs(filterRows(rows, { ...EMPTY_FILTER, online: 'offline' }))).toEqual(['aa:01']);
    expect(macs(filterRows(rows, { ...EMPTY_FILTER, label: 'line-1', version: 'outdated' }))).toEqual(['aa:00', 'aa:03']);
    expect(macs(filterRows(rows, { ...EMPTY_FILTER, version: 'current' }))).toEqual(['aa:01']);
    expect(macs(filterRows(rows, { ...EMPTY_FILTER, version: 'unknown' }))).toEqual(['aa:02']);
    expect(macs(filterRows(rows, { ...EMPTY_FILTER, version: '=1.9.9' }))).toEqual(['aa:03']);
  });
  it('sorts names naturally, IPs numerically, versions by SemVer, missing last', () => {
    expect(macs(sortRows(rows, { key: 'name', dir: 1 }))).toEqual(['aa:00', 'aa:02', 'aa:01', 'aa:03']);
    expect(macs(sortRows(rows, { key: 'ip', dir: 1 }))).toEqual(['aa:01', 'aa:00', 'aa:03', 'aa:02']);
    expect(macs(sortRows(rows, { key: 'version', dir: -1 }))).toEqual(['aa:02', 'aa:01', 'aa:03', 'aa:00']);
  });
  it('updates a sorted table in place when no sort key changed, else asks for a sort', () => {
    const sorted = sortRows(rows, { key: 'name', dir: 1 });
    const pos = new Map(sorted.map((r, i) => [r.d.mac, i]));
    const list = rows.map((r) => r.d);
    expect(updateSorted(sorted, pos, list, idx, 'name')).toBe(sorted); // nothing changed
    const moved = list.map((d) => (d.mac === 'aa:01' ? patchDevice(d, { version: '2.1.0', online: true }) : d));
    const out = updateSorted(sorted, pos, moved, idx, 'name')!;
    expect(macs(out)).toEqual(macs(sorted));
    expect(out.find((r) => r.d.mac === 'aa:01')?.d.version).toBe('2.1.0');
    expect(sorted.find((r) => r.d.mac === 'aa:01')?.d.version).toBe('2.0.0'); // a copy, not a mutation
    expect(updateSorted(sorted, pos, moved, idx, 'version')).toBeNull(); // the sort key changed
    expect(updateSorted(sorted, pos, list.slice(1), idx, 'name')).toBeNull(); // a device went
    const renamed = list.map((d) => (d.mac === 'aa:01' ? patchDevice(d, { name: 'zzz' }) : d));
    expect(updateSorted(sorted, pos, renamed, idx, 'name')).toBeNull();
  });
  it('filters 10,000 rows quickly', () => {
    const many = buildRows(
      Array.from({ length: 10000 }, (_, i) => dev({ mac: `m${i}`, name: `device-${i}`, labels: [i % 2 ? 'odd' : 'even'] })),
      idx,
    );
    const t = performance.now();
    const out = filterRows(many, { ...EMPTY_FILTER, text: 'device-99', label: 'odd' });
    expect(performance.now() - t).toBeLessThan(50);
    expect(out.length).toBe(56);
  });
  it('patchDevice keeps identity when nothing changed', () => {
    const d = rows[0].d;
    expect(patchDevice(d, { ip: d.ip, online: true })).toBe(d);
    expect(patchDevice(d, { online: false })).not.toBe(d);
    expect(patchDevice(d, { online: false }).online).toBe(false);
  });
});

describe('row cache', () => {
  it('reuses rows of unchanged devices and rebuilds changed ones or all after a firmware change', () => {
    const idx = newestIndex([fw({ version: '2.0.0' })]);
    const a = dev({ mac: 'a' });
    const b = dev({ mac: 'b' });
    const first = buildRows([a, b], idx);
    const b2 = patchDevice(b, { version: '2.0.0' });
    const second = buildRows([a, b2], idx);
    expect(second[0]).toBe(first[0]);
    expect(second[1]).not.toBe(first[1]);
    expect(second[1].newer).toBeNull();
    const third = buildRows([a, b2], newestIndex([fw({ version: '3.0.0' })]));
    expect(third[0]).not.toBe(first[0]);
    expect(third[1].newer).toBe('3.0.0');
  });
});
