// The rollout wizard's logic: sensible defaults from a firmware pick, the target expression the
// engine understands, wave/threshold text ⇄ JSON, wave sizes, and the skip reasons behind the
// outdated counts on the firmware cards (who is updated is the engine's preview).

import type { CreateRollout, Device, Firmware, Threshold, WaveSize } from '../api/types';
import { compareVersions } from './semver';
import { normChip } from './devices';
import { groupByReason, type ReasonGroup } from './progress';

export const DEFAULT_WAVES = '1,10%,50%,100%';
export const DEFAULT_MAX_FAILURES = '10%';

export type Scope = 'model' | 'chip' | 'label' | 'selection' | 'all' | 'custom';

export interface WizardForm {
  firmware: string; // firmware id, as text
  scope: Scope;
  label: string;
  selection: string[]; // MACs
  custom: string;
  onlyOutdated: boolean;
  onlyOnline: boolean;
  waves: string;
  maxFailures: string;
  successGate: number;
  concurrency: number;
  stepTimeout: number;
  retries: number;
  manualApproval: boolean;
  window: string;
  allowDowngrade: boolean;
  name: string;
}

/**
 * The firmware preselected by the wizard: the newest non-blocked one (stable before beta at equal
 * version) among those some device is outdated against (`outdated(fw) > 0`), else among all.
 */
export function pickDefaultFirmware(firmware: readonly Firmware[], outdated?: (fw: Firmware) => number): Firmware | undefined {
  if (outdated) {
    const wanted = firmware.filter((f) => !f.blocked && outdated(f) > 0);
    if (wanted.length) return pickDefaultFirmware(wanted);
  }
  let best: Firmware | undefined;
  for (const fw of firmware) {
    if (fw.blocked) continue;
    if (!best) {
      best = fw;
      continue;
    }
    const c = compareVersions(fw.version, best.version);
    if (c !== null && c > 0) best = fw;
    else if (c === 0 && fw.channel === 'stable' && best.channel !== 'stable') best = fw;
    else if (c === null && fw.created_at > best.created_at) best = fw;
  }
  return best;
}

/** Defaults for a firmware: its model, only outdated and online devices, 1,10%,50%,100%, gate 10 %. */
export function defaultForm(fw: Firmware | undefined, selection: string[] = []): WizardForm {
  return {
    firmware: fw ? String(fw.id) : '',
    scope: selection.length ? 'selection' : 'model',
    label: '',
    selection,
    custom: '',
    onlyOutdated: true,
    onlyOnline: true,
    waves: DEFAULT_WAVES,
    maxFailures: DEFAULT_MAX_FAILURES,
    successGate: 90,
    concurrency: 20,
    stepTimeout: 300,
    retries: 1,
    manualApproval: false,
    window: '',
    allowDowngrade: false,
    name: fw ? `${fw.model} ${fw.version}` : '',
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

export function formatWaves(w: readonly WaveSize[] | undefined): string {
  if (!w?.length) return DEFAULT_WAVES;
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

export function formatThreshold(t: Threshold | undefined): string {
  if (!t) return DEFAULT_MAX_FAILURES;
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

/** The request body for `POST /rollouts` (and `/rollouts/preview`). Throws on bad wave/threshold text. */
export function buildRequest(f: WizardForm, fw: Firmware | undefined, start: boolean): CreateRollout {
  return {
    firmware: f.firmware,
    target: targetExpression(f, fw),
    name: f.name.trim() || null,
    waves: parseWaves(f.waves),
    max_failures: parseThreshold(f.maxFailures),
    success_gate: f.successGate,
    concurrency: f.concurrency,
    step_timeout_secs: f.stepTimeout,
    retries: f.retries,
    manual_approval: f.manualApproval,
    window: f.window.trim() || null,
    allow_downgrade: f.allowDowngrade,
    start_at: null,
    command_rate: null,
    start,
  };
}

/** Why a device cannot take `fw` (mirrors the engine's planner), or null when it can. */
export function skipReason(fw: Firmware, d: Device, allowDowngrade: boolean): string | null {
  if (d.family !== 'native') return `no update adapter for family ${d.family} yet`;
  if (d.chip && normChip(d.chip) !== normChip(fw.chip)) return `chip ${d.chip} does not match the firmware's ${fw.chip}`;
  if (!d.chip && !d.model) return 'chip and model unknown: cannot prove the firmware fits';
  if (d.model && d.model !== fw.model) return `model ${d.model} does not match the firmware's ${fw.model}`;
  if (!d.version) return 'running version unknown';
  const c = compareVersions(d.version, fw.version);
  if (c === 0) return `already on ${fw.version}`;
  if (c !== null && c > 0 && !allowDowngrade) return `would downgrade ${d.version} → ${fw.version} (allow it explicitly)`;
  if (c === null && !allowDowngrade) return `running version "${d.version}" is not SemVer; cannot rule out a downgrade`;
  if (fw.min_version) {
    const m = compareVersions(d.version, fw.min_version);
    if (m !== null && m < 0) return `runs ${d.version}, needs at least ${fw.min_version} first (stepping stone)`;
  }
  return null;
}

/**
 * How many devices of the firmware's model run an older version and could take it (the count on
 * the wizard's firmware cards and what picks the default firmware; the preview is the engine's).
 */
export function outdatedCount(fw: Firmware, devices: readonly Device[]): number {
  let n = 0;
  for (const d of devices) {
    if (d.model !== fw.model) continue;
    const c = compareVersions(d.version, fw.version);
    if (c !== null && c < 0 && skipReason(fw, d, false) === null) n++;
  }
  return n;
}

/** Skip reasons grouped for display: reason → MACs, largest group first. */
export function groupSkipped(skipped: readonly { mac: string; reason: string }[]): ReasonGroup[] {
  return groupByReason(skipped.map((s) => ({ mac: s.mac, reason: s.reason })));
}

/** The wizard's steps, in order; the last one (Review) needs every other one valid. */
export const STEPS = ['Firmware', 'Target', 'Waves', 'Review'] as const;

/**
 * Whether each step holds what it needs: a firmware; a target the engine accepted (`targetError`:
 * the preview's refusal, if any); wave and threshold text that parse, at least one device at
 * once, a step timeout of 10 s or more; the review, all of these.
 */
export function stepsValid(f: WizardForm, fw: Pick<Firmware, 'model' | 'chip'> | undefined, targetError: string | null): boolean[] {
  const firmware = !!fw;
  const target = !!targetExpression(f, fw) && !targetError && (f.scope !== 'label' || !!f.label.trim());
  let waves = f.concurrency >= 1 && f.stepTimeout >= 10 && f.retries >= 0 && f.successGate >= 0 && f.successGate <= 100;
  try {
    parseWaves(f.waves);
    parseThreshold(f.maxFailures);
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
