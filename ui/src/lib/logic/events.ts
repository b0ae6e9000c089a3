// The audit log in words: each event as one sentence a technician reads (names, not MACs; the
// rollout and firmware it is about, linked), its subject and actor as names, and the devices
// that failed lately, one line each. What each event's `data` holds is the engine's
// (crates/flotilla-core/src/handle/*.rs, rollout/run.rs, fleet.rs); a kind this module does not
// know reads as its kind, so a newer engine never breaks the view.

import type { Device, Event, Firmware, Rollout } from '../api/types';
import { deviceName } from './devices';
import { bytes, capitalise, num, plural, STATE_LABEL } from './format';
import { href } from './route';

/** What the sentences look names up in (the stores; a test's maps). */
export interface Lookup {
  device(mac: string): Pick<Device, 'mac' | 'name' | 'device_id'> | undefined;
  rollout(id: number): Pick<Rollout, 'id' | 'name' | 'firmware_version'> | undefined;
  firmware(id: number): Pick<Firmware, 'id' | 'model' | 'version'> | undefined;
}

/** A piece of a sentence: text, or a link. */
export type Part = string | { text: string; href: string };

export interface Described {
  /** The sentence, in pieces (links to the device, rollout or firmware it names). */
  parts: Part[];
  /** What it is about, as a name (null when about nothing in particular). */
  subject: { text: string; href: string | null } | null;
  /** Who or what caused it, as a name. */
  actor: string;
  /** A failure, shown as such. */
  bad: boolean;
}

type Data = Record<string, unknown>;
const str = (v: unknown): string | null => (typeof v === 'string' && v ? v : null);
const int = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** `Rollout 3 “line 3 to 2.0.0”` (no quoted name when it has none of its own). */
export function rolloutLabel(id: number, name?: string | null): string {
  return name && name !== `Rollout ${id}` ? `Rollout ${id} “${name}”` : `Rollout ${id}`;
}

function deviceLink(mac: string, look: Lookup): Part {
  return { text: deviceName(look.device(mac), mac), href: href({ view: 'device', mac }) };
}

function rolloutLink(id: number, look: Lookup): Part {
  return { text: rolloutLabel(id, look.rollout(id)?.name), href: href({ view: 'rollout', id }) };
}

function firmwareText(id: number | null, d: Data, look: Lookup): string {
  const f = id === null ? undefined : look.firmware(id);
  const model = f?.model ?? str(d.model);
  const version = f?.version ?? str(d.version);
  return `firmware ${[model, version].filter(Boolean).join(' ') || (id === null ? '?' : `#${id}`)}`;
}

const partText = (p: Part) => (typeof p === 'string' ? p : p.text);

/** The sentence as plain text (for search and for tests). */
export function sentenceText(parts: readonly Part[]): string {
  return parts.map(partText).join('');
}

function macOf(s: string | null): string | null {
  const m = s?.match(/^(?:device|mqtt|http|mdns):(.+)$/);
  return m ? m[1] : null;
}

/** Who caused an event, as a name: `admin-api` → "admin", `device:<mac>` → the device's name. */
export function actorName(actor: string, look: Lookup): string {
  if (actor === 'admin-api') return 'admin';
  const mac = macOf(actor);
  return mac ? deviceName(look.device(mac), mac) : actor;
}

/** What an event is about, as a name and a link. */
export function subjectOf(e: Pick<Event, 'subject' | 'data'>, look: Lookup): { text: string; href: string | null } | null {
  const s = e.subject;
  if (!s) return null;
  const [kind, ...rest] = s.split(':');
  const ref = rest.join(':');
  if (kind === 'device' && ref) return { text: deviceName(look.device(ref), ref), href: href({ view: 'device', mac: ref }) };
  if (kind === 'rollout' && /^\d+$/.test(ref)) {
    const id = Number(ref);
    return { text: rolloutLabel(id, look.rollout(id)?.name), href: href({ view: 'rollout', id }) };
  }
  if (kind === 'firmware' && /^\d+$/.test(ref)) {
    const t = firmwareText(Number(ref), (e.data ?? {}) as Data, look);
    return { text: capitalise(t), href: '#/firmware' };
  }
  return { text: s, href: null };
}

const JOB_VERB: Record<string, string> = {
  queued: 'queued',
  commanded: 'commanded to update',
  downloading: 'downloading',
  installing: 'installing',
  rebooting: 'rebooting',
  verifying: 'verifying its version',
  succeeded: 'updated',
  failed: 'failed',
  timed_out: 'timed out',
  skipped: 'skipped',
  cancelled: 'cancelled',
};

function jobSentence(state: string, d: Data, look: Lookup): Part[] {
  const mac = str(d.mac) ?? '?';
  const rid = int(d.rollout);
  const wave = int(d.wave);
  const attempt = int(d.attempt);
  const detail = str(d.detail);
  const parts: Part[] = [deviceLink(mac, look), ` ${JOB_VERB[state] ?? STATE_LABEL[state] ?? state}`];
  if (state === 'succeeded' && rid !== null) {
    const v = look.rollout(rid)?.firmware_version;
    if (v) parts.push(` to ${v}`);
  }
  if (rid !== null) parts.push(' in ', rolloutLink(rid, look));
  const extra: string[] = [];
  if (wave !== null) extra.push(`wave ${wave}`);
  if (attempt !== null && attempt > 1) extra.push(`attempt ${attempt}`);
  if (extra.length) parts.push(` (${extra.join(', ')})`);
  if (detail && state !== 'succeeded') parts.push(`: ${detail}`);
  return parts;
}

/** Where a device's channel comes from, in words (`Device.channel_from`). */
export function channelSource(from: string | null | undefined): string {
  if (from === 'device') return 'set on the device';
  if (from?.startsWith('label:')) return `from label ${from.slice(6)}`;
  return 'the default';
}

function firmwareChange(c: Data): string {
  const what: string[] = [];
  if (c.archived === true) what.push('archived');
  if (c.archived === false) what.push('unarchived');
  if (c.min_version === '') what.push('stepping stone removed');
  else if (str(c.min_version)) what.push(`needs ${c.min_version} first`);
  if (c.blocked === true) what.push('blocked');
  if (c.blocked === false) what.push('unblocked');
  if (str(c.channel)) what.push(`moved to the ${c.channel} channel`);
  if (c.public === true) what.push('served without download tokens');
  if (c.public === false) what.push('served with download tokens only');
  // `null` is "unchanged" in a patch (the engine's `Option`); `""` clears the notes.
  if (typeof c.notes === 'string') what.push(c.notes ? 'notes changed' : 'notes removed');
  return what.length ? what.join(', ') : 'changed';
}

function list(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** One sentence for one event, e.g. "demo-native-pull-15 failed in Rollout 3 “demo 2.0.0” (wave 3): came back on 1.0.0". */
export function describeEvent(e: Event, look: Lookup): Described {
  const d = (e.data && typeof e.data === 'object' && !Array.isArray(e.data) ? e.data : {}) as Data;
  const [group, what = ''] = [e.kind.slice(0, e.kind.indexOf('.')), e.kind.slice(e.kind.indexOf('.') + 1)];
  const mac = str(d.mac) ?? (e.subject?.startsWith('device:') ? e.subject.slice(7) : null);
  const rid = int(d.id) ?? (e.subject?.startsWith('rollout:') ? Number(e.subject.slice(8)) : null);
  let parts: Part[] | null = null;
  let bad = false;

  switch (group) {
    case 'job':
      parts = jobSentence(what, d, look);
      bad = what === 'failed' || what === 'timed_out';
      break;
    case 'device':
      if (!mac) break;
      if (what === 'discovered' || what === 'changed') {
        const where = [str(d.version) ? `runs ${d.version}` : 'version unknown', str(d.ip) ? `at ${d.ip}` : null].filter(Boolean).join(' ');
        parts = [deviceLink(mac, look), what === 'discovered' ? ' discovered: ' : ' changed: ', where, d.online === false ? ', offline' : ''];
      } else if (what === 'offline') {
        parts = [deviceLink(mac, look), ' went offline', str(d.reason) ? ` (${d.reason})` : ''];
      } else if (what === 'address_moved') {
        // `mac` (the subject) lost its address to `to` (a DHCP swap).
        const to = str(d.to);
        parts = [deviceLink(mac, look), ' lost its address', str(d.ip) ? ` ${d.ip}` : '', ' to ', to ? deviceLink(to, look) : 'another device', ': its address is unknown until it reports again'];
        bad = true;
      } else if (what === 'labelled') {
        const added = list(d.added);
        const removed = list(d.removed);
        const change = [added.length ? `added ${added.join(', ')}` : '', removed.length ? `removed ${removed.join(', ')}` : ''].filter(Boolean);
        parts = ['Labels of ', deviceLink(mac, look), `: ${change.join('; ') || 'unchanged'}`];
      } else if (what === 'channel') {
        const ch = str(d.channel) ?? 'stable';
        parts = [deviceLink(mac, look), ` follows the ${ch} channel`, ` (${channelSource(str(d.from))})`];
      } else if (what === 'forgotten') {
        parts = [str(d.name) ?? str(d.device_id) ?? mac, ' forgotten: it leaves the inventory until it shows up again'];
      } else if (what === 'enrolled') {
        parts = [deviceLink(mac, look), ' enrolled', str(d.state) === 'pending' ? ': it waits for approval' : ''];
      } else if (what === 'approved') {
        parts = [deviceLink(mac, look), ' approved: it gets updates'];
      } else if (what === 'revoked') {
        parts = [deviceLink(mac, look), ' revoked: every request of it is refused until it is re-keyed'];
        bad = true;
      } else if (what === 'rekeyed') {
        parts = [deviceLink(mac, look), ' re-keyed: its next check-in enrols it again'];
      }
      break;
    case 'security':
      if (what === 'refused') {
        const from = str(d.ip) ? ` from ${d.ip}` : '';
        const claim: Part[] = mac ? [' as ', deviceLink(mac, look)] : str(d.device_id) ? [` as ${d.device_id}`] : [];
        parts = [`Refused a ${str(d.what) ?? 'request'}${from}`, ...claim, str(d.reason) ? `: ${d.reason}` : ''];
        bad = true;
      }
      break;
    case 'discovery':
      if (what === 'scan') {
        const found = int(d.found) ?? 0;
        parts = [`Scan of ${str(d.subnet) ?? 'the network'}: ${plural(found, 'device')} found`, int(d.addresses) !== null ? ` among ${plural(int(d.addresses) ?? 0, 'address', 'addresses')}` : ''];
      }
      break;
    case 'credentials':
      if (what === 'set') parts = [`Credential of ${str(d.scope) ?? '?'} set`, str(d.username) ? ` (user ${d.username})` : ''];
      else if (what === 'removed') parts = [`Credential of ${str(d.scope) ?? '?'} removed`];
      break;
    case 'rollout': {
      if (rid === null || !Number.isFinite(rid)) break;
      const r = rolloutLink(rid, look);
      const wave = int(d.wave);
      switch (what) {
        case 'created': {
          const fw = int(d.firmware);
          const n = int(d.devices);
          const skipped = int(d.skipped);
          parts = [r, ` created: ${firmwareText(fw, {}, look)}`];
          if (n !== null) parts.push(`, ${plural(n, 'device')} to update`);
          if (skipped) parts.push(`, ${num(skipped)} skipped`);
          break;
        }
        case 'started':
          parts = [r, ' started'];
          break;
        case 'resumed':
          parts = [r, ' resumed', wave !== null ? ` at wave ${wave}` : ''];
          break;
        case 'scheduled':
          parts = [r, ' scheduled: it starts at its start time'];
          break;
        case 'running': {
          // The engine's kind is the new state; `action` says how it got there.
          const action = str(d.action);
          const at = wave !== null ? ` (wave ${wave})` : '';
          if (action === 'resumed') parts = [r, ' resumed', wave !== null ? ` at wave ${wave}` : ''];
          else if (action === 'started') parts = [r, ' started', at];
          else if (action === 'retried') parts = [r, ' running again: failed devices retried', at];
          else parts = [r, ' running', at];
          break;
        }
        case 'paused':
          parts = [r, str(d.pause_kind) === 'approval' ? ' waits for approval' : ' paused', str(d.reason) ? `: ${d.reason}` : ''];
          bad = str(d.pause_kind) !== 'approval';
          break;
        case 'acknowledged': {
          const n = int(d.failures);
          parts = [r, `: ${n === null ? 'failures' : plural(n, 'failed device')} acknowledged on resume (no longer counted against the failure threshold and the success gate)`];
          break;
        }
        case 'completed':
          parts = [r, ' completed'];
          break;
        case 'cancelled':
          parts = [r, ' cancelled'];
          break;
        case 'wave_started':
          parts = [r, wave !== null ? `: wave ${wave} started` : ': next wave started'];
          break;
      }
      break;
    }
    case 'firmware': {
      const id = int(d.id);
      const name = firmwareText(id, d, look);
      const Name = capitalise(name);
      if (what === 'imported') {
        const facts = [str(d.chip), typeof d.size === 'number' ? bytes(d.size) : null].filter(Boolean);
        parts = [{ text: Name, href: '#/firmware' }, ` imported${facts.length ? ` (${facts.join(', ')})` : ''}`];
      } else if (what === 'changed') {
        parts = [{ text: Name, href: '#/firmware' }, ` ${firmwareChange((d.change ?? {}) as Data)}`];
      } else if (what === 'deleted') {
        parts = [`${Name} deleted`];
      }
      break;
    }
    case 'label': {
      const label = str(d.label);
      if (what === 'channel' && label) {
        const ch = str(d.channel);
        parts = [`Label ${label}: `, ch ? `its devices follow the ${ch} channel` : 'no channel any more (its devices follow stable, unless set otherwise)'];
      }
      break;
    }
    case 'settings':
      if (what === 'saved') parts = ['Settings saved; the engine uses them from its next start'];
      break;
    case 'engine':
      if (what === 'started') parts = ['Engine started', str(d.device_url) ? `; devices reach it at ${d.device_url}` : ''];
      else if (what === 'stopped') parts = ['Engine stopped'];
      break;
    case 'demo':
      if (what === 'started') {
        const n = int(d.devices);
        parts = ['Demo fleet started', n !== null ? `: ${plural(n, 'simulated device')}` : '', str(d.firmware) ? `, demo firmware ${d.firmware}` : ''];
      }
      break;
  }
  return {
    parts: (parts ?? [e.kind]).filter((p) => p !== ''),
    subject: subjectOf(e, look),
    actor: actorName(e.actor, look),
    bad,
  };
}

/** Everything a search over the events view may match: the sentence, names, kind, actor and raw data. */
export function eventSearchText(e: Event, described: Described): string {
  return `${sentenceText(described.parts)} ${described.subject?.text ?? ''} ${described.actor} ${e.kind} ${e.actor} ${e.subject ?? ''} ${JSON.stringify(e.data)}`.toLowerCase();
}

/** One line of the overview's recent failures: a device, its latest failure, how many attempts failed. */
export interface FailureLine {
  mac: string;
  /** The latest failure event of the device. */
  latest: Event;
  /** Failed attempts of the device in the latest failure's rollout (≥ 1). */
  count: number;
  rollout: number | null;
  detail: string | null;
}

const FAILED = new Set(['job.failed', 'job.timed_out']);

/**
 * The devices that failed lately, newest failure first, one line per device (its latest failure,
 * and how many of its attempts in that rollout failed). `events` may repeat events (the live ones
 * and the ones loaded from the log): they are counted once.
 */
export function recentFailures(events: readonly Event[], limit = 8): FailureLine[] {
  const seen = new Set<number>();
  const byMac = new Map<string, Event[]>();
  for (const e of events) {
    if (!FAILED.has(e.kind) || seen.has(e.id)) continue;
    seen.add(e.id);
    const d = (e.data ?? {}) as Data;
    const mac = str(d.mac) ?? (e.subject?.startsWith('device:') ? e.subject.slice(7) : null);
    if (!mac) continue;
    const arr = byMac.get(mac);
    if (arr) arr.push(e);
    else byMac.set(mac, [e]);
  }
  const lines: FailureLine[] = [];
  for (const [mac, evs] of byMac) {
    const latest = evs.reduce((a, b) => (b.id > a.id ? b : a));
    const d = (latest.data ?? {}) as Data;
    const rollout = int(d.rollout);
    lines.push({
      mac,
      latest,
      count: evs.filter((x) => int((x.data as Data)?.rollout) === rollout).length,
      rollout,
      detail: str(d.detail),
    });
  }
  return lines.sort((a, b) => b.latest.id - a.latest.id).slice(0, limit);
}
