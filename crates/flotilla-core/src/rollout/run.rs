//! One rollout in memory: its jobs, the job state machine, wave gates, admission and timeouts.
//!
//! Invariants:
//! - a job leaves `queued` for `commanded` only through [`Run::admit`], which records the command
//!   (and its count) in the writes it returns; the engine sends nothing until those are durable;
//! - `succeeded` is entered only from [`Run::seen`], when the device reports the target version;
//! - a device is in at most one unfinished job across all rollouts (the planner skips busy ones).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use flotilla_proto::Firmware;
use flotilla_proto::native::DeviceOtaState;
use flotilla_proto::rollout::{
    Job, JobCounts, JobProgress, JobState, JobTransition, Rollout, RolloutProgress, RolloutSpec, RolloutState,
    Threshold, WaveStatus,
};
use flotilla_store::clock;
use flotilla_store::events::NewEvent;
use flotilla_store::rollouts::{JobRow, RolloutRow, TransitionRow};
use serde_json::json;

use super::plan::{gate_passed, same_version, threshold_exceeded};
use super::window::Window;
use crate::writer::Op;

/// One job in memory.
#[derive(Debug, Clone)]
pub(crate) struct JobRec {
    pub id: i64,
    pub mac: String,
    pub device_id: Option<String>,
    pub wave: u32,
    pub state: JobState,
    pub attempts: u32,
    pub from_version: Option<String>,
    pub current_version: Option<String>,
    pub error: Option<String>,
    pub progress: Option<u8>,
    pub deadline: Option<i64>,
    pub acknowledged: bool,
    pub commands: u32,
    pub created_at: i64,
    pub updated_at: i64,
    pub history: Vec<JobTransition>,
    /// The `commanded` write is durable: the offer may be handed out.
    pub durable: bool,
    /// A push command for the current token reached the broker (false after a restart, so a
    /// command that may never have left is sent again — same token, so a device that did get it
    /// ignores the copy).
    pub delivered: bool,
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
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// The job id as devices see it: `<job>-<command number>`, new for every command (a device
    /// never mistakes a retry for the command it already handled).
    pub fn token(&self) -> String {
        format!("{}-{}", self.id, self.commands)
    }

    pub fn to_proto(&self, rollout_id: i64) -> Job {
        Job {
            id: self.id,
            rollout_id,
            mac: self.mac.clone(),
            device_id: self.device_id.clone(),
            wave: self.wave,
            state: self.state,
            attempts: self.attempts,
            from_version: self.from_version.clone(),
            current_version: self.current_version.clone(),
            error: self.error.clone(),
            progress: self.progress,
            history: self.history.clone(),
            updated_at: clock::rfc3339(self.updated_at),
        }
    }
}

/// A job just commanded by [`Run::admit`]; its offer may go out once the write is durable.
#[derive(Debug, Clone)]
pub(crate) struct Command {
    pub rollout_id: i64,
    pub job_index: usize,
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
            | (Failed | TimedOut, Queued)
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
    pub wave: u32,
    pub reason: Option<String>,
    pub seed: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub window: Option<Window>,
    pub jobs: Vec<JobRec>,
    pub by_mac: HashMap<String, usize>,
    /// Jobs changed (state or progress) since the last [`Run::take_progress`], each once.
    pub changed: BTreeSet<usize>,
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
            current_wave: self.wave,
            jobs,
            counts: Run::counts(self.jobs.iter()),
            waves: self.wave_statuses(),
        })
    }

    fn wave_statuses(&self) -> Vec<WaveStatus> {
        let mut waves: Vec<WaveStatus> = Vec::new();
        for j in self.jobs.iter().filter(|j| j.state != JobState::Skipped) {
            let w = j.wave as usize;
            while waves.len() <= w {
                waves.push(WaveStatus { index: waves.len() as u32, counts: JobCounts::default() });
            }
            Run::count(&mut waves[w].counts, j.state);
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
            seed: self.seed.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// Waves that hold at least one device that is not skipped.
    pub fn wave_count(&self) -> u32 {
        self.jobs.iter().filter(|j| j.state != JobState::Skipped).map(|j| j.wave + 1).max().unwrap_or(0)
    }

    /// True while some job may still change by itself.
    pub fn is_active(&self) -> bool {
        matches!(self.state, RolloutState::Running | RolloutState::Paused | RolloutState::Draft)
            || self.jobs.iter().any(|j| j.state.is_in_flight())
    }

    fn event(&self, kind: &str, actor: &str, data: serde_json::Value, ops: &mut Vec<Op>) {
        ops.push(Op::Event(NewEvent::new(kind, actor, Some(format!("rollout:{}", self.id)), data)));
    }

    fn set_state(&mut self, state: RolloutState, reason: Option<&str>, actor: &str, now: i64, ops: &mut Vec<Op>) {
        self.state = state;
        self.reason = reason.map(str::to_owned);
        self.updated_at = now;
        ops.push(Op::Rollout(self.row()));
        let kind = format!("rollout.{}", state.as_str());
        self.event(&kind, actor, json!({ "id": self.id, "state": state, "wave": self.wave, "reason": reason }), ops);
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
            json!({ "rollout": rollout_id, "job": job.id, "mac": job.mac, "wave": job.wave, "attempt": job.attempts, "detail": detail }),
        )));
        ops.push(Op::Transition(TransitionRow { job_id: job.id, state: to.as_str().into(), at: now, detail }));
    }

    /// Starts a draft.
    pub fn start(&mut self, actor: &str, now: i64, ops: &mut Vec<Op>) -> Result<(), String> {
        if self.state != RolloutState::Draft {
            return Err(format!("rollout {} is {}, not a draft", self.id, self.state.as_str()));
        }
        self.set_state(RolloutState::Running, None, actor, now, ops);
        Ok(())
    }

    pub fn pause(&mut self, reason: &str, actor: &str, now: i64, ops: &mut Vec<Op>) -> Result<(), String> {
        if self.state != RolloutState::Running {
            return Err(format!("rollout {} is {}, not running", self.id, self.state.as_str()));
        }
        self.set_state(RolloutState::Paused, Some(reason), actor, now, ops);
        Ok(())
    }

    /// Resumes a paused rollout; the failures that paused it are acknowledged (no longer counted).
    pub fn resume(&mut self, actor: &str, now: i64, ops: &mut Vec<Op>) -> Result<(), String> {
        if self.state != RolloutState::Paused {
            return Err(format!("rollout {} is {}, not paused", self.id, self.state.as_str()));
        }
        let rollout_id = self.id;
        for job in self.jobs.iter_mut().filter(|j| j.state.is_failure() && !j.acknowledged) {
            job.acknowledged = true;
            ops.push(Op::Job(job.row(rollout_id)));
        }
        self.set_state(RolloutState::Running, None, actor, now, ops);
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

    /// Queues failed and timed-out jobs again. Returns how many.
    pub fn retry_failed(&mut self, actor: &str, now: i64, ops: &mut Vec<Op>) -> Result<usize, String> {
        if self.state == RolloutState::Cancelled || self.state == RolloutState::Draft {
            return Err(format!("rollout {} is {}", self.id, self.state.as_str()));
        }
        let failed: Vec<usize> = (0..self.jobs.len()).filter(|i| self.jobs[*i].state.is_failure()).collect();
        let mut lowest_wave = self.wave;
        for &i in &failed {
            self.jobs[i].attempts = 0;
            self.jobs[i].acknowledged = false;
            lowest_wave = lowest_wave.min(self.jobs[i].wave);
            self.transition(i, JobState::Queued, Some("retry requested".into()), actor, now, ops);
        }
        if !failed.is_empty() {
            self.wave = lowest_wave;
            if self.state == RolloutState::Completed {
                self.set_state(RolloutState::Running, None, actor, now, ops);
            } else {
                self.updated_at = now;
                ops.push(Op::Rollout(self.row()));
            }
        }
        Ok(failed.len())
    }

    /// Job `i` failed; transient failures are retried while attempts remain.
    fn fail(&mut self, i: usize, to: JobState, why: String, transient: bool, now: i64, ops: &mut Vec<Op>) {
        let retry = transient && self.jobs[i].attempts <= self.spec.retries && self.state != RolloutState::Cancelled;
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
            // One pass over the jobs for everything the gates look at.
            let (mut size, mut failures, mut finished, mut considered, mut succeeded) = (0u32, 0u32, true, 0u32, 0u32);
            for j in self.jobs.iter().filter(|j| j.wave == w && j.state != JobState::Skipped) {
                size += 1;
                failures += u32::from(j.state.is_failure() && !j.acknowledged);
                finished &= j.state.is_terminal();
                considered += u32::from(j.state != JobState::Cancelled);
                succeeded += u32::from(j.state == JobState::Succeeded);
            }
            if failures > 0 && threshold_exceeded(self.spec.max_failures, failures, size) {
                let th = match self.spec.max_failures {
                    Threshold::Count(n) => format!("{n} devices"),
                    Threshold::Percent(p) => format!("{p}%"),
                };
                let reason = format!("wave {} of {waves}: {failures} of {size} devices failed (threshold {th})", w + 1);
                self.set_state(RolloutState::Paused, Some(&reason), "engine", now, ops);
                return;
            }
            if !finished {
                return;
            }
            if !gate_passed(self.spec.success_gate, succeeded, considered) {
                let reason = format!(
                    "wave {} of {waves}: {succeeded} of {considered} devices succeeded, below the {}% success gate",
                    w + 1,
                    self.spec.success_gate
                );
                self.set_state(RolloutState::Paused, Some(&reason), "engine", now, ops);
                return;
            }
            self.wave += 1;
            self.updated_at = now;
            ops.push(Op::Rollout(self.row()));
            if self.wave >= waves {
                continue;
            }
            self.event("rollout.wave_started", "engine", json!({ "id": self.id, "wave": self.wave }), ops);
            if self.spec.manual_approval {
                let reason =
                    format!("wave {} of {waves} done; waiting for approval (resume) to start wave {}", w + 1, w + 2);
                self.set_state(RolloutState::Paused, Some(&reason), "engine", now, ops);
                return;
            }
        }
    }

    /// Commands queued devices of the open waves while concurrency allows. The commands are
    /// recorded in `ops`; the caller makes them durable before sending anything.
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
        queued.sort_by_key(|i| (self.jobs[*i].wave, self.jobs[*i].id));
        for i in queued.into_iter().take(room) {
            self.jobs[i].attempts += 1;
            self.jobs[i].commands += 1;
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
    pub fn seen(&mut self, i: usize, version: &str, live: bool, now: i64, ops: &mut Vec<Op>) {
        let Some(job) = self.jobs.get_mut(i) else { return };
        if job.current_version.as_deref() != Some(version) {
            job.current_version = Some(version.to_owned());
        }
        if !job.state.is_in_flight() {
            return;
        }
        let actor = format!("device:{}", job.mac);
        let on_target = same_version(version, &self.firmware.version);
        let came_back = matches!(job.state, JobState::Rebooting | JobState::Verifying);
        if on_target {
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

    /// Counts per state.
    pub fn counts<'a>(jobs: impl Iterator<Item = &'a JobRec>) -> JobCounts {
        let mut c = JobCounts::default();
        for j in jobs {
            Run::count(&mut c, j.state);
        }
        c
    }

    fn count(c: &mut JobCounts, state: JobState) {
        c.total += 1;
        match state {
            JobState::Queued => c.queued += 1,
            JobState::Succeeded => c.succeeded += 1,
            JobState::Failed => c.failed += 1,
            JobState::TimedOut => c.timed_out += 1,
            JobState::Skipped => c.skipped += 1,
            JobState::Cancelled => c.cancelled += 1,
            _ => c.in_flight += 1,
        }
    }

    pub fn to_proto(&self) -> Rollout {
        let waves = self.wave_statuses();
        Rollout {
            id: self.id,
            name: self.name.clone(),
            firmware_id: self.firmware.id,
            firmware_version: self.firmware.version.clone(),
            state: self.state,
            current_wave: self.wave,
            pause_reason: self.reason.clone(),
            spec: self.spec.clone(),
            counts: Run::counts(self.jobs.iter()),
            waves,
            created_at: clock::rfc3339(self.created_at),
            updated_at: clock::rfc3339(self.updated_at),
        }
    }
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
                    created_at: 0,
                    updated_at: 0,
                    history: vec![],
                    durable: true,
                    delivered: false,
                });
            }
        }
        let by_mac = jobs.iter().enumerate().map(|(i, j)| (j.mac.clone(), i)).collect();
        Run {
            id: 1,
            name: "t".into(),
            firmware: firmware(),
            spec,
            state: RolloutState::Running,
            wave: 0,
            reason: None,
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
}
