//! The fleet: the inventory and every rollout, in memory behind one lock, and the engine
//! operations on them — check-ins, reports, presence, rollouts, and the scheduler that drives
//! them.
//!
//! Discipline: the lock is a `std::sync::Mutex` held only for in-memory work, never across an
//! `.await`. Work done under it produces store writes ([`Op`]); they are queued to the writer after
//! the lock is released. A command is sent to a device only after its `commanded` write is
//! durable ([`Writer::flush`]), so a crash never forgets a command it sent nor sends one twice.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use flotilla_proto::native::{CheckRequest, CheckResponse, Offer, Presence, ReportRequest};
use flotilla_proto::rollout::{
    CreateRollout, DeviceHistory, DeviceJob, JobState, PreviewDevice, Rollout, RolloutDetail, RolloutPreview,
    RolloutSpec, RolloutState, SkippedDevice,
};
use flotilla_proto::{Device, Family, Firmware};
use flotilla_store::clock;
use flotilla_store::events::NewEvent;
use flotilla_store::rollouts::{self as rollout_rows, JobRow, RolloutRow, TransitionRow};
use serde_json::json;

use crate::engine::EngineHandle;
use crate::error::{CoreError, Result};
use crate::firmware::signing;
use crate::inventory::{Change, Inventory, Sighting, Transport};
use crate::protocols::Adapter;
use crate::rollout::plan::{self, DeviceFacts};
use crate::rollout::run::{Command, JobRec, Run};
use crate::rollout::target::{Facts, Target};
use crate::rollout::window::Window;
use crate::writer::Op;

/// How often the scheduler looks at timeouts and gates when nothing happens.
pub const TICK: Duration = Duration::from_millis(250);
/// How often `last_seen` of devices that only checked in is written.
const SEEN_FLUSH: Duration = Duration::from_secs(30);
/// Most events a device's history shows.
pub const HISTORY_EVENTS: u32 = 200;
/// A device not seen for this long is shown offline.
pub const OFFLINE_AFTER: Duration = Duration::from_secs(600);

/// A rollout as planned, before anything is stored.
#[derive(Debug)]
struct RolloutPlan {
    fw: Firmware,
    spec: RolloutSpec,
    seed: String,
    /// Devices to update, in the order of `waves`.
    eligible: Vec<Device>,
    /// The wave of each eligible device.
    waves: Vec<u32>,
    /// Devices the target matches that cannot be updated, with the reason.
    skipped: Vec<(Device, String)>,
}

/// Inventory + rollouts.
#[derive(Debug)]
pub(crate) struct Fleet {
    pub inventory: Inventory,
    pub runs: BTreeMap<i64, Run>,
    /// Devices seen (last_seen moved) since the last write of their row.
    pub seen: HashSet<String>,
    /// When `seen` was last written.
    pub last_seen_flush: std::time::Instant,
}

impl Default for Fleet {
    fn default() -> Fleet {
        Fleet {
            inventory: Inventory::default(),
            runs: BTreeMap::new(),
            seen: HashSet::new(),
            last_seen_flush: std::time::Instant::now(),
        }
    }
}

impl Fleet {
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
        created_at: r.created_at,
        updated_at: r.updated_at,
        history: Vec::new(),
        durable: true,
        delivered: false,
    }
}

fn build_run(
    row: RolloutRow,
    firmware: Arc<Firmware>,
    spec: flotilla_proto::rollout::RolloutSpec,
    jobs: Vec<JobRec>,
) -> Result<Run> {
    let window = spec.window.as_deref().map(Window::parse).transpose()?;
    let by_mac = jobs.iter().enumerate().map(|(i, j)| (j.mac.clone(), i)).collect();
    Ok(Run {
        id: row.id,
        name: row.name,
        firmware,
        spec,
        state: RolloutState::parse(&row.state).unwrap_or(RolloutState::Paused),
        wave: row.current_wave,
        reason: row.pause_reason,
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
fn device_events(change: &Change, d: &Device, actor: impl FnOnce() -> String, ops: &mut Vec<Op>) {
    if !(change.created || change.version_changed || change.ip_changed || change.came_online) {
        return;
    }
    let kind = if change.created { "device.discovered" } else { "device.changed" };
    let subject = Some(format!("device:{}", d.mac));
    let data = json!({ "mac": d.mac, "device_id": d.device_id, "ip": d.ip, "version": d.version, "online": d.online });
    ops.push(Op::Event(NewEvent::new(kind, &actor(), subject, data)));
}

impl EngineHandle {
    fn fleet(&self) -> Result<std::sync::MutexGuard<'_, Fleet>> {
        self.shared.fleet.lock().map_err(|_| CoreError::ShuttingDown)
    }

    fn queue(&self, ops: Vec<Op>) {
        self.shared.writer.send_all(ops);
    }

    /// Wakes the scheduler now rather than at its next tick.
    fn kick(&self) {
        self.shared.kick.notify_one();
    }

    // ---- devices -------------------------------------------------------------------------------

    /// Merges a sighting into the inventory; returns the device as it now is.
    pub async fn record_sighting(&self, sighting: Sighting) -> Result<Device> {
        let mut s = sighting;
        s.mac = normalize(&s.mac)?;
        let mut ops = Vec::new();
        let device = {
            let mut fleet = self.fleet()?;
            self.sight_locked(&mut fleet, &s, || format!("{}:{}", s.source, s.mac), &mut ops)?;
            if let Some(version) = &s.version {
                seen_locked(&mut fleet, &s.mac, version, true, &mut ops);
            }
            fleet
                .inventory
                .get(&s.mac)
                .map(|e| e.snapshot())
                .ok_or_else(|| CoreError::NotFound(format!("device {}", s.mac)))?
        };
        self.queue(ops);
        self.kick();
        Ok(device)
    }

    /// Merges a sighting into the inventory, queueing the writes and events it deserves. A
    /// sighting that changes nothing (most check-ins) copies nothing.
    /// `actor` names who is recorded in the audit events, built only when there is one to record.
    fn sight_locked(
        &self,
        fleet: &mut Fleet,
        s: &Sighting,
        actor: impl FnOnce() -> String,
        ops: &mut Vec<Op>,
    ) -> Result<()> {
        let now = clock::now_ms();
        let change = fleet.inventory.sight(s, now);
        let eventful = change.created || change.version_changed || change.ip_changed || change.came_online;
        if !change.fields_changed && !eventful {
            if !fleet.seen.contains(&s.mac) {
                fleet.seen.insert(s.mac.clone());
            }
            return Ok(());
        }
        let entry = fleet.inventory.get(&s.mac).ok_or_else(|| CoreError::NotFound(format!("device {}", s.mac)))?;
        let device = entry.snapshot();
        if change.fields_changed {
            ops.push(Op::Device { device: device.clone(), transport: entry.transport_json() });
            if change.created && !device.labels.is_empty() {
                ops.push(Op::Labels { mac: device.mac.clone(), labels: device.labels.clone() });
            }
            fleet.seen.remove(&s.mac);
        } else {
            fleet.seen.insert(s.mac.clone());
        }
        device_events(&change, &device, actor, ops);
        Ok(())
    }

    /// The MAC of a device id, if the inventory knows it.
    pub fn find_device_mac(&self, device_id: &str) -> Option<String> {
        self.fleet().ok()?.inventory.resolve(device_id).map(str::to_owned)
    }

    pub async fn list_devices(&self) -> Result<Vec<Device>> {
        Ok(self.fleet()?.inventory.list())
    }

    pub async fn get_device(&self, mac: &str) -> Result<Device> {
        let mac = normalize(mac)?;
        self.fleet()?
            .inventory
            .get(&mac)
            .map(|e| e.snapshot())
            .ok_or_else(|| CoreError::NotFound(format!("device {mac}")))
    }

    /// Adds and removes labels of a device.
    pub async fn label_device(&self, mac: &str, add: Vec<String>, remove: Vec<String>, actor: &str) -> Result<Device> {
        let mac = normalize(mac)?;
        if let Some(bad) = add.iter().chain(&remove).find(|l| !flotilla_proto::device::valid_label(l)) {
            return Err(CoreError::BadRequest(format!(
                "label {bad:?} must be 1-64 characters of A-Z a-z 0-9 . _ : / -"
            )));
        }
        let device = {
            let mut fleet = self.fleet()?;
            let labels = fleet
                .inventory
                .edit_labels(&mac, &add, &remove)
                .ok_or_else(|| CoreError::NotFound(format!("device {mac}")))?;
            self.shared.writer.send(Op::Labels { mac: mac.clone(), labels: labels.clone() });
            self.shared.writer.send(Op::Event(NewEvent::new(
                "device.labelled",
                actor,
                Some(format!("device:{mac}")),
                json!({ "mac": mac, "added": add, "removed": remove, "labels": labels }),
            )));
            fleet.inventory.get(&mac).map(|e| e.snapshot())
        };
        self.shared.writer.flush().await?;
        device.ok_or_else(|| CoreError::NotFound(format!("device {mac}")))
    }

    // ---- the native device protocol ----------------------------------------------------------

    /// A device checks in (pull): registers it, verifies a pending update, hands out its offer.
    pub async fn check_in(&self, req: CheckRequest, ip: Option<String>) -> Result<CheckResponse> {
        let mac = normalize(&req.mac)?;
        if req.device_id.is_empty() || req.device_id.len() > 128 {
            return Err(CoreError::BadRequest("device_id must be 1-128 characters".into()));
        }
        if let Some(bad) = req.labels.iter().flatten().find(|l| !flotilla_proto::device::valid_label(l)) {
            return Err(CoreError::BadRequest(format!("label {bad:?} is not valid")));
        }
        let CheckRequest { device_id, model, chip, version, labels, .. } = req;
        let sighting = Sighting {
            mac,
            device_id: Some(device_id),
            family: Some(Family::Native),
            model,
            chip,
            version: Some(version),
            ip,
            labels,
            source: "checkin".into(),
            transport: Some(Transport::Pull),
            ..Sighting::default()
        };
        let mac = &sighting.mac;
        let mut ops = Vec::new();
        let ticket = {
            let mut fleet = self.fleet()?;
            self.sight_locked(&mut fleet, &sighting, || format!("device:{mac}"), &mut ops)?;
            seen_locked(&mut fleet, mac, sighting.version.as_deref().unwrap_or_default(), true, &mut ops);
            fleet.job_of(mac).and_then(|(rid, i)| {
                let run = fleet.runs.get(&rid)?;
                let job = run.jobs.get(i)?;
                (job.state == JobState::Commanded && job.durable)
                    .then(|| (Arc::clone(&run.firmware), job.token(), run.spec.step_timeout_secs))
            })
        };
        let had_ops = !ops.is_empty();
        self.queue(ops);
        if had_ops {
            self.kick();
        }
        match ticket {
            Some((fw, token, step)) => Ok(CheckResponse::Offer(Box::new(self.offer(&fw, &token, step)?))),
            None => Ok(CheckResponse::none()),
        }
    }

    /// A device reports progress (pull: HTTP; push: MQTT status).
    pub async fn device_report(&self, req: ReportRequest) -> Result<()> {
        let (job_id, _) =
            parse_token(&req.job).ok_or_else(|| CoreError::BadRequest(format!("job {:?} is not a job id", req.job)))?;
        let mut ops = Vec::new();
        {
            let mut fleet = self.fleet()?;
            let now = clock::now_ms();
            // Jobs are kept in id order (created and loaded that way): a binary search finds one.
            let found = fleet
                .runs
                .iter()
                .find_map(|(rid, r)| r.jobs.binary_search_by_key(&job_id, |j| j.id).ok().map(|i| (*rid, i)));
            let Some((rid, i)) = found else { return Err(CoreError::NotFound(format!("job {}", req.job))) };
            // The report must come from the device the job is for.
            let expected =
                fleet.runs.get(&rid).and_then(|r| r.jobs.get(i)).map(|j| (j.mac.clone(), j.device_id.clone()));
            if let Some((mac, device_id)) = expected {
                let claimed_mac = req.mac.as_deref().and_then(flotilla_proto::device::normalize_mac);
                let by_mac = claimed_mac.as_deref() == Some(mac.as_str());
                let by_id = device_id.as_deref() == Some(req.device_id.as_str())
                    || fleet.inventory.resolve(&req.device_id) == Some(mac.as_str());
                if !by_mac && !by_id {
                    return Err(CoreError::Refused(format!("job {} belongs to another device", req.job)));
                }
            }
            if let Some(run) = fleet.runs.get_mut(&rid) {
                run.report(i, &req.job, req.state, req.progress, req.error.clone(), now, &mut ops);
            }
            // `version` in a report is what the device runs while updating (the old one): it is
            // recorded, never used to verify — only a check-in or presence after the reboot is.
        }
        self.queue(ops);
        self.kick();
        Ok(())
    }

    /// A presence message (MQTT): registers the device and verifies a pending update. A retained
    /// presence may predate the update (it is replayed on every subscribe), so it can confirm a
    /// success but never fail a job.
    pub async fn presence(
        &self,
        profile: &str,
        device_id: &str,
        owner: Option<String>,
        p: Presence,
        retained: bool,
    ) -> Result<()> {
        let mut ops = Vec::new();
        {
            let mut fleet = self.fleet()?;
            let mac = match p.mac.as_deref().and_then(flotilla_proto::device::normalize_mac) {
                Some(m) => m,
                None => match fleet.inventory.resolve(device_id) {
                    Some(m) => m.to_owned(),
                    None => return Err(CoreError::BadRequest(format!("presence of {device_id:?} carries no MAC"))),
                },
            };
            if !p.online {
                if fleet.inventory.set_offline(&mac)
                    && let Some(e) = fleet.inventory.get(&mac)
                {
                    let d = e.snapshot();
                    ops.push(Op::Device { device: d, transport: None });
                    ops.push(Op::Event(NewEvent::new(
                        "device.offline",
                        &format!("mqtt:{mac}"),
                        Some(format!("device:{mac}")),
                        json!({ "mac": mac }),
                    )));
                }
            } else {
                let s = Sighting {
                    mac: mac.clone(),
                    device_id: Some(device_id.to_owned()),
                    family: Some(Family::Native),
                    model: p.model.clone(),
                    chip: p.chip.clone(),
                    version: p.version.clone(),
                    ip: p.ip.clone(),
                    source: "mqtt".into(),
                    transport: Some(Transport::Mqtt { profile: profile.to_owned(), owner }),
                    ..Sighting::default()
                };
                self.sight_locked(&mut fleet, &s, || format!("mqtt:{mac}"), &mut ops)?;
                if let Some(v) = &p.version {
                    seen_locked(&mut fleet, &mac, v, !retained, &mut ops);
                }
                // A device that (re)connects while its command is unanswered may have missed it
                // (a broker that dropped its session): send it again, same job id.
                if !retained
                    && let Some((rid, i)) = fleet.job_of(&mac)
                    && let Some(job) = fleet.runs.get_mut(&rid).and_then(|r| r.jobs.get_mut(i))
                    && job.state == JobState::Commanded
                {
                    job.delivered = false;
                }
            }
        }
        self.queue(ops);
        self.kick();
        Ok(())
    }

    /// The offer for job `token` of firmware `fw`.
    fn offer(&self, fw: &Firmware, token: &str, step_timeout_secs: u64) -> Result<Offer> {
        let manifest_json = String::from_utf8(signing::canonical(&fw.manifest.manifest)?)
            .map_err(|e| CoreError::BadRequest(e.to_string()))?;
        let ttl = step_timeout_secs.saturating_mul(6).max(3600);
        let url = self.firmware_url(&fw.sha256, token, crate::engine::unix_now() + ttl);
        Ok(Offer {
            update_available: true,
            job: token.to_owned(),
            url,
            version: fw.version.clone(),
            size: fw.size,
            sha256: fw.sha256.clone(),
            chip: fw.chip,
            model: fw.model.clone(),
            min_version: fw.min_version.clone(),
            secure_version: fw.secure_version,
            manifest_json,
            signature: fw.manifest.signature.clone(),
            key_id: fw.manifest.key_id.clone(),
        })
    }

    // ---- rollouts ------------------------------------------------------------------------------

    /// Plans a rollout without storing anything: validates the spec, resolves the firmware and
    /// the target, checks every matching device and assigns waves. Shared by create and preview.
    async fn plan_rollout(&self, spec: RolloutSpec) -> Result<RolloutPlan> {
        let fw = self.find_firmware(&spec.firmware).await?;
        if fw.blocked {
            return Err(CoreError::Refused(format!("firmware {} ({}) is blocked", fw.id, fw.version)));
        }
        let target = Target::parse(&spec.target)?;
        if let Some(w) = &spec.window {
            Window::parse(w)?;
        }
        if !(0.0..=100.0).contains(&spec.success_gate) {
            return Err(CoreError::BadRequest("success_gate is a percentage, 0-100".into()));
        }
        if spec.concurrency == 0 || spec.step_timeout_secs == 0 {
            return Err(CoreError::BadRequest("concurrency and step_timeout_secs must be at least 1".into()));
        }
        if spec.waves.is_empty() {
            return Err(CoreError::BadRequest("at least one wave".into()));
        }
        let seed = hex::encode(crate::secrets::random_bytes::<8>()?);
        // Plan under the lock (a consistent view of devices and other rollouts).
        let (eligible, skipped) = {
            let fleet = self.fleet()?;
            let mut eligible: Vec<Device> = Vec::new();
            let mut skipped: Vec<(Device, String)> = Vec::new();
            for e in fleet.inventory.iter() {
                let d = &e.device;
                let outdated = d.version.as_deref().and_then(|v| plan::compare_versions(v, &fw.version))
                    == Some(std::cmp::Ordering::Less);
                let facts = Facts {
                    mac: &d.mac,
                    device_id: d.device_id.as_deref(),
                    online: d.online,
                    labels: &d.labels,
                    model: d.model.as_deref(),
                    chip: d.chip.as_deref(),
                    family: d.family,
                    outdated,
                };
                if !target.matches(&facts) {
                    continue;
                }
                let busy_in = fleet.job_of(&d.mac).map(|(rid, _)| rid);
                let df = DeviceFacts {
                    family: d.family,
                    model: d.model.as_deref(),
                    chip: d.chip.as_deref(),
                    version: d.version.as_deref(),
                    busy_in,
                };
                let slot = self.shared.config.max_image_size_for(d.model.as_deref().unwrap_or(&fw.model));
                match plan::check_device(&fw, &df, spec.allow_downgrade, slot) {
                    Ok(()) => eligible.push(e.snapshot()),
                    Err(why) => skipped.push((e.snapshot(), why)),
                }
            }
            (eligible, skipped)
        };
        if eligible.is_empty() && skipped.is_empty() {
            return Err(CoreError::Refused(format!("target {:?} matches no device", spec.target)));
        }
        let macs: Vec<&str> = eligible.iter().map(|d| d.mac.as_str()).collect();
        let waves = plan::assign_waves(&seed, &macs, &spec.waves);
        Ok(RolloutPlan { fw, spec, seed, eligible, waves, skipped })
    }

    /// What creating the rollout would do: the devices it would update (with their wave) and
    /// those it would skip (with the reason). Stores nothing.
    pub async fn preview_rollout(&self, req: CreateRollout) -> Result<RolloutPreview> {
        let plan = self.plan_rollout(req.spec).await?;
        let mut wave_sizes: Vec<u32> = Vec::new();
        for &w in &plan.waves {
            let w = w as usize;
            if wave_sizes.len() <= w {
                wave_sizes.resize(w + 1, 0);
            }
            wave_sizes[w] += 1;
        }
        let mut devices: Vec<PreviewDevice> = plan
            .eligible
            .iter()
            .zip(&plan.waves)
            .map(|(d, &wave)| PreviewDevice {
                mac: d.mac.clone(),
                name: d.name.clone(),
                current_version: d.version.clone(),
                wave,
            })
            .collect();
        devices.sort_by(|a, b| (a.wave, &a.mac).cmp(&(b.wave, &b.mac)));
        let mut skipped: Vec<SkippedDevice> = plan
            .skipped
            .iter()
            .map(|(d, why)| SkippedDevice {
                mac: d.mac.clone(),
                name: d.name.clone(),
                current_version: d.version.clone(),
                reason: why.clone(),
            })
            .collect();
        skipped.sort_by(|a, b| a.mac.cmp(&b.mac));
        Ok(RolloutPreview {
            firmware_id: plan.fw.id,
            firmware_version: plan.fw.version,
            targeted: u32::try_from(devices.len() + skipped.len()).unwrap_or(u32::MAX),
            wave_sizes,
            devices,
            skipped,
        })
    }

    /// Plans a rollout ([`Self::plan_rollout`]), persists it all, and starts it if asked.
    pub async fn create_rollout(&self, req: CreateRollout, actor: &str) -> Result<RolloutDetail> {
        let RolloutPlan { fw, spec, seed, eligible, waves, skipped } = self.plan_rollout(req.spec).await?;
        let now = clock::now_ms();
        let name = spec.name.clone().unwrap_or_else(|| format!("{} {} → {}", fw.model, fw.version, spec.target));
        let row = RolloutRow {
            id: 0,
            name,
            firmware_id: fw.id,
            state: RolloutState::Draft.as_str().into(),
            spec_json: serde_json::to_string(&spec).map_err(|e| CoreError::BadRequest(e.to_string()))?,
            current_wave: 0,
            pause_reason: None,
            seed,
            created_at: now,
            updated_at: now,
        };
        let mut jobs: Vec<JobRec> = Vec::new();
        let new_job = |d: &Device, wave: u32, state: JobState, error: Option<String>| JobRec {
            id: 0,
            mac: d.mac.clone(),
            device_id: d.device_id.clone(),
            wave,
            state,
            attempts: 0,
            from_version: d.version.clone(),
            current_version: d.version.clone(),
            error,
            progress: None,
            deadline: None,
            acknowledged: false,
            commands: 0,
            created_at: now,
            updated_at: now,
            history: vec![flotilla_proto::rollout::JobTransition { state, at: clock::rfc3339(now), detail: None }],
            durable: true,
            delivered: false,
        };
        for (d, wave) in eligible.iter().zip(&waves) {
            jobs.push(new_job(d, *wave, JobState::Queued, None));
        }
        for (d, why) in &skipped {
            let mut j = new_job(d, 0, JobState::Skipped, Some(why.clone()));
            j.history[0].detail = Some(why.clone());
            jobs.push(j);
        }
        let actor_s = actor.to_owned();
        let fw_id = fw.id;
        // Jobs reference devices: every device row queued so far must be committed first.
        self.shared.writer.flush().await?;
        let (row, jobs) = self
            .shared
            .db
            .call(move |s| {
                Ok(s.write(|tx| {
                    let id = rollout_rows::insert_rollout(tx, &row)?;
                    let mut row = row;
                    row.id = id;
                    let mut jobs = jobs;
                    for j in &mut jobs {
                        j.id = rollout_rows::insert_job(tx, &j.row(id))?;
                        rollout_rows::add_transition(
                            tx,
                            &TransitionRow {
                                job_id: j.id,
                                state: j.state.as_str().into(),
                                at: now,
                                detail: j.error.clone(),
                            },
                        )?;
                    }
                    let queued = jobs.iter().filter(|j| j.state == JobState::Queued).count();
                    flotilla_store::events::append(
                        tx,
                        &NewEvent::new(
                            "rollout.created",
                            &actor_s,
                            Some(format!("rollout:{id}")),
                            json!({ "id": id, "firmware": fw_id, "devices": queued, "skipped": jobs.len() - queued }),
                        ),
                    )?;
                    Ok((row, jobs))
                })?)
            })
            .await?;
        let id = row.id;
        let run = build_run(row, Arc::new(fw), spec, jobs)?;
        self.fleet()?.runs.insert(id, run);
        if req.start {
            self.rollout_action(id, RolloutAction::Start, actor).await?;
        }
        self.get_rollout(id).await
    }

    /// A device's jobs across all rollouts (newest rollout first) and its recent audit events
    /// (newest first, at most [`HISTORY_EVENTS`]).
    pub async fn device_history(&self, mac: &str) -> Result<DeviceHistory> {
        let mac = normalize(mac)?;
        let jobs: Vec<DeviceJob> = {
            let fleet = self.fleet()?;
            if fleet.inventory.get(&mac).is_none() {
                return Err(CoreError::NotFound(format!("device {mac}")));
            }
            fleet
                .runs
                .values()
                .rev()
                .filter_map(|r| {
                    let j = r.jobs.get(*r.by_mac.get(&mac)?)?;
                    Some(DeviceJob {
                        rollout_id: r.id,
                        rollout_name: r.name.clone(),
                        firmware_version: r.firmware.version.clone(),
                        job: j.id,
                        state: j.state,
                        error: j.error.clone(),
                        attempts: j.attempts,
                        from_version: j.from_version.clone(),
                        created_at: clock::rfc3339(j.created_at),
                        updated_at: clock::rfc3339(j.updated_at),
                    })
                })
                .collect()
        };
        // Events are written behind: what happened before this call is in the log once flushed.
        self.shared.writer.flush().await?;
        let subject = format!("device:{mac}");
        let events = self
            .shared
            .db
            .call(move |s| Ok(flotilla_store::events::of_subject(s.conn(), &subject, HISTORY_EVENTS)?))
            .await?;
        Ok(DeviceHistory { mac, jobs, events })
    }

    /// Sends a live `rollout.progress` event for every rollout whose jobs changed since the last
    /// call (the jobs that changed, the counts); nothing when nothing changed. Not stored.
    pub(crate) fn publish_progress(&self) -> Result<()> {
        let want = self.shared.events.receiver_count() > 0;
        let progress: Vec<flotilla_proto::rollout::RolloutProgress> = {
            let mut fleet = self.fleet()?;
            fleet.runs.values_mut().filter_map(|r| r.take_progress(want)).collect()
        };
        for p in progress {
            let data = serde_json::to_value(&p).map_err(|e| CoreError::BadRequest(e.to_string()))?;
            let _ = self.shared.events.send(flotilla_proto::Event {
                id: 0,
                at: clock::rfc3339(clock::now_ms()),
                kind: "rollout.progress".into(),
                actor: "engine".into(),
                subject: Some(format!("rollout:{}", p.rollout)),
                data,
            });
        }
        Ok(())
    }

    pub async fn list_rollouts(&self) -> Result<Vec<Rollout>> {
        Ok(self.fleet()?.runs.values().rev().map(Run::to_proto).collect())
    }

    pub async fn get_rollout(&self, id: i64) -> Result<RolloutDetail> {
        let fleet = self.fleet()?;
        let run = fleet.runs.get(&id).ok_or_else(|| CoreError::NotFound(format!("rollout {id}")))?;
        Ok(RolloutDetail { rollout: run.to_proto(), jobs: run.jobs.iter().map(|j| j.to_proto(id)).collect() })
    }

    /// Start, pause, resume, cancel or retry-failed.
    pub async fn rollout_action(&self, id: i64, action: RolloutAction, actor: &str) -> Result<Rollout> {
        let mut ops = Vec::new();
        let rollout = {
            let mut fleet = self.fleet()?;
            let run = fleet.runs.get_mut(&id).ok_or_else(|| CoreError::NotFound(format!("rollout {id}")))?;
            let now = clock::now_ms();
            let res = match action {
                RolloutAction::Start => run.start(actor, now, &mut ops),
                RolloutAction::Pause => run.pause(&format!("paused by {actor}"), actor, now, &mut ops),
                RolloutAction::Resume => run.resume(actor, now, &mut ops),
                RolloutAction::Cancel => run.cancel(actor, now, &mut ops),
                RolloutAction::RetryFailed => run.retry_failed(actor, now, &mut ops).map(|_| ()),
            };
            res.map_err(CoreError::Conflict)?;
            run.to_proto()
        };
        self.queue(ops);
        self.shared.writer.flush().await?;
        self.kick();
        Ok(rollout)
    }

    /// One scheduler pass over every rollout: timeouts, gates, admission, then the commands.
    pub(crate) async fn tick(&self) -> Result<()> {
        let mut ops = Vec::new();
        let mut commands: Vec<Command> = Vec::new();
        {
            let mut fleet = self.fleet()?;
            let now = clock::now_ms();
            let at = time::OffsetDateTime::now_utc();
            for run in fleet.runs.values_mut().filter(|r| r.is_active()) {
                run.expire(now, &mut ops);
                run.gates(now, &mut ops);
                commands.extend(run.admit(now, at, &mut ops));
                run.gates(now, &mut ops);
            }
            // last_seen of devices that only checked in: written behind, in bulk, now and then
            // (offline detection works from memory; the store needs it only across restarts).
            if fleet.seen.len() >= 8192 || (!fleet.seen.is_empty() && fleet.last_seen_flush.elapsed() >= SEEN_FLUSH) {
                fleet.last_seen_flush = std::time::Instant::now();
                let seen: Vec<String> = fleet.seen.drain().collect();
                for mac in seen {
                    if let Some(e) = fleet.inventory.get(&mac) {
                        ops.push(Op::Device { device: e.snapshot(), transport: None });
                    }
                }
            }
        }
        self.queue(ops);
        if !commands.is_empty() {
            // Durable before anything is sent.
            self.shared.writer.flush().await?;
        }
        // Push commands not yet delivered: the new ones, and any a restart or a broker outage
        // left behind.
        let mut sends = Vec::new();
        {
            let mut fleet = self.fleet()?;
            for c in &commands {
                if let Some(job) = fleet.runs.get_mut(&c.rollout_id).and_then(|r| r.jobs.get_mut(c.job_index)) {
                    job.durable = true;
                }
            }
            let fleet = &*fleet;
            for (rid, run) in fleet.runs.iter().filter(|(_, r)| r.is_active()) {
                for (i, job) in run.jobs.iter().enumerate() {
                    if job.state != JobState::Commanded || !job.durable || job.delivered {
                        continue;
                    }
                    if let Some(e) = fleet.inventory.get(&job.mac)
                        && let Some(t @ Transport::Mqtt { .. }) = &e.transport
                    {
                        let step = run.spec.step_timeout_secs;
                        sends.push((*rid, i, e.snapshot(), t.clone(), Arc::clone(&run.firmware), job.token(), step));
                    }
                }
            }
        }
        for (rid, i, device, transport, fw, token, step) in sends {
            let offer = self.offer(&fw, &token, step)?;
            match self.shared.native.command(&device, &transport, &offer).await {
                Ok(()) => {
                    let mut fleet = self.fleet()?;
                    if let Some(job) = fleet.runs.get_mut(&rid).and_then(|r| r.jobs.get_mut(i))
                        && job.token() == token
                    {
                        job.delivered = true;
                    }
                }
                // Left undelivered: the next pass sends it again; the step timeout bounds it.
                Err(e) => tracing::debug!(mac = %device.mac, error = %e, "update command not sent yet"),
            }
        }
        Ok(())
    }

    /// Marks devices not seen for [`OFFLINE_AFTER`] offline.
    pub(crate) fn sweep_offline(&self) -> Result<()> {
        let mut ops = Vec::new();
        {
            let mut fleet = self.fleet()?;
            let cutoff = clock::now_ms() - i64::try_from(OFFLINE_AFTER.as_millis()).unwrap_or(i64::MAX);
            let stale: Vec<String> = fleet
                .inventory
                .iter()
                .filter(|e| e.device.online && e.last_seen_ms < cutoff)
                .map(|e| e.device.mac.clone())
                .collect();
            for mac in stale {
                fleet.inventory.set_offline(&mac);
                if let Some(e) = fleet.inventory.get(&mac) {
                    ops.push(Op::Device { device: e.snapshot(), transport: None });
                    ops.push(Op::Event(NewEvent::new(
                        "device.offline",
                        "engine",
                        Some(format!("device:{mac}")),
                        json!({ "mac": mac, "reason": "not seen" }),
                    )));
                }
            }
        }
        self.queue(ops);
        Ok(())
    }
}

/// Verification: a device was seen running `version`. `live` is false for evidence that may be
/// stale (a retained message), which can confirm the target version but not fail a job.
fn seen_locked(fleet: &mut Fleet, mac: &str, version: &str, live: bool, ops: &mut Vec<Op>) {
    if let Some((rid, i)) = fleet.job_of(mac)
        && let Some(run) = fleet.runs.get_mut(&rid)
    {
        run.seen(i, version, live, clock::now_ms(), ops);
    }
}

/// `<job id>-<command number>` → (job id, command number).
pub fn parse_token(token: &str) -> Option<(i64, u32)> {
    let (id, attempt) = token.split_once('-')?;
    Some((id.parse().ok()?, attempt.parse().ok()?))
}

fn normalize(mac: &str) -> Result<String> {
    flotilla_proto::device::normalize_mac(mac)
        .ok_or_else(|| CoreError::BadRequest(format!("{mac:?} is not a MAC address")))
}

/// What a person can do to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    Start,
    Pause,
    Resume,
    Cancel,
    RetryFailed,
}
