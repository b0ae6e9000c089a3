import { beforeEach, describe, expect, it, vi } from 'vitest';
const devicesMock = vi.fn();
const deviceMock = vi.fn();
vi.mock('../api/client', () => ({ api: { devices: () => devicesMock(), device: (mac: string) => deviceMock(mac) }, ApiError: class {} }));
import { devices } from './devices.svelte';
import type { Device, Event } from '../api/types';
import { dev } from '../logic/fixtures';

const ev = (kind: string, mac: string, data: Record<string, unknown> = {}): Event => ({
  id: 1, at: '2026-01-01T00:00:10Z', kind, actor: 'engine', subject: `device:${mac}`, data: { mac, ...data } as Event['data'],
});

/** A promise and the function that resolves it. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

beforeEach(() => {
  devicesMock.mockReset();
  deviceMock.mockReset();
});

describe('DevicesStore', () => {
  it('keeps what the stream said while the inventory was being read: an answer older than the events does not undo them', async () => {
    devicesMock.mockResolvedValue([]);
    await devices.load();
    const answer = deferred<Device[]>();
    devicesMock.mockReturnValue(answer.promise);
    const loading = devices.load();
    // While the read is on its way: a device is discovered (fetched on its own) and another updated.
    // (A device fetched on its own is read after the event that made it fetched: the engine's now.)
    const engine: Record<string, string> = { a: '2.0.0', b: '1.0.0' };
    deviceMock.mockImplementation(async (mac: string) => dev({ mac, version: engine[mac] }));
    devices.applyEvents([ev('device.discovered', 'b', { version: '1.0.0', online: true })]);
    await vi.waitFor(() => expect(devices.get('b')).toBeDefined());
    devices.applyEvents([ev('device.changed', 'a', { version: '2.0.0' })]);
    // The answer was read before both.
    answer.resolve([dev({ mac: 'a', version: '1.0.0' })]);
    await loading;
    await vi.waitFor(() => expect(devices.list.map((d) => d.mac).sort()).toEqual(['a', 'b']));
    expect(devices.get('a')?.version, 'the newer version from the stream').toBe('2.0.0');
    expect(devices.get('b')?.version).toBe('1.0.0');
    // Once the read is done, nothing is replayed again.
    devicesMock.mockResolvedValue([dev({ mac: 'a', version: '3.0.0' })]);
    await devices.load();
    expect(devices.list.map((d) => d.mac)).toEqual(['a']);
    expect(devices.get('a')?.version).toBe('3.0.0');
  });
});
