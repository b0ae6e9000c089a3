//! Imported firmware: one row per distinct image, addressed by the image's SHA-256 (the image
//! as flashed, whether it was imported raw or as gzip).

use flotilla_proto::{Channel, Firmware, FirmwarePatch, ImageInfo, SignedManifest};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{Result, StoreError, clock};

/// A firmware about to be recorded (its file is already in the content-addressed store).
#[derive(Debug, Clone)]
pub struct NewFirmware {
    pub version: String,
    pub model: String,
    pub channel: Channel,
    pub notes: Option<String>,
    pub min_version: Option<String>,
    pub public: bool,
    pub image: ImageInfo,
    pub manifest: SignedManifest,
}

const COLUMNS: &str = "id, sha256, version, model, channel, notes, min_version, blocked, public, \
                       image_json, manifest_json, created_at, archived";

fn corrupt(id: i64, e: &serde_json::Error) -> StoreError {
    StoreError::Corrupt { what: format!("firmware {id}"), detail: e.to_string() }
}

type Raw = (i64, String, String, String, String, Option<String>, Option<String>, bool, bool, String, String, i64, bool);

fn raw(row: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
        row.get(10)?,
        row.get(11)?,
        row.get(12)?,
    ))
}

fn to_firmware(r: Raw) -> Result<Firmware> {
    let (
        id,
        sha256,
        version,
        model,
        channel,
        notes,
        min_version,
        blocked,
        public,
        image,
        manifest,
        created_at,
        archived,
    ) = r;
    let image: ImageInfo = serde_json::from_str(&image).map_err(|e| corrupt(id, &e))?;
    let manifest: SignedManifest = serde_json::from_str(&manifest).map_err(|e| corrupt(id, &e))?;
    Ok(Firmware {
        id,
        sha256,
        version,
        model,
        chip: image.chip,
        format: image.format,
        project: image.project.clone(),
        idf_version: image.idf_version.clone(),
        secure_version: image.secure_version,
        size: image.size,
        channel: Channel::parse(&channel).unwrap_or_default(),
        notes,
        min_version,
        blocked,
        public,
        archived,
        created_at: clock::rfc3339(created_at),
        image,
        manifest,
    })
}

fn one(conn: &Connection, where_clause: &str, param: &dyn rusqlite::ToSql) -> Result<Option<Firmware>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM firmware WHERE {where_clause}"))?;
    stmt.query_row([param], raw).optional()?.map(to_firmware).transpose()
}

/// Records a new firmware. Fails with [`StoreError::Conflict`] when the same model already has
/// this version with other bytes; callers look up [`by_sha256`] first to make re-imports idempotent.
pub fn insert(conn: &Connection, new: &NewFirmware) -> Result<Firmware> {
    if let Some(other) = by_model_version(conn, &new.model, &new.version)? {
        return Err(StoreError::Conflict(format!(
            "version {} of model {} is already imported with different bytes (sha256 {}, firmware {})",
            new.version, new.model, other.sha256, other.id
        )));
    }
    let image = serde_json::to_string(&new.image).map_err(|e| corrupt(0, &e))?;
    let manifest = serde_json::to_string(&new.manifest).map_err(|e| corrupt(0, &e))?;
    conn.execute(
        "INSERT INTO firmware (sha256, version, model, chip, format, project, idf_version, secure_version,
                               size, channel, notes, min_version, public, image_json, manifest_json, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        params![
            new.image.sha256,
            new.version,
            new.model,
            new.image.chip.as_str(),
            serde_json::to_value(new.image.format).ok().and_then(|v| v.as_str().map(str::to_owned)),
            new.image.project,
            new.image.idf_version,
            new.image.secure_version,
            i64::try_from(new.image.size).map_err(|_| StoreError::Conflict("firmware too large".into()))?,
            new.channel.as_str(),
            new.notes,
            new.min_version,
            new.public,
            image,
            manifest,
            clock::now_ms(),
        ],
    )?;
    get(conn, conn.last_insert_rowid())?.ok_or_else(|| StoreError::NotFound { what: "firmware just inserted".into() })
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Firmware>> {
    one(conn, "id = ?1", &id)
}

pub fn by_sha256(conn: &Connection, sha256: &str) -> Result<Option<Firmware>> {
    one(conn, "sha256 = ?1", &sha256)
}

pub fn by_model_version(conn: &Connection, model: &str, version: &str) -> Result<Option<Firmware>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM firmware WHERE model = ?1 AND version = ?2"))?;
    stmt.query_row(params![model, version], raw).optional()?.map(to_firmware).transpose()
}

/// Replaces the image facts of a firmware (its gzip form was added); its identity stays.
pub fn set_image(conn: &Connection, id: i64, image: &ImageInfo) -> Result<Firmware> {
    let json = serde_json::to_string(image).map_err(|e| corrupt(id, &e))?;
    let n = conn.execute("UPDATE firmware SET image_json = ?2 WHERE id = ?1", params![id, json])?;
    if n == 0 {
        return Err(StoreError::NotFound { what: format!("firmware {id}") });
    }
    get(conn, id)?.ok_or_else(|| StoreError::NotFound { what: format!("firmware {id}") })
}

/// Replaces the signed manifest of a firmware (its stepping stone changed).
pub fn set_manifest(conn: &Connection, id: i64, manifest: &SignedManifest) -> Result<()> {
    let json = serde_json::to_string(manifest).map_err(|e| corrupt(id, &e))?;
    let n = conn.execute("UPDATE firmware SET manifest_json = ?2 WHERE id = ?1", params![id, json])?;
    if n == 0 {
        return Err(StoreError::NotFound { what: format!("firmware {id}") });
    }
    Ok(())
}

/// Gives a firmware a new identity: its image's SHA-256, format and size, its image facts and
/// the manifest signed for them (a firmware an older version imported as gzip, addressed by its
/// gzip file until then).
pub fn set_identity(conn: &Connection, id: i64, image: &ImageInfo, manifest: &SignedManifest) -> Result<Firmware> {
    let image_json = serde_json::to_string(image).map_err(|e| corrupt(id, &e))?;
    let manifest_json = serde_json::to_string(manifest).map_err(|e| corrupt(id, &e))?;
    let n = conn.execute(
        "UPDATE firmware SET sha256 = ?2, format = ?3, size = ?4, image_json = ?5, manifest_json = ?6 WHERE id = ?1",
        params![
            id,
            image.sha256,
            serde_json::to_value(image.format).ok().and_then(|v| v.as_str().map(str::to_owned)),
            i64::try_from(image.size).map_err(|_| StoreError::Conflict("firmware too large".into()))?,
            image_json,
            manifest_json,
        ],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound { what: format!("firmware {id}") });
    }
    get(conn, id)?.ok_or_else(|| StoreError::NotFound { what: format!("firmware {id}") })
}

/// Firmware whose SHA-256 starts with `prefix` (lower-case hex), at most `limit`.
pub fn by_sha256_prefix(conn: &Connection, prefix: &str, limit: u32) -> Result<Vec<Firmware>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM firmware WHERE substr(sha256, 1, length(?1)) = ?1 ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![prefix, limit], raw)?;
    rows.map(|r| to_firmware(r?)).collect()
}

/// Every firmware, newest first.
pub fn list(conn: &Connection) -> Result<Vec<Firmware>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM firmware ORDER BY id DESC"))?;
    let rows = stmt.query_map([], raw)?;
    rows.map(|r| to_firmware(r?)).collect()
}

/// Applies `patch`; returns the firmware as stored.
pub fn patch(conn: &Connection, id: i64, patch: &FirmwarePatch) -> Result<Firmware> {
    let n = conn.execute(
        "UPDATE firmware SET blocked = coalesce(?2, blocked), public = coalesce(?3, public),
                             channel = coalesce(?4, channel), notes = coalesce(?5, notes),
                             archived = coalesce(?6, archived),
                             min_version = CASE WHEN ?7 IS NULL THEN min_version WHEN ?7 = '' THEN NULL ELSE ?7 END
         WHERE id = ?1",
        params![
            id,
            patch.blocked,
            patch.public,
            patch.channel.map(Channel::as_str),
            patch.notes,
            patch.archived,
            patch.min_version
        ],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound { what: format!("firmware {id}") });
    }
    get(conn, id)?.ok_or_else(|| StoreError::NotFound { what: format!("firmware {id}") })
}

/// The rollouts that use this firmware: `(id, name)`, oldest first.
pub fn rollouts_using(conn: &Connection, id: i64) -> Result<Vec<(i64, String)>> {
    let mut stmt = conn.prepare_cached("SELECT id, name FROM rollouts WHERE firmware_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Deletes a firmware no rollout uses. Returns the deleted row (its file is the caller's to remove).
pub fn delete_unused(conn: &Connection, id: i64) -> Result<Firmware> {
    let fw = get(conn, id)?.ok_or_else(|| StoreError::NotFound { what: format!("firmware {id}") })?;
    let used = rollouts_using(conn, id)?;
    if !used.is_empty() {
        let names: Vec<String> = used.iter().take(3).map(|(id, name)| format!("rollout {id} \"{name}\"")).collect();
        let more = if used.len() > 3 { format!(" and {} more", used.len() - 3) } else { String::new() };
        return Err(StoreError::Conflict(format!(
            "firmware {} ({}) is used by {}{more}: its report needs it; archive it to hide it, or block it",
            fw.version,
            fw.model,
            names.join(", ")
        )));
    }
    conn.execute("DELETE FROM firmware WHERE id = ?1", [id])?;
    Ok(fw)
}
