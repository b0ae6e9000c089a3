// The rollout wizard's logic: the form, the target expression the engine understands, wave and
// threshold text ⇄ JSON, start time and command rate ⇄ the spec, the request body, and which steps
// are valid. The settings' defaults are the engine's: the first preview's `spec` (every default
// filled in) fills them, and until then the request leaves them out so the engine fills them.
// Who is updated, who is skipped and who the target leaves out, and why, is the engine's preview.

import type { Firmware, RolloutRequest, RolloutSpec, Threshold, WaveSize } from '../api/types';
import { groupByReason, type ReasonGroup } from './progress';

export type Scope = 'model' | 'chip' | 'label' | 'selection' | 'all' | 'custom';
export type RateUnit = 'second' | 'minute';

export interface WizardForm {
  firmware: string; // firmware id, as text
  scope: Scope;
  label: string;
  selection: string[]; // MACs
  custom: string;
  onlyOutdated: boolean;
  onlyOnline: boolean;
  allowDowngrade: boolean;
  name: string;
  /** Whether the settings below hold the engine's defaults (from a preview's spec) or what the technician set. */
  settings: boolean;
  waves: string;
  maxFailures: string;
  successGate: number;
  concurrency: number;
  stepTimeout: number;
  retries: number;
  manualApproval: boolean;
  window: string;
  /** When to start, as a `datetime-local` value (local time); empty: at once. */
  startAt: string;
  /** Most update commands per `rateUnit`; empty: no limit (a number input binds a number, or `''`/null when empty). */
  rate: string | number | null;
  rateUnit: RateUnit;
}

/**
 * A new form: the firmware's model, only outdated and online devices (a selection: those devices),
 * the settings still to come from the engine.
 */
export function defaultForm(fw: Pick<Firmware, 'id' | 'model' | 'version'> | undefined, selection: string[] = []): WizardForm {
  return {
    firmware: fw ? String(fw.id) : '',
    scope: selection.length ? 'selection' : 'model',
    label: '',
    selection,
    custom: '',
    onlyOutdated: true,
    onlyOnline: true,
    allowDowngrade: false,
    name: fw ? `${fw.model} ${fw.version}` : '',
    settings: false,
    waves: '',
    maxFailures: '',
    successGate: 0,
    concurrency: 0,
    stepTimeout: 0,
    retries: 0,
    manualApproval: false,
    window: '',
    startAt: '',
    rate: '',
    rateUnit: 'second',
  };
}

/** Fills the settings with the engine's (a preview's spec, every default filled in), once. */
export function withEngineDefaults(f: WizardForm, spec: RolloutSpec): WizardForm {
  if (f.settings) return f;
  return {
    ...f,
    settings: true,
    waves: formatWaves(spec.waves),
    maxFailures: formatThreshold(spec.max_failures),
    successGate: spec.success_gate,
    concurrency: spec.concurrency,
    stepTimeout: spec.step_timeout_secs,
    retries: spec.retries,
    manualApproval: spec.manual_approval,
    window: spec.window ?? '',
  };
}

/** Quotes nothing: the engine's target words cannot contain spaces, so neither may labels/models. */
export function targetExpression(f: WizardForm, fw: Pick<Firmware, 'model' | 'chip'> | undefined): string {
  if (f.scope === 'custom') return f.custom.trim();
  const terms: string[] = [];
  switch (f.scope) {
    case 'model':
      if (fw) terms.push(`model:${fw.model}`);
      break;
    case 'chip':
      if (fw) terms.push(`chip:${fw.chip}`);
      break;
    case 'label':
      if (f.label.trim()) terms.push(`label:${f.label.trim()}`);
      break;
    case 'selection':
      if (f.selection.length) terms.push(`device:${f.selection.join(',')}`);
      break;
    case 'all':
      break;
  }
  if (f.onlyOutdated) terms.push('outdated');
  if (f.onlyOnline) terms.push('online');
  return terms.length ? terms.join(' and ') : 'all';
}

/** Parses `1,10%,50%,100%`; throws with a message naming the bad part. */
export function parseWaves(s: string): WaveSize[] {
  const parts = s.split(',').map((p) => p.trim()).filter(Boolean);
  if (!parts.length) throw new Error('at least one wave, e.g. 1,10%,50%,100%');
  return parts.map((p) => {
    if (p.endsWith('%')) {
      const n = Number(p.slice(0, -1));
      if (!Number.isFinite(n) || n <= 0 || n > 100) throw new Error(`wave ${p}: a percentage is 0 < p ≤ 100`);
      return { percent: n };
    }
    if (!/^\d+$/.test(p) || Number(p) === 0) throw new Error(`wave ${p}: a count or a percentage, e.g. 1,10%,50%,100%`);
    return { count: Number(p) };
  });
}

export function formatWaves(w: readonly WaveSize[]): string {
  return w.map((x) => ('count' in x ? String(x.count) : `${x.percent}%`)).join(',');
}

export function parseThreshold(s: string): Threshold {
  const t = s.trim();
  if (t.endsWith('%')) {
    const n = Number(t.slice(0, -1));
    if (!Number.isFinite(n) || n < 0 || n > 100) throw new Error(`max failures ${t}: 0–100 %`);
    return { percent: n };
  }
  if (!/^\d+$/.test(t)) throw new Error(`max failures ${t || '(empty)'}: a count or a percentage, e.g. 10%`);
  return { count: Number(t) };
}

export function formatThreshold(t: Threshold): string {
  return 'count' in t ? String(t.count) : `${t.percent}%`;
}

/**
 * Cumulative device counts at the end of each wave for `n` devices, as the engine computes them:
 * percentages round up, entries never shrink, empty waves dropped, a final wave up to `n` implied.
 */
export function waveEnds(waves: readonly WaveSize[], n: number): number[] {
  const ends: number[] = [];
  for (const w of waves) {
    const cum = Math.min(n, 'count' in w ? w.count : Math.ceil((w.percent / 100) * n - 1e-9));
    if (cum > 0 && (ends.length === 0 || cum > ends[ends.length - 1])) ends.push(cum);
  }
  if (n > 0 && ends[ends.length - 1] !== n) ends.push(n);
  return ends;
}

/** Devices per wave (not cumulative). */
export function waveSizes(waves: readonly WaveSize[], n: number): number[] {
  const ends = waveEnds(waves, n);
  return ends.map((e, i) => e - (i ? ends[i - 1] : 0));
}

/** `start_at` (RFC 3339) from a `datetime-local` value, or null for "at once"; throws when unreadable. */
export function parseStartAt(v: string): string | null {
  const t = v.trim();
  if (!t) return null;
  const ms = Date.parse(t);
  if (!Number.isFinite(ms)) throw new Error(`start time "${t}" is not a date and time`);
  return new Date(ms).toISOString();
}

/** A `datetime-local` value (local time, to the minute) for an RFC 3339 time. */
export function startAtInput(iso: string | null): string {
  if (!iso) return '';
  const d = new Date(iso);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** `command_rate` (commands per second) from the form's number and unit, or null for no limit; throws when not a positive number. */
export function parseRate(v: string | number | null, unit: RateUnit): number | null {
  const t = v === null ? '' : String(v).trim();
  if (!t) return null;
  const n = Number(t);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`command rate "${t}": a number above 0 (empty: no limit)`);
  return unit === 'minute' ? n / 60 : n;
}

/**
 * The request body for `POST /rollouts` (and `/rollouts/preview`). The settings are left out
 * until the form holds the engine's defaults (the engine fills them). Throws on bad wave,
 * threshold, start time or rate text.
 */
export function buildRequest(f: WizardForm, fw: Pick<Firmware, 'model' | 'chip'> | undefined, start: boolean): RolloutRequest {
  const body: RolloutRequest = {
    firmware: f.firmware,
    target: targetExpression(f, fw),
    name: f.name.trim() || null,
    allow_downgrade: f.allowDowngrade,
    start_at: parseStartAt(f.startAt),
    command_rate: parseRate(f.rate, f.rateUnit),
    start,
  };
  if (!f.settings) return body;
  return {
    ...body,
    waves: parseWaves(f.waves),
    max_failures: parseThreshold(f.maxFailures),
    success_gate: f.successGate,
    concurrency: f.concurrency,
    step_timeout_secs: f.stepTimeout,
    retries: f.retries,
    manual_approval: f.manualApproval,
    window: f.window.trim() || null,
  };
}

/** Skip reasons grouped for display: reason → MACs, largest group first. */
export function groupSkipped(skipped: readonly { mac: string; reason: string }[]): ReasonGroup[] {
  return groupByReason(skipped.map((s) => ({ mac: s.mac, reason: s.reason })));
}

/** The wizard's steps, in order; the last one (Review) needs every other one valid. */
export const STEPS = ['Firmware', 'Target', 'Waves', 'Review'] as const;

/**
 * Whether each step holds what it needs: a firmware; a target the engine accepted (`targetError`:
 * the preview's refusal, if any); the engine's defaults read, wave and threshold text that parse,
 * at least one device at once, a step timeout of 10 s or more, a start time and a rate that read;
 * the review, all of these.
 */
export function stepsValid(f: WizardForm, fw: Pick<Firmware, 'model' | 'chip'> | undefined, targetError: string | null): boolean[] {
  const firmware = !!fw;
  const target = !!targetExpression(f, fw) && !targetError && (f.scope !== 'label' || !!f.label.trim());
  let waves = f.settings && f.concurrency >= 1 && f.stepTimeout >= 10 && f.retries >= 0 && f.successGate >= 0 && f.successGate <= 100;
  try {
    parseWaves(f.waves);
    parseThreshold(f.maxFailures);
    parseStartAt(f.startAt);
    parseRate(f.rate, f.rateUnit);
  } catch {
    waves = false;
  }
  return [firmware, target, waves, firmware && target && waves];
}

/** Whether step `i` may be opened: every step before it is valid (any step, once they all are). */
export function canOpenStep(i: number, valid: readonly boolean[]): boolean {
  for (let k = 0; k < i; k++) if (!valid[k]) return false;
  return true;
}

/**
 * A command rate (commands per second, the engine's `command_rate`) as people say it: `2
 * commands/s`, or per minute below one a second (`30 commands/min`).
 */
export function commandRateText(perSecond: number): string {
  const fmt = (n: number) => String(Math.round(n * 100) / 100);
  if (perSecond >= 1) return `${fmt(perSecond)} ${perSecond === 1 ? 'command' : 'commands'}/s`;
  const perMinute = perSecond * 60;
  return `${fmt(perMinute)} ${perMinute === 1 ? 'command' : 'commands'}/min`;
}
