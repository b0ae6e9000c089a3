// Types of the admin API's JSON.
//
// Every shape comes from the Rust crate flotilla-proto through ts-rs (./generated/, do not edit);
// this file re-exports them so the rest of the UI imports only from here.

import type { CreateRollout, Family } from './generated';

export type {
  Channel, Chip, CreateRollout, DemoInfo, DemoStatus, Device, DeviceHistory, DeviceJob, EngineStatus, Event, EventPage,
  Family, Firmware, FirmwarePatch, GzipForm, ImageFormat, ImageInfo, ImportOptions, ImportPlan, ImportResponse,
  InspectReport, Job, JobCounts, JobProgress,
  JobState, JobTransition, ListenerStatus, Manifest, MdnsStatus, MqttStatus, PreviewDevice, PublicKey, Rollout,
  RolloutDetail, RolloutPreview, RolloutProgress, RolloutSpec, RolloutState, RuntimeInfo, SegmentInfo, SettingsView,
  SignedManifest, SiteSettings, SkippedDevice, Threshold, TlsStatus, Verdict, WaveSize, WaveStatus, JsonValue,
  RolloutWait, WaitingDevice, WaitReason, RolloutEstimate, RolloutOutcome, FirmwareSuggestion, LabelChannel, ChannelRequest,
  FleetMetrics, VersionSample, RolloutResult, ReasonCount, StorageStatus, ProbeRequest, ProbeResult, ScanRequest,
  ScanResult, CredentialInfo, CredentialRequest,
} from './generated';

export const FAMILIES: Family[] = ['native', 'tasmota', 'shelly', 'arduino', 'esphome', 'unknown'];

/**
 * The body of `POST /rollouts` and `/rollouts/preview`: the firmware, the target and whether to
 * start; every setting left out is filled by the engine with its default.
 */
export type RolloutRequest = Pick<CreateRollout, 'firmware' | 'target' | 'start'> & Partial<CreateRollout>;
