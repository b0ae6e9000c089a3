//! The desktop app's command line: the engine's flags (the same as `flotilla serve`'s, from
//! [`flotilla_cli::EngineArgs`]) plus what only the desktop has.

use std::time::Duration;

use clap::Parser;
use flotilla_cli::{DemoArgs, EngineArgs};
use flotilla_sim::demo::DemoOptions;

/// Flotilla: over-the-air firmware updates for ESP32/ESP8266 fleets, as a desktop app.
#[derive(Debug, Parser)]
#[command(name = "flotilla-desktop", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// `--demo`, `--demo-failures`: as `flotilla serve`'s.
    #[command(flatten)]
    pub demo: DemoArgs,
    /// What to log on stderr, as a tracing filter (e.g. `debug`, `flotilla_core=trace`).
    /// `RUST_LOG`, when set, wins.
    #[arg(long, env = "FLOTILLA_LOG", default_value = "info")]
    pub log: String,
}

impl Cli {
    /// The demo fleet this command line asks for (the UI's first-run button starts the same one).
    /// A window shows the demo live: its devices poll and reboot faster than `flotilla serve`'s.
    pub fn demo_options(&self) -> DemoOptions {
        DemoOptions {
            poll_interval: Duration::from_secs(2),
            reboot_delay: Duration::from_secs(1),
            ..self.demo.options()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn engine_flags_and_desktop_flags_parse_together() {
        let cli = Cli::try_parse_from([
            "flotilla-desktop",
            "--data-dir",
            "/tmp/x",
            "--demo",
            "--demo-failures",
            "0",
            "--admin",
            "127.0.0.1:0",
            "--no-mdns",
        ])
        .unwrap();
        assert!(cli.demo.demo);
        assert_eq!(cli.demo_options().failure_rates.boot, 0.0);
        let config = cli.engine.to_config().unwrap();
        assert_eq!(config.admin_listen.port(), 0);
        assert!(!config.mdns);
        assert!(Cli::try_parse_from(["flotilla-desktop", "--demo-failures", "120"]).is_err());
        let default = Cli::try_parse_from(["flotilla-desktop"]).unwrap();
        assert!((default.demo_options().failure_rates.boot - 0.05).abs() < 1e-9);
    }
}
