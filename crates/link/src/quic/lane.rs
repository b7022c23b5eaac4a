//! Lanes: further streams of a QUIC connection, each a link connection of
//! its own.
//!
//! A `quic://` link connection is one QUIC connection and its first
//! stream. Either side may open more streams on the same QUIC connection
//! with [`Link::open_lane`]; each is a link connection with its own id,
//! send queue, counters and throttle, whose [`Origin`] is
//! [`Origin::Lane`] naming the connection it rides beside. Streams of one
//! QUIC connection do not wait for each other: a packet lost on one lane
//! holds up that lane only, and a lane full of large packets does not
//! delay the small ones of another. What one lane carries is in order;
//! between lanes there is no order.
//!
//! The first stream has priority over lanes: when both have data waiting
//! and QUIC can send only some of it, the first stream's goes first.
//!
//! A lane lives as long as its QUIC connection: when the first stream's
//! link connection ends, its lanes are closed with it (aborted when it was
//! aborted), and the QUIC connection closes once they have ended.
//!
//! # On the wire
//! The side that opens a lane opens a bidirectional stream and writes
//! [`STREAM_LANE`](super::STREAM_LANE) on it before anything else; the
//! other side announces the lane once it has read that byte. A stream
//! starting with anything else is reset. Each side lets its peer have at
//! most [`QuicOptions::max_lanes`](super::QuicOptions::max_lanes) lanes
//! open at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::STREAM_LANE;
use super::stream::QuicStream;
use crate::connection::{Connection, ConnectionId, Ends, Origin, run_stream};
use crate::error::LinkError;
use crate::link::{Link, LinkEvent};
use crate::registry::Registry;

/// A lane's send priority in QUIC, below the first stream's (0): of what
/// waits to be sent, the first stream's goes first.
const LANE_PRIORITY: i32 = -1;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A QUIC link connection that lanes can be opened beside: its QUIC
/// connection, and the lanes it carries now.
pub(crate) struct LaneHost {
    connection: quinn::Connection,
    /// The link connection of the first stream.
    first: Connection,
    events: mpsc::Sender<LinkEvent>,
    lanes: Mutex<HashMap<ConnectionId, Connection>>,
    /// The lanes' tasks, which the first stream's task waits for before it
    /// closes the QUIC connection.
    tasks: TaskTracker,
}

/// The lane hosts of a link, by the id of their first stream's connection.
#[derive(Default)]
pub(crate) struct LaneHosts(Mutex<HashMap<ConnectionId, Arc<LaneHost>>>);

impl LaneHosts {
    fn get(&self, id: ConnectionId) -> Option<Arc<LaneHost>> {
        lock(&self.0).get(&id).cloned()
    }
}

impl LaneHost {
    /// Registers a lane of this connection, running on `stream`.
    fn start_lane(self: &Arc<Self>, registry: &Arc<Registry>, stream: QuicStream) -> Connection {
        // The first stream's data goes before any lane's within what QUIC
        // may send: it is the control lane of the layers above.
        let _ = stream.send.set_priority(LANE_PRIORITY);
        let info = self.first.info();
        let ends = Ends {
            peer: info.peer.clone(),
            local: info.local.clone(),
            certificates: info.peer_certificates.clone(),
            credentials: None,
        };
        // Aborting the first stream's connection aborts its lanes.
        let conn =
            registry.new_connection(Origin::Lane(info.id), ends, false, &self.first.shared.abort);
        lock(&self.lanes).insert(conn.id(), conn.clone());
        let host = self.clone();
        let lane = conn.clone();
        let registry2 = registry.clone();
        let registry = registry2.clone();
        // Tracked by the link too, whose close waits for its tasks.
        registry2.spawn(self.tasks.track_future(async move {
            // Resolves once our finished stream is acknowledged, the peer
            // stops reading it, or the connection is gone.
            let acknowledged = stream.send.stopped();
            let abort = lane.shared.abort.clone();
            let id = lane.id();
            run_stream(registry.clone(), lane, stream, host.events.clone()).await;
            lock(&host.lanes).remove(&id);
            if host.connection.close_reason().is_none() && !abort.is_cancelled() {
                let _ = tokio::time::timeout(registry.config.close_timeout, acknowledged).await;
            }
        }));
        conn
    }
}

/// Makes `first` (the link connection of `connection`'s first stream) a
/// lane host: lanes can be opened beside it. Returns the host, for
/// [`accept_lanes`] and [`end_lanes`].
pub(crate) fn host_lanes(
    registry: &Arc<Registry>,
    connection: &quinn::Connection,
    first: &Connection,
    events: &mpsc::Sender<LinkEvent>,
) -> Arc<LaneHost> {
    let host = Arc::new(LaneHost {
        connection: connection.clone(),
        first: first.clone(),
        events: events.clone(),
        lanes: Mutex::new(HashMap::new()),
        tasks: TaskTracker::new(),
    });
    lock(&registry.lane_hosts.0).insert(first.id(), host.clone());
    host
}

/// Accepts the lanes the peer opens beside `host`'s first stream, until
/// the QUIC connection ends. Run in the first stream's own task (beside
/// its driver, not as a task of its own: an idle connection costs no
/// more).
pub(crate) async fn accept_lanes(registry: &Arc<Registry>, host: &Arc<LaneHost>) {
    while let Ok((send, recv)) = host.connection.accept_bi().await {
        // Each stream's first byte is read in a task of its own, so that a
        // peer slow to write it holds up no other lane.
        let accept = accept_lane(registry.clone(), host.clone(), send, recv);
        registry.spawn(host.tasks.track_future(accept));
    }
}

/// Reads the first byte of a stream the peer opened and, when it names a
/// lane, starts the lane; otherwise resets the stream.
async fn accept_lane(
    registry: Arc<Registry>,
    host: Arc<LaneHost>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let mut kind = [0u8; 1];
    let timeout = registry.config.tls_handshake_timeout;
    let read = tokio::time::timeout(timeout, recv.read_exact(&mut kind)).await;
    if matches!(read, Ok(Ok(()))) && kind[0] == STREAM_LANE && !host.first.is_closed() {
        host.start_lane(&registry, QuicStream { send, recv });
        return;
    }
    tracing::debug!(conn = %host.first.id(), "a stream that is not a lane: reset");
    let _ = send.reset(quinn::VarInt::from_u32(0));
    let _ = recv.stop(quinn::VarInt::from_u32(0));
}

/// Ends `host`'s lanes once its first stream's connection has ended:
/// closes them (aborts them when the first was aborted) and waits, within
/// the close timeout, for their tasks, so that what they sent is not cut
/// off when the QUIC connection closes.
pub(crate) async fn end_lanes(registry: &Registry, host: Arc<LaneHost>, aborted: bool) {
    lock(&registry.lane_hosts.0).remove(&host.first.id());
    let lanes: Vec<Connection> = lock(&host.lanes).values().cloned().collect();
    for lane in lanes {
        if aborted {
            lane.abort();
        } else {
            lane.close();
        }
    }
    host.tasks.close();
    let _ = tokio::time::timeout(registry.config.close_timeout, host.tasks.wait()).await;
}

impl Link {
    /// Opens a lane beside `of`, a `quic://` connection that is up: another
    /// stream of its QUIC connection, as a connection of its own (see
    /// [`ConnectionInfo::lanes`](crate::ConnectionInfo::lanes)). Packets on
    /// different lanes do not wait for each other: a large transfer on one
    /// does not hold up small packets on another, nor does a lost packet.
    /// The lane is announced on both sides as [`LinkEvent::Connected`] with
    /// [`Origin::Lane`]; it ends when `of` ends, or when either side closes
    /// it. Each side lets its peer have at most
    /// [`QuicOptions::max_lanes`](crate::quic::QuicOptions::max_lanes)
    /// lanes open at once: past that, opening waits for one to end (up to
    /// the link's TLS handshake timeout).
    ///
    /// Fails with [`LinkError::NoLanes`] when `of` is not a `quic://`
    /// connection of this link that is up (lanes themselves carry none).
    ///
    /// Cancel-safe: a call dropped before it returns leaves no lane on
    /// this side (the peer may see one open and end at once).
    pub async fn open_lane(&self, of: ConnectionId) -> Result<Connection, LinkError> {
        let registry = self.registry();
        let host = registry
            .lane_hosts
            .get(of)
            .filter(|h| !h.first.shared.closing.is_cancelled())
            .ok_or(LinkError::NoLanes(of))?;
        let peer = || {
            host.first
                .info()
                .peer
                .as_ref()
                .map_or_else(String::new, ToString::to_string)
        };
        let timeout = registry.config.tls_handshake_timeout;
        let opened = tokio::time::timeout(timeout, async {
            let (mut send, recv) = host.connection.open_bi().await?;
            send.write_all(&[STREAM_LANE]).await.map_err(|e| match e {
                quinn::WriteError::ConnectionLost(e) => e,
                _ => quinn::ConnectionError::LocallyClosed,
            })?;
            Ok::<_, quinn::ConnectionError>(QuicStream { send, recv })
        })
        .await;
        let stream = match opened {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                return Err(LinkError::Quic {
                    peer: peer(),
                    source,
                });
            }
            Err(_) => {
                return Err(LinkError::HandshakeTimeout {
                    peer: peer(),
                    timeout,
                });
            }
        };
        if host.first.is_closed() {
            return Err(LinkError::NoLanes(of));
        }
        Ok(host.start_lane(registry, stream))
    }
}
