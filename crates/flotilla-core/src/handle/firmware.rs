//! The firmware library: inspect, import (parse, check, sign, store), list, edit, delete, and
//! download links with per-job tokens.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flotilla_proto::{
    DownloadLink, Event, Firmware, FirmwarePatch, ImageInfo, ImportOptions, ImportResponse, PublicKey,
};
use flotilla_store::events::{self, NewEvent};
use flotilla_store::firmware as fw_table;
use serde_json::json;

use super::{DEFAULT_TOKEN_TTL, EngineHandle, unix_now};
use crate::error::{CoreError, Result};
use crate::firmware::blobs::valid_sha256;
use crate::firmware::token::valid_job;
use crate::firmware::{image, import};

impl EngineHandle {
    /// Parses `bytes` without importing them.
    pub async fn inspect_firmware(&self, bytes: Bytes) -> Result<ImageInfo> {
        tokio::task::spawn_blocking(move || image::inspect(&bytes).map_err(CoreError::from))
            .await
            .map_err(|_| CoreError::ShuttingDown)?
    }

    /// Imports a firmware: parse, apply the import rules, store the file, sign the manifest,
    /// record the row and its event. Idempotent for identical bytes. Nothing is left behind
    /// when any step fails.
    pub async fn import_firmware(&self, bytes: Bytes, opts: ImportOptions, actor: &str) -> Result<ImportResponse> {
        let info = self.inspect_firmware(bytes.clone()).await?;
        let sha = info.sha256.clone();
        if let Some(existing) = self.shared.db.call(move |s| Ok(fw_table::by_sha256(s.conn(), &sha)?)).await? {
            return Ok(ImportResponse { firmware: existing, created: false });
        }
        let config = &self.shared.config;
        let plan = import::plan(&info, &opts, |m| config.max_image_size_for(m))?;
        let manifest = self.shared.key.sign(plan.manifest.clone())?;
        let new = fw_table::NewFirmware {
            version: plan.version,
            model: plan.model,
            channel: plan.channel,
            notes: plan.notes,
            min_version: plan.min_version,
            public: plan.public,
            image: info,
            manifest,
        };
        let shared = Arc::clone(&self.shared);
        let actor = actor.to_owned();
        let (firmware, event) = tokio::task::spawn_blocking(move || -> Result<(Firmware, Event)> {
            let sha = new.image.sha256.clone();
            let wrote = shared.blobs.write(&sha, &bytes)?;
            let committed = shared.db.0.lock().map_err(|_| CoreError::ShuttingDown).and_then(|mut s| {
                s.write(|tx| {
                    let fw = fw_table::insert(tx, &new)?;
                    let ev = events::append(
                        tx,
                        &NewEvent::new(
                            "firmware.imported",
                            &actor,
                            Some(format!("firmware:{}", fw.id)),
                            json!({ "id": fw.id, "sha256": fw.sha256, "version": fw.version, "model": fw.model, "chip": fw.chip, "size": fw.size }),
                        ),
                    )?;
                    Ok((fw, ev))
                })
                .map_err(CoreError::from)
            });
            if committed.is_err() && wrote {
                let _ = shared.blobs.remove(&sha);
            }
            committed
        })
        .await
        .map_err(|_| CoreError::ShuttingDown)??;
        self.shared.catalog.set(&firmware);
        let _ = self.shared.events.send(event);
        Ok(ImportResponse { firmware, created: true })
    }

    /// Imports a file from the engine's own disk.
    pub async fn import_firmware_path(&self, path: &Path, opts: ImportOptions, actor: &str) -> Result<ImportResponse> {
        let bytes = self.read_firmware_file(path).await?;
        self.import_firmware(bytes, opts, actor).await
    }

    /// Parses a file on the engine's own disk without importing it (the desktop app's drops).
    pub async fn inspect_firmware_path(&self, path: &Path) -> Result<ImageInfo> {
        let bytes = self.read_firmware_file(path).await?;
        self.inspect_firmware(bytes).await
    }

    /// Reads a firmware file from disk, refusing what cannot be a firmware before reading it.
    async fn read_firmware_file(&self, path: &Path) -> Result<Bytes> {
        let limit = self.shared.config.max_image_size.saturating_mul(4).max(64 << 20);
        let meta = tokio::fs::metadata(path).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CoreError::NotFound(format!("file {}", path.display())),
            _ => CoreError::io(format!("cannot read {}", path.display()), e),
        })?;
        if !meta.is_file() {
            return Err(CoreError::BadRequest(format!("{} is not a file", path.display())));
        }
        if meta.len() > limit {
            return Err(CoreError::Refused(format!(
                "{} is {} bytes; no firmware is that large",
                path.display(),
                meta.len()
            )));
        }
        let bytes =
            tokio::fs::read(path).await.map_err(|e| CoreError::io(format!("cannot read {}", path.display()), e))?;
        Ok(Bytes::from(bytes))
    }

    pub async fn list_firmware(&self) -> Result<Vec<Firmware>> {
        self.shared.db.call(|s| Ok(fw_table::list(s.conn())?)).await
    }

    /// A firmware by id, full sha256, sha256 prefix (≥ 6 hex digits) or version (newest match).
    pub async fn find_firmware(&self, reference: &str) -> Result<Firmware> {
        let r = reference.trim().to_ascii_lowercase();
        self.shared
            .db
            .call(move |s| {
                let conn = s.conn();
                if let Ok(id) = r.parse::<i64>()
                    && let Some(f) = fw_table::get(conn, id)?
                {
                    return Ok(f);
                }
                if r.len() >= 6 && r.bytes().all(|b| b.is_ascii_hexdigit()) {
                    let found = fw_table::by_sha256_prefix(conn, &r, 2)?;
                    match found.len() {
                        1 => return found.into_iter().next().ok_or_else(|| CoreError::NotFound(r.clone())),
                        2 => return Err(CoreError::BadRequest(format!("sha256 prefix {r} matches several firmware"))),
                        _ => {}
                    }
                }
                let bare = r.strip_prefix('v').unwrap_or(&r).to_owned();
                fw_table::list(conn)?
                    .into_iter()
                    .find(|f| f.version == bare)
                    .ok_or_else(|| CoreError::NotFound(format!("firmware {r}")))
            })
            .await
    }

    pub async fn get_firmware(&self, id: i64) -> Result<Firmware> {
        self.shared
            .db
            .call(move |s| fw_table::get(s.conn(), id)?.ok_or_else(|| CoreError::NotFound(format!("firmware {id}"))))
            .await
    }

    /// Blocks/unblocks, makes public/private, changes channel or notes.
    pub async fn patch_firmware(&self, id: i64, patch: FirmwarePatch, actor: &str) -> Result<Firmware> {
        if let Some(n) = &patch.notes
            && n.len() > 4096
        {
            return Err(CoreError::BadRequest("notes are limited to 4096 bytes".into()));
        }
        let actor = actor.to_owned();
        let fw = self
            .change(move |tx| {
                let fw = fw_table::patch(tx, id, &patch)?;
                let data = json!({ "id": id, "change": patch });
                Ok((fw, NewEvent::new("firmware.changed", &actor, Some(format!("firmware:{id}")), data)))
            })
            .await?;
        self.shared.catalog.set(&fw);
        Ok(fw)
    }

    /// Deletes a firmware no rollout uses, and its file.
    pub async fn delete_firmware(&self, id: i64, actor: &str) -> Result<Firmware> {
        let actor = actor.to_owned();
        let fw = self
            .change(move |tx| {
                let fw = fw_table::delete_unused(tx, id)?;
                let data = json!({ "id": id, "sha256": fw.sha256, "version": fw.version });
                Ok((fw, NewEvent::new("firmware.deleted", &actor, Some(format!("firmware:{id}")), data)))
            })
            .await?;
        self.shared.catalog.remove(&fw.sha256);
        self.shared.blobs.remove(&fw.sha256)?;
        Ok(fw)
    }

    /// A download URL with a token for `job`, valid for `ttl`.
    pub async fn download_link(&self, id: i64, job: Option<&str>, ttl: Option<Duration>) -> Result<DownloadLink> {
        let fw = self.get_firmware(id).await?;
        let job = job.unwrap_or("manual");
        if !valid_job(job) {
            return Err(CoreError::BadRequest(format!("job {job:?} must be 1-64 characters of A-Z a-z 0-9 - _")));
        }
        let ttl = ttl.unwrap_or(DEFAULT_TOKEN_TTL).min(Duration::from_secs(7 * 24 * 3600));
        let expires = unix_now() + ttl.as_secs();
        Ok(DownloadLink { url: self.firmware_url(&fw.sha256, job, expires), expires })
    }

    /// URL of a firmware on the device server, with a token for `job` until `expires`.
    pub fn firmware_url(&self, sha256: &str, job: &str, expires: u64) -> String {
        debug_assert!(valid_sha256(sha256));
        let token = self.shared.tokens.issue(sha256, job, expires);
        format!("{}/fw/{sha256}?t={token}", self.shared.device_url)
    }

    pub fn public_key(&self) -> PublicKey {
        self.shared.key.public()
    }
}
