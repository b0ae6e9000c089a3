//! `flotilla rollout …`: create, control, watch and report staged rollouts.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use flotilla_core::rollout::plan::{parse_threshold, parse_waves};
use flotilla_proto::rollout::{CreateRollout, JobState, Rollout, RolloutDetail, RolloutSpec, RolloutState, Threshold};
use reqwest::Method;

use crate::client::{Api, print_json};
use crate::output::table;
use crate::{ApiArgs, CliError, CliResult};

#[derive(Debug, Subcommand)]
pub enum RolloutCmd {
    /// Plan a staged rollout (and start it with --start).
    Create {
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
        /// Commands only inside this window, e.g. `weekdays 22:00-05:00 +01:00`.
        #[arg(long)]
        window: Option<String>,
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
        /// Start at once.
        #[arg(long)]
        start: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Start a planned rollout.
    Start {
        id: i64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop commanding new devices (in-flight ones finish).
    Pause {
        id: i64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Continue a paused rollout; failures so far are acknowledged.
    Resume {
        id: i64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Cancel: no new devices; in-flight ones finish or time out.
    Cancel {
        id: i64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Queue failed and timed-out devices again.
    RetryFailed {
        id: i64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show a rollout; --watch follows it live until it ends.
    Status {
        id: i64,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List rollouts.
    List {
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
        RolloutCmd::Create {
            firmware,
            target,
            waves,
            max_failures,
            success_gate,
            timeout,
            concurrency,
            window,
            allow_downgrade,
            manual_approval,
            retries,
            name,
            start,
            json,
            api,
        } => {
            let mut spec = RolloutSpec::new(firmware, target);
            spec.waves = parse_waves(&waves).map_err(|e| CliError::refused(e.to_string()))?;
            spec.max_failures = parse_threshold(&max_failures).map_err(|e| CliError::refused(e.to_string()))?;
            spec.success_gate = percent(&success_gate, "--success-gate")?;
            spec.step_timeout_secs = parse_duration(&timeout)?.as_secs();
            spec.concurrency = concurrency;
            spec.window = window;
            spec.allow_downgrade = allow_downgrade;
            spec.manual_approval = manual_approval;
            spec.retries = retries;
            spec.name = name;
            let api = Api::resolve(&api)?;
            let detail: RolloutDetail =
                api.send(api.request(Method::POST, "/api/v1/rollouts").json(&CreateRollout { spec, start })).await?;
            if json {
                return print_json(&detail);
            }
            let r = &detail.rollout;
            println!(
                "Rollout {} {} ({} devices in {} waves, {} skipped).",
                r.id,
                if r.state == RolloutState::Draft {
                    "planned; start it with `flotilla rollout start`"
                } else {
                    "started"
                },
                r.counts.total - r.counts.skipped,
                r.waves.len(),
                r.counts.skipped
            );
            print_skipped(&detail);
            Ok(())
        }
        RolloutCmd::Start { id, api } => action(&api, id, "start").await,
        RolloutCmd::Pause { id, api } => action(&api, id, "pause").await,
        RolloutCmd::Resume { id, api } => action(&api, id, "resume").await,
        RolloutCmd::Cancel { id, api } => action(&api, id, "cancel").await,
        RolloutCmd::RetryFailed { id, api } => action(&api, id, "retry-failed").await,
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
                    println!("{}", serde_json::to_string(&d.rollout).map_err(|e| CliError::failure(e.to_string()))?);
                } else {
                    if watch && tty {
                        print!("\x1b[2J\x1b[H");
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
            let list: Vec<Rollout> = Api::resolve(&api)?.get("/api/v1/rollouts").await?;
            if json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("No rollouts yet. Plan one with `flotilla rollout create --firmware REF --target all`.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.name.clone(),
                        r.firmware_version.clone(),
                        r.state.as_str().into(),
                        format!("{}/{}", (r.current_wave + 1).min(r.waves.len() as u32), r.waves.len()),
                        format!("{}/{}", r.counts.succeeded, r.counts.total - r.counts.skipped),
                        (r.counts.failed + r.counts.timed_out).to_string(),
                        r.updated_at.clone(),
                    ]
                })
                .collect();
            table(&["ID", "NAME", "VERSION", "STATE", "WAVE", "UPDATED", "FAILED", "CHANGED"], &rows);
            Ok(())
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
                    println!("Report written to {}.", path.display());
                }
                None => print!("{text}"),
            }
            Ok(())
        }
    }
}

async fn action(api: &ApiArgs, id: i64, what: &str) -> CliResult {
    let api = Api::resolve(api)?;
    let r: Rollout = api.send(api.request(Method::POST, &format!("/api/v1/rollouts/{id}/{what}"))).await?;
    println!(
        "Rollout {} is {}{}.",
        r.id,
        r.state.as_str(),
        r.pause_reason.map(|p| format!(": {p}")).unwrap_or_default()
    );
    Ok(())
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
        println!("  skipped {n}: {why}");
    }
}

fn print_status(d: &RolloutDetail) {
    let r = &d.rollout;
    let th = match r.spec.max_failures {
        Threshold::Count(n) => format!("{n}"),
        Threshold::Percent(p) => format!("{p}%"),
    };
    println!("Rollout {} · {} · firmware {} · {}", r.id, r.name, r.firmware_version, r.state.as_str().to_uppercase());
    if let Some(reason) = &r.pause_reason {
        println!("  paused: {reason}");
    }
    println!(
        "  gate: pause above {th} failures per wave, {}% success to advance · concurrency {} · step timeout {} s",
        r.spec.success_gate, r.spec.concurrency, r.spec.step_timeout_secs
    );
    let c = &r.counts;
    let eligible = c.total - c.skipped;
    println!(
        "  {} {}/{} updated · {} in progress · {} queued · {} failed · {} timed out · {} skipped",
        bar(c.succeeded, eligible, 30),
        c.succeeded,
        eligible,
        c.in_flight,
        c.queued,
        c.failed,
        c.timed_out,
        c.skipped
    );
    for w in &r.waves {
        let marker = if w.index == r.current_wave && r.state == RolloutState::Running { ">" } else { " " };
        let n = w.counts.total;
        println!(
            "  {marker} wave {:>2}: {} {:>4}/{:<4} ok {:>3} failed {:>3} in progress",
            w.index + 1,
            bar(w.counts.succeeded, n, 20),
            w.counts.succeeded,
            n,
            w.counts.failed + w.counts.timed_out,
            w.counts.in_flight
        );
    }
    let mut errors: std::collections::BTreeMap<String, u32> = std::collections::BTreeMap::new();
    for j in d.jobs.iter().filter(|j| j.state.is_failure()) {
        *errors.entry(j.error.clone().unwrap_or_default()).or_default() += 1;
    }
    if !errors.is_empty() {
        println!("  errors:");
        for (why, n) in errors {
            println!("    {n:>4} × {why}");
        }
    }
}
