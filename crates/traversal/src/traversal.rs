//! `Traversal`: a messaging peer's side of the rendezvous. It registers the
//! peer's identity and turns each relay channel into a messaging
//! connection: one end of a `tokio::io::duplex` pipe is adopted into the
//! messaging's own link ([`Link::adopt`](weft_link::Link::adopt)), the
//! other is pumped as `RelayData` frames. Messaging's handshake, acks,
//! resend and dedupe run over it unchanged, so a path is just another
//! connection for an identity. The relay's connection is marked a
//! stand-in ([`Messaging::mark_standby`]): any other connection to the
//! peer (a direct path) replaces it on both sides, and what was in flight
//! on it is resent there.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weft_link::address::Scheme;
use weft_link::{Address, ConnectOptions, ConnectionId};
use weft_messaging::{HandlerId, Identity, Messaging, WeakMessaging};
use weft_packeter::{PacketEvent, PacketSender, Packeter, PacketerConfig};

pub use crate::config::TraversalConfig;
use crate::direct::DirectInput;
use crate::error::TraversalError;
use crate::path::{Path, Transport, TraversalEvent, Via};
use crate::rendezvous::MAX_FRAME;
use crate::wire::{Candidate, ChannelId, CloseReason, Frame, relay_data_head};

/// Candidates and start signals waiting to go to the rendezvous, at most.
pub const SIGNAL_QUEUE: usize = 64;

/// Peers whose last reported direct connection is remembered, at most;
/// past it the memory starts over (at worst a path is reported twice).
const MAX_REPORTED: usize = 1024;

/// A [`Traversal`]'s events, in order. Dropping it discards later events.
#[derive(Debug)]
pub struct TraversalEvents {
    rx: mpsc::Receiver<TraversalEvent>,
}

impl TraversalEvents {
    /// The next event; `None` once the traversal has stopped. Cancel-safe.
    pub async fn recv(&mut self) -> Option<TraversalEvent> {
        self.rx.recv().await
    }
}

/// Identities to keep a path to; `true` when [`Traversal::reach`] named
/// it since the task last looked.
type Wanted = Arc<Mutex<HashMap<Identity, bool>>>;

/// What the handles share. The task holds none of it but `closing`'s
/// receiver, so that dropping the last handle ends it.
struct Shared {
    wanted: Wanted,
    max_wanted: usize,
    wake: Arc<Notify>,
    closing: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    events_dropped: Arc<AtomicU64>,
    /// The messaging's connect and disconnect handlers, removed when this
    /// ends.
    handlers: Mutex<Option<(WeakMessaging, [HandlerId; 2])>>,
    /// Candidates and start signals for the rendezvous, to the task.
    signals: mpsc::Sender<Frame>,
    /// The port direct paths are dialled from and accepted on.
    direct_port: Option<u16>,
}

impl Shared {
    fn remove_handler(&self) {
        let handlers = self
            .handlers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((messaging, ids)) = handlers {
            if let Some(messaging) = messaging.upgrade() {
                for id in ids {
                    messaging.remove_handler(id);
                }
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.remove_handler();
        let _ = self.closing.send(true);
    }
}

/// A messaging peer's client of a rendezvous. Cheap to clone; dropping the
/// last clone disconnects from the rendezvous and ends its relay paths,
/// [`close`](Self::close) does so and waits.
///
/// ```
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use weft_messaging::{Identity, Message, Messaging};
/// use weft_traversal::{Rendezvous, RendezvousOptions, Traversal, TraversalEvent};
///
/// let (rendezvous, _) =
///     Rendezvous::start(RendezvousOptions::listen("tcp://127.0.0.1:0".parse()?)).await?;
/// let at = rendezvous.listening()[0].clone();
///
/// // Two peers with no listener: each reaches only the rendezvous.
/// let alice = Messaging::new(Identity::new("alice")?, Default::default()).await?;
/// let bob = Messaging::new(Identity::new("bob")?, Default::default()).await?;
/// let (to_alice, _) = Traversal::start(&alice, &at, Default::default(), Default::default())?;
/// let (_to_bob, mut bob_events) = Traversal::start(&bob, &at, Default::default(), Default::default())?;
/// // Registered first, so that alice's reach finds bob at once.
/// while let Some(event) = bob_events.recv().await {
///     if matches!(event, TraversalEvent::Registered { .. }) {
///         break;
///     }
/// }
///
/// to_alice.reach(bob.identity())?;
/// alice.send_message(bob.identity(), Message::new("via the relay")).await?;
/// let got = bob.recv(Some(Duration::from_secs(5))).await?;
/// assert_eq!(&got.message.data[..], b"via the relay");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Traversal {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Traversal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traversal").finish_non_exhaustive()
    }
}

impl Traversal {
    /// Connects to the rendezvous at `rendezvous` (reconnecting when the
    /// connection drops) and registers `messaging`'s identity on every
    /// connection. Needs a tokio runtime.
    pub fn start(
        messaging: &Messaging,
        rendezvous: &Address,
        options: ConnectOptions,
        config: TraversalConfig,
    ) -> Result<(Traversal, TraversalEvents), TraversalError> {
        let packeter_config = {
            let mut c = PacketerConfig::default();
            c.max_packet = MAX_FRAME;
            c
        };
        let packeter = Packeter::new(config.link.clone(), packeter_config);
        packeter.link().connect_with(rendezvous, options)?;
        let (closing, closing_rx) = watch::channel(false);
        let (events_tx, events_rx) = mpsc::channel(config.event_capacity.max(1));
        let (signals_tx, signals_rx) = mpsc::channel(SIGNAL_QUEUE);
        let direct = if config.direct.enabled {
            let started = crate::direct::spawn(
                messaging.downgrade(),
                messaging.identity().clone(),
                &config,
                rendezvous.socket_addr(),
                signals_tx.clone(),
                closing_rx.clone(),
            );
            Some(started.map_err(TraversalError::DirectPort)?)
        } else {
            None
        };
        let shared = Arc::new(Shared {
            wanted: Wanted::default(),
            max_wanted: config.max_wanted,
            wake: Arc::new(Notify::new()),
            closing,
            task: Mutex::new(None),
            events_dropped: Arc::new(AtomicU64::new(0)),
            handlers: Mutex::new(None),
            signals: signals_tx,
            direct_port: direct.as_ref().map(|d| d.port),
        });
        let (ended_tx, ended_rx) = mpsc::channel(64);
        let (connected_tx, connected_rx) = mpsc::channel(64);
        let run = Run {
            messaging: messaging.downgrade(),
            identity: messaging.identity().clone(),
            transport: Transport::of(rendezvous.scheme()),
            scheme: rendezvous.scheme(),
            config,
            wanted: shared.wanted.clone(),
            wake: shared.wake.clone(),
            events_dropped: shared.events_dropped.clone(),
            events: events_tx,
            sender: None,
            remote: None,
            registered: false,
            channels: HashMap::new(),
            requested: HashSet::new(),
            reported: HashMap::new(),
            retries: Vec::new(),
            ended: ended_tx,
            direct: direct.as_ref().map(|d| d.input.clone()),
        };
        let task = tokio::spawn(run.run(packeter, closing_rx, ended_rx, signals_rx, connected_rx));
        *shared.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        // A wanted peer whose connection ends (a direct path that died)
        // gets a relay path again.
        let (wanted, wake) = (shared.wanted.clone(), shared.wake.clone());
        let on_disconnect = messaging.on_disconnect(move |peer| {
            let mut wanted = wanted.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(named) = wanted.get_mut(peer) {
                *named = true;
                wake.notify_one();
            }
        });
        // A wanted peer connected: the task reports the path when it is
        // not one of our relays. Past the queue's bound a report is lost,
        // never the connection.
        let wanted = shared.wanted.clone();
        let racing = direct.map(|d| d.racing);
        let on_connect = messaging.on_connect(move |peer| {
            let wanted = wanted.lock().unwrap_or_else(|p| p.into_inner());
            let raced = racing
                .as_ref()
                .is_some_and(|r| r.lock().unwrap_or_else(|p| p.into_inner()).contains(peer));
            if wanted.contains_key(peer) || raced {
                let _ = connected_tx.try_send(peer.clone());
            }
        });
        *shared.handlers.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((messaging.downgrade(), [on_disconnect, on_connect]));
        Ok((Traversal { shared }, TraversalEvents { rx: events_rx }))
    }

    /// Keeps a path to `peer`: asks the rendezvous for a relay channel now
    /// (or as soon as we are registered, and as soon as `peer` registers),
    /// and again whenever the path ends while messaging has no other
    /// connection to `peer`, or messaging's connection to `peer` (a direct
    /// one) ends. Cheap to call again; fails with
    /// [`TraversalError::Busy`] past
    /// [`max_wanted`](TraversalConfig::max_wanted) identities.
    pub fn reach(&self, peer: &Identity) -> Result<(), TraversalError> {
        let mut wanted = self.shared.wanted.lock().unwrap_or_else(|p| p.into_inner());
        if !wanted.contains_key(peer) && wanted.len() >= self.shared.max_wanted {
            return Err(TraversalError::Busy);
        }
        wanted.insert(peer.clone(), true);
        drop(wanted);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Stops wanting a path to `peer` (an open one stays until it ends).
    pub fn forget(&self, peer: &Identity) -> bool {
        self.shared
            .wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(peer)
            .is_some()
    }

    /// Sends our candidate addresses to `peer` through the rendezvous (at
    /// most [`MAX_CANDIDATES`](crate::wire::MAX_CANDIDATES); it gets
    /// [`TraversalEvent::Candidates`]). For the direct paths of the next
    /// step; a signal sent while not registered is dropped. Fails with
    /// [`TraversalError::Busy`] when [`SIGNAL_QUEUE`] signals wait.
    pub fn send_candidates(
        &self,
        peer: &Identity,
        addrs: Vec<Candidate>,
    ) -> Result<(), TraversalError> {
        self.signal(Frame::Candidates {
            peer: peer.clone(),
            addrs,
        })
    }

    /// Sends `peer` a start signal for direct attempt `attempt` of kind
    /// `strategy`, to begin after `delay` (it gets
    /// [`TraversalEvent::Start`]). As [`send_candidates`](Self::send_candidates).
    pub fn send_start(
        &self,
        peer: &Identity,
        attempt: u32,
        strategy: u8,
        delay: Duration,
    ) -> Result<(), TraversalError> {
        self.signal(Frame::Start {
            peer: peer.clone(),
            attempt,
            strategy,
            delay_ms: delay.as_millis().min(u128::from(u16::MAX)) as u16,
        })
    }

    fn signal(&self, frame: Frame) -> Result<(), TraversalError> {
        self.shared.signals.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => TraversalError::Busy,
            mpsc::error::TrySendError::Closed(_) => TraversalError::Closed,
        })
    }

    /// The local TCP port direct paths are dialled from and accepted on
    /// (the port of our candidates); `None` when direct paths are off.
    pub fn direct_port(&self) -> Option<u16> {
        self.shared.direct_port
    }

    /// Events dropped because [`TraversalEvents`] was not read.
    pub fn events_dropped(&self) -> u64 {
        self.shared.events_dropped.load(Ordering::Relaxed)
    }

    /// Disconnects from the rendezvous, ends the relay paths and waits
    /// until they are. Cancel-safe: it stops anyway.
    pub async fn close(&self) {
        self.shared.remove_handler();
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

/// One relay channel as this side runs it.
struct Channel {
    path: Path,
    /// The connection messaging runs over it.
    connection: ConnectionId,
    /// Bytes we may send: the window the rendezvous granted.
    credit: Arc<Semaphore>,
    /// What arrived for messaging, to the writer task.
    inbound: mpsc::Sender<Bytes>,
    pump: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Channel {
    fn stop(self) {
        self.pump.abort();
        self.writer.abort();
    }
}

/// The task's state.
struct Run {
    messaging: WeakMessaging,
    identity: Identity,
    transport: Transport,
    scheme: Scheme,
    config: TraversalConfig,
    wanted: Wanted,
    wake: Arc<Notify>,
    events_dropped: Arc<AtomicU64>,
    events: mpsc::Sender<TraversalEvent>,
    sender: Option<PacketSender>,
    remote: Option<SocketAddr>,
    registered: bool,
    channels: HashMap<ChannelId, Channel>,
    /// Peers a Reach was sent for that no RelayOpen or Unreachable
    /// answered yet.
    requested: HashSet<Identity>,
    /// The direct connection last reported per peer.
    reported: HashMap<Identity, ConnectionId>,
    /// Peers to ask for again, and when.
    retries: Vec<(Instant, Identity)>,
    /// Channels whose pipe messaging closed, from their pump tasks.
    ended: mpsc::Sender<ChannelId>,
    /// The direct paths' shell, when they are on.
    direct: Option<mpsc::Sender<DirectInput>>,
}

impl Run {
    async fn run(
        mut self,
        mut packeter: Packeter,
        mut closing: watch::Receiver<bool>,
        mut ended: mpsc::Receiver<ChannelId>,
        mut signals: mpsc::Receiver<Frame>,
        mut connected: mpsc::Receiver<Identity>,
    ) {
        loop {
            let retry = self.retries.iter().map(|(at, _)| *at).min();
            let sleep = async {
                match retry {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let wake = self.wake.clone();
            tokio::select! {
                event = packeter.recv() => match event {
                    Some(event) => self.handle(event),
                    None => break,
                },
                Some(channel) = ended.recv() => self.channel_ended(channel),
                Some(peer) = connected.recv() => self.connected(&peer),
                Some(signal) = signals.recv() => {
                    if self.registered {
                        self.send(signal);
                    }
                }
                _ = wake.notified() => self.reach_wanted(true),
                _ = sleep => {
                    let now = Instant::now();
                    self.retries.retain(|(at, _)| *at > now);
                    self.reach_wanted(false);
                }
                _ = closing.changed() => break,
            }
        }
        for (_, channel) in self.channels.drain() {
            channel.stop();
        }
        packeter.link().close().await;
    }

    /// Tells the direct paths' shell; past its queue's bound a race is
    /// missed, never a relay.
    fn direct(&self, input: DirectInput) {
        if let Some(direct) = &self.direct {
            let _ = direct.try_send(input);
        }
    }

    fn emit(&self, event: TraversalEvent) {
        if self.events.try_send(event).is_err() {
            self.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn send(&self, frame: Frame) {
        if let Some(sender) = &self.sender {
            // Control frames are small and few; a full queue means the
            // rendezvous is not reading, and the reconnect starts over.
            if sender.try_send(frame.encode()).is_err() {
                sender.close();
            }
        }
    }

    fn handle(&mut self, event: PacketEvent) {
        match event {
            PacketEvent::Connected(sender) => {
                self.remote = sender.info().peer.as_ref().and_then(Address::socket_addr);
                self.sender = Some(sender);
                self.send(Frame::Register {
                    identity: self.identity.clone(),
                });
            }
            PacketEvent::Packet { data, .. } => match Frame::decode(&data) {
                Ok(frame) => self.handle_frame(frame),
                Err(error) => {
                    tracing::debug!(%error, "traversal: bad frame from the rendezvous");
                    if let Some(sender) = &self.sender {
                        sender.close();
                    }
                }
            },
            PacketEvent::Disconnected { .. } => {
                self.sender = None;
                self.registered = false;
                self.requested.clear();
                let open: Vec<ChannelId> = self.channels.keys().copied().collect();
                for channel in open {
                    self.end_channel(channel, CloseReason::PeerGone);
                }
            }
            _ => {}
        }
    }

    fn handle_frame(&mut self, frame: Frame) {
        match frame {
            Frame::Registered {
                observed,
                second_stun,
            } => {
                self.registered = true;
                self.direct(DirectInput::Registered(observed, second_stun));
                self.emit(TraversalEvent::Registered { observed });
                self.reach_wanted(false);
            }
            Frame::Refused { reason } => self.emit(TraversalEvent::Refused { reason }),
            Frame::Unreachable { peer, reason } => {
                self.requested.remove(&peer);
                self.emit(TraversalEvent::Unreachable { peer, reason });
            }
            Frame::RelayOpen {
                channel,
                peer,
                window,
            } => self.open_channel(channel, peer, window),
            Frame::RelayData { channel, data } => {
                let overrun = match self.channels.get(&channel) {
                    // The rendezvous sends only within the window we
                    // granted, which the writer's queue holds.
                    Some(c) => c.inbound.try_send(data).is_err(),
                    None => false,
                };
                if overrun {
                    self.send(Frame::RelayClose {
                        channel,
                        reason: CloseReason::FlowViolation,
                    });
                    self.end_channel(channel, CloseReason::FlowViolation);
                }
            }
            Frame::RelayWindow { channel, credit } => {
                if let Some(c) = self.channels.get(&channel) {
                    c.credit.add_permits(credit as usize);
                }
            }
            Frame::RelayClose { channel, reason } => self.end_channel(channel, reason),
            Frame::Candidates { peer, addrs } => {
                self.direct(DirectInput::Candidates(peer.clone(), addrs.clone()));
                self.emit(TraversalEvent::Candidates { peer, addrs })
            }
            Frame::Start {
                peer,
                attempt,
                strategy,
                delay_ms,
            } => {
                let delay = Duration::from_millis(u64::from(delay_ms));
                self.direct(DirectInput::Start(peer.clone(), strategy, delay));
                self.emit(TraversalEvent::Start {
                    peer,
                    attempt,
                    strategy,
                    delay,
                })
            }
            // Frames only a peer sends.
            _ => {}
        }
    }

    /// Sends Reach for each wanted peer that has no relay path, no reach
    /// in flight and no retry pending, and that messaging is not
    /// connected to (unless [`Traversal::reach`] named it again). With
    /// `fresh`, only the peers named since the last look.
    fn reach_wanted(&mut self, fresh: bool) {
        if !self.registered {
            return;
        }
        // The names first, with the lock released before messaging's own
        // locks are taken.
        let named: Vec<(Identity, bool)> = {
            let mut wanted = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
            wanted
                .iter_mut()
                .map(|(peer, named)| (peer.clone(), std::mem::take(named)))
                .filter(|(_, explicit)| *explicit || !fresh)
                .collect()
        };
        let messaging = self.messaging.upgrade();
        for (peer, explicit) in named {
            let has_path = self.channels.values().any(|c| c.path.peer == peer);
            let waiting = self.retries.iter().any(|(_, p)| *p == peer);
            let connected = messaging.as_ref().is_some_and(|m| m.is_connected(&peer));
            if has_path || waiting || self.requested.contains(&peer) || (connected && !explicit) {
                continue;
            }
            self.requested.insert(peer.clone());
            self.send(Frame::Reach { peer });
        }
    }

    fn open_channel(&mut self, channel: ChannelId, peer: Identity, window: u32) {
        self.requested.remove(&peer);
        let Some(messaging) = self.messaging.upgrade() else {
            return;
        };
        let Some(sender) = self.sender.clone() else {
            return;
        };
        let (ours, theirs) = tokio::io::duplex(self.config.pipe_buffer.max(1));
        let peer_address = self.remote.map(|a| Address::ip(self.scheme, a));
        // With certificates, TLS runs over the pipe: the rendezvous
        // relays ciphertext, and the connection carries the peer's
        // certificate.
        let adopted = match &self.config.tls {
            Some(tls) => messaging.link().adopt_tls(
                theirs,
                tls.side(messaging.identity(), &peer),
                peer_address,
                None,
            ),
            None => messaging
                .link()
                .adopt(theirs, peer_address, None)
                .map(|c| c.id()),
        };
        let connection = match adopted {
            // Before any byte of the peer's can reach it (the writer task
            // does not exist yet): a relay gives way to any other path.
            Ok(connection) => {
                messaging.mark_standby(connection);
                connection
            }
            Err(error) => {
                tracing::debug!(%error, "traversal: messaging's link refused the relay pipe");
                self.send(Frame::RelayClose {
                    channel,
                    reason: CloseReason::Closed,
                });
                return;
            }
        };
        let (read, write) = tokio::io::split(ours);
        let credit = Arc::new(Semaphore::new(window as usize));
        let chunk = self.config.chunk.min(window as usize).max(1);
        let pump = tokio::spawn(pump(
            read,
            sender.clone(),
            credit.clone(),
            channel,
            chunk,
            self.ended.clone(),
        ));
        // What the rendezvous may have in flight to us is at most the
        // window, in frames of at least one byte.
        let (inbound, inbound_rx) = mpsc::channel(window.max(1) as usize);
        let writer = tokio::spawn(writer(
            write,
            inbound_rx,
            sender,
            channel,
            (window / 4).max(1),
            self.ended.clone(),
        ));
        let path = Path {
            peer,
            via: Via::Relay,
            transport: self.transport,
            remote: self.remote,
        };
        if let Some(old) = self.channels.insert(
            channel,
            Channel {
                path: path.clone(),
                connection,
                credit,
                inbound,
                pump,
                writer,
            },
        ) {
            old.stop();
        }
        self.direct(DirectInput::Relay(path.peer.clone()));
        self.emit(TraversalEvent::Path(path));
    }

    /// Messaging identified `peer`, a wanted one, on a connection: a path
    /// of its own when it is none of our relays (a direct connection).
    fn connected(&mut self, peer: &Identity) {
        let Some(info) = self.messaging.upgrade().and_then(|m| m.peer_info(peer)) else {
            return;
        };
        let id = info.connection.id;
        if self.channels.values().any(|c| c.connection == id) {
            return; // the relay, reported when it opened
        }
        // The relay's own connect may be handled only after the direct
        // connection identified, and then finds that one: once each.
        if self.reported.get(peer) == Some(&id) {
            return;
        }
        if self.reported.len() >= MAX_REPORTED && !self.reported.contains_key(peer) {
            self.reported.clear();
        }
        self.reported.insert(peer.clone(), id);
        self.direct(DirectInput::Connected(peer.clone()));
        let remote = info.connection.peer.as_ref();
        self.emit(TraversalEvent::Path(Path {
            peer: peer.clone(),
            via: Via::Direct,
            transport: remote.map_or(Transport::Tcp, |a| Transport::of(a.scheme())),
            remote: remote.and_then(Address::socket_addr),
        }));
    }

    /// Messaging closed a channel's pipe (or it broke): tell the
    /// rendezvous.
    fn channel_ended(&mut self, channel: ChannelId) {
        if self.channels.contains_key(&channel) {
            self.send(Frame::RelayClose {
                channel,
                reason: CloseReason::Closed,
            });
            self.end_channel(channel, CloseReason::Closed);
        }
    }

    /// Forgets a channel: its pipe closes, so messaging sees the
    /// connection end; a wanted peer is asked for again after a while.
    fn end_channel(&mut self, channel: ChannelId, reason: CloseReason) {
        let Some(c) = self.channels.remove(&channel) else {
            return;
        };
        let path = c.path.clone();
        c.stop();
        let wanted = self
            .wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&path.peer);
        // One retry per peer at a time: the retries stay as many as the
        // wanted peers at most.
        let waiting = self.retries.iter().any(|(_, p)| *p == path.peer);
        if wanted && !waiting && reason != CloseReason::CapReached {
            self.retries
                .push((Instant::now() + self.config.reach_retry, path.peer.clone()));
        }
        self.emit(TraversalEvent::PathEnded { path, reason });
    }
}

/// Reads what messaging writes into the pipe and sends it as `RelayData`,
/// within the credit the rendezvous granted.
async fn pump(
    mut read: tokio::io::ReadHalf<tokio::io::DuplexStream>,
    sender: PacketSender,
    credit: Arc<Semaphore>,
    channel: ChannelId,
    chunk: usize,
    ended: mpsc::Sender<ChannelId>,
) {
    let mut buf = BytesMut::with_capacity(chunk);
    loop {
        buf.clear();
        buf.reserve(chunk);
        match read.read_buf(&mut (&mut buf).limit(chunk)).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let Ok(permits) = credit.acquire_many(buf.len() as u32).await else {
            break;
        };
        permits.forget();
        let data = buf.split().freeze();
        if sender
            .send_parts(&relay_data_head(channel), &data)
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = ended.send(channel).await;
}

/// Writes what the rendezvous relays into the pipe, granting the window
/// back as messaging takes it.
async fn writer(
    mut write: tokio::io::WriteHalf<tokio::io::DuplexStream>,
    mut inbound: mpsc::Receiver<Bytes>,
    sender: PacketSender,
    channel: ChannelId,
    batch: u32,
    ended: mpsc::Sender<ChannelId>,
) {
    let mut owed: u32 = 0;
    while let Some(data) = inbound.recv().await {
        if write.write_all(&data).await.is_err() {
            let _ = ended.send(channel).await;
            return;
        }
        owed = owed.saturating_add(data.len() as u32);
        // In batches, or at once when nothing more is queued, so that the
        // rendezvous never waits on a small remainder.
        if owed >= batch || inbound.is_empty() {
            let frame = Frame::RelayWindow {
                channel,
                credit: owed,
            };
            if sender.send(frame.encode()).await.is_err() {
                return;
            }
            owed = 0;
        }
    }
    let _ = write.shutdown().await;
}
