//! `flotilla rollout …`: create, control, watch and report staged rollouts.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use flotilla_core::rollout::plan::{parse_threshold, parse_waves};
use flotilla_proto::rollout::{
    CreateRollout, JobState, Rollout, RolloutDetail, RolloutOutcome, RolloutPreview, RolloutSpec, RolloutState,
    Threshold,
};
use reqwest::Method;

use crate::client::{Api, print_json, print_list};
use crate::output::{out, outln, table};
use crate::{ApiArgs, CliError, CliResult};

/// What a rollout is to do: the options `rollout create` and `rollout preview` share.
#[derive(Debug, Clone, Args)]
pub struct SpecArgs {
    /// Firmware: id, sha256 prefix or version.
    #[arg(long)]
    firmware: String,
    /// Which devices: e.g. `all`, `label:line-3 and outdated and online` (docs/cli.md).
    #[arg(long)]
    target: String,
    /// Cumulative wave sizes.
    #[arg(long, default_value = "1,10%,50%,100%")]
    waves: String,
    /// Failures in a wave that pause the rollout: a count (3) or a share (10%).
    #[arg(long, default_value = "10%")]
    max_failures: String,
    /// Share of a wave that must succeed before the next starts, e.g. 90%.
    #[arg(long, default_value = "90%")]
    success_gate: String,
    /// Time each step may take per device, e.g. 300s, 5m.
    #[arg(long, default_value = "5m")]
    timeout: String,
    /// Devices updating at once.
    #[arg(long, default_value_t = 20)]
    concurrency: u32,
    /// Most update commands per second or minute, e.g. `2/s`, `30/min` (besides --concurrency:
    /// keeps a burst of downloads off the broker and the Wi-Fi).
    #[arg(long)]
    rate: Option<String>,
    /// Commands only inside this window, e.g. `weekdays 22:00-05:00 +01:00`.
    #[arg(long)]
    window: Option<String>,
    /// Start at this time (RFC 3339, e.g. 2026-12-04T22:00:00Z) or after this delay (+30m, +2h);
    /// until then a started rollout is `scheduled`.
    #[arg(long)]
    start_at: Option<String>,
    /// Allow installing a lower version than a device runs.
    #[arg(long)]
    allow_downgrade: bool,
    /// Wait for `rollout resume` between waves.
    #[arg(long)]
    manual_approval: bool,
    /// Retries per device after a transient failure.
    #[arg(long, default_value_t = 1)]
    retries: u32,
    #[arg(long)]
    name: Option<String>,
}

impl SpecArgs {
    fn spec(self) -> Result<RolloutSpec, CliError> {
        let mut spec = RolloutSpec::new(self.firmware, self.target);
        spec.waves = parse_waves(&self.waves).map_err(|e| CliError::refused(e.to_string()))?;
        spec.max_failures = parse_threshold(&self.max_failures).map_err(|e| CliError::refused(e.to_string()))?;
        spec.success_gate = percent(&self.success_gate, "--success-gate")?;
        spec.step_timeout_secs = parse_duration(&self.timeout)?.as_secs();
        spec.concurrency = self.concurrency;
        spec.command_rate = self.rate.as_deref().map(parse_rate).transpose()?;
        spec.window = self.window;
        spec.start_at = self.start_at.as_deref().map(parse_start_at).transpose()?;
        spec.allow_downgrade = self.allow_downgrade;
        spec.manual_approval = self.manual_approval;
        spec.retries = self.retries;
        spec.name = self.name;
        Ok(spec)
    }
}

#[derive(Debug, Subcommand)]
pub enum RolloutCmd {
    /// Plan a staged rollout (and start it with --start).
    Create {
        #[command(flatten)]
        spec: SpecArgs,
        /// Start at once (or, with --start-at, be scheduled).
        #[arg(long)]
        start: bool,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// What `rollout create` would do with these options, storing nothing: devices per wave,
    /// those skipped and those the target's conditions leave out, each with the reason.
    Preview {
        #[command(flatten)]
        spec: SpecArgs,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Start a planned rollout (or a scheduled one, now).
    Start {
        id: i64,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop commanding new devices (in-flight ones finish).
    Pause {
        id: i64,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Continue a paused rollout. The failures so far are acknowledged: they stop counting against
    /// the wave's failure threshold and its success gate (`rollout status` says beforehand what
    /// Resume will do).
    Resume {
        id: i64,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Cancel: no new devices; in-flight ones finish or time out.
    Cancel {
        id: i64,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Queue failed and timed-out devices again, each with a fresh retry budget; a paused rollout
    /// resumes.
    RetryFailed {
        id: i64,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Skip one device that will not come back: it is no longer commanded or waited on.
    Skip {
        id: i64,
        /// The device: MAC, device id, name, or the job id.
        device: String,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show a rollout; --watch follows it live until it ends.
    Status {
        id: i64,
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List rollouts.
    List {
        /// Print the admin API's JSON (stable; see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Per-device report: versions before/after, states with times, errors.
    Report {
        id: i64,
        #[arg(long, default_value = "csv")]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Parses a command rate: `2/s`, `30/min`, `2` (per second).
pub fn parse_rate(s: &str) -> Result<f64, CliError> {
    let bad = || CliError::refused(format!("--rate {s:?}: commands per second or minute, e.g. 2/s or 30/min"));
    let (n, unit) = s.trim().split_once('/').unwrap_or((s.trim(), "s"));
    let n: f64 = n.trim().parse().map_err(|_| bad())?;
    let per_sec = match unit.trim() {
        "s" | "sec" => n,
        "m" | "min" => n / 60.0,
        "h" => n / 3600.0,
        _ => return Err(bad()),
    };
    if !(per_sec.is_finite() && per_sec > 0.0) {
        return Err(bad());
    }
    Ok(per_sec)
}

/// Parses a start time: RFC 3339, or `+DURATION` from now.
pub fn parse_start_at(s: &str) -> Result<String, CliError> {
    let s = s.trim();
    if let Some(delay) = s.strip_prefix('+') {
        let d = parse_duration(delay)?;
        let ms = flotilla_store::clock::now_ms() + i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2);
        return Ok(flotilla_store::clock::rfc3339(ms));
    }
    flotilla_store::clock::parse_rfc3339(s).map(|_| s.to_owned()).ok_or_else(|| {
        CliError::refused(format!("--start-at {s:?}: an RFC 3339 time (2026-12-04T22:00:00Z) or a delay (+30m)"))
    })
}

/// Parses `300`, `90s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, CliError> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| (&s[..i], &s[i..]));
    let n: u64 = num.parse().map_err(|_| CliError::refused(format!("duration {s:?}: e.g. 300s, 5m, 1h")))?;
    let secs = match unit {
        "" | "s" => n,
        "m" | "min" => n * 60,
        "h" => n * 3600,
        _ => return Err(CliError::refused(format!("duration {s:?}: unit must be s, m or h"))),
    };
    if secs == 0 {
        return Err(CliError::refused("a timeout must be at least 1 s"));
    }
    Ok(Duration::from_secs(secs))
}

fn percent(s: &str, what: &str) -> Result<f64, CliError> {
    s.trim()
        .trim_end_matches('%')
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
        .ok_or_else(|| CliError::refused(format!("{what} {s:?}: a percentage, e.g. 90%")))
}

pub async fn run(cmd: RolloutCmd) -> CliResult {
    match cmd {
        RolloutCmd::Create { spec, start, json, api } => {
            let spec = spec.spec()?;
            let api = Api::resolve(&api)?;
            let detail: RolloutDetail =
                api.send(api.request(Method::POST, "/api/v1/rollouts").json(&CreateRollout { spec, start })).await?;
            if json {
                return print_json(&detail);
            }
            let r = &detail.rollout;
            let what = match r.state {
                RolloutState::Draft => "planned; start it with `flotilla rollout start`".to_owned(),
                RolloutState::Scheduled => {
                    format!("scheduled to start at {}", r.spec.start_at.as_deref().unwrap_or("its start time"))
                }
                _ => "started".to_owned(),
            };
            outln!(
                "Rollout {} {what} ({} devices in {} waves, {} skipped).",
                r.id,
                r.counts.planned(),
                r.wave_count,
                r.counts.skipped
            );
            print_skipped(&detail);
            Ok(())
        }
        RolloutCmd::Preview { spec, json, api } => {
            let spec = spec.spec()?;
            let api = Api::resolve(&api)?;
            let p: RolloutPreview = api
                .send(api.request(Method::POST, "/api/v1/rollouts/preview").json(&CreateRollout { spec, start: false }))
                .await?;
            if json {
                return print_json(&p);
            }
            print_preview(&p);
            Ok(())
        }
        RolloutCmd::Start { id, json, api } => action(&api, id, "start", json).await,
        RolloutCmd::Pause { id, json, api } => action(&api, id, "pause", json).await,
        RolloutCmd::Resume { id, json, api } => action(&api, id, "resume", json).await,
        RolloutCmd::Cancel { id, json, api } => action(&api, id, "cancel", json).await,
        RolloutCmd::RetryFailed { id, json, api } => action(&api, id, "retry-failed", json).await,
        RolloutCmd::Skip { id, device, json, api } => {
            let api = Api::resolve(&api)?;
            let d: RolloutDetail = api.get(&format!("/api/v1/rollouts/{id}")).await?;
            let devices: Vec<flotilla_proto::Device> = api.get("/api/v1/devices").await?;
            let job = find_job(&d, &devices, &device)?;
            let r: Rollout =
                api.send(api.request(Method::POST, &format!("/api/v1/rollouts/{id}/jobs/{job}/skip"))).await?;
            if json {
                return print_json(&r);
            }
            outln!("Skipped {device} (job {job}) in rollout {id}; the rollout is {}.", r.state.as_str());
            Ok(())
        }
        RolloutCmd::Status { id, json, watch, api } => {
            let api = Api::resolve(&api)?;
            if json && !watch {
                let d: RolloutDetail = api.get(&format!("/api/v1/rollouts/{id}")).await?;
                return print_json(&d);
            }
            let tty = std::io::stdout().is_terminal();
            loop {
                let d: RolloutDetail = api.get(&format!("/api/v1/rollouts/{id}")).await?;
                if json {
                    outln!("{}", serde_json::to_string(&d.rollout).map_err(|e| CliError::failure(e.to_string()))?);
                } else {
                    if watch && tty {
                        out!("\x1b[2J\x1b[H");
                    }
                    print_status(&d);
                }
                let _ = std::io::stdout().flush();
                let done = matches!(d.rollout.state, RolloutState::Completed | RolloutState::Cancelled)
                    && d.rollout.counts.in_flight == 0;
                if !watch || done {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        RolloutCmd::List { json, api } => {
            let headers = ["ID", "NAME", "VERSION", "STATE", "WAVE", "SUCCEEDED", "FAILED", "CHANGED"];
            let empty = "No rollouts yet. Plan one with `flotilla rollout create --firmware REF --target all`.";
            print_list(&api, "/api/v1/rollouts", json, empty, &headers, |r: &Rollout| {
                vec![
                    r.id.to_string(),
                    r.name.clone(),
                    r.firmware_version.clone(),
                    state_text(r),
                    format!("{} of {}", r.current_wave, r.wave_count),
                    format!("{} of {}", r.counts.succeeded, r.counts.planned()),
                    r.counts.failures().to_string(),
                    r.updated_at.clone(),
                ]
            })
            .await
        }
        RolloutCmd::Report { id, format, output, api } => {
            let api = Api::resolve(&api)?;
            let text = match format.as_str() {
                "csv" => api.text(&format!("/api/v1/rollouts/{id}/report?format=csv")).await?,
                "json" => {
                    let d: RolloutDetail = api.get(&format!("/api/v1/rollouts/{id}/report?format=json")).await?;
                    serde_json::to_string_pretty(&d).map_err(|e| CliError::failure(e.to_string()))? + "\n"
                }
                other => return Err(CliError::refused(format!("--format {other:?}: use csv or json"))),
            };
            match output {
                Some(path) => {
                    std::fs::write(&path, text)
                        .map_err(|e| CliError::failure(format!("cannot write {}: {e}", path.display())))?;
                    outln!("Report written to {}.", path.display());
                }
                None => out!("{text}"),
            }
            Ok(())
        }
    }
}

async fn action(api: &ApiArgs, id: i64, what: &str, json: bool) -> CliResult {
    let api = Api::resolve(api)?;
    let r: Rollout = api.send(api.request(Method::POST, &format!("/api/v1/rollouts/{id}/{what}"))).await?;
    if json {
        return print_json(&r);
    }
    outln!(
        "Rollout {} is {}{}.",
        r.id,
        state_text(&r),
        r.pause_reason.as_deref().map(|p| format!(": {p}")).unwrap_or_default()
    );
    if let Some(w) = &r.waiting {
        outln!("  {}", w.summary);
    }
    Ok(())
}

/// A rollout's state as people read it: a completed rollout with failures says so.
fn state_text(r: &Rollout) -> String {
    match r.outcome {
        Some(RolloutOutcome::SomeFailed) => {
            format!("completed with {} not updated", r.counts.planned() - r.counts.succeeded)
        }
        _ => r.state.as_str().to_owned(),
    }
}

/// The job of `device` in a rollout: a job id of the rollout, else a device named as everywhere
/// else (MAC, device id or name; see [`crate::devices::pick`]) among the rollout's devices.
fn find_job(d: &RolloutDetail, devices: &[flotilla_proto::Device], device: &str) -> Result<i64, CliError> {
    let wanted = device.trim();
    if let Ok(id) = wanted.parse::<i64>()
        && d.jobs.iter().any(|j| j.id == id)
    {
        return Ok(id);
    }
    let mac = match flotilla_proto::device::normalize_mac(wanted) {
        Some(mac) => mac,
        None => {
            let in_rollout: Vec<flotilla_proto::Device> =
                devices.iter().filter(|x| d.jobs.iter().any(|j| j.mac == x.mac)).cloned().collect();
            crate::devices::pick(&in_rollout, wanted)
                .map_err(|e| CliError::refused(format!("in rollout {}: {}", d.rollout.id, e.message)))?
                .mac
                .clone()
        }
    };
    d.jobs
        .iter()
        .find(|j| j.mac == mac)
        .map(|j| j.id)
        .ok_or_else(|| CliError::refused(format!("no device {wanted:?} in rollout {}", d.rollout.id)))
}

fn print_preview(p: &RolloutPreview) {
    outln!(
        "Firmware {} · {} devices to update in {} waves ({}) · {} skipped · {} left out",
        p.firmware_version,
        p.devices.len(),
        p.wave_sizes.len(),
        p.wave_sizes.iter().map(u32::to_string).collect::<Vec<_>>().join(" + "),
        p.skipped.len(),
        p.left_out.len()
    );
    let rows: Vec<Vec<String>> = p
        .devices
        .iter()
        .map(|d| {
            vec![
                d.wave.to_string(),
                d.name.clone().unwrap_or_else(|| d.mac.clone()),
                d.mac.clone(),
                d.current_version.clone().unwrap_or_else(|| "?".into()),
            ]
        })
        .collect();
    if !rows.is_empty() {
        table(&["WAVE", "DEVICE", "MAC", "RUNS"], &rows);
    }
    for (title, list) in [("Skipped", &p.skipped), ("Left out by the target's conditions", &p.left_out)] {
        if list.is_empty() {
            continue;
        }
        outln!("{title}:");
        for d in list {
            outln!("  {} ({}): {}", d.name.as_deref().unwrap_or(&d.mac), d.mac, d.reason);
        }
    }
}

fn bar(done: u32, total: u32, width: usize) -> String {
    let filled = if total == 0 { width } else { (done as usize * width) / total as usize };
    format!("[{}{}]", "#".repeat(filled.min(width)), ".".repeat(width - filled.min(width)))
}

fn print_skipped(d: &RolloutDetail) {
    let mut reasons: std::collections::BTreeMap<String, u32> = std::collections::BTreeMap::new();
    for j in d.jobs.iter().filter(|j| j.state == JobState::Skipped) {
        *reasons.entry(j.error.clone().unwrap_or_default()).or_default() += 1;
    }
    for (why, n) in reasons {
        outln!("  skipped {n}: {why}");
    }
}

fn print_status(d: &RolloutDetail) {
    let r = &d.rollout;
    let th = match r.spec.max_failures {
        Threshold::Count(n) => format!("{n}"),
        Threshold::Percent(p) => format!("{p}%"),
    };
    outln!("Rollout {} · {} · firmware {} · {}", r.id, r.name, r.firmware_version, state_text(r).to_uppercase());
    if let Some(reason) = &r.pause_reason {
        outln!("  paused{}: {reason}", r.paused_at.as_deref().map(|t| format!(" at {t}")).unwrap_or_default());
    }
    if let Some(next) = &r.on_resume {
        outln!("  {next}");
    }
    if let Some(w) = &r.waiting {
        outln!("  waiting: {}", w.summary);
    }
    let rate = r.spec.command_rate.map(|c| format!(" · at most {c} commands/s")).unwrap_or_default();
    outln!(
        "  gate: pause above {th} failures per wave, {}% success to advance · concurrency {}{rate} · step timeout {} s",
        r.spec.success_gate,
        r.spec.concurrency,
        r.spec.step_timeout_secs
    );
    let c = &r.counts;
    outln!("  {} {}", bar(c.succeeded, c.planned(), 30), c.summary());
    let pace = r.estimate.per_minute.map(|p| format!("{p:.1} devices/min")).unwrap_or_else(|| "pace unknown".into());
    let left = match r.estimate.remaining_secs {
        Some(0) => "done".to_owned(),
        Some(s) => {
            format!("about {} left", flotilla_core::rollout::run::human_span(i64::try_from(s).unwrap_or(i64::MAX)))
        }
        None => "no estimate".to_owned(),
    };
    outln!("  {pace} · {left} ({})", r.estimate.basis);
    for w in &r.waves {
        let current = w.number == r.current_wave && matches!(r.state, RolloutState::Running | RolloutState::Paused);
        let marker = if current { ">" } else { " " };
        outln!(
            "  {marker} wave {:>2} of {}: {} {}",
            w.number,
            r.wave_count,
            bar(w.counts.succeeded, w.counts.planned(), 20),
            w.counts.summary()
        );
    }
    // What the successes rest on: an unauthenticated one is said so.
    let mut evidence: std::collections::BTreeMap<&str, u32> = std::collections::BTreeMap::new();
    for j in &d.jobs {
        if let Some(e) = j.evidence.as_deref() {
            *evidence.entry(e).or_default() += 1;
        }
    }
    if !evidence.is_empty() {
        let parts: Vec<String> = evidence.iter().map(|(e, n)| format!("{n} {e}")).collect();
        outln!("  evidence of the successes: {}", parts.join(", "));
    }
    let mut errors: std::collections::BTreeMap<String, u32> = std::collections::BTreeMap::new();
    for j in d.jobs.iter().filter(|j| j.state.is_failure()) {
        *errors.entry(j.error.clone().unwrap_or_default()).or_default() += 1;
    }
    if !errors.is_empty() {
        outln!("  errors:");
        for (why, n) in errors {
            outln!("    {n:>4} × {why}");
        }
    }
}
