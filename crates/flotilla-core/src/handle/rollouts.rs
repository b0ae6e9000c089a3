//! Rollouts through the handle: plan and preview, create, the controls a person has, and the
//! scheduler pass that drives every rollout (timeouts, gates, admission, commands).

use std::sync::Arc;

use flotilla_proto::rollout::{
    CreateRollout, FirmwareSuggestion, JobState, PreviewDevice, Rollout, RolloutDetail, RolloutPreview, RolloutSpec,
    RolloutState, SkippedDevice,
};
use flotilla_proto::{Channel, Device, Firmware};
use flotilla_store::clock;
use flotilla_store::events::NewEvent;
use flotilla_store::rollouts::{self as rollout_rows, RolloutRow, TransitionRow};
use serde_json::json;

use super::EngineHandle;
use crate::error::{CoreError, Result};
use crate::fleet::{Fleet, RolloutAction, SEEN_FLUSH, build_run};
use crate::inventory::{Entry, Transport};
use crate::protocols::Adapter;
use crate::rollout::plan::{self, DeviceFacts};
use crate::rollout::run::{Command, DeviceRef, JobRec, Run, human_span};
use crate::rollout::target::{Facts, Target, Term};
use crate::rollout::window::Window;

/// A rollout as planned, before anything is stored.
#[derive(Debug)]
pub(crate) struct RolloutPlan {
    fw: Firmware,
    spec: RolloutSpec,
    seed: String,
    /// Devices to update, in the order of `waves`.
    eligible: Vec<Device>,
    /// The wave of each eligible device.
    waves: Vec<u32>,
    /// Devices the target matches that cannot be updated, with the reason.
    skipped: Vec<(Device, String)>,
    /// Devices in the target's scope that one of its conditions leaves out, with the reason.
    left_out: Vec<(Device, String)>,
}

/// What a target is evaluated against, for one device of the inventory, about firmware `fw`.
fn facts<'a>(e: &'a Entry, fw_version: &str) -> Facts<'a> {
    let d = &e.device;
    Facts {
        mac: &d.mac,
        device_id: d.device_id.as_deref(),
        online: d.online,
        labels: &d.labels,
        model: d.model.as_deref(),
        chip: d.chip.as_deref(),
        family: d.family,
        generation: d.generation,
        outdated: d.version.as_deref().and_then(|v| plan::compare_versions(v, fw_version))
            == Some(std::cmp::Ordering::Less),
        channel: d.channel,
    }
}

/// Why a condition of the target leaves a device out, in words.
fn left_out_reason(term: &Term, e: &Entry, fw_version: &str, now: i64) -> String {
    let d = &e.device;
    match term {
        Term::Online => format!("offline (last seen {} ago)", human_span((now - e.last_seen_ms) / 1000)),
        Term::Outdated => match &d.version {
            None => "running version unknown, so not known to be outdated".into(),
            Some(v) if plan::same_version(v, fw_version) => format!("already on {fw_version}"),
            Some(v) => format!("runs {v}, not older than {fw_version}"),
        },
        Term::Channel(c) => format!("follows the {} channel, not {}", d.channel.as_str(), c.as_str()),
        Term::Not(inner) => match inner.as_ref() {
            Term::Online => "online (the target asks for offline devices)".into(),
            Term::Outdated => "outdated (the target asks for devices that are not)".into(),
            Term::Channel(c) => format!("follows the {} channel", c.as_str()),
            _ => "does not meet the target's conditions".into(),
        },
        _ => "does not meet the target's conditions".into(),
    }
}

/// What the views need of a device, from the inventory.
fn device_ref(fleet: &Fleet, mac: &str) -> DeviceRef {
    match fleet.inventory.get(mac) {
        Some(e) => DeviceRef {
            name: e.device.name.clone().or_else(|| e.device.device_id.clone()),
            last_seen_ms: Some(e.last_seen_ms),
        },
        None => DeviceRef::default(),
    }
}

/// A rollout as the API shows it, with names and waits from the inventory.
fn rollout_view(fleet: &Fleet, run: &Run, now: i64, at: time::OffsetDateTime) -> Rollout {
    run.to_proto(now, at, &|mac| device_ref(fleet, mac))
}

impl EngineHandle {
    // ---- rollouts ------------------------------------------------------------------------------

    /// Plans a rollout without storing anything: validates the spec, resolves the firmware and
    /// the target, checks every matching device and assigns waves. Shared by create and preview.
    async fn plan_rollout(&self, spec: RolloutSpec) -> Result<RolloutPlan> {
        let fw = self.find_firmware(&spec.firmware).await?;
        if fw.blocked {
            return Err(CoreError::Refused(format!("firmware {} ({}) is blocked", fw.id, fw.version)));
        }
        if fw.archived {
            return Err(CoreError::Refused(format!(
                "firmware {} ({}) is archived: unarchive it to roll it out",
                fw.id, fw.version
            )));
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
        if let Some(r) = spec.command_rate
            && !(r.is_finite() && r > 0.0 && r <= 10_000.0)
        {
            return Err(CoreError::BadRequest(format!(
                "command_rate {r}: commands per second, above 0 and at most 10000"
            )));
        }
        if let Some(t) = &spec.start_at {
            clock::parse_rfc3339(t).ok_or_else(|| {
                CoreError::BadRequest(format!("start_at {t:?} is not an RFC 3339 time, e.g. 2026-12-04T22:00:00Z"))
            })?;
        }
        let seed = hex::encode(crate::secrets::random_bytes::<8>()?);
        let now = clock::now_ms();
        // Plan under the lock (a consistent view of devices and other rollouts).
        let (eligible, skipped, left_out) = {
            let fleet = self.fleet()?;
            let mut eligible: Vec<Device> = Vec::new();
            let mut skipped: Vec<(Device, String)> = Vec::new();
            let mut left_out: Vec<(Device, String)> = Vec::new();
            for e in fleet.inventory.iter() {
                let d = &e.device;
                let f = facts(e, &fw.version);
                if !target.matches(&f) {
                    if let Some(term) = target.left_out(&f) {
                        left_out.push((e.snapshot(), left_out_reason(term, e, &fw.version, now)));
                    }
                    continue;
                }
                let busy_in = fleet.job_of(&d.mac).map(|(rid, _)| rid);
                let df = DeviceFacts {
                    family: d.family,
                    model: d.model.as_deref(),
                    chip: d.chip.as_deref(),
                    version: d.version.as_deref(),
                    secure_version: d.secure_version,
                    channel: d.channel,
                    busy_in,
                };
                let slot = self.shared.config.max_image_size_for(d.model.as_deref().unwrap_or(&fw.model));
                // A device that may not be believed yet (or any more) is not commanded.
                let refused = match d.auth {
                    flotilla_proto::device::DeviceAuth::Pending => Some("waiting for approval (devices approve)"),
                    flotilla_proto::device::DeviceAuth::Revoked => Some("its credential is revoked"),
                    _ => None,
                };
                if let Some(why) = refused {
                    skipped.push((e.snapshot(), why.to_owned()));
                    continue;
                }
                match plan::check_device(&fw, &df, spec.allow_downgrade, slot) {
                    Ok(()) => eligible.push(e.snapshot()),
                    Err(why) => skipped.push((e.snapshot(), why)),
                }
            }
            (eligible, skipped, left_out)
        };
        if eligible.is_empty() && skipped.is_empty() {
            let why = if left_out.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} left out by its conditions, e.g. {}: {})",
                    left_out.len(),
                    left_out[0].0.mac,
                    left_out[0].1
                )
            };
            return Err(CoreError::Refused(format!("target {:?} matches no device{why}", spec.target)));
        }
        let macs: Vec<&str> = eligible.iter().map(|d| d.mac.as_str()).collect();
        let waves = plan::assign_waves(&seed, &macs, &spec.waves);
        Ok(RolloutPlan { fw, spec, seed, eligible, waves, skipped, left_out })
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
                name: d.name.clone().or_else(|| d.device_id.clone()),
                current_version: d.version.clone(),
                wave: wave + 1,
            })
            .collect();
        devices.sort_by(|a, b| (a.wave, &a.mac).cmp(&(b.wave, &b.mac)));
        let listed = |list: &[(Device, String)]| {
            let mut out: Vec<SkippedDevice> = list
                .iter()
                .map(|(d, why)| SkippedDevice {
                    mac: d.mac.clone(),
                    name: d.name.clone().or_else(|| d.device_id.clone()),
                    current_version: d.version.clone(),
                    reason: why.clone(),
                })
                .collect();
            out.sort_by(|a, b| a.mac.cmp(&b.mac));
            out
        };
        let skipped = listed(&plan.skipped);
        Ok(RolloutPreview {
            spec: plan.spec.clone(),
            firmware_id: plan.fw.id,
            firmware_version: plan.fw.version,
            targeted: u32::try_from(devices.len() + skipped.len()).unwrap_or(u32::MAX),
            wave_sizes,
            devices,
            skipped,
            left_out: listed(&plan.left_out),
        })
    }

    /// Plans a rollout (`plan_rollout`), persists it all, and starts it if asked.
    pub async fn create_rollout(&self, req: CreateRollout, actor: &str) -> Result<RolloutDetail> {
        let RolloutPlan { fw, spec, seed, eligible, waves, skipped, .. } = self.plan_rollout(req.spec).await?;
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
            paused_at: None,
            pause_kind: None,
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
            current_version: None,
            error,
            progress: None,
            deadline: None,
            acknowledged: false,
            commands: 0,
            retry_base: 0,
            excluded: state == JobState::Skipped,
            commanded_at: None,
            created_at: now,
            updated_at: now,
            history: vec![flotilla_proto::rollout::JobTransition { state, at: clock::rfc3339(now), detail: None }],
            durable: true,
            delivered: false,
            nonce: String::new(),
            downloaded: None,
            evidence: None,
            authenticated: false,
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
        let fw_version = fw.version.clone();
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
                            json!({ "id": id, "name": row.name, "firmware": fw_id, "firmware_version": fw_version,
                                    "devices": queued, "skipped": jobs.len() - queued }),
                        ),
                    )?;
                    Ok((row, jobs))
                })?)
            })
            .await?;
        let id = row.id;
        let mut jobs = jobs;
        for j in &mut jobs {
            j.nonce = self.shared.auth_key.job_nonce(j.id);
        }
        let run = build_run(row, Arc::new(fw), spec, jobs)?;
        self.fleet()?.runs.insert(id, run);
        if req.start {
            self.rollout_action(id, RolloutAction::Start, actor).await?;
        }
        self.get_rollout(id).await
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
        let fleet = self.fleet()?;
        let (now, at) = (clock::now_ms(), time::OffsetDateTime::now_utc());
        Ok(fleet.runs.values().rev().map(|r| rollout_view(&fleet, r, now, at)).collect())
    }

    pub async fn get_rollout(&self, id: i64) -> Result<RolloutDetail> {
        let fleet = self.fleet()?;
        let run = fleet.runs.get(&id).ok_or_else(|| CoreError::NotFound(format!("rollout {id}")))?;
        let (now, at) = (clock::now_ms(), time::OffsetDateTime::now_utc());
        Ok(RolloutDetail {
            rollout: rollout_view(&fleet, run, now, at),
            jobs: run.jobs.iter().map(|j| j.to_proto(id)).collect(),
        })
    }

    /// Start, pause, resume, cancel, retry-failed, or skip one device.
    pub async fn rollout_action(&self, id: i64, action: RolloutAction, actor: &str) -> Result<Rollout> {
        let mut ops = Vec::new();
        let rollout = {
            let mut guard = self.fleet()?;
            let fleet = &mut *guard;
            let run = fleet.runs.get_mut(&id).ok_or_else(|| CoreError::NotFound(format!("rollout {id}")))?;
            let (now, at) = (clock::now_ms(), time::OffsetDateTime::now_utc());
            let res = match action {
                RolloutAction::Start => run.start(actor, now, &mut ops),
                RolloutAction::Pause => run.pause(&format!("paused by {actor}"), actor, now, &mut ops),
                RolloutAction::Resume => run.resume(actor, now, &mut ops),
                RolloutAction::Cancel => run.cancel(actor, now, &mut ops),
                RolloutAction::RetryFailed => run.retry_failed(actor, now, &mut ops).map(|_| ()),
                RolloutAction::Skip { job } => match run.jobs.binary_search_by_key(&job, |j| j.id) {
                    Ok(i) => run.skip(i, actor, now, &mut ops),
                    Err(_) => return Err(CoreError::NotFound(format!("job {job} in rollout {id}"))),
                },
            };
            res.map_err(CoreError::Conflict)?;
            let run = fleet.runs.get(&id).ok_or_else(|| CoreError::NotFound(format!("rollout {id}")))?;
            rollout_view(fleet, run, now, at)
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
                run.activate(now, &mut ops);
                run.expire(now, &mut ops);
                run.gates(now, &mut ops);
                commands.extend(run.admit(now, at, &mut ops));
                run.gates(now, &mut ops);
            }
            // last_seen of devices that only checked in: written behind, in bulk, every
            // SEEN_FLUSH (offline detection works from memory; the store needs it only across
            // restarts, and shutdown writes what is left). `seen` holds each known device at
            // most once, so it is bounded by the inventory, not by how often devices check in:
            // a busy fleet costs the writer one row per device per period, not one per check-in.
            if fleet.last_seen_flush.elapsed() >= SEEN_FLUSH {
                ops.extend(fleet.take_seen());
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

    /// The newest firmware for each model among the devices `target` selects, on the channel
    /// they follow, with how many run an older version: what a one-click rollout should install.
    /// Blocked and archived firmware is never suggested.
    pub async fn suggest_firmware(&self, target_text: &str) -> Result<Vec<FirmwareSuggestion>> {
        let target = Target::parse(target_text)?;
        let library: Vec<Firmware> =
            self.list_firmware().await?.into_iter().filter(|f| !f.blocked && !f.archived).collect();
        let fleet = self.fleet()?;
        // (model, firmware) → (firmware, channels of the devices, outdated devices, of which online).
        type Group<'f> = (&'f Firmware, [bool; 2], u32, u32);
        let mut found: std::collections::BTreeMap<(String, i64), Group<'_>> = Default::default();
        for e in fleet.inventory.iter() {
            let d = &e.device;
            let Some(model) = d.model.as_deref() else { continue };
            let newest = library
                .iter()
                .filter(|f| f.model == model && d.channel.accepts(f.channel))
                .max_by(|a, b| plan::compare_versions(&a.version, &b.version).unwrap_or(std::cmp::Ordering::Equal));
            let Some(fw) = newest else { continue };
            let f = facts(e, &fw.version);
            if !target.matches(&f) || !f.outdated {
                continue;
            }
            let slot = found.entry((model.to_owned(), fw.id)).or_insert((fw, [false; 2], 0, 0));
            slot.1[usize::from(d.channel == Channel::Beta)] = true;
            slot.2 += 1;
            slot.3 += u32::from(d.online);
        }
        let scope = if target.terms == [Term::All] { String::new() } else { format!("{target_text} and ") };
        Ok(found
            .into_iter()
            .map(|((model, _), (fw, channels, outdated, online))| {
                // Devices of both channels take it: no channel condition is needed.
                let device_channel = match channels {
                    [true, false] => Some(Channel::Stable),
                    [false, true] => Some(Channel::Beta),
                    _ => None,
                };
                let condition = device_channel.map(|c| format!(" and channel:{}", c.as_str())).unwrap_or_default();
                FirmwareSuggestion {
                    target: format!("{scope}model:{model}{condition} and outdated"),
                    model,
                    channel: fw.channel,
                    device_channel,
                    firmware_id: fw.id,
                    firmware_version: fw.version.clone(),
                    outdated,
                    online,
                }
            })
            .collect())
    }
}
