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
    Device {
        device: flotilla_proto::Device,
        transport: Option<String>,
    },
    Labels {
        mac: String,
        labels: Vec<String>,
    },
    /// The channel set on a device itself (`None` clears it).
    Channel {
        mac: String,
        channel: Option<flotilla_proto::Channel>,
    },
    /// The channel of a label (`None` clears it).
    LabelChannel {
        label: String,
        channel: Option<flotilla_proto::Channel>,
    },
    /// Forget a device (see `flotilla_store::devices::forget`).
    Forget {
        mac: String,
    },
    Event(NewEvent),
    /// Device identity (see `crate::auth`): a credential written or removed, the labels a
    /// device reports, a job's evidence.
    Credential(flotilla_store::auth::CredentialRow),
    ForgetCredential {
        mac: String,
    },
    ReportedLabels {
        mac: String,
        labels: Vec<String>,
    },
    Evidence(flotilla_store::auth::EvidenceRow),
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

/// Writes that end the gathering at once (the transaction then holds whatever is queued).
const BATCH: usize = 4096;

/// Handle to the writer thread. When the last handle is dropped the thread writes what is
/// queued and ends.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    handle: Arc<Handle>,
}

/// The queue between the engine and the writer thread. A send wakes the thread only when it
/// waits for work, or when a flush or a full batch arrives while it gathers; a plain write is
/// picked up when the gathering ends, so a burst of writes costs no wake-up each.
#[derive(Debug)]
struct Queue {
    state: std::sync::Mutex<QueueState>,
    wake: std::sync::Condvar,
    /// How long a batch gathers ([`GATHER`]; longer in tests).
    gather: std::time::Duration,
}

#[derive(Debug, Default)]
struct QueueState {
    ops: Vec<Op>,
    /// A flush is queued: gathering ends now.
    flush: bool,
    /// The thread sleeps until something is queued.
    idle: bool,
    /// The thread gathers until a deadline, a flush or a full batch.
    gathering: bool,
    /// Every handle is gone.
    closed: bool,
    /// The thread has ended: nothing queued will be written.
    dead: bool,
}

/// Owned by the handles; closes the queue when the last one goes.
#[derive(Debug)]
struct Handle {
    queue: Arc<Queue>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut st = self.queue.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        st.closed = true;
        drop(st);
        self.queue.wake.notify_one();
    }
}

/// Marks the queue dead when the writer thread ends, however it ends, and drops what is queued
/// (waiters on a flush then get an error instead of waiting forever).
struct Dead(Arc<Queue>);

impl Drop for Dead {
    fn drop(&mut self) {
        let mut st = self.0.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        st.dead = true;
        st.ops.clear();
    }
}

impl Queue {
    fn new(gather: std::time::Duration) -> Queue {
        Queue { state: std::sync::Mutex::default(), wake: std::sync::Condvar::new(), gather }
    }

    fn push(&self, ops: impl IntoIterator<Item = Op>) {
        let mut st = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if st.dead {
            // Dropping a flush's sender tells its waiter the write did not happen.
            tracing::error!("store writer has stopped; a change was not saved");
            return;
        }
        for op in ops {
            st.flush |= matches!(op, Op::Flush(_));
            st.ops.push(op);
        }
        let wake = st.idle || (st.gathering && (st.flush || st.ops.len() >= BATCH));
        if wake {
            // Only one wake-up per wait.
            st.idle = false;
            st.gathering = false;
        }
        drop(st);
        if wake {
            self.wake.notify_one();
        }
    }

    /// The next batch: waits for a first write, then gathers for up to `gather` unless a
    /// flush is queued or the batch is full. `None` once the queue is closed and empty.
    fn next_batch(&self) -> Option<Vec<Op>> {
        let mut st = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while st.ops.is_empty() {
            if st.closed {
                return None;
            }
            st.idle = true;
            st = self.wake.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
            st.idle = false;
        }
        let until = std::time::Instant::now() + self.gather;
        while !st.flush && !st.closed && st.ops.len() < BATCH {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            st.gathering = true;
            st = self.wake.wait_timeout(st, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
            st.gathering = false;
        }
        st.flush = false;
        Some(std::mem::take(&mut st.ops))
    }
}

impl Writer {
    /// Starts the writer thread on `store`; `events` receives each audit event after commit.
    pub fn start(store: Arc<std::sync::Mutex<Store>>, events: broadcast::Sender<Event>) -> Result<Writer> {
        let queue = Arc::new(Queue::new(GATHER));
        let thread_queue = Arc::clone(&queue);
        std::thread::Builder::new()
            .name("flotilla-store-writer".into())
            .spawn(move || {
                let _dead = Dead(Arc::clone(&thread_queue));
                // Group commit: what arrives within GATHER (a burst of reports, a wave of
                // check-ins) goes into one transaction, unless someone waits for durability.
                while let Some(batch) = thread_queue.next_batch() {
                    write_batch(&store, &events, batch);
                }
            })
            .map_err(|e| CoreError::io("cannot start the store writer thread", e))?;
        Ok(Writer { handle: Arc::new(Handle { queue }) })
    }

    /// Queues a write (returns at once).
    pub fn send(&self, op: Op) {
        self.handle.queue.push([op]);
    }

    /// Queues writes in order (returns at once).
    pub fn send_all(&self, ops: Vec<Op>) {
        if !ops.is_empty() {
            self.handle.queue.push(ops);
        }
    }

    /// Resolves once every write queued before it is committed.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.handle.queue.push([Op::Flush(tx)]);
        rx.await.map_err(|_| CoreError::Conflict("the store could not save a change; see the log".into()))
    }
}

fn write_batch(store: &std::sync::Mutex<Store>, live: &broadcast::Sender<Event>, batch: Vec<Op>) {
    // A batch often holds many writes of the same job or device (progress, check-ins): write each
    // once, with its newest value, at the place of its first write — so a row a later op refers to
    // (labels → device) is always written before that op.
    let mut batch = batch;
    // A forgotten device may be seen again in the same batch: its writes keep their order then.
    let dedupe_devices = !batch.iter().any(|op| matches!(op, Op::Forget { .. }));
    let mut newest_job: HashMap<i64, JobRow> = HashMap::new();
    let mut newest_device: HashMap<String, (flotilla_proto::Device, Option<String>)> = HashMap::new();
    for op in &batch {
        match op {
            Op::Job(j) => {
                newest_job.insert(j.id, j.clone());
            }
            Op::Device { device, transport } if dedupe_devices => {
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
            Op::Device { device, transport } if dedupe_devices => {
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
                    Op::Channel { mac, channel } => devices::set_channel(tx, &mac, channel).map(drop)?,
                    Op::LabelChannel { label, channel } => devices::set_label_channel(tx, &label, channel)?,
                    Op::Forget { mac } => devices::forget(tx, &mac)?,
                    Op::Credential(c) => flotilla_store::auth::put_credential(tx, &c)?,
                    Op::ForgetCredential { mac } => flotilla_store::auth::delete_credential(tx, &mac)?,
                    Op::ReportedLabels { mac, labels } => flotilla_store::auth::set_reported_labels(tx, &mac, &labels)?,
                    Op::Evidence(e) => flotilla_store::auth::put_evidence(tx, &e)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn label(n: usize) -> Op {
        Op::Labels { mac: format!("{n}"), labels: Vec::new() }
    }

    fn names(batch: &[Op]) -> Vec<String> {
        batch
            .iter()
            .map(|op| match op {
                Op::Labels { mac, .. } => mac.clone(),
                Op::Flush(_) => "flush".into(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Runs `next_batch` on a thread; the receiver gets each batch (and `None` at the end).
    fn consumer(queue: &Arc<Queue>) -> std::sync::mpsc::Receiver<Option<Vec<Op>>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let queue = Arc::clone(queue);
        std::thread::spawn(move || {
            loop {
                let batch = queue.next_batch();
                let end = batch.is_none();
                if tx.send(batch).is_err() || end {
                    break;
                }
            }
        });
        rx
    }

    const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

    #[test]
    fn a_flush_ends_gathering_and_keeps_order() {
        // Gathering would last an hour: only the flush can end it.
        let queue = Arc::new(Queue::new(std::time::Duration::from_secs(3600)));
        let batches = consumer(&queue);
        queue.push([label(1)]);
        queue.push([label(2), label(3)]);
        let (tx, mut done) = oneshot::channel();
        queue.push([Op::Flush(tx)]);
        let batch = batches.recv_timeout(WAIT).ok().flatten().unwrap_or_default();
        assert_eq!(names(&batch), ["1", "2", "3", "flush"]);
        // The flush was handed to the writer, not dropped.
        assert!(matches!(done.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
    }

    #[test]
    fn a_full_batch_ends_gathering() {
        let queue = Arc::new(Queue::new(std::time::Duration::from_secs(3600)));
        let batches = consumer(&queue);
        queue.push((0..BATCH).map(label));
        let batch = batches.recv_timeout(WAIT).ok().flatten().unwrap_or_default();
        assert_eq!(batch.len(), BATCH);
    }

    #[test]
    fn gathering_ends_at_its_deadline_without_a_flush() {
        let queue = Arc::new(Queue::new(std::time::Duration::from_millis(1)));
        let batches = consumer(&queue);
        queue.push([label(7)]);
        let batch = batches.recv_timeout(WAIT).ok().flatten().unwrap_or_default();
        assert_eq!(names(&batch), ["7"]);
    }

    #[test]
    fn the_last_handle_closes_the_queue_after_what_is_queued() {
        let queue = Arc::new(Queue::new(std::time::Duration::from_secs(3600)));
        let handle = Handle { queue: Arc::clone(&queue) };
        queue.push([label(1)]);
        drop(handle);
        let batches = consumer(&queue);
        let first = batches.recv_timeout(WAIT).ok().flatten().unwrap_or_default();
        assert_eq!(names(&first), ["1"]);
        assert!(matches!(batches.recv_timeout(WAIT), Ok(None)));
    }

    #[tokio::test]
    async fn a_flush_after_the_thread_ended_fails_instead_of_hanging() {
        let queue = Arc::new(Queue::new(GATHER));
        drop(Dead(Arc::clone(&queue)));
        let writer = Writer { handle: Arc::new(Handle { queue }) };
        assert!(writer.flush().await.is_err());
    }
}
