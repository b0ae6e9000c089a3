//! What the engine runs and the state of its connections (`GET /api/v1/status`).

use flotilla_proto::api::{DemoStatus, EngineStatus, ListenerStatus, MdnsStatus, MqttStatus, StorageStatus};

use super::EngineHandle;
use crate::config::MqttMode;

impl EngineHandle {
    /// A snapshot of the engine's settings and connection states.
    pub async fn status(&self) -> EngineStatus {
        let s = &self.shared;
        let mqtt = match &s.config.mqtt {
            MqttMode::Off => {
                MqttStatus { mode: "off".into(), url: None, listen: None, connected: false, username: None }
            }
            MqttMode::Embedded { listen } => MqttStatus {
                mode: "embedded".into(),
                url: self.mqtt_url().map(str::to_owned),
                // Where it really listens (the port the system chose for `:0`).
                listen: Some(
                    self.broker
                        .lock()
                        .await
                        .as_ref()
                        .map_or_else(|| listen.to_string(), |b| b.local_addr().to_string()),
                ),
                connected: self.mqtt_connected(),
                username: s.mqtt_devices.get().and_then(|d| d.username.clone()),
            },
            MqttMode::External { url, username, .. } => MqttStatus {
                mode: "external".into(),
                // Display leaves the password out.
                url: crate::mqtt::parse_url(url).map(|u| u.to_string()).ok(),
                listen: None,
                connected: self.mqtt_connected(),
                username: username.clone(),
            },
        };
        let mdns_on = self.advertiser.lock().map(|a| a.is_some()).unwrap_or(false);
        EngineStatus {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            data_dir: s.data.root().display().to_string(),
            uptime_s: s.started.elapsed().as_secs(),
            admin: ListenerStatus { listen: s.admin_addr.to_string(), url: s.admin_url.clone() },
            device_server: ListenerStatus { listen: s.device_addr.to_string(), url: s.device_url.clone() },
            mqtt,
            mdns: MdnsStatus { enabled: mdns_on, service: crate::discovery::mdns::SERVICE_TYPE.into() },
            tls: self.tls_status(),
            demo: DemoStatus { available: self.demo_available(), running: self.demo_running().await },
            signing_key_id: s.key.key_id().to_owned(),
            updatable_families: crate::protocols::UPDATABLE.to_vec(),
            storage: StorageStatus { disk_full: s.writer.disk_full(), missing_firmware_files: s.storage.missing() },
        }
    }
}
