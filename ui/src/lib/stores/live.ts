// The one live connection: the SSE stream, parsed, batched per frame and dispatched to stores.

import { API, authHeaders } from '../api/client';
import { openStream } from '../api/sse';
import type { Event } from '../api/types';
import { Batcher, frameOrTimeout } from '../logic/batch';
import { diskFullOf } from '../logic/storage';
import { devices } from './devices.svelte';
import { recent } from './events.svelte';
import { firmware } from './firmware.svelte';
import { rollouts } from './rollouts.svelte';
import { session } from './session.svelte';
import { status } from './status.svelte';

/** Reloads every store (start-up, reconnect after a gap, `lagged`). */
export function reloadAll(): Promise<unknown> {
  return Promise.allSettled([devices.load(), firmware.load(), rollouts.load(), status.load()]);
}

export function dispatch(batch: Event[]): void {
  const dev: Event[] = [];
  const ro: Event[] = [];
  let fw = false;
  let st = false;
  // A label's channel changes the channel of its devices: no event per device says so.
  let labels = false;
  for (const e of batch) {
    if (e.kind === 'lagged') {
      void reloadAll();
      return;
    }
    const full = diskFullOf(e);
    if (full !== null) status.diskFull = full;
    if (e.kind.startsWith('device.')) dev.push(e);
    else if (e.kind.startsWith('job.') || e.kind.startsWith('rollout.')) ro.push(e);
    else if (e.kind.startsWith('firmware.')) fw = true;
    else if (e.kind === 'label.channel') labels = true;
    else if (e.kind.startsWith('demo.') || e.kind.startsWith('engine.') || e.kind.startsWith('settings.')) st = true;
  }
  if (dev.length) devices.applyEvents(dev);
  if (ro.length) rollouts.applyEvents(ro);
  if (fw) firmware.reloadSoon();
  if (labels) void devices.load();
  if (st) void status.load();
  recent.add(batch.filter((e) => e.kind !== 'rollout.progress' && e.kind !== 'storage.changed'));
}

// Test hook: performance and end-to-end scripts inject synthetic events. Present in development,
// or in a build when localStorage `flotilla.debug` is "1".
const debug = typeof window !== 'undefined' && (import.meta.env.DEV || globalThis.localStorage?.getItem('flotilla.debug') === '1');
if (debug) {
  (window as unknown as { __flotillaDispatch: (e: Event) => void }).__flotillaDispatch = (() => {
    const b = new Batcher<Event>(dispatch, frameOrTimeout);
    return (e: Event) => b.push(e);
  })();
}

let stream: ReturnType<typeof openStream> | null = null;

/**
 * Opens the live stream, then loads every store: the engine subscribes a stream before it
 * answers, so reading once it is open leaves no gap where a change (a device discovered) is in
 * neither the answer nor the stream. A stream that cannot open does not leave the views empty:
 * the stores are loaded at its first failure (and again once it opens).
 */
export function connectLive(): void {
  if (stream) return;
  const batcher = new Batcher<Event>(dispatch, frameOrTimeout);
  let wasOpen = false;
  let loadedEarly = false;
  stream = openStream({
    url: `${API}/events/stream`,
    headers: () => authHeaders(),
    onFrame: (f) => {
      if (f.event === 'lagged') {
        batcher.push({ id: 0, at: new Date().toISOString(), kind: 'lagged', actor: 'engine', subject: null, data: {} });
        return;
      }
      try {
        // Every frame's data is an Event (live-only `rollout.progress` ones have id 0).
        const e = JSON.parse(f.data) as Event;
        if (typeof e.kind !== 'string') e.kind = f.event;
        batcher.push(e);
      } catch {
        /* not JSON: keep-alive or a future format */
      }
    },
    onState: (s, detail) => {
      status.stream = s;
      status.streamDetail = detail ?? null;
      if (s === 'open') {
        // Back after a gap: stored events were replayed, live-only progress was not.
        if (wasOpen) {
          void status.load();
          rollouts.reloadWatched();
        } else void reloadAll();
        wasOpen = true;
      } else if (s === 'retrying' && !wasOpen && !loadedEarly) {
        loadedEarly = true;
        void reloadAll();
      }
    },
    onHttpError: (code) => {
      if (code === 401) {
        session.authed = false;
        return true;
      }
      return false;
    },
  });
}

export function disconnectLive(): void {
  stream?.close();
  stream = null;
}
