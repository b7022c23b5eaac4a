//! Packets over a link's connections.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use weft_link::{
    Connection, ConnectionId, ConnectionInfo, DisconnectReason, Link, LinkConfig, LinkError,
    LinkEvent, LinkEvents,
};

use crate::codec::{DEFAULT_MAX_PACKET, HEADER_LEN, PacketDecoder, PacketError, header};

/// The longest head [`PacketSender::send_parts`] takes. Public because
/// callers design their headers within it: a longer head is refused
/// ([`PacketerError::HeadTooLong`]).
pub const MAX_HEAD: usize = 64;

/// How a [`Packeter`] behaves.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PacketerConfig {
    /// The largest payload accepted or sent, in bytes. A peer announcing a
    /// larger one is disconnected before anything is allocated for it.
    /// Default: 16 MiB.
    pub max_packet: usize,
    /// Link events taken per batch; a tuning knob. Default: 64.
    pub event_batch: usize,
}

impl Default for PacketerConfig {
    fn default() -> PacketerConfig {
        PacketerConfig {
            max_packet: DEFAULT_MAX_PACKET,
            event_batch: 64,
        }
    }
}

/// Everything that can go wrong in weft-packeter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PacketerError {
    /// The link failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The byte stream broke the packet format.
    #[error(transparent)]
    Packet(#[from] PacketError),
    /// A head passed to [`PacketSender::send_parts`] is over [`MAX_HEAD`].
    #[error("packet head of {len} bytes exceeds the maximum of {max}")]
    HeadTooLong {
        /// The head's length.
        len: usize,
        /// [`MAX_HEAD`].
        max: usize,
    },
}

/// Why a packet connection ended.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PacketDisconnect {
    /// The link ended the connection (peer closed, I/O error, local close).
    Link(DisconnectReason),
    /// The peer broke the packet format (oversized length, truncated
    /// packet); the connection was closed by the packeter.
    Packet(PacketError),
}

impl fmt::Display for PacketDisconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketDisconnect::Link(r) => write!(f, "{r}"),
            PacketDisconnect::Packet(e) => write!(f, "{e}"),
        }
    }
}

/// What happens on a packeter, per connection in order: `Connected`, its
/// packets, `Disconnected`.
#[derive(Debug)]
#[non_exhaustive]
pub enum PacketEvent {
    /// A connection is up; the sender sends packets on it.
    Connected(PacketSender),
    /// A whole packet arrived.
    Packet {
        /// The connection.
        connection: ConnectionId,
        /// The payload.
        data: Bytes,
    },
    /// A connection ended.
    Disconnected {
        /// The connection.
        connection: ConnectionId,
        /// Why.
        reason: PacketDisconnect,
    },
}

/// Counters of a packeter, read with [`Packeter::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PacketStats {
    /// Packets queued for sending.
    pub packets_sent: u64,
    /// Packets received whole.
    pub packets_received: u64,
    /// Connections closed for announcing a packet over the maximum.
    pub oversized: u64,
    /// Connections that ended inside a packet.
    pub truncated: u64,
}

#[derive(Default)]
struct Counters {
    packets_sent: AtomicU64,
    packets_received: AtomicU64,
    oversized: AtomicU64,
    truncated: AtomicU64,
}

/// Sends packets on one connection. Cheap to clone.
#[derive(Clone)]
pub struct PacketSender {
    conn: Connection,
    max: usize,
    counters: Arc<Counters>,
}

impl fmt::Debug for PacketSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketSender")
            .field("connection", &self.conn)
            .finish()
    }
}

impl PacketSender {
    /// The connection's id.
    pub fn id(&self) -> ConnectionId {
        self.conn.id()
    }

    /// The connection's addresses, origin and certificates.
    pub fn info(&self) -> &ConnectionInfo {
        self.conn.info()
    }

    /// The link connection underneath.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn check(&self, payload: &Bytes) -> Result<(), PacketerError> {
        if payload.len() > self.max {
            return Err(PacketError::TooLarge {
                len: payload.len() as u64,
                max: self.max,
            }
            .into());
        }
        Ok(())
    }

    /// Queues one packet, waiting while the connection's send queue is
    /// full. Packets queued together go out in one write.
    ///
    /// Cancel-safe: dropping the future before it completes queues nothing.
    pub async fn send(&self, payload: Bytes) -> Result<(), PacketerError> {
        self.check(&payload)?;
        if self.conn.info().datagram {
            self.conn.send(payload).await?;
        } else {
            self.conn
                .send_prefixed(&header(payload.len()), &payload)
                .await?;
        }
        self.counters.packets_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Queues one packet, or fails at once with
    /// [`LinkError::QueueFull`] inside [`PacketerError::Link`].
    pub fn try_send(&self, payload: Bytes) -> Result<(), PacketerError> {
        self.check(&payload)?;
        if self.conn.info().datagram {
            self.conn.try_send(payload)?;
        } else {
            self.conn
                .try_send_prefixed(&header(payload.len()), &payload)?;
        }
        self.counters.packets_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Queues one packet made of `head` followed by `body`, waiting while the
    /// send queue is full. `body` is not copied when large; `head` (a
    /// header of the layer above) is. Cancel-safe like [`send`](Self::send).
    pub async fn send_parts(&self, head: &[u8], body: &Bytes) -> Result<(), PacketerError> {
        let (prefix, len) = self.prefix(head, body)?;
        self.conn.send_prefixed(&prefix[..len], body).await?;
        self.counters.packets_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// [`send_parts`](Self::send_parts) without waiting.
    pub fn try_send_parts(&self, head: &[u8], body: &Bytes) -> Result<(), PacketerError> {
        let (prefix, len) = self.prefix(head, body)?;
        self.conn.try_send_prefixed(&prefix[..len], body)?;
        self.counters.packets_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The length prefix (streams only) followed by `head`.
    fn prefix(
        &self,
        head: &[u8],
        body: &Bytes,
    ) -> Result<([u8; MAX_HEAD + HEADER_LEN], usize), PacketerError> {
        let total = head.len() + body.len();
        if head.len() > MAX_HEAD {
            return Err(PacketerError::HeadTooLong {
                len: head.len(),
                max: MAX_HEAD,
            });
        }
        if total > self.max {
            return Err(PacketError::TooLarge {
                len: total as u64,
                max: self.max,
            }
            .into());
        }
        let mut prefix = [0u8; MAX_HEAD + HEADER_LEN];
        let mut at = 0;
        if !self.conn.info().datagram {
            prefix[..HEADER_LEN].copy_from_slice(&header(total));
            at = HEADER_LEN;
        }
        prefix[at..at + head.len()].copy_from_slice(head);
        Ok((prefix, at + head.len()))
    }

    /// Waits until the connection's send queue has room, without sending.
    /// Cancel-safe.
    pub async fn ready(&self) -> Result<(), PacketerError> {
        Ok(self.conn.ready().await?)
    }

    /// Closes gracefully after queued packets are written.
    pub fn close(&self) {
        self.conn.close();
    }
}

struct ConnState {
    decoder: PacketDecoder,
    datagram: bool,
}

/// Length-prefixed packets over the connections of a [`Link`].
///
/// The packeter owns the link's events: add listeners and connectors with
/// [`link`](Self::link), read [`PacketEvent`]s with [`recv`](Self::recv),
/// and send with the [`PacketSender`] each `Connected` event carries.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use weft_packeter::{PacketEvent, Packeter};
/// let mut server = Packeter::new(Default::default(), Default::default());
/// let at = server.link().listen("tcp://127.0.0.1:0").await?.address;
/// let mut client = Packeter::new(Default::default(), Default::default());
/// client.link().connect(&at)?;
///
/// let Some(PacketEvent::Connected(to_server)) = client.recv().await else { panic!() };
/// to_server.send("one".into()).await?;
/// to_server.send("two".into()).await?;
///
/// let Some(PacketEvent::Connected(_)) = server.recv().await else { panic!() };
/// for want in ["one", "two"] {
///     let Some(PacketEvent::Packet { data, .. }) = server.recv().await else { panic!() };
///     assert_eq!(data, want);
/// }
/// # Ok(()) }
/// ```
pub struct Packeter {
    link: Link,
    events: LinkEvents,
    config: PacketerConfig,
    conns: HashMap<ConnectionId, ConnState>,
    /// Connections closed for a format error whose link end is still due.
    failed: HashSet<ConnectionId>,
    ready: VecDeque<PacketEvent>,
    /// Link events taken from the channel and not handled yet: decoded one
    /// at a time, as the packets before them are taken.
    pending: VecDeque<LinkEvent>,
    link_batch: Vec<LinkEvent>,
    packets: Vec<Bytes>,
    counters: Arc<Counters>,
}

impl fmt::Debug for Packeter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packeter")
            .field("connections", &self.conns.len())
            .finish()
    }
}

impl Packeter {
    /// A packeter over a new link.
    pub fn new(link: LinkConfig, config: PacketerConfig) -> Packeter {
        let (link, events) = Link::new(link);
        Packeter::with_link(link, events, config)
    }

    /// A packeter over an existing link, taking over its events.
    pub fn with_link(link: Link, events: LinkEvents, config: PacketerConfig) -> Packeter {
        Packeter {
            link,
            events,
            conns: HashMap::new(),
            failed: HashSet::new(),
            ready: VecDeque::new(),
            pending: VecDeque::new(),
            link_batch: Vec::with_capacity(config.event_batch.max(1)),
            packets: Vec::new(),
            config,
            counters: Arc::new(Counters::default()),
        }
    }

    /// The link underneath: add listeners and connectors here.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PacketStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PacketStats {
            packets_sent: get(&self.counters.packets_sent),
            packets_received: get(&self.counters.packets_received),
            oversized: get(&self.counters.oversized),
            truncated: get(&self.counters.truncated),
        }
    }

    /// The next event; `None` once the link is closed and drained.
    ///
    /// Cancel-safe: an event is never lost when the future is dropped.
    pub async fn recv(&mut self) -> Option<PacketEvent> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            if let Some(event) = self.pending.pop_front() {
                self.handle(event, None);
                continue;
            }
            if !self.fill_pending().await {
                return None;
            }
        }
    }

    /// Waits until an event is ready, then moves every event that is
    /// ready, up to `limit` (at least one), into `out`; returns how many,
    /// 0 once the link is closed and drained. Packets are decoded straight
    /// into `out`, one link chunk at a time: a busy consumer takes them in
    /// bulk with no stop in between.
    ///
    /// Cancel-safe: an event is never lost when the future is dropped.
    pub async fn recv_many(&mut self, out: &mut Vec<PacketEvent>, limit: usize) -> usize {
        loop {
            let n = self.drain_ready(out, limit.max(1));
            if n > 0 {
                return n;
            }
            if !self.fill_pending().await {
                return 0;
            }
        }
    }

    /// Waits for link events and keeps them for handling; false once the
    /// link is closed and drained.
    async fn fill_pending(&mut self) -> bool {
        let limit = self.config.event_batch.max(1);
        let mut batch = std::mem::take(&mut self.link_batch);
        let n = self.events.recv_many(&mut batch, limit).await;
        self.pending.extend(batch.drain(..));
        self.link_batch = batch;
        n > 0
    }

    /// Moves every event that is ready, up to `limit`, into `out` without
    /// waiting; returns how many. Lets a busy consumer take packets in bulk.
    pub fn drain_ready(&mut self, out: &mut Vec<PacketEvent>, limit: usize) -> usize {
        let start = out.len();
        let end = start.saturating_add(limit);
        while out.len() < end {
            if let Some(e) = self.ready.pop_front() {
                out.push(e);
                continue;
            }
            // Empty: start the ring over at its first slots (warm in the
            // cache) instead of walking its whole capacity.
            self.ready.clear();
            let event = match self.pending.pop_front() {
                Some(event) => event,
                None => match self.events.try_recv() {
                    Some(event) => event,
                    None => break,
                },
            };
            self.handle(event, Some((&mut *out, end)));
        }
        out.len() - start
    }

    /// Handles one link event. Its packets go to `direct` (a list and the
    /// length it may grow to) while there is room, else (and every other
    /// event) to `ready`, which must be empty when `direct` is given.
    fn handle(&mut self, event: LinkEvent, direct: Option<(&mut Vec<PacketEvent>, usize)>) {
        match event {
            LinkEvent::Connected(conn) => {
                self.conns.insert(
                    conn.id(),
                    ConnState {
                        decoder: PacketDecoder::new(self.config.max_packet),
                        datagram: conn.info().datagram,
                    },
                );
                self.ready.push_back(PacketEvent::Connected(PacketSender {
                    conn,
                    max: self.config.max_packet,
                    counters: self.counters.clone(),
                }));
            }
            LinkEvent::Data { connection, data } => {
                let Some(state) = self.conns.get_mut(&connection) else {
                    return; // closed for a format error; the rest is discarded
                };
                if state.datagram {
                    if data.len() > self.config.max_packet {
                        self.counters.oversized.fetch_add(1, Ordering::Relaxed);
                        return; // one datagram dropped; the peer may go on
                    }
                    self.counters
                        .packets_received
                        .fetch_add(1, Ordering::Relaxed);
                    self.ready
                        .push_back(PacketEvent::Packet { connection, data });
                    return;
                }
                let mut packets = std::mem::take(&mut self.packets);
                let result = state.decoder.decode_chunk(data, &mut packets);
                self.counters
                    .packets_received
                    .fetch_add(packets.len() as u64, Ordering::Relaxed);
                let packet = |data| PacketEvent::Packet { connection, data };
                if let Some((out, end)) = direct {
                    let room = end.saturating_sub(out.len()).min(packets.len());
                    out.extend(packets.drain(..room).map(packet));
                }
                self.ready.extend(packets.drain(..).map(packet));
                self.packets = packets;
                if let Err(error) = result {
                    self.fail(connection, error);
                }
            }
            LinkEvent::Disconnected { connection, reason } => {
                if self.failed.remove(&connection) {
                    return; // reported when the format error was found
                }
                let Some(state) = self.conns.remove(&connection) else {
                    return;
                };
                let reason = match state.decoder.finish() {
                    Err(e) => {
                        self.counters.truncated.fetch_add(1, Ordering::Relaxed);
                        PacketDisconnect::Packet(e)
                    }
                    Ok(()) => PacketDisconnect::Link(reason),
                };
                self.ready
                    .push_back(PacketEvent::Disconnected { connection, reason });
            }
            // Informational link events have no packet meaning.
            _ => {}
        }
    }

    fn fail(&mut self, connection: ConnectionId, error: PacketError) {
        tracing::debug!(%connection, %error, "closing connection");
        if matches!(error, PacketError::TooLarge { .. }) {
            self.counters.oversized.fetch_add(1, Ordering::Relaxed);
        }
        self.conns.remove(&connection);
        if let Some(conn) = self.link.connection(connection) {
            conn.abort();
            self.failed.insert(connection);
        }
        self.ready.push_back(PacketEvent::Disconnected {
            connection,
            reason: PacketDisconnect::Packet(error),
        });
    }
}
