//! The inventory and Flotilla's native device protocol: sightings, check-ins, progress reports,
//! presence, labels, and a device's history.

use std::sync::Arc;

use flotilla_proto::device::LabelChannel;
use flotilla_proto::native::{CheckRequest, CheckResponse, DeviceCredential, Offer, Presence, ReportRequest};
use flotilla_proto::rollout::{DeviceHistory, DeviceJob, JobState};
use flotilla_proto::{Channel, Device, Family, Firmware};
use flotilla_store::clock;
use flotilla_store::events::NewEvent;
use serde_json::json;

use super::EngineHandle;
use crate::auth::{CredState, Verdict};
use crate::error::{CoreError, Result};
use crate::firmware::signing;
use crate::fleet::{Fleet, HISTORY_EVENTS, device_events, normalize, seen_locked};
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
                seen_locked(&mut fleet, &s.mac, version, true, false, &mut ops);
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
        if let Some(other) = &change.ip_taken_from
            && let Some(e) = fleet.inventory.get(other)
        {
            // Two MACs claimed one address (a DHCP swap): the newest claim holds it, and the
            // other device is no longer reachable there until it says where it is.
            ops.push(Op::Device { device: e.snapshot(), transport: e.transport_json() });
            ops.push(Op::Event(NewEvent::new(
                "device.address_moved",
                &format!("{}:{}", s.source, s.mac),
                Some(format!("device:{other}")),
                json!({ "ip": s.ip, "from": other, "to": s.mac }),
            )));
        }
        let eventful = change.created || change.version_changed || change.ip_changed || change.came_online;
        if !change.fields_changed && !eventful {
            return Ok(());
        }
        let entry = fleet.inventory.get(&s.mac).ok_or_else(|| CoreError::NotFound(format!("device {}", s.mac)))?;
        let device = entry.snapshot();
        if change.fields_changed {
            ops.push(Op::Device { device: device.clone(), transport: entry.transport_json() });
            if change.labels_changed {
                ops.push(Op::ReportedLabels { mac: device.mac.clone(), labels: device.device_labels.clone() });
            }
        }
        device_events(&change, &device, actor, ops);
        Ok(())
    }

    /// The MAC of a device id, if the inventory knows it.
    pub fn find_device_mac(&self, device_id: &str) -> Option<String> {
        self.fleet().ok()?.inventory.resolve(device_id).map(str::to_owned)
    }

    /// The family the inventory has for a device.
    pub fn family_of(&self, mac: &str) -> Option<Family> {
        self.fleet().ok()?.inventory.get(mac).map(|e| e.device.family)
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
                offline_locked(&mut fleet, &mac, None, "engine", &why, &mut ops);
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
                offline_locked(
                    &mut fleet,
                    &mac,
                    Some("mqtt"),
                    &format!("mqtt:{mac}"),
                    "its MQTT session ended",
                    &mut ops,
                );
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
            // Found anew if it shows up again: it enrols again too.
            fleet.auth.forget(&mac);
            let d = e.snapshot();
            self.queue(vec![
                Op::Forget { mac: mac.clone() },
                Op::ForgetCredential { mac: mac.clone() },
                Op::ReportedLabels { mac: mac.clone(), labels: Vec::new() },
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

    /// Adds and removes labels people set on a device (those it reports are its own).
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

    /// Approves, revokes or re-keys a device's credential (`flotilla devices approve|revoke|rekey`).
    /// `device` is its MAC or device id. Re-key: the device's next native check-in enrols it
    /// again (a new secret, handed out once; the old one stops working at once).
    pub async fn device_credential(&self, device: &str, action: CredentialAction, actor: &str) -> Result<Device> {
        let snapshot = {
            let mut fleet = self.fleet()?;
            let mac = match fleet.inventory.resolve(device) {
                Some(m) => m.to_owned(),
                None => normalize(device).map_err(|_| CoreError::NotFound(format!("device {device}")))?,
            };
            let current = fleet.auth.get(&mac).map(|c| c.state).ok_or_else(|| {
                CoreError::Conflict(format!(
                    "device {mac} holds no credential (it never enrolled with the native check-in)"
                ))
            })?;
            let to = match (action, current) {
                (CredentialAction::Approve, CredState::Revoked | CredState::Rekey) => {
                    return Err(CoreError::Conflict(format!(
                        "device {mac} is {}: re-key it, then approve its new enrolment",
                        current.device_auth().as_str()
                    )));
                }
                (CredentialAction::Approve, _) => CredState::Approved,
                (CredentialAction::Revoke, _) => CredState::Revoked,
                (CredentialAction::Rekey, _) => CredState::Rekey,
            };
            let row = fleet
                .auth
                .set_state(&mac, to, clock::now_ms())
                .ok_or_else(|| CoreError::NotFound(format!("device {mac}")))?;
            fleet.inventory.set_auth(&mac, to.device_auth());
            let generation = row.generation;
            self.queue(vec![
                Op::Credential(row),
                Op::Event(NewEvent::new(
                    &format!("device.{}", action.as_str()),
                    actor,
                    Some(format!("device:{mac}")),
                    json!({ "mac": mac, "from": current.device_auth(), "to": to.device_auth(), "generation": generation }),
                )),
            ]);
            fleet.inventory.get(&mac).map(|e| e.snapshot()).ok_or_else(|| CoreError::NotFound(format!("device {mac}")))
        };
        self.shared.writer.flush().await?;
        self.kick();
        snapshot
    }

    // ---- the native device protocol ----------------------------------------------------------

    /// A device checks in (pull): proves who it is (or enrols), registers it, verifies a pending
    /// update, hands out its offer. A check-in for an enrolled device without its credential is
    /// refused and changes nothing (`docs/device-api.md`, "Enrolment and credentials").
    pub async fn check_in(&self, req: CheckRequest, caller: Caller) -> Result<CheckResponse> {
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
        // What the device says, built once and read from here on: its MAC, id and address are
        // moved in, not copied (a check-in is the engine's most frequent request).
        let sighting = Sighting {
            mac,
            device_id: Some(device_id),
            family: Some(Family::Native),
            model,
            chip,
            version: Some(version),
            ip: caller.ip,
            labels,
            secure_version,
            interval_secs,
            source: "checkin".into(),
            transport: Some(Transport::Pull),
            ..Sighting::default()
        };
        let (mac, device_id, ip) =
            (sighting.mac.as_str(), sighting.device_id.as_deref().unwrap_or_default(), sighting.ip.as_deref());
        let mut ops = Vec::new();
        let mut issued = None;
        let outcome = {
            let mut fleet = self.fleet()?;
            let verdict = fleet.auth.check_in(mac, device_id, caller.secret.as_deref(), caller.native);
            let (authenticated, pending) = match verdict {
                Verdict::Refuse(why) => {
                    let what = if caller.native { "check-in" } else { "compat check-in" };
                    if let Some(ev) = fleet.auth.refusal(what, Some(mac), Some(device_id), ip, &why) {
                        ops.push(Op::Event(ev));
                    }
                    drop(fleet);
                    self.queue(ops);
                    return Err(CoreError::Unauthenticated(why));
                }
                Verdict::Pass { authenticated, pending } => (authenticated, pending),
                Verdict::Enrol => {
                    let (new, row) = fleet.auth.enrol(mac, device_id, clock::now_ms())?;
                    let (authenticated, pending) = (new.state == CredState::Approved, new.state == CredState::Pending);
                    ops.push(Op::Credential(row));
                    ops.push(Op::Event(NewEvent::new(
                        "device.enrolled",
                        &format!("device:{mac}"),
                        Some(format!("device:{mac}")),
                        json!({ "mac": mac, "device_id": device_id, "generation": new.generation,
                                "state": new.state.device_auth(), "ip": ip }),
                    )));
                    issued = Some(new);
                    (authenticated, pending)
                }
            };
            self.sight_locked(&mut fleet, &sighting, || format!("device:{mac}"), &mut ops)?;
            if let Some(c) = fleet.auth.get(mac).map(|c| c.state.device_auth()) {
                fleet.inventory.set_auth(mac, c);
            }
            let ticket = if pending {
                // Believed only once a person approves it.
                None
            } else {
                let version = sighting.version.as_deref().unwrap_or_default();
                seen_locked(&mut fleet, mac, version, true, authenticated, &mut ops);
                fleet.job_of(mac).and_then(|(rid, i)| {
                    let run = fleet.runs.get(&rid)?;
                    let job = run.jobs.get(i)?;
                    (issued.is_none() && job.state == JobState::Commanded && job.durable)
                        .then(|| (Arc::clone(&run.firmware), job.token(), run.spec.step_timeout_secs))
                })
            };
            match ticket {
                Some(t) => Outcome::Offer(t),
                None if pending => Outcome::Pending,
                None => Outcome::Nothing,
            }
        };
        let had_ops = !ops.is_empty();
        self.queue(ops);
        if had_ops {
            self.kick();
        }
        if let Some(new) = issued {
            // The device keeps a secret only the store can vouch for: durable before it leaves.
            self.shared.writer.flush().await?;
            let mqtt = self.shared.mqtt_devices.get().filter(|d| d.device_logins);
            let credential = DeviceCredential {
                secret: new.secret,
                generation: new.generation,
                mqtt_username: mqtt.map(|_| device_id.to_owned()),
                mqtt_password: mqtt.map(|_| self.shared.auth_key.mqtt_password(mac, new.generation)),
            };
            let approval = (new.state == CredState::Pending).then(|| "pending".to_owned());
            return Ok(CheckResponse::NoUpdate { update_available: false, credential: Some(credential), approval });
        }
        match outcome {
            Outcome::Offer((fw, token, step)) => {
                Ok(CheckResponse::Offer(Box::new(self.offer_for(self.offer(&fw, &token, step)?, tls))))
            }
            Outcome::Pending => Ok(CheckResponse::NoUpdate {
                update_available: false,
                credential: None,
                approval: Some("pending".into()),
            }),
            Outcome::Nothing => Ok(CheckResponse::none()),
        }
    }

    /// A device reports progress (pull: HTTP; push: MQTT status). The report must come from the
    /// device the job is for: an enrolled device proves it with its credential (HTTP) or its own
    /// broker login (MQTT); a job id that is unknown, wrong or another device's is refused the
    /// same way, and nothing changes.
    pub async fn device_report(&self, req: ReportRequest, caller: Caller) -> Result<()> {
        let mut ops = Vec::new();
        let refused = {
            let mut fleet = self.fleet()?;
            let now = clock::now_ms();
            match report_target(&fleet, &req, &caller) {
                Ok((rid, i)) => {
                    if let Some(run) = fleet.runs.get_mut(&rid) {
                        run.report(i, &req.job, req.state, req.progress, req.error.clone(), now, &mut ops);
                    }
                    // `version` in a report is what the device runs while updating (the old one):
                    // it is recorded, never used to verify — only a check-in or presence after the
                    // reboot is.
                    None
                }
                Err(e) => {
                    let claimed = req.mac.as_deref().and_then(flotilla_proto::device::normalize_mac);
                    if let Some(ev) = fleet.auth.refusal(
                        "report",
                        claimed.as_deref(),
                        Some(&req.device_id),
                        caller.ip.as_deref(),
                        &e.to_string(),
                    ) {
                        ops.push(Op::Event(ev));
                    }
                    Some(e)
                }
            }
        };
        self.queue(ops);
        if let Some(e) = refused {
            return Err(e);
        }
        self.kick();
        Ok(())
    }

    /// A presence message (MQTT): registers the device and verifies a pending update. A retained
    /// presence may predate the update (it is replayed on every subscribe), so it can confirm a
    /// success but never fail a job.
    /// `client` is the embedded broker's session the message came through (`None` for a site's
    /// broker): when that session ends, the device is shown offline.
    /// `login` is the device the embedded broker's per-device login proved (`None`: the site's
    /// shared login, or a site's broker). The presence of an enrolled device is believed only
    /// through its own login; otherwise it is refused and changes nothing.
    #[allow(clippy::too_many_arguments)]
    pub async fn presence(
        &self,
        profile: &str,
        device_id: &str,
        owner: Option<String>,
        p: Presence,
        retained: bool,
        client: Option<String>,
        login: Option<String>,
    ) -> Result<()> {
        let mut ops = Vec::new();
        let refused = 'locked: {
            let mut fleet = self.fleet()?;
            let mac = match p.mac.as_deref().and_then(flotilla_proto::device::normalize_mac) {
                Some(m) => m,
                None => match fleet.inventory.resolve(device_id) {
                    Some(m) => m.to_owned(),
                    None => return Err(CoreError::BadRequest(format!("presence of {device_id:?} carries no MAC"))),
                },
            };
            let enrolled_mac = fleet.auth.mac_of_id(device_id).map(str::to_owned);
            let logged_in = login.as_deref() == Some(device_id);
            let claims_enrolled = fleet.auth.is_enrolled(&mac) || enrolled_mac.is_some();
            // With a site's broker there are no device logins: what arrives is unauthenticated.
            let device_logins = self.shared.mqtt_devices.get().is_some_and(|d| d.device_logins);
            if device_logins && claims_enrolled && !(logged_in && enrolled_mac.as_deref() == Some(mac.as_str())) {
                let why = "presence of an enrolled device through another login";
                if let Some(ev) = fleet.auth.refusal("mqtt presence", Some(&mac), Some(device_id), None, why) {
                    ops.push(Op::Event(ev));
                }
                break 'locked Some(CoreError::Unauthenticated(why.into()));
            }
            let authenticated = logged_in && fleet.auth.get(&mac).is_some_and(|c| c.state == CredState::Approved);
            if fleet.auth.get(&mac).is_some_and(|c| c.state == CredState::Pending) {
                // Waits for a person's approval: seen, not believed.
                break 'locked None;
            }
            if !p.online {
                let why = "it said so (an offline presence or its Last Will)";
                offline_locked(&mut fleet, &mac, Some("mqtt"), &format!("mqtt:{mac}"), why, &mut ops);
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
                    seen_locked(&mut fleet, &mac, v, !retained, authenticated, &mut ops);
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
            None
        };
        self.queue(ops);
        if let Some(e) = refused {
            return Err(e);
        }
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
                    let j = r.jobs.get(*r.by_mac.get(mac.as_str())?)?;
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
/// `source` is the source that said the device left, if one did (not a silence).
pub(super) fn offline_locked(
    fleet: &mut Fleet,
    mac: &str,
    source: Option<&str>,
    actor: &str,
    why: &str,
    ops: &mut Vec<Op>,
) {
    if fleet.inventory.set_offline(mac, source)
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

/// Who sent a device request, as far as its transport can tell. Its `Debug` never shows the
/// secret.
#[derive(Clone, Default)]
pub struct Caller {
    /// The bearer secret of its `Authorization` header (HTTP).
    pub secret: Option<String>,
    /// The native protocol (whose check-in may enrol) rather than a compatibility profile.
    pub native: bool,
    /// Where it came from (logged with a refusal).
    pub ip: Option<String>,
    /// The device the embedded broker's per-device login proved (MQTT).
    pub mqtt_device: Option<String>,
    /// Came through a site's broker, which has no device logins: nothing can be proven, so an
    /// enrolled device's report is taken as unauthenticated rather than refused.
    pub site_broker: bool,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("native", &self.native)
            .field("ip", &self.ip)
            .field("mqtt_device", &self.mqtt_device)
            .field("site_broker", &self.site_broker)
            .finish()
    }
}

/// What a check-in answers once its credential passed.
enum Outcome {
    Offer((Arc<Firmware>, String, u64)),
    Pending,
    Nothing,
}

/// The job a report is for, if the caller may report on it. Unknown, wrong and foreign job ids
/// get the same refusal (ids cannot be probed); an enrolled device must prove who it is.
fn report_target(fleet: &Fleet, req: &ReportRequest, caller: &Caller) -> Result<(i64, usize)> {
    let not_yours = || CoreError::Refused(format!("job {:?} is not a job of this device", req.job));
    let (rid, i) = fleet.job_by_token(&req.job).ok_or_else(not_yours)?;
    let job = fleet.runs.get(&rid).and_then(|r| r.jobs.get(i)).ok_or_else(not_yours)?;
    let mac = job.mac.as_str();
    if fleet.auth.is_enrolled(mac) && !caller.site_broker {
        let proven = fleet.auth.proves(mac, caller.secret.as_deref())
            || caller.mqtt_device.as_deref().is_some_and(|d| fleet.auth.mac_of_id(d) == Some(mac));
        if !proven {
            return Err(CoreError::Unauthenticated("the job's device is enrolled: its credential is required".into()));
        }
        return Ok((rid, i));
    }
    // A device without a credential: the claim must at least name the job's device.
    let claimed_mac = req.mac.as_deref().and_then(flotilla_proto::device::normalize_mac);
    let by_mac = claimed_mac.as_deref() == Some(mac);
    let by_id = job.device_id.as_deref() == Some(req.device_id.as_str())
        || fleet.inventory.resolve(&req.device_id) == Some(mac);
    if (by_mac || by_id) && !fleet.auth.refuse_unauthenticated { Ok((rid, i)) } else { Err(not_yours()) }
}

/// What a person does to a device's credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialAction {
    /// Let a device waiting for approval in.
    Approve,
    /// Refuse the device until it is re-keyed.
    Revoke,
    /// Its next native check-in enrols it again with a new secret.
    Rekey,
}

impl CredentialAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialAction::Approve => "approved",
            CredentialAction::Revoke => "revoked",
            CredentialAction::Rekey => "rekeyed",
        }
    }
}

impl super::Shared {
    /// The download of job `token`'s image was served to the end (the device server's evidence).
    /// True when that is new evidence (its write is queued).
    pub(crate) fn job_downloaded(&self, token: &str) -> bool {
        let mut ops = Vec::new();
        if let Ok(mut fleet) = self.fleet.lock()
            && let Some((rid, i)) = fleet.job_by_token(token)
            && let Some(run) = fleet.runs.get_mut(&rid)
        {
            run.downloaded(i, token, &mut ops);
        }
        if ops.is_empty() {
            return false;
        }
        self.writer.send_all(ops);
        self.kick.notify_one();
        true
    }

    /// May the caller download on job `token`? An enrolled device's job needs its credential;
    /// `Err` says why not (recorded as a security event).
    pub(crate) fn may_download(&self, token: &str, caller: &Caller) -> Result<()> {
        let mut fleet = self.fleet.lock().map_err(|_| CoreError::ShuttingDown)?;
        let Some((rid, i)) = fleet.job_by_token(token) else { return Ok(()) };
        let Some(mac) = fleet.runs.get(&rid).and_then(|r| r.jobs.get(i)).map(|j| j.mac.clone()) else { return Ok(()) };
        if !fleet.auth.is_enrolled(&mac) || fleet.auth.proves(&mac, caller.secret.as_deref()) {
            return Ok(());
        }
        let why = "the job's device is enrolled: its credential is required";
        if let Some(ev) = fleet.auth.refusal("download", Some(&mac), None, caller.ip.as_deref(), why) {
            drop(fleet);
            self.writer.send_all(vec![Op::Event(ev)]);
        }
        Err(CoreError::Unauthenticated(why.into()))
    }

    /// The embedded broker's per-device logins: the device a user name (its device id) and
    /// password prove to be; an approved credential only.
    pub(crate) fn mqtt_login(&self, username: &str, password: &[u8]) -> Option<String> {
        use subtle::ConstantTimeEq;
        let fleet = self.fleet.lock().ok()?;
        let mac = fleet.auth.mac_of_id(username)?;
        let cred = fleet.auth.get(mac)?;
        if cred.state != CredState::Approved {
            return None;
        }
        let expected = self.auth_key.mqtt_password(mac, cred.generation);
        bool::from(expected.as_bytes().ct_eq(password)).then(|| username.to_owned())
    }
}
