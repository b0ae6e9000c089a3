// Types of the admin API's JSON.
//
// Provisional: written by hand from docs/openapi.json and crates/flotilla-proto until the
// ts-rs bindings land in ./generated/ (one file per Rust type). When they do, re-export them
// from here and delete the hand-written duplicates; the rest of the UI imports only this file.

export type Chip =
  | 'esp8266' | 'esp32' | 'esp32s2' | 'esp32s3' | 'esp32c2' | 'esp32c3' | 'esp32c5'
  | 'esp32c6' | 'esp32c61' | 'esp32h2' | 'esp32p4';

export type Family = 'native' | 'tasmota' | 'shelly-gen1' | 'shelly-gen2' | 'arduino-ota' | 'esphome' | 'unknown';
export const FAMILIES: Family[] = ['native', 'tasmota', 'shelly-gen1', 'shelly-gen2', 'arduino-ota', 'esphome', 'unknown'];

export type Channel = 'stable' | 'beta';
export type ImageFormat = 'esp32' | 'esp8266' | 'gzip';

export interface Device {
  mac: string;
  device_id: string | null;
  name: string | null;
  family: Family;
  model: string | null;
  chip: string | null;
  version: string | null;
  ip: string | null;
  online: boolean;
  labels: string[];
  sources: string[];
  first_seen: string;
  last_seen: string;
}

export interface SegmentInfo { offset: number; load_addr: number; len: number }

export interface ImageInfo {
  format: ImageFormat;
  inner_format?: ImageFormat | null;
  chip: Chip;
  size: number;
  image_size: number;
  sha256: string;
  entry_addr: number;
  segments: SegmentInfo[];
  hash_appended: boolean;
  version?: string | null;
  project?: string | null;
  idf_version?: string | null;
  compile_date?: string | null;
  compile_time?: string | null;
  app_elf_sha256?: string | null;
  secure_version?: number | null;
  flash_mode?: string | null;
  flash_size?: string | null;
  flash_freq?: string | null;
  min_chip_rev?: number | null;
  max_chip_rev?: number | null;
  esp8266_image_version?: number | null;
}

export interface Manifest {
  model: string; chip: Chip; version: string; sha256: string; size: number;
  min_version?: string | null; secure_version?: number | null;
}
export interface SignedManifest { manifest: Manifest; key_id: string; signature: string }

export interface Firmware {
  id: number;
  sha256: string;
  version: string;
  model: string;
  chip: Chip;
  format: ImageFormat;
  size: number;
  project?: string | null;
  idf_version?: string | null;
  secure_version?: number | null;
  min_version?: string | null;
  channel: Channel;
  notes?: string | null;
  blocked: boolean;
  public: boolean;
  created_at: string;
  image: ImageInfo;
  manifest: SignedManifest;
}

export interface FirmwarePatch { blocked?: boolean; public?: boolean; channel?: Channel; notes?: string | null }

export interface ImportOptions {
  version?: string; model?: string; channel?: Channel; notes?: string; min_version?: string; public?: boolean;
}
export interface ImportResponse { created: boolean; firmware: Firmware }

export type WaveSize = { count: number } | { percent: number };
export type Threshold = { count: number } | { percent: number };

export interface RolloutSpec {
  firmware: string;
  target: string;
  name?: string | null;
  waves?: WaveSize[];
  max_failures?: Threshold;
  success_gate?: number;
  manual_approval?: boolean;
  step_timeout_secs?: number;
  concurrency?: number;
  window?: string | null;
  allow_downgrade?: boolean;
  retries?: number;
}
export interface CreateRollout extends RolloutSpec { start?: boolean }

export type RolloutState = 'draft' | 'running' | 'paused' | 'completed' | 'cancelled';
export type JobState =
  | 'queued' | 'commanded' | 'downloading' | 'installing' | 'rebooting' | 'verifying'
  | 'succeeded' | 'failed' | 'timed_out' | 'skipped' | 'cancelled';

export interface JobCounts {
  total: number; queued: number; in_flight: number; succeeded: number;
  failed: number; timed_out: number; skipped: number; cancelled: number;
}
export interface WaveStatus { index: number; counts: JobCounts }

export interface Rollout {
  id: number;
  name: string;
  firmware_id: number;
  firmware_version: string;
  state: RolloutState;
  current_wave: number;
  pause_reason?: string | null;
  spec: Required<Pick<RolloutSpec, 'firmware' | 'target'>> & RolloutSpec;
  counts: JobCounts;
  waves: WaveStatus[];
  created_at: string;
  updated_at: string;
}

export interface JobTransition { state: JobState; at: string; detail?: string | null }

export interface Job {
  id: number;
  rollout_id: number;
  mac: string;
  device_id?: string | null;
  wave: number;
  state: JobState;
  attempts: number;
  from_version?: string | null;
  current_version?: string | null;
  error?: string | null;
  progress?: number | null;
  history: JobTransition[];
  updated_at: string;
}

export interface RolloutDetail { rollout: Rollout; jobs: Job[] }

export interface Event {
  id: number;
  at: string;
  kind: string;
  actor: string;
  subject?: string | null;
  data: Record<string, unknown>;
}
export interface EventPage { events: Event[]; next_before?: number | null }

export interface RuntimeInfo { admin_url: string; device_url: string; mqtt_url?: string | null; pid: number; version: string }
export interface PublicKey { algorithm: string; key_id: string; public_key_hex: string; public_key_pem: string }

// --- Being added to the admin API (shapes from crates/flotilla-proto/src/api.rs work in progress) ---

export interface ListenerStatus { listen: string; url: string }
export interface MqttStatus { mode: string; url?: string | null; listen?: string | null; connected: boolean; username?: string | null }
export interface MdnsStatus { enabled: boolean; service: string }
export interface TlsStatus { enabled: boolean; fingerprint?: string | null }
export interface DemoInfo { devices: number; firmware?: string | null; summary: string }
export interface DemoStatus { available: boolean; running?: DemoInfo | null }
export interface EngineStatus {
  version: string;
  pid: number;
  data_dir: string;
  uptime_s: number;
  admin: ListenerStatus;
  device_server: ListenerStatus;
  mqtt: MqttStatus;
  mdns: MdnsStatus;
  tls: TlsStatus;
  demo: DemoStatus;
  signing_key_id: string;
}

/** `POST /api/v1/rollouts/preview` (shape not final: normalised by `normalizePreview`). */
export interface RolloutPreview {
  /** Devices that would be updated, with the wave each lands in (0-based). */
  targeted: { mac: string; wave: number }[];
  /** Devices per wave (not cumulative). */
  wave_sizes: number[];
  /** Devices the target matched that cannot take the firmware, and why. */
  skipped: { mac: string; reason: string }[];
}

/** `GET /api/v1/devices/{mac}/history`. */
export interface DeviceHistory { jobs: Job[]; events: Event[] }

/** Live-only SSE `rollout.progress` payload (provisional). */
export interface RolloutProgress {
  rollout: number;
  jobs: { job: number; mac: string; state: JobState; progress?: number | null; error?: string | null }[];
  waves?: WaveStatus[];
}
