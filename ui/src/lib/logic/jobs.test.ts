import { describe, expect, it } from 'vitest';
import { jobMatches, jobProgress, jobSearchKey, jobVersions, versionSinceReboot } from './jobs';
import type { LiveJob } from './progress';
import { dev } from './fixtures';

const job = (p: Partial<LiveJob> & { mac: string }): LiveJob => ({
  id: 1, wave: 0, state: 'queued', progress: null, error: null, doneAt: null, updatedAt: 0, fromVersion: '1.0.0', currentVersion: null, attempts: 1, ...p,
});

describe('the live rollout’s device search', () => {
  // What the rows show: name ?? device id ?? MAC, the MAC, the state, from → to, the error.
  const named = dev({ mac: '02:dd:60:00:00:0f', name: null, device_id: 'demo-native-pull-15', ip: '127.20.0.16' });
  const j = job({ mac: named.mac, state: 'failed', error: 'came back on 1.0.0, not 2.0.0', currentVersion: '1.0.0' });

  it('finds a device by the name shown, not only by `name` (the device id of unnamed devices)', () => {
    for (const q of ['pull-15', 'demo', 'DEMO-native', 'demo-native-pull-15']) expect(jobMatches(j, named, q), q).toBe(true);
  });
  it('finds it by MAC, IP, state, version and error; every word must match', () => {
    for (const q of ['02:dd:60:00:00:0f', '00:0f', '127.20.0.16', 'failed', '1.0.0 → 1.0.0', 'came back', 'pull-15 came', '  pull-15   failed ']) {
      expect(jobMatches(j, named, q), q).toBe(true);
    }
    for (const q of ['pull-16', 'succeeded', 'pull-15 timeout']) expect(jobMatches(j, named, q), q).toBe(false);
    expect(jobMatches(j, named, '')).toBe(true);
  });
  it('still finds a device the inventory does not know, by MAC', () => {
    expect(jobMatches(job({ mac: 'aa:bb:cc:dd:ee:ff' }), undefined, 'ee:ff')).toBe(true);
  });
  it('follows a rename (the key is per job and device object)', () => {
    const before = jobSearchKey(j, named);
    const renamed = { ...named, name: 'boiler room' };
    expect(jobSearchKey(j, renamed)).not.toBe(before);
    expect(jobMatches(j, renamed, 'boiler')).toBe(true);
  });
});

describe('what a job row shows', () => {
  it('versions: from → what the device reported after it was commanded, never a version it did not report', () => {
    // reported: where it runs now (a boot failure came back on the old version)
    expect(jobVersions(job({ mac: 'a', state: 'succeeded', currentVersion: '2.0.0' }))).toBe('1.0.0 → 2.0.0');
    expect(jobVersions(job({ mac: 'a', state: 'failed', currentVersion: '1.0.0' }))).toBe('1.0.0 → 1.0.0');
    expect(jobVersions(job({ mac: 'a', state: 'succeeded', currentVersion: '2.0.0', fromVersion: null }))).toBe('unknown → 2.0.0');
    // not reported: never "1.0.0 → 1.0.0" nor the target for a device not seen again
    expect(jobVersions(job({ mac: 'a', state: 'timed_out', currentVersion: null, attempts: 2 }))).toBe('1.0.0 → not heard from since');
    expect(jobVersions(job({ mac: 'a', state: 'skipped', currentVersion: null, attempts: 1 }))).toBe('1.0.0 → not heard from since');
    expect(jobVersions(job({ mac: 'a', state: 'downloading', currentVersion: null }))).toBe('1.0.0 → not reported yet');
    // never commanded: only where it is
    expect(jobVersions(job({ mac: 'a', state: 'queued', attempts: 0 }))).toBe('1.0.0');
    expect(jobVersions(job({ mac: 'a', state: 'skipped', attempts: 0 }))).toBe('1.0.0');
    expect(jobVersions(job({ mac: 'a', state: 'cancelled', attempts: 0 }))).toBe('1.0.0');
  });
  it('a version reported before the reboot is not what the device runs after it', () => {
    const h = (...states: string[]) => states.map((state) => ({ state: state as LiveJob['state'] }));
    // rebooted and never heard from again (timed out, or a person skipped it)
    expect(versionSinceReboot('1.0.0', h('queued', 'commanded', 'downloading', 'installing', 'rebooting'))).toBeNull();
    expect(versionSinceReboot('1.0.0', h('queued', 'commanded', 'downloading', 'rebooting', 'timed_out'))).toBeNull();
    expect(versionSinceReboot('1.0.0', h('commanded', 'downloading', 'rebooting', 'skipped'))).toBeNull();
    // came back: on the old version (a rollback) or the new one
    expect(versionSinceReboot('1.0.0', h('commanded', 'downloading', 'rebooting', 'verifying', 'failed'))).toBe('1.0.0');
    expect(versionSinceReboot('2.0.0', h('commanded', 'rebooting', 'verifying', 'succeeded'))).toBe('2.0.0');
    // heard from again on a retry after the reboot timed out
    expect(versionSinceReboot('1.0.0', h('rebooting', 'timed_out', 'queued', 'commanded', 'downloading'))).toBe('1.0.0');
    // never rebooted: what it reported stands
    expect(versionSinceReboot('1.0.0', h('commanded', 'downloading', 'timed_out'))).toBe('1.0.0');
    expect(versionSinceReboot(null, h('commanded'))).toBeNull();
    expect(jobVersions(job({ mac: 'a', state: 'timed_out', attempts: 1, currentVersion: versionSinceReboot('1.0.0', h('commanded', 'downloading', 'rebooting', 'timed_out')) }))).toBe(
      '1.0.0 → not heard from since',
    );
  });
  it('progress: the download’s share (never a time of day), 100 % once succeeded, nothing before it starts', () => {
    expect(jobProgress(job({ mac: 'a', state: 'queued', progress: null }))).toBeNull();
    expect(jobProgress(job({ mac: 'a', state: 'downloading', progress: 42 }))).toBe(42);
    expect(jobProgress(job({ mac: 'a', state: 'failed', progress: 63 }))).toBe(63);
    expect(jobProgress(job({ mac: 'a', state: 'succeeded', progress: null, doneAt: 1_700_000_000_000 }))).toBe(100);
    expect(jobProgress(job({ mac: 'a', state: 'cancelled', progress: 10 }))).toBeNull();
  });
});
