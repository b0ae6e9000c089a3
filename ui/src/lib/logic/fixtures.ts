// Test fixtures: a device and a firmware with every required field, overridable.

import type { Device, Firmware, RolloutSpec } from '../api/types';

export function dev(p: Partial<Device> & { mac: string }): Device {
  return {
    device_id: null, name: null, family: 'native', generation: null, model: 'demo', chip: 'esp32', version: '1.0.0', ip: null,
    online: true, secure_version: null, channel: 'stable', channel_from: null, labels: [], admin_labels: [], device_labels: [], auth: 'enrolled', authenticated: true, sources: ['mqtt'], seen: [], first_seen: '2024-01-01T00:00:00Z', last_seen: '2024-01-01T00:00:00Z', ...p,
  };
}
export function fw(p: Partial<Firmware> & { version: string }): Firmware {
  return {
    id: 1, sha256: 'ab'.repeat(32), project: null, idf_version: null, secure_version: null, notes: null, min_version: null, model: 'demo', chip: 'esp32', format: 'esp32', size: 1000, channel: 'stable',
    blocked: false, public: false, archived: false, created_at: '2024-01-01T00:00:00Z',
    image: { image_size: 1000 } as Firmware['image'], manifest: {} as Firmware['manifest'], ...p,
  };
}

/** The spec an engine's preview answers, every default filled in (flotilla-proto's defaults). */
export const ENGINE_SPEC: RolloutSpec = {
  firmware: '9', target: 'model:demo and outdated and online', name: null, waves: [{ count: 1 }, { percent: 10 }, { percent: 50 }, { percent: 100 }], max_failures: { percent: 10 },
  success_gate: 90, manual_approval: false, step_timeout_secs: 300, concurrency: 20, window: null, allow_downgrade: false, retries: 1, start_at: null, command_rate: null,
};
