import { describe, expect, it } from 'vitest';
import type { Event } from '../api/types';
import { actorName, describeEvent, eventSearchText, recentFailures, rolloutLabel, sentenceText, subjectOf, type Lookup } from './events';

const MAC = '02:dd:60:00:00:0f';
const look: Lookup = {
  device: (mac) => (mac === MAC ? { mac, name: null, device_id: 'demo-native-pull-15' } : undefined),
  rollout: (id) => (id === 3 ? { id, name: 'line 3 to 2.0.0', firmware_version: '2.0.0' } : undefined),
  firmware: (id) => (id === 1 ? { id, model: 'demo', version: '2.0.0' } : undefined),
};

let seq = 0;
function ev(kind: string, data: Record<string, unknown>, subject: string | null = null, actor = 'engine', id = ++seq): Event {
  return { id, at: '2024-05-01T10:00:00Z', kind, actor, subject, data: data as Event['data'] };
}
const say = (e: Event) => sentenceText(describeEvent(e, look).parts);
const job = (state: string, extra: Record<string, unknown> = {}) =>
  ev(`job.${state}`, { rollout: 3, job: 7, mac: MAC, wave: 3, attempt: 1, detail: null, ...extra }, `device:${MAC}`);

describe('events in words', () => {
  it('names devices, rollouts and firmware instead of MACs and ids', () => {
    expect(rolloutLabel(3, 'line 3 to 2.0.0')).toBe('Rollout 3 “line 3 to 2.0.0”');
    expect(rolloutLabel(4, '')).toBe('Rollout 4');
    expect(rolloutLabel(4, 'Rollout 4')).toBe('Rollout 4');
    expect(subjectOf({ subject: `device:${MAC}`, data: {} }, look)).toEqual({ text: 'demo-native-pull-15', href: `#/devices/${encodeURIComponent(MAC)}` });
    expect(subjectOf({ subject: 'rollout:3', data: {} }, look)).toEqual({ text: 'Rollout 3 “line 3 to 2.0.0”', href: '#/rollouts/3' });
    expect(subjectOf({ subject: 'firmware:1', data: {} }, look)?.text).toBe('Firmware demo 2.0.0');
    expect(subjectOf({ subject: 'firmware:9', data: { version: '1.5.0' } }, look)?.text).toBe('Firmware 1.5.0');
    expect(subjectOf({ subject: null, data: {} }, look)).toBeNull();
    expect(actorName('admin-api', look)).toBe('admin');
    expect(actorName(`mqtt:${MAC}`, look)).toBe('demo-native-pull-15');
    expect(actorName('device:aa:bb:cc:dd:ee:ff', look)).toBe('aa:bb:cc:dd:ee:ff');
  });

  it('says how a device proved itself, and what was refused', () => {
    expect(say(ev('device.enrolled', { mac: MAC, device_id: 'x', generation: 1, state: 'approved' }, `device:${MAC}`))).toBe('demo-native-pull-15 enrolled');
    expect(say(ev('device.enrolled', { mac: MAC, state: 'pending' }))).toBe('demo-native-pull-15 enrolled: it waits for approval');
    expect(say(ev('device.approved', { mac: MAC }))).toBe('demo-native-pull-15 approved: it gets updates');
    expect(say(ev('device.rekeyed', { mac: MAC }))).toBe('demo-native-pull-15 re-keyed: its next check-in enrols it again');
    const refused = ev('security.refused', { what: 'check-in', mac: MAC, device_id: 'x', ip: '10.0.0.9', reason: 'no credential' }, `device:${MAC}`);
    expect(say(refused)).toBe('Refused a check-in from 10.0.0.9 as demo-native-pull-15: no credential');
    expect(describeEvent(refused, look).bad).toBe(true);
    expect(say(ev('security.refused', { what: 'report', mac: null, device_id: 'ghost', ip: null, reason: 'unknown job' }))).toBe(
      'Refused a report as ghost: unknown job',
    );
    expect(say(ev('discovery.scan', { subnet: '10.0.0.0/24', addresses: 254, found: 3 }))).toBe('Scan of 10.0.0.0/24: 3 devices found among 254 addresses');
    expect(say(ev('credentials.set', { scope: 'tasmota', username: 'admin' }))).toBe('Credential of tasmota set (user admin)');
    expect(say(ev('credentials.removed', { scope: 'tasmota' }))).toBe('Credential of tasmota removed');
  });

  it('says what happened to a device', () => {
    expect(say(ev('device.discovered', { mac: MAC, device_id: 'x', ip: '10.0.0.5', version: '1.0.0', online: true }, `device:${MAC}`))).toBe(
      'demo-native-pull-15 discovered: runs 1.0.0 at 10.0.0.5',
    );
    expect(say(ev('device.changed', { mac: MAC, ip: null, version: null, online: false }))).toBe('demo-native-pull-15 changed: version unknown, offline');
    expect(say(ev('device.offline', { mac: MAC, reason: 'not seen' }))).toBe('demo-native-pull-15 went offline (not seen)');
    expect(say(ev('device.offline', { mac: MAC }))).toBe('demo-native-pull-15 went offline');
    expect(say(ev('device.address_moved', { ip: '10.0.0.5', from: MAC, to: 'aa:bb:cc:00:00:0b' }, `device:${MAC}`))).toBe(
      'demo-native-pull-15 lost its address 10.0.0.5 to aa:bb:cc:00:00:0b: its address is unknown until it reports again',
    );
    expect(say(ev('device.labelled', { mac: MAC, added: ['line-3', 'pumps'], removed: ['old'], labels: [] }))).toBe(
      'Labels of demo-native-pull-15: added line-3, pumps; removed old',
    );
    expect(say(ev('device.channel', { mac: MAC, set: 'beta', channel: 'beta', from: 'device' }))).toBe('demo-native-pull-15 follows the beta channel (set on the device)');
    expect(say(ev('device.channel', { mac: MAC, set: null, channel: 'beta', from: 'label:lab' }))).toBe('demo-native-pull-15 follows the beta channel (from label lab)');
    expect(say(ev('device.channel', { mac: MAC, set: null, channel: 'stable', from: null }))).toBe('demo-native-pull-15 follows the stable channel (the default)');
    expect(say(ev('label.channel', { label: 'lab', channel: 'beta' }, 'label:lab'))).toBe('Label lab: its devices follow the beta channel');
    expect(say(ev('label.channel', { label: 'lab', channel: null }, 'label:lab'))).toBe('Label lab: no channel any more (its devices follow stable, unless set otherwise)');
    expect(say(ev('device.forgotten', { mac: MAC, name: 'pump-7', device_id: null }))).toBe('pump-7 forgotten: it leaves the inventory until it shows up again');
  });

  it('says each step of a device’s update, with the rollout, wave and reason', () => {
    expect(say(job('queued'))).toBe('demo-native-pull-15 queued in Rollout 3 “line 3 to 2.0.0” (wave 3)');
    expect(say(job('commanded', { attempt: 2 }))).toBe('demo-native-pull-15 commanded to update in Rollout 3 “line 3 to 2.0.0” (wave 3, attempt 2)');
    expect(say(job('succeeded'))).toBe('demo-native-pull-15 updated to 2.0.0 in Rollout 3 “line 3 to 2.0.0” (wave 3)');
    const failed = describeEvent(job('failed', { detail: 'came back on 1.0.0' }), look);
    expect(sentenceText(failed.parts)).toBe('demo-native-pull-15 failed in Rollout 3 “line 3 to 2.0.0” (wave 3): came back on 1.0.0');
    expect(failed.bad).toBe(true);
    expect(failed.parts).toContainEqual({ text: 'demo-native-pull-15', href: `#/devices/${encodeURIComponent(MAC)}` });
    expect(failed.parts).toContainEqual({ text: 'Rollout 3 “line 3 to 2.0.0”', href: '#/rollouts/3' });
    expect(say(job('timed_out', { detail: 'no progress for 300 s' }))).toMatch(/timed out in .*: no progress for 300 s$/);
    const verbs: [string, string][] = [
      ['downloading', 'downloading'],
      ['installing', 'installing'],
      ['rebooting', 'rebooting'],
      ['verifying', 'verifying its version'],
      ['skipped', 'skipped'],
      ['cancelled', 'cancelled'],
    ];
    for (const [s, verb] of verbs) expect(say(job(s))).toBe(`demo-native-pull-15 ${verb} in Rollout 3 “line 3 to 2.0.0” (wave 3)`);
  });

  it('says what happened to a rollout, with the reason of a pause', () => {
    const r = (kind: string, data: Record<string, unknown> = {}) => say(ev(`rollout.${kind}`, { id: 3, ...data }, 'rollout:3', 'admin-api'));
    expect(r('created', { firmware: 1, devices: 46, skipped: 2 })).toBe('Rollout 3 “line 3 to 2.0.0” created: firmware demo 2.0.0, 46 devices to update, 2 skipped');
    expect(r('started')).toBe('Rollout 3 “line 3 to 2.0.0” started');
    // waves are numbered from 1 in events, as everywhere
    expect(r('running', { state: 'running', wave: 1, reason: null })).toBe('Rollout 3 “line 3 to 2.0.0” running (wave 1)');
    expect(r('running', { state: 'running', action: 'started', wave: 1 })).toBe('Rollout 3 “line 3 to 2.0.0” started (wave 1)');
    expect(r('running', { state: 'running', action: 'resumed', wave: 3 })).toBe('Rollout 3 “line 3 to 2.0.0” resumed at wave 3');
    expect(r('running', { state: 'running', action: 'retried', wave: 2 })).toBe('Rollout 3 “line 3 to 2.0.0” running again: failed devices retried (wave 2)');
    expect(r('paused', { state: 'paused', wave: 3, pause_kind: 'approval', reason: 'wave 2 of 4 done; waiting for approval (resume) to start wave 3' })).toBe(
      'Rollout 3 “line 3 to 2.0.0” waits for approval: wave 2 of 4 done; waiting for approval (resume) to start wave 3',
    );
    expect(r('acknowledged', { failures: 2 })).toBe('Rollout 3 “line 3 to 2.0.0”: 2 failed devices acknowledged on resume (no longer counted against the failure threshold and the success gate)');
    expect(r('scheduled', { state: 'scheduled' })).toBe('Rollout 3 “line 3 to 2.0.0” scheduled: it starts at its start time');
    expect(r('paused', { state: 'paused', wave: 2, reason: 'wave 3 of 4: 2 of 19 devices failed (threshold 10%)' })).toBe(
      'Rollout 3 “line 3 to 2.0.0” paused: wave 3 of 4: 2 of 19 devices failed (threshold 10%)',
    );
    expect(r('resumed', { wave: 3 })).toBe('Rollout 3 “line 3 to 2.0.0” resumed at wave 3');
    expect(r('completed', { state: 'completed' })).toBe('Rollout 3 “line 3 to 2.0.0” completed');
    expect(r('cancelled', { state: 'cancelled' })).toBe('Rollout 3 “line 3 to 2.0.0” cancelled');
    expect(r('wave_started', { wave: 2 })).toBe('Rollout 3 “line 3 to 2.0.0”: wave 2 started');
    expect(say(ev('rollout.completed', { id: 8 }, 'rollout:8'))).toBe('Rollout 8 completed');
  });

  it('says what happened to firmware, settings, the engine and the demo', () => {
    expect(say(ev('firmware.imported', { id: 1, sha256: 'ab', version: '2.0.0', model: 'demo', chip: 'esp32', size: 600_000 }, 'firmware:1'))).toBe(
      'Firmware demo 2.0.0 imported (esp32, 585.9 KiB)',
    );
    // null in a patch is "unchanged" (the engine logs the whole patch): only what was set is said
    expect(say(ev('firmware.changed', { id: 1, change: { blocked: true, public: null, channel: null, notes: null, archived: null, min_version: null } }))).toBe('Firmware demo 2.0.0 blocked');
    expect(say(ev('firmware.changed', { id: 1, change: { notes: '' } }))).toBe('Firmware demo 2.0.0 notes removed');
    expect(say(ev('firmware.changed', { id: 1, change: { notes: 'new' } }))).toBe('Firmware demo 2.0.0 notes changed');
    expect(say(ev('firmware.changed', { id: 1, change: { blocked: false, channel: 'beta' } }))).toBe('Firmware demo 2.0.0 unblocked, moved to the beta channel');
    expect(say(ev('firmware.changed', { id: 1, change: { archived: true } }))).toBe('Firmware demo 2.0.0 archived');
    expect(say(ev('firmware.changed', { id: 1, change: { archived: false, min_version: '1.2.0' } }))).toBe('Firmware demo 2.0.0 unarchived, needs 1.2.0 first');
    expect(say(ev('firmware.changed', { id: 1, change: { min_version: '' } }))).toBe('Firmware demo 2.0.0 stepping stone removed');
    expect(say(ev('firmware.deleted', { id: 5, sha256: 'cd', version: '1.9.0' }, 'firmware:5'))).toBe('Firmware 1.9.0 deleted');
    expect(say(ev('settings.saved', { mqtt: 'embedded' }))).toBe('Settings saved; the engine uses them from its next start');
    expect(say(ev('engine.started', { admin_url: 'http://127.0.0.1:8071', device_url: 'http://10.0.0.2:8070' }))).toBe(
      'Engine started; devices reach it at http://10.0.0.2:8070',
    );
    expect(say(ev('engine.stopped', {}))).toBe('Engine stopped');
    expect(say(ev('demo.started', { devices: 48, firmware: '2.0.0', summary: '…' }))).toBe('Demo fleet started: 48 simulated devices, demo firmware 2.0.0');
  });

  it('falls back to the kind for what it does not know, and never throws on odd data', () => {
    expect(say(ev('device.seen', { mac: MAC }))).toBe('device.seen');
    expect(say(ev('lagged', {}))).toBe('lagged');
    expect(say(ev('rollout.paused', {}))).toBe('rollout.paused');
    expect(say(ev('job.failed', null as unknown as Record<string, unknown>))).toMatch(/failed/);
    expect(say(ev('firmware.changed', { change: 'weird' }))).toBe('Firmware ? changed');
  });

  it('finds an event by what it shows and by what it holds', () => {
    const e = job('failed', { detail: 'came back on 1.0.0' });
    const hay = eventSearchText(e, describeEvent(e, look));
    for (const q of ['pull-15', 'line 3', 'came back', MAC, 'job.failed']) expect(hay).toContain(q);
  });
});

describe('recent failures', () => {
  it('one line per device: its latest failure, and how many attempts in that rollout failed', () => {
    const a = job('failed', { detail: 'first' });
    const b = job('timed_out', { detail: 'second', attempt: 2 });
    const other = ev('job.failed', { rollout: 3, mac: 'aa:aa:aa:aa:aa:aa', detail: 'x' }, 'device:aa:aa:aa:aa:aa:aa');
    const ok = job('succeeded');
    const lines = recentFailures([b, ok, other, a, b /* seen twice: live and from the log */]);
    expect(lines.map((l) => l.mac)).toEqual(['aa:aa:aa:aa:aa:aa', MAC]);
    const mine = lines[1];
    expect(mine.latest.id).toBe(b.id);
    expect(mine.count).toBe(2);
    expect(mine.detail).toBe('second');
    expect(mine.rollout).toBe(3);
    expect(lines[0].count).toBe(1);
  });
  it('keeps the newest devices first, up to the limit', () => {
    const evs = Array.from({ length: 12 }, (_, i) => ev('job.failed', { rollout: 1, mac: `m${i}` }));
    expect(recentFailures(evs, 8).map((l) => l.mac)).toEqual(['m11', 'm10', 'm9', 'm8', 'm7', 'm6', 'm5', 'm4']);
  });
});
