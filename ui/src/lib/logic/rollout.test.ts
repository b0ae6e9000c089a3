import { describe, expect, it } from 'vitest';
import type { JobCounts, Rollout, RolloutWait, WaitingDevice } from '../api/types';
import { emptyCounts } from './progress';
import {
  canSkip, estimateText, notUpdated, pausedNow, pausedTitle, resumeLabel, retryLabel, rolloutBadge, skipQuestion, waitingDeviceFacts, waitingText, waitsForApproval, waveOf,
} from './rollout';

const c = (p: Partial<JobCounts>): JobCounts => ({ ...emptyCounts(), ...p });
const wave = (number: number, p: Partial<JobCounts>) => ({ number, counts: c(p) });
const wait = (p: Partial<RolloutWait>): RolloutWait => ({ reason: 'devices', summary: '', until: null, devices: [], device_count: 0, ...p });
const base = (p: Partial<Rollout>): Rollout =>
  ({
    id: 3, name: 'line 3', firmware_id: 1, firmware_version: '2.0.0', state: 'running', current_wave: 1, wave_count: 2, pause_reason: null, paused_at: null,
    on_resume: null, waiting: null, estimate: { per_minute: null, remaining_secs: null, basis: 'not started' }, outcome: null,
    spec: { start_at: null } as Rollout['spec'], counts: c({}), waves: [], created_at: '', updated_at: '', ...p,
  }) as Rollout;

describe('the state badge says how a rollout ended', () => {
  it('is green "completed" only when every planned device was updated', () => {
    const b = rolloutBadge(base({ state: 'completed', outcome: 'all_succeeded', waves: [wave(1, { total: 1, succeeded: 1 }), wave(2, { total: 4, succeeded: 4 })] }));
    expect(b).toMatchObject({ text: 'completed', tone: 'ok' });
  });
  it('is amber "completed · 3 not updated" with failures, timeouts or devices a person skipped', () => {
    const b = rolloutBadge(base({ state: 'completed', outcome: 'some_failed', waves: [wave(1, { total: 1, succeeded: 1 }), wave(2, { total: 19, succeeded: 16, failed: 1, timed_out: 1, skipped: 1 })] }));
    expect(b).toMatchObject({ text: 'completed · 3 not updated', tone: 'warn' });
    expect(b.tone).not.toBe('ok');
  });
  it('does not count devices the plan skipped (they are in no wave)', () => {
    const r = base({ state: 'completed', outcome: 'all_succeeded', counts: c({ total: 6, succeeded: 5, skipped: 1 }), waves: [wave(1, { total: 5, succeeded: 5 })] });
    expect(notUpdated(r)).toBe(0);
    expect(rolloutBadge(r).text).toBe('completed');
  });
  it('never shows a green "completed" for failures when the engine says no outcome', () => {
    expect(rolloutBadge(base({ state: 'completed', outcome: null, waves: [wave(1, { total: 2, succeeded: 1, failed: 1 })] })).tone).toBe('warn');
  });
  it('says cancelled, scheduled (with its start), waiting for approval, paused, running, draft', () => {
    expect(rolloutBadge(base({ state: 'cancelled', outcome: 'cancelled' }))).toMatchObject({ text: 'cancelled', tone: 'bad' });
    const now = Date.parse('2026-03-03T10:00:00Z');
    const s = rolloutBadge(base({ state: 'scheduled', spec: { start_at: '2026-03-03T12:00:00Z' } as Rollout['spec'] }), now);
    expect(s.text).toBe('scheduled');
    expect(s.title).toMatch(/^Starts at .* \(in 2 h 0 min\)\.$/);
    expect(rolloutBadge(base({ state: 'paused', waiting: wait({ reason: 'approval' }) })).text).toBe('waiting for approval');
    expect(rolloutBadge(base({ state: 'paused', waiting: wait({ reason: 'paused' }) })).text).toBe('paused');
    expect(rolloutBadge(base({ state: 'running' })).text).toBe('running');
    expect(rolloutBadge(base({ state: 'draft' })).text).toBe('draft');
  });
});

describe('the paused banner', () => {
  const paused = base({
    state: 'paused', current_wave: 2, wave_count: 4, pause_reason: 'wave 2 of 4: 2 of 12 devices failed (threshold 10%)',
    waves: [wave(1, { total: 1, succeeded: 1 }), wave(2, { total: 12, succeeded: 6, failed: 3, in_flight: 3 })], waiting: wait({ reason: 'paused' }),
  });
  it('puts the numbers of now beside the recorded reason', () => {
    expect(pausedNow(paused)).toBe('Now: 3 of 12 failed in wave 2 of 4');
    expect(pausedNow({ ...paused, waves: [wave(1, { total: 1, succeeded: 1 }), wave(2, { total: 12, succeeded: 9, in_flight: 3 })] })).toBe('Now, wave 2 of 4: 9 of 12 succeeded · 3 updating');
    expect(pausedNow({ ...paused, waves: [] })).toBeNull();
  });
  it('reads a manual-approval pause as approval, its button as "Start wave N"', () => {
    const approval = { ...paused, current_wave: 3, waiting: wait({ reason: 'approval' }) };
    expect(waitsForApproval(approval)).toBe(true);
    expect(pausedTitle(approval)).toBe('Waiting for your approval to start wave 3');
    expect(resumeLabel(approval)).toBe('Start wave 3');
    expect(waitsForApproval(paused)).toBe(false);
    expect(pausedTitle(paused)).toBe('Paused');
    expect(resumeLabel(paused)).toBe('Resume');
  });
  it('says that retrying failed devices resumes a paused rollout', () => {
    expect(retryLabel('paused')).toBe('Retry failed and resume');
    expect(retryLabel('running')).toBe('Retry failed');
    expect(retryLabel('completed')).toBe('Retry failed');
  });
  it('numbers waves from 1', () => {
    expect(waveOf({ current_wave: 1, wave_count: 4 })).toBe('wave 1 of 4');
    expect(waveOf({ current_wave: 0, wave_count: 4 })).toBe('wave 1 of 4');
    expect(waveOf({ current_wave: 0, wave_count: 0 })).toBe('no wave');
  });
});

describe('what the rollout waits on', () => {
  const now = Date.parse('2026-03-03T10:00:00Z');
  it('titles each reason and says when the wait ends', () => {
    const d = waitingText(wait({ reason: 'devices', summary: 'wave 2 of 4 waits for 1 device: pump-7 (rebooting, times out in 4 min)', until: '2026-03-03T10:04:00Z' }), now);
    expect(d.title).toBe('Waiting for devices');
    expect(d.summary).toBe('Wave 2 of 4 waits for 1 device: pump-7 (rebooting, times out in 4 min)');
    expect(d.until).toMatch(/^The last of them times out at .* \(in 4 min\) at the latest, retries included\.$/);
    expect(waitingText(wait({ reason: 'window', until: '2026-03-03T12:00:00Z' }), now)).toMatchObject({ title: 'Outside the maintenance window' });
    expect(waitingText(wait({ reason: 'window', until: '2026-03-03T12:00:00Z' }), now).until).toMatch(/^The window opens at .* \(in 2 h 0 min\)\.$/);
    expect(waitingText(wait({ reason: 'scheduled', until: '2026-03-03T10:30:00Z' }), now).until).toMatch(/^Starts at .* \(in 30 min\)\.$/);
    expect(waitingText(wait({ reason: 'concurrency' }), now)).toMatchObject({ title: 'At the limit of devices updating at once', until: null });
    expect(waitingText(wait({ reason: 'approval' }), now).title).toBe('Waiting for your approval');
    expect(waitingText(wait({ reason: 'paused' }), now).title).toBe('Paused');
  });
  it('says each device’s state, deadline, retries and when it was last heard from', () => {
    const dev: WaitingDevice = { job: 7, mac: 'aa', name: 'pump-7', wave: 2, state: 'rebooting', since: '2026-03-03T09:58:00Z', deadline: '2026-03-03T10:03:00Z', retries_left: 1, last_seen: '2026-03-03T09:57:00Z' };
    const f = waitingDeviceFacts(dev, now);
    expect(f.state).toBe('rebooting');
    expect(f.since).toMatch(/\(2 min ago\)$/);
    expect(f.deadline).toMatch(/\(in 3 min\)$/);
    expect(f.retries).toBe('1 retry left');
    expect(f.lastSeen).toBe('last heard from 3 min ago');
    expect(waitingDeviceFacts({ ...dev, retries_left: 0, last_seen: null, deadline: null }, now)).toMatchObject({ retries: 'no retry left', lastSeen: 'never heard from', deadline: 'no deadline' });
    expect(waitingDeviceFacts({ ...dev, retries_left: 2 }, now).retries).toBe('2 retries left');
  });
  it('asks before skipping, saying what a skip does', () => {
    expect(skipQuestion('pump-7', 'rebooting')).toBe('Stop waiting for pump-7? It will not be commanded again in this rollout; if it is updating it may still finish on its own.');
    expect(skipQuestion('pump-7', 'queued')).toMatch(/^Skip pump-7\? It will not be commanded/);
    expect(canSkip('rebooting', 'running')).toBe(true);
    expect(canSkip('queued', 'paused')).toBe(true);
    expect(canSkip('failed', 'running')).toBe(false);
    expect(canSkip('succeeded', 'running')).toBe(false);
    expect(canSkip('downloading', 'completed')).toBe(false);
  });
});

describe('the estimate is the engine’s', () => {
  const now = Date.parse('2026-03-03T10:00:00Z');
  it('shows its pace, its time left and what it rests on', () => {
    const e = estimateText({ per_minute: 3.24, remaining_secs: 240, basis: '3.2 devices/min over the last 5 min' }, 'running', now);
    expect(e).toMatchObject({ pace: '3.2', remaining: '4 min', basis: '3.2 devices/min over the last 5 min' });
    expect(e.finishes).toMatch(/^around /);
  });
  it('says nothing it does not know, and "done" once finished', () => {
    expect(estimateText({ per_minute: null, remaining_secs: null, basis: 'paused: nothing moves until it is resumed' }, 'paused', now)).toMatchObject({ pace: '—', remaining: '—', finishes: null });
    expect(estimateText({ per_minute: 12.6, remaining_secs: 0, basis: 'finished' }, 'completed', now)).toMatchObject({ pace: '13', remaining: 'done', finishes: null });
  });
});
