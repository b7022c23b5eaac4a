//! UDP: a connected socket as one datagram connection, and an unconnected
//! one as a listener with a connection per remote address.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::connection::{Ends, finish};
use crate::queue::Take;
use crate::registry::Registry;
use crate::{Address, Connection, DisconnectReason, LinkError, LinkEvent, ListenerId, Origin};

/// How long a UDP listener rests after a receive error that is not an ICMP
/// echo of an earlier send, rather than spin on it.
const RECEIVE_RETRY: Duration = Duration::from_millis(50);

/// An unconnected UDP socket shared by a connection per remote address.
pub(crate) struct UdpListener {
    id: ListenerId,
    socket: Arc<UdpSocket>,
    local: Option<Address>,
    peers: tokio::sync::Mutex<HashMap<SocketAddr, Connection>>,
    cancel: CancellationToken,
}

impl UdpListener {
    /// Starts the listener `id` on `socket`, bound to `bound`, until `cancel`.
    pub(crate) fn start(
        registry: &Arc<Registry>,
        id: ListenerId,
        socket: UdpSocket,
        bound: Address,
        cancel: CancellationToken,
        events: mpsc::Sender<LinkEvent>,
    ) -> Arc<UdpListener> {
        let udp = Arc::new(UdpListener {
            id,
            socket: Arc::new(socket),
            local: Some(bound),
            peers: tokio::sync::Mutex::new(HashMap::new()),
            cancel,
        });
        registry.spawn(udp_listener_task(registry.clone(), udp.clone(), events));
        udp
    }
}

/// A connected UDP socket: each send is a datagram, each datagram an event.
pub(crate) async fn run_udp_connected(
    registry: Arc<Registry>,
    conn: Connection,
    socket: UdpSocket,
    events: mpsc::Sender<LinkEvent>,
) {
    if events
        .send(LinkEvent::Connected(conn.clone()))
        .await
        .is_err()
    {
        registry.unregister(&conn, DisconnectReason::Aborted);
        return;
    }
    let mut buf = vec![0u8; registry.config.max_datagram.max(1)];
    let mut batch = VecDeque::new();
    let abort = conn.shared.abort.clone();
    let reason = loop {
        tokio::select! {
            r = socket.recv(&mut buf) => match r {
                Ok(n) => {
                    registry.stats.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    if events.send(LinkEvent::Data { connection: conn.id(), data }).await.is_err() {
                        break DisconnectReason::Aborted;
                    }
                }
                // ICMP port unreachable from an earlier send: UDP has no
                // connection to lose, so keep going.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(e) => break e.into(),
            },
            t = std::future::poll_fn(|cx| conn.shared.queue.poll_take(cx, &mut batch)) => {
                if t == Take::Close {
                    break DisconnectReason::Closed;
                }
                if let Err(reason) = send_datagrams(&registry, &conn, &socket, None, &mut batch).await {
                    break reason;
                }
            }
            _ = abort.cancelled() => break DisconnectReason::Aborted,
        }
    };
    finish(&registry, &conn, reason, &events).await;
}

async fn send_datagrams(
    registry: &Registry,
    conn: &Connection,
    socket: &UdpSocket,
    to: Option<SocketAddr>,
    batch: &mut VecDeque<Bytes>,
) -> Result<(), DisconnectReason> {
    while let Some(d) = batch.pop_front() {
        let sent = match to {
            Some(peer) => socket.send_to(&d, peer).await,
            None => socket.send(&d).await,
        };
        match sent {
            Ok(n) => {
                registry
                    .stats
                    .bytes_sent
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(e.into()),
        }
        // A datagram refused by ICMP still left this host: it counts.
        conn.shared
            .written
            .fetch_add(d.len() as u64, Ordering::Release);
    }
    Ok(())
}

/// The listener's connection for `peer`, made (and announced) if new.
/// `Connected` is sent under the peers lock, so no `Data` for the peer can
/// overtake it.
pub(crate) async fn udp_peer_connection(
    registry: &Arc<Registry>,
    udp: &Arc<UdpListener>,
    peer: SocketAddr,
    events: &mpsc::Sender<LinkEvent>,
) -> Option<Connection> {
    let mut peers = udp.peers.lock().await;
    if let Some(c) = peers.get(&peer) {
        return Some(c.clone());
    }
    if peers.len() >= registry.config.max_udp_peers {
        return None;
    }
    let conn = registry.new_connection(
        Origin::Listener(udp.id),
        Ends {
            peer: Some(Address::udp(peer)),
            local: udp.local.clone(),
            ..Ends::default()
        },
        true,
        &udp.cancel,
    );
    if events
        .send(LinkEvent::Connected(conn.clone()))
        .await
        .is_err()
    {
        registry.unregister(&conn, DisconnectReason::Aborted);
        return None;
    }
    peers.insert(peer, conn.clone());
    drop(peers);
    registry.spawn(udp_peer_task(
        registry.clone(),
        udp.clone(),
        conn.clone(),
        peer,
        events.clone(),
    ));
    Some(conn)
}

/// [`udp_peer_connection`] without waiting: fails with `QueueFull` when the
/// event queue has no room for `Connected` (or another task holds the
/// peers, announcing a peer into that full queue).
pub(crate) fn try_udp_peer_connection(
    registry: &Arc<Registry>,
    udp: &Arc<UdpListener>,
    peer: SocketAddr,
    events: &mpsc::Sender<LinkEvent>,
) -> Result<Connection, LinkError> {
    let mut peers = udp.peers.try_lock().map_err(|_| LinkError::QueueFull)?;
    if let Some(c) = peers.get(&peer) {
        return Ok(c.clone());
    }
    if peers.len() >= registry.config.max_udp_peers {
        return Err(LinkError::Unsupported(format!(
            "UDP listener tracks {} peers already",
            registry.config.max_udp_peers
        )));
    }
    let permit = events.try_reserve().map_err(|e| match e {
        mpsc::error::TrySendError::Full(()) => LinkError::QueueFull,
        mpsc::error::TrySendError::Closed(()) => LinkError::Closed,
    })?;
    let conn = registry.new_connection(
        Origin::Listener(udp.id),
        Ends {
            peer: Some(Address::udp(peer)),
            local: udp.local.clone(),
            ..Ends::default()
        },
        true,
        &udp.cancel,
    );
    permit.send(LinkEvent::Connected(conn.clone()));
    peers.insert(peer, conn.clone());
    drop(peers);
    registry.spawn(udp_peer_task(
        registry.clone(),
        udp.clone(),
        conn.clone(),
        peer,
        events.clone(),
    ));
    Ok(conn)
}

/// Writes one UDP peer's queue through the listener's socket.
async fn udp_peer_task(
    registry: Arc<Registry>,
    udp: Arc<UdpListener>,
    conn: Connection,
    peer: SocketAddr,
    events: mpsc::Sender<LinkEvent>,
) {
    let mut batch = VecDeque::new();
    let abort = conn.shared.abort.clone();
    let reason = loop {
        tokio::select! {
            t = std::future::poll_fn(|cx| conn.shared.queue.poll_take(cx, &mut batch)) => {
                if t == Take::Close {
                    break DisconnectReason::Closed;
                }
                if let Err(reason) = send_datagrams(&registry, &conn, &udp.socket, Some(peer), &mut batch).await {
                    break reason;
                }
            }
            _ = abort.cancelled() => break DisconnectReason::Aborted,
        }
    };
    udp.peers.lock().await.remove(&peer);
    finish(&registry, &conn, reason, &events).await;
}

async fn udp_listener_task(
    registry: Arc<Registry>,
    udp: Arc<UdpListener>,
    events: mpsc::Sender<LinkEvent>,
) {
    let mut buf = vec![0u8; registry.config.max_datagram.max(1)];
    loop {
        let received = tokio::select! {
            r = udp.socket.recv_from(&mut buf) => r,
            _ = udp.cancel.cancelled() => break,
        };
        let (n, peer) = match received {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                tracing::warn!(listener = %udp.id, "UDP receive failed: {e}");
                tokio::time::sleep(RECEIVE_RETRY).await;
                continue;
            }
        };
        let Some(conn) = udp_peer_connection(&registry, &udp, peer, &events).await else {
            registry
                .stats
                .datagrams_dropped
                .fetch_add(1, Ordering::Relaxed);
            continue;
        };
        registry
            .stats
            .bytes_received
            .fetch_add(n as u64, Ordering::Relaxed);
        let data = Bytes::copy_from_slice(&buf[..n]);
        if events
            .send(LinkEvent::Data {
                connection: conn.id(),
                data,
            })
            .await
            .is_err()
        {
            break;
        }
    }
}
