//! The inventory: devices keyed by MAC, and their labels.

use flotilla_proto::{Device, Family};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{Result, StoreError, clock};

/// What a source saw of a device; `None` fields keep what the store already has.
#[derive(Debug, Clone, Default)]
pub struct Sighting {
    /// Normalised MAC (see `flotilla_proto::device::normalize_mac`).
    pub mac: String,
    pub device_id: Option<String>,
    pub name: Option<String>,
    pub family: Option<Family>,
    pub model: Option<String>,
    pub chip: Option<String>,
    pub version: Option<String>,
    pub ip: Option<String>,
    /// `mdns`, `mqtt`, `checkin`, `probe`, `manual`.
    pub source: String,
}

const COLUMNS: &str = "mac, device_id, name, family, model, chip, version, ip, online, sources, first_seen, last_seen";

/// Records a sighting: creates the device or merges what is new into it, marks it online.
/// Returns the device as stored and whether it was new.
pub fn upsert(conn: &Connection, s: &Sighting) -> Result<(Device, bool)> {
    let now = clock::now_ms();
    let existing = get(conn, &s.mac)?;
    let created = existing.is_none();
    let mut sources: Vec<String> = existing.as_ref().map(|d| d.sources.clone()).unwrap_or_default();
    if !sources.iter().any(|x| x == &s.source) {
        sources.push(s.source.clone());
        sources.sort();
    }
    let sources_json = serde_json::to_string(&sources)
        .map_err(|e| StoreError::Corrupt { what: "device sources".into(), detail: e.to_string() })?;
    conn.execute(
        "INSERT INTO devices (mac, device_id, name, family, model, chip, version, ip, online, sources, first_seen, last_seen)
         VALUES (?1, ?2, ?3, coalesce(?4, 'unknown'), ?5, ?6, ?7, ?8, 1, ?9, ?10, ?10)
         ON CONFLICT (mac) DO UPDATE SET
            device_id = coalesce(excluded.device_id, device_id),
            name = coalesce(excluded.name, name),
            family = coalesce(?4, family),
            model = coalesce(excluded.model, model),
            chip = coalesce(excluded.chip, chip),
            version = coalesce(excluded.version, version),
            ip = coalesce(excluded.ip, ip),
            online = 1,
            sources = excluded.sources,
            last_seen = excluded.last_seen",
        params![
            s.mac,
            s.device_id,
            s.name,
            s.family.map(Family::as_str),
            s.model,
            s.chip,
            s.version,
            s.ip,
            sources_json,
            now
        ],
    )?;
    let device = get(conn, &s.mac)?.ok_or_else(|| StoreError::NotFound { what: format!("device {}", s.mac) })?;
    Ok((device, created))
}

fn raw_device(row: &Row<'_>) -> rusqlite::Result<(Device, String)> {
    let family: String = row.get(3)?;
    let sources: String = row.get(9)?;
    Ok((
        Device {
            mac: row.get(0)?,
            device_id: row.get(1)?,
            name: row.get(2)?,
            family: Family::parse(&family).unwrap_or(Family::Unknown),
            model: row.get(4)?,
            chip: row.get(5)?,
            version: row.get(6)?,
            ip: row.get(7)?,
            online: row.get(8)?,
            labels: Vec::new(),
            sources: Vec::new(),
            first_seen: clock::rfc3339(row.get(10)?),
            last_seen: clock::rfc3339(row.get(11)?),
        },
        sources,
    ))
}

fn finish(conn: &Connection, (mut device, sources): (Device, String)) -> Result<Device> {
    device.sources = serde_json::from_str(&sources).map_err(|e| StoreError::Corrupt {
        what: format!("sources of device {}", device.mac),
        detail: e.to_string(),
    })?;
    device.labels = labels_of(conn, &device.mac)?;
    Ok(device)
}

/// The device with this MAC.
pub fn get(conn: &Connection, mac: &str) -> Result<Option<Device>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM devices WHERE mac = ?1"))?;
    match stmt.query_row([mac], raw_device).optional()? {
        Some(raw) => Ok(Some(finish(conn, raw)?)),
        None => Ok(None),
    }
}

/// Every device, by MAC.
pub fn list(conn: &Connection) -> Result<Vec<Device>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM devices ORDER BY mac"))?;
    let raws = stmt.query_map([], raw_device)?.collect::<rusqlite::Result<Vec<_>>>()?;
    // One query for all labels instead of one per device.
    let mut labels: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    let mut lstmt = conn.prepare_cached("SELECT mac, label FROM labels ORDER BY mac, label")?;
    for row in lstmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (mac, label) = row?;
        labels.entry(mac).or_default().push(label);
    }
    raws.into_iter()
        .map(|(mut device, sources)| {
            device.sources = serde_json::from_str(&sources).map_err(|e| StoreError::Corrupt {
                what: format!("sources of device {}", device.mac),
                detail: e.to_string(),
            })?;
            device.labels = labels.remove(&device.mac).unwrap_or_default();
            Ok(device)
        })
        .collect()
}

/// Labels of one device, sorted.
pub fn labels_of(conn: &Connection, mac: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT label FROM labels WHERE mac = ?1 ORDER BY label")?;
    let rows = stmt.query_map([mac], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
}

/// Adds and removes labels of a device; returns the device as stored.
pub fn edit_labels(conn: &Connection, mac: &str, add: &[String], remove: &[String]) -> Result<Device> {
    if get(conn, mac)?.is_none() {
        return Err(StoreError::NotFound { what: format!("device {mac}") });
    }
    for label in remove {
        conn.execute("DELETE FROM labels WHERE mac = ?1 AND label = ?2", params![mac, label])?;
    }
    for label in add {
        conn.execute("INSERT OR IGNORE INTO labels (mac, label) VALUES (?1, ?2)", params![mac, label])?;
    }
    get(conn, mac)?.ok_or_else(|| StoreError::NotFound { what: format!("device {mac}") })
}

/// Marks a device offline (LWT, missed heartbeats). Returns false when the device is unknown.
pub fn set_offline(conn: &Connection, mac: &str) -> Result<bool> {
    Ok(conn.execute("UPDATE devices SET online = 0 WHERE mac = ?1", [mac])? == 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Store;

    fn sighting(mac: &str, source: &str) -> Sighting {
        Sighting { mac: mac.into(), source: source.into(), ..Sighting::default() }
    }

    #[test]
    fn sightings_merge_by_mac_and_keep_what_they_do_not_know() {
        let mut store = Store::open_in_memory().unwrap();
        let mac = "aa:bb:cc:00:11:22";
        let (first, created) = store
            .write(|tx| {
                upsert(
                    tx,
                    &Sighting {
                        ip: Some("10.0.0.5".into()),
                        version: Some("1.0.0".into()),
                        family: Some(Family::Native),
                        ..sighting(mac, "checkin")
                    },
                )
            })
            .unwrap();
        assert!(created);
        assert_eq!(first.family, Family::Native);
        // DHCP hands out a new address; mDNS reports the device without a version.
        let (second, created) =
            store.write(|tx| upsert(tx, &Sighting { ip: Some("10.0.0.9".into()), ..sighting(mac, "mdns") })).unwrap();
        assert!(!created);
        assert_eq!(second.ip.as_deref(), Some("10.0.0.9"));
        assert_eq!(second.version.as_deref(), Some("1.0.0"));
        assert_eq!(second.family, Family::Native);
        assert_eq!(second.sources, vec!["checkin", "mdns"]);
        assert_eq!(list(store.conn()).unwrap().len(), 1);
    }

    #[test]
    fn labels_are_added_removed_and_listed() {
        let mut store = Store::open_in_memory().unwrap();
        let mac = "aa:bb:cc:00:11:22";
        store.write(|tx| upsert(tx, &sighting(mac, "manual"))).unwrap();
        let d = store.write(|tx| edit_labels(tx, mac, &["line-a".into(), "floor-2".into()], &[])).unwrap();
        assert_eq!(d.labels, vec!["floor-2", "line-a"]);
        let d = store.write(|tx| edit_labels(tx, mac, &[], &["line-a".into()])).unwrap();
        assert_eq!(d.labels, vec!["floor-2"]);
        assert_eq!(list(store.conn()).unwrap()[0].labels, vec!["floor-2"]);
        let missing = store.write(|tx| edit_labels(tx, "00:00:00:00:00:00", &["x".into()], &[]));
        assert!(matches!(missing, Err(StoreError::NotFound { .. })));
    }
}
