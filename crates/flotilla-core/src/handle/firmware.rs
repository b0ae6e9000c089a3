//! The firmware library: inspect (with the verdict of an import), import (parse, check, sign,
//! store each form), list, edit, delete, and download links with per-job tokens.
//!
//! Inspect and import decide with the same function ([`import::assess`]) against the same
//! library, so the preview a technician sees is the answer the import gives.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flotilla_proto::{
    DownloadLink, Event, Firmware, FirmwarePatch, GzipForm, ImageInfo, ImportOptions, ImportPlan, ImportResponse,
    InspectReport, PublicKey,
};
use flotilla_store::events::{self, NewEvent};
use flotilla_store::firmware as fw_table;
use flotilla_store::rusqlite::Connection;
use serde_json::json;

use super::{DEFAULT_TOKEN_TTL, EngineHandle, unix_now};
use crate::error::{CoreError, Result};
use crate::firmware::blobs::{Form, valid_sha256};
use crate::firmware::image::{self, Inspected};
use crate::firmware::import::{self, Assessment, Library};
use crate::firmware::token::valid_job;

/// The store, as the import rules read the library.
pub(crate) struct StoreLibrary<'a>(pub &'a Connection);

impl Library for StoreLibrary<'_> {
    fn by_sha256(&self, sha256: &str) -> Result<Option<Firmware>> {
        Ok(fw_table::by_sha256(self.0, sha256)?)
    }
    fn by_model_version(&self, model: &str, version: &str) -> Result<Option<Firmware>> {
        Ok(fw_table::by_model_version(self.0, model, version)?)
    }
}

impl EngineHandle {
    /// Parses `bytes` on a blocking thread, keeping the image and the gzip file.
    async fn read_image(&self, bytes: Bytes) -> Result<Inspected> {
        tokio::task::spawn_blocking(move || image::read(bytes).map_err(CoreError::from))
            .await
            .map_err(|_| CoreError::ShuttingDown)?
    }

    /// The import rules and the library checks for `info` with `opts`.
    async fn assess(&self, info: ImageInfo, opts: ImportOptions) -> Result<Assessment> {
        let shared = Arc::clone(&self.shared);
        self.shared
            .db
            .call(move |s| {
                let config = &shared.config;
                import::assess(&info, &opts, |m| config.max_image_size_for(m), Some(&StoreLibrary(s.conn())))
            })
            .await
    }

    /// What importing `bytes` with `opts` would do, storing nothing: the image facts and the
    /// verdict of the same rules and library checks [`EngineHandle::import_firmware`] applies.
    /// A file that does not parse is an error ([`CoreError::InvalidImage`]), as for import.
    pub async fn inspect_firmware(&self, bytes: Bytes, opts: ImportOptions) -> Result<InspectReport> {
        let info = self.read_image(bytes).await?.info;
        let assessed = self.assess(info.clone(), opts).await;
        import::report(info, assessed, true)
    }

    /// [`EngineHandle::inspect_firmware`] of a file on the engine's own disk (the desktop app's drops).
    pub async fn inspect_firmware_path(&self, path: &Path, opts: ImportOptions) -> Result<InspectReport> {
        let bytes = self.read_firmware_file(path).await?;
        self.inspect_firmware(bytes, opts).await
    }

    /// Imports a firmware: parse, apply the import rules, store the image (and the gzip file, for
    /// a `.bin.gz`), sign the manifest, record the row and its event. The image already in the
    /// library, in either form, answers with its firmware (`created: false`), which gains the
    /// gzip form it lacked. Nothing is left behind when any step fails.
    ///
    /// Imports of the same file run one at a time (a lock per SHA-256, besides the library lock),
    /// so every one after the first answers "already imported" with the same firmware. A re-import
    /// of a firmware whose file went missing from the disk puts the file back.
    pub async fn import_firmware(&self, bytes: Bytes, opts: ImportOptions, actor: &str) -> Result<ImportResponse> {
        let parsed = self.read_image(bytes).await?;
        let same_file = self.shared.storage.import_lock(&parsed.info.sha256);
        let _same_file = same_file.lock().await;
        let _library = self.shared.library.lock().await;
        match self.assess(parsed.info.clone(), opts).await? {
            Assessment::Duplicate { firmware, adds_gzip } => {
                self.restore_files(&firmware, &parsed).await?;
                self.import_duplicate(*firmware, adds_gzip, parsed, actor).await
            }
            Assessment::New(plan) => {
                let firmware = self.record_new(parsed, *plan, actor).await?;
                Ok(ImportResponse { firmware, created: true, gzip_added: false })
            }
        }
    }

    /// Puts back the store files of `firmware` that are missing from the disk, from the bytes of
    /// a re-import of it (each checked against the SHA-256 the row records).
    async fn restore_files(&self, firmware: &Firmware, parsed: &Inspected) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let firmware = firmware.clone();
        let image = parsed.image.clone();
        let gzip = parsed.gzip.clone().zip(parsed.info.gzip.clone());
        let image_sha = parsed.info.sha256.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let sha = &firmware.sha256;
            let mut restored = Vec::new();
            if *sha == image_sha && !shared.blobs.contains(sha, Form::Image) && shared.blobs.write(sha, Form::Image, &image)? {
                restored.push(Form::Image.file_name(sha));
            }
            if let (Some(recorded), Some((bytes, form))) = (&firmware.image.gzip, &gzip)
                && recorded.sha256 == form.sha256
                && valid_sha256(sha)
                && !shared.blobs.contains(sha, Form::Gzip)
                && shared.blobs.write(sha, Form::Gzip, bytes)?
            {
                restored.push(Form::Gzip.file_name(sha));
            }
            for name in &restored {
                shared.storage.found(name);
                tracing::warn!(firmware = firmware.id, file = %name, "a missing firmware file was restored by a re-import");
            }
            Ok(())
        })
        .await
        .map_err(|_| CoreError::ShuttingDown)?
    }

    /// The answer to an import of a firmware already in the library (which may gain its gzip form).
    async fn import_duplicate(
        &self,
        firmware: Firmware,
        adds_gzip: bool,
        parsed: Inspected,
        actor: &str,
    ) -> Result<ImportResponse> {
        {
            let firmware = Box::new(firmware);
            match (adds_gzip, parsed.gzip, parsed.info.gzip) {
                (true, Some(bytes), Some(form)) => {
                    let firmware = self.add_gzip_form(*firmware, form, bytes, actor).await?;
                    Ok(ImportResponse { firmware, created: false, gzip_added: true })
                }
                _ => Ok(ImportResponse { firmware: *firmware, created: false, gzip_added: false }),
            }
        }
    }

    /// Stores the forms of a new firmware and records it (the caller holds the library lock).
    async fn record_new(&self, parsed: Inspected, plan: ImportPlan, actor: &str) -> Result<Firmware> {
        let manifest = self.shared.key.sign(plan.manifest.clone())?;
        let new = fw_table::NewFirmware {
            version: plan.version,
            model: plan.model,
            channel: plan.channel,
            notes: plan.notes,
            min_version: plan.min_version,
            public: plan.public,
            image: import::recorded(&parsed.info),
            manifest,
        };
        let shared = Arc::clone(&self.shared);
        let actor = actor.to_owned();
        let (firmware, event) = tokio::task::spawn_blocking(move || -> Result<(Firmware, Event)> {
            let sha = new.image.sha256.clone();
            let mut written = Vec::new();
            let stored = (|| -> Result<()> {
                if shared.blobs.write(&sha, Form::Image, &parsed.image)? {
                    written.push(Form::Image);
                }
                if let Some(gz) = &parsed.gzip
                    && shared.blobs.write(&sha, Form::Gzip, gz)?
                {
                    written.push(Form::Gzip);
                }
                Ok(())
            })();
            let committed = stored.and_then(|()| {
                shared.db.0.lock().map_err(|_| CoreError::ShuttingDown).and_then(|mut s| {
                    s.write(|tx| {
                        let fw = fw_table::insert(tx, &new)?;
                        let ev = events::append(
                            tx,
                            &NewEvent::new(
                                "firmware.imported",
                                &actor,
                                Some(format!("firmware:{}", fw.id)),
                                json!({ "id": fw.id, "sha256": fw.sha256, "version": fw.version, "model": fw.model,
                                        "chip": fw.chip, "size": fw.size, "gzip": fw.image.gzip }),
                            ),
                        )?;
                        Ok((fw, ev))
                    })
                    .map_err(CoreError::from)
                })
            });
            if committed.is_err() {
                // Only what this import wrote, and only while no row names it.
                let named = shared
                    .db
                    .0
                    .lock()
                    .ok()
                    .and_then(|s| fw_table::by_sha256(s.conn(), &sha).ok())
                    .is_none_or(|row| row.is_some());
                if !named {
                    for form in written {
                        let _ = shared.blobs.remove(&sha, form);
                    }
                }
            }
            committed
        })
        .await
        .map_err(|_| CoreError::ShuttingDown)??;
        self.shared.catalog.set(&firmware);
        let _ = self.shared.events.send(event);
        Ok(firmware)
    }

    /// Stores the gzip form of a firmware that lacked one and records it (the caller holds the
    /// library lock).
    async fn add_gzip_form(&self, firmware: Firmware, form: GzipForm, bytes: Bytes, actor: &str) -> Result<Firmware> {
        let shared = Arc::clone(&self.shared);
        let actor = actor.to_owned();
        let (firmware, event) = tokio::task::spawn_blocking(move || -> Result<(Firmware, Event)> {
            let sha = firmware.sha256.clone();
            let wrote = shared.blobs.write(&sha, Form::Gzip, &bytes)?;
            let mut image = firmware.image.clone();
            image.gzip = Some(form);
            let id = firmware.id;
            let committed = shared.db.0.lock().map_err(|_| CoreError::ShuttingDown).and_then(|mut s| {
                s.write(|tx| {
                    let fw = fw_table::set_image(tx, id, &image)?;
                    let data = json!({ "id": id, "change": { "gzip": fw.image.gzip } });
                    let ev = events::append(
                        tx,
                        &NewEvent::new("firmware.changed", &actor, Some(format!("firmware:{id}")), data),
                    )?;
                    Ok((fw, ev))
                })
                .map_err(CoreError::from)
            });
            if committed.is_err() && wrote {
                let _ = shared.blobs.remove(&sha, Form::Gzip);
            }
            committed
        })
        .await
        .map_err(|_| CoreError::ShuttingDown)??;
        self.shared.catalog.set(&firmware);
        let _ = self.shared.events.send(event);
        Ok(firmware)
    }

    /// Imports a file from the engine's own disk.
    pub async fn import_firmware_path(&self, path: &Path, opts: ImportOptions, actor: &str) -> Result<ImportResponse> {
        let bytes = self.read_firmware_file(path).await?;
        self.import_firmware(bytes, opts, actor).await
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
        let mut patch = patch;
        if let Some(n) = &patch.notes
            && n.len() > 4096
        {
            return Err(CoreError::BadRequest("notes are limited to 4096 bytes".into()));
        }
        // A new stepping stone is part of what devices are told: checked like an import's, and
        // the manifest signed again with it.
        let _library = self.shared.library.lock().await;
        let mut resigned = None;
        if let Some(raw) = patch.min_version.clone() {
            let fw = self.get_firmware(id).await?;
            let min = match raw.trim() {
                "" => None,
                v => Some(import::semver(v, "min_version")?),
            };
            if let Some(m) = &min
                && crate::rollout::plan::compare_versions(m, &fw.version) == Some(std::cmp::Ordering::Greater)
            {
                return Err(CoreError::Refused(format!(
                    "min_version {m} is above the firmware's own version {}",
                    fw.version
                )));
            }
            let manifest = flotilla_proto::Manifest { min_version: min.clone(), ..fw.manifest.manifest };
            resigned = Some(self.shared.key.sign(manifest)?);
            patch.min_version = Some(min.unwrap_or_default());
        }
        let actor = actor.to_owned();
        let fw = self
            .change(move |tx| {
                if let Some(signed) = &resigned {
                    fw_table::set_manifest(tx, id, signed)?;
                }
                let fw = fw_table::patch(tx, id, &patch)?;
                // Only what was set: a field left out of the patch did not change.
                let mut change = serde_json::to_value(&patch).unwrap_or_default();
                if let Some(fields) = change.as_object_mut() {
                    fields.retain(|_, v| !v.is_null());
                }
                let data = json!({ "id": id, "version": fw.version, "model": fw.model, "change": change });
                Ok((fw, NewEvent::new("firmware.changed", &actor, Some(format!("firmware:{id}")), data)))
            })
            .await?;
        self.shared.catalog.set(&fw);
        Ok(fw)
    }

    /// Deletes a firmware no rollout uses, and its files (both forms).
    pub async fn delete_firmware(&self, id: i64, actor: &str) -> Result<Firmware> {
        let _library = self.shared.library.lock().await;
        let actor = actor.to_owned();
        let fw = self
            .change(move |tx| {
                let fw = fw_table::delete_unused(tx, id)?;
                let data = json!({ "id": id, "sha256": fw.sha256, "version": fw.version, "model": fw.model });
                Ok((fw, NewEvent::new("firmware.deleted", &actor, Some(format!("firmware:{id}")), data)))
            })
            .await?;
        self.shared.catalog.remove(&fw.sha256);
        self.shared.blobs.remove_all(&fw.sha256)?;
        for name in crate::firmware::blobs::file_names(&fw) {
            self.shared.storage.found(&name);
        }
        Ok(fw)
    }

    /// A download URL with a token for `job`, valid for `ttl`: of the raw image, or of the gzip
    /// form with `form` [`Form::Gzip`] (not found when the firmware has none).
    pub async fn download_link(
        &self,
        id: i64,
        job: Option<&str>,
        ttl: Option<Duration>,
        form: Form,
    ) -> Result<DownloadLink> {
        let fw = self.get_firmware(id).await?;
        if form == Form::Gzip && fw.image.gzip.is_none() {
            return Err(CoreError::NotFound(format!(
                "a gzip form of firmware {id} ({} {}); import its .bin.gz to add one",
                fw.model, fw.version
            )));
        }
        let job = job.unwrap_or("manual");
        if !valid_job(job) {
            return Err(CoreError::BadRequest(format!("job {job:?} must be 1-64 characters of A-Z a-z 0-9 - _")));
        }
        let ttl = ttl.unwrap_or(DEFAULT_TOKEN_TTL).min(Duration::from_secs(7 * 24 * 3600));
        let expires = unix_now() + ttl.as_secs();
        Ok(DownloadLink { url: self.firmware_form_url(&fw.sha256, form, job, expires), expires })
    }

    /// URL of a firmware's raw image on the device server, with a token for `job` until `expires`.
    pub fn firmware_url(&self, sha256: &str, job: &str, expires: u64) -> String {
        self.firmware_form_url(sha256, Form::Image, job, expires)
    }

    /// URL of one form of a firmware (`/fw/<sha256>` or `/fw/<sha256>.gz`), with a token for
    /// `job` until `expires`. One token serves both forms: it names the firmware, not the file.
    pub fn firmware_form_url(&self, sha256: &str, form: Form, job: &str, expires: u64) -> String {
        debug_assert!(valid_sha256(sha256));
        let token = self.shared.tokens.issue(sha256, job, expires);
        format!("{}/fw/{}?t={token}", self.shared.device_url, form.file_name(sha256))
    }

    pub fn public_key(&self) -> PublicKey {
        self.shared.key.public()
    }
}
