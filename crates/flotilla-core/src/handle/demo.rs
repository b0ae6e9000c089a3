//! Starting the demo fleet a shell handed the engine ([`crate::demo::DemoLauncher`]).

use flotilla_proto::api::DemoInfo;

use super::EngineHandle;
use crate::demo::DemoContext;
use crate::error::{CoreError, Result};

impl EngineHandle {
    /// Can this engine start a demo fleet?
    pub fn demo_available(&self) -> bool {
        self.shared.config.demo.is_some()
    }

    /// The demo fleet, when one runs.
    pub async fn demo_running(&self) -> Option<DemoInfo> {
        match &self.shared.config.demo {
            Some(l) => l.running.lock().await.clone(),
            None => None,
        }
    }

    /// The broker URL devices use, with the credentials they need (embedded broker: the data
    /// dir's; external: the configured ones).
    pub fn device_mqtt_url_with_credentials(&self) -> Result<Option<String>> {
        let Some(devices) = self.shared.mqtt_devices.get() else { return Ok(None) };
        let mut url =
            crate::mqtt::parse_url(&devices.url).map_err(|e| CoreError::Refused(format!("broker URL: {e}")))?;
        url.username = devices.username.clone();
        url.password = devices.password.clone();
        Ok(Some(url.with_credentials()))
    }

    /// Starts the demo fleet. Conflict when one already runs; unavailable when this engine was
    /// started without a launcher.
    pub async fn start_demo(&self, actor: &str) -> Result<DemoInfo> {
        let Some(launcher) = self.shared.config.demo.clone() else {
            return Err(CoreError::Unavailable("this engine cannot start a demo fleet".into()));
        };
        let mut running = launcher.running.lock().await;
        if let Some(info) = running.as_ref() {
            return Err(CoreError::Conflict(format!("the demo fleet already runs ({})", info.summary)));
        }
        let engine = self.clone();
        let ctx = DemoContext {
            admin_url: self.admin_url().to_owned(),
            admin_token: self.admin_token().to_owned(),
            device_url: self.device_url().to_owned(),
            mqtt_url: self.device_mqtt_url_with_credentials()?,
            data_dir: self.data_dir().to_owned(),
            stopped: Box::pin(async move { engine.stopped().await }),
        };
        let info = (launcher.start)(ctx).await.map_err(CoreError::Refused)?;
        *running = Some(info.clone());
        drop(running);
        self.record("demo.started", actor, None, serde_json::to_value(&info).unwrap_or_default()).await?;
        Ok(info)
    }
}
