//! The store writer: one thread that owns writing, batching whatever is queued into one
//! transaction.
//!
//! High-rate changes (check-ins, progress) are queued and written behind; a change that must be
//! durable before the engine acts on it (a job commanded) is followed by [`Writer::flush`], which
//! returns once everything queued before it is committed. Audit events are sent to the live
//! stream only after their transaction commits.

use std::collections::HashMap;
use std::sync::Arc;

use flotilla_proto::Event;
use flotilla_store::events::{self, NewEvent};
use flotilla_store::rollouts::{self, JobRow, RolloutRow, TransitionRow};
use flotilla_store::{Store, devices};
use tokio::sync::{broadcast, oneshot};

use crate::error::{CoreError, Result};

/// One queued write.
#[derive(Debug)]
pub(crate) enum Op {
    Device { device: flotilla_proto::Device, transport: Option<String> },
    Labels { mac: String, labels: Vec<String> },
    Event(NewEvent),
    Job(JobRow),
    Transition(TransitionRow),
    Rollout(RolloutRow),
    Flush(oneshot::Sender<()>),
}

/// Marks a job write superseded by a newer one in the same batch.
const SKIP: i64 = i64::MIN;

/// How long the writer gathers writes into one transaction when nobody waits for them: each
/// transaction writes every page it touched once, so fewer, larger ones write far fewer pages.
/// Audit events reach the live stream at most this much later.
const GATHER: std::time::Duration = std::time::Duration::from_millis(50);

/// Largest batch written in one transaction.
const BATCH: usize = 4096;

/// Handle to the writer thread.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    tx: std::sync::mpsc::Sender<Op>,
}

impl Writer {
    /// Starts the writer thread on `store`; `events` receives each audit event after commit.
    pub fn start(store: Arc<std::sync::Mutex<Store>>, events: broadcast::Sender<Event>) -> Result<Writer> {
        let (tx, rx) = std::sync::mpsc::channel::<Op>();
        std::thread::Builder::new()
            .name("flotilla-store-writer".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(BATCH);
                while let Ok(op) = rx.recv() {
                    // Group commit: gather what arrives within GATHER (a burst of reports, a wave of
                    // check-ins) into one transaction — unless someone waits for durability.
                    let mut urgent = matches!(op, Op::Flush(_));
                    batch.push(op);
                    let until = std::time::Instant::now() + GATHER;
                    while batch.len() < BATCH {
                        let next = if urgent {
                            rx.try_recv().ok()
                        } else {
                            let left = until.saturating_duration_since(std::time::Instant::now());
                            rx.recv_timeout(left).ok()
                        };
                        let Some(op) = next else { break };
                        urgent |= matches!(op, Op::Flush(_));
                        batch.push(op);
                    }
                    write_batch(&store, &events, std::mem::take(&mut batch));
                }
            })
            .map_err(|e| CoreError::io("cannot start the store writer thread", e))?;
        Ok(Writer { tx })
    }

    /// Queues writes (returns at once).
    pub fn send(&self, op: Op) {
        if self.tx.send(op).is_err() {
            tracing::error!("store writer has stopped; a change was not saved");
        }
    }

    /// Resolves once every write queued before it is committed.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Op::Flush(tx)).map_err(|_| CoreError::ShuttingDown)?;
        rx.await.map_err(|_| CoreError::Conflict("the store could not save a change; see the log".into()))
    }
}

fn write_batch(store: &std::sync::Mutex<Store>, live: &broadcast::Sender<Event>, batch: Vec<Op>) {
    // A batch often holds many writes of the same job or device (progress, check-ins): write each
    // once, with its newest value, at the place of its first write — so a row a later op refers to
    // (labels → device) is always written before that op.
    let mut batch = batch;
    let mut newest_job: HashMap<i64, JobRow> = HashMap::new();
    let mut newest_device: HashMap<String, (flotilla_proto::Device, Option<String>)> = HashMap::new();
    for op in &batch {
        match op {
            Op::Job(j) => {
                newest_job.insert(j.id, j.clone());
            }
            Op::Device { device, transport } => {
                let entry = newest_device.entry(device.mac.clone()).or_insert_with(|| (device.clone(), None));
                entry.0 = device.clone();
                if transport.is_some() {
                    entry.1 = transport.clone();
                }
            }
            _ => {}
        }
    }
    for op in &mut batch {
        match op {
            Op::Job(j) => {
                if let Some(newest) = newest_job.remove(&j.id) {
                    *j = newest;
                } else {
                    j.id = SKIP;
                }
            }
            Op::Device { device, transport } => {
                if let Some((d, t)) = newest_device.remove(&device.mac) {
                    *device = d;
                    *transport = t;
                } else {
                    device.mac.clear();
                }
            }
            _ => {}
        }
    }
    let mut flushes = Vec::new();
    let mut appended = Vec::new();
    let live_listeners = live.receiver_count() > 0;
    let result = match store.lock() {
        Ok(mut s) => s.write(|tx| {
            for op in batch {
                match op {
                    Op::Device { device, .. } if device.mac.is_empty() => {}
                    Op::Device { device, transport } => devices::put(tx, &device, transport.as_deref())?,
                    Op::Labels { mac, labels } => devices::set_labels(tx, &mac, &labels)?,
                    // The live copy is built only when someone listens.
                    Op::Event(ev) if live_listeners => appended.push(events::append(tx, &ev)?),
                    Op::Event(ev) => events::insert(tx, &ev).map(drop)?,
                    Op::Job(j) if j.id == SKIP => {}
                    Op::Job(j) => rollouts::update_job(tx, &j)?,
                    Op::Transition(t) => rollouts::add_transition(tx, &t)?,
                    Op::Rollout(r) => rollouts::update_rollout(tx, &r)?,
                    Op::Flush(done) => flushes.push(done),
                }
            }
            Ok(())
        }),
        Err(_) => Err(flotilla_store::StoreError::Conflict("store lock poisoned".into())),
    };
    match result {
        Ok(()) => {
            for ev in appended {
                let _ = live.send(ev);
            }
        }
        // The batch is lost as a whole (the transaction rolled back); the engine's memory still
        // holds the state and the next change of each item writes it again. Waiters on a flush
        // are dropped, so whoever needed durability before acting does not act.
        Err(e) => {
            tracing::error!(error = %e, "store write failed; the batch was rolled back");
            flushes.clear();
        }
    }
    for done in flushes {
        let _ = done.send(());
    }
}
