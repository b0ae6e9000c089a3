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
    /// When to start (RFC 3339); a rollout started before then waits, `scheduled`, until it.
    #[serde(default)]
    pub start_at: Option<String>,
    /// Most update commands per second (beside `concurrency`): protects a broker or a Wi-Fi
    /// network from a burst of downloads starting at once. `None`: no limit.
    #[serde(default)]
    pub command_rate: Option<f64>,
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
            start_at: None,
            command_rate: None,
        }
    }
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Draft,
    /// Started, waiting for its `start_at` time.
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Draft => "draft",
            RolloutState::Scheduled => "scheduled",
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::Completed => "completed",
            RolloutState::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<RolloutState> {
        [Self::Draft, Self::Scheduled, Self::Running, Self::Paused, Self::Completed, Self::Cancelled]
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

/// Jobs per state. The same meaning everywhere (UI, CLI, JSON, CSV, events): `total` counts every
/// job, `succeeded` those verified on the target version, `failed` and `timed_out` the two kinds
/// of failure, `skipped` jobs left out (by the plan, or by a person), `cancelled` those a cancel
/// stopped before they began. [`JobCounts::summary`] is how people read them.
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
    /// Of `skipped`, the devices the plan left out (in no wave); the rest were skipped by a
    /// person during the rollout.
    pub excluded: u32,
}

impl JobCounts {
    /// Failed plus timed out: every job that counts as a failure.
    pub fn failures(&self) -> u32 {
        self.failed + self.timed_out
    }

    /// Jobs the plan meant to update: all but the devices it left out. A device a person
    /// skipped later still counts (it was meant to be updated and was not).
    pub fn planned(&self) -> u32 {
        self.total - self.excluded
    }

    /// The one way counts are read: `12 of 40 succeeded · 2 failed · 3 updating · 20 queued ·
    /// 1 skipped` (of the planned devices; parts that are zero are left out, except the first).
    pub fn summary(&self) -> String {
        let mut out = format!("{} of {} succeeded", self.succeeded, self.planned());
        for (n, what) in [
            (self.failures(), "failed"),
            (self.in_flight, "updating"),
            (self.queued, "queued"),
            (self.cancelled, "cancelled"),
            (self.skipped - self.excluded, "skipped"),
        ] {
            if n > 0 {
                out.push_str(&format!(" · {n} {what}"));
            }
        }
        out
    }
}

/// One wave's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WaveStatus {
    /// Wave number, from 1 (as people say it: "wave 2 of 4").
    pub number: u32,
    /// Its jobs (devices skipped by the plan are in no wave).
    pub counts: JobCounts,
}

/// How a finished rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum RolloutOutcome {
    /// Every planned device was verified on the new version.
    AllSucceeded,
    /// Completed, but some devices failed, timed out or were skipped by a person.
    SomeFailed,
    /// Cancelled before the end.
    Cancelled,
}

/// Why a rollout is not commanding devices right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    /// The current wave's devices are still updating; the next wave waits for them.
    Devices,
    /// As many devices are updating as `concurrency` allows, or the command rate is reached.
    Concurrency,
    /// Outside the maintenance window.
    Window,
    /// Waiting for a person's approval (resume) to start the next wave.
    Approval,
    /// Paused (by a person or by a gate).
    Paused,
    /// Waiting for its scheduled start.
    Scheduled,
}

/// A device a rollout waits on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WaitingDevice {
    pub job: i64,
    pub mac: String,
    /// The device's name (or id) as the inventory knows it.
    pub name: Option<String>,
    /// Wave number, from 1.
    pub wave: u32,
    pub state: JobState,
    /// When the device entered this state (RFC 3339 UTC).
    pub since: String,
    /// When this step times out (RFC 3339 UTC).
    pub deadline: Option<String>,
    /// Automatic retries left after a timeout or a dropped download.
    pub retries_left: u32,
    /// When the device was last heard from (RFC 3339 UTC).
    pub last_seen: Option<String>,
}

/// What a rollout waits on now, and until when at the latest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RolloutWait {
    pub reason: WaitReason,
    /// In words, e.g. `wave 2 of 4 waits for 1 device: pump-7 (rebooting, times out 10:42)`.
    pub summary: String,
    /// When the wait ends at the latest, if that is known (RFC 3339 UTC): the last deadline of
    /// the devices waited on (retries included), the window's opening, the scheduled start.
    pub until: Option<String>,
    /// The devices waited on (in flight in the open waves), slowest deadline first, at most 50.
    pub devices: Vec<WaitingDevice>,
    /// How many devices are waited on in all.
    pub device_count: u32,
}

/// How long the rest of a rollout should take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RolloutEstimate {
    /// Devices finished (succeeded or failed) per minute: over the last 5 minutes while it runs,
    /// over the whole run once it is finished. `None` until two devices have finished.
    pub per_minute: Option<f64>,
    /// Seconds until every planned device is finished, when it can be said honestly; `None`
    /// while paused, waiting for approval, or before the pace is known.
    pub remaining_secs: Option<u64>,
    /// What the estimate rests on, in words (`3 devices/min; wave 2 cannot finish before 10:42,
    /// when pump-7 times out`, `paused`, `not started`).
    pub basis: String,
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
    /// The wave being worked on, from 1 (0 before anything is planned in a wave); equal to
    /// `wave_count` once the last wave is done.
    pub current_wave: u32,
    /// Waves that hold a device.
    pub wave_count: u32,
    /// Why the rollout paused, as recorded when it paused (by itself or by a person). The counts
    /// of now are in `counts` and `waves`.
    pub pause_reason: Option<String>,
    /// When it paused (RFC 3339 UTC).
    pub paused_at: Option<String>,
    /// What pressing Resume would do, in words (only while paused).
    pub on_resume: Option<String>,
    /// What the rollout waits on now (only while it is not finished).
    pub waiting: Option<RolloutWait>,
    pub estimate: RolloutEstimate,
    /// How it ended (only once completed or cancelled).
    pub outcome: Option<RolloutOutcome>,
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
    /// Wave number, from 1; `None` for a device the plan skipped (it is in no wave).
    pub wave: Option<u32>,
    pub state: JobState,
    /// Commands sent for this job, retries included (1 for a device updated at the first try).
    pub attempts: u32,
    /// Version before the update.
    pub from_version: Option<String>,
    /// Version the device reported when it came back from its reboot (or was found already on
    /// the target); `None` when it was not heard from since.
    pub current_version: Option<String>,
    /// Why it failed or was skipped.
    pub error: Option<String>,
    /// Download progress, percent.
    pub progress: Option<u8>,
    /// When the current step times out (in-flight jobs only; RFC 3339 UTC).
    pub deadline: Option<String>,
    pub history: Vec<JobTransition>,
    pub updated_at: String,
    /// What a success rests on: `authenticated+download` (an authenticated device came back on
    /// the target version after this job's image was served to it), `unauthenticated+download`
    /// (the same, from a device that cannot prove who it is: a compatibility profile or a shared
    /// MQTT login). `None` until the job succeeded.
    #[serde(default)]
    pub evidence: Option<String>,
    /// Was this job's image served to the end on its current command's download token?
    #[serde(default)]
    pub downloaded: bool,
    /// Was the device authenticated (enrolled and approved) when the job was last heard of?
    #[serde(default)]
    pub authenticated: bool,
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
    /// The wave being worked on, from 1.
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
    /// Wave it would be in, from 1.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct RolloutPreview {
    /// The spec as the rollout would run it, every default filled in.
    pub spec: RolloutSpec,
    pub firmware_id: i64,
    pub firmware_version: String,
    /// Devices the target expression matches (updated + skipped).
    pub targeted: u32,
    /// Devices per wave (the first entry is wave 1; only waves that hold a device).
    pub wave_sizes: Vec<u32>,
    /// The devices that would be updated, by wave then MAC.
    pub devices: Vec<PreviewDevice>,
    /// The devices that would be skipped, by MAC.
    pub skipped: Vec<SkippedDevice>,
    /// Devices the target's conditions leave out (`online`, `outdated`, `channel:`), with the
    /// condition each fails: e.g. every device of the model that is offline, for a target
    /// `model:pump and outdated and online`. Not part of the rollout; listed so nothing is left
    /// out silently.
    pub left_out: Vec<SkippedDevice>,
}

/// The firmware a rollout of some devices should install: the newest firmware of their model on
/// the channel they follow, and how many of them run an older version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct FirmwareSuggestion {
    pub model: String,
    /// The firmware's channel.
    pub channel: crate::firmware::Channel,
    /// The channel the devices follow, when they all follow one (`None`: both channels take it).
    pub device_channel: Option<crate::firmware::Channel>,
    pub firmware_id: i64,
    pub firmware_version: String,
    /// Devices of the model (within the asked target) that run an older version.
    pub outdated: u32,
    /// Of those, the ones online now.
    pub online: u32,
    /// A target expression for exactly those devices' rollout (`model:… and outdated and
    /// channel:…`), ready for a rollout spec.
    pub target: String,
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
    /// The version the device reported when it came back (`None`: not heard from since).
    pub current_version: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The same cases as the UI's `counts.test.ts`: both say the same sentence.
    #[test]
    fn counts_read_as_one_sentence() {
        let c = |total, succeeded, failed, timed_out, in_flight, queued, skipped, excluded| JobCounts {
            total,
            queued,
            in_flight,
            succeeded,
            failed,
            timed_out,
            skipped,
            cancelled: 0,
            excluded,
        };
        assert_eq!(
            c(42, 12, 1, 1, 3, 23, 2, 1).summary(),
            "12 of 41 succeeded · 2 failed · 3 updating · 23 queued · 1 skipped"
        );
        assert_eq!(c(19, 18, 1, 0, 0, 0, 0, 0).summary(), "18 of 19 succeeded · 1 failed");
        assert_eq!(JobCounts::default().summary(), "0 of 0 succeeded");
        assert_eq!(c(10, 7, 0, 0, 0, 0, 3, 3).summary(), "7 of 7 succeeded", "the plan's skips are not planned");
        assert_eq!(c(4, 3, 0, 0, 0, 0, 1, 0).summary(), "3 of 4 succeeded · 1 skipped", "a person's skip is");
    }
}
