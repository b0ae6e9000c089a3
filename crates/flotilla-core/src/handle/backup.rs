//! Backups of the running engine's data dir (`POST /api/v1/backup`, `flotilla backup`).

use std::path::Path;
use std::sync::Arc;

use flotilla_proto::api::BackupSummary;
use serde_json::json;

use super::EngineHandle;
use crate::error::{CoreError, Result};

impl EngineHandle {
    /// Writes a consistent backup of this engine's data dir to the folder `dest` (see
    /// [`crate::storage`]): everything queued is saved first, and no firmware is imported or
    /// deleted while it is written.
    pub async fn backup(&self, dest: &Path, actor: &str) -> Result<BackupSummary> {
        self.shared.writer.flush().await?;
        let _library = self.shared.library.lock().await;
        let shared = Arc::clone(&self.shared);
        let to = dest.to_path_buf();
        let summary = tokio::task::spawn_blocking(move || crate::storage::create_backup(&shared.data, &to))
            .await
            .map_err(|_| CoreError::ShuttingDown)??;
        tracing::info!(path = %summary.path, firmware = summary.firmware, devices = summary.devices, "backup written");
        self.record(
            "engine.backup",
            actor,
            None,
            json!({ "path": summary.path, "firmware": summary.firmware,
            "devices": summary.devices, "rollouts": summary.rollouts }),
        )
        .await?;
        Ok(summary)
    }
}
