//! The schema: every file of `migrations/`, embedded in order.
//!
//! Files are named `NNNN_name.sql` and listed here by hand; a test checks that the list and the
//! folder agree, so a migration can be neither forgotten nor reordered. Never edit a migration that
//! has landed: add one.

use rusqlite_migration::{M, Migrations};

/// `(file name, SQL)` of every migration, oldest first.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init.sql", include_str!("../../../migrations/0001_init.sql")),
    ("0002_rollout_engine.sql", include_str!("../../../migrations/0002_rollout_engine.sql")),
    ("0003_device_history.sql", include_str!("../../../migrations/0003_device_history.sql")),
    ("0004_steering.sql", include_str!("../../../migrations/0004_steering.sql")),
    ("0005_device_auth.sql", include_str!("../../../migrations/0005_device_auth.sql")),
    ("0006_family_generation.sql", include_str!("../../../migrations/0006_family_generation.sql")),
];

/// The migrations, ready to apply. Each runs in its own transaction with `user_version` bumped in it.
pub fn migrations() -> Migrations<'static> {
    Migrations::new(MIGRATIONS.iter().map(|(_, sql)| M::up(sql)).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rusqlite::Connection;
    use rusqlite_migration::SchemaVersion;

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
    }

    #[test]
    fn list_matches_the_migrations_folder() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        on_disk.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(listed, on_disk, "schema::MIGRATIONS must list every file of migrations/, in order");
        for (i, name) in listed.iter().enumerate() {
            let prefix = format!("{:04}_", i + 1);
            assert!(name.starts_with(&prefix), "{name} should start with {prefix}");
        }
    }

    #[test]
    fn shelly_generations_and_arduino_are_renamed_and_old_source_lists_still_read() {
        let all = migrations();
        let mut conn = Connection::open_in_memory().unwrap();
        all.to_version(&mut conn, 5).unwrap();
        for (mac, family) in [
            ("aa:bb:cc:00:00:01", "shelly-gen1"),
            ("aa:bb:cc:00:00:02", "shelly-gen2"),
            ("aa:bb:cc:00:00:03", "arduino-ota"),
            ("aa:bb:cc:00:00:04", "tasmota"),
        ] {
            conn.execute(
                "INSERT INTO devices (mac, family, sources, first_seen, last_seen) VALUES (?1, ?2, '[\"mdns\"]', 1000, 2000)",
                [mac, family],
            )
            .unwrap();
        }
        all.to_latest(&mut conn).unwrap();
        let devices = crate::devices::list(&conn).unwrap();
        let got: Vec<(&str, Option<u8>)> = devices.iter().map(|d| (d.family.as_str(), d.generation)).collect();
        assert_eq!(got, [("shelly", Some(1)), ("shelly", Some(2)), ("arduino", None), ("tasmota", None)]);
        let d = &devices[0];
        assert_eq!(d.sources, ["mdns"]);
        assert_eq!(
            (d.seen.len(), d.seen[0].source.as_str(), d.seen[0].last_seen.as_str()),
            (1, "mdns", d.last_seen.as_str())
        );
    }

    #[test]
    fn every_earlier_schema_upgrades_to_the_latest() {
        let all = migrations();
        let latest = MIGRATIONS.len();
        for from in 0..=latest {
            let mut conn = Connection::open_in_memory().unwrap();
            conn.pragma_update(None, "foreign_keys", "ON").unwrap();
            all.to_version(&mut conn, from).unwrap();
            all.to_latest(&mut conn).unwrap();
            assert_eq!(
                all.current_version(&conn).unwrap(),
                SchemaVersion::Inside(std::num::NonZeroUsize::new(latest).unwrap()),
                "upgrade from version {from}"
            );
        }
    }

    /// A site written by the first schema — a firmware, a device with a label, a rollout with a
    /// job, an event — upgrades with every row and every reference between them intact.
    #[test]
    fn a_site_of_the_first_schema_upgrades_whole() {
        let all = migrations();
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        all.to_version(&mut conn, 1).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO firmware (id, sha256, version, model, chip, format, size, image_json, manifest_json, created_at)
                 VALUES (7, '{}', '2.0.0', 'pump', 'esp32', 'esp32', 1000, '{{}}', '{{}}', 1);
             INSERT INTO devices (mac, device_id, family, version, sources, first_seen, last_seen)
                 VALUES ('aa:bb:cc:00:00:01', 'pump-1', 'native', '1.0.0', '[\"checkin\"]', 1000, 2000);
             INSERT INTO labels (mac, label) VALUES ('aa:bb:cc:00:00:01', 'hall');
             INSERT INTO rollouts (id, name, firmware_id, state, created_at, updated_at) VALUES (3, 'r', 7, 'running', 1, 2);
             INSERT INTO jobs (rollout_id, mac, state, from_version, created_at, updated_at)
                 VALUES (3, 'aa:bb:cc:00:00:01', 'commanded', '1.0.0', 1, 2);
             INSERT INTO events (at, kind, actor, subject) VALUES (1, 'rollout.started', 'admin', 'rollout:3');",
            "ab".repeat(32)
        ))
        .unwrap();
        all.to_latest(&mut conn).unwrap();
        let count = |table: &str| -> i64 {
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
        };
        for table in ["firmware", "devices", "labels", "rollouts", "jobs", "events"] {
            assert_eq!(count(table), 1, "{table} after the upgrade");
        }
        let fk_violations: i64 =
            conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
        assert_eq!(fk_violations, 0);
        let job: (i64, String, i64) = conn
            .query_row(
                "SELECT j.rollout_id, j.mac, r.firmware_id FROM jobs j JOIN rollouts r ON r.id = j.rollout_id",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(job, (3, "aa:bb:cc:00:00:01".to_owned(), 7));
        let devices = crate::devices::list(&conn).unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(
            (devices[0].device_id.as_deref(), devices[0].labels.as_slice()),
            (Some("pump-1"), &["hall".to_owned()][..])
        );
    }
}
