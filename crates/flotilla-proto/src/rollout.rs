//! Staged rollouts: the specification a technician writes, and the states the engine reports.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How many devices a wave holds: a count or a percentage of the whole target (cumulative:
/// `1,10%,50%,100%` means the first wave has 1 device, the second brings the total to 10 %…).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum WaveSize {
    Count(u32),
    Percent(f64),
}

/// A failure threshold: a count of devices or a share of the wave.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Threshold {
    Count(u32),
    Percent(f64),
}

/// What a technician asks for. Every field but `firmware` and `target` has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RolloutSpec {
    /// Firmware: id, sha256 prefix or version.
    pub firmware: String,
    /// Target expression, e.g. `label:line-3 and outdated and online` (see docs/cli.md).
    pub target: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Cumulative wave sizes (default `1,10%,50%,100%`).
    #[serde(default = "default_waves")]
    pub waves: Vec<WaveSize>,
    /// Failures in a wave that pause the rollout (default 10 %).
    #[serde(default = "default_max_failures")]
    pub max_failures: Threshold,
    /// Share of a wave (percent) that must succeed before the next wave starts (default 90).
    #[serde(default = "default_success_gate")]
    pub success_gate: f64,
    /// Wait for `resume` between waves.
    #[serde(default)]
    pub manual_approval: bool,
    /// Seconds each step (commanded→downloading→…→verified) may take before the device times out.
    #[serde(default = "default_timeout")]
    pub step_timeout_secs: u64,
    /// Devices updating at once (protects the site's Wi-Fi).
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Time window outside which no new device is commanded, e.g. `mon-fri 22:00-05:00`.
    #[serde(default)]
    pub window: Option<String>,
    /// Allow installing a lower version than the device runs.
    #[serde(default)]
    pub allow_downgrade: bool,
    /// Retries of a device after a transient failure (timeout, dropped download).
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_waves() -> Vec<WaveSize> {
    vec![WaveSize::Count(1), WaveSize::Percent(10.0), WaveSize::Percent(50.0), WaveSize::Percent(100.0)]
}
fn default_max_failures() -> Threshold {
    Threshold::Percent(10.0)
}
fn default_success_gate() -> f64 {
    90.0
}
fn default_timeout() -> u64 {
    300
}
fn default_concurrency() -> u32 {
    20
}
fn default_retries() -> u32 {
    1
}

impl RolloutSpec {
    /// A spec with every default.
    pub fn new(firmware: impl Into<String>, target: impl Into<String>) -> RolloutSpec {
        RolloutSpec {
            firmware: firmware.into(),
            target: target.into(),
            name: None,
            waves: default_waves(),
            max_failures: default_max_failures(),
            success_gate: default_success_gate(),
            manual_approval: false,
            step_timeout_secs: default_timeout(),
            concurrency: default_concurrency(),
            window: None,
            allow_downgrade: false,
            retries: default_retries(),
        }
    }
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Draft,
    Running,
    Paused,
    Completed,
    Cancelled,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Draft => "draft",
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::Completed => "completed",
            RolloutState::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<RolloutState> {
        [Self::Draft, Self::Running, Self::Paused, Self::Completed, Self::Cancelled]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Where one device's update is. Terminal: succeeded, failed, timed_out, skipped, cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Commanded,
    Downloading,
    Installing,
    Rebooting,
    Verifying,
    Succeeded,
    Failed,
    TimedOut,
    Skipped,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 11] = [
        JobState::Queued,
        JobState::Commanded,
        JobState::Downloading,
        JobState::Installing,
        JobState::Rebooting,
        JobState::Verifying,
        JobState::Succeeded,
        JobState::Failed,
        JobState::TimedOut,
        JobState::Skipped,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Commanded => "commanded",
            JobState::Downloading => "downloading",
            JobState::Installing => "installing",
            JobState::Rebooting => "rebooting",
            JobState::Verifying => "verifying",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::TimedOut => "timed_out",
            JobState::Skipped => "skipped",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// No further transition happens on its own.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::TimedOut | JobState::Skipped | JobState::Cancelled
        )
    }

    /// The device is working on it (counts against concurrency).
    pub fn is_in_flight(self) -> bool {
        matches!(
            self,
            JobState::Commanded
                | JobState::Downloading
                | JobState::Installing
                | JobState::Rebooting
                | JobState::Verifying
        )
    }

    /// Counts against a wave's failure threshold.
    pub fn is_failure(self) -> bool {
        matches!(self, JobState::Failed | JobState::TimedOut)
    }
}

/// Jobs per state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct JobCounts {
    pub total: u32,
    pub queued: u32,
    pub in_flight: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub timed_out: u32,
    pub skipped: u32,
    pub cancelled: u32,
}

/// One wave's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WaveStatus {
    /// 0-based.
    pub index: u32,
    pub counts: JobCounts,
}

/// A rollout as the engine reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Rollout {
    pub id: i64,
    pub name: String,
    pub firmware_id: i64,
    pub firmware_version: String,
    pub state: RolloutState,
    /// The wave being worked on (0-based).
    pub current_wave: u32,
    /// Why the rollout is paused (by itself or by a person).
    pub pause_reason: Option<String>,
    pub spec: RolloutSpec,
    pub counts: JobCounts,
    pub waves: Vec<WaveStatus>,
    pub created_at: String,
    pub updated_at: String,
}

/// One state a job passed through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct JobTransition {
    pub state: JobState,
    /// RFC 3339 UTC.
    pub at: String,
    pub detail: Option<String>,
}

/// One device's update in a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Job {
    pub id: i64,
    pub rollout_id: i64,
    pub mac: String,
    pub device_id: Option<String>,
    pub wave: u32,
    pub state: JobState,
    pub attempts: u32,
    /// Version before the update.
    pub from_version: Option<String>,
    /// Version the device reported last.
    pub current_version: Option<String>,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// Download progress, percent.
    pub progress: Option<u8>,
    pub history: Vec<JobTransition>,
    pub updated_at: String,
}

/// Create a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct CreateRollout {
    #[serde(flatten)]
    pub spec: RolloutSpec,
    /// Start at once.
    #[serde(default)]
    pub start: bool,
}

/// A rollout with its jobs (status view and report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RolloutDetail {
    pub rollout: Rollout,
    pub jobs: Vec<Job>,
}

/// One job as the live progress stream shows it (only what changes while a rollout runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct JobProgress {
    /// Job id.
    pub job: i64,
    pub mac: String,
    pub state: JobState,
    /// Download progress, percent.
    pub progress: Option<u8>,
    /// Why it failed or was skipped.
    pub error: Option<String>,
}

/// Live progress of a running rollout: the `data` of a `rollout.progress` event on the event
/// stream. Sent at most every 250 ms per rollout and only when something changed; `jobs` holds
/// the jobs that changed since the previous one (newest state of each), `counts` and `waves`
/// the whole rollout. Live only: never stored in the audit log, never replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RolloutProgress {
    /// Rollout id.
    pub rollout: i64,
    pub state: RolloutState,
    pub current_wave: u32,
    pub jobs: Vec<JobProgress>,
    pub counts: JobCounts,
    pub waves: Vec<WaveStatus>,
}

/// A device a rollout would update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PreviewDevice {
    pub mac: String,
    pub name: Option<String>,
    /// Version it runs now.
    pub current_version: Option<String>,
    /// Wave it would be in (0-based).
    pub wave: u32,
}

/// A device the target matches that a rollout would skip, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SkippedDevice {
    pub mac: String,
    pub name: Option<String>,
    pub current_version: Option<String>,
    pub reason: String,
}

/// What creating a rollout would do, computed without storing anything. The wave of each device
/// comes from a seed drawn for this preview; the rollout created later draws its own, so the
/// sizes of the waves are the same but which device lands in which wave may differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RolloutPreview {
    pub firmware_id: i64,
    pub firmware_version: String,
    /// Devices the target expression matches (updated + skipped).
    pub targeted: u32,
    /// Devices per wave (0-based, only waves that hold a device).
    pub wave_sizes: Vec<u32>,
    /// The devices that would be updated, by wave then MAC.
    pub devices: Vec<PreviewDevice>,
    /// The devices that would be skipped, by MAC.
    pub skipped: Vec<SkippedDevice>,
}

/// One job of a device, in any rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DeviceJob {
    pub rollout_id: i64,
    pub rollout_name: String,
    /// Version the rollout installs.
    pub firmware_version: String,
    pub job: i64,
    pub state: JobState,
    pub error: Option<String>,
    pub attempts: u32,
    pub from_version: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

/// A device's update history: its jobs across all rollouts (newest rollout first) and its
/// recent audit events (subject `device:<mac>`, newest first, at most 200).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct DeviceHistory {
    pub mac: String,
    pub jobs: Vec<DeviceJob>,
    pub events: Vec<crate::event::Event>,
}
