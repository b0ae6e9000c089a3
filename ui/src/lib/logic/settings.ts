// The settings form: the saved site settings (`GET /api/v1/settings`) as editable fields, checks
// that mirror the engine's (so most mistakes show before saving), the `PUT` body, and what the
// running engine uses where that differs from what is saved (`effective`: a start option such as
// `--no-mdns` wins over the file). The engine checks again and names the field it refuses.

import type { SettingsView, SiteSettings } from '../api/types';

export type MqttMode = 'embedded' | 'external' | 'off';
/** What to do with the saved external-broker password: the API never sends it back. */
export type PasswordAction = 'keep' | 'replace' | 'remove';

export interface SettingsForm {
  deviceListen: string;
  publicUrl: string;
  adminListen: string;
  mqttMode: MqttMode;
  mqttListen: string;
  mqttUrl: string;
  mqttUser: string;
  passwordAction: PasswordAction;
  password: string;
  mdns: boolean;
  /** Days the audit log keeps events; empty: the default. Applies without a restart. */
  retentionDays: string;
  /** Most events the audit log keeps; empty: the default. Applies without a restart. */
  retentionMax: string;
  /** New devices wait for approval. */
  approveNew: boolean;
  /** Check-ins of the compatibility profiles are refused. */
  refuseUnauthenticated: boolean;
}

export type SettingsField =
  | 'device_listen' | 'public_url' | 'admin_listen' | 'mqtt' | 'mqtt_listen' | 'mqtt_user' | 'mqtt_password' | 'mdns' | 'event_retention_days' | 'event_retention_max';
export type SettingsErrors = Partial<Record<SettingsField, string>>;

/** Built-in defaults (shown as placeholders; an empty field saves `null`, i.e. the default). */
export const DEFAULTS = { device_listen: '0.0.0.0:8070', admin_listen: '127.0.0.1:8071', mqtt_listen: '0.0.0.0:1883' } as const;

/** The audit log's limits the engine accepts (`settings.rs`). */
export const RETENTION = { days: { min: 1, max: 36500 }, events: { min: 100, max: 100_000_000 } } as const;

export function formFromSaved(v: SettingsView): SettingsForm {
  const s = v.saved;
  const mqtt = s.mqtt?.trim() ?? '';
  const mode: MqttMode = mqtt === '' || mqtt === 'embedded' ? 'embedded' : mqtt === 'off' ? 'off' : 'external';
  return {
    deviceListen: s.device_listen ?? '',
    publicUrl: s.public_url ?? '',
    adminListen: s.admin_listen ?? '',
    mqttMode: mode,
    mqttListen: s.mqtt_listen ?? '',
    mqttUrl: mode === 'external' ? mqtt : '',
    mqttUser: s.mqtt_user ?? '',
    passwordAction: 'keep',
    password: '',
    mdns: s.mdns ?? true,
    retentionDays: s.event_retention_days === null || s.event_retention_days === undefined ? '' : String(s.event_retention_days),
    retentionMax: s.event_retention_max === null || s.event_retention_max === undefined ? '' : String(s.event_retention_max),
    approveNew: s.approve_new_devices ?? false,
    refuseUnauthenticated: s.refuse_unauthenticated ?? false,
  };
}

const PORT = (p: string) => /^\d{1,5}$/.test(p) && Number(p) <= 65535;

/** `ip:port` as a socket address (what the engine binds): IPv4 or `[IPv6]`, no host names. */
export function isSocketAddr(v: string): boolean {
  const t = v.trim();
  const v6 = /^\[([0-9A-Fa-f:.]+)\]:(\d+)$/.exec(t);
  if (v6) return v6[1].includes(':') && PORT(v6[2]);
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3}):(\d+)$/.exec(t);
  return !!v4 && v4.slice(1, 5).every((o) => Number(o) <= 255) && PORT(v4[5]);
}

/** Why a broker URL is refused (as the engine would), or null: `mqtt://host[:port]` / `mqtts://…`. */
export function brokerUrlError(url: string): string | null {
  const u = url.trim();
  if (!u) return 'the broker URL is empty; write mqtt://host:port';
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/.exec(u);
  if (!m) return `no scheme in "${u}"; write mqtt://host:port or mqtts://host:port`;
  const scheme = m[1].toLowerCase();
  if (scheme !== 'mqtt' && scheme !== 'mqtts') return `unsupported scheme "${scheme}"; use mqtt:// or mqtts://`;
  let rest = m[2];
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    if (!rest.slice(0, at).split(':')[0]) return "empty user name before '@'";
    rest = rest.slice(at + 1);
  }
  const cut = rest.search(/[/?#]/);
  if (cut >= 0) {
    const tail = rest.slice(cut);
    if (tail !== '/') return `unexpected "${tail}" after the host; a broker URL has no path or query`;
    rest = rest.slice(0, cut);
  }
  let host = rest;
  let port: string | null = null;
  if (rest.startsWith('[')) {
    const end = rest.indexOf(']');
    if (end < 0) return `missing ']' in "${rest}"`;
    host = rest.slice(1, end);
    const after = rest.slice(end + 1);
    if (after) {
      if (!after.startsWith(':')) return `unexpected "${after}" after ']'`;
      port = after.slice(1);
    }
    if (!host.includes(':')) return `"${host}" is not an IPv6 address`;
  } else {
    const i = rest.indexOf(':');
    if (i >= 0) {
      host = rest.slice(0, i);
      port = rest.slice(i + 1);
    }
    if (host && !/^[A-Za-z0-9._-]+$/.test(host)) return `"${host}" is not a host name or IP address`;
  }
  if (!host) return 'no host';
  if (port !== null && (!PORT(port) || Number(port) === 0)) return `port "${port}" is not a number from 1 to 65535`;
  return null;
}

/** Every problem, by field; empty when the form can be saved. */
export function validateSettings(f: SettingsForm): SettingsErrors {
  const e: SettingsErrors = {};
  const addr = (field: 'device_listen' | 'admin_listen' | 'mqtt_listen', v: string) => {
    if (v.trim() && !isSocketAddr(v)) e[field] = `"${v.trim()}" is not an address like ${DEFAULTS[field]} (IP address and port)`;
  };
  addr('device_listen', f.deviceListen);
  addr('admin_listen', f.adminListen);
  if (f.mqttMode === 'embedded') addr('mqtt_listen', f.mqttListen);
  const url = f.publicUrl.trim();
  if (url && !/^https?:\/\/[^/\s]+/i.test(url)) e.public_url = `"${url}" must start with http:// or https:// and name a host`;
  if (f.mqttMode === 'external') {
    const err = brokerUrlError(f.mqttUrl);
    if (err) e.mqtt = err;
    if (f.passwordAction === 'replace' && !f.password) e.mqtt_password = 'type the new password, or keep the saved one';
  }
  const whole = (field: 'event_retention_days' | 'event_retention_max', v: string, min: number, max: number, unit: string) => {
    const t = v.trim().replace(/[ ,_]/g, '');
    if (!t) return;
    if (!/^\d+$/.test(t) || Number(t) < min || Number(t) > max) e[field] = `"${v.trim()}": a whole number of ${unit} from ${min.toLocaleString('en-US')} to ${max.toLocaleString('en-US')}`;
  };
  whole('event_retention_days', f.retentionDays, RETENTION.days.min, RETENTION.days.max, 'days');
  whole('event_retention_max', f.retentionMax, RETENTION.events.min, RETENTION.events.max, 'events');
  return e;
}

const count = (v: string): number | null => {
  const t = v.trim().replace(/[ ,_]/g, '');
  return t ? Number(t) : null;
};

const opt = (v: string): string | null => (v.trim() ? v.trim() : null);

/**
 * The `PUT /api/v1/settings` body. Empty fields are `null` (the built-in default). The password is
 * left out to keep the saved one, sent to replace it, or sent empty to remove it.
 */
export function settingsPayload(f: SettingsForm, saved: SiteSettings): SiteSettings {
  let mqtt: string | null;
  if (f.mqttMode === 'off') mqtt = 'off';
  else if (f.mqttMode === 'external') mqtt = f.mqttUrl.trim();
  else mqtt = saved.mqtt === null || saved.mqtt === undefined ? null : 'embedded';
  const body: SiteSettings = {
    device_listen: opt(f.deviceListen),
    public_url: opt(f.publicUrl),
    admin_listen: opt(f.adminListen),
    mqtt,
    mqtt_listen: opt(f.mqttListen),
    mqtt_user: opt(f.mqttUser),
    mqtt_password: null,
    // null is the default (on): keep it null unless the choice differs from the default or was saved.
    mdns: saved.mdns === null && f.mdns ? null : f.mdns,
    event_retention_days: count(f.retentionDays),
    event_retention_max: count(f.retentionMax),
    // The caps on new devices are not edited here (`flotilla settings set`): kept as saved.
    ...(saved.new_devices_per_minute != null ? { new_devices_per_minute: saved.new_devices_per_minute } : {}),
    ...(saved.max_devices != null ? { max_devices: saved.max_devices } : {}),
    // null is the default (off): keep it null unless chosen or saved before.
    approve_new_devices: f.approveNew || (saved.approve_new_devices ?? null) !== null ? f.approveNew : null,
    refuse_unauthenticated:
      f.refuseUnauthenticated || (saved.refuse_unauthenticated ?? null) !== null ? f.refuseUnauthenticated : null,
  };
  // The password is edited only with an external broker; otherwise the saved one is kept.
  if (f.mqttMode === 'external' && f.passwordAction === 'replace') body.mqtt_password = f.password;
  else if (f.mqttMode === 'external' && f.passwordAction === 'remove') body.mqtt_password = '';
  else delete (body as Partial<SiteSettings>).mqtt_password;
  return body;
}

/** The field a server error names (`device_listen "8070" is not…`, `mqtt: …`), if any. */
export function fieldOfError(message: string): SettingsField | null {
  const m = /^(device_listen|public_url|admin_listen|mqtt_listen|mqtt_user|mqtt_password|mqtt|mdns|event_retention_days|event_retention_max)\b/.exec(message.trim());
  return m ? (m[1] as SettingsField) : null;
}

/** Fields whose running value can differ from the saved one. */
type Running = 'device_listen' | 'public_url' | 'admin_listen' | 'mqtt' | 'mqtt_listen' | 'mqtt_user' | 'mdns' | 'event_retention_days' | 'event_retention_max';

/**
 * Where the running engine differs from what is saved, per field, in words: `Off now (started with
 * --no-mdns); saved: on`, `Now: 127.0.0.1:41187 (…)`. Nothing for a field the engine runs as saved
 * (an empty field runs the built-in default: only a different value is said).
 */
export function runningNotes(v: SettingsView): Partial<Record<Running, string>> {
  const out: Partial<Record<Running, string>> = {};
  const why = v.restart_required ? 'what is saved applies at the next start' : 'a start option or FLOTILLA_* variable wins over what is saved';
  const text = (field: Exclude<Running, 'mdns'>, fallback: string | number | null) => {
    const saved = v.saved[field] ?? fallback;
    const now = v.effective[field];
    if (now === null || now === undefined || String(now) === String(saved)) return;
    out[field] = `Now: ${typeof now === 'number' ? now.toLocaleString('en-US') : now} (${saved === null ? 'from a start option or the default' : why})`;
  };
  text('device_listen', DEFAULTS.device_listen);
  text('public_url', null);
  text('admin_listen', DEFAULTS.admin_listen);
  text('mqtt', 'embedded');
  text('mqtt_listen', DEFAULTS.mqtt_listen);
  text('mqtt_user', null);
  text('event_retention_days', 90);
  text('event_retention_max', 1_000_000);
  const savedMdns = v.saved.mdns ?? true;
  const nowMdns = v.effective.mdns;
  if (nowMdns !== null && nowMdns !== savedMdns) {
    const onOff = (b: boolean) => (b ? 'on' : 'off');
    out.mdns = v.restart_required
      ? `${nowMdns ? 'On' : 'Off'} now; saved: ${onOff(savedMdns)}, from the next start`
      : nowMdns
        ? `On now (a start option turned it on); saved: off`
        : `Off now (started with --no-mdns); saved: on`;
  }
  return out;
}
