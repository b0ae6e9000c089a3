//! One rollout in memory: its jobs, the job state machine, wave gates, admission and timeouts,
//! and what the rollout waits on.
//!
//! Invariants:
//! - a job leaves `queued` for `commanded` only through [`Run::admit`], which records the command
//!   (and its count) in the writes it returns; the engine sends nothing until those are durable;
//! - `succeeded` is entered only from [`Run::seen`], when the device reports the target version;
//! - a device is in at most one unfinished job across all rollouts (the planner skips busy ones);
//! - a failure counts against its wave until a person acknowledges it (resume) or retries it: an
//!   acknowledged failure counts against neither the failure threshold nor the success gate, so a
//!   resumed rollout goes on with what is left;
//! - `attempts` counts every command a job was sent; the automatic retry budget counts from the
//!   last retry a person asked for (`retry_base`), never by rewriting the count.
//!
//! Waves are 0-based here and in the store; everything people and the API see numbers them from 1.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

use flotilla_proto::Firmware;
use flotilla_proto::native::DeviceOtaState;
use flotilla_proto::rollout::{
    Job, JobCounts, JobProgress, JobState, JobTransition, Rollout, RolloutEstimate, RolloutOutcome, RolloutProgress,
    RolloutSpec, RolloutState, RolloutWait, Threshold, WaitReason, WaitingDevice, WaveStatus,
};
use flotilla_store::clock;
use flotilla_store::events::NewEvent;
use flotilla_store::rollouts::{JobRow, RolloutRow, TransitionRow};
use serde_json::json;

use super::plan::{gate_passed, same_version, threshold_exceeded};
use super::window::Window;
use crate::writer::Op;

/// An in-flight job with no news for this long counts as stalled: the remaining-time estimate
/// then assumes it ends only when its step times out (and its retries do too).
const STALLED_AFTER_MS: i64 = 60_000;
/// Completions over this span give the live pace (devices per minute).
const PACE_WINDOW_MS: i64 = 5 * 60_000;
/// Most devices a wait lists.
const WAIT_LIST: usize = 50;

/// One job in memory.
#[derive(Debug, Clone)]
pub(crate) struct JobRec {
    pub id: i64,
    pub mac: String,
    pub device_id: Option<String>,
    /// 0-based; meaningless when `excluded`.
    pub wave: u32,
    pub state: JobState,
    /// Every command sent for this job, retries included.
    pub attempts: u32,
    pub from_version: Option<String>,
    /// The version the device reported since it was commanded (`None`: not heard from).
    pub current_version: Option<String>,
    pub error: Option<String>,
    pub progress: Option<u8>,
    pub deadline: Option<i64>,
    pub acknowledged: bool,
    pub commands: u32,
    /// `attempts` when a person last asked for a retry: automatic retries count from here.
    pub retry_base: u32,
    /// Skipped by the plan: in no wave.
    pub excluded: bool,
    /// When the current attempt was commanded (Unix ms; in memory, from the history on load).
    pub commanded_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub history: Vec<JobTransition>,
    /// The `commanded` write is durable: the offer may be handed out.
    pub durable: bool,
    /// A push command for the current token reached the broker (false after a restart, so a
    /// command that may never have left is sent again — same token, so a device that did get it
    /// ignores the copy).
    pub delivered: bool,
    /// The unguessable part of the job's ids (`crate::auth::AuthKey::job_nonce`).
    pub nonce: String,
    /// The command whose download token served the image to the end (evidence of the download).
    pub downloaded: Option<u32>,
    /// What the job's success rests on (`authenticated+download`, `unauthenticated+download`).
    pub evidence: Option<String>,
    /// Was the device authenticated when last heard of?
    pub authenticated: bool,
}

impl JobRec {
    pub fn row(&self, rollout_id: i64) -> JobRow {
        JobRow {
            id: self.id,
            rollout_id,
            mac: self.mac.clone(),
            device_id: self.device_id.clone(),
            wave: self.wave,
            state: self.state.as_str().into(),
            attempts: self.attempts,
            from_version: self.from_version.clone(),
            current_version: self.current_version.clone(),
            error: self.error.clone(),
            progress: self.progress,
            deadline: self.deadline,
            acknowledged: self.acknowledged,
            commands: self.commands,
            retry_base: self.retry_base,
            excluded: self.excluded,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// The job id as devices see it: `<job>-<command number>`, new for every command (a device
    /// never mistakes a retry for the command it already handled).
    pub fn token(&self) -> String {
        format!("{}-{}-{}", self.id, self.commands, self.nonce)
    }

    /// Was this command's image served to the end on its download token?
    pub fn served(&self) -> bool {
        self.downloaded == Some(self.commands)
    }

    /// The evidence row to write.
    pub fn evidence_row(&self) -> flotilla_store::auth::EvidenceRow {
        flotilla_store::auth::EvidenceRow {
            job_id: self.id,
            downloaded_command: self.downloaded,
            evidence: self.evidence.clone(),
        }
    }

    /// Wave number as people count it (from 1); `None` for a device the plan skipped.
    pub fn wave_number(&self) -> Option<u32> {
        (!self.excluded).then_some(self.wave + 1)
    }

    /// Automatic retries this job has left.
    pub fn retries_left(&self, retries: u32) -> u32 {
        retries.saturating_sub(self.attempts.saturating_sub(self.retry_base.saturating_add(1)))
    }

    /// An unacknowledged failure: counts against its wave.
    fn open_failure(&self) -> bool {
        self.state.is_failure() && !self.acknowledged
    }

    pub fn to_proto(&self, rollout_id: i64) -> Job {
        Job {
            id: self.id,
            rollout_id,
            mac: self.mac.clone(),
            device_id: self.device_id.clone(),
            wave: self.wave_number(),
            state: self.state,
            attempts: self.attempts,
            from_version: self.from_version.clone(),
            current_version: self.current_version.clone(),
            error: self.error.clone(),
            progress: self.progress,
            deadline: self.deadline.map(clock::rfc3339),
            history: self.history.clone(),
            updated_at: clock::rfc3339(self.updated_at),
            evidence: self.evidence.clone(),
            downloaded: self.served(),
            authenticated: self.authenticated,
        }
    }
}

/// A job just commanded by [`Run::admit`]; its offer may go out once the write is durable.
#[derive(Debug, Clone)]
pub(crate) struct Command {
    pub rollout_id: i64,
    pub job_index: usize,
}

/// Why a rollout is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PauseKind {
    /// A person paused it.
    Person,
    /// A wave crossed its failure threshold.
    Failures,
    /// A finished wave fell short of the success gate.
    Gate,
    /// Manual approval: waiting for a person to start the next wave.
    Approval,
}

impl PauseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseKind::Person => "person",
            PauseKind::Failures => "failures",
            PauseKind::Gate => "gate",
            PauseKind::Approval => "approval",
        }
    }

    pub fn parse(s: &str) -> Option<PauseKind> {
        [PauseKind::Person, PauseKind::Failures, PauseKind::Gate, PauseKind::Approval]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// What the views need of a device beyond its job: its name and when it was last heard from.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeviceRef {
    pub name: Option<String>,
    pub last_seen_ms: Option<i64>,
}

/// The command-rate limit's bucket (in memory: a restart starts with a full bucket).
#[derive(Debug, Clone, Default)]
pub(crate) struct RateBucket {
    tokens: f64,
    at: Option<i64>,
}

impl RateBucket {
    /// Commands the limit allows now, at most `want`; takes them from the bucket. The bucket holds
    /// one second of commands (at least one).
    fn take(&mut self, rate: Option<f64>, want: usize, now: i64) -> usize {
        let Some(rate) = rate.filter(|r| *r > 0.0 && r.is_finite()) else { return want };
        let cap = rate.max(1.0);
        let elapsed = self.at.map_or(f64::INFINITY, |t| (now - t).max(0) as f64 / 1000.0);
        self.tokens = (self.tokens + elapsed * rate).min(cap);
        self.at = Some(now);
        let n = (self.tokens.floor() as usize).min(want);
        self.tokens -= n as f64;
        n
    }
}

/// Is `from → to` a transition the state machine allows?
pub fn allowed(from: JobState, to: JobState) -> bool {
    use JobState::*;
    matches!(
        (from, to),
        (Queued, Commanded | Skipped | Cancelled)
            | (Commanded, Downloading | Installing | Rebooting | Verifying)
            | (Downloading, Installing | Rebooting | Verifying)
            | (Installing, Rebooting | Verifying)
            | (Rebooting, Verifying)
            | (Verifying, Succeeded | Failed)
            | (Commanded | Downloading | Installing | Rebooting, Failed | TimedOut | Queued)
            | (Commanded | Downloading | Installing | Rebooting | Verifying, Skipped)
            | (Failed | TimedOut, Queued | Skipped)
    )
}

/// One rollout.
#[derive(Debug)]
pub(crate) struct Run {
    pub id: i64,
    pub name: String,
    pub firmware: Arc<Firmware>,
    pub spec: RolloutSpec,
    pub state: RolloutState,
    /// The wave being worked on, 0-based (equal to the wave count once all are done).
    pub wave: u32,
    pub reason: Option<String>,
    pub paused_at: Option<i64>,
    pub pause_kind: Option<PauseKind>,
    /// `spec.start_at` in Unix ms.
    pub start_at: Option<i64>,
    pub rate: RateBucket,
    pub seed: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub window: Option<Window>,
    pub jobs: Vec<JobRec>,
    /// Job index by MAC: read on every check-in, for every rollout kept.
    pub by_mac: crate::DeviceMap<crate::DeviceKey, usize>,
    /// Jobs changed (state or progress) since the last [`Run::take_progress`], each once.
    pub changed: BTreeSet<usize>,
}

/// Counts of one wave, as the gates read them.
#[derive(Debug, Default, Clone, Copy)]
struct WaveTally {
    /// Jobs of the wave but those a person skipped.
    size: u32,
    /// Unacknowledged failures.
    failures: u32,
    /// Acknowledged failures.
    acknowledged: u32,
    /// Every job is finished.
    finished: bool,
    /// Jobs the success gate counts: not cancelled, not skipped, not an acknowledged failure.
    considered: u32,
    succeeded: u32,
    queued: u32,
    in_flight: u32,
}

impl Run {
    /// Notes that job `i` changed, for the next live progress event.
    fn touch(&mut self, i: usize) {
        self.changed.insert(i);
    }

    /// The live progress since the previous call: the jobs that changed and the counts, or `None`
    /// when nothing changed. With `want` false the changes are only forgotten (nobody listens).
    pub fn take_progress(&mut self, want: bool) -> Option<RolloutProgress> {
        if self.changed.is_empty() {
            return None;
        }
        let changed = std::mem::take(&mut self.changed);
        if !want {
            return None;
        }
        let jobs = changed
            .iter()
            .filter_map(|&i| self.jobs.get(i))
            .map(|j| JobProgress {
                job: j.id,
                mac: j.mac.clone(),
                state: j.state,
                progress: j.progress,
                error: j.error.clone(),
            })
            .collect();
        Some(RolloutProgress {
            rollout: self.id,
            state: self.state,
            current_wave: self.wave_number(),
            jobs,
            counts: Run::counts(self.jobs.iter()),
            waves: self.wave_statuses(),
        })
    }

    fn wave_statuses(&self) -> Vec<WaveStatus> {
        let mut waves: Vec<WaveStatus> = Vec::new();
        for j in self.jobs.iter().filter(|j| !j.excluded) {
            let w = j.wave as usize;
            while waves.len() <= w {
                waves.push(WaveStatus { number: waves.len() as u32 + 1, counts: JobCounts::default() });
            }
            Run::count(&mut waves[w].counts, j);
        }
        waves
    }

    pub fn row(&self) -> RolloutRow {
        RolloutRow {
            id: self.id,
            name: self.name.clone(),
            firmware_id: self.firmware.id,
            state: self.state.as_str().into(),
            spec_json: serde_json::to_string(&self.spec).unwrap_or_default(),
            current_wave: self.wave,
            pause_reason: self.reason.clone(),
            paused_at: self.paused_at,
            pause_kind: self.pause_kind.map(|k| k.as_str().to_owned()),
            seed: self.seed.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// Waves that hold at least one device (the plan's skipped are in none).
    pub fn wave_count(&self) -> u32 {
        self.jobs.iter().filter(|j| !j.excluded).map(|j| j.wave + 1).max().unwrap_or(0)
    }

    /// The wave being worked on as people count it: from 1, at most the wave count.
    pub fn wave_number(&self) -> u32 {
        (self.wave + 1).min(self.wave_count())
    }

    /// True while some job may still change by itself.
    pub fn is_active(&self) -> bool {
        matches!(
            self.state,
            RolloutState::Running | RolloutState::Paused | RolloutState::Draft | RolloutState::Scheduled
        ) || self.jobs.iter().any(|j| j.state.is_in_flight())
    }

    fn tally(&self, w: u32) -> WaveTally {
        let mut t = WaveTally { finished: true, ..WaveTally::default() };
        for j in self.jobs.iter().filter(|j| j.wave == w && !j.excluded && j.state != JobState::Skipped) {
            t.size += 1;
            t.failures += u32::from(j.open_failure());
            t.acknowledged += u32::from(j.state.is_failure() && j.acknowledged);
            t.finished &= j.state.is_terminal();
            t.considered += u32::from(j.state != JobState::Cancelled && !(j.state.is_failure() && j.acknowledged));
            t.succeeded += u32::from(j.state == JobState::Succeeded);
            t.queued += u32::from(j.state == JobState::Queued);
            t.in_flight += u32::from(j.state.is_in_flight());
        }
        t
    }

    fn event(&self, kind: &str, actor: &str, data: serde_json::Value, ops: &mut Vec<Op>) {
        ops.push(Op::Event(NewEvent::new(kind, actor, Some(format!("rollout:{}", self.id)), data)));
    }

    fn set_state(
        &mut self,
        state: RolloutState,
        pause: Option<(PauseKind, &str)>,
        actor: &str,
        now: i64,
        ops: &mut Vec<Op>,
    ) {
        // What happened, for people reading the log: a start and a resume both end `running`.
        let action = match (self.state, state) {
            (RolloutState::Paused, RolloutState::Running | RolloutState::Scheduled) => "resumed",
            (RolloutState::Completed, RolloutState::Running) => "retried",
            (RolloutState::Draft, RolloutState::Scheduled) => "scheduled",
            (RolloutState::Draft | RolloutState::Scheduled, RolloutState::Running) => "started",
            (_, RolloutState::Paused) => "paused",
            (_, RolloutState::Completed) => "completed",
            (_, RolloutState::Cancelled) => "cancelled",
            _ => "changed",
        };
        self.state = state;
        self.reason = pause.map(|(_, r)| r.to_owned());
        self.pause_kind = pause.map(|(k, _)| k);
        self.paused_at = pause.map(|_| now);
        self.updated_at = now;
        ops.push(Op::Rollout(self.row()));
        let kind = format!("rollout.{}", state.as_str());
        let data = json!({
            "id": self.id,
            "state": state,
            "action": action,
            "wave": self.wave_number(),
            "reason": self.reason,
            "pause_kind": self.pause_kind.map(PauseKind::as_str),
            "paused_at": self.paused_at.map(clock::rfc3339),
            "start_at": (state == RolloutState::Scheduled).then(|| self.spec.start_at.clone()).flatten(),
        });
        self.event(&kind, actor, data, ops);
    }

    /// Moves job `i` to `to`, recording the transition, its event and the job row.
    pub fn transition(
        &mut self,
        i: usize,
        to: JobState,
        detail: Option<String>,
        actor: &str,
        now: i64,
        ops: &mut Vec<Op>,
    ) {
        let step = i64::try_from(self.spec.step_timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let rollout_id = self.id;
        if i >= self.jobs.len() {
            return;
        }
        self.touch(i);
        let Some(job) = self.jobs.get_mut(i) else { return };
        job.state = to;
        job.updated_at = now;
        job.deadline = to.is_in_flight().then(|| now.saturating_add(step));
        if matches!(to, JobState::Failed | JobState::TimedOut | JobState::Skipped) {
            job.error.clone_from(&detail);
        }
        if to == JobState::Queued || to == JobState::Succeeded {
            job.error = None;
        }
        job.history.push(JobTransition { state: to, at: clock::rfc3339(now), detail: detail.clone() });
        ops.push(Op::Job(job.row(rollout_id)));
        ops.push(Op::Event(NewEvent::new(
            &format!("job.{}", to.as_str()),
            actor,
            Some(format!("device:{}", job.mac)),
            json!({ "rollout": rollout_id, "job": job.id, "mac": job.mac, "wave": job.wave_number(), "attempt": job.attempts, "detail": detail }),
        )));
        ops.push(Op::Transition(TransitionRow { job_id: job.id, state: to.as_str().into(), at: now, detail }));
    }

    /// The state a started rollout is in: scheduled until its start time, then running.
    fn started_state(&self, now: i64) -> RolloutState {
        if self.start_at.is_some_and(|t| t > now) { RolloutState::Scheduled } else { RolloutState::Running }
    }

    /// Starts a draft (scheduled when it has a start time still to come), or starts a scheduled
    /// rollout now.
    pub fn start(&mut self, actor: &str, now: i64, ops: &mut Vec<Op>) -> Result<(), String> {
        let to = match self.state {
            RolloutState::Draft => self.started_state(now),
            RolloutState::Scheduled => RolloutState::Running,
            _ => return Err(format!("rollout {} is {}, not a draft or scheduled", self.id, self.state.as_str())),
        };
        self.set_state(to, None, actor, now, ops);
        Ok(())
    }

    /// A scheduled rollout whose time has come starts running.
    pub fn activate(&mut self, now: i64, ops: &mut Vec<Op>) {
        if self.state == RolloutState::Scheduled && self.start_at.is_none_or(|t| t <= now) {
            self.set_state(RolloutState::Running, None, "engine", now, ops);
        }
    }

    pub fn pause(&mut self, reason: &str, actor: &str, now: i64, ops: &mut Vec<Op>) -> Result<(), String> {
        if !matches!(self.state, RolloutState::Running | RolloutState::Scheduled) {
            return Err(format!("rollout {} is {}, not running", self.id, self.state.as_str()));
        }
        self.set_state(RolloutState::Paused, Some((PauseKind::Person, reason)), actor, now, ops);
        Ok(())
    }

    /// Resumes a paused rollout. Every failure so far is acknowledged: it no longer counts
    /// against its wave's failure threshold nor its success gate, so the rollout goes on with
    /// the devices left (what [`Run::on_resume`] says beforehand).
    pub fn resume(&mut self, actor: &str, now: i64, ops: &mut Vec<Op>) -> Result<(), String> {
        if self.state != RolloutState::Paused {
            return Err(format!("rollout {} is {}, not paused", self.id, self.state.as_str()));
        }
        let rollout_id = self.id;
        let mut acknowledged = 0u32;
        for job in self.jobs.iter_mut().filter(|j| j.open_failure()) {
            job.acknowledged = true;
            acknowledged += 1;
            ops.push(Op::Job(job.row(rollout_id)));
        }
        let to = self.started_state(now);
        self.set_state(to, None, actor, now, ops);
        if acknowledged > 0 {
            self.event("rollout.acknowledged", actor, json!({ "id": self.id, "failures": acknowledged }), ops);
        }
        Ok(())
    }

    /// Stops commanding: queued jobs are cancelled, in-flight ones finish or time out.
    pub fn cancel(&mut self, actor: &str, now: i64, ops: &mut Vec<Op>) -> Result<(), String> {
        if matches!(self.state, RolloutState::Completed | RolloutState::Cancelled) {
            return Err(format!("rollout {} is already {}", self.id, self.state.as_str()));
        }
        for i in 0..self.jobs.len() {
            if self.jobs[i].state == JobState::Queued {
                self.transition(i, JobState::Cancelled, Some("rollout cancelled".into()), actor, now, ops);
            }
        }
        self.set_state(RolloutState::Cancelled, None, actor, now, ops);
        Ok(())
    }

    /// Queues failed and timed-out jobs again, each with a fresh budget of automatic retries; a
    /// paused rollout is resumed in the same action (what would it wait for otherwise?), a
    /// completed one runs again. Returns how many jobs were queued.
    pub fn retry_failed(&mut self, actor: &str, now: i64, ops: &mut Vec<Op>) -> Result<usize, String> {
        if matches!(self.state, RolloutState::Cancelled | RolloutState::Draft) {
            return Err(format!("rollout {} is {}", self.id, self.state.as_str()));
        }
        let failed: Vec<usize> = (0..self.jobs.len()).filter(|i| self.jobs[*i].state.is_failure()).collect();
        if failed.is_empty() {
            return Err(format!("rollout {} has no failed device to retry", self.id));
        }
        let mut lowest_wave = self.wave;
        for &i in &failed {
            let job = &mut self.jobs[i];
            job.retry_base = job.attempts;
            job.acknowledged = false;
            lowest_wave = lowest_wave.min(job.wave);
            self.transition(i, JobState::Queued, Some(format!("retry requested by {actor}")), actor, now, ops);
        }
        self.wave = lowest_wave;
        match self.state {
            RolloutState::Completed => self.set_state(RolloutState::Running, None, actor, now, ops),
            RolloutState::Paused => self.resume(actor, now, ops)?,
            _ => {
                self.updated_at = now;
                ops.push(Op::Rollout(self.row()));
            }
        }
        Ok(failed.len())
    }

    /// A person skips one device: it is no longer commanded or waited on (a device updating
    /// may still finish on its own; the rollout no longer counts it).
    pub fn skip(&mut self, i: usize, actor: &str, now: i64, ops: &mut Vec<Op>) -> Result<(), String> {
        if matches!(self.state, RolloutState::Completed | RolloutState::Cancelled) {
            return Err(format!("rollout {} is {}", self.id, self.state.as_str()));
        }
        let Some(job) = self.jobs.get(i) else { return Err(format!("no such job in rollout {}", self.id)) };
        if !allowed(job.state, JobState::Skipped) {
            return Err(format!(
                "job {} is {}: only a device not yet finished can be skipped",
                job.id,
                job.state.as_str()
            ));
        }
        let detail = if job.state.is_in_flight() {
            format!("skipped by {actor} while {}: no longer waited on", job.state.as_str())
        } else {
            format!("skipped by {actor}")
        };
        self.transition(i, JobState::Skipped, Some(detail), actor, now, ops);
        Ok(())
    }

    /// Job `i` failed; transient failures are retried while its retry budget lasts.
    fn fail(&mut self, i: usize, to: JobState, why: String, transient: bool, now: i64, ops: &mut Vec<Op>) {
        let retry =
            transient && self.jobs[i].retries_left(self.spec.retries) > 0 && self.state != RolloutState::Cancelled;
        if retry {
            self.transition(i, JobState::Queued, Some(format!("{why}; retrying")), "engine", now, ops);
        } else {
            self.transition(i, to, Some(why), "engine", now, ops);
        }
    }

    /// Times out in-flight jobs past their deadline.
    pub fn expire(&mut self, now: i64, ops: &mut Vec<Op>) {
        for i in 0..self.jobs.len() {
            let j = &self.jobs[i];
            if j.state.is_in_flight() && j.deadline.is_some_and(|d| now >= d) {
                let why = format!(
                    "no progress from the device for {} s while {}",
                    self.spec.step_timeout_secs,
                    j.state.as_str()
                );
                self.fail(i, JobState::TimedOut, why, true, now, ops);
            }
        }
    }

    /// Applies gates to the current wave: pauses, advances or completes.
    pub fn gates(&mut self, now: i64, ops: &mut Vec<Op>) {
        // Gates change no job: the wave count holds for the whole call.
        let waves = self.wave_count();
        while self.state == RolloutState::Running {
            if self.wave >= waves {
                self.set_state(RolloutState::Completed, None, "engine", now, ops);
                return;
            }
            let w = self.wave;
            let t = self.tally(w);
            if t.failures > 0 && threshold_exceeded(self.spec.max_failures, t.failures, t.size) {
                let th = match self.spec.max_failures {
                    Threshold::Count(n) => format!("{n} devices"),
                    Threshold::Percent(p) => format!("{p}%"),
                };
                let reason =
                    format!("wave {} of {waves}: {} of {} devices failed (threshold {th})", w + 1, t.failures, t.size);
                self.set_state(RolloutState::Paused, Some((PauseKind::Failures, &reason)), "engine", now, ops);
                return;
            }
            if !t.finished {
                return;
            }
            if !gate_passed(self.spec.success_gate, t.succeeded, t.considered) {
                let reason = format!(
                    "wave {} of {waves}: {} of {} devices succeeded, below the {}% success gate",
                    w + 1,
                    t.succeeded,
                    t.considered,
                    self.spec.success_gate
                );
                self.set_state(RolloutState::Paused, Some((PauseKind::Gate, &reason)), "engine", now, ops);
                return;
            }
            self.wave += 1;
            self.updated_at = now;
            ops.push(Op::Rollout(self.row()));
            if self.wave >= waves {
                continue;
            }
            self.event("rollout.wave_started", "engine", json!({ "id": self.id, "wave": self.wave + 1 }), ops);
            if self.spec.manual_approval {
                let reason =
                    format!("wave {} of {waves} done; waiting for approval (resume) to start wave {}", w + 1, w + 2);
                self.set_state(RolloutState::Paused, Some((PauseKind::Approval, &reason)), "engine", now, ops);
                return;
            }
        }
    }

    /// Commands queued devices of the open waves while concurrency and the command rate allow.
    /// The commands are recorded in `ops`; the caller makes them durable before sending anything.
    pub fn admit(&mut self, now: i64, at: time::OffsetDateTime, ops: &mut Vec<Op>) -> Vec<Command> {
        let mut out = Vec::new();
        if self.state != RolloutState::Running || self.window.as_ref().is_some_and(|w| !w.is_open(at)) {
            return out;
        }
        let in_flight = self.jobs.iter().filter(|j| j.state.is_in_flight()).count();
        let room = (self.spec.concurrency.max(1) as usize).saturating_sub(in_flight);
        let mut queued: Vec<usize> = (0..self.jobs.len())
            .filter(|i| self.jobs[*i].state == JobState::Queued && self.jobs[*i].wave <= self.wave)
            .collect();
        if room == 0 || queued.is_empty() {
            return out;
        }
        let room = self.rate.take(self.spec.command_rate, room.min(queued.len()), now);
        queued.sort_by_key(|i| (self.jobs[*i].wave, self.jobs[*i].id));
        for i in queued.into_iter().take(room) {
            self.jobs[i].attempts += 1;
            self.jobs[i].commands += 1;
            self.jobs[i].commanded_at = Some(now);
            self.jobs[i].durable = false;
            self.jobs[i].delivered = false;
            self.jobs[i].progress = None;
            let detail = format!("attempt {}", self.jobs[i].attempts);
            self.transition(i, JobState::Commanded, Some(detail), "engine", now, ops);
            out.push(Command { rollout_id: self.id, job_index: i });
        }
        out
    }

    /// The device reports progress on job `token`. Stale tokens (an earlier attempt) are ignored.
    #[allow(clippy::too_many_arguments)]
    pub fn report(
        &mut self,
        i: usize,
        token: &str,
        state: DeviceOtaState,
        progress: Option<u8>,
        error: Option<String>,
        now: i64,
        ops: &mut Vec<Op>,
    ) {
        let Some(job) = self.jobs.get(i) else { return };
        if job.token() != token || !job.state.is_in_flight() {
            return;
        }
        let actor = format!("device:{}", job.mac);
        let current = job.state;
        let target = match state {
            DeviceOtaState::Accepted | DeviceOtaState::Downloading => JobState::Downloading,
            DeviceOtaState::Installing => JobState::Installing,
            DeviceOtaState::Rebooting => JobState::Rebooting,
            DeviceOtaState::Failed => {
                let why = error.unwrap_or_else(|| "the device reported a failure".into());
                self.fail(i, JobState::Failed, format!("device: {why}"), true, now, ops);
                return;
            }
            DeviceOtaState::Rejected => {
                let why = error.unwrap_or_else(|| "the device rejected the update".into());
                self.fail(i, JobState::Failed, format!("device rejected the update: {why}"), false, now, ops);
                return;
            }
        };
        if let Some(p) = progress {
            let rollout_id = self.id;
            if self.jobs[i].progress != Some(p.min(100)) {
                self.touch(i);
            }
            let job = &mut self.jobs[i];
            job.progress = Some(p.min(100));
            job.updated_at = now;
            if target == current {
                ops.push(Op::Job(job.row(rollout_id)));
            }
        }
        if target != current && allowed(current, target) && target > current {
            self.transition(i, target, None, &actor, now, ops);
        }
    }

    /// The device was seen running `version` (a check-in or presence): verification. With `live`
    /// false (possibly stale evidence) only a success is recorded.
    /// Tests: an authenticated sighting of a device whose image was served to it.
    #[cfg(test)]
    pub fn seen(&mut self, i: usize, version: &str, live: bool, now: i64, ops: &mut Vec<Op>) {
        if let Some(j) = self.jobs.get_mut(i) {
            j.downloaded = Some(j.commands);
        }
        self.seen_as(i, version, live, true, now, ops);
    }

    /// Verification: the device was seen running `version`, `authenticated` or not. Success needs
    /// evidence: the target version **and** this command's image served to the device on its
    /// download token; a claim of the target version without the download is recorded and
    /// changes nothing else.
    pub fn seen_as(&mut self, i: usize, version: &str, live: bool, authenticated: bool, now: i64, ops: &mut Vec<Op>) {
        let Some(job) = self.jobs.get_mut(i) else { return };
        if !job.state.is_in_flight() {
            return;
        }
        job.authenticated = authenticated;
        let actor = format!("device:{}", job.mac);
        let on_target = same_version(version, &self.firmware.version);
        let came_back = matches!(job.state, JobState::Rebooting | JobState::Verifying);
        // What it runs after the update: a version heard before its reboot says nothing of that.
        if (came_back || on_target) && job.current_version.as_deref() != Some(version) {
            job.current_version = Some(version.to_owned());
        }
        if on_target && !job.served() {
            // The target version without the bytes: not evidence of an update.
            return;
        }
        if on_target {
            let evidence = if authenticated { "authenticated+download" } else { "unauthenticated+download" };
            job.evidence = Some(evidence.to_owned());
            ops.push(Op::Evidence(job.evidence_row()));
            if job.state != JobState::Verifying {
                self.transition(i, JobState::Verifying, Some(format!("seen running {version}")), &actor, now, ops);
            }
            self.transition(i, JobState::Succeeded, Some(format!("runs {version}")), &actor, now, ops);
        } else if came_back && live {
            if job.state != JobState::Verifying {
                self.transition(i, JobState::Verifying, Some(format!("seen running {version}")), &actor, now, ops);
            }
            let why = format!(
                "came back on {version}, not {}: the new firmware did not boot (rolled back)",
                self.firmware.version
            );
            self.fail(i, JobState::Failed, why, false, now, ops);
        }
    }

    /// The image of job `i` was served to the end on download token `token` (its job id):
    /// evidence of the download, for the current command only. True when recorded.
    pub fn downloaded(&mut self, i: usize, token: &str, ops: &mut Vec<Op>) -> bool {
        let Some(job) = self.jobs.get_mut(i) else { return false };
        if job.token() != token || !job.state.is_in_flight() || job.served() {
            return false;
        }
        job.downloaded = Some(job.commands);
        ops.push(Op::Evidence(job.evidence_row()));
        self.touch(i);
        true
    }

    /// Counts per state.
    pub fn counts<'a>(jobs: impl Iterator<Item = &'a JobRec>) -> JobCounts {
        let mut c = JobCounts::default();
        for j in jobs {
            Run::count(&mut c, j);
        }
        c
    }

    fn count(c: &mut JobCounts, j: &JobRec) {
        c.total += 1;
        c.excluded += u32::from(j.excluded);
        match j.state {
            JobState::Queued => c.queued += 1,
            JobState::Succeeded => c.succeeded += 1,
            JobState::Failed => c.failed += 1,
            JobState::TimedOut => c.timed_out += 1,
            JobState::Skipped => c.skipped += 1,
            JobState::Cancelled => c.cancelled += 1,
            _ => c.in_flight += 1,
        }
    }

    /// How a finished rollout ended.
    fn outcome(&self, counts: &JobCounts) -> Option<RolloutOutcome> {
        match self.state {
            RolloutState::Cancelled => Some(RolloutOutcome::Cancelled),
            RolloutState::Completed => Some(if counts.succeeded == counts.planned() {
                RolloutOutcome::AllSucceeded
            } else {
                RolloutOutcome::SomeFailed
            }),
            _ => None,
        }
    }

    /// What pressing Resume would do, in words (paused rollouts only).
    pub fn on_resume(&self, now: i64, at: time::OffsetDateTime) -> Option<String> {
        if self.state != RolloutState::Paused {
            return None;
        }
        let waves = self.wave_count();
        let failures: Vec<&JobRec> = self.jobs.iter().filter(|j| j.open_failure()).collect();
        let mut out = String::from("Resume ");
        if !failures.is_empty() {
            let mut by_wave: Vec<u32> = failures.iter().map(|j| j.wave + 1).collect();
            by_wave.sort_unstable();
            by_wave.dedup();
            let waves_text = by_wave.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
            let (plural, they) = if failures.len() == 1 { ("", "it stops") } else { ("s", "they stop") };
            let _ = write!(
                out,
                "acknowledges {} failed device{plural} (wave {waves_text}): {they} counting against the failure \
                 threshold ({}) and the {}% success gate, and ",
                failures.len(),
                match self.spec.max_failures {
                    Threshold::Count(n) => format!("{n} devices"),
                    Threshold::Percent(p) => format!("{p}%"),
                },
                self.spec.success_gate
            );
        }
        let t = self.tally(self.wave.min(waves.saturating_sub(1)));
        if self.pause_kind == Some(PauseKind::Approval) {
            let _ = write!(out, "starts wave {} of {waves} ({} devices)", self.wave + 1, t.queued + t.in_flight);
        } else if self.wave >= waves {
            out.push_str("completes the rollout");
        } else {
            let _ = write!(out, "continues wave {} of {waves}", self.wave + 1);
            let mut parts = Vec::new();
            if t.in_flight > 0 {
                parts.push(format!("{} updating", t.in_flight));
            }
            if t.queued > 0 {
                parts.push(format!("{} queued", t.queued));
            }
            let later: u32 =
                self.jobs.iter().filter(|j| !j.excluded && j.wave > self.wave && j.state == JobState::Queued).count()
                    as u32;
            if later > 0 {
                parts.push(format!("{later} in later waves"));
            }
            if !parts.is_empty() {
                let _ = write!(out, " ({})", parts.join(", "));
            }
        }
        if self.start_at.is_some_and(|s| s > now) {
            out.push_str("; it then waits for its scheduled start");
        } else if let Some(w) = &self.window
            && !w.is_open(at)
        {
            out.push_str("; no device is commanded until the maintenance window opens");
            if let Some(open) = w.next_open(at) {
                let _ = write!(out, " (in {})", human_span((open - at).whole_seconds()));
            }
        }
        out.push('.');
        Some(out)
    }

    /// Times at which finished jobs finished (succeeded or failed), sorted.
    fn done_times(&self) -> Vec<i64> {
        let mut t: Vec<i64> = self
            .jobs
            .iter()
            .filter(|j| j.state.is_terminal() && !matches!(j.state, JobState::Skipped | JobState::Cancelled))
            .map(|j| j.updated_at)
            .collect();
        t.sort_unstable();
        t
    }

    /// The pace and the remaining time, and what they rest on.
    pub fn estimate(&self, now: i64, at: time::OffsetDateTime) -> RolloutEstimate {
        let done = self.done_times();
        let finished = matches!(self.state, RolloutState::Completed | RolloutState::Cancelled);
        let per_minute = if finished {
            // The whole run: a number that does not change after the fact (or after a reload).
            match (done.first(), done.last()) {
                (Some(a), Some(b)) if done.len() >= 2 && b > a => {
                    Some((done.len() - 1) as f64 * 60_000.0 / (b - a) as f64)
                }
                _ => None,
            }
        } else {
            let recent: Vec<i64> = done.iter().copied().filter(|t| *t > now - PACE_WINDOW_MS && *t <= now).collect();
            (recent.len() >= 2).then(|| {
                let span = (now - recent[0]).max(1000);
                recent.len() as f64 * 60_000.0 / span as f64
            })
        };
        let (remaining_secs, basis) = match self.state {
            RolloutState::Completed | RolloutState::Cancelled => (Some(0), "finished".into()),
            RolloutState::Draft => (None, "not started".into()),
            RolloutState::Paused => (None, "paused: nothing moves until it is resumed".into()),
            RolloutState::Scheduled => (None, "scheduled: the pace is known once it runs".into()),
            RolloutState::Running => self.running_estimate(now, at, per_minute),
        };
        RolloutEstimate { per_minute, remaining_secs, basis }
    }

    fn running_estimate(&self, now: i64, at: time::OffsetDateTime, per_minute: Option<f64>) -> (Option<u64>, String) {
        let remaining =
            self.jobs.iter().filter(|j| !j.excluded && (j.state == JobState::Queued || j.state.is_in_flight())).count();
        if remaining == 0 {
            return (Some(0), "finishing".into());
        }
        let pace_secs = per_minute.map(|r| (remaining as f64 / r * 60.0).ceil() as i64);
        let step = i64::try_from(self.spec.step_timeout_secs).unwrap_or(i64::MAX / 4);
        // How long an update takes here, command to success (the median of those done): a device
        // under way is expected that long after its command; one with no news for much longer
        // counts as stalled.
        let typical = self.typical_update_ms();
        let stalled_after = typical.map_or(STALLED_AFTER_MS, |t| (3 * t).clamp(10_000, STALLED_AFTER_MS));
        let open = |j: &&JobRec| j.state.is_in_flight() && j.wave <= self.wave;
        // Stalled devices of the open waves hold the wave until they time out (retries included).
        let stalled_until = self
            .jobs
            .iter()
            .filter(open)
            .filter(|j| now - j.updated_at >= stalled_after)
            .filter_map(|j| {
                let deadline = j.deadline?;
                Some(deadline / 1000 + i64::from(j.retries_left(self.spec.retries)) * step)
            })
            .max();
        // The others are expected once a typical update after their command.
        let under_way_secs = typical.and_then(|t| {
            self.jobs
                .iter()
                .filter(open)
                .filter(|j| now - j.updated_at < stalled_after)
                .filter_map(|j| j.commanded_at.map(|c| ((c + t - now) / 1000).max(1)))
                .max()
        });
        let later =
            self.jobs.iter().filter(|j| !j.excluded && j.wave > self.wave && j.state == JobState::Queued).count();
        let window_wait = match &self.window {
            Some(w) if !w.is_open(at) => w.next_open(at).map(|o| (o - at).whole_seconds().max(0)),
            _ => None,
        };
        let mut secs = match (pace_secs, under_way_secs) {
            (Some(p), Some(u)) => Some(p.max(u)),
            (p, u) => p.or(u),
        };
        let mut basis = match per_minute {
            Some(r) => format!("{} devices/min over the last 5 min", fmt_rate(r)),
            None => "waiting for the first devices to finish to know the pace".into(),
        };
        if let Some(t) = typical {
            let _ = write!(basis, "; an update takes about {} here", human_span((t + 500) / 1000));
        }
        if let Some(until) = stalled_until {
            let hold = (until - now / 1000).max(0);
            let after = per_minute.map_or(0, |r| (later as f64 / r * 60.0).ceil() as i64);
            let bound = hold + after;
            if secs.is_none_or(|s| bound > s) {
                secs = Some(bound);
                let _ = write!(
                    basis,
                    "; wave {} cannot finish for up to {} (a device with no news times out then, retries included)",
                    self.wave + 1,
                    human_span(hold)
                );
            }
        }
        if let Some(wait) = window_wait {
            secs = secs.map(|s| s + wait);
            let _ = write!(basis, "; outside the maintenance window, which opens in {}", human_span(wait));
        }
        (secs.map(|s| u64::try_from(s).unwrap_or(0)), basis)
    }

    /// The median time from command to success of the devices updated so far (ms).
    fn typical_update_ms(&self) -> Option<i64> {
        let mut d: Vec<i64> = self
            .jobs
            .iter()
            .filter(|j| j.state == JobState::Succeeded)
            .filter_map(|j| j.commanded_at.map(|c| j.updated_at - c))
            .filter(|d| *d >= 0)
            .collect();
        if d.is_empty() {
            return None;
        }
        d.sort_unstable();
        Some(d[d.len() / 2])
    }

    /// What the rollout waits on now (`None` when it is finished or nothing holds it).
    pub fn waiting(
        &self,
        now: i64,
        at: time::OffsetDateTime,
        device: &dyn Fn(&str) -> DeviceRef,
    ) -> Option<RolloutWait> {
        let waves = self.wave_count();
        let in_flight: Vec<&JobRec> =
            self.jobs.iter().filter(|j| j.state.is_in_flight() && !j.excluded && j.wave <= self.wave).collect();
        let step = i64::try_from(self.spec.step_timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 4);
        let until_of = |j: &JobRec| j.deadline.map(|d| d + i64::from(j.retries_left(self.spec.retries)) * step);
        let mut listed: Vec<&JobRec> = in_flight.clone();
        // Longest without news first: those are what holds the wave.
        listed.sort_by_key(|j| (j.updated_at, j.id));
        let devices: Vec<WaitingDevice> = listed
            .iter()
            .take(WAIT_LIST)
            .map(|j| {
                let d = device(&j.mac);
                WaitingDevice {
                    job: j.id,
                    mac: j.mac.clone(),
                    name: d.name.or_else(|| j.device_id.clone()),
                    wave: j.wave + 1,
                    state: j.state,
                    since: clock::rfc3339(j.updated_at),
                    deadline: j.deadline.map(clock::rfc3339),
                    retries_left: j.retries_left(self.spec.retries),
                    last_seen: d.last_seen_ms.map(clock::rfc3339),
                }
            })
            .collect();
        let device_count = in_flight.len() as u32;
        let latest = in_flight.iter().filter_map(|j| until_of(j)).max();
        let wait = |reason, summary: String, until: Option<i64>, devices: Vec<WaitingDevice>, device_count| {
            Some(RolloutWait { reason, summary, until: until.map(clock::rfc3339), devices, device_count })
        };
        match self.state {
            RolloutState::Completed | RolloutState::Cancelled | RolloutState::Draft => None,
            RolloutState::Scheduled => {
                let start = self.start_at.unwrap_or(now);
                let summary = format!("starts in {}", human_span((start - now) / 1000));
                wait(WaitReason::Scheduled, summary, Some(start), Vec::new(), 0)
            }
            RolloutState::Paused => {
                let (reason, summary) = match self.pause_kind {
                    Some(PauseKind::Approval) => (
                        WaitReason::Approval,
                        format!("waits for approval (resume) to start wave {} of {waves}", self.wave + 1),
                    ),
                    _ => (WaitReason::Paused, format!("paused: {}", self.reason.as_deref().unwrap_or("by a person"))),
                };
                wait(reason, summary, None, devices, device_count)
            }
            RolloutState::Running => {
                if let Some(w) = &self.window
                    && !w.is_open(at)
                {
                    let open = w.next_open(at);
                    let summary = match open {
                        Some(o) => format!(
                            "outside the maintenance window ({}): no device is commanded until it opens in {}",
                            self.spec.window.as_deref().unwrap_or_default(),
                            human_span((o - at).whole_seconds())
                        ),
                        None => "outside the maintenance window".into(),
                    };
                    let until = open.and_then(|o| i64::try_from(o.unix_timestamp_nanos() / 1_000_000).ok());
                    return wait(WaitReason::Window, summary, until, devices, device_count);
                }
                let queued_open = self
                    .jobs
                    .iter()
                    .filter(|j| j.state == JobState::Queued && !j.excluded && j.wave <= self.wave)
                    .count();
                if queued_open > 0 {
                    if in_flight.len() >= self.spec.concurrency.max(1) as usize {
                        let summary = format!(
                            "{} devices updating, the most allowed at once ({}); {queued_open} queued",
                            in_flight.len(),
                            self.spec.concurrency
                        );
                        return wait(WaitReason::Concurrency, summary, None, devices, device_count);
                    }
                    return None;
                }
                if in_flight.is_empty() {
                    return None;
                }
                let names: Vec<String> = devices
                    .iter()
                    .take(3)
                    .map(|d| {
                        let mut s = format!("{} ({}", d.name.as_deref().unwrap_or(&d.mac), d.state.as_str());
                        if let Some(dl) = d.deadline.as_deref().and_then(clock::parse_rfc3339) {
                            let _ = write!(s, ", times out in {}", human_span((dl - now) / 1000));
                            if d.retries_left > 0 {
                                let _ = write!(
                                    s,
                                    ", then {} retr{} left",
                                    d.retries_left,
                                    if d.retries_left == 1 { "y" } else { "ies" }
                                );
                            }
                        }
                        s.push(')');
                        s
                    })
                    .collect();
                let more =
                    if in_flight.len() > 3 { format!(" and {} more", in_flight.len() - 3) } else { String::new() };
                let summary = format!(
                    "wave {} of {waves} waits for {} device{}: {}{more}",
                    self.wave + 1,
                    in_flight.len(),
                    if in_flight.len() == 1 { "" } else { "s" },
                    names.join(", ")
                );
                wait(WaitReason::Devices, summary, latest, devices, device_count)
            }
        }
    }

    pub fn to_proto(&self, now: i64, at: time::OffsetDateTime, device: &dyn Fn(&str) -> DeviceRef) -> Rollout {
        let counts = Run::counts(self.jobs.iter());
        Rollout {
            id: self.id,
            name: self.name.clone(),
            firmware_id: self.firmware.id,
            firmware_version: self.firmware.version.clone(),
            state: self.state,
            current_wave: self.wave_number(),
            wave_count: self.wave_count(),
            pause_reason: self.reason.clone(),
            paused_at: self.paused_at.map(clock::rfc3339),
            on_resume: self.on_resume(now, at),
            waiting: self.waiting(now, at, device),
            estimate: self.estimate(now, at),
            outcome: self.outcome(&counts),
            spec: self.spec.clone(),
            counts,
            waves: self.wave_statuses(),
            created_at: clock::rfc3339(self.created_at),
            updated_at: clock::rfc3339(self.updated_at),
        }
    }
}

/// Seconds as people say them: `45 s`, `4 min`, `2 h 10 min`.
pub fn human_span(secs: i64) -> String {
    let s = secs.max(0);
    if s < 60 {
        return format!("{s} s");
    }
    let m = (s + 30) / 60;
    if m < 60 {
        return format!("{m} min");
    }
    format!("{} h {} min", m / 60, m % 60)
}

fn fmt_rate(r: f64) -> String {
    if r < 10.0 { format!("{r:.1}") } else { format!("{r:.0}") }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use JobState::*;
    use flotilla_proto::rollout::WaveSize;

    fn firmware() -> Arc<Firmware> {
        let image = flotilla_proto::ImageInfo {
            format: flotilla_proto::ImageFormat::Esp32,
            inner_format: None,
            esp8266_image_version: None,
            chip: flotilla_proto::Chip::Esp32,
            version: Some("2.0.0".into()),
            project: Some("demo".into()),
            idf_version: None,
            compile_time: None,
            compile_date: None,
            secure_version: None,
            app_elf_sha256: None,
            size: 10,
            image_size: 10,
            sha256: "a".repeat(64),
            gzip: None,
            flash_size: None,
            flash_mode: None,
            flash_freq: None,
            min_chip_rev: None,
            max_chip_rev: None,
            entry_addr: 0,
            hash_appended: true,
            segments: vec![],
        };
        let manifest = flotilla_proto::Manifest {
            version: "2.0.0".into(),
            size: 10,
            sha256: "a".repeat(64),
            chip: flotilla_proto::Chip::Esp32,
            model: "demo".into(),
            min_version: None,
            secure_version: None,
        };
        Arc::new(Firmware {
            id: 1,
            sha256: "a".repeat(64),
            version: "2.0.0".into(),
            model: "demo".into(),
            chip: flotilla_proto::Chip::Esp32,
            format: flotilla_proto::ImageFormat::Esp32,
            project: None,
            idf_version: None,
            secure_version: None,
            size: 10,
            channel: flotilla_proto::Channel::Stable,
            notes: None,
            min_version: None,
            blocked: false,
            public: false,
            archived: false,
            created_at: String::new(),
            image,
            manifest: flotilla_proto::SignedManifest { manifest, signature: String::new(), key_id: String::new() },
        })
    }

    /// A running rollout with `waves` (sizes of each wave, in devices).
    fn run(waves: &[u32], concurrency: u32) -> Run {
        let mut spec = RolloutSpec::new("2.0.0", "all");
        spec.waves = vec![WaveSize::Percent(100.0)];
        spec.concurrency = concurrency;
        spec.step_timeout_secs = 10;
        let mut jobs = Vec::new();
        for (w, n) in waves.iter().enumerate() {
            for _ in 0..*n {
                let id = jobs.len() as i64 + 1;
                jobs.push(JobRec {
                    id,
                    mac: format!("02:00:00:00:00:{id:02x}"),
                    device_id: None,
                    wave: w as u32,
                    state: Queued,
                    attempts: 0,
                    from_version: Some("1.0.0".into()),
                    current_version: None,
                    error: None,
                    progress: None,
                    deadline: None,
                    acknowledged: false,
                    commands: 0,
                    retry_base: 0,
                    excluded: false,
                    commanded_at: None,
                    created_at: 0,
                    updated_at: 0,
                    history: vec![],
                    durable: true,
                    delivered: false,
                    nonce: "n".into(),
                    downloaded: None,
                    evidence: None,
                    authenticated: false,
                });
            }
        }
        let by_mac = jobs.iter().enumerate().map(|(i, j)| (crate::DeviceKey::from(j.mac.as_str()), i)).collect();
        Run {
            id: 1,
            name: "t".into(),
            firmware: firmware(),
            spec,
            state: RolloutState::Running,
            wave: 0,
            reason: None,
            paused_at: None,
            pause_kind: None,
            start_at: None,
            rate: RateBucket::default(),
            seed: String::new(),
            created_at: 0,
            updated_at: 0,
            window: None,
            jobs,
            by_mac,
            changed: BTreeSet::new(),
        }
    }

    fn at() -> time::OffsetDateTime {
        time::OffsetDateTime::UNIX_EPOCH
    }

    #[test]
    fn success_needs_the_download_and_records_its_evidence() {
        let mut r = run(&[1], 1);
        let mut ops = Vec::new();
        r.admit(0, at(), &mut ops);
        let token = r.jobs[0].token();
        r.seen_as(0, "2.0.0", true, true, 1, &mut ops);
        assert_eq!(r.jobs[0].state, Commanded, "a claim of the target version without the download");
        assert!(!r.downloaded(0, "1-1-x", &mut ops), "another id's download is not this job's");
        assert!(r.downloaded(0, &token, &mut ops));
        r.seen_as(0, "2.0.0", true, false, 2, &mut ops);
        assert_eq!(r.jobs[0].state, Succeeded);
        assert_eq!(r.jobs[0].evidence.as_deref(), Some("unauthenticated+download"));
        assert!(r.jobs[0].to_proto(1).downloaded);
    }

    /// Drives job `i` through a successful update.
    fn succeed(r: &mut Run, i: usize, ops: &mut Vec<Op>) {
        let token = r.jobs[i].token();
        r.report(i, &token, DeviceOtaState::Rebooting, None, None, 1, ops);
        r.seen(i, "2.0.0", true, 2, ops);
        assert_eq!(r.jobs[i].state, Succeeded);
    }

    #[test]
    fn admission_respects_waves_and_concurrency() {
        let mut r = run(&[1, 4, 5], 2);
        let mut ops = Vec::new();
        let c = r.admit(0, at(), &mut ops);
        assert_eq!(c.len(), 1, "only the canary wave is open");
        succeed(&mut r, 0, &mut ops);
        r.gates(3, &mut ops);
        assert_eq!(r.wave, 1);
        let c = r.admit(3, at(), &mut ops);
        assert_eq!(c.len(), 2, "concurrency 2");
        assert!(r.admit(3, at(), &mut ops).is_empty(), "no room until one finishes");
        assert!(r.jobs.iter().filter(|j| j.wave == 2).all(|j| j.state == Queued));
    }

    #[test]
    fn a_wave_over_its_failure_threshold_pauses_and_resume_acknowledges() {
        let mut r = run(&[1, 10], 10);
        let mut ops = Vec::new();
        r.admit(0, at(), &mut ops);
        succeed(&mut r, 0, &mut ops);
        r.gates(3, &mut ops);
        r.admit(3, at(), &mut ops);
        // Two of ten come back on the old version: 20 % > 10 %.
        for i in [1, 2] {
            let token = r.jobs[i].token();
            r.report(i, &token, DeviceOtaState::Rebooting, None, None, 4, &mut ops);
            r.seen(i, "1.0.0", true, 5, &mut ops);
            assert_eq!(r.jobs[i].state, Failed);
        }
        r.gates(6, &mut ops);
        assert_eq!(r.state, RolloutState::Paused);
        assert!(r.reason.as_deref().unwrap_or("").contains("2 of 10 devices failed"), "{:?}", r.reason);
        r.resume("t", 7, &mut ops).unwrap();
        r.gates(7, &mut ops);
        assert_eq!(r.state, RolloutState::Running, "acknowledged failures no longer count");
    }

    #[test]
    fn timeouts_retry_once_then_time_out() {
        let mut r = run(&[1], 1);
        r.spec.retries = 1;
        r.spec.success_gate = 0.0;
        r.spec.max_failures = Threshold::Count(5);
        let mut ops = Vec::new();
        r.admit(0, at(), &mut ops);
        let first = r.jobs[0].token();
        r.expire(10_000, &mut ops);
        assert_eq!(r.jobs[0].state, Queued, "first timeout is retried");
        r.admit(10_000, at(), &mut ops);
        assert_ne!(r.jobs[0].token(), first, "a retry is a new job id for the device");
        r.expire(20_000, &mut ops);
        assert_eq!(r.jobs[0].state, TimedOut);
        r.gates(20_000, &mut ops);
        assert_eq!(r.state, RolloutState::Completed);
    }

    #[test]
    fn stale_reports_and_retained_presence_cannot_fail_a_job() {
        let mut r = run(&[1], 1);
        let mut ops = Vec::new();
        r.admit(0, at(), &mut ops);
        r.report(0, "1-99", DeviceOtaState::Failed, None, Some("old".into()), 1, &mut ops);
        assert_eq!(r.jobs[0].state, Commanded, "a report for another command is ignored");
        let token = r.jobs[0].token();
        r.report(0, &token, DeviceOtaState::Rebooting, None, None, 2, &mut ops);
        r.seen(0, "1.0.0", false, 3, &mut ops);
        assert_eq!(r.jobs[0].state, Rebooting, "a retained presence may predate the update");
        r.seen(0, "2.0.0", false, 4, &mut ops);
        assert_eq!(r.jobs[0].state, Succeeded, "but it can confirm the target version");
    }

    #[test]
    fn the_state_machine_only_moves_forward_or_retries() {
        assert!(allowed(Queued, Commanded));
        assert!(allowed(Commanded, Downloading));
        assert!(allowed(Rebooting, Verifying));
        assert!(allowed(Verifying, Succeeded));
        assert!(allowed(Downloading, TimedOut));
        assert!(allowed(Failed, Queued));
        assert!(!allowed(Queued, Succeeded), "success needs verification");
        assert!(!allowed(Commanded, Succeeded));
        assert!(!allowed(Succeeded, Queued));
        assert!(!allowed(Skipped, Commanded));
        assert!(!allowed(Downloading, Commanded));
    }

    fn nobody(_: &str) -> DeviceRef {
        DeviceRef::default()
    }

    /// Drives job `i` to a failure: it comes back on the old version.
    fn roll_back(r: &mut Run, i: usize, now: i64, ops: &mut Vec<Op>) {
        let token = r.jobs[i].token();
        r.report(i, &token, DeviceOtaState::Rebooting, None, None, now, ops);
        r.seen(i, "1.0.0", true, now, ops);
        assert_eq!(r.jobs[i].state, Failed);
    }

    #[test]
    fn resume_acknowledges_the_failure_threshold_and_the_success_gate() {
        // The finding: wave 2 of 4 paused on "1 of 4 failed"; a second device failed while it was
        // paused; Resume was followed at once by a new pause, "2 of 4 devices succeeded, below
        // the 90 % success gate", and the rest stayed queued for good.
        let mut r = run(&[1, 4, 10], 4);
        r.spec.retries = 0;
        let mut ops = Vec::new();
        r.admit(0, at(), &mut ops);
        succeed(&mut r, 0, &mut ops);
        r.gates(3, &mut ops);
        assert_eq!(r.admit(3, at(), &mut ops).len(), 4);
        roll_back(&mut r, 1, 4, &mut ops);
        r.gates(5, &mut ops);
        assert_eq!(r.state, RolloutState::Paused);
        assert_eq!(r.pause_kind, Some(PauseKind::Failures));
        assert_eq!(r.paused_at, Some(5));
        roll_back(&mut r, 2, 6, &mut ops);
        let said = r.on_resume(7, at()).unwrap();
        assert!(said.contains("acknowledges 2 failed devices (wave 2): they stop counting"), "{said}");
        assert!(said.contains("90% success gate"), "{said}");
        assert!(said.contains("continues wave 2 of 3 (2 updating, 10 in later waves)"), "{said}");
        r.resume("t", 7, &mut ops).unwrap();
        succeed(&mut r, 3, &mut ops);
        succeed(&mut r, 4, &mut ops);
        r.gates(8, &mut ops);
        assert_eq!(r.state, RolloutState::Running, "{:?}", r.reason);
        assert_eq!(r.wave, 2, "wave 3 started: the 2 acknowledged failures count against neither gate");
        assert_eq!(r.admit(8, at(), &mut ops).len(), 4);
        // New failures in the new wave count again (2 of 10 is over 10 %).
        roll_back(&mut r, 5, 9, &mut ops);
        roll_back(&mut r, 6, 9, &mut ops);
        r.gates(9, &mut ops);
        assert_eq!(r.state, RolloutState::Paused);
        assert!(r.reason.as_deref().unwrap_or("").starts_with("wave 3 of 3: 2 of 10"), "{:?}", r.reason);
    }

    #[test]
    fn retry_while_paused_resumes_and_attempts_are_counted_truly() {
        let mut r = run(&[2], 2);
        r.spec.retries = 1;
        let mut ops = Vec::new();
        r.admit(0, at(), &mut ops);
        // Job 0: a timeout, retried automatically, then another: 2 attempts, out of retries.
        r.expire(10_000, &mut ops);
        assert_eq!(r.jobs[0].state, Queued);
        r.admit(10_000, at(), &mut ops);
        r.expire(20_000, &mut ops);
        assert_eq!((r.jobs[0].state, r.jobs[0].attempts), (TimedOut, 2));
        assert_eq!(r.jobs[0].retries_left(1), 0);
        r.gates(20_000, &mut ops);
        assert_eq!(r.state, RolloutState::Paused);
        assert_eq!(r.retry_failed("tech", 21_000, &mut ops).unwrap(), 2);
        assert_eq!(r.state, RolloutState::Running, "a retry while paused resumes in the same action");
        assert_eq!(r.jobs[0].retries_left(1), 1, "a person's retry brings a fresh retry budget");
        r.admit(21_000, at(), &mut ops);
        assert_eq!(r.jobs[0].attempts, 3, "attempts are never rewound");
        let attempts: Vec<&str> =
            r.jobs[0].history.iter().filter(|t| t.state == Commanded).filter_map(|t| t.detail.as_deref()).collect();
        assert_eq!(attempts, vec!["attempt 1", "attempt 2", "attempt 3"]);
        assert!(r.retry_failed("tech", 22_000, &mut ops).is_err(), "nothing failed: nothing to retry");
    }

    #[test]
    fn a_person_can_skip_a_device_that_will_not_come_back() {
        let mut r = run(&[1, 3, 5], 5);
        r.spec.retries = 1;
        r.spec.step_timeout_secs = 300;
        let mut ops = Vec::new();
        r.admit(0, at(), &mut ops);
        succeed(&mut r, 0, &mut ops);
        r.gates(10, &mut ops);
        r.admit(10, at(), &mut ops);
        succeed(&mut r, 1, &mut ops);
        succeed(&mut r, 2, &mut ops);
        // Job 3 vanished after its command. The wave waits for it, and says so.
        let now = 120_000;
        let w = r.waiting(now, at(), &nobody).unwrap();
        assert_eq!(w.reason, WaitReason::Devices);
        assert_eq!(w.device_count, 1);
        assert_eq!(w.devices[0].job, 4);
        assert_eq!(w.devices[0].retries_left, 1);
        assert_eq!(w.until.as_deref(), Some(clock::rfc3339(10 + 300_000 + 300_000).as_str()), "deadline + one retry");
        assert!(
            w.summary.starts_with("wave 2 of 3 waits for 1 device: 02:00:00:00:00:04 (commanded, times out in 3 min"),
            "{}",
            w.summary
        );
        // The estimate cannot promise less than the stalled device's worst case.
        let e = r.estimate(now, at());
        assert!(e.remaining_secs.is_some_and(|s| s >= 480), "{e:?}");
        assert!(e.basis.contains("wave 2 cannot finish for up to"), "{}", e.basis);
        r.skip(3, "tech", now, &mut ops).unwrap();
        assert_eq!(r.jobs[3].state, Skipped);
        assert!(r.jobs[3].error.as_deref().unwrap_or("").contains("skipped by tech while commanded"));
        r.gates(now, &mut ops);
        assert_eq!(r.wave, 2, "the wave no longer waits for it");
        assert!(r.skip(3, "tech", now, &mut ops).is_err(), "a finished job cannot be skipped again");
        // The skipped device still belongs to its wave, and the outcome says not all succeeded.
        assert_eq!(r.to_proto(now, at(), &nobody).waves[1].counts.skipped, 1);
        for i in 4..9 {
            r.admit(now, at(), &mut ops);
            succeed(&mut r, i, &mut ops);
        }
        r.gates(now, &mut ops);
        assert_eq!(r.state, RolloutState::Completed);
        assert_eq!(r.to_proto(now, at(), &nobody).outcome, Some(RolloutOutcome::SomeFailed));
    }

    #[test]
    fn a_scheduled_rollout_waits_for_its_time_and_the_command_rate_is_kept() {
        let mut r = run(&[10], 10);
        r.state = RolloutState::Draft;
        r.start_at = Some(60_000);
        r.spec.command_rate = Some(2.0);
        let mut ops = Vec::new();
        r.start("t", 0, &mut ops).unwrap();
        assert_eq!(r.state, RolloutState::Scheduled);
        assert!(r.admit(1_000, at(), &mut ops).is_empty());
        let w = r.waiting(30_000, at(), &nobody).unwrap();
        assert_eq!((w.reason, w.summary.as_str()), (WaitReason::Scheduled, "starts in 30 s"));
        r.activate(59_999, &mut ops);
        assert_eq!(r.state, RolloutState::Scheduled);
        r.activate(60_000, &mut ops);
        assert_eq!(r.state, RolloutState::Running);
        // 2 commands a second: a full bucket of 2, then 2 per second.
        assert_eq!(r.admit(60_000, at(), &mut ops).len(), 2);
        assert_eq!(r.admit(60_100, at(), &mut ops).len(), 0);
        assert_eq!(r.admit(60_600, at(), &mut ops).len(), 1);
        assert_eq!(r.admit(61_600, at(), &mut ops).len(), 2);
    }

    #[test]
    fn outside_the_window_nothing_is_admitted_and_the_wait_says_when_it_opens() {
        let mut r = run(&[3], 3);
        r.window = Some(Window::parse("daily 22:00-23:00").unwrap());
        r.spec.window = Some("daily 22:00-23:00".into());
        let mut ops = Vec::new();
        let before = time::macros::datetime!(2026-12-07 21:59:30 UTC);
        assert!(r.admit(0, before, &mut ops).is_empty());
        let w = r.waiting(0, before, &nobody).unwrap();
        assert_eq!(w.reason, WaitReason::Window);
        assert!(w.summary.contains("opens in 30 s"), "{}", w.summary);
        let inside = time::macros::datetime!(2026-12-07 22:00:05 UTC);
        assert_eq!(r.admit(0, inside, &mut ops).len(), 3);
    }

    #[test]
    fn the_pace_of_a_finished_rollout_does_not_change_after_the_fact() {
        let mut r = run(&[3], 3);
        let mut ops = Vec::new();
        r.admit(0, at(), &mut ops);
        for (i, t) in [(0, 60_000), (1, 90_000), (2, 120_000)] {
            let token = r.jobs[i].token();
            r.report(i, &token, DeviceOtaState::Rebooting, None, None, t, &mut ops);
            r.seen(i, "2.0.0", true, t, &mut ops);
        }
        r.gates(120_000, &mut ops);
        assert_eq!(r.state, RolloutState::Completed);
        let a = r.estimate(120_000, at());
        let b = r.estimate(99_000_000, at());
        assert_eq!(a.per_minute, Some(2.0), "3 finished over one minute: 2 intervals a minute");
        assert_eq!(a, b);
        assert_eq!(r.to_proto(0, at(), &nobody).outcome, Some(RolloutOutcome::AllSucceeded));
    }

    #[test]
    fn a_device_under_way_is_expected_a_typical_update_after_its_command() {
        // Three devices updated in 5 s each; the fourth was commanded at 20 s and reboots.
        let mut r = run(&[4], 4);
        r.spec.step_timeout_secs = 300;
        let mut ops = Vec::new();
        r.admit(0, at(), &mut ops);
        for i in 0..3 {
            let token = r.jobs[i].token();
            r.report(i, &token, DeviceOtaState::Rebooting, None, None, 4_000, &mut ops);
            r.seen(i, "2.0.0", true, 5_000, &mut ops);
        }
        r.jobs[3].commanded_at = Some(20_000);
        let token = r.jobs[3].token();
        r.report(3, &token, DeviceOtaState::Rebooting, None, None, 21_000, &mut ops);
        // At 21 s: at least the 4 s a typical update still needs, whatever the pace says.
        let e = r.estimate(21_000, at());
        assert!(e.remaining_secs.is_some_and(|s| s >= 4), "{e:?}");
        assert!(e.basis.contains("an update takes about 5 s here"), "{}", e.basis);
        // No news for three typical updates: stalled, so the step's deadline (and a retry) bound it.
        let e = r.estimate(40_000, at());
        assert_eq!(e.remaining_secs, Some(321 + 300 - 40), "{e:?}");
        assert!(e.basis.contains("cannot finish for up to"), "{}", e.basis);
    }
}
