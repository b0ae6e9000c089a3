//! The demo fleet hook: a shell (the desktop app, `flotilla serve --demo`) can give the engine a
//! way to start a simulated fleet, which the admin API's `POST /api/v1/demo` (the UI's first-run
//! button) then uses. The engine never depends on the simulator; it only calls what it was given.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use flotilla_proto::api::DemoInfo;

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
    pub(crate) start: Arc<dyn Fn(DemoContext) -> DemoFuture + Send + Sync>,
    pub(crate) running: Arc<tokio::sync::Mutex<Option<DemoInfo>>>,
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
