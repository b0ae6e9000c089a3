//! Fleet and rollout metrics: Prometheus text for scrapers (`GET /metrics` on the admin API) and
//! the dashboard's panels (`GET /api/v1/metrics/fleet`): versions over time, how recent
//! rollouts went, failures by reason. Everything is read from memory but the version history,
//! which is sampled into the store ([`EngineHandle::sample_versions`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use flotilla_proto::api::{FleetMetrics, ReasonCount, RolloutResult, VersionSample};
use flotilla_proto::rollout::{JobState, RolloutState};
use flotilla_store::{clock, samples};

use super::EngineHandle;
use crate::error::Result;
use crate::rollout::report::reason_key;

/// How often the version distribution is written even when it did not change.
const SAMPLE_EVERY_MS: i64 = 3_600_000;
/// A changed distribution is written at most this often.
const SAMPLE_CHANGED_MS: i64 = 60_000;
/// The dashboard shows this much version history.
const HISTORY_MS: i64 = 30 * 86_400_000;
/// Finished rollouts the dashboard shows.
const ROLLOUTS_SHOWN: usize = 50;

/// Devices per version, `unknown` for devices that report none.
type Distribution = BTreeMap<String, u32>;

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl EngineHandle {
    fn distribution(&self) -> Result<Distribution> {
        let fleet = self.fleet()?;
        let mut d = Distribution::new();
        for e in fleet.inventory.iter() {
            *d.entry(e.device.version.clone().unwrap_or_else(|| "unknown".into())).or_default() += 1;
        }
        Ok(d)
    }

    /// Writes a sample of the version distribution when it changed (at most once a minute) or an
    /// hour has passed; returns whether it wrote one.
    pub(crate) async fn sample_versions(&self) -> Result<bool> {
        let now = clock::now_ms();
        let current = self.distribution()?;
        let due = {
            let fleet = self.fleet()?;
            match &fleet.last_sample {
                None => true,
                Some((at, last)) => now - at >= SAMPLE_EVERY_MS || (now - at >= SAMPLE_CHANGED_MS && *last != current),
            }
        };
        if !due {
            return Ok(false);
        }
        let counts: Vec<(String, u32)> = current.iter().map(|(v, n)| (v.clone(), *n)).collect();
        self.shared.db.call(move |s| Ok(s.write(|tx| samples::add(tx, now, &counts))?)).await?;
        self.fleet()?.last_sample = Some((now, current));
        Ok(true)
    }

    /// Prunes version samples past the audit log's retention.
    pub(crate) async fn prune_samples(&self, older_than_ms: i64) -> Result<usize> {
        self.shared.db.call(move |s| Ok(s.write(|tx| samples::prune(tx, older_than_ms))?)).await
    }

    /// What the dashboard panels show.
    pub async fn fleet_metrics(&self) -> Result<FleetMetrics> {
        let now = clock::now_ms();
        let history = self.shared.db.call(move |s| Ok(samples::since(s.conn(), now - HISTORY_MS)?)).await?;
        let mut versions: Vec<VersionSample> = history
            .into_iter()
            .map(|(at, counts)| VersionSample { at: clock::rfc3339(at), versions: counts.into_iter().collect() })
            .collect();
        // The newest point is now, whatever was last sampled.
        versions.push(VersionSample { at: clock::rfc3339(now), versions: self.distribution()? });
        let fleet = self.fleet()?;
        let mut rollouts: Vec<RolloutResult> = fleet
            .runs
            .values()
            .filter(|r| matches!(r.state, RolloutState::Completed | RolloutState::Cancelled))
            .map(|r| {
                let c = crate::rollout::run::Run::counts(r.jobs.iter());
                RolloutResult {
                    id: r.id,
                    name: r.name.clone(),
                    firmware_version: r.firmware.version.clone(),
                    finished_at: clock::rfc3339(r.updated_at),
                    succeeded: c.succeeded,
                    failed: c.failures(),
                    planned: c.planned(),
                }
            })
            .collect();
        rollouts.sort_by(|a, b| a.finished_at.cmp(&b.finished_at));
        let skip = rollouts.len().saturating_sub(ROLLOUTS_SHOWN);
        rollouts.drain(..skip);
        let mut reasons: BTreeMap<String, ReasonCount> = BTreeMap::new();
        for r in fleet.runs.values().filter(|r| now - r.updated_at <= HISTORY_MS) {
            for j in r.jobs.iter().filter(|j| j.state.is_failure()) {
                let example = j.error.clone().unwrap_or_else(|| "no reason given".into());
                let key = reason_key(&example);
                let entry =
                    reasons.entry(key.clone()).or_insert_with(|| ReasonCount { reason: key, devices: 0, example });
                entry.devices += 1;
            }
        }
        let mut failures: Vec<ReasonCount> = reasons.into_values().collect();
        failures.sort_by(|a, b| b.devices.cmp(&a.devices).then_with(|| a.reason.cmp(&b.reason)));
        Ok(FleetMetrics { versions, rollouts, failures })
    }

    /// The fleet and the device server as Prometheus text (exposition format 0.0.4).
    pub fn prometheus(&self) -> Result<String> {
        let mut out = String::with_capacity(4096);
        {
            let fleet = self.fleet()?;
            let mut devices: BTreeMap<(&str, String, bool), u32> = BTreeMap::new();
            for e in fleet.inventory.iter() {
                let d = &e.device;
                *devices
                    .entry((d.family.as_str(), d.version.clone().unwrap_or_else(|| "unknown".into()), d.online))
                    .or_default() += 1;
            }
            out.push_str("# HELP flotilla_devices Devices in the inventory, by family, version and online state.\n");
            out.push_str("# TYPE flotilla_devices gauge\n");
            for ((family, version, online), n) in &devices {
                let _ = writeln!(
                    out,
                    "flotilla_devices{{family=\"{family}\",version=\"{}\",online=\"{online}\"}} {n}",
                    label(version)
                );
            }
            let mut jobs: BTreeMap<&str, u32> = JobState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
            let mut rollouts: BTreeMap<&str, u32> = BTreeMap::new();
            for r in fleet.runs.values() {
                *rollouts.entry(r.state.as_str()).or_default() += 1;
                for j in &r.jobs {
                    *jobs.entry(j.state.as_str()).or_default() += 1;
                }
            }
            out.push_str("# HELP flotilla_jobs Jobs (one device in one rollout) of every rollout, by state.\n");
            out.push_str("# TYPE flotilla_jobs gauge\n");
            for (state, n) in &jobs {
                let _ = writeln!(out, "flotilla_jobs{{state=\"{state}\"}} {n}");
            }
            out.push_str("# HELP flotilla_rollouts Rollouts, by state.\n# TYPE flotilla_rollouts gauge\n");
            for state in ["draft", "scheduled", "running", "paused", "completed", "cancelled"] {
                let _ = writeln!(out, "flotilla_rollouts{{state=\"{state}\"}} {}", rollouts.get(state).unwrap_or(&0));
            }
        }
        out.push_str(&self.shared.metrics.render());
        Ok(out)
    }
}
