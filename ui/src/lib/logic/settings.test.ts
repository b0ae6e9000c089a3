import { describe, expect, it } from 'vitest';
import { brokerUrlError, fieldOfError, formFromSaved, isSocketAddr, runningNotes, settingsPayload, validateSettings, type SettingsForm } from './settings';
import type { SettingsView, SiteSettings } from '../api/types';

const NONE: SiteSettings = { device_listen: null, public_url: null, admin_listen: null, mqtt: null, mqtt_listen: null, mqtt_user: null, mqtt_password: null, mdns: null, event_retention_days: null, event_retention_max: null, approve_new_devices: null, refuse_unauthenticated: null };
const view = (saved: Partial<SiteSettings>, mqtt_password_set = false): SettingsView => ({ saved: { ...NONE, ...saved }, effective: { ...NONE, ...saved }, mqtt_password_set, restart_required: false, path: '/d/settings.json' });

describe('settings form', () => {
  it('reads saved settings into the form: defaults empty, the broker mode from mqtt', () => {
    const f = formFromSaved(view({}));
    expect(f).toMatchObject({ deviceListen: '', mqttMode: 'embedded', mdns: true, passwordAction: 'keep', password: '' });
    expect(formFromSaved(view({ mqtt: 'off' })).mqttMode).toBe('off');
    const ext = formFromSaved(view({ mqtt: 'mqtts://broker.site:8883', mqtt_user: 'flotilla', mdns: false }, true));
    expect(ext).toMatchObject({ mqttMode: 'external', mqttUrl: 'mqtts://broker.site:8883', mqttUser: 'flotilla', mdns: false });
  });

  it('checks addresses and URLs as the engine does', () => {
    expect(isSocketAddr('0.0.0.0:8070')).toBe(true);
    expect(isSocketAddr(' 192.168.1.10:80 ')).toBe(true);
    expect(isSocketAddr('[::]:8070')).toBe(true);
    expect(isSocketAddr('8070')).toBe(false);
    expect(isSocketAddr('localhost:8070')).toBe(false); // the engine binds IP addresses only
    expect(isSocketAddr('300.0.0.1:80')).toBe(false);
    expect(isSocketAddr('0.0.0.0:70000')).toBe(false);
    expect(brokerUrlError('mqtt://broker.site:1883')).toBeNull();
    expect(brokerUrlError('MQTTS://broker.site')).toBeNull();
    expect(brokerUrlError('mqtt://[fd00::1]:1883/')).toBeNull();
    expect(brokerUrlError('tcp://broker')).toMatch(/unsupported scheme/);
    expect(brokerUrlError('broker.site:1883')).toMatch(/no scheme/);
    expect(brokerUrlError('mqtt://broker/topic')).toMatch(/no path/);
    expect(brokerUrlError('mqtt://:1883')).toMatch(/no host/);
    expect(brokerUrlError('mqtt://broker:x')).toMatch(/port/);
    expect(brokerUrlError('')).toMatch(/empty/);
  });

  it('names every wrong field, and only those that apply to the chosen mode', () => {
    const f: SettingsForm = { ...formFromSaved(view({})), deviceListen: '8070', publicUrl: '192.168.1.2:8070', adminListen: 'localhost', mqttListen: 'x' };
    expect(Object.keys(validateSettings(f)).sort()).toEqual(['admin_listen', 'device_listen', 'mqtt_listen', 'public_url']);
    expect(validateSettings({ ...f, mqttMode: 'off', deviceListen: '', publicUrl: 'https://fw.site', adminListen: '' })).toEqual({});
    const ext: SettingsForm = { ...formFromSaved(view({})), mqttMode: 'external', mqttUrl: 'tcp://b', passwordAction: 'replace', password: '' };
    expect(Object.keys(validateSettings(ext)).sort()).toEqual(['mqtt', 'mqtt_password']);
    expect(validateSettings({ ...ext, mqttUrl: 'mqtt://b:1883', password: 's3cret' })).toEqual({});
  });

  it('builds the PUT body: empty fields are defaults, password kept / replaced / removed', () => {
    const saved = view({ mqtt: 'mqtt://b:1883', mqtt_user: 'u' }, true);
    const f = formFromSaved(saved);
    const keep = settingsPayload(f, saved.saved);
    expect('mqtt_password' in keep).toBe(false); // omitted: the engine keeps the saved one
    expect(JSON.parse(JSON.stringify(keep))).toEqual({ device_listen: null, public_url: null, admin_listen: null, mqtt: 'mqtt://b:1883', mqtt_listen: null, mqtt_user: 'u', mdns: null, event_retention_days: null, event_retention_max: null, approve_new_devices: null, refuse_unauthenticated: null });
    expect(settingsPayload({ ...f, approveNew: true }, saved.saved).approve_new_devices).toBe(true);
    expect(settingsPayload({ ...f, passwordAction: 'replace', password: 'n3w' }, saved.saved).mqtt_password).toBe('n3w');
    expect(settingsPayload({ ...f, passwordAction: 'remove', password: 'ignored' }, saved.saved).mqtt_password).toBe('');
    const other = settingsPayload({ ...f, mqttMode: 'off', deviceListen: ' 0.0.0.0:9000 ', publicUrl: 'http://fw.site:9000', mdns: false }, saved.saved);
    expect(other).toMatchObject({ mqtt: 'off', device_listen: '0.0.0.0:9000', public_url: 'http://fw.site:9000', mdns: false });
  });

  it('keeps the caps on new devices as saved (they are set with `flotilla settings set`)', () => {
    const saved = view({ new_devices_per_minute: 10, max_devices: 300 });
    expect(settingsPayload(formFromSaved(saved), saved.saved)).toMatchObject({ new_devices_per_minute: 10, max_devices: 300 });
    const none = view({});
    expect('max_devices' in settingsPayload(formFromSaved(none), none.saved)).toBe(false);
  });

  it('keeps defaults as null unless they were saved explicitly', () => {
    const none = view({});
    expect(settingsPayload(formFromSaved(none), none.saved)).toMatchObject({ mqtt: null, mdns: null });
    const explicit = view({ mqtt: 'embedded', mdns: true });
    expect(settingsPayload(formFromSaved(explicit), explicit.saved)).toMatchObject({ mqtt: 'embedded', mdns: true });
    expect(settingsPayload({ ...formFromSaved(none), mqttMode: 'embedded', mqttListen: '0.0.0.0:1884' }, none.saved).mqtt_listen).toBe('0.0.0.0:1884');
  });

  it('finds the field a server error names', () => {
    expect(fieldOfError('device_listen "8070" is not an address like 0.0.0.0:8070')).toBe('device_listen');
    expect(fieldOfError('mqtt: unsupported scheme "tcp"')).toBe('mqtt');
    expect(fieldOfError('mqtt_listen "x" is not an address')).toBe('mqtt_listen');
    expect(fieldOfError('disk full')).toBeNull();
  });
});

describe('what the running engine uses', () => {
  const running = (saved: Partial<SiteSettings>, effective: Partial<SiteSettings>, restart_required = false): SettingsView => ({
    saved: { ...NONE, ...saved }, effective: { ...NONE, mdns: true, event_retention_days: 90, event_retention_max: 1_000_000, ...effective }, mqtt_password_set: false, restart_required, path: '/d/settings.json',
  });
  it('says mDNS is off now when the engine was started with --no-mdns, whatever is saved', () => {
    expect(runningNotes(running({}, { mdns: false })).mdns).toBe('Off now (started with --no-mdns); saved: on');
    expect(runningNotes(running({ mdns: true }, { mdns: false })).mdns).toBe('Off now (started with --no-mdns); saved: on');
    expect(runningNotes(running({ mdns: false }, { mdns: true }, true)).mdns).toBe('On now; saved: off, from the next start');
    expect(runningNotes(running({}, { mdns: true })).mdns).toBeUndefined();
  });
  it('says the running address where it is not what is saved (or the default)', () => {
    const n = runningNotes(running({ device_listen: '0.0.0.0:8070' }, { device_listen: '127.0.0.1:41187', admin_listen: '127.0.0.1:8071', mqtt: 'embedded', mqtt_listen: '0.0.0.0:1883' }));
    expect(n.device_listen).toBe('Now: 127.0.0.1:41187 (a start option or FLOTILLA_* variable wins over what is saved)');
    expect(n.admin_listen).toBeUndefined();
    expect(n.mqtt).toBeUndefined();
    expect(n.mqtt_listen).toBeUndefined();
    expect(runningNotes(running({}, { public_url: 'http://127.0.0.1:41187' })).public_url).toBe('Now: http://127.0.0.1:41187 (from a start option or the default)');
    expect(runningNotes(running({ event_retention_days: 30 }, { event_retention_days: 30 })).event_retention_days).toBeUndefined();
  });
  it('edits the audit log’s retention, which applies without a restart', () => {
    const f = formFromSaved(view({ event_retention_days: 30 }));
    expect([f.retentionDays, f.retentionMax]).toEqual(['30', '']);
    const body = settingsPayload({ ...f, retentionMax: '500,000' }, view({}).saved);
    expect([body.event_retention_days, body.event_retention_max]).toEqual([30, 500000]);
    expect(settingsPayload({ ...f, retentionDays: '' }, view({}).saved).event_retention_days).toBeNull();
    expect(Object.keys(validateSettings({ ...f, retentionDays: '0', retentionMax: '10' })).sort()).toEqual(['event_retention_days', 'event_retention_max']);
    expect(validateSettings({ ...f, retentionDays: '36500', retentionMax: '100' })).toEqual({});
    expect(fieldOfError('event_retention_max 10: between 100 and 100000000 events')).toBe('event_retention_max');
  });
});
