import { describe, expect, it } from 'vitest';
import { probeAddress, probeText, scanText, sourceReports } from './discovery';
import type { ProbeResult, ScanResult } from '../api/types';
import { dev } from './fixtures';

const probe = (p: Partial<ProbeResult>): ProbeResult => ({
  address: '192.168.1.51:80',
  state: 'found',
  family: null,
  auth_required: false,
  detail: null,
  device: null,
  ...p,
});

describe('a device seen by several sources', () => {
  const now = Date.parse('2026-01-01T12:00:00Z');
  const d = dev({
    mac: 'a8:03:2a:b1:23:45', family: 'shelly', generation: 2, ip: '10.0.0.7',
    seen: [
      { source: 'mdns', first_seen: '2026-01-01T11:00:00Z', last_seen: '2026-01-01T11:58:00Z', version: '1.1.0', ip: '10.0.0.7', online: true },
      { source: 'mqtt', first_seen: '2026-01-01T11:00:00Z', last_seen: '2026-01-01T11:59:30Z', version: null, ip: null, online: false },
      { source: 'probe', first_seen: '2026-01-01T10:00:00Z', last_seen: '2026-01-01T10:00:00Z', version: '1.0.0', ip: '10.0.0.7', online: true },
    ],
  });
  it("lists each source's last report, freshest first, and which said it left", () => {
    expect(sourceReports(d, now)).toEqual([
      { source: 'MQTT', text: 'said it left 30 s ago', left: true },
      { source: 'mDNS', text: '1.1.0 at 10.0.0.7, 2 min ago', left: false },
      { source: 'HTTP probe', text: '1.0.0 at 10.0.0.7, 2 h ago', left: false },
    ]);
  });
  it('probes vendor devices again at their address, never a native one', () => {
    expect(probeAddress(d)).toBe('10.0.0.7');
    expect(probeAddress({ ...d, ip: null })).toBeNull();
    expect(probeAddress(dev({ mac: 'aa:bb:cc:00:00:01', ip: '10.0.0.8' }))).toBeNull();
  });
  it('names the generation of a Shelly it found', () => {
    const r = probeText(probe({ device: { ...d, model: 'Plus1PM', version: '1.1.0' } }));
    expect(r.text).toBe('192.168.1.51:80: Shelly Gen2 Plus1PM 1.1.0 — added as a8:03:2a:b1:23:45.');
  });
});

describe('add by address', () => {
  it('names what was found and under which MAC', () => {
    const d = dev({ mac: 'a4:cf:12:34:56:78', family: 'tasmota', model: 'Sonoff Basic', version: '14.3.0' });
    expect(probeText(probe({ device: d, family: 'tasmota' }))).toEqual({
      ok: true,
      text: '192.168.1.51:80: Tasmota Sonoff Basic 14.3.0 — added as a4:cf:12:34:56:78.',
    });
    expect(probeText(probe({ device: d, auth_required: true })).text).toContain('protects its API with a password');
  });
  it('says why nothing was added', () => {
    expect(probeText(probe({ state: 'unreachable', detail: 'timed out' }))).toEqual({
      ok: false,
      text: '192.168.1.51:80 did not answer (timed out).',
    });
    expect(probeText(probe({ state: 'authentication_required' })).text).toBe('192.168.1.51:80 wants a password to say what it is.');
    expect(probeText(probe({ state: 'unrecognised', detail: '/shelly answered 200 with HTML' })).text).toContain('like no device');
  });
});

describe('scan now', () => {
  const scan = (s: Partial<ScanResult>): ScanResult => ({
    subnet: '10.0.0.0/24',
    mdns: true,
    addresses: 254,
    found: [],
    authentication_required: [],
    unrecognised: 0,
    unreachable: 254,
    took_ms: 3400,
    ...s,
  });
  it('sums up a subnet scan', () => {
    expect(scanText(scan({ found: [probe({}), probe({})], authentication_required: [probe({})], unrecognised: 2 }))).toBe(
      '10.0.0.0/24: 254 addresses probed in 3.4 s — 2 devices found, 1 want a password, 2 unrecognised.',
    );
    expect(scanText(scan({}))).toBe('10.0.0.0/24: 254 addresses probed in 3.4 s — 0 devices found.');
  });
  it('says mDNS was asked again when no subnet was given, and when it could not be', () => {
    expect(scanText(scan({ subnet: null, addresses: 0 }))).toBe(
      'Asked the network again (mDNS): devices that answer appear in the list.',
    );
    expect(scanText(scan({ subnet: null, addresses: 0, mdns: false }))).toBe(
      'mDNS discovery is off on this engine: add devices by address, or scan a subnet.',
    );
  });
});
