//! The demo fleet: what the desktop app's `--demo` flag, `flotilla serve --demo` and the UI's
//! first-run button (`POST /api/v1/demo`) start, so a newcomer sees devices and can try a staged
//! rollout within a minute.
//!
//! [`launcher`] gives the engine a [`DemoLauncher`]; when it is called, it builds a demo firmware
//! 2.0.0 (ESP32, model `demo`) with `flotilla-imagegen`, imports it through the admin API like any
//! client would, and starts a mixed simulated fleet on loopback running 1.0.0. The fleet lives
//! until the engine stops; it never outlives it.

use std::time::Duration;

use flotilla_core::demo::{DemoContext, DemoFuture, DemoLauncher};
use flotilla_imagegen::{Esp32Chip, Esp32Image};
use flotilla_proto::api::DemoInfo;
use flotilla_proto::firmware::Chip;

use crate::{DeviceKind, FailureRates, Fleet, FleetConfig};

/// Model every demo device reports and the demo firmware is built for.
pub const DEMO_MODEL: &str = "demo";
/// Version the demo devices run at start.
pub const DEMO_FROM_VERSION: &str = "1.0.0";
/// Version of the demo firmware imported for them.
pub const DEMO_FIRMWARE_VERSION: &str = "2.0.0";
/// Size of the demo firmware image, bytes (a typical small ESP32 app).
const DEMO_IMAGE_SIZE: usize = 600_000;

/// What the demo fleet is made of.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Devices that poll the device server over HTTP.
    pub pull: usize,
    /// Devices that wait for commands over MQTT (pull devices instead when the engine has no MQTT).
    pub mqtt: usize,
    /// Share of devices that fail in each way; a few boot failures make the gates visible.
    pub failure_rates: FailureRates,
    /// Time between check-ins of the pull devices.
    pub poll_interval: Duration,
    /// How long a device is offline while rebooting into new firmware.
    pub reboot_delay: Duration,
    /// Seeds MACs, jitter and which devices fail.
    pub seed: u64,
}

impl Default for DemoOptions {
    /// 24 pull + 24 MQTT devices, 5 % fail to boot the new firmware, 2 s polls, 1 s reboots.
    fn default() -> Self {
        DemoOptions {
            pull: 24,
            mqtt: 24,
            failure_rates: FailureRates { boot: 0.05, ..FailureRates::default() },
            poll_interval: Duration::from_secs(2),
            reboot_delay: Duration::from_secs(1),
            seed: 1,
        }
    }
}

/// A launcher the engine calls (at most once) to start the demo fleet.
pub fn launcher(opts: DemoOptions) -> DemoLauncher {
    DemoLauncher::new(move |ctx: DemoContext| -> DemoFuture { Box::pin(start(opts.clone(), ctx)) })
}

/// Imports the demo firmware, starts the fleet and leaves it running until the engine stops.
async fn start(opts: DemoOptions, ctx: DemoContext) -> Result<DemoInfo, String> {
    import_demo_firmware(&ctx).await?;
    let fleet = if ctx.mqtt_url.is_some() {
        vec![(DeviceKind::NativePull, opts.pull), (DeviceKind::NativeMqtt, opts.mqtt)]
    } else {
        vec![(DeviceKind::NativePull, opts.pull + opts.mqtt)]
    };
    let config = FleetConfig {
        api: Some(ctx.device_url.clone()),
        mqtt: ctx.mqtt_url.clone(),
        fleet: fleet.into_iter().filter(|(_, n)| *n > 0).collect(),
        chip: Chip::Esp32,
        model: DEMO_MODEL.into(),
        version: DEMO_FROM_VERSION.into(),
        seed: opts.seed,
        id_prefix: "demo".into(),
        poll_interval: opts.poll_interval,
        reboot_delay: opts.reboot_delay,
        failure_rates: opts.failure_rates,
        ..FleetConfig::default()
    };
    let devices = u32::try_from(config.device_count()).unwrap_or(u32::MAX);
    let handle = Fleet::start(config).await.map_err(|e| format!("cannot start the demo fleet: {e}"))?;
    let summary = handle.summary().to_string();
    tracing::info!(%summary, "demo fleet started");
    let stopped = ctx.stopped;
    tokio::spawn(async move {
        stopped.await;
        handle.stop().await;
    });
    Ok(DemoInfo { devices, firmware: Some(DEMO_FIRMWARE_VERSION.into()), summary })
}

/// The demo firmware's bytes: deterministic, so importing it again is "already imported".
pub fn demo_firmware() -> Vec<u8> {
    Esp32Image::new()
        .chip(Esp32Chip::Esp32)
        .version(DEMO_FIRMWARE_VERSION)
        .project(DEMO_MODEL)
        .size(DEMO_IMAGE_SIZE)
        .build()
}

/// Imports the demo firmware through the admin API (201 imported, 200 already there).
async fn import_demo_firmware(ctx: &DemoContext) -> Result<(), String> {
    let part = reqwest::multipart::Part::bytes(demo_firmware()).file_name(format!("demo-{DEMO_FIRMWARE_VERSION}.bin"));
    let form = reqwest::multipart::Form::new().part("file", part).text("notes", "demo firmware");
    let url = format!("{}/api/v1/firmware", ctx.admin_url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot import the demo firmware: {e}"))?;
    let res = client
        .post(&url)
        .bearer_auth(&ctx.admin_token)
        .multipart(form)
        .send()
        .await
        .map_err(|e| format!("cannot import the demo firmware ({url}): {e}"))?;
    let status = res.status();
    if status.is_success() {
        return Ok(());
    }
    let body = res.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or(body);
    Err(format!("the engine refused the demo firmware ({status}): {message}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::net::SocketAddr;

    use flotilla_core::error::CoreError;
    use flotilla_core::mqtt_link::MqttMode;
    use flotilla_core::{Engine, EngineConfig};
    use tokio::net::TcpListener;

    use super::*;

    const LOOPBACK: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_fills_the_inventory_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EngineConfig::new(dir.path().to_owned());
        config.mdns = false;
        config.mqtt = MqttMode::Embedded { listen: LOOPBACK };
        config.demo = Some(launcher(DemoOptions {
            pull: 3,
            mqtt: 3,
            poll_interval: Duration::from_millis(200),
            reboot_delay: Duration::from_millis(100),
            seed: 7,
            ..DemoOptions::default()
        }));
        let device = TcpListener::bind(LOOPBACK).await.unwrap();
        let admin = TcpListener::bind(LOOPBACK).await.unwrap();
        let engine = Engine::start_with_listeners(config, device, admin).await.unwrap();

        let info = engine.start_demo("test").await.unwrap();
        assert_eq!(info.devices, 6);
        assert_eq!(info.firmware.as_deref(), Some(DEMO_FIRMWARE_VERSION));
        assert!(info.summary.contains("6 devices"), "{}", info.summary);
        assert_eq!(engine.demo_running().await, Some(info));

        let firmware = engine.list_firmware().await.unwrap();
        assert!(firmware.iter().any(|f| f.version == DEMO_FIRMWARE_VERSION), "demo firmware imported: {firmware:?}");

        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let devices = engine.list_devices().await.unwrap();
            if devices.len() == 6 {
                assert!(devices.iter().all(|d| d.version.as_deref() == Some(DEMO_FROM_VERSION)), "{devices:?}");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "demo devices seen: {}", devices.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        match engine.start_demo("test").await {
            Err(CoreError::Conflict(msg)) => assert!(msg.contains("already runs"), "{msg}"),
            other => panic!("a second demo must be a conflict, got {other:?}"),
        }
        engine.shutdown().await;
    }

    #[tokio::test]
    async fn an_engine_without_a_launcher_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EngineConfig::new(dir.path().to_owned());
        config.mdns = false;
        config.mqtt = MqttMode::Off;
        let device = TcpListener::bind(LOOPBACK).await.unwrap();
        let admin = TcpListener::bind(LOOPBACK).await.unwrap();
        let engine = Engine::start_with_listeners(config, device, admin).await.unwrap();
        assert!(!engine.demo_available());
        match engine.start_demo("test").await {
            Err(e @ CoreError::Unavailable(_)) => assert_eq!(e.code(), "unavailable"),
            other => panic!("expected unavailable, got {other:?}"),
        }
        assert_eq!(engine.status().await.demo.running, None);
        engine.shutdown().await;
    }
}
