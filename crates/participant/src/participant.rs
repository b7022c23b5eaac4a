//! The participant's tokio shell: discovery and messaging, and one task
//! between them that feeds their events to the [`ParticipantCore`] and
//! carries out what it asks for.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, mpsc, watch};
use weft_discovery::{Discovery, DiscoveryEvent, DiscoveryEvents, LocalParticipant, ParticipantId};
use weft_link::ConnectorId;
use weft_link::inbox::{DropPolicy, Inbox};
use weft_messaging::{
    HandlerId, Identity, Message, Messaging, Received, SubscriptionQueue, TopicFilter,
};

use crate::control::FilterSpec;
use crate::controls::Controls;
use crate::core::{Dial, Outgoing, ParticipantCore, SharedCopies, TransmitKind};
use crate::event::{
    Direct, ParticipantEvent, ParticipantEvents, ParticipantInfo, ParticipantStats,
};
use crate::filters::FilterLimits;
use crate::handshake::Handshakes;
use crate::interest::Delivery;
use crate::router::IdentityRoute;
use crate::transport::Streams;
use crate::{ParticipantConfig, ParticipantError, Publication, Publisher, Subscriber};

/// The shell's own counters (the core keeps the rest).
#[derive(Default)]
struct Counters {
    routed_forwarded: AtomicU64,
    direct_dropped: AtomicU64,
}

/// A subscriber of ours, for publications routed to us through other
/// participants (messaging's PUBLISH messages go to its queue in
/// messaging).
struct LocalSubscriber {
    /// Its messaging queue's id.
    id: u64,
    filter: TopicFilter,
    routed: Arc<Inbox<Publication>>,
}

pub(crate) struct Inner {
    pub(crate) id: ParticipantId,
    pub(crate) messaging: Messaging,
    discovery: Discovery,
    locators: Vec<SocketAddr>,
    config: ParticipantConfig,
    core: Mutex<ParticipantCore>,
    /// The connector of each stream we opened, by participant. Locked only
    /// under `core`.
    connectors: Mutex<HashMap<ParticipantId, ConnectorId>>,
    /// How our streams are listened for and dialled.
    streams: Streams,
    /// The identity each participant discovery knows announces, when
    /// dialling checks certificates against it
    /// ([`Streams::checks_identities`]). Locked on its own, or under `core`.
    identities: Mutex<HashMap<ParticipantId, String>>,
    /// Our subscribers, for routed publications. Locked only under `core`.
    subscribers: Mutex<Vec<LocalSubscriber>>,
    /// Whether the core reaches a subscriber that is not a neighbour, as
    /// of its last input: a publication takes the core's lock only then.
    reaches_far: AtomicBool,
    /// Told whenever the subscribers the neighbours host change.
    interest: watch::Sender<()>,
    events: broadcast::Sender<ParticipantEvent>,
    direct_tx: mpsc::Sender<Direct>,
    direct_rx: tokio::sync::Mutex<mpsc::Receiver<Direct>>,
    /// Messaging's streams came or went: the task brings the core up to
    /// date.
    streams_changed: Arc<Notify>,
    streams_dirty: Arc<AtomicBool>,
    counters: Counters,
    /// The core's next deadline came closer through work done outside the
    /// task (a user's call, a run of control messages on messaging's
    /// task): the task looks again.
    timer_changed: Notify,
    /// Our handlers in messaging, removed when the task ends.
    handlers: Mutex<Vec<HandlerId>>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// `m`'s guard; a panic elsewhere while it was held does not make its
/// data unusable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stops the participant when the last handle is dropped.
struct StopOnDrop(Arc<Inner>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.stop.send(true);
    }
}

/// A participant: finds the other participants of the network, keeps one
/// stream to each, tells them which publishers and subscribers it hosts,
/// and carries publications only to participants with a matching
/// subscriber. Hosts any number of [`Publisher`]s and [`Subscriber`]s.
///
/// Cheap to clone; publishers and subscribers hold a clone. When the last
/// clone is dropped the participant stops (with a goodbye beacon);
/// [`close`](Self::close) stops it and waits. Needs a Tokio runtime.
///
/// ```
/// # #[tokio::main]
/// # async fn main() -> Result<(), weft_participant::ParticipantError> {
/// use std::time::Duration;
/// use weft_participant::{Participant, ParticipantConfig, TopicFilter};
///
/// // This host only; `ParticipantConfig::default()` finds the network's.
/// let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
/// let a = Participant::start(ParticipantConfig::loopback(port)).await?;
/// let b = Participant::start(ParticipantConfig::loopback(port)).await?;
///
/// let news = b.subscriber(TopicFilter::Prefix("news.".into()));
/// let publisher = a.publisher("news.today")?;
/// // Nobody receives until the interest of b reached a.
/// while publisher.publish("hello")? == 0 {
///     tokio::time::sleep(Duration::from_millis(10)).await;
/// }
/// let got = news.recv(Some(Duration::from_secs(5))).await?;
/// assert_eq!((&*got.topic, &got.data[..]), ("news.today", &b"hello"[..]));
/// assert_eq!(got.from, *a.identity());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Participant {
    inner: Arc<Inner>,
    _stop: Arc<StopOnDrop>,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("id", &self.inner.id)
            .field("identity", self.inner.messaging.identity())
            .finish()
    }
}

impl Participant {
    /// Starts a participant: messaging with a listener on
    /// [`listen`](ParticipantConfig::listen), then discovery announcing
    /// that listener. Cancel-safe: dropped before it completes, it leaves
    /// nothing running. With [`StreamTransport::Quic`](crate::StreamTransport::Quic)
    /// but no [`tls`](ParticipantConfig::tls) it fails with
    /// [`ParticipantError::QuicWithoutTls`] before anything starts.
    pub async fn start(config: ParticipantConfig) -> Result<Participant, ParticipantError> {
        let (streams, listen, listen_options) =
            Streams::of(config.transport, config.tls.as_ref(), &config.listen)?;
        let id = config.id.unwrap_or_else(ParticipantId::random);
        let name = match &config.identity {
            Some(n) => n.clone(),
            None => format!("weft-{}", &id.to_string()[..8]),
        };
        let identity = Identity::new(&name)?;
        let mut messaging_config = config.messaging.clone();
        if streams.checks_identities() {
            // The accepting side's half of the check the dialling side
            // makes with the server name.
            messaging_config.bind_identity = true;
        }
        let messaging = Messaging::new(identity.clone(), messaging_config).await?;
        // Only topic queues and our control handlers: no catch-all queue.
        messaging.unsubscribe(0);
        // Before anyone can reach us: a neighbour's first message must
        // find the handlers there.
        let (controls, handlers) = Controls::take(&messaging);
        let listening = messaging.link().listen_with(listen, listen_options).await?;
        let Some(locator) = listening.address.socket_addr() else {
            return Err(ParticipantError::ListenNotIp(listening.address));
        };
        let locators = vec![locator];
        let streams_changed = Arc::new(Notify::new());
        let streams_dirty = Arc::new(AtomicBool::new(true));
        for on in [true, false] {
            let notify = streams_changed.clone();
            let dirty = streams_dirty.clone();
            let f = move |_: &Identity| {
                dirty.store(true, Ordering::Release);
                notify.notify_one();
            };
            if on {
                messaging.on_connect(f);
            } else {
                messaging.on_disconnect(f);
            }
        }
        let mut local = LocalParticipant::new(name, locators.clone());
        local.id = id;
        let mut discovery_config = config.discovery.clone();
        if config.group_key.is_some() {
            discovery_config.group_key.clone_from(&config.group_key);
        }
        let (discovery, discovery_events) = Discovery::start(local, discovery_config)?;
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        let (direct_tx, direct_rx) = mpsc::channel(config.direct_capacity.max(1));
        let (stop, stop_rx) = watch::channel(false);
        let random = |buf: &mut [u8]| {
            getrandom::getrandom(buf).map_err(|e| ParticipantError::Io {
                what: "reading the system's random source".into(),
                source: std::io::Error::other(e),
            })
        };
        let mut epoch = [0u8; 8];
        random(&mut epoch)?;
        let mut core = ParticipantCore::new(id, identity, config.max_hops)
            .with_filter_limits(FilterLimits::of(&config.messaging))
            .with_epoch(u64::from_be_bytes(epoch))
            .with_recent_publications(config.recent_publications)
            .with_overlay(config.group_size, config.max_streams)
            .with_sight_grace(config.discovery.effective_interval())
            .with_advertise_batch(crate::config::ADVERTISE_BATCH)
            .with_dial_timeout(config.dial_timeout);
        if let Some(key) = &config.group_key {
            let mut seed = [0u8; 32];
            random(&mut seed)?;
            core =
                core.with_handshakes(Handshakes::new(key.clone(), seed, config.handshake_timeout));
        }
        let inner = Arc::new(Inner {
            id,
            messaging,
            discovery,
            locators,
            core: Mutex::new(core),
            connectors: Mutex::new(HashMap::new()),
            streams,
            identities: Mutex::new(HashMap::new()),
            subscribers: Mutex::new(Vec::new()),
            reaches_far: AtomicBool::new(false),
            interest: watch::channel(()).0,
            config,
            events,
            direct_tx,
            direct_rx: tokio::sync::Mutex::new(direct_rx),
            streams_changed,
            streams_dirty,
            counters: Counters::default(),
            timer_changed: Notify::new(),
            handlers: Mutex::new(handlers),
            stop,
            task: Mutex::new(None),
        });
        controls.attach(&inner);
        let task = tokio::spawn(run(inner.clone(), discovery_events, stop_rx));
        *lock(&inner.task) = Some(task);
        Ok(Participant {
            _stop: Arc::new(StopOnDrop(inner.clone())),
            inner,
        })
    }

    /// Our participant id.
    pub fn id(&self) -> ParticipantId {
        self.inner.id
    }

    /// Our identity.
    pub fn identity(&self) -> &Identity {
        self.inner.messaging.identity()
    }

    /// Where we accept streams, as announced.
    pub fn locators(&self) -> &[SocketAddr] {
        &self.inner.locators
    }

    /// The UDP port our beacons are received on.
    pub fn beacon_port(&self) -> u16 {
        self.inner.discovery.port()
    }

    /// The messaging instance underneath (for identity messaging besides
    /// publish/subscribe).
    pub fn messaging(&self) -> &Messaging {
        &self.inner.messaging
    }

    /// A new reader of our events, from now on.
    pub fn events(&self) -> ParticipantEvents {
        ParticipantEvents {
            rx: self.inner.events.subscribe(),
        }
    }

    /// The participants discovery knows now, with what they told us.
    pub fn peers(&self) -> Vec<ParticipantInfo> {
        lock(&self.inner.core).peers()
    }

    /// The participants we have a stream with (and told what we host).
    pub fn connected(&self) -> Vec<Identity> {
        lock(&self.inner.core).connected().cloned().collect()
    }

    /// The identities we reach, through which neighbour, in how many hops.
    pub fn routes(&self) -> Vec<IdentityRoute> {
        lock(&self.inner.core).routes()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ParticipantStats {
        let (core, routed) = {
            let core = lock(&self.inner.core);
            (core.stats(), core.interest().stats())
        };
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ParticipantStats {
            discovery: self.inner.discovery.stats(),
            messaging: self.inner.messaging.stats(),
            routed_delivered: core.routed_delivered,
            routed_forwarded: get(&c.routed_forwarded),
            routed_hop_limit: core.routed_hop_limit,
            routed_loops: core.routed_loops,
            routed_no_route: core.routed_no_route,
            direct_dropped: get(&c.direct_dropped),
            control_errors: core.control_errors,
            streams_refused: core.streams_refused,
            unproved_controls: core.unproved_controls,
            filters_refused: core.filters_refused + routed.filters_refused,
            regexes_refused: core.regexes_refused,
            publications_routed_in: routed.delivered,
            publications_routed_on: routed.forwarded,
            publications_duplicate: routed.duplicates,
            publications_unrouted: routed.hop_limit + routed.no_route + routed.unwanted,
        }
    }

    /// A publisher of `topic` (at most 255 bytes). The other participants
    /// are told we publish it; publications go only to participants with
    /// a matching subscriber.
    pub fn publisher(&self, topic: impl Into<String>) -> Result<Publisher, ParticipantError> {
        let topic = topic.into();
        if topic.len() > weft_messaging::patterns::MAX_TOPIC {
            return Err(ParticipantError::TopicTooLong(topic.len()));
        }
        self.inner.drive(|core| core.add_publisher(&topic));
        Ok(Publisher::new(self.clone(), topic))
    }

    pub(crate) fn drop_publisher(&self, topic: &str) {
        self.inner.drive(|core| core.remove_publisher(topic));
    }

    /// A subscriber to the topics `filter` matches. Its interest travels
    /// to every participant, whose publishers then send to us.
    pub fn subscriber(&self, filter: TopicFilter) -> Subscriber {
        let spec = FilterSpec::of(&filter);
        // As bounded as the messaging queue beside it, with its policy.
        let capacity = self.inner.config.messaging.subscription_capacity;
        let routed = Arc::new(Inbox::new(capacity, DropPolicy::DropOldest));
        let queue = self.inner.drive(|core| {
            // Subscribed under the core's lock, so that the queues exist
            // before any neighbour hears of the interest.
            let queue = self.inner.messaging.subscribe_topic(filter.clone());
            lock(&self.inner.subscribers).push(LocalSubscriber {
                id: queue.id(),
                filter: filter.clone(),
                routed: routed.clone(),
            });
            core.add_subscriber(&filter);
            queue
        });
        Subscriber::new(self.clone(), queue, routed, filter, spec)
    }

    /// `spec` compiled within the limits this participant puts on
    /// neighbours' filters (see [`ParticipantConfig::messaging`]); `None`
    /// when it does not compile or is too long.
    pub(crate) fn compile_filter(&self, spec: &FilterSpec) -> Option<TopicFilter> {
        FilterLimits::of(&self.inner.config.messaging)
            .compile(spec)
            .ok()
    }

    pub(crate) fn drop_subscriber(&self, queue: &SubscriptionQueue, spec: &FilterSpec) {
        self.inner.drive(|core| {
            self.inner.messaging.unsubscribe_topic(queue);
            let mut subscribers = lock(&self.inner.subscribers);
            if let Some(at) = subscribers.iter().position(|s| s.id == queue.id()) {
                subscribers.swap_remove(at).routed.close();
            }
            core.remove_subscriber(spec);
        });
    }

    /// Publishes `data` on `topic`: a PUBLISH message to each neighbour
    /// with a matching subscriber (and to our own subscribers), and copies
    /// routed through participants to the matching subscribers further
    /// away. Returns how many participants it is for.
    pub(crate) fn publish(&self, topic: &str, data: &[u8]) -> Result<usize, ParticipantError> {
        let direct = self.inner.messaging.publish(topic, data)?;
        // In a full mesh every subscriber is a neighbour: publishing then
        // costs no lock of the core.
        if !self.inner.reaches_far.load(Ordering::Acquire) {
            return Ok(direct);
        }
        let routed = self.inner.drive(|core| core.publish(topic, data));
        Ok(direct + routed)
    }

    /// The participants (ourselves included) hosting a subscriber whose
    /// filter matches `topic`, as they told us.
    pub fn subscribers_of(&self, topic: &str) -> Vec<Identity> {
        lock(&self.inner.core).subscribers_of(topic)
    }

    /// A receiver told whenever the subscribers other participants told
    /// us of change.
    pub(crate) fn interest_changes(&self) -> watch::Receiver<()> {
        self.inner.interest.subscribe()
    }

    /// Sends `data` to the participant with identity `to`: directly when
    /// we have a stream to it, otherwise through the participants that
    /// told us they reach it (routing through brokers), with a hop limit
    /// of [`max_hops`](ParticipantConfig::max_hops). Fails with
    /// [`ParticipantError::NoRoute`] when nobody reaches it, and with
    /// [`ParticipantError::Identity`] when `to` cannot be an identity.
    pub fn send_to(&self, to: &str, data: impl AsRef<[u8]>) -> Result<(), ParticipantError> {
        let to = Identity::new(to)?;
        let outgoing = lock(&self.inner.core).route_outgoing(&to, data.as_ref());
        match outgoing {
            Some(Outgoing::Deliver(direct)) => {
                self.inner.deliver(direct);
                Ok(())
            }
            Some(Outgoing::Forward(next, data)) => {
                self.inner
                    .messaging
                    .try_send_message(&next, Message::new(data))?;
                Ok(())
            }
            None => Err(ParticipantError::NoRoute(to)),
        }
    }

    /// The next message sent to us with [`send_to`](Self::send_to),
    /// waiting up to `timeout` (`None`: until closed). Cancel-safe.
    pub async fn recv_direct(&self, timeout: Option<Duration>) -> Result<Direct, ParticipantError> {
        let wait = async {
            let mut rx = self.inner.direct_rx.lock().await;
            rx.recv().await.ok_or(ParticipantError::Closed)
        };
        match timeout {
            None => wait.await,
            Some(t) => tokio::time::timeout(t, wait)
                .await
                .map_err(|_| ParticipantError::Timeout(t))?,
        }
    }

    /// Stops: a goodbye beacon (the others report us gone at once), the
    /// streams closed gracefully. Cancel-safe: stopping goes on if the
    /// future is dropped, only the waiting ends.
    pub async fn close(&self) {
        let _ = self.inner.stop.send(true);
        self.inner.discovery.close().await;
        self.inner.messaging.close().await;
        self.join().await;
    }

    /// Stops without a goodbye, as if the process had died: the others
    /// report us gone when our lease runs out. Streams are closed.
    /// Cancel-safe like [`close`](Self::close).
    pub async fn abort(&self) {
        let _ = self.inner.stop.send(true);
        self.inner.discovery.abort().await;
        self.inner.messaging.close().await;
        self.join().await;
    }

    async fn join(&self) {
        let task = lock(&self.inner.task).take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }
}

impl Inner {
    /// Runs `f` on the core, then carries out everything it asked for.
    /// All of it happens under the core's lock, so what concurrent callers
    /// cause leaves in the order it happened.
    fn drive<R>(&self, f: impl FnOnce(&mut ParticipantCore) -> R) -> R {
        let mut core = lock(&self.core);
        let before = core.poll_timeout();
        let out = f(&mut core);
        self.carry_out(&mut core);
        let closer = core
            .poll_timeout()
            .is_some_and(|after| before.is_none_or(|b| after < b));
        drop(core);
        if closer {
            // Called from another task (a user's call, messaging's
            // handlers): the task sleeps until the deadline it last saw.
            self.timer_changed.notify_one();
        }
        out
    }

    fn carry_out(&self, core: &mut ParticipantCore) {
        while let Some(dial) = core.poll_dial() {
            self.dial(core, dial);
        }
        while let Some(id) = core.poll_protect() {
            self.discovery.protect(id);
        }
        // Consecutive copies of one publication that share their bytes
        // are queued under one lock.
        let mut copies = SharedCopies::default();
        while let Some(t) = core.poll_transmit() {
            if t.kind != TransmitKind::Publication {
                copies.flush(|to, data| self.send_publication(to, data));
            }
            match t.kind {
                TransmitKind::Control => {
                    let message = Message::new(t.data).with_ttl(self.config.control_ttl);
                    if let Err(e) = self.messaging.try_send_message(&t.to, message) {
                        tracing::debug!(to = %t.to, error = %e, "control message not queued");
                    }
                }
                TransmitKind::Changes => {
                    if let Err(e) = self.messaging.try_send_message(&t.to, Message::new(t.data)) {
                        tracing::debug!(to = %t.to, error = %e, "changes not queued");
                    }
                }
                TransmitKind::Publication => {
                    copies.add(t.data, t.to, |to, data| self.send_publication(to, data));
                }
                TransmitKind::Routed => {
                    if self
                        .messaging
                        .try_send_message(&t.to, Message::new(t.data))
                        .is_ok()
                    {
                        self.counters
                            .routed_forwarded
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        copies.flush(|to, data| self.send_publication(to, data));
        while let Some(e) = core.poll_event() {
            let _ = self.events.send(e);
        }
        while let Some(direct) = core.poll_direct() {
            self.deliver(direct);
        }
        while let Some(delivery) = core.poll_delivery() {
            self.deliver_publication(delivery);
        }
        if core.poll_interest_changed() {
            let far = core.interest().reaches_far();
            self.reaches_far.store(far, Ordering::Release);
            self.interest.send_replace(());
        }
    }

    /// One routed publication's copy, the same bytes for each of `to`.
    fn send_publication(&self, to: &[Identity], data: bytes::Bytes) {
        for (to, e) in self.messaging.try_send_each(to, Message::new(data)) {
            tracing::debug!(to = %to, error = %e, "routed publication not queued");
        }
    }

    fn dial(&self, core: &mut ParticipantCore, dial: Dial) {
        let link = self.messaging.link();
        let mut connectors = lock(&self.connectors);
        match dial {
            Dial::Open { peer, at } => {
                if let Some(old) = connectors.remove(&peer) {
                    link.remove_connector(old);
                }
                let identity = if self.streams.checks_identities() {
                    lock(&self.identities).get(&peer).cloned()
                } else {
                    None
                };
                let (address, options) = self.streams.dial(at, identity.as_deref());
                match link.connect_with(address, options) {
                    Ok(c) => {
                        connectors.insert(peer, c);
                    }
                    Err(e) => {
                        tracing::warn!(%peer, %at, error = %e, "cannot connect");
                        core.handle_dial_failed(peer);
                    }
                }
            }
            Dial::Close(peer) => {
                if let Some(c) = connectors.remove(&peer) {
                    // Also aborts the stream, if it is still up.
                    link.remove_connector(c);
                }
            }
            Dial::Refuse(ident) => {
                self.messaging.disconnect(&ident);
            }
        }
    }

    /// Keeps the identity a participant announces, when dialling checks
    /// certificates against it; before the core hears of it, which may
    /// dial at once.
    fn note_identity(&self, e: &DiscoveryEvent) {
        if !self.streams.checks_identities() {
            return;
        }
        let mut identities = lock(&self.identities);
        match e {
            DiscoveryEvent::Found(peer)
            | DiscoveryEvent::Changed(peer)
            | DiscoveryEvent::Restarted { peer, .. } => {
                identities.insert(peer.id, peer.identity.clone());
            }
            DiscoveryEvent::Gone { peer, .. } => {
                identities.remove(&peer.id);
            }
            _ => {}
        }
    }

    /// Hands a message routed to us to `recv_direct`, or counts it dropped
    /// when nobody takes them.
    fn deliver(&self, direct: Direct) {
        if self.direct_tx.try_send(direct).is_err() {
            self.counters.direct_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands a publication routed to us to each subscriber of ours whose
    /// filter matches its topic.
    fn deliver_publication(&self, d: Delivery) {
        let publication = Publication::new(d.topic, d.from, d.data);
        for s in lock(&self.subscribers).iter() {
            if s.filter.matches(&publication.topic) {
                // A full queue drops its oldest and counts it, as
                // messaging's queue beside it does.
                let _ = s.routed.push(publication.clone());
            }
        }
    }

    /// Tells the core which streams messaging has up now.
    fn reconcile(&self) {
        self.streams_dirty.store(false, Ordering::Release);
        let streams = self.messaging.connected();
        self.drive(|core| core.handle_streams(streams, clock()));
    }

    /// Handles the control messages in `batch`, in order, under one lock
    /// of the core, and carries out what they caused together: a burst of
    /// routed publications is passed on without a lock, a wakeup or a
    /// trip through the task's loop per message.
    pub(crate) fn on_controls(&self, batch: &mut Vec<Received>) {
        // A neighbour's first message may overtake the news of its stream.
        if self.streams_dirty.load(Ordering::Acquire) {
            self.reconcile();
        }
        self.drive(|core| {
            for received in batch.drain(..) {
                core.handle_control(&received.from, &received.message.data);
            }
        });
    }
}

async fn run(inner: Arc<Inner>, mut discovery: DiscoveryEvents, mut stop: watch::Receiver<bool>) {
    let mut discovery_open = true;
    loop {
        let deadline = lock(&inner.core).poll_timeout();
        tokio::select! {
            () = sleep_until(deadline) => inner.drive(|core| core.handle_timeout(clock())),
            _ = stop.changed() => break,
            e = discovery.recv(), if discovery_open => match e {
                Some(e) => {
                    inner.note_identity(&e);
                    inner.drive(|core| core.handle_discovery(e));
                }
                None => discovery_open = false,
            },
            () = inner.timer_changed.notified() => {}
            _ = inner.streams_changed.notified() => inner.reconcile(),
        }
    }
    for id in lock(&inner.handlers).drain(..) {
        inner.messaging.remove_handler(id);
    }
    // Forget every stream: its connectors end with messaging.
    let _core = lock(&inner.core);
    for (_, c) in lock(&inner.connectors).drain() {
        inner.messaging.link().remove_connector(c);
    }
    tracing::debug!(identity = %inner.messaging.identity(), "participant stopped");
}

/// Now, on the runtime's clock (which tests may pause), as the core takes it.
fn clock() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
