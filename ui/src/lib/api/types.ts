// Types of the admin API's JSON.
//
// The shapes come from the Rust crate flotilla-proto through ts-rs (./generated/, do not edit);
// this file re-exports them so the rest of the UI imports only from here, and adds the few
// shapes not generated yet (marked provisional).

import type { Family, Event, WaveStatus, JobState } from './generated';

export type {
  Channel, Chip, CreateRollout, DemoInfo, DemoStatus, Device, EngineStatus, Event, EventPage, Family,
  Firmware, FirmwarePatch, ImageFormat, ImageInfo, ImportOptions, ImportResponse, Job, JobCounts, JobState,
  JobTransition, ListenerStatus, Manifest, MdnsStatus, MqttStatus, PublicKey, Rollout, RolloutDetail,
  RolloutSpec, RolloutState, RuntimeInfo, SegmentInfo, SignedManifest, Threshold, TlsStatus, WaveSize, WaveStatus,
  JsonValue,
} from './generated';

export const FAMILIES: Family[] = ['native', 'tasmota', 'shelly-gen1', 'shelly-gen2', 'arduino-ota', 'esphome', 'unknown'];

/** Provisional: `POST /api/v1/rollouts/preview` (shape not final: normalised by `normalizePreview`). */
export interface RolloutPreview {
  /** Devices that would be updated, with the wave each lands in (0-based). */
  targeted: { mac: string; wave: number }[];
  /** Devices per wave (not cumulative). */
  wave_sizes: number[];
  /** Devices the target matched that cannot take the firmware, and why. */
  skipped: { mac: string; reason: string }[];
}

/** Provisional (mirrors flotilla-proto `DeviceJob`): one job of a device, in any rollout. */
export interface DeviceJob {
  rollout_id: number;
  rollout_name: string;
  firmware_version: string;
  job: number;
  state: JobState;
  error: string | null;
  attempts: number;
  from_version: string | null;
  created_at: string;
  updated_at: string;
}

/** Provisional (mirrors flotilla-proto `DeviceHistory`): `GET /api/v1/devices/{mac}/history`. */
export interface DeviceHistory { mac: string; jobs: DeviceJob[]; events: Event[] }

/** Live-only SSE `rollout.progress` payload (provisional). */
export interface RolloutProgress {
  rollout: number;
  jobs: { job: number; mac: string; state: JobState; progress?: number | null; error?: string | null }[];
  waves?: WaveStatus[];
}
