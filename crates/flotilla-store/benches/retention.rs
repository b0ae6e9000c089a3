//! The audit log's retention at the scale it is meant for: a real SQLite file (WAL, as the engine
//! opens it) holding 1,000,000 events, the default maximum. Measured:
//! - `prune_batch_5000`: one batch of pruning (5,000 oldest events deleted in one transaction),
//!   which is how long the engine's store is held by the background pruning at a time;
//! - `since_bound`: finding the first event of a time (`GET /api/v1/events?since=`), a binary
//!   search over ids, with the log at that size.
//!
//! Run: `cargo bench -p flotilla-store --bench retention -- --warm-up-time 1 --measurement-time 5`
//! (`cargo test` runs it once, on a log of 20,000 events).

#![allow(clippy::expect_used)] // a benchmark: a failure here is the benchmark failing

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use flotilla_store::Store;
use flotilla_store::events::{self, NewEvent};
use serde_json::json;

const BATCH: u32 = 5_000;

/// Appends `n` events of a realistic size, one transaction per 50,000.
fn fill(store: &mut Store, n: u32) {
    let mut left = n;
    while left > 0 {
        let chunk = left.min(50_000);
        store
            .write(|tx| {
                for i in 0..chunk {
                    let data = json!({ "rollout": 3, "job": i, "mac": "02:00:00:00:01:2c", "wave": 2, "attempt": 1, "detail": "attempt 1" });
                    events::insert(tx, &NewEvent::new("job.commanded", "engine", Some("device:02:00:00:00:01:2c".into()), data))?;
                }
                Ok(())
            })
            .expect("fill");
        left -= chunk;
    }
}

fn retention(c: &mut Criterion) {
    let size: u32 = if std::env::args().any(|a| a == "--bench") { 1_000_000 } else { 20_000 };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("flotilla.db")).expect("open");
    let t = Instant::now();
    fill(&mut store, size);
    eprintln!("filled {size} events in {:.1} s", t.elapsed().as_secs_f64());

    let mut group = c.benchmark_group("retention");
    group.sample_size(20);
    // Each sample: BATCH events appended (untimed), then one batch pruned back to `size` (timed).
    group.bench_function("prune_batch_5000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                fill(&mut store, BATCH);
                let t = Instant::now();
                let n = store.write(|tx| events::prune_batch(tx, 0, u64::from(size), BATCH)).expect("prune");
                total += t.elapsed();
                assert_eq!(n, BATCH as usize);
            }
            total
        });
    });
    let mid = {
        let first = events::page(store.conn(), events::Filter::default(), 1).expect("page");
        first.events.first().map(|e| flotilla_store::clock::parse_rfc3339(&e.at).unwrap_or(0)).unwrap_or(0)
    };
    group.bench_function("since_bound", |b| {
        b.iter(|| events::first_id_at_or_after(store.conn(), black_box(mid)).expect("bound"));
    });
    group.finish();
}

criterion_group!(benches, retention);
criterion_main!(benches);
