//! The inventory: devices keyed by MAC, and their labels.

use flotilla_proto::{Device, Family};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{Result, StoreError, clock};

const COLUMNS: &str = "mac, device_id, name, family, model, chip, version, ip, online, sources, first_seen, last_seen";

/// Writes a device as it is (the engine's inventory merges sightings; the store keeps the result),
/// with `transport`, how the engine reaches it (JSON). Labels are kept apart: see [`set_labels`].
pub fn put(conn: &Connection, d: &Device, transport: Option<&str>) -> Result<()> {
    let sources = serde_json::to_string(&d.sources)
        .map_err(|e| StoreError::Corrupt { what: "device sources".into(), detail: e.to_string() })?;
    let ms = |s: &str| clock::parse_rfc3339(s).unwrap_or_else(clock::now_ms);
    conn.prepare_cached(
        "INSERT INTO devices (mac, device_id, name, family, model, chip, version, ip, online, sources, first_seen, last_seen, transport)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (mac) DO UPDATE SET
            device_id = excluded.device_id, name = excluded.name, family = excluded.family,
            model = excluded.model, chip = excluded.chip, version = excluded.version, ip = excluded.ip,
            online = excluded.online, sources = excluded.sources, last_seen = excluded.last_seen,
            transport = coalesce(excluded.transport, transport)",
    )?
    .execute(params![
        d.mac,
        d.device_id,
        d.name,
        d.family.as_str(),
        d.model,
        d.chip,
        d.version,
        d.ip,
        d.online,
        sources,
        ms(&d.first_seen),
        ms(&d.last_seen),
        transport
    ])?;
    Ok(())
}

/// Replaces the labels of a device.
pub fn set_labels(conn: &Connection, mac: &str, labels: &[String]) -> Result<()> {
    conn.prepare_cached("DELETE FROM labels WHERE mac = ?1")?.execute([mac])?;
    let mut ins = conn.prepare_cached("INSERT OR IGNORE INTO labels (mac, label) VALUES (?1, ?2)")?;
    for label in labels {
        ins.execute(params![mac, label])?;
    }
    Ok(())
}

/// Every device with its transport (JSON), for loading the inventory.
pub fn list_with_transport(conn: &Connection) -> Result<Vec<(Device, Option<String>)>> {
    let devices = list(conn)?;
    let mut stmt = conn.prepare_cached("SELECT mac, transport FROM devices")?;
    let mut transports: std::collections::HashMap<String, Option<String>> = std::collections::HashMap::new();
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))? {
        let (mac, t) = row?;
        transports.insert(mac, t);
    }
    Ok(devices
        .into_iter()
        .map(|d| {
            let t = transports.remove(&d.mac).flatten();
            (d, t)
        })
        .collect())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Store;

    fn device(mac: &str) -> Device {
        Device {
            mac: mac.into(),
            device_id: Some("pump-1".into()),
            name: None,
            family: Family::Native,
            model: Some("pump".into()),
            chip: Some("esp32".into()),
            version: Some("1.0.0".into()),
            ip: Some("10.0.0.5".into()),
            online: true,
            labels: vec![],
            sources: vec!["checkin".into()],
            first_seen: clock::rfc3339(1_000),
            last_seen: clock::rfc3339(2_000),
        }
    }

    #[test]
    fn devices_round_trip_with_labels_and_transport() {
        let mut store = Store::open_in_memory().unwrap();
        let mac = "aa:bb:cc:00:11:22";
        store.write(|tx| put(tx, &device(mac), Some(r#"{"kind":"pull"}"#))).unwrap();
        store.write(|tx| set_labels(tx, mac, &["line-a".into(), "floor-2".into()])).unwrap();
        let mut d = device(mac);
        d.ip = Some("10.0.0.9".into());
        store.write(|tx| put(tx, &d, None)).unwrap();
        let got = get(store.conn(), mac).unwrap().unwrap();
        assert_eq!(got.ip.as_deref(), Some("10.0.0.9"));
        assert_eq!(got.labels, vec!["floor-2", "line-a"]);
        assert_eq!(got.first_seen, clock::rfc3339(1_000));
        let all = list_with_transport(store.conn()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1.as_deref(), Some(r#"{"kind":"pull"}"#), "a put without transport keeps the stored one");
    }
}
