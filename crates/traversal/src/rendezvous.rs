//! `Rendezvous`: the tokio shell around [`RendezvousCore`]. One task owns
//! a [`Packeter`] listening on the given URLs and feeds the core; a
//! [`StunServer`] answers STUN on the UDP port of the first listen address
//! (or, when that is `quic://`, [`stun_on_quic`] on the QUIC socket).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use weft_link::{Address, ConnectionId, LinkConfig, ListenOptions};
use weft_messaging::Identity;
use weft_messaging::certificate::CertificateNames;
use weft_packeter::{PacketEvent, PacketSender, Packeter, PacketerConfig};
use weft_stun::{StunServer, StunServerConfig};

use crate::config::RendezvousConfig;
use crate::core::RendezvousCore;
use crate::error::TraversalError;
use crate::event::{RendezvousEvent, RendezvousStats, Transmit};
use crate::stun_on_quic;
use crate::wire::{Frame, relay_data_head};

/// The largest rendezvous packet accepted: a relay chunk and its header
/// fit with room to spare; anything bigger closes the connection before
/// it is buffered.
pub const MAX_FRAME: usize = 64 * 1024;

/// How to start a [`Rendezvous`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RendezvousOptions {
    /// Where to listen, with each listener's options (TLS for `tls://`
    /// and `quic://`). At least one. Default: none.
    pub listen: Vec<(Address, ListenOptions)>,
    /// Whether to answer STUN over UDP on the IP and port of the first
    /// listen address. When that address is `quic://` (and there is no
    /// [`alternate_ip`](Self::alternate_ip)), STUN is answered on the QUIC
    /// socket itself (RFC 7983 demultiplexing, Binding only); with an
    /// alternate IP a STUN server of its own must bind that port, which
    /// a `quic://` listener holds. Default: `true`.
    pub stun: bool,
    /// A second IP for RFC 5780 (CHANGE-REQUEST): the STUN server then
    /// also answers on it and on the primary port + 1. Without one, a
    /// second plain STUN server answers on another port of the first IP
    /// ([`Rendezvous::second_stun_addr`]). Default: none.
    pub alternate_ip: Option<IpAddr>,
    /// The protocol's limits and policies.
    pub config: RendezvousConfig,
    /// The listeners' link configuration.
    pub link: LinkConfig,
    /// Events held for [`RendezvousEvents`]; beyond it new ones are
    /// dropped and counted ([`Rendezvous::events_dropped`]). Default: 256.
    pub event_capacity: usize,
}

impl Default for RendezvousOptions {
    fn default() -> RendezvousOptions {
        RendezvousOptions {
            listen: Vec::new(),
            stun: true,
            alternate_ip: None,
            config: RendezvousConfig::default(),
            link: LinkConfig::default(),
            event_capacity: 256,
        }
    }
}

impl RendezvousOptions {
    /// Options listening on `url` with no TLS.
    pub fn listen(url: Address) -> RendezvousOptions {
        RendezvousOptions {
            listen: vec![(url, ListenOptions::default())],
            ..RendezvousOptions::default()
        }
    }
}

/// The rendezvous's events, in order. Dropping it discards later events.
#[derive(Debug)]
pub struct RendezvousEvents {
    rx: mpsc::Receiver<RendezvousEvent>,
}

impl RendezvousEvents {
    /// The next event; `None` once the rendezvous has stopped.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<RendezvousEvent> {
        self.rx.recv().await
    }
}

enum Command {
    CloseRelay(Identity, Identity, oneshot::Sender<bool>),
}

struct Shared {
    commands: mpsc::Sender<Command>,
    closing: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    listening: Vec<Address>,
    stun: Option<SocketAddr>,
    second_stun: Option<SocketAddr>,
    stats: Arc<Mutex<RendezvousStats>>,
    events_dropped: Arc<AtomicU64>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = self.closing.send(true);
    }
}

/// A running rendezvous. Cheap to clone; dropping the last clone stops
/// it, [`close`](Self::close) stops it and waits.
///
/// ```
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use weft_traversal::{Rendezvous, RendezvousOptions};
///
/// let options = RendezvousOptions::listen("tcp://127.0.0.1:0".parse()?);
/// let (rendezvous, _events) = Rendezvous::start(options).await?;
/// let stun = rendezvous.stun_addr().expect("STUN is on by default");
/// assert_eq!(Some(stun), rendezvous.listening()[0].socket_addr());
/// rendezvous.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Rendezvous {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Rendezvous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendezvous")
            .field("listening", &self.shared.listening)
            .field("stun", &self.shared.stun)
            .finish()
    }
}

impl Rendezvous {
    /// Binds the listeners (and the STUN server) and starts serving.
    /// Cancel-safe: what was bound before the future is dropped is closed
    /// with it.
    pub async fn start(
        options: RendezvousOptions,
    ) -> Result<(Rendezvous, RendezvousEvents), TraversalError> {
        if options.listen.is_empty() {
            return Err(TraversalError::NoListenAddress);
        }
        let packeter_config = {
            let mut c = PacketerConfig::default();
            c.max_packet = MAX_FRAME;
            c
        };
        let mut packeter = Packeter::new(options.link.clone(), packeter_config);
        let mut listening = Vec::new();
        let mut first_quic = None;
        for (url, listen_options) in &options.listen {
            let bound = packeter
                .link()
                .listen_with(url, listen_options.clone())
                .await?;
            if listening.is_empty() {
                first_quic = packeter.link().quic_stun(bound.id);
            }
            listening.push(bound.address);
        }
        // STUN on the first listener's QUIC socket, when it is one.
        let on_quic = match first_quic {
            Some(channel) if options.stun && options.alternate_ip.is_none() => {
                let at = listening[0]
                    .socket_addr()
                    .expect("a QUIC listener has an IP and port");
                Some((at, tokio::spawn(stun_on_quic::answer(channel, at))))
            }
            _ => None,
        };
        let stun = if options.stun && on_quic.is_none() {
            let first = &listening[0];
            let at = first
                .socket_addr()
                .ok_or_else(|| TraversalError::NoStunAddress(first.to_string()))?;
            let server = StunServer::bind(StunServerConfig {
                listen: at,
                alternate: options.alternate_ip.map(|ip| SocketAddr::new(ip, 0)),
                ..StunServerConfig::default()
            })
            .await?;
            Some(server)
        } else {
            None
        };
        let stun_addr = stun
            .as_ref()
            .map(StunServer::primary)
            .or(on_quic.as_ref().map(|(at, _)| *at));
        // Without RFC 5780, a second plain STUN server on another port of
        // the same IP lets peers tell whether their mapping varies.
        let second_stun = match stun_addr {
            Some(at) if options.alternate_ip.is_none() => Some(
                StunServer::bind(StunServerConfig {
                    listen: SocketAddr::new(at.ip(), 0),
                    ..StunServerConfig::default()
                })
                .await?,
            ),
            _ => None,
        };
        let second_stun_addr = second_stun.as_ref().map(StunServer::primary);
        let mut core = RendezvousCore::new(options.config);
        core.set_second_stun(second_stun_addr.map(|a| a.port()));
        let (commands, command_rx) = mpsc::channel(16);
        let (closing, closing_rx) = watch::channel(false);
        let (events_tx, events_rx) = mpsc::channel(options.event_capacity.max(1));
        let stats = Arc::new(Mutex::new(RendezvousStats::default()));
        let events_dropped = Arc::new(AtomicU64::new(0));
        let run = Run {
            core,
            senders: HashMap::new(),
            events: events_tx,
            stats: stats.clone(),
            events_dropped: events_dropped.clone(),
        };
        let task = tokio::spawn(async move {
            run.run(&mut packeter, command_rx, closing_rx).await;
            packeter.link().close().await;
            drop((stun, second_stun));
            if let Some((_, answering)) = on_quic {
                answering.abort();
            }
        });
        let shared = Shared {
            commands,
            closing,
            task: Mutex::new(Some(task)),
            listening,
            stun: stun_addr,
            second_stun: second_stun_addr,
            stats,
            events_dropped,
        };
        Ok((
            Rendezvous {
                shared: Arc::new(shared),
            },
            RendezvousEvents { rx: events_rx },
        ))
    }

    /// The addresses listened on, as bound (port 0 resolved), in the
    /// order given.
    pub fn listening(&self) -> &[Address] {
        &self.shared.listening
    }

    /// Where STUN is answered over UDP, when it is.
    pub fn stun_addr(&self) -> Option<SocketAddr> {
        self.shared.stun
    }

    /// Where the second STUN server answers, when there is one: without
    /// an [`alternate_ip`](RendezvousOptions::alternate_ip), a plain STUN
    /// server on another port of [`stun_addr`](Self::stun_addr)'s IP,
    /// which `Registered` names to each peer, so that a peer whose NAT
    /// maps each destination port anew finds out (and punches by birthday
    /// probing). A firewall in front of the rendezvous must let it through
    /// as it lets the first.
    pub fn second_stun_addr(&self) -> Option<SocketAddr> {
        self.shared.second_stun
    }

    /// The core's counters.
    pub fn stats(&self) -> RendezvousStats {
        *self.shared.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Events dropped because [`RendezvousEvents`] was not read.
    pub fn events_dropped(&self) -> u64 {
        self.shared.events_dropped.load(Ordering::Relaxed)
    }

    /// Ends the relay channel between two identities, if one is open.
    /// Cancel-safe (the channel may be closed all the same).
    pub async fn close_relay(&self, a: &Identity, b: &Identity) -> Result<bool, TraversalError> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .commands
            .send(Command::CloseRelay(a.clone(), b.clone(), tx))
            .await
            .map_err(|_| TraversalError::Closed)?;
        rx.await.map_err(|_| TraversalError::Closed)
    }

    /// Stops serving: closes every connection and the STUN server, and
    /// waits until they are. Cancel-safe: the rendezvous stops anyway.
    pub async fn close(&self) {
        let _ = self.shared.closing.send(true);
        let task = self
            .shared
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The names of the certificate a connection's peer presented (the TLS
/// handshake verified it), read here so the core gets plain data. A
/// certificate whose names cannot be read binds nothing.
fn certificate_names(sender: &PacketSender) -> Option<Arc<CertificateNames>> {
    let leaf = sender.info().peer_certificates.as_ref()?.first()?;
    let names = CertificateNames::from_der(leaf).unwrap_or_else(|error| {
        tracing::debug!(conn = %sender.id(), %error, "unreadable peer certificate");
        CertificateNames::default()
    });
    Some(Arc::new(names))
}

/// The task's state.
struct Run {
    core: RendezvousCore,
    senders: HashMap<ConnectionId, PacketSender>,
    events: mpsc::Sender<RendezvousEvent>,
    stats: Arc<Mutex<RendezvousStats>>,
    events_dropped: Arc<AtomicU64>,
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Run {
    async fn run(
        mut self,
        packeter: &mut Packeter,
        mut commands: mpsc::Receiver<Command>,
        mut closing: watch::Receiver<bool>,
    ) {
        loop {
            let deadline = self.core.poll_timeout(now());
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = packeter.recv() => match event {
                    Some(event) => self.handle(event),
                    None => break,
                },
                command = commands.recv() => match command {
                    Some(Command::CloseRelay(a, b, reply)) => {
                        let _ = reply.send(self.core.close_relay(&a, &b));
                    }
                    None => break,
                },
                _ = sleep => self.core.handle_timeout(now()),
                _ = closing.changed() => break,
            }
            self.flush();
        }
    }

    fn handle(&mut self, event: PacketEvent) {
        match event {
            PacketEvent::Connected(sender) => {
                let observed = sender.info().peer.as_ref().and_then(Address::socket_addr);
                let names = certificate_names(&sender);
                let id = sender.id();
                self.senders.insert(id, sender);
                self.core.handle_connected_with(now(), id, observed, names);
            }
            PacketEvent::Packet { connection, data } => {
                // The core closes the connection; the error is logged there.
                let _ = self.core.handle_packet(now(), connection, &data);
            }
            PacketEvent::Disconnected { connection, .. } => {
                self.senders.remove(&connection);
                self.core.handle_disconnected(now(), connection);
            }
            _ => {}
        }
    }

    /// Writes what the core produced. A connection whose send queue is
    /// full is not reading what it granted windows for: it is closed,
    /// which ends its registration and channels.
    fn flush(&mut self) {
        while let Some(transmit) = self.core.poll_transmit() {
            match transmit {
                Transmit::Frame { conn, frame } => {
                    let Some(sender) = self.senders.get(&conn) else {
                        continue;
                    };
                    let sent = match &frame {
                        // The relayed bytes go out as they came in.
                        Frame::RelayData { channel, data } => {
                            sender.try_send_parts(&relay_data_head(*channel), data)
                        }
                        other => sender.try_send(other.encode()),
                    };
                    if let Err(error) = sent {
                        tracing::debug!(%conn, %error, "rendezvous: closing a connection that does not read");
                        sender.close();
                        self.senders.remove(&conn);
                        self.core.handle_disconnected(now(), conn);
                    }
                }
                Transmit::Close { conn } => {
                    if let Some(sender) = self.senders.remove(&conn) {
                        sender.close();
                    }
                }
            }
        }
        while let Some(event) = self.core.poll_event() {
            if self.events.try_send(event).is_err() {
                self.events_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = self.core.stats();
    }
}
