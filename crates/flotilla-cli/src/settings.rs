//! `flotilla settings` and `flotilla demo`: the site's saved settings (what the UI's Settings view
//! edits) and the demo fleet (the UI's first-run button), over the admin API.

use clap::Subcommand;
use flotilla_proto::api::{DemoInfo, SettingsView, SiteSettings};
use reqwest::Method;

use crate::client::{Api, print_json};
use crate::output::{fields, opt, outln};
use crate::{ApiArgs, CliError, CliResult};

#[derive(Debug, Subcommand)]
pub enum SettingsCmd {
    /// What is saved (used at the next start), and what the running engine uses.
    Show {
        /// Print the admin API's JSON (`SettingsView`; stable, see docs/cli.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Change saved settings: `KEY=VALUE` pairs (`KEY=` goes back to the default). Keys:
    /// device_listen, public_url, admin_listen, mqtt (embedded, off or a broker URL), mqtt_listen,
    /// mqtt_user, mqtt_password, mdns (true/false), event_retention_days, event_retention_max,
    /// new_devices_per_minute, max_devices, approve_new_devices (true/false), refuse_unauthenticated
    /// (true/false). Nothing is saved when a value is wrong; the retention, the device caps and
    /// the identity policy apply at once, the rest at the next start.
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        /// Print the admin API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DemoCmd {
    /// Start the simulated demo fleet of an engine started with a demo launcher (`flotilla serve`
    /// always has one; `--demo` starts it at start-up instead).
    Start {
        /// Print the admin API's JSON (`DemoInfo`).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// `flotilla settings`: show, or change some and keep the rest.
pub async fn settings(cmd: SettingsCmd) -> CliResult {
    match cmd {
        SettingsCmd::Show { json, api } => {
            let view: SettingsView = Api::resolve(&api)?.get("/api/v1/settings").await?;
            if json {
                return print_json(&view);
            }
            print_settings(&view);
            Ok(())
        }
        SettingsCmd::Set { pairs, json, api } => {
            let api = Api::resolve(&api)?;
            let view: SettingsView = api.get("/api/v1/settings").await?;
            // The password is never sent back: `None` keeps the saved one.
            let mut next = SiteSettings { mqtt_password: None, ..view.saved };
            for pair in &pairs {
                apply(&mut next, pair)?;
            }
            let view: SettingsView = api.send(api.request(Method::PUT, "/api/v1/settings").json(&next)).await?;
            if json {
                return print_json(&view);
            }
            outln!("Saved to {}.", view.path);
            if view.restart_required {
                outln!(
                    "Restart the engine to use the new addresses or broker (the retention and the device caps apply at once)."
                );
            }
            print_settings(&view);
            Ok(())
        }
    }
}

/// Sets one `KEY=VALUE` on `s`; an empty value means the default.
fn apply(s: &mut SiteSettings, pair: &str) -> CliResult {
    let (key, value) = pair
        .split_once('=')
        .ok_or_else(|| CliError::refused(format!("{pair:?}: give KEY=VALUE (KEY= for the default)")))?;
    let text = (!value.trim().is_empty()).then(|| value.trim().to_owned());
    let number = |what: &str| -> CliResult<Option<u64>> {
        text.as_deref()
            .map(|t| t.parse::<u64>().map_err(|_| CliError::refused(format!("{what} {t:?}: a whole number"))))
            .transpose()
    };
    match key.trim() {
        "device_listen" => s.device_listen = text,
        "public_url" => s.public_url = text,
        "admin_listen" => s.admin_listen = text,
        "mqtt" => s.mqtt = text,
        "mqtt_listen" => s.mqtt_listen = text,
        "mqtt_user" => s.mqtt_user = text,
        // "" removes the saved password (the engine's rule).
        "mqtt_password" => s.mqtt_password = Some(value.to_owned()),
        "mdns" => s.mdns = flag("mdns", text.as_deref())?,
        "approve_new_devices" => s.approve_new_devices = flag("approve_new_devices", text.as_deref())?,
        "refuse_unauthenticated" => s.refuse_unauthenticated = flag("refuse_unauthenticated", text.as_deref())?,
        "event_retention_days" => {
            s.event_retention_days = number("event_retention_days")?
                .map(|n| u32::try_from(n).map_err(|_| CliError::refused("event_retention_days: too large")))
                .transpose()?;
        }
        "event_retention_max" => s.event_retention_max = number("event_retention_max")?,
        "new_devices_per_minute" => {
            s.new_devices_per_minute = number("new_devices_per_minute")?
                .map(|n| u32::try_from(n).map_err(|_| CliError::refused("new_devices_per_minute: too large")))
                .transpose()?;
        }
        "max_devices" => {
            s.max_devices = number("max_devices")?
                .map(|n| u32::try_from(n).map_err(|_| CliError::refused("max_devices: too large")))
                .transpose()?;
        }
        other => return Err(CliError::refused(format!("no setting {other:?} (see `flotilla settings set --help`)"))),
    }
    Ok(())
}

/// A yes/no setting (`None`: back to the default).
fn flag(name: &str, text: Option<&str>) -> CliResult<Option<bool>> {
    match text {
        None => Ok(None),
        Some("true" | "on" | "yes") => Ok(Some(true)),
        Some("false" | "off" | "no") => Ok(Some(false)),
        Some(other) => Err(CliError::refused(format!("{name} {other:?}: true or false"))),
    }
}

fn opt_bool(b: Option<bool>) -> String {
    b.map_or("-".into(), |b| b.to_string())
}

fn print_settings(v: &SettingsView) {
    let (s, e) = (&v.saved, &v.effective);
    let row = |saved: String, now: String| if saved == now { now } else { format!("{now} now (saved: {saved})") };
    let dflt = |o: &Option<String>| opt(o.as_deref()).replace('-', "default");
    let retention = |o: Option<u64>| o.map_or("default".to_owned(), |n| n.to_string());
    fields(&[
        ("device_listen", row(dflt(&s.device_listen), opt(e.device_listen.as_deref()))),
        ("public_url", row(dflt(&s.public_url), opt(e.public_url.as_deref()))),
        ("admin_listen", row(dflt(&s.admin_listen), opt(e.admin_listen.as_deref()))),
        ("mqtt", row(dflt(&s.mqtt), opt(e.mqtt.as_deref()))),
        ("mqtt_listen", row(dflt(&s.mqtt_listen), opt(e.mqtt_listen.as_deref()))),
        ("mqtt_user", row(dflt(&s.mqtt_user), opt(e.mqtt_user.as_deref()))),
        ("mqtt_password", if v.mqtt_password_set { "saved (never shown)".into() } else { "-".into() }),
        ("mdns", row(s.mdns.map_or("default".into(), |b| b.to_string()), e.mdns.map_or("-".into(), |b| b.to_string()))),
        (
            "event_retention_days",
            row(retention(s.event_retention_days.map(u64::from)), retention(e.event_retention_days.map(u64::from))),
        ),
        ("event_retention_max", row(retention(s.event_retention_max), retention(e.event_retention_max))),
        (
            "new_devices_per_minute",
            row(retention(s.new_devices_per_minute.map(u64::from)), retention(e.new_devices_per_minute.map(u64::from))),
        ),
        ("max_devices", row(retention(s.max_devices.map(u64::from)), retention(e.max_devices.map(u64::from)))),
        (
            "approve_new_devices",
            row(s.approve_new_devices.map_or("default".into(), |b| b.to_string()), opt_bool(e.approve_new_devices)),
        ),
        (
            "refuse_unauthenticated",
            row(
                s.refuse_unauthenticated.map_or("default".into(), |b| b.to_string()),
                opt_bool(e.refuse_unauthenticated),
            ),
        ),
        ("restart_required", v.restart_required.to_string()),
        ("file", v.path.clone()),
    ]);
}

/// `flotilla demo start`.
pub async fn demo(cmd: DemoCmd) -> CliResult {
    match cmd {
        DemoCmd::Start { json, api } => {
            let api = Api::resolve(&api)?;
            let info: DemoInfo = api.send(api.request(Method::POST, "/api/v1/demo")).await?;
            if json {
                return print_json(&info);
            }
            outln!("Demo fleet started: {}.", info.summary);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pairs_set_fields_and_empty_values_mean_the_default() {
        let mut s = SiteSettings { mqtt: Some("off".into()), ..SiteSettings::default() };
        apply(&mut s, "mqtt=").unwrap();
        apply(&mut s, "mdns=off").unwrap();
        apply(&mut s, "event_retention_days=30").unwrap();
        apply(&mut s, "device_listen=0.0.0.0:9000").unwrap();
        assert_eq!(s.mqtt, None);
        assert_eq!(s.mdns, Some(false));
        assert_eq!(s.event_retention_days, Some(30));
        assert_eq!(s.device_listen.as_deref(), Some("0.0.0.0:9000"));
        for bad in ["nonsense", "colour=red", "mdns=maybe", "event_retention_max=lots"] {
            assert_eq!(apply(&mut s, bad).unwrap_err().exit_code, 2, "{bad}");
        }
    }
}
