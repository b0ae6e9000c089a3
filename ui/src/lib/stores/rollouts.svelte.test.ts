import { describe, expect, it, vi } from 'vitest';
vi.mock('../api/client', () => ({ api: {}, ApiError: class {} }));
import { LiveRollout } from './rollouts.svelte';
import type { Event, Job, Rollout } from '../api/types';

const job = (id: number, state: Job['state'], wave: number, updated = '2026-01-01T00:00:00Z'): Job => ({
  id, rollout_id: 1, mac: `m${id}`, device_id: null, wave, state, attempts: 1, from_version: '1.0.0', current_version: null,
  error: null, progress: null, history: [], updated_at: updated,
});
const rollout = { id: 1, state: 'running', waves: [{}, {}], pause_reason: null, current_wave: 0 } as unknown as Rollout;
const ev = (kind: string, data: Record<string, unknown>, at = '2026-01-01T00:00:10Z'): Event => ({ id: 1, at, kind, actor: 'engine', subject: null, data: data as Event['data'] });

describe('LiveRollout', () => {
  it('applies job events in a batch with one version bump and recounts', () => {
    const l = new LiveRollout(1);
    l.merge({ rollout, jobs: [job(1, 'queued', 0), job(2, 'queued', 1), job(3, 'queued', 1)] });
    const v = l.version;
    l.applyJobEvents([
      ev('job.downloading', { job: 1, rollout: 1, wave: 0 }),
      ev('job.succeeded', { job: 1, rollout: 1, wave: 0 }),
      ev('job.failed', { job: 2, rollout: 1, wave: 1, detail: 'flash write failed' }),
    ]);
    expect(l.version).toBe(v + 1);
    const c = l.counts();
    expect(c.total.succeeded).toBe(1);
    expect(c.total.failed).toBe(1);
    expect(c.waves[1].queued).toBe(1);
    expect(l.jobs.get(2)?.error).toBe('flash write failed');
    expect(l.jobs.get(1)?.doneAt).toBe(Date.parse('2026-01-01T00:00:10Z'));
  });
  it('does not let an older poll answer undo a newer live event', () => {
    const l = new LiveRollout(1);
    l.merge({ rollout, jobs: [job(1, 'queued', 0)] });
    l.applyJobEvents([ev('job.installing', { job: 1, rollout: 1 }, '2026-01-01T00:00:20Z')]);
    l.merge({ rollout, jobs: [job(1, 'downloading', 0, '2026-01-01T00:00:15Z')] });
    expect(l.jobs.get(1)?.state).toBe('installing');
    l.merge({ rollout, jobs: [job(1, 'verifying', 0, '2026-01-01T00:00:25Z')] });
    expect(l.jobs.get(1)?.state).toBe('verifying');
  });
  it('applies live progress and the pause reason', () => {
    const l = new LiveRollout(1);
    l.merge({ rollout, jobs: [job(1, 'downloading', 0)] });
    l.applyProgress({ rollout: 1, jobs: [{ job: 1, mac: 'm1', state: 'downloading', progress: 42 }] });
    expect(l.jobs.get(1)?.progress).toBe(42);
    l.applyRolloutEvent(ev('rollout.paused', { id: 1, state: 'paused', wave: 1, reason: 'wave 2: 3 of 10 failed (max 10%)' }));
    expect(l.rollout?.state).toBe('paused');
    expect(l.rollout?.pause_reason).toMatch(/3 of 10/);
  });
});
