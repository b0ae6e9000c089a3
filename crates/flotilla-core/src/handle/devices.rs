//! The inventory and Flotilla's native device protocol: sightings, check-ins, progress reports,
//! presence, labels, and a device's history.

use std::sync::Arc;

use flotilla_proto::device::LabelChannel;
use flotilla_proto::native::{CheckRequest, CheckResponse, Offer, Presence, ReportRequest};
use flotilla_proto::rollout::{DeviceHistory, DeviceJob, JobState};
use flotilla_proto::{Channel, Device, Family, Firmware};
use flotilla_store::clock;
use flotilla_store::events::NewEvent;
use serde_json::json;

use super::EngineHandle;
use crate::error::{CoreError, Result};
use crate::firmware::signing;
use crate::fleet::{Fleet, HISTORY_EVENTS, device_events, normalize, parse_token, seen_locked};
use crate::inventory::{Sighting, Transport};
use crate::writer::Op;

impl EngineHandle {
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
        // Answered once recorded: a script reading the audit log next finds the sighting there.
        self.shared.writer.flush().await?;
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

    /// Shows offline the devices whose liveness lapsed: a pull device after about three missed
    /// check-ins (its declared or learnt interval), others after a long silence. MQTT devices are
    /// left to their broker session (Last Will, session end).
    pub(crate) fn sweep_liveness(&self) -> Result<()> {
        let mut ops = Vec::new();
        {
            let mut fleet = self.fleet()?;
            for (mac, why) in fleet.inventory.lapsed(clock::now_ms()) {
                offline_locked(&mut fleet, &mac, "engine", &why, &mut ops);
            }
        }
        self.queue(ops);
        Ok(())
    }

    /// The embedded broker ended the session `client`: devices whose presence came through it
    /// have left (a Last Will, when set, said so already; a clean disconnect sends none).
    pub(crate) fn mqtt_session_ended(&self, client: &str) -> Result<()> {
        let mut ops = Vec::new();
        {
            let mut fleet = self.fleet()?;
            for mac in fleet.inventory.of_broker_client(client) {
                offline_locked(&mut fleet, &mac, &format!("mqtt:{mac}"), "its MQTT session ended", &mut ops);
            }
        }
        self.queue(ops);
        Ok(())
    }

    /// Sets (or clears, with `None`) the channel a device follows itself.
    pub async fn set_device_channel(&self, mac: &str, channel: Option<Channel>, actor: &str) -> Result<Device> {
        let mac = normalize(mac)?;
        let device = {
            let mut fleet = self.fleet()?;
            let d = fleet
                .inventory
                .set_channel(&mac, channel)
                .ok_or_else(|| CoreError::NotFound(format!("device {mac}")))?;
            self.queue(vec![
                Op::Channel { mac: mac.clone(), channel },
                Op::Event(NewEvent::new(
                    "device.channel",
                    actor,
                    Some(format!("device:{mac}")),
                    json!({ "mac": mac, "set": channel, "channel": d.channel, "from": d.channel_from }),
                )),
            ]);
            d
        };
        self.shared.writer.flush().await?;
        Ok(device)
    }

    /// The channels of labels.
    pub async fn label_channels(&self) -> Result<Vec<LabelChannel>> {
        Ok(self
            .fleet()?
            .inventory
            .label_channels()
            .into_iter()
            .map(|(label, channel)| LabelChannel { label, channel })
            .collect())
    }

    /// Sets (or clears, with `None`) the channel followed by the devices carrying `label`.
    pub async fn set_label_channel(
        &self,
        label: &str,
        channel: Option<Channel>,
        actor: &str,
    ) -> Result<Vec<LabelChannel>> {
        if !flotilla_proto::device::valid_label(label) {
            return Err(CoreError::BadRequest(format!(
                "label {label:?} must be 1-64 characters of A-Z a-z 0-9 . _ : / -"
            )));
        }
        {
            let mut fleet = self.fleet()?;
            fleet.inventory.set_label_channel(label, channel);
            self.queue(vec![
                Op::LabelChannel { label: label.to_owned(), channel },
                Op::Event(NewEvent::new(
                    "label.channel",
                    actor,
                    Some(format!("label:{label}")),
                    json!({ "label": label, "channel": channel }),
                )),
            ]);
        }
        self.shared.writer.flush().await?;
        self.label_channels().await
    }

    /// Forgets a device: it leaves the inventory with its labels and channel, and is found anew
    /// if it shows up again. Refused while a rollout still works on it (cancel or skip it first).
    pub async fn forget_device(&self, mac: &str, actor: &str) -> Result<Device> {
        let mac = normalize(mac)?;
        let device = {
            let mut fleet = self.fleet()?;
            if let Some((rid, _)) = fleet.job_of(&mac) {
                return Err(CoreError::Conflict(format!(
                    "device {mac} is in unfinished rollout {rid}: skip it there (or cancel the rollout) first"
                )));
            }
            let e = fleet.inventory.forget(&mac).ok_or_else(|| CoreError::NotFound(format!("device {mac}")))?;
            fleet.seen.remove(&mac);
            let d = e.snapshot();
            self.queue(vec![
                Op::Forget { mac: mac.clone() },
                Op::Event(NewEvent::new(
                    "device.forgotten",
                    actor,
                    Some(format!("device:{mac}")),
                    json!({ "mac": mac, "device_id": d.device_id, "name": d.name }),
                )),
            ]);
            d
        };
        self.shared.writer.flush().await?;
        Ok(device)
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
        // Nothing a device says can be saved now: it is told so (507) and checks in again later.
        if self.shared.writer.disk_full() {
            return Err(CoreError::disk_full());
        }
        let tls = req.tls;
        let mac = normalize(&req.mac)?;
        if req.device_id.is_empty() || req.device_id.len() > 128 {
            return Err(CoreError::BadRequest("device_id must be 1-128 characters".into()));
        }
        if let Some(bad) = req.labels.iter().flatten().find(|l| !flotilla_proto::device::valid_label(l)) {
            return Err(CoreError::BadRequest(format!("label {bad:?} is not valid")));
        }
        let CheckRequest { device_id, model, chip, version, labels, secure_version, interval_secs, .. } = req;
        let sighting = Sighting {
            mac,
            device_id: Some(device_id),
            family: Some(Family::Native),
            model,
            chip,
            version: Some(version),
            ip,
            labels,
            secure_version,
            interval_secs,
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
            Some((fw, token, step)) => {
                Ok(CheckResponse::Offer(Box::new(self.offer_for(self.offer(&fw, &token, step)?, tls))))
            }
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
    /// `client` is the embedded broker's session the message came through (`None` for a site's
    /// broker): when that session ends, the device is shown offline.
    #[allow(clippy::too_many_arguments)]
    pub async fn presence(
        &self,
        profile: &str,
        device_id: &str,
        owner: Option<String>,
        p: Presence,
        retained: bool,
        client: Option<String>,
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
                let why = "it said so (an offline presence or its Last Will)";
                offline_locked(&mut fleet, &mac, &format!("mqtt:{mac}"), why, &mut ops);
            } else {
                let s = Sighting {
                    mac: mac.clone(),
                    device_id: Some(device_id.to_owned()),
                    family: Some(Family::Native),
                    model: p.model.clone(),
                    chip: p.chip.clone(),
                    version: p.version.clone(),
                    ip: p.ip.clone(),
                    secure_version: p.secure_version,
                    broker_client: client,
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
    pub(crate) fn offer(&self, fw: &Firmware, token: &str, step_timeout_secs: u64) -> Result<Offer> {
        let manifest_json = String::from_utf8(signing::canonical(&fw.manifest.manifest)?)
            .map_err(|e| CoreError::BadRequest(e.to_string()))?;
        let ttl = step_timeout_secs.saturating_mul(6).max(3600);
        let url = self.firmware_url(&fw.sha256, token, crate::handle::unix_now() + ttl);
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

    /// A device's jobs across all rollouts (newest rollout first) and its recent audit events
    /// (newest first, at most `HISTORY_EVENTS`).
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
                        current_version: j.current_version.clone(),
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
}

/// Shows a device offline (if it was online), with the write and the event that says why.
pub(super) fn offline_locked(fleet: &mut Fleet, mac: &str, actor: &str, why: &str, ops: &mut Vec<Op>) {
    if fleet.inventory.set_offline(mac)
        && let Some(e) = fleet.inventory.get(mac)
    {
        ops.push(Op::Device { device: e.snapshot(), transport: None });
        ops.push(Op::Event(NewEvent::new(
            "device.offline",
            actor,
            Some(format!("device:{mac}")),
            json!({ "mac": mac, "reason": why }),
        )));
    }
}
