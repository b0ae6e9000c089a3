//! The fleet: the inventory and every rollout, in memory behind one lock (the operations on it
//! are [`crate::handle::EngineHandle`] methods in `handle/devices.rs` and `handle/rollouts.rs`).
//!
//! Discipline: the lock is a `std::sync::Mutex` held only for in-memory work, never across an
//! `.await`. Work done under it produces store writes ([`Op`]); they are queued to the writer after
//! the lock is released. A command is sent to a device only after its `commanded` write is
//! durable (`Writer::flush`), so a crash never forgets a command it sent nor sends one twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flotilla_proto::rollout::{JobState, RolloutState};
use flotilla_proto::{Device, Firmware};
use flotilla_store::clock;
use flotilla_store::events::NewEvent;
use flotilla_store::rollouts::{self as rollout_rows, JobRow, RolloutRow};
use serde_json::json;

use crate::error::{CoreError, Result};
use crate::inventory::{Change, Inventory};
use crate::rollout::run::{JobRec, PauseKind, RateBucket, Run};
use crate::rollout::window::Window;
use crate::writer::Op;

/// How often the scheduler looks at timeouts and gates when nothing happens.
pub const TICK: Duration = Duration::from_millis(250);
/// How often `last_seen` of devices that only checked in is written.
pub(crate) const SEEN_FLUSH: Duration = Duration::from_secs(30);
/// Most events a device's history shows.
pub const HISTORY_EVENTS: u32 = 200;
/// How often device liveness is checked (devices that check in every few seconds are shown
/// offline within seconds of their third missed check-in).
pub const LIVENESS_SWEEP: Duration = Duration::from_secs(5);

/// Inventory + rollouts.
#[derive(Debug)]
pub(crate) struct Fleet {
    pub inventory: Inventory,
    pub runs: BTreeMap<i64, Run>,
    /// When the `last_seen` owed to the store (see [`Inventory::take_seen`]) was last written.
    pub last_seen_flush: std::time::Instant,
    /// The last version distribution sampled into the store, and when (Unix ms).
    pub last_sample: Option<(i64, BTreeMap<String, u32>)>,
    /// Device credentials and the identity policy (`crate::auth`).
    pub auth: crate::auth::Credentials,
}

impl Default for Fleet {
    fn default() -> Fleet {
        Fleet {
            inventory: Inventory::default(),
            runs: BTreeMap::new(),
            last_seen_flush: std::time::Instant::now(),
            last_sample: None,
            auth: crate::auth::Credentials::default(),
        }
    }
}

impl Fleet {
    /// The `last_seen` of every device seen since the last write, as one store operation
    /// (`None` when there is none); starts the next period. Only (MAC, time) pairs are taken
    /// under the lock: no device is copied.
    pub(crate) fn take_seen(&mut self) -> Option<Op> {
        self.last_seen_flush = std::time::Instant::now();
        let seen = self.inventory.take_seen();
        (!seen.is_empty()).then_some(Op::LastSeen(seen))
    }

    /// The unfinished job of a device, if any: `(rollout id, job index)`.
    pub fn job_of(&self, mac: &str) -> Option<(i64, usize)> {
        self.runs.iter().find_map(|(id, r)| {
            let i = *r.by_mac.get(mac)?;
            let j = r.jobs.get(i)?;
            // The job first: `is_active` may look at every job of a finished rollout.
            (!j.state.is_terminal() && r.is_active()).then_some((*id, i))
        })
    }

    /// Loads rollouts and jobs from the store (start-up).
    pub fn load_runs(conn: &flotilla_store::rusqlite::Connection, firmware: &[Firmware]) -> Result<BTreeMap<i64, Run>> {
        let mut runs = BTreeMap::new();
        for row in rollout_rows::list_rollouts(conn)? {
            let Some(fw) = firmware.iter().find(|f| f.id == row.firmware_id) else { continue };
            let spec = serde_json::from_str(&row.spec_json)
                .map_err(|e| CoreError::Conflict(format!("rollout {} has an unreadable spec: {e}", row.id)))?;
            let mut jobs: Vec<JobRec> = rollout_rows::jobs_of(conn, row.id)?.into_iter().map(job_from_row).collect();
            let transitions = rollout_rows::transitions_of(conn, row.id)?;
            let index: std::collections::HashMap<i64, usize> =
                jobs.iter().enumerate().map(|(i, j)| (j.id, i)).collect();
            for t in transitions {
                if let (Some(&i), Some(state)) = (index.get(&t.job_id), JobState::parse(&t.state)) {
                    if state == JobState::Commanded {
                        jobs[i].commanded_at = Some(t.at);
                    }
                    jobs[i].history.push(flotilla_proto::rollout::JobTransition {
                        state,
                        at: clock::rfc3339(t.at),
                        detail: t.detail,
                    });
                }
            }
            let run = build_run(row, Arc::new(fw.clone()), spec, jobs)?;
            runs.insert(run.id, run);
        }
        Ok(runs)
    }
}

fn job_from_row(r: JobRow) -> JobRec {
    JobRec {
        id: r.id,
        mac: r.mac,
        device_id: r.device_id,
        wave: r.wave,
        state: JobState::parse(&r.state).unwrap_or(JobState::Failed),
        attempts: r.attempts,
        from_version: r.from_version,
        current_version: r.current_version,
        error: r.error,
        progress: r.progress,
        deadline: r.deadline,
        acknowledged: r.acknowledged,
        commands: r.commands,
        retry_base: r.retry_base,
        excluded: r.excluded,
        commanded_at: None,
        created_at: r.created_at,
        updated_at: r.updated_at,
        history: Vec::new(),
        durable: true,
        delivered: false,
        nonce: String::new(),
        downloaded: None,
        evidence: None,
        authenticated: false,
    }
}

pub(crate) fn build_run(
    row: RolloutRow,
    firmware: Arc<Firmware>,
    spec: flotilla_proto::rollout::RolloutSpec,
    jobs: Vec<JobRec>,
) -> Result<Run> {
    let window = spec.window.as_deref().map(Window::parse).transpose()?;
    let start_at = spec.start_at.as_deref().and_then(clock::parse_rfc3339);
    let by_mac = jobs.iter().enumerate().map(|(i, j)| (crate::DeviceKey::from(j.mac.as_str()), i)).collect();
    Ok(Run {
        id: row.id,
        name: row.name,
        firmware,
        spec,
        state: RolloutState::parse(&row.state).unwrap_or(RolloutState::Paused),
        wave: row.current_wave,
        reason: row.pause_reason,
        paused_at: row.paused_at,
        pause_kind: row.pause_kind.as_deref().and_then(PauseKind::parse),
        start_at,
        rate: RateBucket::default(),
        seed: row.seed,
        created_at: row.created_at,
        updated_at: row.updated_at,
        window,
        jobs,
        by_mac,
        changed: std::collections::BTreeSet::new(),
    })
}

/// The events a device change deserves (check-ins that change nothing make none).
pub(crate) fn device_events(change: &Change, d: &Device, actor: impl FnOnce() -> String, ops: &mut Vec<Op>) {
    if !(change.created || change.version_changed || change.ip_changed || change.came_online) {
        return;
    }
    let kind = if change.created { "device.discovered" } else { "device.changed" };
    let subject = Some(format!("device:{}", d.mac));
    // What changed, so the log reads "came back online" or "now runs 2.0.0", not only the result.
    let changed: Vec<&str> =
        [(change.version_changed, "version"), (change.ip_changed, "ip"), (change.came_online, "online")]
            .into_iter()
            .filter_map(|(yes, what)| yes.then_some(what))
            .collect();
    let data = json!({ "mac": d.mac, "device_id": d.device_id, "name": d.name, "ip": d.ip, "version": d.version,
                       "online": d.online, "changed": changed });
    ops.push(Op::Event(NewEvent::new(kind, &actor(), subject, data)));
}

/// Verification: a device was seen running `version`. `live` is false for evidence that may be
/// stale (a retained message), which can confirm the target version but not fail a job.
/// `authenticated`: the sighting came from a device that proved who it is.
pub(crate) fn seen_locked(
    fleet: &mut Fleet,
    mac: &str,
    version: &str,
    live: bool,
    authenticated: bool,
    ops: &mut Vec<Op>,
) {
    if let Some((rid, i)) = fleet.job_of(mac)
        && let Some(run) = fleet.runs.get_mut(&rid)
    {
        run.seen_as(i, version, live, authenticated, clock::now_ms(), ops);
    }
}

/// `<job id>-<command number>-<nonce>` → (job id, command number).
pub fn parse_token(token: &str) -> Option<(i64, u32)> {
    let mut parts = token.splitn(3, '-');
    let (Some(id), Some(attempt)) = (parts.next(), parts.next()) else { return None };
    Some((id.parse().ok()?, attempt.parse().ok()?))
}

impl Fleet {
    /// The job whose id devices see is `token` (nonce included): `(rollout id, job index)`.
    pub fn job_by_token(&self, token: &str) -> Option<(i64, usize)> {
        let (job_id, _) = parse_token(token)?;
        // Jobs are kept in id order (created and loaded that way): a binary search finds one.
        let (rid, i) = self
            .runs
            .iter()
            .find_map(|(rid, r)| r.jobs.binary_search_by_key(&job_id, |j| j.id).ok().map(|i| (*rid, i)))?;
        let job = self.runs.get(&rid)?.jobs.get(i)?;
        // The nonce must match (compared in constant time); an earlier command's id is still
        // this job's (a stale report is ignored further on).
        let nonce = token.rsplit('-').next().unwrap_or_default();
        use subtle::ConstantTimeEq;
        bool::from(nonce.as_bytes().ct_eq(job.nonce.as_bytes())).then_some((rid, i))
    }
}

pub(crate) fn normalize(mac: &str) -> Result<String> {
    flotilla_proto::device::normalize_mac(mac)
        .ok_or_else(|| CoreError::BadRequest(format!("{mac:?} is not a MAC address")))
}

/// What a person can do to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    /// Start a draft, or start a scheduled rollout now.
    Start,
    Pause,
    /// Resume a paused rollout, acknowledging the failures so far.
    Resume,
    Cancel,
    /// Queue failed devices again (and resume a paused rollout).
    RetryFailed,
    /// Stop commanding and waiting for one device (by job id).
    Skip {
        job: i64,
    },
}
