import { describe, expect, it } from 'vitest';
import { probeText, scanText } from './discovery';
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
  it('says mDNS was asked again when no subnet was given', () => {
    expect(scanText(scan({ subnet: null, addresses: 0 }))).toContain('mDNS');
  });
});
