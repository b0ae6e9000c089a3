//! The inventory: devices keyed by MAC, and the labels people set (`labels`; the labels devices
//! report are in [`crate::auth`]).

use flotilla_proto::device::SourceSeen;
use flotilla_proto::{Channel, Device, Family};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{Result, StoreError, clock};

const COLUMNS: &str = "mac, device_id, name, family, model, chip, version, ip, online, sources, first_seen, last_seen, secure_version, channel, generation";

/// One source's sighting as the `sources` column keeps it (times in ms).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSource {
    source: String,
    first: i64,
    last: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    online: bool,
}

/// The `sources` column: each source's sighting, or (rows written before 0006) their names.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum StoredSources {
    Seen(Vec<StoredSource>),
    Names(Vec<String>),
}

/// The `sources` column of a device: its per-source sightings, or for a device that has none
/// (written by hand, by a test), its source names seen when the device was.
fn sources_json(d: &Device) -> Result<String> {
    let ms = |s: &str| clock::parse_rfc3339(s).unwrap_or(0);
    let stored: Vec<StoredSource> = if d.seen.is_empty() {
        d.sources
            .iter()
            .map(|s| StoredSource {
                source: s.clone(),
                first: ms(&d.first_seen),
                last: ms(&d.last_seen),
                version: None,
                ip: None,
                online: d.online,
            })
            .collect()
    } else {
        d.seen
            .iter()
            .map(|s| StoredSource {
                source: s.source.clone(),
                first: ms(&s.first_seen),
                last: ms(&s.last_seen),
                version: s.version.clone(),
                ip: s.ip.clone(),
                online: s.online,
            })
            .collect()
    };
    serde_json::to_string(&stored)
        .map_err(|e| StoreError::Corrupt { what: "device sources".into(), detail: e.to_string() })
}

/// Fills `sources` and `seen` of a device read back from its `sources` column.
fn read_sources(device: &mut Device, json: &str) -> Result<()> {
    let parsed: StoredSources = serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        what: format!("sources of device {}", device.mac),
        detail: e.to_string(),
    })?;
    match parsed {
        StoredSources::Names(names) => {
            device.seen = names
                .iter()
                .map(|n| SourceSeen {
                    source: n.clone(),
                    first_seen: device.first_seen.clone(),
                    last_seen: device.last_seen.clone(),
                    version: None,
                    ip: None,
                    online: device.online,
                })
                .collect();
            device.sources = names;
        }
        StoredSources::Seen(seen) => {
            device.sources = seen.iter().map(|s| s.source.clone()).collect();
            device.seen = seen
                .into_iter()
                .map(|s| SourceSeen {
                    source: s.source,
                    first_seen: clock::rfc3339(s.first),
                    last_seen: clock::rfc3339(s.last),
                    version: s.version,
                    ip: s.ip,
                    online: s.online,
                })
                .collect();
        }
    }
    device.sources.sort();
    device.seen.sort_by(|a, b| a.source.cmp(&b.source));
    Ok(())
}

/// Writes a device as it is (the engine's inventory merges sightings; the store keeps the result),
/// with `transport`, how the engine reaches it (JSON). Labels and the device's own channel are
/// kept apart: see [`set_labels`] and [`set_channel`]. A forgotten device written again comes back
/// as new (its first sighting is this one).
pub fn put(conn: &Connection, d: &Device, transport: Option<&str>) -> Result<()> {
    let sources = sources_json(d)?;
    let ms = |s: &str| clock::parse_rfc3339(s).unwrap_or_else(clock::now_ms);
    conn.prepare_cached(
        "INSERT INTO devices (mac, device_id, name, family, model, chip, version, ip, online, sources, first_seen, last_seen,
                              transport, secure_version, generation)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (mac) DO UPDATE SET
            device_id = excluded.device_id, name = excluded.name, family = excluded.family,
            model = excluded.model, chip = excluded.chip, version = excluded.version, ip = excluded.ip,
            online = excluded.online, sources = excluded.sources, last_seen = excluded.last_seen,
            transport = coalesce(excluded.transport, transport), secure_version = excluded.secure_version,
            generation = excluded.generation,
            first_seen = CASE WHEN forgotten = 1 THEN excluded.first_seen ELSE first_seen END,
            forgotten = 0",
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
        transport,
        d.secure_version,
        d.generation
    ])?;
    Ok(())
}

/// Moves `last_seen` of devices forward (ms), never back: the write-behind of check-ins that
/// changed nothing else, one small update per device instead of its whole row.
pub fn touch(conn: &Connection, seen: &[(String, i64)]) -> Result<()> {
    let mut stmt = conn.prepare_cached("UPDATE devices SET last_seen = ?2 WHERE mac = ?1 AND last_seen < ?2")?;
    for (mac, ms) in seen {
        stmt.execute(params![mac, ms])?;
    }
    Ok(())
}

/// Sets (or clears) the channel a device itself follows; false when there is no such device.
pub fn set_channel(conn: &Connection, mac: &str, channel: Option<Channel>) -> Result<bool> {
    let n = conn
        .prepare_cached("UPDATE devices SET channel = ?2 WHERE mac = ?1 AND forgotten = 0")?
        .execute(params![mac, channel.map(Channel::as_str)])?;
    Ok(n > 0)
}

/// Forgets a device: out of the inventory with its labels and channel. The row itself goes
/// unless past jobs refer to it (their reports need it); then it stays, marked forgotten, until
/// the device is seen again.
pub fn forget(conn: &Connection, mac: &str) -> Result<()> {
    let jobs: i64 = conn.query_row("SELECT count(*) FROM jobs WHERE mac = ?1", [mac], |r| r.get(0))?;
    if jobs == 0 {
        conn.prepare_cached("DELETE FROM devices WHERE mac = ?1")?.execute([mac])?;
    } else {
        conn.prepare_cached("DELETE FROM labels WHERE mac = ?1")?.execute([mac])?;
        conn.prepare_cached("UPDATE devices SET forgotten = 1, channel = NULL, online = 0 WHERE mac = ?1")?
            .execute([mac])?;
    }
    Ok(())
}

/// The channel followed by devices carrying each label.
pub fn label_channels(conn: &Connection) -> Result<Vec<(String, Channel)>> {
    let mut stmt = conn.prepare_cached("SELECT label, channel FROM label_channels ORDER BY label")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (label, channel) = row?;
        out.push((label, Channel::parse(&channel).unwrap_or_default()));
    }
    Ok(out)
}

/// Sets (or, with `None`, clears) the channel of a label.
pub fn set_label_channel(conn: &Connection, label: &str, channel: Option<Channel>) -> Result<()> {
    match channel {
        Some(c) => conn
            .prepare_cached(
                "INSERT INTO label_channels (label, channel) VALUES (?1, ?2)
                 ON CONFLICT (label) DO UPDATE SET channel = excluded.channel",
            )?
            .execute(params![label, c.as_str()])?,
        None => conn.prepare_cached("DELETE FROM label_channels WHERE label = ?1")?.execute([label])?,
    };
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

/// Every device (but the forgotten) with its transport (JSON), for loading the inventory.
pub fn list_with_transport(conn: &Connection) -> Result<Vec<(Device, Option<String>)>> {
    let devices = list(conn)?;
    let mut stmt = conn.prepare_cached("SELECT mac, transport FROM devices WHERE forgotten = 0")?;
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
    let channel: Option<String> = row.get(13)?;
    let channel = channel.as_deref().and_then(Channel::parse);
    Ok((
        Device {
            mac: row.get(0)?,
            device_id: row.get(1)?,
            name: row.get(2)?,
            family: Family::parse(&family).unwrap_or(Family::Unknown),
            generation: row.get(14)?,
            model: row.get(4)?,
            chip: row.get(5)?,
            version: row.get(6)?,
            ip: row.get(7)?,
            online: row.get(8)?,
            secure_version: row.get(12)?,
            channel: channel.unwrap_or_default(),
            channel_from: channel.map(|_| "device".to_owned()),
            labels: Vec::new(),
            admin_labels: Vec::new(),
            device_labels: Vec::new(),
            auth: flotilla_proto::device::DeviceAuth::None,
            authenticated: false,
            sources: Vec::new(),
            seen: Vec::new(),
            first_seen: clock::rfc3339(row.get(10)?),
            last_seen: clock::rfc3339(row.get(11)?),
        },
        sources,
    ))
}

fn finish(conn: &Connection, (mut device, sources): (Device, String)) -> Result<Device> {
    read_sources(&mut device, &sources)?;
    device.labels = labels_of(conn, &device.mac)?;
    device.admin_labels = device.labels.clone();
    Ok(device)
}

/// The device with this MAC.
pub fn get(conn: &Connection, mac: &str) -> Result<Option<Device>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM devices WHERE mac = ?1 AND forgotten = 0"))?;
    match stmt.query_row([mac], raw_device).optional()? {
        Some(raw) => Ok(Some(finish(conn, raw)?)),
        None => Ok(None),
    }
}

/// Every device, by MAC.
pub fn list(conn: &Connection) -> Result<Vec<Device>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM devices WHERE forgotten = 0 ORDER BY mac"))?;
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
            read_sources(&mut device, &sources)?;
            device.labels = labels.remove(&device.mac).unwrap_or_default();
            device.admin_labels = device.labels.clone();
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
            generation: None,
            model: Some("pump".into()),
            chip: Some("esp32".into()),
            version: Some("1.0.0".into()),
            ip: Some("10.0.0.5".into()),
            online: true,
            secure_version: None,
            channel: Channel::Stable,
            channel_from: None,
            labels: vec![],
            admin_labels: vec![],
            device_labels: vec![],
            auth: flotilla_proto::device::DeviceAuth::None,
            authenticated: false,
            sources: vec!["checkin".into()],
            seen: vec![],
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
        d.generation = Some(3);
        let seen = |source: &str, last: i64, online: bool| SourceSeen {
            source: source.into(),
            first_seen: clock::rfc3339(1_000),
            last_seen: clock::rfc3339(last),
            version: Some("1.0.0".into()),
            ip: Some("10.0.0.9".into()),
            online,
        };
        d.sources = vec!["checkin".into(), "mdns".into()];
        d.seen = vec![seen("checkin", 2_000, true), seen("mdns", 1_500, false)];
        store.write(|tx| put(tx, &d, None)).unwrap();
        let got = get(store.conn(), mac).unwrap().unwrap();
        assert_eq!(got.ip.as_deref(), Some("10.0.0.9"));
        assert_eq!(got.generation, Some(3));
        assert_eq!(
            (got.sources.clone(), got.seen.clone()),
            (d.sources.clone(), d.seen.clone()),
            "each source's record"
        );
        assert_eq!(got.labels, vec!["floor-2", "line-a"]);
        assert_eq!(got.first_seen, clock::rfc3339(1_000));
        // The write-behind of last_seen moves it forward only.
        store.write(|tx| touch(tx, &[(mac.to_owned(), 5_000), ("00:00:00:00:00:00".to_owned(), 1)])).unwrap();
        assert_eq!(get(store.conn(), mac).unwrap().unwrap().last_seen, clock::rfc3339(5_000));
        store.write(|tx| touch(tx, &[(mac.to_owned(), 4_000)])).unwrap();
        assert_eq!(get(store.conn(), mac).unwrap().unwrap().last_seen, clock::rfc3339(5_000), "never back");
        let all = list_with_transport(store.conn()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1.as_deref(), Some(r#"{"kind":"pull"}"#), "a put without transport keeps the stored one");
    }

    #[test]
    fn a_forgotten_device_leaves_the_inventory_and_comes_back_as_new() {
        let mut store = Store::open_in_memory().unwrap();
        let (kept, gone) = ("aa:bb:cc:00:11:22", "aa:bb:cc:00:11:33");
        store.write(|tx| put(tx, &device(kept), None)).unwrap();
        store.write(|tx| put(tx, &device(gone), None)).unwrap();
        store.write(|tx| set_labels(tx, kept, &["line-a".into()])).unwrap();
        store.write(|tx| set_channel(tx, kept, Some(Channel::Beta))).unwrap();
        assert_eq!(get(store.conn(), kept).unwrap().unwrap().channel_from.as_deref(), Some("device"));
        // A past job refers to `kept`: its row stays, marked forgotten.
        store
            .write(|tx| {
                tx.execute(
                    "INSERT INTO firmware (sha256, version, model, chip, format, size, image_json, manifest_json, created_at)
                     VALUES (?1, '1.0.0', 'm', 'esp32', 'esp32', 1, '{}', '{}', 0)",
                    ["a".repeat(64)],
                )?;
                tx.execute("INSERT INTO rollouts (name, firmware_id, created_at, updated_at) VALUES ('r', 1, 0, 0)", [])?;
                tx.execute(
                    "INSERT INTO jobs (rollout_id, mac, created_at, updated_at) VALUES (1, ?1, 0, 0)",
                    [kept],
                )?;
                Ok(())
            })
            .unwrap();
        store.write(|tx| forget(tx, kept)).unwrap();
        store.write(|tx| forget(tx, gone)).unwrap();
        assert!(list(store.conn()).unwrap().is_empty());
        assert!(get(store.conn(), kept).unwrap().is_none());
        let n: i64 = store.conn().query_row("SELECT count(*) FROM devices", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1, "the device with a past job keeps its row");
        // Seen again: back, as new, without its old labels or channel.
        let mut again = device(kept);
        again.first_seen = clock::rfc3339(9_000);
        store.write(|tx| put(tx, &again, None)).unwrap();
        let back = get(store.conn(), kept).unwrap().unwrap();
        assert_eq!(back.first_seen, clock::rfc3339(9_000));
        assert!(back.labels.is_empty());
        assert_eq!((back.channel, back.channel_from), (Channel::Stable, None));
    }

    #[test]
    fn label_channels_are_set_and_cleared() {
        let mut store = Store::open_in_memory().unwrap();
        store.write(|tx| set_label_channel(tx, "line-a", Some(Channel::Beta))).unwrap();
        store.write(|tx| set_label_channel(tx, "line-b", Some(Channel::Stable))).unwrap();
        store.write(|tx| set_label_channel(tx, "line-b", None)).unwrap();
        assert_eq!(label_channels(store.conn()).unwrap(), vec![("line-a".to_owned(), Channel::Beta)]);
    }
}
