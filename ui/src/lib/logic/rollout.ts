// What a rollout says about itself (`Rollout.pause_reason`, `on_resume`, `waiting`, `estimate`,
// `outcome`), put in the words and on the buttons a technician reads. Every number is the
// engine's: nothing here counts jobs or works out a pace; it only chooses words for what the
// engine said.

import type { JobState, Rollout, RolloutEstimate, RolloutState, WaitReason, WaitingDevice } from '../api/types';
import { failures, planned, summary } from './counts';
import { STATE_LABEL, ago, clock, duration, fromNow, rate } from './format';

export type Tone = 'ok' | 'warn' | 'bad' | 'accent' | '';

/** A rollout's state badge: its words, its colour and what hovering it says. */
export interface Badge {
  text: string;
  tone: Tone;
  title: string;
}

type BadgeFacts = Pick<Rollout, 'state' | 'outcome' | 'waves'> & Partial<Pick<Rollout, 'waiting' | 'spec'>>;

/**
 * Devices a completed rollout did not update: in every wave, the jobs that did not succeed
 * (failed, timed out, skipped by a person). Devices the plan skipped are in no wave and do not
 * count: they were never meant to be updated.
 */
export function notUpdated(r: Pick<Rollout, 'waves'>): number {
  return r.waves.reduce((n, w) => n + w.counts.total - w.counts.succeeded, 0);
}

/**
 * The state badge, with how a finished rollout ended: `completed` (green) only when every planned
 * device was updated; `completed · 3 not updated` (amber) when some failed, timed out or were
 * skipped by a person; `cancelled`; `scheduled` with its start time; a pause for approval as
 * such.
 */
export function rolloutBadge(r: BadgeFacts, now = Date.now()): Badge {
  switch (r.state) {
    case 'draft':
      return { text: 'draft', tone: '', title: 'Not started yet.' };
    case 'scheduled': {
      const at = r.spec?.start_at ?? r.waiting?.until ?? null;
      return { text: 'scheduled', tone: 'accent', title: at ? `Starts at ${clock(at, now)} (${fromNow(at, now)}).` : 'Waits for its scheduled start.' };
    }
    case 'running':
      return { text: 'running', tone: 'accent', title: 'Updating devices.' };
    case 'paused':
      if (r.waiting?.reason === 'approval') return { text: 'waiting for approval', tone: 'warn', title: 'Paused between waves until you start the next one.' };
      return { text: 'paused', tone: 'warn', title: 'No new device is commanded until it is resumed.' };
    case 'cancelled':
      return { text: 'cancelled', tone: 'bad', title: 'Cancelled before the end.' };
    case 'completed': {
      const n = notUpdated(r);
      // An engine that says nothing about the outcome: the counts decide.
      const someFailed = r.outcome ? r.outcome === 'some_failed' : n > 0;
      if (!someFailed) return { text: 'completed', tone: 'ok', title: 'Every planned device runs the new version.' };
      return {
        text: n > 0 ? `completed · ${n} not updated` : 'completed · not all updated',
        tone: 'warn',
        title: 'Finished, but some devices failed, timed out or were skipped: they do not run the new version.',
      };
    }
  }
}

/** "wave 2 of 4" (waves are numbered from 1, as the engine numbers them). */
export function waveOf(r: Pick<Rollout, 'current_wave' | 'wave_count'>): string {
  if (!r.wave_count) return 'no wave';
  return `wave ${Math.max(1, r.current_wave)} of ${r.wave_count}`;
}

/**
 * The numbers of now beside a pause's recorded reason: `Now: 3 of 12 failed in wave 2 of 4`
 * when the current wave has failures, else that wave's summary.
 */
export function pausedNow(r: Pick<Rollout, 'current_wave' | 'wave_count' | 'waves'>): string | null {
  const w = r.waves.find((x) => x.number === r.current_wave);
  if (!w) return null;
  const f = failures(w.counts);
  if (f > 0) return `Now: ${f} of ${planned(w.counts)} failed in ${waveOf(r)}`;
  return `Now, ${waveOf(r)}: ${summary(w.counts)}`;
}

/** Is the rollout paused for a person's approval of the next wave (manual approval)? */
export function waitsForApproval(r: Pick<Rollout, 'state' | 'waiting'>): boolean {
  return r.state === 'paused' && r.waiting?.reason === 'approval';
}

/** The Resume button's words: `Start wave 3` between waves of a manual approval, else `Resume`. */
export function resumeLabel(r: Pick<Rollout, 'state' | 'waiting' | 'current_wave'>): string {
  return waitsForApproval(r) ? `Start wave ${r.current_wave}` : 'Resume';
}

/** The heading of the paused banner. */
export function pausedTitle(r: Pick<Rollout, 'state' | 'waiting' | 'current_wave'>): string {
  return waitsForApproval(r) ? `Waiting for your approval to start wave ${r.current_wave}` : 'Paused';
}

/** Retry failed resumes a paused rollout in the same action: the button says so. */
export function retryLabel(state: RolloutState): string {
  return state === 'paused' ? 'Retry failed and resume' : 'Retry failed';
}

/** What the confirm before skipping a device asks, by where the device is. */
export function skipQuestion(name: string, state: JobState): string {
  if (state === 'queued') return `Skip ${name}? It will not be commanded in this rollout and stops counting in it.`;
  return `Stop waiting for ${name}? It will not be commanded again in this rollout; if it is updating it may still finish on its own.`;
}

/** A job a person may still skip: one not finished. */
export function canSkip(state: JobState, rollout: RolloutState): boolean {
  if (rollout === 'completed' || rollout === 'cancelled' || rollout === 'draft') return false;
  return !['succeeded', 'failed', 'timed_out', 'skipped', 'cancelled'].includes(state);
}

const WAIT_TITLE: Record<WaitReason, string> = {
  devices: 'Waiting for devices',
  concurrency: 'At the limit of devices updating at once',
  window: 'Outside the maintenance window',
  approval: 'Waiting for your approval',
  paused: 'Paused',
  scheduled: 'Scheduled',
};

/**
 * What the end of a wait means, by reason, with the engine's `until`: the latest the devices
 * waited on can hold the wave (retries included), the window's opening, the scheduled start.
 */
export function waitUntil(reason: WaitReason, until: string | null, now = Date.now()): string | null {
  if (!until) return null;
  const when = `${clock(until, now)} (${fromNow(until, now)})`;
  switch (reason) {
    case 'devices':
      return `The last of them times out at ${when} at the latest, retries included.`;
    case 'window':
      return `The window opens at ${when}.`;
    case 'scheduled':
      return `Starts at ${when}.`;
    default:
      return `Until ${when}.`;
  }
}

/** The waiting panel's heading, the engine's summary (as a sentence) and when the wait ends. */
export function waitingText(w: NonNullable<Rollout['waiting']>, now = Date.now()): { title: string; summary: string; until: string | null } {
  const s = w.summary.trim();
  return { title: WAIT_TITLE[w.reason] ?? w.reason, summary: s ? s.charAt(0).toUpperCase() + s.slice(1) : '', until: waitUntil(w.reason, w.until, now) };
}

/** One device waited on, in words: its state and for how long, its deadline and retries, when it was last heard from. */
export function waitingDeviceFacts(d: WaitingDevice, now = Date.now()): { state: string; since: string; deadline: string; retries: string; lastSeen: string } {
  return {
    state: STATE_LABEL[d.state] ?? d.state,
    since: `since ${clock(d.since, now)} (${ago(d.since, now)})`,
    deadline: d.deadline ? `times out ${clock(d.deadline, now)} (${fromNow(d.deadline, now)})` : 'no deadline',
    retries: d.retries_left === 0 ? 'no retry left' : d.retries_left === 1 ? '1 retry left' : `${d.retries_left} retries left`,
    lastSeen: d.last_seen ? `last heard from ${ago(d.last_seen, now)}` : 'never heard from',
  };
}

/**
 * The engine's estimate, to show: the pace, the time left, when that is (from `at`, the moment the
 * engine said it, so the clock time does not drift between two reads), and what they rest on.
 */
export function estimateText(e: RolloutEstimate, state: RolloutState, at = Date.now()): { pace: string; remaining: string; finishes: string | null; basis: string } {
  const finished = state === 'completed' || state === 'cancelled';
  return {
    pace: e.per_minute === null ? '—' : rate(e.per_minute),
    remaining: finished ? 'done' : e.remaining_secs === null ? '—' : duration(e.remaining_secs * 1000),
    finishes: !finished && e.remaining_secs !== null && e.remaining_secs > 0 ? `around ${clock(at + e.remaining_secs * 1000, at)}` : null,
    basis: e.basis,
  };
}
