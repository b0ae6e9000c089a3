//! Device identity: per-device credentials, the labels devices report, and the evidence of
//! jobs (migration 0005). The engine decides who is believed; this module only keeps it.

use rusqlite::{Connection, params};

use crate::Result;

/// The credential of one device (by MAC). `secret_hash` is the SHA-256 (hex) of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRow {
    pub mac: String,
    pub device_id: Option<String>,
    pub secret_hash: Option<String>,
    pub generation: u32,
    /// `pending`, `approved`, `revoked` or `rekey`.
    pub state: String,
    pub enrolled_at: i64,
    pub updated_at: i64,
}

/// Writes (inserts or replaces) a credential.
pub fn put_credential(conn: &Connection, c: &CredentialRow) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO device_credentials (mac, device_id, secret_hash, generation, state, enrolled_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (mac) DO UPDATE SET device_id = excluded.device_id, secret_hash = excluded.secret_hash,
            generation = excluded.generation, state = excluded.state, enrolled_at = excluded.enrolled_at,
            updated_at = excluded.updated_at",
    )?
    .execute(params![c.mac, c.device_id, c.secret_hash, c.generation, c.state, c.enrolled_at, c.updated_at])?;
    Ok(())
}

/// Removes the credential of a device (it enrols anew when it comes back).
pub fn delete_credential(conn: &Connection, mac: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM device_credentials WHERE mac = ?1")?.execute([mac])?;
    Ok(())
}

/// Every credential.
pub fn credentials(conn: &Connection) -> Result<Vec<CredentialRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT mac, device_id, secret_hash, generation, state, enrolled_at, updated_at
         FROM device_credentials ORDER BY mac",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(CredentialRow {
            mac: r.get(0)?,
            device_id: r.get(1)?,
            secret_hash: r.get(2)?,
            generation: r.get(3)?,
            state: r.get(4)?,
            enrolled_at: r.get(5)?,
            updated_at: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Replaces the labels a device reports.
pub fn set_reported_labels(conn: &Connection, mac: &str, labels: &[String]) -> Result<()> {
    conn.prepare_cached("DELETE FROM device_labels WHERE mac = ?1")?.execute([mac])?;
    let mut ins = conn.prepare_cached("INSERT OR IGNORE INTO device_labels (mac, label) VALUES (?1, ?2)")?;
    for label in labels {
        ins.execute(params![mac, label])?;
    }
    Ok(())
}

/// The labels every device reports, by MAC (each list sorted).
pub fn reported_labels(conn: &Connection) -> Result<std::collections::HashMap<String, Vec<String>>> {
    let mut out: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    let mut stmt = conn.prepare_cached("SELECT mac, label FROM device_labels ORDER BY mac, label")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (mac, label) = row?;
        out.entry(mac).or_default().push(label);
    }
    Ok(out)
}

/// The evidence of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRow {
    pub job_id: i64,
    /// The command (its number) whose download token served the image to the end.
    pub downloaded_command: Option<u32>,
    /// What the job's success rests on.
    pub evidence: Option<String>,
}

/// Writes the evidence of a job.
pub fn put_evidence(conn: &Connection, e: &EvidenceRow) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO job_evidence (job_id, downloaded_command, evidence) VALUES (?1, ?2, ?3)
         ON CONFLICT (job_id) DO UPDATE SET downloaded_command = excluded.downloaded_command,
            evidence = excluded.evidence",
    )?
    .execute(params![e.job_id, e.downloaded_command, e.evidence])?;
    Ok(())
}

/// The evidence of every job that has some.
pub fn evidence(conn: &Connection) -> Result<Vec<EvidenceRow>> {
    let mut stmt = conn.prepare_cached("SELECT job_id, downloaded_command, evidence FROM job_evidence")?;
    let rows = stmt
        .query_map([], |r| Ok(EvidenceRow { job_id: r.get(0)?, downloaded_command: r.get(1)?, evidence: r.get(2)? }))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Store;

    #[test]
    fn credentials_labels_and_evidence_round_trip() {
        let mut store = Store::open_in_memory().unwrap();
        let cred = CredentialRow {
            mac: "aa:bb:cc:00:00:01".into(),
            device_id: Some("pump-1".into()),
            secret_hash: Some("ab".repeat(32)),
            generation: 1,
            state: "approved".into(),
            enrolled_at: 1,
            updated_at: 2,
        };
        store.write(|tx| put_credential(tx, &cred)).unwrap();
        let again = CredentialRow { state: "revoked".into(), generation: 2, ..cred.clone() };
        store.write(|tx| put_credential(tx, &again)).unwrap();
        assert_eq!(credentials(store.conn()).unwrap(), vec![again]);
        store.write(|tx| delete_credential(tx, &cred.mac)).unwrap();
        assert!(credentials(store.conn()).unwrap().is_empty());
        // A state outside the four is refused by the schema.
        let bad = CredentialRow { state: "trusted".into(), ..cred };
        assert!(store.write(|tx| put_credential(tx, &bad)).is_err());
    }

    #[test]
    fn reported_labels_and_evidence_round_trip() {
        let mut store = Store::open_in_memory().unwrap();
        assert!(evidence(store.conn()).unwrap().is_empty());
        assert!(reported_labels(store.conn()).unwrap().is_empty());
        let mac = "aa:bb:cc:00:00:01";
        // Both tables hang off a device and a job (foreign keys): those rows first.
        let job_id = store
            .write(|tx| {
                crate::test_rows::firmware_and_device(tx, mac)?;
                tx.execute(
                    "INSERT INTO rollouts (name, firmware_id, state, spec_json, current_wave, seed, created_at, updated_at)
                     VALUES ('r', 1, 'running', '{}', 1, 's', 0, 0)",
                    [],
                )?;
                tx.execute(
                    "INSERT INTO jobs (rollout_id, mac, wave, state, attempts, created_at, updated_at)
                     VALUES (1, ?1, 1, 'commanded', 1, 0, 0)",
                    [mac],
                )?;
                Ok(tx.last_insert_rowid())
            })
            .unwrap();

        // Replacing, sorted, without duplicates; an empty list removes them all.
        let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        store.write(|tx| set_reported_labels(tx, mac, &labels(&["b", "a", "a"]))).unwrap();
        assert_eq!(reported_labels(store.conn()).unwrap(), [(mac.to_string(), labels(&["a", "b"]))].into());
        store.write(|tx| set_reported_labels(tx, mac, &labels(&["c"]))).unwrap();
        assert_eq!(reported_labels(store.conn()).unwrap(), [(mac.to_string(), labels(&["c"]))].into());
        store.write(|tx| set_reported_labels(tx, mac, &[])).unwrap();
        assert!(reported_labels(store.conn()).unwrap().is_empty());

        // One row a job: the second write replaces the first.
        let first = EvidenceRow { job_id, downloaded_command: Some(1), evidence: None };
        store.write(|tx| put_evidence(tx, &first)).unwrap();
        assert_eq!(evidence(store.conn()).unwrap(), vec![first]);
        let second =
            EvidenceRow { job_id, downloaded_command: Some(2), evidence: Some("authenticated+download".into()) };
        store.write(|tx| put_evidence(tx, &second)).unwrap();
        assert_eq!(evidence(store.conn()).unwrap(), vec![second]);
        // Evidence of a job that does not exist is refused (it would name nothing).
        let stray = EvidenceRow { job_id: job_id + 100, downloaded_command: Some(1), evidence: None };
        assert!(store.write(|tx| put_evidence(tx, &stray)).is_err());
    }
}
