//! The participant: discovery and messaging, and one task between them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, broadcast, mpsc, watch};
use weft_discovery::{
    Discovery, DiscoveryEvent, DiscoveryEvents, DiscoveryStats, GoneReason, LocalParticipant,
    ParticipantId, Peer,
};
use weft_link::{Address, ConnectorId};
use weft_messaging::{
    Identity, Kind, Message, Messaging, MessagingStats, Received, Subscription, SubscriptionQueue,
    TopicFilter,
};

use crate::control::{
    CONTROL_TAG, Control, Decoded, Envelope, FilterSpec, ROUTED_TAG, decode, encode_control,
    encode_routed,
};
use crate::router::{Decision, DropReason, Route, Router};
use crate::{ParticipantConfig, ParticipantError, Publisher, Subscriber};

/// How often the task checks the streams even without a signal.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);

/// What a participant reports to [`ParticipantEvents`] readers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParticipantEvent {
    /// Discovery found a participant.
    Found {
        /// Its id.
        id: ParticipantId,
        /// Its identity.
        identity: String,
        /// Where it accepts streams.
        addresses: Vec<SocketAddr>,
    },
    /// A participant started again (a new incarnation).
    Restarted {
        /// Its id.
        id: ParticipantId,
        /// Its identity.
        identity: String,
        /// Its new incarnation.
        incarnation: u64,
    },
    /// A participant that discovery [found](Self::Found) is gone. One
    /// whose stream reached us before any of its beacons did, and that
    /// died before one did, was never found: its end shows only as
    /// [`Disconnected`](Self::Disconnected).
    Gone {
        /// Its id.
        id: ParticipantId,
        /// Its identity.
        identity: String,
        /// Why.
        reason: GoneReason,
    },
    /// A stream to a participant is up and we told it what we host.
    Connected(Identity),
    /// A stream to a participant ended; its publishers and subscribers
    /// are forgotten.
    Disconnected(Identity),
    /// A participant hosts a publisher of a topic (it told us).
    PublisherAdded {
        /// The participant.
        participant: Identity,
        /// The topic.
        topic: String,
    },
    /// A participant no longer hosts a publisher of a topic.
    PublisherRemoved {
        /// The participant.
        participant: Identity,
        /// The topic.
        topic: String,
    },
    /// A participant hosts a subscriber with this filter.
    SubscriberAdded {
        /// The participant.
        participant: Identity,
        /// The filter.
        filter: FilterSpec,
    },
    /// A participant no longer hosts a subscriber with this filter.
    SubscriberRemoved {
        /// The participant.
        participant: Identity,
        /// The filter.
        filter: FilterSpec,
    },
}

/// A reader of a participant's events (from
/// [`Participant::events`]). Bounded: a reader that falls behind by
/// [`event_capacity`](ParticipantConfig::event_capacity) loses the oldest.
#[derive(Debug)]
pub struct ParticipantEvents {
    rx: broadcast::Receiver<ParticipantEvent>,
}

impl ParticipantEvents {
    /// The next event; `None` once the participant stopped. Events lost
    /// because this reader fell behind are skipped. Cancel-safe.
    pub async fn recv(&mut self) -> Option<ParticipantEvent> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// Another participant, as we know it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// Its id.
    pub id: ParticipantId,
    /// Its identity.
    pub identity: String,
    /// Its incarnation.
    pub incarnation: u64,
    /// Where it accepts streams.
    pub addresses: Vec<SocketAddr>,
    /// Whether a stream to it is up.
    pub connected: bool,
    /// The topics it publishes.
    pub publishers: Vec<String>,
    /// The filters of its subscribers.
    pub subscribers: Vec<FilterSpec>,
}

/// A message sent to our identity with [`Participant::send_to`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Direct {
    /// The identity of the participant that sent it.
    pub from: String,
    /// The payload.
    pub data: Bytes,
    /// Participants it passed through on its way (0: it came directly).
    pub hops: u8,
}

/// Counters of a participant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParticipantStats {
    /// Discovery's counters (beacons sent, received, rejected, ...).
    pub discovery: DiscoveryStats,
    /// Messaging's counters.
    pub messaging: MessagingStats,
    /// Routed messages delivered to us.
    pub routed_delivered: u64,
    /// Routed messages we passed on.
    pub routed_forwarded: u64,
    /// Routed messages dropped: their hop limit ran out.
    pub routed_hop_limit: u64,
    /// Routed messages dropped: they came back to us.
    pub routed_loops: u64,
    /// Routed messages dropped: no route.
    pub routed_no_route: u64,
    /// Direct messages dropped because nobody took them.
    pub direct_dropped: u64,
    /// Control messages that did not decode.
    pub control_errors: u64,
}

#[derive(Default)]
struct Counters {
    routed_delivered: AtomicU64,
    routed_forwarded: AtomicU64,
    routed_hop_limit: AtomicU64,
    routed_loops: AtomicU64,
    routed_no_route: AtomicU64,
    direct_dropped: AtomicU64,
    control_errors: AtomicU64,
}

struct PeerEntry {
    peer: Peer,
    connector: Option<(ConnectorId, SocketAddr)>,
}

#[derive(Default)]
struct Remote {
    publishers: BTreeSet<String>,
    subscribers: BTreeMap<FilterSpec, Option<TopicFilter>>,
}

pub(crate) struct State {
    peers: HashMap<ParticipantId, PeerEntry>,
    /// Participants with a stream up that we told what we host.
    connected: BTreeSet<Identity>,
    remote: HashMap<Identity, Remote>,
    local_publishers: BTreeMap<String, usize>,
    local_subscribers: BTreeMap<FilterSpec, usize>,
    router: Router,
}

pub(crate) struct Inner {
    pub(crate) id: ParticipantId,
    pub(crate) messaging: Messaging,
    discovery: Discovery,
    locators: Vec<SocketAddr>,
    config: ParticipantConfig,
    state: Mutex<State>,
    events: broadcast::Sender<ParticipantEvent>,
    direct_tx: mpsc::Sender<Direct>,
    direct_rx: tokio::sync::Mutex<mpsc::Receiver<Direct>>,
    streams_changed: Arc<Notify>,
    streams_dirty: Arc<AtomicBool>,
    counters: Counters,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
    /// nothing running.
    pub async fn start(config: ParticipantConfig) -> Result<Participant, ParticipantError> {
        let id = config.id.unwrap_or_else(ParticipantId::random);
        let name = match &config.identity {
            Some(n) => n.clone(),
            None => format!("weft-{}", &id.to_string()[..8]),
        };
        let identity = Identity::new(&name)?;
        let messaging = Messaging::new(identity.clone(), config.messaging.clone()).await?;
        // Only topic queues and our control queue: no catch-all queue.
        messaging.unsubscribe(0);
        let listening = messaging.link().listen(config.listen.as_str()).await?;
        let Some(locator) = listening.address.socket_addr() else {
            return Err(ParticipantError::Config(format!(
                "`{}` is not an IP address; other participants cannot reach it",
                config.listen
            )));
        };
        let locators = vec![locator];
        let control = messaging.subscribe(
            Subscription::matching(
                regex::bytes::Regex::new(r"(?s-u)\A\x00WP[CR]").expect("a valid regex"),
            )
            .of_kind(Kind::Plain),
        );
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
        let mut local = LocalParticipant::new(name.clone(), locators.clone());
        local.id = id;
        let (discovery, discovery_events) = Discovery::start(local, config.discovery.clone())?;
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        let (direct_tx, direct_rx) = mpsc::channel(config.direct_capacity.max(1));
        let (stop, stop_rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            id,
            messaging,
            discovery,
            locators,
            state: Mutex::new(State {
                peers: HashMap::new(),
                connected: BTreeSet::new(),
                remote: HashMap::new(),
                local_publishers: BTreeMap::new(),
                local_subscribers: BTreeMap::new(),
                router: Router::new(name, config.max_hops),
            }),
            config,
            events,
            direct_tx,
            direct_rx: tokio::sync::Mutex::new(direct_rx),
            streams_changed,
            streams_dirty,
            counters: Counters::default(),
            stop,
            task: Mutex::new(None),
        });
        let task = tokio::spawn(run(inner.clone(), discovery_events, control, stop_rx));
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
    pub fn peers(&self) -> Vec<PeerInfo> {
        let state = lock(&self.inner.state);
        let mut out: Vec<PeerInfo> = state
            .peers
            .values()
            .map(|e| {
                let ident = Identity::new(&e.peer.identity).ok();
                let remote = ident.as_ref().and_then(|i| state.remote.get(i));
                PeerInfo {
                    id: e.peer.id,
                    identity: e.peer.identity.clone(),
                    incarnation: e.peer.incarnation,
                    addresses: e.peer.addresses.clone(),
                    connected: ident.as_ref().is_some_and(|i| state.connected.contains(i)),
                    publishers: remote
                        .map(|r| r.publishers.iter().cloned().collect())
                        .unwrap_or_default(),
                    subscribers: remote
                        .map(|r| r.subscribers.keys().cloned().collect())
                        .unwrap_or_default(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.identity.cmp(&b.identity));
        out
    }

    /// The participants we have a stream with (and told what we host).
    pub fn connected(&self) -> Vec<Identity> {
        lock(&self.inner.state).connected.iter().cloned().collect()
    }

    /// The identities we reach, through which neighbour, in how many hops.
    pub fn routes(&self) -> Vec<Route> {
        lock(&self.inner.state).router.routes()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ParticipantStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ParticipantStats {
            discovery: self.inner.discovery.stats(),
            messaging: self.inner.messaging.stats(),
            routed_delivered: get(&c.routed_delivered),
            routed_forwarded: get(&c.routed_forwarded),
            routed_hop_limit: get(&c.routed_hop_limit),
            routed_loops: get(&c.routed_loops),
            routed_no_route: get(&c.routed_no_route),
            direct_dropped: get(&c.direct_dropped),
            control_errors: get(&c.control_errors),
        }
    }

    /// A publisher of `topic` (at most 255 bytes). The other participants
    /// are told we publish it; publications go only to participants with
    /// a matching subscriber.
    pub fn publisher(&self, topic: impl Into<String>) -> Result<Publisher, ParticipantError> {
        let topic = topic.into();
        if topic.len() > weft_messaging::MAX_TOPIC {
            return Err(ParticipantError::TopicTooLong(topic.len()));
        }
        {
            let mut state = lock(&self.inner.state);
            let count = state.local_publishers.entry(topic.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                self.inner
                    .tell_all(&state, &Control::PublisherAdded(topic.clone()));
            }
        }
        Ok(Publisher::new(self.clone(), topic))
    }

    pub(crate) fn drop_publisher(&self, topic: &str) {
        let mut state = lock(&self.inner.state);
        if let Some(count) = state.local_publishers.get_mut(topic) {
            *count -= 1;
            if *count == 0 {
                state.local_publishers.remove(topic);
                self.inner
                    .tell_all(&state, &Control::PublisherRemoved(topic.to_owned()));
            }
        }
    }

    /// A subscriber to the topics `filter` matches. Its interest travels
    /// to every participant, whose publishers then send to us.
    pub fn subscriber(&self, filter: TopicFilter) -> Subscriber {
        let spec = FilterSpec::of(&filter);
        let queue = {
            let mut state = lock(&self.inner.state);
            let queue = self.inner.messaging.subscribe_topic(filter.clone());
            let count = state.local_subscribers.entry(spec.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                self.inner
                    .tell_all(&state, &Control::SubscriberAdded(spec.clone()));
            }
            queue
        };
        Subscriber::new(self.clone(), queue, filter, spec)
    }

    pub(crate) fn drop_subscriber(&self, queue: &SubscriptionQueue, spec: &FilterSpec) {
        let mut state = lock(&self.inner.state);
        self.inner.messaging.unsubscribe_topic(queue);
        if let Some(count) = state.local_subscribers.get_mut(spec) {
            *count -= 1;
            if *count == 0 {
                state.local_subscribers.remove(spec);
                self.inner
                    .tell_all(&state, &Control::SubscriberRemoved(spec.clone()));
            }
        }
    }

    /// The participants (ourselves included) hosting a subscriber whose
    /// filter matches `topic`, as they told us.
    pub fn subscribers_of(&self, topic: &str) -> Vec<Identity> {
        let state = lock(&self.inner.state);
        let mut out: Vec<Identity> = state
            .remote
            .iter()
            .filter(|(_, r)| {
                r.subscribers
                    .values()
                    .any(|f| f.as_ref().is_some_and(|f| f.matches(topic)))
            })
            .map(|(i, _)| i.clone())
            .collect();
        let local = state
            .local_subscribers
            .keys()
            .any(|s| s.to_filter().is_some_and(|f| f.matches(topic)));
        if local {
            out.push(self.identity().clone());
        }
        out.sort();
        out
    }

    /// Sends `data` to the participant with identity `to`: directly when
    /// we have a stream to it, otherwise through the participants that
    /// told us they reach it (routing through brokers), with a hop limit
    /// of [`max_hops`](ParticipantConfig::max_hops). Fails with
    /// [`ParticipantError::NoRoute`] when nobody reaches it.
    pub fn send_to(&self, to: &str, data: impl AsRef<[u8]>) -> Result<(), ParticipantError> {
        let state = lock(&self.inner.state);
        let mut envelope = Envelope {
            to: to.to_owned(),
            from: self.identity().to_string(),
            hops_left: state.router.max_hops(),
            path: Vec::new(),
        };
        if to == self.identity().as_str() {
            drop(state);
            return self
                .inner
                .deliver(&envelope, Bytes::copy_from_slice(data.as_ref()));
        }
        match state.router.route(&mut envelope) {
            Decision::Forward(next) => {
                let next = Identity::new(&next)?;
                let message = Message::new(encode_routed(&envelope, data.as_ref()));
                self.inner.messaging.try_send_message(&next, message)?;
                Ok(())
            }
            _ => Err(ParticipantError::NoRoute(to.to_owned())),
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
    fn emit(&self, e: ParticipantEvent) {
        let _ = self.events.send(e);
    }

    fn send_control(&self, to: &Identity, c: &Control) {
        let message = Message::new(encode_control(c)).with_ttl(self.config.control_ttl);
        if let Err(e) = self.messaging.try_send_message(to, message) {
            tracing::debug!(to = %to, error = %e, "control message not queued");
        }
    }

    /// Tells every participant we have a stream with.
    fn tell_all(&self, state: &State, c: &Control) {
        for to in &state.connected {
            self.send_control(to, c);
        }
    }

    fn deliver(&self, e: &Envelope, data: Bytes) -> Result<(), ParticipantError> {
        self.counters
            .routed_delivered
            .fetch_add(1, Ordering::Relaxed);
        let direct = Direct {
            from: e.from.clone(),
            data,
            hops: u8::try_from(e.path.len().saturating_sub(1)).unwrap_or(u8::MAX),
        };
        if self.direct_tx.try_send(direct).is_err() {
            self.counters.direct_dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Sends route advertisements that changed.
    fn advertise(&self, state: &mut State) {
        for (n, adv) in state.router.changed_advertisements() {
            if let Ok(n) = Identity::new(&n) {
                self.send_control(&n, &Control::Routes(adv));
            }
        }
    }

    /// Brings our view of the streams up to date with messaging's.
    fn reconcile(&self) {
        self.streams_dirty.store(false, Ordering::Release);
        let now: BTreeSet<Identity> = self.messaging.connected().into_iter().collect();
        let mut state = lock(&self.state);
        let gone: Vec<Identity> = state.connected.difference(&now).cloned().collect();
        let new: Vec<Identity> = now.difference(&state.connected).cloned().collect();
        for ident in &gone {
            state.connected.remove(ident);
            state.router.neighbour_down(ident.as_str());
            if let Some(remote) = state.remote.remove(ident) {
                for topic in remote.publishers {
                    self.emit(ParticipantEvent::PublisherRemoved {
                        participant: ident.clone(),
                        topic,
                    });
                }
                for filter in remote.subscribers.into_keys() {
                    self.emit(ParticipantEvent::SubscriberRemoved {
                        participant: ident.clone(),
                        filter,
                    });
                }
            }
            self.emit(ParticipantEvent::Disconnected(ident.clone()));
        }
        for ident in &new {
            state.connected.insert(ident.clone());
            state.router.neighbour_up(ident.as_str());
        }
        for ident in &new {
            let routes = state.router.advertisement_for(ident.as_str());
            state.router.told(ident.as_str(), routes.clone());
            let hello = Control::Hello {
                publishers: state.local_publishers.keys().cloned().collect(),
                subscribers: state.local_subscribers.keys().cloned().collect(),
                routes,
            };
            self.send_control(ident, &hello);
            self.emit(ParticipantEvent::Connected(ident.clone()));
        }
        if !gone.is_empty() || !new.is_empty() {
            self.advertise(&mut state);
        }
    }

    fn on_control(&self, received: Received) {
        if self.streams_dirty.load(Ordering::Acquire) {
            self.reconcile();
        }
        let from = received.from;
        let Some(decoded) = decode(&received.message.data) else {
            self.counters.control_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut state = lock(&self.state);
        match decoded {
            Decoded::Control(c) => self.on_control_message(&mut state, &from, c),
            Decoded::Routed(mut envelope, data) => match state.router.route(&mut envelope) {
                Decision::Deliver => {
                    drop(state);
                    let _ = self.deliver(&envelope, data);
                }
                Decision::Forward(next) => {
                    let Ok(next) = Identity::new(&next) else {
                        return;
                    };
                    let message = Message::new(encode_routed(&envelope, &data));
                    if self.messaging.try_send_message(&next, message).is_ok() {
                        self.counters
                            .routed_forwarded
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                Decision::Drop(why) => {
                    let counter = match why {
                        DropReason::HopLimit => &self.counters.routed_hop_limit,
                        DropReason::Loop => &self.counters.routed_loops,
                        DropReason::NoRoute => &self.counters.routed_no_route,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(to = %envelope.to, reason = ?why, "routed message dropped");
                }
            },
        }
    }

    fn on_control_message(&self, state: &mut State, from: &Identity, c: Control) {
        let participant = from.clone();
        match c {
            Control::Hello {
                publishers,
                subscribers,
                routes,
            } => {
                let remote = state.remote.entry(from.clone()).or_default();
                for topic in publishers {
                    if remote.publishers.insert(topic.clone()) {
                        self.emit(ParticipantEvent::PublisherAdded {
                            participant: participant.clone(),
                            topic,
                        });
                    }
                }
                for filter in subscribers {
                    if !remote.subscribers.contains_key(&filter) {
                        let compiled = filter.to_filter();
                        remote.subscribers.insert(filter.clone(), compiled);
                        self.emit(ParticipantEvent::SubscriberAdded {
                            participant: participant.clone(),
                            filter,
                        });
                    }
                }
                state.router.learn(from.as_str(), routes);
                self.advertise(state);
            }
            Control::PublisherAdded(topic) => {
                let remote = state.remote.entry(from.clone()).or_default();
                if remote.publishers.len() < crate::control::MAX_LIST
                    && remote.publishers.insert(topic.clone())
                {
                    self.emit(ParticipantEvent::PublisherAdded { participant, topic });
                }
            }
            Control::PublisherRemoved(topic) => {
                if let Some(remote) = state.remote.get_mut(from) {
                    if remote.publishers.remove(&topic) {
                        self.emit(ParticipantEvent::PublisherRemoved { participant, topic });
                    }
                }
            }
            Control::SubscriberAdded(filter) => {
                let remote = state.remote.entry(from.clone()).or_default();
                if remote.subscribers.len() < crate::control::MAX_LIST
                    && !remote.subscribers.contains_key(&filter)
                {
                    let compiled = filter.to_filter();
                    remote.subscribers.insert(filter.clone(), compiled);
                    self.emit(ParticipantEvent::SubscriberAdded {
                        participant,
                        filter,
                    });
                }
            }
            Control::SubscriberRemoved(filter) => {
                if let Some(remote) = state.remote.get_mut(from) {
                    if remote.subscribers.remove(&filter).is_some() {
                        self.emit(ParticipantEvent::SubscriberRemoved {
                            participant,
                            filter,
                        });
                    }
                }
            }
            Control::Routes(routes) => {
                state.router.learn(from.as_str(), routes);
                self.advertise(state);
            }
        }
    }

    fn on_discovery(&self, event: DiscoveryEvent) {
        let mut state = lock(&self.state);
        match event {
            DiscoveryEvent::Found(peer) => {
                self.emit(ParticipantEvent::Found {
                    id: peer.id,
                    identity: peer.identity.clone(),
                    addresses: peer.addresses.clone(),
                });
                let entry = state.peers.entry(peer.id).or_insert(PeerEntry {
                    peer: peer.clone(),
                    connector: None,
                });
                entry.peer = peer;
                self.ensure_stream(entry, false);
            }
            DiscoveryEvent::Changed(peer) => {
                let entry = state.peers.entry(peer.id).or_insert(PeerEntry {
                    peer: peer.clone(),
                    connector: None,
                });
                entry.peer = peer;
                self.ensure_stream(entry, false);
            }
            DiscoveryEvent::Restarted { peer, .. } => {
                self.emit(ParticipantEvent::Restarted {
                    id: peer.id,
                    identity: peer.identity.clone(),
                    incarnation: peer.incarnation,
                });
                let entry = state.peers.entry(peer.id).or_insert(PeerEntry {
                    peer: peer.clone(),
                    connector: None,
                });
                entry.peer = peer;
                self.ensure_stream(entry, true);
            }
            DiscoveryEvent::Gone { peer, reason } => {
                if let Some(entry) = state.peers.remove(&peer.id) {
                    if let Some((connector, _)) = entry.connector {
                        // Also aborts the stream, if it is still up.
                        self.messaging.link().remove_connector(connector);
                    }
                }
                self.emit(ParticipantEvent::Gone {
                    id: peer.id,
                    identity: peer.identity,
                    reason,
                });
            }
            _ => {}
        }
    }

    /// Opens (or reopens) the stream to a participant, if we are the one
    /// to open it: of each pair, the participant with the lower id
    /// connects, so each pair has exactly one stream.
    fn ensure_stream(&self, entry: &mut PeerEntry, restart: bool) {
        if self.id >= entry.peer.id {
            return;
        }
        let addresses = &entry.peer.addresses;
        let keep = !restart
            && entry
                .connector
                .is_some_and(|(_, at)| addresses.contains(&at));
        if keep {
            return;
        }
        if let Some((old, _)) = entry.connector.take() {
            self.messaging.link().remove_connector(old);
        }
        let Some(at) = addresses
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addresses.first())
            .copied()
        else {
            return;
        };
        match self.messaging.link().connect(Address::tcp(at)) {
            Ok(c) => entry.connector = Some((c, at)),
            Err(e) => {
                tracing::warn!(peer = %entry.peer.identity, %at, error = %e, "cannot connect")
            }
        }
    }
}

async fn run(
    inner: Arc<Inner>,
    mut discovery: DiscoveryEvents,
    control: SubscriptionQueue,
    mut stop: watch::Receiver<bool>,
) {
    let mut discovery_open = true;
    let mut tick = tokio::time::interval(RECONCILE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            e = discovery.recv(), if discovery_open => match e {
                Some(e) => inner.on_discovery(e),
                None => discovery_open = false,
            },
            r = control.recv(None) => match r {
                Ok(r) => inner.on_control(r),
                Err(_) => break,
            },
            _ = inner.streams_changed.notified() => inner.reconcile(),
            _ = tick.tick() => inner.reconcile(),
        }
    }
    // Forget every stream: its connectors end with messaging.
    let mut state = lock(&inner.state);
    for (_, entry) in state.peers.drain() {
        if let Some((c, _)) = entry.connector {
            inner.messaging.link().remove_connector(c);
        }
    }
    tracing::debug!(identity = %inner.messaging.identity(), "participant stopped");
}

// The tags are checked by the control subscription's regex.
const _: () = assert!(CONTROL_TAG[0] == 0 && ROUTED_TAG[0] == 0);
