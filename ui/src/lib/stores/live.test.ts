import { afterEach, describe, expect, it, vi } from 'vitest';
import type { StreamState } from '../api/sse';

// The stream as the engine opens it: the test says when it opens or fails.
let onState: ((s: StreamState, detail?: string) => void) | undefined;
vi.mock('../api/sse', () => ({
  openStream: (opts: { onState?: (s: StreamState, detail?: string) => void }) => {
    onState = opts.onState;
    return { close: () => {}, lastEventId: () => undefined };
  },
}));
vi.mock('../api/client', () => ({ API: '/api/v1', authHeaders: () => ({}), api: {} }));
const loads: string[] = [];
vi.mock('./devices.svelte', () => ({ devices: { load: async () => void loads.push('devices'), applyEvents: () => {} } }));
vi.mock('./firmware.svelte', () => ({ firmware: { load: async () => void loads.push('firmware'), reloadSoon: () => {} } }));
vi.mock('./rollouts.svelte', () => ({
  rollouts: { load: async () => void loads.push('rollouts'), reloadWatched: () => void loads.push('watched'), applyEvents: () => {} },
}));
vi.mock('./status.svelte', () => ({ status: { load: async () => void loads.push('status'), stream: 'closed', streamDetail: null, diskFull: false } }));
vi.mock('./session.svelte', () => ({ session: { authed: true } }));
vi.mock('./events.svelte', () => ({ recent: { add: () => {} } }));
import { connectLive, disconnectLive } from './live';

afterEach(() => {
  disconnectLive();
  loads.length = 0;
});

describe('connectLive', () => {
  it('reads the stores only once the stream is open, so no change falls between the answers and the stream', () => {
    connectLive();
    onState?.('connecting');
    expect(loads, 'nothing is read before the engine has subscribed the stream').toEqual([]);
    onState?.('open');
    expect(loads.sort()).toEqual(['devices', 'firmware', 'rollouts', 'status']);
    // Back after a gap: stored events are replayed; what they do not carry is read again.
    loads.length = 0;
    onState?.('retrying', 'network');
    onState?.('open');
    expect(loads.sort()).toEqual(['status', 'watched']);
  });
  it('a stream that cannot open does not leave the views empty; once it opens, everything is read again', () => {
    connectLive();
    onState?.('connecting');
    onState?.('retrying', 'HTTP 502');
    expect(loads.sort()).toEqual(['devices', 'firmware', 'rollouts', 'status']);
    loads.length = 0;
    onState?.('retrying', 'HTTP 502');
    expect(loads, 'once').toEqual([]);
    onState?.('open');
    expect(loads.sort()).toEqual(['devices', 'firmware', 'rollouts', 'status']);
  });
});
