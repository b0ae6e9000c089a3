//! Rollouts, their jobs (one per device) and each job's transitions.
//!
//! Rows are plain data with states as text: what a state means, and which transition is allowed,
//! is the engine's business (`flotilla_core::rollout`).

use rusqlite::{Connection, Row, params};

use crate::Result;

/// A rollout row. Times are Unix ms.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRow {
    pub id: i64,
    pub name: String,
    pub firmware_id: i64,
    pub state: String,
    pub spec_json: String,
    pub current_wave: u32,
    pub pause_reason: Option<String>,
    /// When it paused (paused rollouts only).
    pub paused_at: Option<i64>,
    /// What paused it: `person`, `failures`, `gate` or `approval`.
    pub pause_kind: Option<String>,
    pub seed: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A job row: one device in one rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub id: i64,
    pub rollout_id: i64,
    pub mac: String,
    pub device_id: Option<String>,
    pub wave: u32,
    pub state: String,
    pub attempts: u32,
    pub from_version: Option<String>,
    pub current_version: Option<String>,
    pub error: Option<String>,
    pub progress: Option<u8>,
    pub deadline: Option<i64>,
    pub acknowledged: bool,
    pub commands: u32,
    /// `attempts` when a person last asked for a retry: automatic retries count from here.
    pub retry_base: u32,
    /// Skipped by the plan: in no wave.
    pub excluded: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One state a job entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRow {
    pub job_id: i64,
    pub state: String,
    pub at: i64,
    pub detail: Option<String>,
}

/// Inserts a rollout (its `id` is ignored) and returns its id.
pub fn insert_rollout(conn: &Connection, r: &RolloutRow) -> Result<i64> {
    conn.execute(
        "INSERT INTO rollouts (name, firmware_id, state, spec_json, current_wave, pause_reason, paused_at, pause_kind, seed,
                               created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            r.name,
            r.firmware_id,
            r.state,
            r.spec_json,
            r.current_wave,
            r.pause_reason,
            r.paused_at,
            r.pause_kind,
            r.seed,
            r.created_at,
            r.updated_at
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Updates the mutable fields of a rollout.
pub fn update_rollout(conn: &Connection, r: &RolloutRow) -> Result<()> {
    conn.prepare_cached(
        "UPDATE rollouts SET state = ?2, current_wave = ?3, pause_reason = ?4, paused_at = ?5, pause_kind = ?6,
                             updated_at = ?7
         WHERE id = ?1",
    )?
    .execute(params![r.id, r.state, r.current_wave, r.pause_reason, r.paused_at, r.pause_kind, r.updated_at])?;
    Ok(())
}

/// Inserts a job (its `id` is ignored) and returns its id.
pub fn insert_job(conn: &Connection, j: &JobRow) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO jobs (rollout_id, mac, device_id, wave, state, attempts, from_version, current_version, error,
                           progress, deadline, acknowledged, commands, retry_base, excluded, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?
    .execute(params![
        j.rollout_id,
        j.mac,
        j.device_id,
        j.wave,
        j.state,
        j.attempts,
        j.from_version,
        j.current_version,
        j.error,
        j.progress,
        j.deadline,
        j.acknowledged,
        j.commands,
        j.retry_base,
        j.excluded,
        j.created_at,
        j.updated_at
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Writes the mutable fields of a job. Its wave is fixed when the rollout is planned and is not
/// written again: naming it here would make SQLite update the `jobs_rollout` index on every write.
pub fn update_job(conn: &Connection, j: &JobRow) -> Result<()> {
    conn.prepare_cached(
        "UPDATE jobs SET state = ?2, attempts = ?3, current_version = ?4, error = ?5, progress = ?6, deadline = ?7,
                         acknowledged = ?8, commands = ?9, retry_base = ?10, updated_at = ?11
         WHERE id = ?1",
    )?
    .execute(params![
        j.id,
        j.state,
        j.attempts,
        j.current_version,
        j.error,
        j.progress,
        j.deadline,
        j.acknowledged,
        j.commands,
        j.retry_base,
        j.updated_at
    ])?;
    Ok(())
}

pub fn add_transition(conn: &Connection, t: &TransitionRow) -> Result<()> {
    conn.prepare_cached("INSERT INTO job_transitions (job_id, state, at, detail) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![t.job_id, t.state, t.at, t.detail])?;
    Ok(())
}

fn rollout_row(r: &Row<'_>) -> rusqlite::Result<RolloutRow> {
    Ok(RolloutRow {
        id: r.get(0)?,
        name: r.get(1)?,
        firmware_id: r.get(2)?,
        state: r.get(3)?,
        spec_json: r.get(4)?,
        current_wave: r.get(5)?,
        pause_reason: r.get(6)?,
        paused_at: r.get(7)?,
        pause_kind: r.get(8)?,
        seed: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

/// Every rollout, oldest first.
pub fn list_rollouts(conn: &Connection) -> Result<Vec<RolloutRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, firmware_id, state, spec_json, current_wave, pause_reason, paused_at, pause_kind, seed,
                created_at, updated_at
         FROM rollouts ORDER BY id",
    )?;
    Ok(stmt.query_map([], rollout_row)?.collect::<rusqlite::Result<_>>()?)
}

/// Every job of a rollout, by id.
pub fn jobs_of(conn: &Connection, rollout_id: i64) -> Result<Vec<JobRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, rollout_id, mac, device_id, wave, state, attempts, from_version, current_version, error,
                progress, deadline, acknowledged, commands, retry_base, excluded, created_at, updated_at
         FROM jobs WHERE rollout_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([rollout_id], |r| {
        Ok(JobRow {
            id: r.get(0)?,
            rollout_id: r.get(1)?,
            mac: r.get(2)?,
            device_id: r.get(3)?,
            wave: r.get(4)?,
            state: r.get(5)?,
            attempts: r.get(6)?,
            from_version: r.get(7)?,
            current_version: r.get(8)?,
            error: r.get(9)?,
            progress: r.get(10)?,
            deadline: r.get(11)?,
            acknowledged: r.get(12)?,
            commands: r.get(13)?,
            retry_base: r.get(14)?,
            excluded: r.get(15)?,
            created_at: r.get(16)?,
            updated_at: r.get(17)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every transition of a rollout's jobs, oldest first.
pub fn transitions_of(conn: &Connection, rollout_id: i64) -> Result<Vec<TransitionRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT t.job_id, t.state, t.at, t.detail FROM job_transitions t JOIN jobs j ON j.id = t.job_id
         WHERE j.rollout_id = ?1 ORDER BY t.id",
    )?;
    let rows = stmt.query_map([rollout_id], |r| {
        Ok(TransitionRow { job_id: r.get(0)?, state: r.get(1)?, at: r.get(2)?, detail: r.get(3)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Store;

    #[test]
    fn rollouts_jobs_and_transitions_round_trip() {
        let mut store = Store::open_in_memory().unwrap();
        store.write(|tx| Ok(crate::test_rows::firmware_and_device(tx, "aa:bb:cc:00:11:22")?)).unwrap();
        let r = RolloutRow {
            id: 0,
            name: "r".into(),
            firmware_id: 1,
            state: "draft".into(),
            spec_json: "{}".into(),
            current_wave: 0,
            pause_reason: None,
            paused_at: None,
            pause_kind: None,
            seed: "s".into(),
            created_at: 1,
            updated_at: 1,
        };
        let id = store.write(|tx| insert_rollout(tx, &r)).unwrap();
        let mut j = JobRow {
            id: 0,
            rollout_id: id,
            mac: "aa:bb:cc:00:11:22".into(),
            device_id: None,
            wave: 1,
            state: "queued".into(),
            attempts: 0,
            from_version: Some("0.9.0".into()),
            current_version: None,
            error: None,
            progress: None,
            deadline: None,
            acknowledged: false,
            commands: 0,
            retry_base: 0,
            excluded: false,
            created_at: 1,
            updated_at: 1,
        };
        j.id = store.write(|tx| insert_job(tx, &j)).unwrap();
        j.state = "commanded".into();
        j.commands = 1;
        store
            .write(|tx| {
                update_job(tx, &j)?;
                add_transition(tx, &TransitionRow { job_id: j.id, state: "commanded".into(), at: 5, detail: None })
            })
            .unwrap();
        assert_eq!(jobs_of(store.conn(), id).unwrap(), vec![j.clone()]);
        assert_eq!(transitions_of(store.conn(), id).unwrap().len(), 1);
        let mut r2 = list_rollouts(store.conn()).unwrap().remove(0);
        r2.state = "running".into();
        store.write(|tx| update_rollout(tx, &r2)).unwrap();
        assert_eq!(list_rollouts(store.conn()).unwrap()[0].state, "running");
    }
}
