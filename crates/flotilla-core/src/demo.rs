//! The demo fleet hook: a shell (the desktop app, `flotilla serve --demo`) can give the engine a
//! way to start a simulated fleet, which the admin API's `POST /api/v1/demo` (the UI's first-run
//! button) then uses. The engine never depends on the simulator; it only calls what it was given.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use flotilla_proto::api::DemoInfo;

use crate::engine::EngineHandle;
use crate::error::{CoreError, Result};

/// What a demo fleet needs to reach the engine.
pub struct DemoContext {
    /// Admin API, for importing the demo firmware.
    pub admin_url: String,
    pub admin_token: String,
    /// Device server (check-ins, downloads).
    pub device_url: String,
    /// Broker URL for devices, with credentials (`None` when MQTT is off).
    pub mqtt_url: Option<String>,
    pub data_dir: PathBuf,
    /// Resolves when the engine shuts down: the fleet must stop then.
    pub stopped: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
}

impl fmt::Debug for DemoContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoContext")
            .field("admin_url", &self.admin_url)
            .field("device_url", &self.device_url)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// Starts a demo fleet; the error is shown to the user as it is.
pub type DemoFuture = Pin<Box<dyn Future<Output = std::result::Result<DemoInfo, String>> + Send>>;

/// A way to start the demo fleet, at most once per engine.
#[derive(Clone)]
pub struct DemoLauncher {
    start: Arc<dyn Fn(DemoContext) -> DemoFuture + Send + Sync>,
    running: Arc<tokio::sync::Mutex<Option<DemoInfo>>>,
}

impl DemoLauncher {
    pub fn new(start: impl Fn(DemoContext) -> DemoFuture + Send + Sync + 'static) -> DemoLauncher {
        DemoLauncher { start: Arc::new(start), running: Arc::new(tokio::sync::Mutex::new(None)) }
    }
}

impl fmt::Debug for DemoLauncher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoLauncher").finish_non_exhaustive()
    }
}

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
