//! One connection: its cheap-clone handle and the driver that owns its socket.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, PollSender};

use crate::LinkEvent;
use crate::queue::{PushError, SendQueue, Take};
use crate::registry::Registry;
use crate::{Address, ConnectorId, LinkError, ListenerId, Throttle, TokenBucket};

/// Identifies a connection within its link. Never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Where a connection came from. Once connected, both kinds behave alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Accepted by a listener.
    Listener(ListenerId),
    /// Made by a connector.
    Connector(ConnectorId),
    /// A stream handed to [`Link::adopt`](crate::Link::adopt).
    Adopted,
    /// A lane of the `quic://` connection it names: another stream of the
    /// same QUIC connection, opened by either side with
    /// [`Link::open_lane`](crate::Link::open_lane).
    Lane(ConnectionId),
}

/// What is known about a connection when it is established.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The connection's id.
    pub id: ConnectionId,
    /// Listener, connector or adopted.
    pub origin: Origin,
    /// The other side's address, when it has one (unnamed Unix clients have
    /// none).
    pub peer: Option<Address>,
    /// Our side's address, when it has one.
    pub local: Option<Address>,
    /// The peer's certificate chain, leaf first, for TLS connections where
    /// the peer presented one.
    pub peer_certificates: Option<Arc<[CertificateDer<'static>]>>,
    /// Whether each send and each data event is one datagram (UDP).
    pub datagram: bool,
    /// Whether [`Link::open_lane`](crate::Link::open_lane) can open lanes
    /// beside this connection: true for the first stream of a `quic://`
    /// connection, false for every other connection (lanes included).
    pub lanes: bool,
    /// Who runs the process at the other end, for Unix socket connections
    /// (`SO_PEERCRED`): what a local service checks before it serves.
    pub peer_credentials: Option<PeerCredentials>,
}

/// The process at the other end of a Unix socket, as the kernel saw it
/// when the connection was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PeerCredentials {
    /// Its effective user id.
    pub uid: u32,
    /// Its effective group id.
    pub gid: u32,
    /// Its process id, where the system tells it.
    pub pid: Option<i32>,
}

impl PeerCredentials {
    /// The credentials of a connected Unix stream's peer.
    pub(crate) fn of(stream: &tokio::net::UnixStream) -> Option<PeerCredentials> {
        let cred = stream.peer_cred().ok()?;
        Some(PeerCredentials {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        })
    }
}

/// What is known of a connection's two ends when it starts.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ends {
    pub(crate) peer: Option<Address>,
    pub(crate) local: Option<Address>,
    pub(crate) certificates: Option<Arc<[CertificateDer<'static>]>>,
    pub(crate) credentials: Option<PeerCredentials>,
}

/// Why a connection ended.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// We closed it ([`Connection::close`]) and it shut down cleanly.
    Closed,
    /// The peer closed it (end of stream).
    PeerClosed,
    /// It was aborted: [`Connection::abort`], its connector or UDP listener
    /// was removed, or the link shut down.
    Aborted,
    /// We closed it, but it did not finish within the link's
    /// `close_timeout` (the peer stopped reading, or never closed its side);
    /// what was still queued was dropped.
    CloseTimedOut,
    /// An I/O error.
    Io(Arc<io::Error>),
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Closed => f.write_str("closed"),
            DisconnectReason::PeerClosed => f.write_str("closed by peer"),
            DisconnectReason::Aborted => f.write_str("aborted"),
            DisconnectReason::CloseTimedOut => f.write_str("close timed out"),
            DisconnectReason::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl From<io::Error> for DisconnectReason {
    fn from(e: io::Error) -> DisconnectReason {
        DisconnectReason::Io(Arc::new(e))
    }
}

pub(crate) struct ConnShared {
    pub(crate) info: ConnectionInfo,
    pub(crate) queue: SendQueue,
    /// Cancelled to abort the connection.
    pub(crate) abort: CancellationToken,
    /// Cancelled when a graceful close is asked for; starts its deadline.
    pub(crate) closing: CancellationToken,
    /// Cancelled once the connection has ended and its events were sent.
    pub(crate) finished: CancellationToken,
    /// Bytes written to the socket so far.
    pub(crate) written: AtomicU64,
}

/// A handle to one connection: send to it, close it, wait for its end.
/// Cheap to clone; the link keeps the connection open until it is closed,
/// whether or not handles exist.
#[derive(Clone)]
pub struct Connection {
    pub(crate) shared: Arc<ConnShared>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.shared.info.id)
            .field("peer", &self.shared.info.peer)
            .finish()
    }
}

fn push_error(e: PushError) -> LinkError {
    match e {
        PushError::Full => LinkError::QueueFull,
        PushError::Closed => LinkError::Closed,
    }
}

impl Connection {
    pub(crate) fn new(
        info: ConnectionInfo,
        capacity: usize,
        parent: &CancellationToken,
    ) -> Connection {
        let datagram = info.datagram;
        Connection {
            shared: Arc::new(ConnShared {
                info,
                queue: SendQueue::new(capacity, datagram),
                abort: parent.child_token(),
                closing: CancellationToken::new(),
                finished: CancellationToken::new(),
                written: AtomicU64::new(0),
            }),
        }
    }

    /// The connection's id.
    pub fn id(&self) -> ConnectionId {
        self.shared.info.id
    }

    /// Addresses, origin and TLS certificates.
    pub fn info(&self) -> &ConnectionInfo {
        &self.shared.info
    }

    /// Queues `data`, waiting while the send queue is full.
    ///
    /// Cancel-safe: dropping the future before it completes queues nothing.
    pub async fn send(&self, data: Bytes) -> Result<(), LinkError> {
        self.shared.queue.push(&[], &data).await.map_err(push_error)
    }

    /// Queues `data`, or fails with [`LinkError::QueueFull`] at once.
    pub fn try_send(&self, data: Bytes) -> Result<(), LinkError> {
        self.shared.queue.try_push(&[], &data).map_err(push_error)
    }

    /// Queues `prefix` and `data` as one write (one datagram on UDP), waiting
    /// for room. Layers above use it for headers; `data` is not copied
    /// when large. Cancel-safe like [`send`](Self::send).
    pub async fn send_prefixed(&self, prefix: &[u8], data: &Bytes) -> Result<(), LinkError> {
        self.shared
            .queue
            .push(prefix, data)
            .await
            .map_err(push_error)
    }

    /// [`send_prefixed`](Self::send_prefixed) without waiting.
    pub fn try_send_prefixed(&self, prefix: &[u8], data: &Bytes) -> Result<(), LinkError> {
        self.shared.queue.try_push(prefix, data).map_err(push_error)
    }

    /// Waits until the send queue has room, without sending anything; fails
    /// with [`LinkError::Closed`] once the connection is closing. Cancel-safe.
    pub async fn ready(&self) -> Result<(), LinkError> {
        self.shared.queue.ready().await.map_err(push_error)
    }

    /// Bytes waiting in the send queue.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queue.queued_bytes()
    }

    /// Bytes ever accepted for sending on this connection. Read it right
    /// after a send: once [`bytes_written`](Self::bytes_written) reaches
    /// that value, the send has been handed to the operating system.
    pub fn bytes_accepted(&self) -> u64 {
        self.shared.queue.pushed_total()
    }

    /// Bytes written to the socket so far (handed to the operating system;
    /// not a sign that the peer has read them).
    pub fn bytes_written(&self) -> u64 {
        self.shared.written.load(Ordering::Acquire)
    }

    /// Starts a graceful close: what is queued is still sent, then the
    /// connection shuts down its sending side and ends when the peer closes
    /// too. The whole close takes at most the link's `close_timeout`; past
    /// it the connection is dropped with [`DisconnectReason::CloseTimedOut`].
    /// Returns at once.
    pub fn close(&self) {
        self.shared.queue.close();
        self.shared.closing.cancel();
    }

    /// Ends the connection now, dropping what is queued.
    pub fn abort(&self) {
        self.shared.abort.cancel();
    }

    /// Waits until the connection has ended and its `Disconnected` event was
    /// handed to the link's events. Cancel-safe.
    pub async fn closed(&self) {
        self.shared.finished.cancelled().await
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.finished.is_cancelled()
    }
}

/// Runs a stream connection to its end: announces it, drives it, reports
/// its end. The caller has registered it with the registry.
pub(crate) async fn run_stream<S>(
    registry: Arc<Registry>,
    conn: Connection,
    stream: S,
    events: mpsc::Sender<LinkEvent>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if events
        .send(LinkEvent::Connected(conn.clone()))
        .await
        .is_err()
    {
        registry.unregister(&conn, DisconnectReason::Aborted);
        return;
    }
    let mut driver = StreamDriver::new(stream, &conn, &registry, events.clone());
    let abort = conn.shared.abort.clone();
    let closing = conn.shared.closing.clone();
    let close_timeout = registry.config.close_timeout;
    let close_deadline = async move {
        closing.cancelled().await;
        tokio::time::sleep(close_timeout).await;
    };
    let reason = tokio::select! {
        reason = &mut driver => reason,
        _ = abort.cancelled() => DisconnectReason::Aborted,
        // Everything was sent and our side shut down: the peer was just slow
        // to close its side.
        _ = close_deadline => if driver.write_closed && driver.batch.is_empty() {
            DisconnectReason::Closed
        } else {
            DisconnectReason::CloseTimedOut
        },
    };
    // Data already read is delivered before the end is reported.
    if let Some(event) = driver.pending.take() {
        let _ = events.send(event).await;
    }
    drop(driver);
    finish(&registry, &conn, reason, &events).await;
}

/// Reports a connection's end and releases it.
pub(crate) async fn finish(
    registry: &Registry,
    conn: &Connection,
    reason: DisconnectReason,
    events: &mpsc::Sender<LinkEvent>,
) {
    registry.unregister(conn, reason.clone());
    let _ = events
        .send(LinkEvent::Disconnected {
            connection: conn.id(),
            reason,
        })
        .await;
    conn.shared.finished.cancel();
}

const INITIAL_READ_CHUNK: usize = 4096;
/// What a connection without a read buffer reads on the stack to learn
/// whether there is data at all; its bytes are copied into a new buffer.
const PROBE_READ: usize = 1024;
const MAX_IO_SLICES: usize = 64;
/// The least a throttled connection writes at once (unless less is
/// queued, or the burst is smaller).
const THROTTLED_WRITE: usize = 16 * 1024;

struct ThrottleState {
    bucket: TokenBucket,
    sleep: Pin<Box<Sleep>>,
}

impl ThrottleState {
    fn new(throttle: Throttle) -> ThrottleState {
        let now = Instant::now();
        ThrottleState {
            bucket: TokenBucket::new(throttle, now.into_std()),
            sleep: Box::pin(tokio::time::sleep_until(now)),
        }
    }
}

/// How much a throttled connection may write at `now` with `front` bytes
/// first in its queue, or how long it waits first. The wait is for a
/// write's worth (the front chunk, at most [`THROTTLED_WRITE`], at most the
/// burst): writing what trickled in since the last write would spin on
/// writes of a few bytes each.
fn allowance(
    bucket: &mut TokenBucket,
    now: std::time::Instant,
    front: usize,
) -> Result<usize, std::time::Duration> {
    let wait = bucket.wait_for(now, front.clamp(1, THROTTLED_WRITE));
    if wait.is_zero() {
        Ok(bucket.available(now).max(1))
    } else {
        Err(wait)
    }
}

/// Polls a stream's reads and writes from one task: the socket is never
/// split and never locked.
struct StreamDriver<S> {
    stream: S,
    conn: Connection,
    registry: Arc<Registry>,
    events: PollSender<LinkEvent>,
    /// Chunks taken from the queue, being written.
    batch: VecDeque<Bytes>,
    need_flush: bool,
    write_closed: bool,
    read_buf: BytesMut,
    read_chunk: usize,
    max_read_chunk: usize,
    /// A data event waiting for room in the event channel; no reads happen
    /// until it is delivered.
    pending: Option<LinkEvent>,
    throttle: Option<ThrottleState>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamDriver<S> {
    /// A driver for `conn` on `stream`, with no buffers yet: they are
    /// allocated when there is something to read or write.
    fn new(
        stream: S,
        conn: &Connection,
        registry: &Arc<Registry>,
        events: mpsc::Sender<LinkEvent>,
    ) -> StreamDriver<S> {
        StreamDriver {
            stream,
            conn: conn.clone(),
            registry: registry.clone(),
            events: PollSender::new(events),
            batch: VecDeque::new(),
            need_flush: false,
            write_closed: false,
            read_buf: BytesMut::new(),
            read_chunk: INITIAL_READ_CHUNK,
            max_read_chunk: registry.config.max_read_chunk.max(INITIAL_READ_CHUNK),
            pending: None,
            throttle: registry.config.throttle.map(ThrottleState::new),
        }
    }

    /// Writes as much as the socket takes. `Ready` only when the
    /// connection must end.
    fn poll_write_side(&mut self, cx: &mut Context<'_>) -> Poll<DisconnectReason> {
        loop {
            if self.write_closed {
                return Poll::Pending;
            }
            if self.batch.is_empty() {
                if self.need_flush {
                    match Pin::new(&mut self.stream).poll_flush(cx) {
                        Poll::Ready(Ok(())) => self.need_flush = false,
                        Poll::Ready(Err(e)) => return Poll::Ready(e.into()),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                match self.conn.shared.queue.take(&mut self.batch, cx.waker()) {
                    Take::Data => {}
                    Take::Empty => return Poll::Pending,
                    Take::Close => {
                        match ready!(Pin::new(&mut self.stream).poll_shutdown(cx)) {
                            Ok(()) => {}
                            // The peer may have gone already; we are closing anyway.
                            Err(e) => tracing::debug!(conn = %self.conn.id(), "shutdown: {e}"),
                        }
                        self.write_closed = true;
                        return Poll::Pending;
                    }
                }
            }
            let mut limit = usize::MAX;
            if let Some(t) = &mut self.throttle {
                let now = Instant::now();
                let front = self.batch.front().map_or(1, Bytes::len);
                match allowance(&mut t.bucket, now.into_std(), front) {
                    Ok(allowed) => limit = allowed,
                    Err(wait) => {
                        t.sleep.as_mut().reset(now + wait);
                        ready!(t.sleep.as_mut().poll(cx));
                        continue;
                    }
                }
            }
            let mut slices = [IoSlice::new(&[]); MAX_IO_SLICES];
            let mut count = 0;
            let mut total = 0;
            for chunk in self.batch.iter().take(MAX_IO_SLICES) {
                let take = chunk.len().min(limit - total);
                slices[count] = IoSlice::new(&chunk[..take]);
                count += 1;
                total += take;
                if total == limit {
                    break;
                }
            }
            let written = match Pin::new(&mut self.stream).poll_write_vectored(cx, &slices[..count])
            {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(io::Error::from(io::ErrorKind::WriteZero).into());
                }
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(e.into()),
                Poll::Pending => return Poll::Pending,
            };
            self.need_flush = true;
            if let Some(t) = &mut self.throttle {
                t.bucket.consume(written);
            }
            self.registry
                .stats
                .bytes_sent
                .fetch_add(written as u64, Ordering::Relaxed);
            self.conn
                .shared
                .written
                .fetch_add(written as u64, Ordering::Release);
            let mut left = written;
            while left > 0 {
                let front = self
                    .batch
                    .front_mut()
                    .expect("wrote more than the batch holds");
                if front.len() <= left {
                    left -= front.len();
                    self.batch.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
    }

    /// Reads until the socket or the event channel has nothing more.
    /// `Ready` only when the connection must end.
    fn poll_read_side(&mut self, cx: &mut Context<'_>) -> Poll<DisconnectReason> {
        loop {
            if let Some(event) = self.pending.take() {
                match self.events.poll_reserve(cx) {
                    Poll::Ready(Ok(())) => {
                        let _ = self.events.send_item(event);
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(DisconnectReason::Aborted),
                    Poll::Pending => {
                        self.pending = Some(event);
                        return Poll::Pending;
                    }
                }
            }
            if self.read_buf.capacity() == 0 {
                // No buffer (the connection was idle): read into the stack
                // first, so that polling a connection with nothing to read
                // allocates nothing, and allocate once there is data.
                let mut probe = [0u8; PROBE_READ];
                let mut got = ReadBuf::new(&mut probe);
                match Pin::new(&mut self.stream).poll_read(cx, &mut got) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(e.into()),
                    Poll::Pending => return Poll::Pending,
                }
                let got = got.filled();
                if got.is_empty() {
                    return Poll::Ready(self.read_ended());
                }
                // All there was fit the stack: a buffer of just that size
                // (a small message costs a small allocation); else a
                // whole chunk, for the rest that is likely waiting.
                let room = if got.len() < PROBE_READ {
                    got.len()
                } else {
                    self.read_chunk
                };
                self.read_buf.reserve(room);
                self.read_buf.extend_from_slice(got);
                self.deliver(got.len());
                continue;
            }
            if self.read_buf.capacity() < self.read_chunk / 2 {
                self.read_buf.reserve(self.read_chunk);
            }
            let room = self.read_buf.capacity();
            let n = match tokio_util::io::poll_read_buf(
                Pin::new(&mut self.stream),
                cx,
                &mut self.read_buf,
            ) {
                Poll::Ready(Ok(0)) => return Poll::Ready(self.read_ended()),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(e.into()),
                Poll::Pending => {
                    // Nothing to read: the buffer is given back rather
                    // than held while the connection idles (a thousand
                    // idle connections would hold a thousand buffers);
                    // the next read allocates one when data is there.
                    if self.read_buf.is_empty() {
                        self.read_buf = BytesMut::new();
                    }
                    return Poll::Pending;
                }
            };
            if n == room && self.read_chunk < self.max_read_chunk {
                self.read_chunk = (self.read_chunk * 2).min(self.max_read_chunk);
            }
            self.deliver(n);
        }
    }

    /// Why the connection ends when the peer finished its side.
    fn read_ended(&self) -> DisconnectReason {
        if self.write_closed {
            DisconnectReason::Closed
        } else {
            DisconnectReason::PeerClosed
        }
    }

    /// The `n` bytes just read, all of the buffer, become the data event
    /// waiting to be delivered.
    fn deliver(&mut self, n: usize) {
        self.registry
            .stats
            .bytes_received
            .fetch_add(n as u64, Ordering::Relaxed);
        self.pending = Some(LinkEvent::Data {
            connection: self.conn.id(),
            data: self.read_buf.split().freeze(),
        });
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for StreamDriver<S> {
    type Output = DisconnectReason;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<DisconnectReason> {
        let this = self.get_mut();
        if let Poll::Ready(reason) = this.poll_write_side(cx) {
            return Poll::Ready(reason);
        }
        this.poll_read_side(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LinkConfig;
    use crate::link::ListenerId;
    use tokio::io::AsyncWriteExt;

    fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(future).poll(&mut cx)
    }

    #[test]
    fn a_throttle_allows_a_chunk_not_what_trickled_in_since_the_last_write() {
        let t0 = std::time::Instant::now();
        let mut bucket = TokenBucket::new(Throttle::per_second(1_000_000), t0);
        let us = std::time::Duration::from_micros;
        // The burst (100 kB) at once.
        assert_eq!(allowance(&mut bucket, t0, 50_000), Ok(100_000));
        bucket.consume(100_000);
        // 20 µs later 20 bytes have come in: not worth a write. The wait
        // is for a chunk (16 KiB) of the 50 kB queued.
        assert_eq!(
            allowance(&mut bucket, t0 + us(20), 50_000),
            Err(std::time::Duration::from_secs_f64((16_384.0 - 20.0) / 1e6))
        );
        // Then what came in by then goes in one write.
        assert_eq!(allowance(&mut bucket, t0 + us(16_384), 50_000), Ok(16_384));
        bucket.consume(16_384);
        // Less queued than a chunk: as soon as that much came in.
        assert!(allowance(&mut bucket, t0 + us(16_400), 100).is_err());
        assert_eq!(allowance(&mut bucket, t0 + us(16_484), 100), Ok(100));
    }

    #[tokio::test]
    async fn an_idle_connection_holds_no_read_buffer() {
        let (events, mut received) = mpsc::channel(8);
        let registry = Arc::new(Registry::new(LinkConfig::default(), events.clone()));
        let ends = Ends {
            peer: None,
            local: None,
            certificates: None,
            credentials: None,
        };
        let conn = registry.new_connection(
            Origin::Listener(ListenerId(1)),
            ends,
            false,
            registry.shutdown(),
        );
        let (ours, mut theirs) = tokio::io::duplex(64 << 10);
        let mut driver = StreamDriver::new(ours, &conn, &registry, events);

        // Nothing to read yet: nothing allocated to read into.
        assert!(poll_once(&mut driver).is_pending());
        assert_eq!(driver.read_buf.capacity(), 0);

        // Data arrives: it is read and delivered, and once there is nothing
        // more the buffer is given back.
        theirs.write_all(&[7u8; 3000]).await.unwrap();
        assert!(poll_once(&mut driver).is_pending());
        assert_eq!(driver.read_buf.capacity(), 0);
        let mut got = Vec::new();
        while let Ok(event) = received.try_recv() {
            if let LinkEvent::Data { data, .. } = event {
                got.extend_from_slice(&data);
            }
        }
        assert_eq!(got, [7u8; 3000]);

        // The peer's end still ends the connection when no buffer is held.
        drop(theirs);
        assert!(matches!(
            poll_once(&mut driver),
            Poll::Ready(DisconnectReason::PeerClosed)
        ));
    }
}
