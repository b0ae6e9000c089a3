// The ready-to-start review: one click from a firmware, a selection of devices or the overview's
// "outdated" tile opens a plan; Start is the second click. Which firmware a selection or the
// outdated devices should get is the engine's (`GET /firmware/suggestions`: the newest firmware
// on the channel the devices follow, with a target for exactly the outdated ones); the settings
// are the engine's defaults (the preview's `spec`); who is updated, in which wave, who is skipped
// and who the target leaves out is the engine's preview. This module picks among suggestions,
// builds the targets and says the plan in words.

import type { Firmware, FirmwareSuggestion, RolloutSpec, Threshold } from '../api/types';
import { clock, compareText, dateTime, fromNow, num, plural } from './format';
import { commandRateText, defaultForm, formatThreshold, type WizardForm } from './wizard';

/**
 * The form of a review from a firmware: its model's online devices that run an older version
 * (the engine's defaults for everything else).
 */
export function reviewForm(fw: { id: number; model: string; version: string }): WizardForm {
  return defaultForm(fw);
}

/** The suggestions worth a review, most outdated devices first. */
export function rankSuggestions(s: readonly FirmwareSuggestion[]): FirmwareSuggestion[] {
  return s.filter((x) => x.outdated > 0).sort((a, b) => b.outdated - a.outdated || compareText(a.model, b.model) || a.firmware_id - b.firmware_id);
}

/** Devices of a selection no suggestion covers: up to date on their channel, of unknown model, or without firmware. */
export function uncovered(selected: number, s: readonly FirmwareSuggestion[]): number {
  return Math.max(0, selected - s.reduce((n, x) => n + x.outdated, 0));
}

/**
 * The target of a suggestion's review: the engine's ready target, and only the devices online now
 * for the outdated devices of the whole fleet (a selection is taken as it is: the preview says
 * which of its devices are offline).
 */
export function suggestionTarget(s: Pick<FirmwareSuggestion, 'target'>, onlyOnline: boolean): string {
  return onlyOnline ? `${s.target} and online` : s.target;
}

/**
 * A suggestion's devices in words, e.g. "online devices of model demo that run a version older
 * than 2.0.0, following the beta channel" or "the 3 selected devices of model demo that…".
 */
export function describeSuggestion(s: Pick<FirmwareSuggestion, 'model' | 'firmware_version' | 'device_channel'>, how: { onlyOnline: boolean; selected?: number }): string {
  const who =
    how.selected !== undefined
      ? `${how.selected === 1 ? 'the selected device' : `the ${num(how.selected)} selected devices`} of model ${s.model}`
      : `${how.onlyOnline ? 'online ' : ''}devices of model ${s.model}`;
  const ch = s.device_channel;
  return `${who} that run a version older than ${s.firmware_version}${ch ? `, following the ${ch} channel` : ''}`;
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

/**
 * The settings of a rollout, one short sentence each, from the spec as the engine would run it
 * (the preview's `spec`, every default filled in).
 */
export function describeSafety(spec: RolloutSpec, now = Date.now()): string[] {
  const lines = [
    `Pauses by itself when more than ${threshold(spec.max_failures)} fail.`,
    `The next wave starts once ${num(spec.success_gate)} % of a wave succeeded${spec.manual_approval ? ' and you approve it' : ''}.`,
    `At most ${plural(spec.concurrency, 'device')} update at once${spec.command_rate ? `, and at most ${commandRateText(spec.command_rate)} are sent` : ''}.`,
    `A device that does not finish a step within ${num(spec.step_timeout_secs)} s times out${spec.retries ? `; ${plural(spec.retries, 'retry', 'retries')} after a transient failure` : ''}.`,
    spec.window?.trim() ? `New devices are commanded only within ${spec.window.trim()}.` : 'Runs at any time of day.',
  ];
  if (spec.start_at) {
    const t = Date.parse(spec.start_at);
    lines.push(t > now ? `Starts at ${dateTime(spec.start_at)} (${fromNow(t, now)}); until then it waits, scheduled.` : `Its start time (${clock(t, now)}) has passed: it starts at once.`);
  }
  return lines;
}
