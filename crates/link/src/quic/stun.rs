//! STUN beside QUIC on one UDP socket: the demultiplexing of RFC 7983.
//!
//! NAT traversal needs one socket for both: the socket whose NAT binding a
//! STUN exchange opened (and whose public address it learned) must carry
//! the QUIC connection, and a rendezvous must answer STUN on its QUIC port.
//! RFC 7983 tells the protocols apart by a datagram's first byte: 0 to 3
//! is STUN, and a QUIC packet never starts so (its fixed bit, 0x40, is
//! set, and our endpoints do not grease it). The socket wrapper under
//! every endpoint of the link ([`garbage`](super::garbage)) takes such
//! datagrams out of what it hands quinn and offers them to the endpoint's
//! [`StunInbox`]; a caller reads them through a [`StunChannel`] and
//! answers through the same socket. Nothing here parses STUN: the link
//! stays free of any STUN type, and the caller brings its own codec.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use crate::error::LinkError;

/// Whether a datagram is STUN by RFC 7983's first-byte ranges (0 to 3).
pub(crate) fn is_stun(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|&b| b <= 3)
}

/// Takes the STUN datagrams out of `data`, which holds datagrams of
/// `stride` bytes each but the last (a coalesced receive), handing each to
/// `take`, and moves the others up to close the gaps; returns the length
/// left. The datagrams left keep their order and their stride, so the
/// receiver splits them as before.
pub(crate) fn split_off_stun(data: &mut [u8], stride: usize, mut take: impl FnMut(&[u8])) -> usize {
    let stride = stride.max(1);
    let mut kept = 0;
    let mut at = 0;
    while at < data.len() {
        let end = (at + stride).min(data.len());
        if is_stun(&data[at..end]) {
            take(&data[at..end]);
        } else {
            if kept != at {
                data.copy_within(at..end, kept);
            }
            kept += end - at;
        }
        at = end;
    }
    kept
}

/// The STUN datagrams of one endpoint's socket, waiting to be read, and
/// the socket to answer through. Shared by the socket wrappers of the
/// endpoint (one, or two for a moment during a rebind) and the
/// [`StunChannel`]s handed out.
pub(crate) struct StunInbox {
    queue: Mutex<VecDeque<(Bytes, SocketAddr)>>,
    capacity: usize,
    /// Live [`StunChannel`]s: with none, datagrams are dropped at once.
    readers: AtomicUsize,
    arrived: Notify,
    /// The socket replies leave through: a duplicate of the endpoint's
    /// current socket, `None` once the endpoint's socket is closed.
    sender: Mutex<Option<Arc<Sender>>>,
    dropped: Arc<AtomicU64>,
}

/// A duplicate of an endpoint's socket that STUN replies leave through,
/// registered for writability only, so that the datagrams quinn reads wake
/// nothing here.
pub(crate) type Sender = AsyncFd<std::net::UdpSocket>;

/// A sender on a duplicate of `socket` (which is non-blocking already).
pub(crate) fn sender(socket: &std::net::UdpSocket) -> io::Result<Arc<Sender>> {
    // SAFETY: the AsyncFd owns the duplicate, so its descriptor stays open
    // for as long as it is registered.
    let registered =
        unsafe { AsyncFd::register_with_interest(socket.try_clone()?, Interest::WRITABLE) };
    registered.map(Arc::new).map_err(|e| e.into_parts().1)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StunInbox {
    /// An inbox holding up to `capacity` datagrams, counting those it drops
    /// in `dropped`.
    pub(crate) fn new(capacity: usize, dropped: Arc<AtomicU64>) -> Arc<StunInbox> {
        Arc::new(StunInbox {
            queue: Mutex::new(VecDeque::new()),
            capacity,
            readers: AtomicUsize::new(0),
            arrived: Notify::new(),
            sender: Mutex::new(None),
            dropped,
        })
    }

    /// A STUN datagram from `from`: queued while someone reads and there is
    /// room, else dropped and counted.
    pub(crate) fn offer(&self, datagram: &[u8], from: SocketAddr) {
        if self.readers.load(Ordering::Acquire) > 0 {
            let mut queue = lock(&self.queue);
            if queue.len() < self.capacity {
                queue.push_back((Bytes::copy_from_slice(datagram), from));
                drop(queue);
                self.arrived.notify_one();
                return;
            }
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Replies leave through `socket` from now on.
    pub(crate) fn send_through(&self, socket: Arc<Sender>) {
        *lock(&self.sender) = Some(socket);
    }

    /// The socket `socket` was closed: when replies left through it, the
    /// endpoint has no socket any more, and readers are told so.
    pub(crate) fn closed(&self, socket: &Arc<Sender>) {
        let mut sender = lock(&self.sender);
        if sender.as_ref().is_some_and(|s| Arc::ptr_eq(s, socket)) {
            *sender = None;
            drop(sender);
            self.arrived.notify_waiters();
            // A reader between its check and its wait holds no permit of
            // `notify_waiters`; this one wakes it.
            self.arrived.notify_one();
        }
    }

    fn is_open(&self) -> bool {
        lock(&self.sender).is_some()
    }
}

/// The STUN side of a QUIC endpoint's socket (RFC 7983): the datagrams
/// whose first byte is 0 to 3, which quinn never sees, and a way to answer
/// them from the same socket. Made by [`QuicEndpoint::stun`](super::QuicEndpoint::stun).
///
/// While a `StunChannel` of the endpoint lives, such datagrams wait in a
/// queue of [`QuicOptions::stun_queue`](super::QuicOptions::stun_queue)
/// datagrams; when it is full, or when no `StunChannel` lives, they are
/// dropped and counted in
/// [`LinkStats::stun_datagrams_dropped`](crate::LinkStats::stun_datagrams_dropped).
/// Datagrams still queued when the last `StunChannel` goes are dropped and
/// counted too. Clones share the queue (each datagram goes to one reader).
/// It follows the endpoint through a rebind, and does not keep the socket
/// open: once the endpoint's socket is closed, [`recv`](Self::recv) returns
/// `None` and [`send_to`](Self::send_to) fails.
pub struct StunChannel {
    inbox: Arc<StunInbox>,
}

impl StunChannel {
    pub(crate) fn new(inbox: Arc<StunInbox>) -> StunChannel {
        inbox.readers.fetch_add(1, Ordering::AcqRel);
        StunChannel { inbox }
    }

    /// The next STUN datagram and its sender, waiting for one; `None` once
    /// the endpoint's socket is closed and the queue is empty. Cancel-safe:
    /// a cancelled call takes nothing from the queue.
    pub async fn recv(&self) -> Option<(Bytes, SocketAddr)> {
        loop {
            if let Some(datagram) = self.try_recv() {
                return Some(datagram);
            }
            if !self.inbox.is_open() {
                return None;
            }
            self.inbox.arrived.notified().await;
        }
    }

    /// The next STUN datagram and its sender if one is queued.
    pub fn try_recv(&self) -> Option<(Bytes, SocketAddr)> {
        lock(&self.inbox.queue).pop_front()
    }

    /// Sends `datagram` to `to` from the endpoint's socket, so that it
    /// leaves from the QUIC port (through the same NAT binding). It goes
    /// beside quinn's packets, not through quinn, and changes nothing of
    /// the socket's state that quinn relies on. Fails when the endpoint's
    /// socket is closed, or as `send_to` on a UDP socket fails.
    /// Cancel-safe: a cancelled call sent nothing.
    pub async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> Result<usize, LinkError> {
        let socket = lock(&self.inbox.sender).clone().ok_or_else(|| {
            LinkError::io(
                "sending STUN from a QUIC endpoint",
                io::Error::from(io::ErrorKind::NotConnected),
            )
        })?;
        socket
            .async_io(Interest::WRITABLE, |s| s.send_to(datagram, to))
            .await
            .map_err(|e| LinkError::io("sending STUN from a QUIC endpoint", e))
    }

    /// How many datagrams wait in the queue.
    pub fn queued(&self) -> usize {
        lock(&self.inbox.queue).len()
    }
}

impl Clone for StunChannel {
    fn clone(&self) -> StunChannel {
        StunChannel::new(self.inbox.clone())
    }
}

impl Drop for StunChannel {
    fn drop(&mut self) {
        if self.inbox.readers.fetch_sub(1, Ordering::AcqRel) == 1 {
            let unread = std::mem::take(&mut *lock(&self.inbox.queue));
            if !unread.is_empty() {
                self.inbox
                    .dropped
                    .fetch_add(unread.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

impl fmt::Debug for StunChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StunChannel")
            .field("queued", &self.queued())
            .field("open", &self.inbox.is_open())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 3478))
    }

    #[test]
    fn first_bytes_0_to_3_are_stun() {
        for b in 0..=3u8 {
            assert!(is_stun(&[b, 1, 0, 0]));
        }
        assert!(!is_stun(&[4]));
        assert!(!is_stun(&[0x40]), "a QUIC short header");
        assert!(!is_stun(&[0xc0]), "a QUIC long header");
        assert!(!is_stun(&[]));
    }

    #[test]
    fn stun_is_taken_out_of_a_coalesced_receive_and_the_rest_closes_up() {
        // Four datagrams of stride 4 and a short last one: QUIC, STUN,
        // QUIC, STUN, QUIC.
        let mut data = vec![
            0x41, 1, 1, 1, 0x00, 2, 2, 2, 0x42, 3, 3, 3, 0x01, 4, 4, 4, 0x43, 5,
        ];
        let mut taken = Vec::new();
        let len = split_off_stun(&mut data, 4, |d| taken.push(d.to_vec()));
        assert_eq!(taken, vec![vec![0x00, 2, 2, 2], vec![0x01, 4, 4, 4]]);
        assert_eq!(&data[..len], &[0x41, 1, 1, 1, 0x42, 3, 3, 3, 0x43, 5]);
        // All STUN: nothing left.
        let mut data = vec![0, 1, 0, 1, 0, 1];
        assert_eq!(split_off_stun(&mut data, 2, |_| {}), 0);
        // No STUN: untouched.
        let mut data = vec![0x41, 9, 0x41, 8];
        assert_eq!(split_off_stun(&mut data, 2, |_| panic!()), 4);
        assert_eq!(data, [0x41, 9, 0x41, 8]);
    }

    #[test]
    fn without_a_reader_or_room_datagrams_are_dropped_and_counted() {
        let dropped = Arc::new(AtomicU64::new(0));
        let inbox = StunInbox::new(2, dropped.clone());
        inbox.offer(&[0, 1], addr());
        assert_eq!(dropped.load(Ordering::Relaxed), 1, "nobody reads");
        let channel = StunChannel::new(inbox.clone());
        for i in 0..5u8 {
            inbox.offer(&[0, i], addr());
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 4, "two fit");
        assert_eq!(channel.try_recv().unwrap().0, Bytes::from_static(&[0, 0]));
        let other = channel.clone();
        drop(channel);
        assert_eq!(other.queued(), 1, "a clone keeps the queue");
        drop(other);
        assert_eq!(dropped.load(Ordering::Relaxed), 5, "the unread one");
    }
}
