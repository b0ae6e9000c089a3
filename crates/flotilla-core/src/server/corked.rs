//! Small responses written together: a device connection's writes wait in its own buffer until
//! the runtime worker that served it runs out of work (or [`MAX_QUEUED`] connections wait), and
//! are then written one after another.
//!
//! Why: on a saturated worker, each response written on its own lands while the client is asleep
//! waiting for it, and waking the client (`sock_def_readable` → `try_to_wake_up`, an
//! inter-processor interrupt when it sleeps on the other core) is then paid by the engine for every
//! response: a tenth of the worker's time under `wrk` (`docs/performance.md`). Written together,
//! the first response wakes the client and the rest find it awake; it answers them together too.
//! The delay a response takes on is bounded by the work already queued on the worker when it was
//! made (which runs first either way) or by [`MAX_QUEUED`] responses.
//!
//! Only what fits in [`MAX_PENDING`] waits; anything larger (a firmware download) is written
//! through, after what waits, in order. Deferral happens only on threads whose runtime calls
//! [`flush_queued`] when the thread parks (the engine's, [`crate::runtime::build`]), and only once
//! it has: elsewhere (tests' runtimes, `block_on`) every write goes straight to the socket.
//! A write the kernel refuses when flushed (a full socket buffer) wakes the connection, which
//! writes the rest as sockets usually are, waiting for the socket to be writable; an error is
//! kept and returned by the connection's next read or write.

use std::cell::{Cell, RefCell};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Most bytes a connection keeps waiting; a write that would go beyond is written through.
pub const MAX_PENDING: usize = 16 * 1024;
/// Most connections waiting on one thread: the one that makes it this many flushes them all.
pub const MAX_QUEUED: usize = 64;

thread_local! {
    /// Connections of this thread with bytes waiting, in the order they were queued.
    static QUEUE: RefCell<Vec<Arc<Shared>>> = const { RefCell::new(Vec::new()) };
    /// Does this thread's runtime flush [`QUEUE`] when it parks (it has done so once)?
    static FLUSHED_ON_PARK: Cell<bool> = const { Cell::new(false) };
}

/// Writes every connection waiting on this thread. The engine's runtime calls it before each
/// worker parks (`on_thread_park`); from then on, that thread defers writes.
pub fn flush_queued() {
    FLUSHED_ON_PARK.with(|f| f.set(true));
    let queued = QUEUE.with(|q| std::mem::take(&mut *q.borrow_mut()));
    for shared in queued {
        shared.flush_now();
    }
}

/// A TCP stream whose small writes wait to be written together (see the module documentation).
pub struct Corked {
    read: OwnedReadHalf,
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
}

struct State {
    write: OwnedWriteHalf,
    /// Bytes written by the connection and not yet by the socket, in order.
    pending: Vec<u8>,
    /// In a thread's queue.
    queued: bool,
    /// What a flush could not write: the connection's next read or write returns it.
    error: Option<io::Error>,
    /// The connection's task, woken when a flush leaves bytes behind or fails.
    waker: Option<Waker>,
}

impl Corked {
    pub fn new(stream: TcpStream) -> Corked {
        let (read, write) = stream.into_split();
        let state = State { write, pending: Vec::new(), queued: false, error: None, waker: None };
        Corked { read, shared: Arc::new(Shared { state: Mutex::new(state) }) }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held left plain bytes: still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes what waits without waiting for the socket: the rest stays, and the connection is
    /// woken to write it once the socket takes more.
    fn flush_now(&self) {
        let mut st = self.lock();
        st.queued = false;
        while !st.pending.is_empty() {
            match st.write.try_write(&st.pending) {
                Ok(0) => {
                    st.error = Some(io::ErrorKind::WriteZero.into());
                    break;
                }
                Ok(n) => drop(st.pending.drain(..n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    st.pending.clear();
                    st.error = Some(e);
                    break;
                }
            }
        }
        if (!st.pending.is_empty() || st.error.is_some())
            && let Some(w) = st.waker.take()
        {
            w.wake();
        }
    }
}

impl State {
    /// Writes what waits, waiting for the socket as a plain write does.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.error.take() {
            return Poll::Ready(Err(e));
        }
        while !self.pending.is_empty() {
            match Pin::new(&mut self.write).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => drop(self.pending.drain(..n)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    fn remember(&mut self, cx: &Context<'_>) {
        match &self.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => self.waker = Some(cx.waker().clone()),
        }
    }
}

/// May writes on this thread wait for [`flush_queued`]?
fn deferring() -> bool {
    FLUSHED_ON_PARK.with(Cell::get)
}

impl AsyncRead for Corked {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        {
            let mut st = this.shared.lock();
            if let Some(e) = st.error.take() {
                return Poll::Ready(Err(e));
            }
            st.remember(cx);
            // Bytes a flush left behind: written as the socket takes them (this registers for
            // writability); reading goes on meanwhile.
            if !st.pending.is_empty()
                && !st.queued
                && let Poll::Ready(Err(e)) = st.drive(cx)
            {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut this.read).poll_read(cx, buf)
    }
}

impl Corked {
    /// Writes `len` bytes given by `put`: kept to wait when deferring and they fit, else after
    /// what waits, straight to the socket.
    fn write_with(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        put: impl FnOnce(&mut Vec<u8>),
        direct: impl FnOnce(Pin<&mut OwnedWriteHalf>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let mut st = self.shared.lock();
        if let Some(e) = st.error.take() {
            return Poll::Ready(Err(e));
        }
        if deferring() && st.pending.len() + len <= MAX_PENDING {
            put(&mut st.pending);
            return Poll::Ready(Ok(len));
        }
        match st.drive(cx) {
            Poll::Ready(Ok(())) => direct(Pin::new(&mut st.write), cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Corked {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().write_with(cx, data.len(), |p| p.extend_from_slice(data), |w, cx| w.poll_write(cx, data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.get_mut().write_with(
            cx,
            len,
            |p| bufs.iter().for_each(|b| p.extend_from_slice(b)),
            |w, cx| w.poll_write_vectored(cx, bufs),
        )
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut st = this.shared.lock();
        if st.pending.is_empty() {
            return match st.error.take() {
                Some(e) => Poll::Ready(Err(e)),
                None => Pin::new(&mut st.write).poll_flush(cx),
            };
        }
        if !deferring() {
            return st.drive(cx);
        }
        st.remember(cx);
        if st.queued {
            return Poll::Ready(Ok(()));
        }
        st.queued = true;
        drop(st);
        let full = QUEUE.with(|q| {
            let mut q = q.borrow_mut();
            q.push(Arc::clone(&this.shared));
            q.len() >= MAX_QUEUED
        });
        if full {
            flush_queued();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut st = this.shared.lock();
        // Everything written before the end, in order.
        st.queued = false;
        match st.drive(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut st.write).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::panic)]
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A connected pair on loopback: (our side, wrapped; the client's).
    async fn pair() -> (Corked, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (Corked::new(accepted.expect("accept").0), client.expect("connect"))
    }

    /// Runs `test` as a task of the engine's runtime (`block_on` itself runs on the calling
    /// thread, which is not one of the runtime's workers and never defers).
    fn on_the_engines_runtime(test: impl std::future::Future<Output = ()> + Send + 'static) {
        let rt = crate::runtime::build().expect("runtime");
        let task = rt.spawn(test);
        rt.block_on(task).expect("task");
    }

    /// What the kernel holds for the client to read now (`FIONREAD`). Not `try_read`: tokio
    /// answers that from the readiness it last saw, and with the one worker busy running this
    /// test it has seen none — a `try_read` probe reads 0 whether or not bytes were written.
    #[cfg(unix)]
    fn ready_bytes(client: &TcpStream) -> u64 {
        rustix::io::ioctl_fionread(client).expect("FIONREAD")
    }

    #[cfg(unix)]
    #[test]
    fn on_the_engines_runtime_small_writes_wait_for_the_worker_to_run_out_of_work() {
        on_the_engines_runtime(async {
            // The control: a plain socket's write is in the client's queue at once, and the
            // probe sees it.
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
            let (mut plain, plain_client) = (accepted.expect("accept").0, client.expect("connect"));
            tokio::time::sleep(Duration::from_millis(1)).await;
            plain.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.expect("write");
            plain.flush().await.expect("flush");
            assert_eq!(ready_bytes(&plain_client), 19, "the probe sees what a plain socket wrote");

            let (mut ours, client) = pair().await;
            // The worker has parked once here: from now on it defers.
            tokio::time::sleep(Duration::from_millis(1)).await;
            ours.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.expect("write");
            ours.flush().await.expect("flush");
            assert_eq!(ready_bytes(&client), 0, "written before the worker ran out of work");
            // Waiting parks the worker: what waited is written.
            client.readable().await.expect("readable");
            assert_eq!(ready_bytes(&client), 19);
        });
    }

    #[test]
    fn large_writes_go_through_after_what_waits_and_nothing_is_lost_when_the_socket_is_full() {
        on_the_engines_runtime(async {
            let (mut ours, mut client) = pair().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
            // 32 MiB in writes of every size, small ones flushed one by one, while the client
            // reads nothing: the socket fills, and writes wait for it as plain ones do.
            let total: usize = 32 << 20;
            let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
            let writer = tokio::spawn(async move {
                let mut at = 0;
                let mut size = 1;
                while at < total {
                    let end = (at + size).min(total);
                    ours.write_all(&data[at..end]).await?;
                    ours.flush().await?;
                    at = end;
                    size = if size > 3 * MAX_PENDING { 1 } else { size * 3 + 7 };
                }
                ours.shutdown().await
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut got = Vec::with_capacity(total);
            client.read_to_end(&mut got).await.expect("read");
            writer.await.expect("writer task").expect("writes");
            assert_eq!(got.len(), total);
            assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8), "bytes out of order");
        });
    }

    #[test]
    fn a_client_that_left_is_an_error_on_the_next_write_not_a_hang() {
        on_the_engines_runtime(async {
            let (mut ours, client) = pair().await;
            drop(client);
            tokio::time::sleep(Duration::from_millis(1)).await;
            let mut failed = false;
            for _ in 0..200 {
                let r = async {
                    ours.write_all(b"answer\r\n").await?;
                    ours.flush().await
                }
                .await;
                if r.is_err() {
                    failed = true;
                    break;
                }
                // Parks: the deferred write meets the closed socket.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert!(failed, "writes to a closed connection kept succeeding");
        });
    }
}
