// Rollouts: the list, and the live state of the rollouts being watched. A live rollout keeps its
// jobs in a plain Map (no per-job reactivity) and bumps `version` once per applied batch, so
// 2,000 devices updating cost one re-render per frame. Its counts and per-wave counts are the
// engine's (from `GET /rollouts/{id}` and the live `rollout.progress` events), never recounted
// here; the sorted job list, completion times and failures by reason are computed once per
// `version` and cached, so opening the view again costs nothing. A rollout stays cached (and
// keeps following the stream) for a while after its view closes. What a rollout says about
// itself beyond its counts (why it paused, what Resume will do, what it waits on, its estimate,
// its outcome) comes only with `GET /rollouts/{id}` and the action answers: a state change on the
// stream reads the rollout again.

import { api } from '../api/client';
import type { Event, Job, JobCounts, JobState, Rollout, RolloutDetail, RolloutProgress, RolloutState, WaveStatus } from '../api/types';
import { FAILURE, TERMINAL, emptyCounts, groupByReason, type LiveJob, type ReasonGroup } from '../logic/progress';
import { versionSinceReboot } from '../logic/jobs';

const ms = (iso: string | null | undefined) => (iso ? Date.parse(iso) || 0 : 0);
const FINISHED: ReadonlySet<RolloutState> = new Set(['completed', 'cancelled']);

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
    currentVersion: versionSinceReboot(j.current_version ?? null, j.history),
    attempts: j.attempts,
    evidence: j.evidence ?? null,
  };
}

/** Per-wave counts by array index (wave number − 1), from the engine's `WaveStatus` list. */
export function waveCounts(waves: readonly WaveStatus[]): JobCounts[] {
  const out: JobCounts[] = [];
  for (const w of waves) out[w.number - 1] = w.counts;
  return Array.from(out, (c) => c ?? emptyCounts());
}

// Order of the live job list: by wave, then what needs attention first, then MAC.
const ORDER: Record<JobState, number> = { downloading: 0, installing: 1, rebooting: 2, verifying: 3, commanded: 4, failed: 5, timed_out: 6, queued: 7, succeeded: 8, skipped: 9, cancelled: 10 };
// Devices the plan skipped are in no wave: they come last.
const waveKey = (j: LiveJob) => j.wave ?? Number.MAX_SAFE_INTEGER;
const byWaveStateMac = (a: LiveJob, b: LiveJob) => waveKey(a) - waveKey(b) || ORDER[a.state] - ORDER[b.state] || (a.mac < b.mac ? -1 : a.mac > b.mac ? 1 : 0);

/** What the live view shows of the jobs, computed once per `version`. */
export interface LiveView {
  /** Every job, by wave, state (in flight, failed, queued, done), MAC. */
  sorted: LiveJob[];
  groups: ReasonGroup[];
}

export class LiveRollout {
  rollout = $state.raw<Rollout | null>(null);
  /** When `rollout` was read from the engine (ms): its estimate and waiting are as of then. */
  readAt = $state(0);
  /** The whole rollout's job counts, as the engine last reported them. */
  counts = $state.raw<JobCounts>(emptyCounts());
  /** Counts per wave (index = wave), as the engine last reported them. */
  waves = $state.raw<JobCounts[]>([]);
  /** Bumped whenever `jobs` changed; read it (or `view()`) in $derived to recompute. */
  version = $state(0);
  loaded = $state(false);
  error = $state<string | null>(null);
  readonly jobs = new Map<number, LiveJob>();
  /** Last time the view was open or closed (cache eviction). */
  touched = Date.now();
  watched = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private lastProgressAt = 0;
  private progressSeq = 0;
  private stopped = true;
  private finalLoad = false;
  /** When this copy last saw the rollout become completed or cancelled (ms). */
  private finishedSeenAt = 0;
  private cache: { version: number; view: LiveView } | null = null;

  constructor(
    readonly id: number,
    initial?: Rollout,
  ) {
    if (initial) this.setRollout(initial, true);
  }

  /**
   * Is `r` (read at `sentAt`, ms) older than what this copy knows: the rollout was seen finished
   * after the request was sent, and `r` says it is not? A finished rollout runs again only
   * through an action, which a read sent after it shows.
   */
  private isStale(r: Rollout, sentAt: number): boolean {
    return !!this.rollout && FINISHED.has(this.rollout.state) && !FINISHED.has(r.state) && sentAt <= this.finishedSeenAt;
  }

  private setRollout(r: Rollout, withCounts: boolean): void {
    if (FINISHED.has(r.state) && !(this.rollout && FINISHED.has(this.rollout.state))) this.finishedSeenAt = Date.now();
    this.rollout = r;
    this.readAt = Date.now();
    if (withCounts && r.counts) {
      this.counts = r.counts;
      this.waves = waveCounts(r.waves ?? []);
    }
  }

  async load(): Promise<void> {
    const seq = this.progressSeq;
    const started = Date.now();
    try {
      const detail = await api.rollout(this.id);
      // A read sent before the rollout was seen to finish may answer from before it did.
      if (this.isStale(detail.rollout, started)) return this.refreshSoon();
      // Counts from a live event received while the request ran may be newer than the answer's.
      this.merge(detail, seq === this.progressSeq || FINISHED.has(detail.rollout.state));
      this.error = null;
    } catch (e) {
      this.error = (e as Error).message;
    }
  }

  /** The engine's answer to an action (start, pause, resume, skip…): the rollout as it is now. */
  take(r: Rollout): void {
    // An action's answer may have been overtaken by the live events of the rollout finishing
    // (Resume of a rollout that then completes at once): read it again rather than go back.
    if (this.isStale(r, Number.NEGATIVE_INFINITY)) return this.refreshSoon();
    this.setRollout(r, true);
    this.noteState(r.state, true);
  }

  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  /** Reads the rollout again soon (coalesced): after a state change, its words changed too. */
  refreshSoon(ms = 300): void {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      void this.load();
    }, ms);
  }

  /** Merges a full answer: the server wins unless our copy of a job is newer (from live events). */
  merge(detail: RolloutDetail, withCounts = true): void {
    this.setRollout(detail.rollout, withCounts);
    for (const j of detail.jobs) {
      const cur = this.jobs.get(j.id);
      const next = liveJobOf(j);
      if (!cur || next.updatedAt >= cur.updatedAt || TERMINAL.has(next.state)) this.jobs.set(j.id, next);
    }
    this.loaded = true;
    this.version++;
    this.noteState(detail.rollout.state, false);
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
        : { id: d.job, mac: d.mac ?? '', wave: d.wave ?? null, state, progress: null, error: null, doneAt: null, updatedAt: at, fromVersion: null, currentVersion: null, attempts: d.attempt ?? 0 };
      j.state = state;
      j.updatedAt = at;
      if (typeof d.attempt === 'number') j.attempts = d.attempt;
      if (state === 'failed' || state === 'timed_out' || state === 'skipped') j.error = d.detail ?? j.error;
      if (state === 'queued' || state === 'succeeded') j.error = null;
      if (state === 'succeeded') this.succeeded(j);
      // What it reported before the reboot is not what it runs after.
      if (state === 'rebooting') j.currentVersion = null;
      j.doneAt = TERMINAL.has(state) ? at : null;
      this.jobs.set(d.job, j);
      changed = true;
    }
    if (changed) this.version++;
  }

  /** The engine declares `succeeded` only once the device runs the rollout's version. */
  private succeeded(j: LiveJob): void {
    j.progress = 100;
    if (this.rollout) j.currentVersion = this.rollout.firmware_version;
  }

  /** The live-only `rollout.progress` event: changed jobs, and the engine's counts. */
  applyProgress(p: RolloutProgress): void {
    if (this.overtaken(p.state)) return;
    const now = Date.now();
    this.lastProgressAt = now;
    this.progressSeq++;
    for (const u of p.jobs) {
      const cur = this.jobs.get(u.job);
      if (!cur) continue;
      const becameDone = TERMINAL.has(u.state) && !TERMINAL.has(cur.state);
      const j: LiveJob = {
        ...cur,
        state: u.state,
        progress: u.progress ?? cur.progress,
        error: u.error,
        updatedAt: now,
        doneAt: TERMINAL.has(u.state) ? (becameDone ? now : cur.doneAt) : null,
      };
      if (u.state === 'succeeded') this.succeeded(j);
      if (u.state === 'rebooting') j.currentVersion = null;
      this.jobs.set(u.job, j);
    }
    this.counts = p.counts;
    this.waves = waveCounts(p.waves);
    if (this.rollout && (this.rollout.state !== p.state || this.rollout.current_wave !== p.current_wave)) {
      if (FINISHED.has(p.state) && !FINISHED.has(this.rollout.state)) this.finishedSeenAt = now;
      this.rollout = { ...this.rollout, state: p.state, current_wave: p.current_wave };
      this.noteState(p.state, true);
    }
    this.version++;
  }

  /**
   * Does a live event say a rollout this copy saw finish is running (or paused) again? Stored
   * events reach the stream once written and live progress as soon as it is counted, so one may
   * overtake the other: a finished rollout runs again only through an action, which a read
   * sent now shows. The event is not taken; the read decides.
   */
  private overtaken(state: RolloutState | undefined): boolean {
    if (!state || !this.rollout || !FINISHED.has(this.rollout.state) || FINISHED.has(state)) return false;
    this.refreshSoon();
    return true;
  }

  applyRolloutEvent(e: Event): void {
    const d = e.data as { state?: Rollout['state']; wave?: number; reason?: string | null };
    if (!this.rollout || this.overtaken(d.state)) return;
    const next = { ...this.rollout };
    if (e.kind === 'rollout.wave_started' && typeof d.wave === 'number') next.current_wave = d.wave;
    else if (d.state) {
      next.state = d.state;
      next.pause_reason = d.reason ?? null;
      // The event is the pause: its time is when it paused (the read that follows says the rest).
      if (d.state !== 'paused') next.paused_at = null;
      else if (e.at && d.state !== this.rollout.state) next.paused_at = e.at;
      if (typeof d.wave === 'number') next.current_wave = d.wave;
    }
    if (FINISHED.has(next.state) && !FINISHED.has(this.rollout.state)) this.finishedSeenAt = Date.now();
    this.rollout = next;
    if (d.state) this.noteState(d.state, true);
    // Why it paused, what Resume will do, what it waits on: only a read says them.
    if (e.kind !== 'rollout.progress' && (d.state || e.kind === 'rollout.acknowledged') && !FINISHED.has(next.state)) this.refreshSoon();
  }

  /**
   * Once a rollout is completed or cancelled, reads it once more so the final view is the
   * engine's (versions, errors, counts), not what the live events added up to.
   */
  private noteState(state: RolloutState, live: boolean): void {
    if (!FINISHED.has(state)) {
      this.finalLoad = false;
      return;
    }
    if (this.finalLoad) return;
    this.finalLoad = true;
    if (live) void this.load();
  }

  /** Polls the full state: every 2 s while running (10 s when live progress arrives), else stops. */
  startPolling(): void {
    if (!this.stopped) return;
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

  /** The sorted jobs, completion times and failures by reason; recomputed only when `version` changed. */
  view(): LiveView {
    const v = this.version;
    if (this.cache?.version === v) return this.cache.view;
    // The previous order with each job's newest copy is nearly sorted: the sort (TimSort) is
    // close to linear then, where sorting the Map's order would cost n log n every frame.
    const prev = this.cache?.view.sorted;
    let sorted: LiveJob[];
    if (prev && prev.length <= this.jobs.size) {
      sorted = prev.map((j) => this.jobs.get(j.id) ?? j);
      if (sorted.length < this.jobs.size) {
        const have = new Set(prev.map((j) => j.id));
        for (const j of this.jobs.values()) if (!have.has(j.id)) sorted.push(j);
      }
    } else sorted = [...this.jobs.values()];
    sorted.sort(byWaveStateMac);
    const failures: { mac: string; reason: string | null }[] = [];
    for (const j of sorted) if (FAILURE.has(j.state)) failures.push({ mac: j.mac, reason: j.error });
    const view = { sorted, groups: groupByReason(failures) };
    this.cache = { version: v, view };
    return view;
  }
}

/** Rollouts kept (following the stream, not polled) after their view closed. */
const KEEP_UNWATCHED = 3;

class RolloutsStore {
  list = $state.raw<Rollout[]>([]);
  loaded = $state(false);
  error = $state<string | null>(null);
  /** Rollouts being watched (views open) or recently watched, by id. */
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

  /** The live state of a rollout, cached if it was open recently; starts polling it. */
  watch(id: number): LiveRollout {
    let l = this.live.get(id);
    if (!l) {
      l = new LiveRollout(id, this.list.find((r) => r.id === id));
      this.live.set(id, l);
    }
    l.watched = true;
    l.touched = Date.now();
    l.startPolling();
    return l;
  }

  /** The view closed: stop polling; keep the few most recent for a quick return. */
  unwatch(id: number): void {
    const l = this.live.get(id);
    if (!l) return;
    l.stopPolling();
    l.watched = false;
    l.touched = Date.now();
    const idle = [...this.live.values()].filter((x) => !x.watched).sort((a, b) => b.touched - a.touched);
    for (const x of idle.slice(KEEP_UNWATCHED)) this.live.delete(x.id);
  }

  /** Re-reads the rollouts whose views are open (after the stream reconnected). */
  reloadWatched(): void {
    for (const l of this.live.values()) if (l.watched) void l.load();
  }

  byId(id: number): Rollout | undefined {
    return this.list.find((r) => r.id === id);
  }

  /** A rollout as the engine answered it (created, or after an action): list and live view. */
  put(r: Rollout): void {
    const i = this.list.findIndex((x) => x.id === r.id);
    this.list = i < 0 ? [r, ...this.list] : this.list.map((x) => (x.id === r.id ? r : x));
    this.live.get(r.id)?.take(r);
  }

  /** Stops commanding and waiting for one device of a rollout. */
  async skip(id: number, job: number): Promise<void> {
    this.put(await api.skipJob(id, job));
    await this.live.get(id)?.load();
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
          // Its outcome, what it waits on, its counts: the list is read again.
          this.reloadSoon(1000);
        }
      }
    }
    if (listChanged) this.list = next;
    for (const [rid, evs] of jobsByRollout) this.live.get(rid)?.applyJobEvents(evs);
    if (jobsByRollout.size) this.reloadSoon(3000); // list counts
  }
}

export const rollouts = new RolloutsStore();
