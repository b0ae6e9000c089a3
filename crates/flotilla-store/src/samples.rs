//! The fleet's versions over time: how many devices ran each version, sampled now and then
//! (the engine decides when; see `flotilla_core::handle`'s metrics).

use rusqlite::{Connection, params};

use crate::Result;

/// Records one sample: `(version, devices)` at `at` (Unix ms). A second sample at the same
/// millisecond replaces the first.
pub fn add(conn: &Connection, at: i64, counts: &[(String, u32)]) -> Result<()> {
    conn.prepare_cached("DELETE FROM version_samples WHERE at = ?1")?.execute([at])?;
    let mut ins = conn.prepare_cached("INSERT INTO version_samples (at, version, devices) VALUES (?1, ?2, ?3)")?;
    for (version, devices) in counts {
        ins.execute(params![at, version, devices])?;
    }
    Ok(())
}

/// One sample: when (Unix ms), and devices by version.
pub type Sample = (i64, Vec<(String, u32)>);

/// Every sample at or after `since` (Unix ms), oldest first, each with its counts by version.
pub fn since(conn: &Connection, since: i64) -> Result<Vec<Sample>> {
    let mut stmt =
        conn.prepare_cached("SELECT at, version, devices FROM version_samples WHERE at >= ?1 ORDER BY at, version")?;
    let rows = stmt.query_map([since], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, u32>(2)?)))?;
    let mut out: Vec<Sample> = Vec::new();
    for row in rows {
        let (at, version, devices) = row?;
        match out.last_mut() {
            Some((t, counts)) if *t == at => counts.push((version, devices)),
            _ => out.push((at, vec![(version, devices)])),
        }
    }
    Ok(out)
}

/// Deletes the samples older than `older_than` (Unix ms); returns how many rows.
pub fn prune(conn: &Connection, older_than: i64) -> Result<usize> {
    Ok(conn.prepare_cached("DELETE FROM version_samples WHERE at < ?1")?.execute([older_than])?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::Store;

    #[test]
    fn samples_round_trip_grouped_by_time_and_are_pruned() {
        let mut store = Store::open_in_memory().unwrap();
        let v = |s: &str, n| (s.to_owned(), n);
        store.write(|tx| add(tx, 1_000, &[v("1.0.0", 10), v("2.0.0", 0)])).unwrap();
        store.write(|tx| add(tx, 2_000, &[v("1.0.0", 4), v("2.0.0", 6)])).unwrap();
        store.write(|tx| add(tx, 2_000, &[v("1.0.0", 3), v("2.0.0", 7)])).unwrap();
        let all = since(store.conn(), 0).unwrap();
        assert_eq!(
            all,
            vec![(1_000, vec![v("1.0.0", 10), v("2.0.0", 0)]), (2_000, vec![v("1.0.0", 3), v("2.0.0", 7)])]
        );
        assert_eq!(since(store.conn(), 1_500).unwrap().len(), 1);
        assert_eq!(store.write(|tx| prune(tx, 1_500)).unwrap(), 2);
        assert_eq!(since(store.conn(), 0).unwrap().len(), 1);
    }
}
