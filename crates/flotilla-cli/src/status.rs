//! `flotilla status` and `flotilla metrics`: what the engine runs and what it measures.

use clap::Args;
use flotilla_proto::api::{EngineStatus, FleetMetrics};

use crate::client::{Api, print_json};
use crate::output::{fields, out, outln, table};
use crate::{ApiArgs, CliResult};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the admin API's JSON (stable; see docs/cli.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// The dashboard's numbers instead: devices per version over time, finished rollouts,
    /// failures by reason.
    #[arg(long)]
    fleet: bool,
    /// With --fleet: the API's `FleetMetrics` as JSON (Prometheus text is the other output's
    /// machine format).
    #[arg(long, requires = "fleet")]
    json: bool,
    #[command(flatten)]
    api: ApiArgs,
}

pub async fn status(args: StatusArgs) -> CliResult {
    let s: EngineStatus = Api::resolve(&args.api)?.get("/api/v1/status").await?;
    if args.json {
        return print_json(&s);
    }
    print_status(&s);
    Ok(())
}

pub async fn metrics(args: MetricsArgs) -> CliResult {
    let api = Api::resolve(&args.api)?;
    if !args.fleet {
        // Prometheus text, exactly as the engine wrote it.
        out!("{}", api.text("/metrics").await?);
        return Ok(());
    }
    let m: FleetMetrics = api.get("/api/v1/metrics/fleet").await?;
    if args.json {
        return print_json(&m);
    }
    print_fleet(&m);
    Ok(())
}

fn print_status(s: &EngineStatus) {
    let mqtt = match s.mqtt.mode.as_str() {
        "off" => "off".to_owned(),
        mode => {
            let mut parts = vec![mode.to_owned()];
            parts.extend(s.mqtt.url.clone());
            if let Some(listen) = &s.mqtt.listen {
                parts.push(format!("listening on {listen}"));
            }
            if let Some(user) = &s.mqtt.username {
                parts.push(format!("devices log in as {user}"));
            }
            parts.push(if s.mqtt.connected { "connected".into() } else { "NOT CONNECTED".into() });
            parts.join(", ")
        }
    };
    let tls = match (&s.tls.https_url, &s.tls.spki_sha256) {
        (Some(url), Some(fp)) => format!("{url}, public key SHA-256 {fp} (flotilla keys tls)"),
        (Some(url), None) => url.clone(),
        (None, _) => "off (plain HTTP; firmware and manifests are signed)".to_owned(),
    };
    let demo = match (&s.demo.running, s.demo.available) {
        (Some(d), _) => format!("running: {}", d.summary),
        (None, true) => "available, not running".to_owned(),
        (None, false) => "not available".to_owned(),
    };
    let storage = match (s.storage.disk_full, s.storage.missing_firmware_files.as_slice()) {
        (false, []) => "ok".to_owned(),
        (full, missing) => {
            let mut parts = Vec::new();
            if full {
                parts.push("DISK FULL: changes are not being saved".to_owned());
            }
            if !missing.is_empty() {
                parts.push(format!("missing firmware files (re-import them): {}", missing.join(", ")));
            }
            parts.join("; ")
        }
    };
    outln!("Flotilla {} · up {} · pid {}", s.version, flotilla_core::rollout::run::human_span(uptime(s)), s.pid);
    fields(&[
        ("data dir", s.data_dir.clone()),
        ("admin API", format!("{} (bound to {})", s.admin.url, s.admin.listen)),
        ("device server", format!("{} (bound to {})", s.device_server.url, s.device_server.listen)),
        ("MQTT", mqtt),
        ("mDNS", if s.mdns.enabled { format!("advertising {}", s.mdns.service) } else { "off".into() }),
        ("TLS", tls),
        ("demo fleet", demo),
        ("signing key", s.signing_key_id.clone()),
        ("storage", storage),
    ]);
}

fn uptime(s: &EngineStatus) -> i64 {
    i64::try_from(s.uptime_s).unwrap_or(i64::MAX)
}

fn print_fleet(m: &FleetMetrics) {
    match m.versions.last() {
        Some(sample) => {
            // Most devices first.
            let mut counts: Vec<(&String, &u32)> = sample.versions.iter().collect();
            counts.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            let mix: Vec<String> = counts.iter().map(|(v, n)| format!("{v}: {n}")).collect();
            outln!("Devices by version at {}: {}", sample.at, mix.join(" · "));
        }
        None => outln!("No devices counted yet."),
    }
    outln!();
    if m.rollouts.is_empty() {
        outln!("No finished rollouts yet.");
    } else {
        outln!("Finished rollouts (newest first):");
        let rows: Vec<Vec<String>> = m
            .rollouts
            .iter()
            .rev()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    r.name.clone(),
                    r.firmware_version.clone(),
                    r.finished_at.clone(),
                    format!("{} of {}", r.succeeded, r.planned),
                    r.failed.to_string(),
                ]
            })
            .collect();
        table(&["ID", "NAME", "VERSION", "FINISHED", "SUCCEEDED", "FAILED"], &rows);
    }
    outln!();
    if m.failures.is_empty() {
        outln!("No failures in the last 30 days.");
    } else {
        outln!("Failures in the last 30 days, by reason:");
        let rows: Vec<Vec<String>> =
            m.failures.iter().map(|f| vec![f.devices.to_string(), f.reason.clone(), f.example.clone()]).collect();
        table(&["DEVICES", "REASON", "EXAMPLE"], &rows);
    }
}
