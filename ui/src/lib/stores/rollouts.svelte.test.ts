import { beforeEach, describe, expect, it, vi } from 'vitest';
const rolloutMock = vi.fn();
vi.mock('../api/client', () => ({ api: { rollout: (id: number) => rolloutMock(id) }, ApiError: class {} }));
import { LiveRollout, waveCounts } from './rollouts.svelte';
import type { Event, Job, JobCounts, Rollout, RolloutDetail, RolloutProgress } from '../api/types';
import { emptyCounts } from '../logic/progress';

const job = (id: number, state: Job['state'], wave: number | null, updated = '2026-01-01T00:00:00Z', current: string | null = null): Job => ({
  id, rollout_id: 1, mac: `m${id}`, device_id: null, wave, state, attempts: 1, from_version: '1.0.0', current_version: current,
  error: null, progress: null, deadline: null, history: [], updated_at: updated, evidence: null, downloaded: false, authenticated: true,
});
const counts = (p: Partial<JobCounts>): JobCounts => ({ ...emptyCounts(), ...p });
const rollout = (p: Partial<Rollout> = {}): Rollout =>
  ({
    id: 1, name: 'r', firmware_id: 1, firmware_version: '2.0.0', state: 'running', current_wave: 0, pause_reason: null,
    counts: counts({ total: 3, queued: 3 }), waves: [{ number: 1, counts: counts({ total: 1, queued: 1 }) }, { number: 2, counts: counts({ total: 2, queued: 2 }) }],
    ...p,
  }) as Rollout;
const ev = (kind: string, data: Record<string, unknown>, at = '2026-01-01T00:00:10Z'): Event => ({ id: 1, at, kind, actor: 'engine', subject: null, data: data as Event['data'] });
const progress = (p: Partial<RolloutProgress>): RolloutProgress => ({ rollout: 1, state: 'running', current_wave: 0, jobs: [], counts: emptyCounts(), waves: [], ...p });

beforeEach(() => rolloutMock.mockReset());

describe('LiveRollout', () => {
  it('applies job events in a batch with one version bump; counts stay the engine\'s', () => {
    const l = new LiveRollout(1);
    l.merge({ rollout: rollout(), jobs: [job(1, 'queued', 0), job(2, 'queued', 1), job(3, 'queued', 1)] });
    expect(l.counts.queued).toBe(3);
    expect(l.waves.map((w) => w.total)).toEqual([1, 2]);
    const v = l.version;
    l.applyJobEvents([
      ev('job.downloading', { job: 1, rollout: 1, wave: 0 }),
      ev('job.succeeded', { job: 1, rollout: 1, wave: 0 }),
      ev('job.failed', { job: 2, rollout: 1, wave: 1, detail: 'flash write failed' }),
    ]);
    expect(l.version).toBe(v + 1);
    expect(l.jobs.get(2)?.error).toBe('flash write failed');
    expect(l.jobs.get(1)?.doneAt).toBe(Date.parse('2026-01-01T00:00:10Z'));
    const view = l.view();
    expect(view.sorted.map((j) => j.id)).toEqual([1, 2, 3]);
    expect(view.groups).toEqual([{ reason: 'flash write failed', macs: ['m2'] }]);
    expect(l.view()).toBe(view); // cached until the next change
  });
  it('does not let an older poll answer undo a newer live event', () => {
    const l = new LiveRollout(1);
    l.merge({ rollout: rollout(), jobs: [job(1, 'queued', 0)] });
    l.applyJobEvents([ev('job.installing', { job: 1, rollout: 1 }, '2026-01-01T00:00:20Z')]);
    l.merge({ rollout: rollout(), jobs: [job(1, 'downloading', 0, '2026-01-01T00:00:15Z')] });
    expect(l.jobs.get(1)?.state).toBe('installing');
    l.merge({ rollout: rollout(), jobs: [job(1, 'verifying', 0, '2026-01-01T00:00:25Z')] });
    expect(l.jobs.get(1)?.state).toBe('verifying');
  });
  it('takes counts and waves from rollout.progress, and the pause reason', () => {
    const l = new LiveRollout(1);
    l.merge({ rollout: rollout(), jobs: [job(1, 'downloading', 0)] });
    l.applyProgress(progress({
      jobs: [{ job: 1, mac: 'm1', state: 'downloading', progress: 42, error: null }],
      counts: counts({ total: 3, in_flight: 1, queued: 2 }),
      waves: [{ number: 2, counts: counts({ total: 2, queued: 2 }) }, { number: 1, counts: counts({ total: 1, in_flight: 1 }) }],
    }));
    expect(l.jobs.get(1)?.progress).toBe(42);
    expect(l.counts.in_flight).toBe(1);
    expect(l.waves.map((w) => w.in_flight)).toEqual([1, 0]);
    l.applyRolloutEvent(ev('rollout.paused', { id: 1, state: 'paused', wave: 1, reason: 'wave 2: 3 of 10 failed (max 10%)' }));
    expect(l.rollout?.state).toBe('paused');
    expect(l.rollout?.pause_reason).toMatch(/3 of 10/);
  });
  it('shows the target version for devices that succeeded through live events (job event or progress)', () => {
    const l = new LiveRollout(1);
    l.merge({ rollout: rollout(), jobs: [job(1, 'verifying', 0, undefined, '1.0.0'), job(2, 'verifying', 1, undefined, '1.0.0')] });
    l.applyJobEvents([ev('job.succeeded', { job: 1, rollout: 1, wave: 0 })]);
    l.applyProgress(progress({ jobs: [{ job: 2, mac: 'm2', state: 'succeeded', progress: null, error: null }] }));
    expect(l.jobs.get(1)?.currentVersion).toBe('2.0.0');
    expect(l.jobs.get(2)?.currentVersion).toBe('2.0.0');
    expect(l.jobs.get(2)?.doneAt).toBeTypeOf('number');
  });
  it('reloads once when the rollout completes, and the answer wins', async () => {
    const l = new LiveRollout(1);
    l.merge({ rollout: rollout(), jobs: [job(1, 'verifying', 0, undefined, '1.0.0')] });
    const final: RolloutDetail = { rollout: rollout({ state: 'completed', counts: counts({ total: 1, succeeded: 1 }) }), jobs: [job(1, 'succeeded', 0, '2026-01-01T00:01:00Z', '2.0.0')] };
    rolloutMock.mockResolvedValue(final);
    l.applyRolloutEvent(ev('rollout.completed', { id: 1, state: 'completed' }));
    l.applyProgress(progress({ state: 'completed', counts: counts({ total: 1, succeeded: 1 }) }));
    l.applyRolloutEvent(ev('rollout.completed', { id: 1, state: 'completed' }));
    await vi.waitFor(() => expect(l.jobs.get(1)?.state).toBe('succeeded'));
    expect(rolloutMock).toHaveBeenCalledTimes(1);
    expect(l.counts.succeeded).toBe(1);
    expect(l.rollout?.state).toBe('completed');
    // a rollout already finished when first loaded is not read twice
    const done = new LiveRollout(1);
    done.merge(final);
    done.applyRolloutEvent(ev('rollout.completed', { id: 1, state: 'completed' }));
    expect(rolloutMock).toHaveBeenCalledTimes(1);
  });
  it('reads the rollout again after a state change on the stream: why it paused and what Resume does come only with a read', async () => {
    vi.useFakeTimers();
    try {
      const l = new LiveRollout(1);
      l.merge({ rollout: rollout(), jobs: [job(1, 'downloading', 1)] });
      const paused = rollout({ state: 'paused', pause_reason: 'wave 1 of 2: 1 of 1 devices failed (threshold 10%)', on_resume: 'Resume acknowledges 1 failed device (wave 1): …' });
      rolloutMock.mockResolvedValue({ rollout: paused, jobs: [job(1, 'failed', 1, '2026-01-01T00:00:30Z')] });
      l.applyRolloutEvent(ev('rollout.paused', { id: 1, state: 'paused', wave: 1, reason: paused.pause_reason }));
      l.applyRolloutEvent(ev('rollout.acknowledged', { id: 1, failures: 1 }));
      expect(rolloutMock).not.toHaveBeenCalled();
      await vi.advanceTimersByTimeAsync(400);
      expect(rolloutMock).toHaveBeenCalledTimes(1); // coalesced
      expect(l.rollout?.on_resume).toMatch(/^Resume acknowledges/);
    } finally {
      vi.useRealTimers();
    }
  });
  it('takes an action’s answer whole (what it waits on, its estimate)', () => {
    vi.useFakeTimers();
    try {
      vi.setSystemTime(Date.parse('2026-01-01T00:00:00Z'));
      const l = new LiveRollout(1);
      l.merge({ rollout: rollout(), jobs: [] });
      vi.setSystemTime(Date.parse('2026-01-01T00:00:05Z'));
      const waiting = { reason: 'paused', summary: 'paused: by a person', until: null, devices: [], device_count: 0 } as Rollout['waiting'];
      const estimate = { per_minute: 12, remaining_secs: 10, basis: 'paused' };
      l.take(rollout({ state: 'paused', on_resume: 'Resume continues wave 1 of 2.', counts: counts({ total: 3, failed: 1, queued: 2 }), waiting, estimate }));
      expect(l.rollout?.on_resume).toBe('Resume continues wave 1 of 2.');
      expect(l.rollout?.waiting).toEqual(waiting);
      expect(l.rollout?.estimate).toEqual(estimate);
      expect(l.counts.failed).toBe(1);
      expect(l.readAt).toBe(Date.parse('2026-01-01T00:00:05Z'));
    } finally {
      vi.useRealTimers();
    }
  });
  it("never goes back to running on an answer the rollout's completion overtook", async () => {
    vi.useFakeTimers();
    try {
      const l = new LiveRollout(1);
      l.merge({ rollout: rollout({ state: 'paused' }), jobs: [] });
      // Resume is sent; the rollout completes at once and its event arrives before the answer.
      rolloutMock.mockResolvedValue({ rollout: rollout({ state: 'completed', outcome: 'some_failed' }), jobs: [] });
      l.applyRolloutEvent(ev('rollout.completed', { id: 1, state: 'completed' }));
      expect(l.rollout?.state).toBe('completed');
      l.take(rollout({ state: 'running' }));
      expect(l.rollout?.state, 'the stale answer is not taken').toBe('completed');
      await vi.advanceTimersByTimeAsync(400);
      expect(rolloutMock).toHaveBeenCalled();
      expect(l.rollout?.state).toBe('completed');
      // A read sent after it finished is believed (a retry that runs it again).
      rolloutMock.mockResolvedValue({ rollout: rollout({ state: 'running' }), jobs: [] });
      await vi.advanceTimersByTimeAsync(10);
      await l.load();
      expect(l.rollout?.state).toBe('running');
    } finally {
      vi.useRealTimers();
    }
  });
  it('never goes back to running on a live event the completion overtook; a read decides', async () => {
    vi.useFakeTimers();
    try {
      const l = new LiveRollout(1);
      l.merge({ rollout: rollout(), jobs: [job(1, 'verifying', 1, '2026-01-01T00:00:05Z', '1.0.0')] });
      rolloutMock.mockResolvedValue({ rollout: rollout({ state: 'completed', outcome: 'all_succeeded' }), jobs: [job(1, 'succeeded', 1, '2026-01-01T00:00:20Z', '2.0.0')] });
      // The stored `rollout.completed` arrives first; progress counted before it, and the stored
      // `rollout.running` of a Resume written late, arrive after it.
      l.applyRolloutEvent(ev('rollout.completed', { id: 1, state: 'completed' }));
      await vi.advanceTimersByTimeAsync(10);
      const calls = rolloutMock.mock.calls.length;
      const v = l.version;
      l.applyProgress(progress({ state: 'running', jobs: [{ job: 1, mac: 'm1', state: 'verifying', progress: 90, error: null }], counts: counts({ total: 1, in_flight: 1 }) }));
      l.applyRolloutEvent(ev('rollout.running', { id: 1, state: 'running', action: 'resumed' }));
      expect(l.rollout?.state).toBe('completed');
      expect(l.jobs.get(1)?.state, 'nor its jobs').toBe('succeeded');
      expect(l.version).toBe(v);
      await vi.advanceTimersByTimeAsync(400);
      expect(rolloutMock.mock.calls.length, 'one read, coalesced').toBe(calls + 1);
      expect(l.rollout?.state).toBe('completed');
      // A retry is an action: its read says running, and the stream is followed again.
      rolloutMock.mockResolvedValue({ rollout: rollout({ state: 'running' }), jobs: [job(1, 'queued', 1, '2026-01-01T00:01:00Z')] });
      l.applyRolloutEvent(ev('rollout.running', { id: 1, state: 'running', action: 'retried' }));
      expect(l.rollout?.state).toBe('completed');
      await vi.advanceTimersByTimeAsync(400);
      expect(l.rollout?.state).toBe('running');
      l.applyProgress(progress({ state: 'paused' }));
      expect(l.rollout?.state).toBe('paused');
    } finally {
      vi.useRealTimers();
    }
  });
  it('indexes wave counts by wave', () => {
    expect(waveCounts([{ number: 2, counts: counts({ total: 5 }) }]).map((c) => c.total)).toEqual([0, 5]);
  });
});
