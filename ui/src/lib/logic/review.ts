// The ready-to-start review: one click from a firmware, a selection of devices or the overview's
// "outdated" tile opens a plan with safe defaults; Start is the second click. This module decides
// which firmware and which target each of those means, and says the plan in words. Who is
// updated, in which wave and who is skipped is the engine's preview (`POST /rollouts/preview`).

import type { Device, Firmware, Threshold } from '../api/types';
import { compareText, num, plural } from './format';
import { buildRows, newestFor, newestIndex } from './devices';
import { defaultForm, formatThreshold, parseThreshold, parseWaves, pickDefaultFirmware, type WizardForm } from './wizard';

/** The newest usable firmware for a device model (stable before beta at the same version). */
export function newestForModel(firmware: readonly Firmware[], model: string): Firmware | undefined {
  return pickDefaultFirmware(firmware.filter((f) => f.model === model && !f.blocked));
}

/**
 * The review's spec: the wizard's defaults (waves 1,10%,50%,100%, pause above 10 % failures, the
 * engine's defaults for the rest) for `fw`. From a firmware: its model's online devices that run
 * an older version. From a selection: exactly those devices (`device:<mac>,…`); the preview says
 * which of them cannot take it and why.
 */
export function reviewForm(fw: Firmware, selection: readonly string[] = []): WizardForm {
  const f = defaultForm(fw, [...selection]);
  if (selection.length) {
    f.onlyOutdated = false;
    f.onlyOnline = false;
  }
  return f;
}

/** The wizard's route parameters that rebuild `form` (what "Change settings…" opens). */
export function wizardParams(form: WizardForm): { firmware: string; devices?: string[]; onlyOutdated: boolean; onlyOnline: boolean } {
  return {
    firmware: form.firmware,
    devices: form.scope === 'selection' && form.selection.length ? form.selection : undefined,
    onlyOutdated: form.onlyOutdated,
    onlyOnline: form.onlyOnline,
  };
}

/** One review a selection or the outdated devices lead to: a model, its newest firmware, the devices. */
export interface ReviewChoice {
  model: string | null;
  /** Undefined: no usable firmware for this model (nothing to review). */
  firmware: Firmware | undefined;
  macs: string[];
}

const byCount = (a: ReviewChoice, b: ReviewChoice) =>
  Number(!a.firmware) - Number(!b.firmware) ||
  Number(a.model === null) - Number(b.model === null) ||
  b.macs.length - a.macs.length ||
  compareText(a.model ?? '', b.model ?? '');

/**
 * A selection of devices by model, each model with the newest firmware for it: one review per
 * model (a rollout installs one firmware). Devices of unknown model form their own group, without
 * firmware. Largest group first; groups without firmware last.
 */
export function selectionByModel(selected: readonly Device[], firmware: readonly Firmware[]): ReviewChoice[] {
  const groups = new Map<string | null, ReviewChoice>();
  for (const d of selected) {
    const model = d.model ?? null;
    let g = groups.get(model);
    if (!g) {
      g = { model, firmware: model === null ? undefined : newestForModel(firmware, model), macs: [] };
      groups.set(model, g);
    }
    g.macs.push(d.mac);
  }
  return [...groups.values()].sort(byCount);
}

/**
 * What the overview's "outdated" tile stands for, as reviews: for each firmware some device is
 * outdated against (the same rule as the tile's count: the newest compatible firmware is newer
 * than what the device runs), that firmware and those devices. Most devices first.
 */
export function outdatedByFirmware(devices: readonly Device[], firmware: readonly Firmware[]): ReviewChoice[] {
  const idx = newestIndex(firmware);
  const groups = new Map<number, ReviewChoice>();
  for (const r of buildRows(devices, idx)) {
    if (!r.newer) continue;
    const fw = newestFor(r.d, idx);
    if (!fw) continue;
    let g = groups.get(fw.id);
    if (!g) {
      g = { model: fw.model, firmware: fw, macs: [] };
      groups.set(fw.id, g);
    }
    g.macs.push(r.d.mac);
  }
  return [...groups.values()].sort(byCount);
}

/** The target in words, e.g. "online devices of model demo that run a version older than 2.0.0". */
export function describeTarget(form: WizardForm, fw: Pick<Firmware, 'model' | 'chip' | 'version'> | undefined): string {
  if (form.scope === 'custom') return `devices matching ${form.custom.trim() || 'nothing yet'}`;
  let what: string;
  switch (form.scope) {
    case 'model':
      what = fw ? `devices of model ${fw.model}` : 'devices of the firmware’s model';
      break;
    case 'chip':
      what = fw ? `devices with chip ${fw.chip}` : 'devices with the firmware’s chip';
      break;
    case 'label':
      what = form.label.trim() ? `devices labelled ${form.label.trim()}` : 'devices with a label (choose one)';
      break;
    case 'selection':
      what = form.selection.length === 1 ? 'the selected device' : `the ${num(form.selection.length)} selected devices`;
      break;
    case 'all':
      what = 'every device';
      break;
  }
  const that: string[] = [];
  if (form.onlyOnline) {
    if (form.scope === 'selection') that.push('are online');
    else what = `online ${what}`;
  }
  if (form.onlyOutdated) that.push(fw ? `run a version older than ${fw.version}` : 'run an older version');
  return that.length ? `${what} that ${that.join(' and ')}` : what;
}

/** "1 device first, then 4, then 19, then 24" (devices per wave). */
export function describeWaves(sizes: readonly number[]): string {
  if (!sizes.length) return 'no device';
  const [first, ...rest] = sizes;
  const head = `${plural(first, 'device')} first`;
  if (!rest.length) return sizes.length === 1 ? plural(first, 'device') + ', in one wave' : head;
  return `${head}, then ${rest.map(num).join(', then ')}`;
}

function threshold(t: Threshold): string {
  return 'count' in t ? plural(t.count, 'device') : `${formatThreshold(t).replace('%', ' %')} of a wave`;
}

/** The safety settings of a spec, one short sentence each. Throws on bad wave/threshold text. */
export function describeSafety(form: WizardForm): string[] {
  parseWaves(form.waves);
  const t = parseThreshold(form.maxFailures);
  return [
    `Pauses by itself when more than ${threshold(t)} fail.`,
    `The next wave starts once ${num(form.successGate)} % of a wave succeeded${form.manualApproval ? ' and you approve it' : ''}.`,
    `At most ${plural(form.concurrency, 'device')} update at once.`,
    `A device that does not finish a step within ${num(form.stepTimeout)} s times out${form.retries ? `; ${plural(form.retries, 'retry', 'retries')} after a transient failure` : ''}.`,
    form.window.trim() ? `New devices are commanded only within ${form.window.trim()}.` : 'Runs at any time of day.',
  ];
}
