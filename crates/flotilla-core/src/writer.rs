//! The store writer: one thread that owns writing, batching whatever is queued into one
//! transaction.
//!
//! High-rate changes (check-ins, progress) are queued and written behind; a change that must be
//! durable before the engine acts on it (a job commanded) is followed by [`Writer::flush`], which
//! returns once everything queued before it is committed. Audit events are sent to the live
//! stream only after their transaction commits.
//!
//! A batch that fails for a passing cause (a full disk, an I/O error, a lock) is kept and tried
//! again, with what was queued since, until it lands: with back-off from [`RETRY_FIRST`] to
//! [`RETRY_MAX`], and at once when someone waits for a flush. Meanwhile the store is marked
//! disk-full (when that is the cause; [`Writer::disk_full`], a live `storage.changed` event), and
//! every flush answers with an error (`507` for a full disk), so nothing acts on a change that is
//! not on disk yet, but nothing is dropped either. A batch that fails for any other reason (a
//! constraint) is written one change at a time and only the changes that cannot be written are
//! dropped, each logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
    /// `last_seen` (ms) of devices whose check-ins changed nothing else.
    LastSeen(Vec<(String, i64)>),
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
    Flush(oneshot::Sender<Result<(), Unsaved>>),
}

/// Why a flush's writes are not on disk (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unsaved {
    /// The disk is full; the writes are kept and retried.
    DiskFull,
    /// Another passing failure (I/O, a lock); the writes are kept and retried.
    Retrying(String),
}

/// The first wait before a failed batch is tried again; it doubles up to [`RETRY_MAX`].
pub(crate) const RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two tries of a failed batch.
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(5);
/// Tries of a failed batch after every handle is gone (the engine has stopped) before it is given up.
const TRIES_AFTER_CLOSE: u32 = 3;

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
    /// Set while a batch cannot be written because the disk is full.
    disk_full: Arc<AtomicBool>,
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

    /// Waits up to `delay` before a failed batch is tried again (less when a flush is queued or
    /// the queue closes), then takes what was queued meanwhile. Also says whether it is closed.
    fn next_retry(&self, delay: Duration) -> (Vec<Op>, bool) {
        let mut st = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = std::time::Instant::now() + delay;
        while !st.flush && !st.closed {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            st.gathering = true;
            st = self.wake.wait_timeout(st, left).unwrap_or_else(std::sync::PoisonError::into_inner).0;
            st.gathering = false;
        }
        st.flush = false;
        (std::mem::take(&mut st.ops), st.closed)
    }
}

impl Writer {
    /// Starts the writer thread on `store`; `events` receives each audit event after commit.
    pub fn start(store: Arc<std::sync::Mutex<Store>>, events: broadcast::Sender<Event>) -> Result<Writer> {
        let queue = Arc::new(Queue::new(GATHER));
        let thread_queue = Arc::clone(&queue);
        let disk_full = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&disk_full);
        std::thread::Builder::new()
            .name("flotilla-store-writer".into())
            .spawn(move || {
                let _dead = Dead(Arc::clone(&thread_queue));
                run(&thread_queue, &store, &events, &flag);
            })
            .map_err(|e| CoreError::io("cannot start the store writer thread", e))?;
        Ok(Writer { handle: Arc::new(Handle { queue }), disk_full })
    }

    /// True while changes cannot be saved because the disk is full.
    pub fn disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Relaxed)
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

    /// Resolves once every write queued before it is committed. Fails (without waiting for the
    /// retries) when they could not be written: [`CoreError::disk_full`] for a full disk.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.handle.queue.push([Op::Flush(tx)]);
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Unsaved::DiskFull)) => Err(CoreError::disk_full()),
            Ok(Err(Unsaved::Retrying(why))) => {
                Err(CoreError::Conflict(format!("the store could not save a change yet ({why}); it is retried")))
            }
            Err(_) => Err(CoreError::Conflict("the store could not save a change; see the log".into())),
        }
    }
}

/// The writer thread: group commit (what arrives within [`GATHER`] — a burst of reports, a wave
/// of check-ins — goes into one transaction, unless someone waits for durability), and a failed
/// batch kept and retried until it lands.
fn run(queue: &Queue, store: &std::sync::Mutex<Store>, live: &broadcast::Sender<Event>, disk_full: &AtomicBool) {
    let mut pending: Vec<Op> = Vec::new();
    let mut delay = RETRY_FIRST;
    let mut tries_after_close = 0;
    loop {
        let batch = if pending.is_empty() {
            match queue.next_batch() {
                Some(b) => b,
                None => break,
            }
        } else {
            let (more, closed) = queue.next_retry(delay);
            if closed {
                tries_after_close += 1;
            }
            let mut b = std::mem::take(&mut pending);
            b.extend(more);
            b
        };
        match write_batch(store, live, batch) {
            Ok(()) => {
                delay = RETRY_FIRST;
                if disk_full.swap(false, Ordering::Relaxed) {
                    tracing::warn!("the disk has room again: every change kept meanwhile is saved");
                    announce(live, false);
                }
            }
            Err((kept, e)) => {
                let full = e.is_disk_full();
                if full && !disk_full.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        error = %e,
                        "the disk is full: changes are not being saved; they are kept in memory and retried until there is room"
                    );
                    announce(live, true);
                } else if !full {
                    tracing::warn!(error = %e, retry_in = ?delay, "store write failed; the batch is kept and retried");
                }
                if tries_after_close >= TRIES_AFTER_CLOSE {
                    tracing::error!(
                        error = %e,
                        changes = kept.len(),
                        "the engine stopped before the store could save its last changes; they are lost"
                    );
                    break;
                }
                pending = kept;
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Tells the live stream whether changes are being saved (`storage.changed`, not stored).
fn announce(live: &broadcast::Sender<Event>, disk_full: bool) {
    let _ = live.send(Event {
        id: 0,
        at: flotilla_store::clock::rfc3339(flotilla_store::clock::now_ms()),
        kind: "storage.changed".into(),
        actor: "engine".into(),
        subject: None,
        data: serde_json::json!({ "disk_full": disk_full }),
    });
}

/// A failure that passes by itself (room freed, a lock released): the batch is kept and retried.
fn passing(e: &flotilla_store::StoreError) -> bool {
    use flotilla_store::rusqlite::ErrorCode as C;
    if e.is_disk_full() {
        return true;
    }
    match e {
        flotilla_store::StoreError::Sqlite(s) => matches!(
            s.sqlite_error_code(),
            Some(C::SystemIoFailure | C::DatabaseBusy | C::DatabaseLocked | C::CannotOpen | C::OutOfMemory)
        ),
        flotilla_store::StoreError::Io { .. } => true,
        _ => false,
    }
}

/// Writes a batch in one transaction. On a passing failure the batch comes back (its flushes
/// answered with the failure) to be retried; on any other, each change is written on its own and
/// only those that fail are dropped.
fn write_batch(
    store: &std::sync::Mutex<Store>,
    live: &broadcast::Sender<Event>,
    batch: Vec<Op>,
) -> std::result::Result<(), (Vec<Op>, flotilla_store::StoreError)> {
    let (flushes, batch): (Vec<Op>, Vec<Op>) = batch.into_iter().partition(|op| matches!(op, Op::Flush(_)));
    let flushes: Vec<oneshot::Sender<Result<(), Unsaved>>> =
        flushes.into_iter().filter_map(|op| if let Op::Flush(done) = op { Some(done) } else { None }).collect();
    let batch = dedupe(batch);
    let live_listeners = live.receiver_count() > 0;
    let mut appended = Vec::new();
    let result = match store.lock() {
        Ok(mut s) => s.write(|tx| {
            for op in &batch {
                write_op(tx, op, live_listeners, &mut appended)?;
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
            for done in flushes {
                let _ = done.send(Ok(()));
            }
            Ok(())
        }
        Err(e) if passing(&e) => {
            let why = if e.is_disk_full() { Unsaved::DiskFull } else { Unsaved::Retrying(e.to_string()) };
            for done in flushes {
                let _ = done.send(Err(why.clone()));
            }
            Err((batch, e))
        }
        // Something in the batch cannot be written (a constraint): write what can, one by one.
        Err(e) => {
            tracing::error!(error = %e, "store write failed; writing the batch one change at a time");
            let mut kept = Vec::new();
            let mut failure = None;
            for op in batch {
                if failure.is_some() {
                    kept.push(op);
                    continue;
                }
                let mut appended = Vec::new();
                let one = match store.lock() {
                    Ok(mut s) => s.write(|tx| write_op(tx, &op, live_listeners, &mut appended)),
                    Err(_) => Err(flotilla_store::StoreError::Conflict("store lock poisoned".into())),
                };
                match one {
                    Ok(()) => {
                        for ev in appended {
                            let _ = live.send(ev);
                        }
                    }
                    Err(e) if passing(&e) => {
                        kept.push(op);
                        failure = Some(e);
                    }
                    Err(e) => tracing::error!(error = %e, change = ?op, "a change could not be saved and was dropped"),
                }
            }
            match failure {
                None => {
                    for done in flushes {
                        let _ = done.send(Ok(()));
                    }
                    Ok(())
                }
                Some(e) => {
                    let why = if e.is_disk_full() { Unsaved::DiskFull } else { Unsaved::Retrying(e.to_string()) };
                    for done in flushes {
                        let _ = done.send(Err(why.clone()));
                    }
                    Err((kept, e))
                }
            }
        }
    }
}

/// A batch often holds many writes of the same job or device (progress, check-ins): each is
/// written once, with its newest value, at the place of its first write — so a row a later op
/// refers to (labels → device) is always written before that op.
fn dedupe(mut batch: Vec<Op>) -> Vec<Op> {
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
    batch.retain(|op| match op {
        Op::Job(j) => j.id != SKIP,
        Op::Device { device, .. } => !device.mac.is_empty(),
        _ => true,
    });
    batch
}

fn write_op(
    tx: &flotilla_store::rusqlite::Connection,
    op: &Op,
    live_listeners: bool,
    appended: &mut Vec<Event>,
) -> flotilla_store::Result<()> {
    match op {
        Op::Device { device, transport } => devices::put(tx, device, transport.as_deref())?,
        Op::LastSeen(seen) => devices::touch(tx, seen)?,
        Op::Labels { mac, labels } => devices::set_labels(tx, mac, labels)?,
        Op::Channel { mac, channel } => devices::set_channel(tx, mac, *channel).map(drop)?,
        Op::LabelChannel { label, channel } => devices::set_label_channel(tx, label, *channel)?,
        Op::Forget { mac } => devices::forget(tx, mac)?,
        Op::Credential(c) => flotilla_store::auth::put_credential(tx, c)?,
        Op::ForgetCredential { mac } => flotilla_store::auth::delete_credential(tx, mac)?,
        Op::ReportedLabels { mac, labels } => flotilla_store::auth::set_reported_labels(tx, mac, labels)?,
        Op::Evidence(e) => flotilla_store::auth::put_evidence(tx, e)?,
        // The live copy is built only when someone listens.
        Op::Event(ev) if live_listeners => appended.push(events::append(tx, ev)?),
        Op::Event(ev) => events::insert(tx, ev).map(drop)?,
        Op::Job(j) => rollouts::update_job(tx, j)?,
        Op::Transition(t) => rollouts::add_transition(tx, t)?,
        Op::Rollout(r) => rollouts::update_rollout(tx, r)?,
        Op::Flush(_) => {}
    }
    Ok(())
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
        let (tx, _done) = oneshot::channel();
        queue.push([Op::Flush(tx)]);
        // One batch, in order, the flush last (handed to the writer, not dropped).
        let batch = batches.recv_timeout(WAIT).ok().flatten().unwrap_or_default();
        assert_eq!(names(&batch), ["1", "2", "3", "flush"]);
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
        let writer = Writer { handle: Arc::new(Handle { queue }), disk_full: Arc::new(AtomicBool::new(false)) };
        assert!(writer.flush().await.is_err());
    }

    fn event(n: u32) -> Op {
        Op::Event(NewEvent::new("test.kept", "test", None, serde_json::json!({ "n": n })))
    }

    /// The `n` of every stored event, oldest first.
    fn stored_events(store: &std::sync::Mutex<Store>) -> Vec<u64> {
        let s = store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut page = events::page(s.conn(), events::Filter::default(), 1000).map(|p| p.events).unwrap_or_default();
        page.sort_by_key(|e| e.id);
        page.iter().filter_map(|e| e.data["n"].as_u64()).collect()
    }

    #[tokio::test]
    async fn a_batch_that_cannot_be_written_now_is_kept_and_lands_later() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| CoreError::io("tempdir", e))?;
        let path = dir.path().join("flotilla.db");
        let store = Store::open(&path)?;
        store.conn().busy_timeout(std::time::Duration::from_millis(5)).map_err(flotilla_store::StoreError::from)?;
        let store = Arc::new(std::sync::Mutex::new(store));
        // Another connection holds the database: every write of the writer fails with BUSY.
        let other = flotilla_store::open_existing(&path)?;
        other.execute_batch("BEGIN EXCLUSIVE").map_err(flotilla_store::StoreError::from)?;
        let (live, _) = broadcast::channel(16);
        let writer = Writer::start(Arc::clone(&store), live)?;
        writer.send(event(1));
        let err = writer.flush().await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("retried"), "a flush says the change is not saved yet: {err}");
        assert!(!writer.disk_full(), "a lock is not a full disk");
        writer.send(event(2));
        // Released: the kept change and the new one both land, in order.
        other.execute_batch("ROLLBACK").map_err(flotilla_store::StoreError::from)?;
        writer.flush().await?;
        assert_eq!(stored_events(&store), [1, 2]);
        Ok(())
    }

    #[tokio::test]
    async fn a_change_that_can_never_be_written_is_dropped_alone() -> Result<()> {
        let store = Arc::new(std::sync::Mutex::new(Store::open_in_memory()?));
        let (live, _) = broadcast::channel(16);
        let writer = Writer::start(Arc::clone(&store), live)?;
        // Labels of a device that does not exist break a foreign key; the events around them land.
        writer.send_all(vec![
            event(1),
            Op::Labels { mac: "02:00:00:00:00:99".into(), labels: vec!["x".into()] },
            event(2),
        ]);
        writer.flush().await?;
        assert_eq!(stored_events(&store), [1, 2]);
        Ok(())
    }
}
