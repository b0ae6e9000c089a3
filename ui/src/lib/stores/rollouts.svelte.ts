// Rollouts: the list, and the live state of the rollout being watched. A live rollout keeps its
// jobs in a plain Map (no per-job reactivity) and bumps `version` once per applied batch, so
// 2,000 devices updating cost one re-render per frame.

import { api } from '../api/client';
import type { Event, Job, JobState, Rollout, RolloutDetail, RolloutProgress } from '../api/types';
import { TERMINAL, countJobs, type LiveJob } from '../logic/progress';

const ms = (iso: string | null | undefined) => (iso ? Date.parse(iso) || 0 : 0);

function liveJobOf(j: Job): LiveJob {
  let doneAt: number | null = null;
  if (TERMINAL.has(j.state)) {
    const last = j.history.length ? j.history[j.history.length - 1] : null;
    doneAt = last && last.state === j.state ? ms(last.at) : ms(j.updated_at);
  }
  return {
    id: j.id,
    mac: j.mac,
    wave: j.wave,
    state: j.state,
    progress: j.progress ?? null,
    error: j.error ?? null,
    doneAt,
    updatedAt: ms(j.updated_at),
    fromVersion: j.from_version ?? null,
    currentVersion: j.current_version ?? null,
    attempts: j.attempts,
  };
}

export class LiveRollout {
  rollout = $state.raw<Rollout | null>(null);
  /** Bumped whenever `jobs` changed; read it in $derived to recompute. */
  version = $state(0);
  loaded = $state(false);
  error = $state<string | null>(null);
  readonly jobs = new Map<number, LiveJob>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private lastProgressAt = 0;
  private stopped = false;

  constructor(readonly id: number) {}

  async load(): Promise<void> {
    try {
      this.merge(await api.rollout(this.id));
      this.error = null;
    } catch (e) {
      this.error = (e as Error).message;
    }
  }

  /** Merges a full answer: the server wins unless our copy of a job is newer (from live events). */
  merge(detail: RolloutDetail): void {
    this.rollout = detail.rollout;
    for (const j of detail.jobs) {
      const cur = this.jobs.get(j.id);
      const next = liveJobOf(j);
      if (!cur || next.updatedAt >= cur.updatedAt || TERMINAL.has(next.state)) this.jobs.set(j.id, next);
    }
    this.loaded = true;
    this.version++;
  }

  /** `job.<state>` events for this rollout. */
  applyJobEvents(events: Event[]): void {
    let changed = false;
    for (const e of events) {
      const d = e.data as { job?: number; mac?: string; wave?: number; detail?: string | null; attempt?: number };
      if (typeof d.job !== 'number') continue;
      const state = e.kind.slice(4) as JobState;
      const at = ms(e.at) || Date.now();
      const cur = this.jobs.get(d.job);
      const j: LiveJob = cur
        ? { ...cur }
        : { id: d.job, mac: d.mac ?? '', wave: d.wave ?? 0, state, progress: null, error: null, doneAt: null, updatedAt: at, fromVersion: null, currentVersion: null, attempts: d.attempt ?? 0 };
      j.state = state;
      j.updatedAt = at;
      if (typeof d.attempt === 'number') j.attempts = d.attempt;
      if (state === 'failed' || state === 'timed_out' || state === 'skipped') j.error = d.detail ?? j.error;
      if (state === 'queued' || state === 'succeeded') j.error = null;
      if (state === 'succeeded') j.progress = 100;
      j.doneAt = TERMINAL.has(state) ? at : null;
      this.jobs.set(d.job, j);
      changed = true;
    }
    if (changed) this.version++;
  }

  /** The live-only `rollout.progress` event. */
  applyProgress(p: RolloutProgress): void {
    const now = Date.now();
    this.lastProgressAt = now;
    for (const u of p.jobs ?? []) {
      const cur = this.jobs.get(u.job);
      if (!cur) continue;
      const becameDone = TERMINAL.has(u.state) && !TERMINAL.has(cur.state);
      this.jobs.set(u.job, {
        ...cur,
        state: u.state ?? cur.state,
        progress: u.progress ?? cur.progress,
        error: u.error !== undefined ? u.error : cur.error,
        updatedAt: now,
        doneAt: TERMINAL.has(u.state) ? (becameDone ? now : cur.doneAt) : null,
      });
    }
    this.version++;
  }

  applyRolloutEvent(e: Event): void {
    const d = e.data as { state?: Rollout['state']; wave?: number; reason?: string | null };
    if (!this.rollout) return;
    const next = { ...this.rollout };
    if (e.kind === 'rollout.wave_started' && typeof d.wave === 'number') next.current_wave = d.wave;
    else if (d.state) {
      next.state = d.state;
      next.pause_reason = d.reason ?? null;
      if (typeof d.wave === 'number') next.current_wave = d.wave;
    }
    this.rollout = next;
  }

  /** Polls the full state: every 2 s while running (10 s when live progress arrives), else stops. */
  startPolling(): void {
    this.stopped = false;
    const tick = async () => {
      if (this.stopped) return;
      await this.load();
      if (this.stopped) return;
      const active = this.rollout && (this.rollout.state === 'running' || this.rollout.state === 'paused' || this.rollout.state === 'draft');
      const live = Date.now() - this.lastProgressAt < 5000;
      const delay = !active ? 15000 : live ? 10000 : this.rollout?.state === 'running' ? 2000 : 5000;
      this.timer = setTimeout(tick, delay);
    };
    void tick();
  }

  stopPolling(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  counts() {
    return countJobs(this.jobs.values(), this.rollout?.waves.length ?? 0);
  }
}

class RolloutsStore {
  list = $state.raw<Rollout[]>([]);
  loaded = $state(false);
  error = $state<string | null>(null);
  /** Rollouts being watched (views open), by id. */
  readonly live = new Map<number, LiveRollout>();
  private reloadTimer: ReturnType<typeof setTimeout> | null = null;
  private lastReload = 0;

  async load(): Promise<void> {
    try {
      this.list = await api.rollouts();
      this.loaded = true;
      this.error = null;
    } catch (e) {
      this.error = (e as Error).message;
    } finally {
      this.lastReload = Date.now();
    }
  }

  /** Reloads the list at most every `minGap` ms. */
  reloadSoon(minGap = 2000): void {
    if (this.reloadTimer) return;
    const wait = Math.max(150, minGap - (Date.now() - this.lastReload));
    this.reloadTimer = setTimeout(() => {
      this.reloadTimer = null;
      void this.load();
    }, wait);
  }

  watch(id: number): LiveRollout {
    let l = this.live.get(id);
    if (!l) {
      l = new LiveRollout(id);
      this.live.set(id, l);
    }
    return l;
  }

  unwatch(id: number): void {
    this.live.get(id)?.stopPolling();
    this.live.delete(id);
  }

  put(r: Rollout): void {
    const i = this.list.findIndex((x) => x.id === r.id);
    this.list = i < 0 ? [r, ...this.list] : this.list.map((x) => (x.id === r.id ? r : x));
    this.live.get(r.id)?.applyRolloutEvent({ id: 0, at: '', kind: `rollout.${r.state}`, actor: '', subject: null, data: { state: r.state, reason: r.pause_reason, wave: r.current_wave } });
  }

  applyEvents(events: Event[]): void {
    const jobsByRollout = new Map<number, Event[]>();
    let listChanged = false;
    let next = this.list;
    for (const e of events) {
      if (e.kind.startsWith('job.')) {
        const rid = (e.data as { rollout?: number }).rollout;
        if (typeof rid !== 'number') continue;
        const arr = jobsByRollout.get(rid);
        if (arr) arr.push(e);
        else jobsByRollout.set(rid, [e]);
        continue;
      }
      if (e.kind === 'rollout.progress') {
        const p = e.data as unknown as RolloutProgress;
        this.live.get(p.rollout)?.applyProgress(p);
        continue;
      }
      if (e.kind.startsWith('rollout.')) {
        const id = (e.data as { id?: number }).id ?? Number(e.subject?.replace(/^rollout:/, ''));
        this.live.get(id)?.applyRolloutEvent(e);
        const d = e.data as { state?: Rollout['state']; reason?: string | null; wave?: number };
        const i = next.findIndex((r) => r.id === id);
        if (i < 0 || e.kind === 'rollout.created') {
          this.reloadSoon(0);
          continue;
        }
        if (d.state) {
          if (next === this.list) next = next.slice();
          next[i] = { ...next[i], state: d.state, pause_reason: d.reason ?? null, current_wave: d.wave ?? next[i].current_wave };
          listChanged = true;
        }
      }
    }
    if (listChanged) this.list = next;
    for (const [rid, evs] of jobsByRollout) this.live.get(rid)?.applyJobEvents(evs);
    if (jobsByRollout.size) this.reloadSoon(3000); // list counts
  }
}

export const rollouts = new RolloutsStore();
