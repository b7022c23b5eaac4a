//! The participant's protocol core, free of I/O: what it knows of the
//! other participants, which streams it opens, what it tells its
//! neighbours, and where routed messages go.
//!
//! The shell ([`Participant`](crate::Participant)) feeds it and carries out
//! what it asks, in the vocabulary of weft's other cores:
//!
//! - input: [`handle_discovery`](ParticipantCore::handle_discovery) for
//!   discovery's events, [`handle_streams`](ParticipantCore::handle_streams)
//!   with the identities messaging has a stream with whenever that set may
//!   have changed, [`handle_control`](ParticipantCore::handle_control) for
//!   a tagged message a neighbour sent, and the changes of what we host
//!   ([`add_publisher`](ParticipantCore::add_publisher) and its kin);
//! - output: [`poll_dial`](ParticipantCore::poll_dial) for streams to open
//!   or close, [`poll_transmit`](ParticipantCore::poll_transmit) for
//!   messages to neighbours, [`poll_event`](ParticipantCore::poll_event)
//!   for what to report, and [`poll_direct`](ParticipantCore::poll_direct)
//!   for routed messages that reached us.
//!
//! After each input (or each batch of a neighbour's messages taken from
//! messaging at once) the shell polls every output until it is empty, so
//! the queues below hold at most what one batch caused. Its timers are
//! the deadlines of the group key's handshakes, the grace before a
//! subscriber learned through others is routed to, and the end of a batch
//! of changes to tell the neighbours
//! ([`poll_timeout`](ParticipantCore::poll_timeout),
//! [`handle_timeout`](ParticipantCore::handle_timeout)); leases are
//! discovery's, TTLs messaging's.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weft_discovery::{DiscoveryEvent, ParticipantId, RemoteParticipant};
use weft_messaging::{Identity, TopicFilter};

use crate::control::{
    Control, Decoded, Envelope, FEATURES, FilterSpec, PublicationHeader, decode, encode_control,
    encode_routed,
};
use crate::event::{Direct, ParticipantEvent, ParticipantInfo};
use crate::filters::{FilterLimits, RemoteFilters};
use crate::handshake::{Handshakes, Verdict};
use crate::hashing::{KeyedHashing, KeyedMap};
use crate::interest::{Delivery, Interest};
mod advertise;
mod control;
mod overlay;
mod streams;

pub(crate) use overlay::Overlay;

pub(crate) use crate::output::{
    CoreStats, Dial, Outgoing, SharedCopies, Transmit, TransmitKind, direct,
};
use crate::router::{Decision, DropReason, IdentityRoute, Router};

/// A participant discovery told us of.
struct Known {
    peer: RemoteParticipant,
    /// Where we opened our stream to it, if we are the one to open it.
    dialled: Option<SocketAddr>,
    /// Discovery says it moved or restarted while its stream was up: the
    /// stream is kept (a beacon alone never replaces a live stream) and
    /// reopened where it says once it ends.
    redial: bool,
}

/// What a neighbour told us it hosts.
#[derive(Default)]
struct Remote {
    publishers: BTreeSet<String>,
    /// Its subscribers' filters, compiled, within the limits.
    subscribers: RemoteFilters,
}

/// The participant's state machine. See the [module documentation](self).
pub(crate) struct ParticipantCore {
    id: ParticipantId,
    identity: Identity,
    known: KeyedMap<ParticipantId, Known>,
    /// Every stream messaging has up.
    streams: BTreeSet<Identity>,
    /// Neighbours: participants with a stream up (and proved, with a group
    /// key), told what we host.
    connected: BTreeSet<Identity>,
    /// With a group key: the handshakes of new streams.
    handshakes: Option<Handshakes>,
    remote: KeyedMap<Identity, Remote>,
    /// What each neighbour's subscriber filters may cost.
    filter_limits: FilterLimits,
    /// Our publishers by topic, with how many of each.
    local_publishers: BTreeMap<String, usize>,
    /// Our own subscribers' filters: how many subscribers hold each, and
    /// the filter compiled once.
    local_subscribers: BTreeMap<FilterSpec, (usize, TopicFilter)>,
    router: Router,
    /// Interest and publications routed through participants.
    interest: Interest,
    /// Which streams we keep past the full mesh's size.
    overlay: Overlay,
    dials: VecDeque<Dial>,
    /// Participants with a stream up, for discovery to keep.
    protects: VecDeque<ParticipantId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ParticipantEvent>,
    directs: VecDeque<Direct>,
    /// Whether a neighbour's subscribers changed since the last
    /// [`poll_interest_changed`](Self::poll_interest_changed).
    interest_changed: bool,
    /// The latest `now` an input brought.
    clock: Option<Instant>,
    /// How long changes of routes and interest gather before they are
    /// told (zero: at once).
    batch: Duration,
    /// Changes wait to be told, until when (`None` until the next tick
    /// says when that is).
    batched: Option<Option<Instant>>,
    stats: CoreStats,
}

impl ParticipantCore {
    /// The core of participant `id` with `identity`, routing with at most
    /// `max_hops`; its maps are keyed at random (see `hashing.rs`).
    pub(crate) fn new(id: ParticipantId, identity: Identity, max_hops: u8) -> ParticipantCore {
        ParticipantCore::keyed(id, identity, max_hops, KeyedHashing::random())
    }

    /// [`new`](Self::new), with maps keyed with `hashing`: the simulator's
    /// key comes from its seed, so that the maps' order is the same in
    /// every run of the seed.
    pub(crate) fn keyed(
        id: ParticipantId,
        identity: Identity,
        max_hops: u8,
        hashing: KeyedHashing,
    ) -> ParticipantCore {
        let mut core = ParticipantCore {
            id,
            router: Router::with_hashing(identity.as_str(), max_hops, hashing),
            interest: Interest::new(identity.as_str(), max_hops, FilterLimits::default(), 0),
            overlay: Overlay::new(
                crate::config::GROUP_SIZE,
                crate::config::MAX_STREAMS,
                u64::from_be_bytes(id.0[8..].try_into().unwrap_or_default()),
            ),
            identity,
            known: KeyedMap::with_hasher(hashing),
            streams: BTreeSet::new(),
            connected: BTreeSet::new(),
            handshakes: None,
            remote: KeyedMap::with_hasher(hashing),
            filter_limits: FilterLimits::default(),
            local_publishers: BTreeMap::new(),
            local_subscribers: BTreeMap::new(),
            dials: VecDeque::new(),
            protects: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            directs: VecDeque::new(),
            interest_changed: false,
            clock: None,
            batch: Duration::ZERO,
            batched: None,
            stats: CoreStats::default(),
        };
        core.sync_sight();
        core
    }

    /// The same core, taking as neighbours only streams that prove they
    /// hold the group key (see [`Handshakes`]).
    pub(crate) fn with_handshakes(mut self, handshakes: Handshakes) -> ParticipantCore {
        self.handshakes = Some(handshakes);
        self
    }

    /// The same core, holding each neighbour's subscriber filters within
    /// `limits` (default: those of [`MessagingConfig::default`](weft_messaging::MessagingConfig::default)).
    pub(crate) fn with_filter_limits(mut self, limits: FilterLimits) -> ParticipantCore {
        self.filter_limits = limits;
        self.interest.set_limits(limits);
        self
    }

    /// The same core, naming the publications it routes with `epoch`
    /// (default 0): a value of its own each time the participant starts,
    /// so that subscribers do not take new publications for old ones.
    pub(crate) fn with_epoch(mut self, epoch: u64) -> ParticipantCore {
        self.interest.set_epoch(epoch);
        self.overlay.reseed(epoch);
        self
    }

    /// The same core, keeping a full mesh up to `group_size` participants
    /// (ourselves included) and at most `max_streams` streams past it
    /// (defaults 32 and 16; see `overlay.rs`).
    pub(crate) fn with_overlay(mut self, group_size: usize, max_streams: usize) -> ParticipantCore {
        self.overlay.set_limits(group_size, max_streams);
        self.sync_sight();
        self
    }

    /// The same core, routing a publication to a subscriber learned
    /// through others only once discovery had `grace` to hear of it
    /// itself, while the group is within the full mesh's size (default
    /// zero; the shell gives discovery's beacon interval). See
    /// `interest.rs`.
    pub(crate) fn with_sight_grace(mut self, grace: Duration) -> ParticipantCore {
        self.interest.set_grace(grace);
        self
    }

    /// The same core, gathering the changes of its routes and interest
    /// for `batch` and telling each neighbour what changed in that time
    /// at once (default zero: every change told as it happens). While a
    /// large group forms, entries change many times a second, and each
    /// telling costs every neighbour a control message.
    pub(crate) fn with_advertise_batch(mut self, batch: Duration) -> ParticipantCore {
        self.batch = batch;
        self
    }

    /// The same core, giving up a dial past the full mesh's size whose
    /// stream is not up within `timeout`, and closing a stream asked to
    /// leave still up after it (default 10 s; see `overlay.rs`).
    pub(crate) fn with_dial_timeout(mut self, timeout: Duration) -> ParticipantCore {
        self.overlay.set_dial_timeout(timeout);
        self
    }

    /// The same core, remembering the last `n` routed publications it
    /// delivered (default 4 096) to drop second copies.
    pub(crate) fn with_recent_publications(mut self, n: usize) -> ParticipantCore {
        self.interest.set_recent(n);
        self
    }

    // ===== input =====

    /// A discovery event: participants found, changed, restarted or gone.
    pub(crate) fn handle_discovery(&mut self, event: DiscoveryEvent) {
        match event {
            DiscoveryEvent::Found(peer) => {
                self.events.push_back(ParticipantEvent::Found {
                    id: peer.id,
                    identity: peer.identity.clone(),
                    addresses: peer.addresses.clone(),
                });
                self.know(peer, false);
            }
            DiscoveryEvent::Changed(peer) => self.know(peer, false),
            DiscoveryEvent::Restarted { peer, .. } => {
                self.events.push_back(ParticipantEvent::Restarted {
                    id: peer.id,
                    identity: peer.identity.clone(),
                    incarnation: peer.incarnation,
                });
                self.know(peer, true);
            }
            DiscoveryEvent::Gone { peer, reason } => {
                if let Some(known) = self.known.remove(&peer.id) {
                    if known.dialled.is_some() {
                        // Also ends the stream, if it is still up.
                        self.dials.push_back(Dial::Close(peer.id));
                    }
                }
                self.overlay_forget(peer.id);
                self.events.push_back(ParticipantEvent::Gone {
                    id: peer.id,
                    identity: peer.identity,
                    reason,
                });
            }
            _ => {}
        }
        self.rebalance();
        self.sync_sight();
    }

    /// Opening the stream the last [`Dial::Open`] for `peer` asked for
    /// failed at once; the next discovery event about it tries again.
    pub(crate) fn handle_dial_failed(&mut self, peer: ParticipantId) {
        if let Some(known) = self.known.get_mut(&peer) {
            known.dialled = None;
        }
        self.overlay.dialled.remove(&peer);
    }

    /// The identities messaging has a stream with `now`. Neighbours whose
    /// stream ended are forgotten with what they told us; new ones are
    /// told everything we host and reach (with a group key, once they
    /// proved they hold it: until then they only get our challenge).
    pub(crate) fn handle_streams(
        &mut self,
        streams: impl IntoIterator<Item = Identity>,
        now: Instant,
    ) {
        let streams: BTreeSet<Identity> = streams.into_iter().collect();
        let gone: Vec<Identity> = self.streams.difference(&streams).cloned().collect();
        let new: Vec<Identity> = streams.difference(&self.streams).cloned().collect();
        self.streams = streams;
        let mut changed = false;
        for ident in &gone {
            if let Some(h) = &mut self.handshakes {
                h.forget(ident);
            }
            changed |= self.neighbour_gone(ident);
            self.overlay_stream_gone(ident);
            let mut moved: Vec<ParticipantId> = self
                .known
                .iter()
                .filter(|(_, k)| k.redial && k.peer.identity == ident.as_str())
                .map(|(id, _)| *id)
                .collect();
            // In id order: what the shell is asked does not follow the map.
            moved.sort_unstable();
            for id in moved {
                self.dial(id, true);
            }
        }
        let admitted = match &mut self.handshakes {
            Some(h) => {
                let challenges: Vec<_> = new.iter().map(|i| (i.clone(), h.start(i, now))).collect();
                for (ident, nonce) in challenges {
                    self.control_to(ident, &Control::Challenge(nonce));
                }
                Vec::new()
            }
            None => new,
        };
        changed |= !admitted.is_empty();
        self.admit(&admitted);
        if changed {
            self.advertise();
        }
        self.rebalance();
        self.tick(now);
    }

    /// Deadlines: streams that did not prove themselves in time are
    /// refused.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let late = match &mut self.handshakes {
            Some(h) => h.expired(now),
            None => Vec::new(),
        };
        for ident in late {
            self.refuse(ident);
        }
        self.tick(now);
    }

    /// The time is `now`: subscribers out of sight that waited out the
    /// grace are routed to.
    fn tick(&mut self, now: Instant) {
        self.clock = Some(self.clock.map_or(now, |c| c.max(now)));
        self.interest.tick(now);
        self.overlay_tick(now);
        match self.batched {
            Some(None) => self.batched = Some(Some(now + self.batch)),
            Some(Some(at)) if at <= now => {
                self.batched = None;
                self.tell_changes();
            }
            _ => {}
        }
    }

    /// Tells the interest which participants we expect a stream with:
    /// while the group is within the full mesh's size, everyone discovery
    /// knows (at most the mesh's size); past it, nobody in particular.
    fn sync_sight(&mut self) {
        let sight = (!self.sparse()).then(|| {
            self.known
                .values()
                .map(|k| k.peer.identity.clone())
                .collect()
        });
        self.interest.set_sight(sight);
    }

    /// Takes new streams as neighbours: each is told what we host and
    /// reach (all are neighbours before the first is told, so each hears
    /// of the others). Past the overlay's limit a stream is turned away
    /// instead.
    fn admit(&mut self, new: &[Identity]) {
        let mut taken = Vec::with_capacity(new.len());
        for ident in new {
            if !self.may_admit() {
                self.turn_away(ident.clone());
                continue;
            }
            taken.push(ident.clone());
            self.connected.insert(ident.clone());
            self.router.neighbour_up(ident.as_str());
            self.interest.neighbour_up(ident.as_str());
            let mut ids: Vec<ParticipantId> = self
                .known
                .iter()
                .filter(|(_, k)| k.peer.identity == ident.as_str())
                .map(|(id, _)| *id)
                .collect();
            ids.sort_unstable();
            self.protects.extend(ids);
        }
        for ident in &taken {
            let routes = self.router.advertisement_for(ident.as_str());
            self.router.told(ident.as_str(), routes.clone());
            let hello = Control::Hello {
                publishers: self.local_publishers.keys().cloned().collect(),
                subscribers: self.local_subscribers.keys().cloned().collect(),
                routes,
                features: FEATURES,
            };
            self.control_to(ident.clone(), &hello);
            self.events
                .push_back(ParticipantEvent::Connected(ident.clone()));
        }
    }

    /// A neighbour's stream ended: it is forgotten with what it told us.
    /// Returns whether it was a neighbour.
    fn neighbour_gone(&mut self, ident: &Identity) -> bool {
        if !self.connected.remove(ident) {
            return false;
        }
        self.router.neighbour_down(ident.as_str());
        self.interest.neighbour_down(ident.as_str());
        if let Some(remote) = self.remote.remove(ident) {
            self.interest_changed |= !remote.subscribers.is_empty();
            for topic in remote.publishers {
                self.events.push_back(ParticipantEvent::PublisherRemoved {
                    participant: ident.clone(),
                    topic,
                });
            }
            for filter in remote.subscribers.into_specs() {
                self.events.push_back(ParticipantEvent::SubscriberRemoved {
                    participant: ident.clone(),
                    filter,
                });
            }
        }
        self.events
            .push_back(ParticipantEvent::Disconnected(ident.clone()));
        true
    }

    /// Refuses a stream that failed the handshake: counted, and closed.
    fn refuse(&mut self, ident: Identity) {
        self.stats.streams_refused += 1;
        tracing::warn!(peer = %ident, "stream refused: no valid proof of the group key");
        self.dials.push_back(Dial::Refuse(ident));
    }

    /// A tagged message (control or routed) from the neighbour `from`.
    /// Anything that does not decode is counted and dropped.
    pub(crate) fn handle_control(&mut self, from: &Identity, data: &Bytes) {
        if self.overlay.leaving.contains_key(from) {
            // We asked it to leave: it is no neighbour of ours.
            return;
        }
        let decoded = decode(data);
        if let (Some(h), Some(Decoded::Control(c))) = (&mut self.handshakes, &decoded) {
            match c {
                Control::Challenge(nonce) => {
                    if self.streams.contains(from) {
                        let proof = h.answer(&self.identity, from, nonce);
                        self.control_to(from.clone(), &Control::Proof(proof));
                    }
                    return;
                }
                Control::Proof(tag) => {
                    match h.check(&self.identity, from, tag) {
                        Verdict::Proved => {
                            self.admit(std::slice::from_ref(from));
                            self.advertise();
                        }
                        Verdict::Refused => self.refuse(from.clone()),
                        Verdict::Unasked => {}
                    }
                    return;
                }
                _ => {}
            }
        }
        if self.handshakes.is_some() && !self.connected.contains(from) {
            self.stats.unproved_controls += 1;
            return;
        }
        match decoded {
            None => self.stats.control_errors += 1,
            Some(Decoded::Control(c)) => self.handle_control_message(from, c),
            Some(Decoded::Publication(header, data)) => self.pass_on(from, header, &data),
            Some(Decoded::Routed(mut envelope, data)) => match self.router.route(&mut envelope) {
                Decision::Deliver => self.deliver(&envelope, data),
                Decision::Forward(next) => {
                    let Ok(to) = Identity::new(&next) else { return };
                    self.transmits.push_back(Transmit {
                        to,
                        kind: TransmitKind::Routed,
                        data: encode_routed(&envelope, &data),
                    });
                }
                Decision::Drop(why) => {
                    let counter = match why {
                        DropReason::HopLimit => &mut self.stats.routed_hop_limit,
                        DropReason::Loop => &mut self.stats.routed_loops,
                        DropReason::NoRoute => &mut self.stats.routed_no_route,
                    };
                    *counter += 1;
                    tracing::debug!(to = %envelope.to, reason = ?why, "routed message dropped");
                }
            },
        }
    }

    /// One more publisher of `topic`; the neighbours hear of the first.
    pub(crate) fn add_publisher(&mut self, topic: &str) {
        let count = self.local_publishers.entry(topic.to_owned()).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.tell_all(&Control::PublisherAdded(topic.to_owned()));
        }
    }

    /// One publisher of `topic` fewer; the neighbours hear of the last.
    pub(crate) fn remove_publisher(&mut self, topic: &str) {
        if let Some(count) = self.local_publishers.get_mut(topic) {
            *count -= 1;
            if *count == 0 {
                self.local_publishers.remove(topic);
                self.tell_all(&Control::PublisherRemoved(topic.to_owned()));
            }
        }
    }

    /// One more subscriber with `filter`; the neighbours hear of the first.
    pub(crate) fn add_subscriber(&mut self, filter: &TopicFilter) {
        let spec = FilterSpec::of(filter);
        let (count, _) = self
            .local_subscribers
            .entry(spec.clone())
            .or_insert_with(|| (0, filter.clone()));
        *count += 1;
        if *count == 1 {
            self.tell_all(&Control::SubscriberAdded(spec));
        }
    }

    /// One subscriber with `filter` fewer; the neighbours hear of the last.
    pub(crate) fn remove_subscriber(&mut self, filter: &FilterSpec) {
        if let Some((count, _)) = self.local_subscribers.get_mut(filter) {
            *count -= 1;
            if *count == 0 {
                self.local_subscribers.remove(filter);
                self.tell_all(&Control::SubscriberRemoved(filter.clone()));
            }
        }
    }

    /// Where a message of ours for the identity `to` goes: to ourselves,
    /// to a neighbour (directly, or on its way through brokers), or
    /// nowhere (`None`: no route).
    pub(crate) fn route_outgoing(&mut self, to: &Identity, data: &[u8]) -> Option<Outgoing> {
        let mut envelope = Envelope {
            to: to.as_str().to_owned(),
            from: self.identity.as_str().to_owned(),
            hops_left: self.router.max_hops(),
            path: Vec::new(),
        };
        if *to == self.identity {
            self.stats.routed_delivered += 1;
            return Some(Outgoing::Deliver(direct(
                &envelope,
                Bytes::copy_from_slice(data),
            )));
        }
        match self.router.route(&mut envelope) {
            Decision::Forward(next) => {
                let next = Identity::new(&next).ok()?;
                Some(Outgoing::Forward(next, encode_routed(&envelope, data)))
            }
            _ => None,
        }
    }

    /// Our publication on `topic`, routed through participants to the
    /// matching subscribers that are not neighbours (neighbours get it as
    /// a PUBLISH message from messaging); returns how many subscribers the
    /// copies are for.
    pub(crate) fn publish(&mut self, topic: &str, data: &[u8]) -> usize {
        let (copies, count) = self.interest.publish(topic, data);
        publications_to(&mut self.transmits, copies);
        count
    }

    /// A routed publication from `from`: delivered here if it is for us,
    /// passed on for the rest of its targets.
    fn pass_on(&mut self, from: &Identity, header: PublicationHeader<&str>, data: &Bytes) {
        let subscribers = &self.local_subscribers;
        let local = |topic: &str| subscribers.values().any(|(_, f)| f.matches(topic));
        let copies = self
            .interest
            .handle_publication(from.as_str(), header, data, local);
        publications_to(&mut self.transmits, copies);
    }

    // ===== output =====

    /// The next publication routed to us through participants, for our
    /// subscribers.
    pub(crate) fn poll_delivery(&mut self) -> Option<Delivery> {
        self.interest.poll_delivery()
    }

    /// The next stream to open or close.
    pub(crate) fn poll_dial(&mut self) -> Option<Dial> {
        self.dials.pop_front()
    }

    /// The next participant with a stream up, for discovery to keep when
    /// its table is full.
    pub(crate) fn poll_protect(&mut self) -> Option<ParticipantId> {
        self.protects.pop_front()
    }

    /// The next message for a neighbour.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event to report.
    pub(crate) fn poll_event(&mut self) -> Option<ParticipantEvent> {
        self.events.pop_front()
    }

    /// The next routed message that reached us.
    pub(crate) fn poll_direct(&mut self) -> Option<Direct> {
        self.directs.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: a
    /// handshake's deadline, or the end of a subscriber's grace (see
    /// [`with_sight_grace`](Self::with_sight_grace)).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let handshake = self.handshakes.as_ref().and_then(Handshakes::poll_timeout);
        let grace = self.interest.poll_timeout(self.clock);
        let batch = match self.batched {
            Some(Some(at)) => Some(at),
            Some(None) => self.clock,
            None => None,
        };
        let overlay = self.overlay_poll_timeout(self.clock);
        [handshake, grace, batch, overlay]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether the subscribers we reach (neighbours' or further) changed
    /// since the last call.
    pub(crate) fn poll_interest_changed(&mut self) -> bool {
        self.interest.poll_changed() | std::mem::take(&mut self.interest_changed)
    }

    // ===== getters =====

    /// The participants discovery knows, with what they told us, by
    /// identity.
    pub(crate) fn peers(&self) -> Vec<ParticipantInfo> {
        let mut out: Vec<ParticipantInfo> = self
            .known
            .values()
            .map(|k| {
                let ident = Identity::new(&k.peer.identity).ok();
                let remote = ident.as_ref().and_then(|i| self.remote.get(i));
                ParticipantInfo {
                    id: k.peer.id,
                    identity: k.peer.identity.clone(),
                    incarnation: k.peer.incarnation,
                    addresses: k.peer.addresses.clone(),
                    connected: ident.as_ref().is_some_and(|i| self.connected.contains(i)),
                    publishers: remote
                        .map(|r| r.publishers.iter().cloned().collect())
                        .unwrap_or_default(),
                    subscribers: remote
                        .map(|r| r.subscribers.specs().cloned().collect())
                        .unwrap_or_default(),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.identity, a.id).cmp(&(&b.identity, b.id)));
        out
    }

    /// Our neighbours.
    pub(crate) fn connected(&self) -> impl Iterator<Item = &Identity> {
        self.connected.iter()
    }

    /// The identities we reach.
    pub(crate) fn routes(&self) -> Vec<IdentityRoute> {
        self.router.routes()
    }

    /// The participants (ourselves included) hosting a subscriber whose
    /// filter matches `topic`, sorted: neighbours, and those reached
    /// through participants.
    pub(crate) fn subscribers_of(&self, topic: &str) -> Vec<Identity> {
        let mut out: Vec<Identity> = self
            .remote
            .iter()
            .filter(|(_, r)| r.subscribers.matches(topic))
            .map(|(i, _)| i.clone())
            .collect();
        let local = self
            .local_subscribers
            .values()
            .any(|(_, f)| f.matches(topic));
        if local {
            out.push(self.identity.clone());
        }
        let routed = self.interest.matching(topic);
        out.extend(routed.filter_map(|s| Identity::new(s).ok()));
        // A neighbour's interest can also have reached us through others.
        out.sort();
        out.dedup();
        out
    }

    /// The counters.
    pub(crate) fn stats(&self) -> CoreStats {
        self.stats
    }

    #[cfg(test)]
    /// The overlay: which streams we keep past the full mesh's size.
    pub(crate) fn overlay(&self) -> &Overlay {
        &self.overlay
    }

    #[cfg(test)]
    /// How many participants discovery told us of and we still know.
    pub(crate) fn known_len(&self) -> usize {
        self.known.len()
    }

    /// Interest and publications routed through participants: what we
    /// reach, and the counters.
    pub(crate) fn interest(&self) -> &Interest {
        &self.interest
    }

    // ===== internals =====

    fn control_to(&mut self, to: Identity, c: &Control) {
        self.transmits.push_back(Transmit {
            to,
            kind: TransmitKind::Control,
            data: encode_control(c),
        });
    }

    /// Tells every neighbour.
    fn tell_all(&mut self, c: &Control) {
        let data = encode_control(c);
        for to in &self.connected {
            self.transmits.push_back(Transmit {
                to: to.clone(),
                kind: TransmitKind::Control,
                data: data.clone(),
            });
        }
    }

    fn deliver(&mut self, envelope: &Envelope, data: Bytes) {
        self.stats.routed_delivered += 1;
        self.directs.push_back(direct(envelope, data));
    }
}

/// Queues routed publication copies, each for the neighbour named.
fn publications_to(transmits: &mut VecDeque<Transmit>, copies: Vec<(Identity, Bytes)>) {
    let kind = TransmitKind::Publication;
    transmits.extend(
        copies
            .into_iter()
            .map(|(to, data)| Transmit { to, kind, data }),
    );
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use crate::control::{FEATURE_CHANGES, FEATURE_INTEREST, MAX_LIST};

    use weft_discovery::{DiscoveryConfig, DiscoveryCore, GoneReason, LocalParticipant};

    use super::*;

    fn ident(name: &str) -> Identity {
        Identity::new(name).unwrap()
    }

    fn id(n: u8) -> ParticipantId {
        ParticipantId([n; 16])
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A participant as discovery reports it: its beacon, heard from `at`.
    fn peer(name: &str, pid: ParticipantId, at: SocketAddr) -> RemoteParticipant {
        let now = Instant::now();
        let config = DiscoveryConfig::default();
        let mut local = LocalParticipant::new(name, vec![at]);
        local.id = pid;
        let beacon = DiscoveryCore::new(local, &config, now)
            .poll_transmit(now)
            .unwrap();
        let mut observer =
            DiscoveryCore::new(LocalParticipant::new("observer", vec![]), &config, now);
        observer.handle_beacon(&beacon, at, now).unwrap();
        match observer.poll_event() {
            Some(DiscoveryEvent::Found(p)) => p,
            other => panic!("{other:?}"),
        }
    }

    fn dials(core: &mut ParticipantCore) -> Vec<Dial> {
        std::iter::from_fn(|| core.poll_dial()).collect()
    }

    fn events(core: &mut ParticipantCore) -> Vec<ParticipantEvent> {
        std::iter::from_fn(|| core.poll_event()).collect()
    }

    fn transmits(core: &mut ParticipantCore) -> Vec<Transmit> {
        std::iter::from_fn(|| core.poll_transmit()).collect()
    }

    fn controls(core: &mut ParticipantCore) -> Vec<(Identity, Control)> {
        transmits(core)
            .into_iter()
            .map(|t| match decode(&t.data) {
                Some(Decoded::Control(c)) => (t.to, c),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn of_a_pair_the_lower_id_opens_the_stream_and_keeps_it_while_its_address_stays() {
        let at = addr("127.0.0.2:9000");
        let mut low = ParticipantCore::new(id(1), ident("low"), 4);
        let mut high = ParticipantCore::new(id(2), ident("high"), 4);
        low.handle_discovery(DiscoveryEvent::Found(peer("high", id(2), at)));
        high.handle_discovery(DiscoveryEvent::Found(peer("low", id(1), at)));
        assert_eq!(dials(&mut low), vec![Dial::Open { peer: id(2), at }]);
        assert_eq!(dials(&mut high), vec![], "the higher id waits");
        assert!(matches!(
            &events(&mut low)[..],
            [ParticipantEvent::Found { id: found, .. }] if *found == id(2)
        ));

        // Another address as well: the stream stays where it is.
        let mut more = peer("high", id(2), at);
        more.addresses.push(addr("127.0.0.3:9000"));
        low.handle_discovery(DiscoveryEvent::Changed(more.clone()));
        assert_eq!(dials(&mut low), vec![]);
        // Its address gone: the stream moves.
        more.addresses.remove(0);
        low.handle_discovery(DiscoveryEvent::Changed(more.clone()));
        let moved = addr("127.0.0.3:9000");
        assert_eq!(
            dials(&mut low),
            vec![Dial::Open {
                peer: id(2),
                at: moved
            }]
        );
        // A restart reopens it even at the same address.
        low.handle_discovery(DiscoveryEvent::Restarted {
            previous_incarnation: more.incarnation,
            peer: more.clone(),
        });
        assert_eq!(
            dials(&mut low),
            vec![Dial::Open {
                peer: id(2),
                at: moved
            }]
        );
        // Gone: closed.
        low.handle_discovery(DiscoveryEvent::Gone {
            peer: more,
            reason: GoneReason::Left,
        });
        assert_eq!(dials(&mut low), vec![Dial::Close(id(2))]);
        assert!(low.peers().is_empty());
    }

    #[test]
    fn a_beacon_alone_never_replaces_a_live_stream() {
        let at = addr("127.0.0.2:9000");
        let mut low = ParticipantCore::new(id(1), ident("low"), 4);
        low.handle_discovery(DiscoveryEvent::Found(peer("high", id(2), at)));
        assert_eq!(dials(&mut low), vec![Dial::Open { peer: id(2), at }]);
        low.handle_streams([ident("high")], Instant::now());
        assert_eq!(low.poll_protect(), Some(id(2)), "discovery keeps it");
        assert_eq!(low.poll_protect(), None);

        // A forger claims high's id with a newer incarnation, from its own
        // host, and then a change of address: the live stream stays.
        let forger_at = addr("127.0.0.66:9000");
        let forged = peer("high", id(2), forger_at);
        low.handle_discovery(DiscoveryEvent::Restarted {
            previous_incarnation: 0,
            peer: forged.clone(),
        });
        low.handle_discovery(DiscoveryEvent::Changed(forged));
        assert_eq!(dials(&mut low), vec![], "no dial while the stream lives");
        assert_eq!(low.connected().count(), 1);

        // Once that stream ends, the participant is reached where
        // discovery last said.
        low.handle_streams([], Instant::now());
        assert_eq!(
            dials(&mut low),
            vec![Dial::Open {
                peer: id(2),
                at: forger_at
            }]
        );
    }

    #[test]
    fn a_failed_dial_is_tried_again_on_the_next_news() {
        let at = addr("127.0.0.2:9000");
        let mut low = ParticipantCore::new(id(1), ident("low"), 4);
        low.handle_discovery(DiscoveryEvent::Found(peer("high", id(2), at)));
        assert_eq!(dials(&mut low).len(), 1);
        low.handle_dial_failed(id(2));
        low.handle_discovery(DiscoveryEvent::Changed(peer("high", id(2), at)));
        assert_eq!(dials(&mut low), vec![Dial::Open { peer: id(2), at }]);
        // Nothing was open when it went, so nothing to close.
        low.handle_dial_failed(id(2));
        low.handle_discovery(DiscoveryEvent::Gone {
            peer: peer("high", id(2), at),
            reason: GoneReason::LeaseExpired,
        });
        assert_eq!(dials(&mut low), vec![]);
    }

    #[test]
    fn a_new_neighbour_hears_everything_we_host_and_a_departed_one_is_forgotten() {
        let mut a = ParticipantCore::new(id(1), ident("a"), 4);
        a.add_publisher("news");
        a.add_subscriber(&TopicFilter::Prefix("weather".into()));
        assert!(transmits(&mut a).is_empty(), "no neighbour to tell yet");

        a.handle_streams([ident("b")], Instant::now());
        let told = controls(&mut a);
        let hello = told
            .iter()
            .find_map(|(to, c)| match c {
                Control::Hello {
                    publishers,
                    subscribers,
                    ..
                } if *to == ident("b") => Some((publishers.clone(), subscribers.clone())),
                _ => None,
            })
            .expect("a hello for b");
        assert_eq!(hello.0, vec!["news".to_owned()]);
        assert_eq!(
            hello.1,
            vec![FilterSpec::of(&TopicFilter::Prefix("weather".into()))]
        );
        assert_eq!(
            events(&mut a),
            vec![ParticipantEvent::Connected(ident("b"))]
        );
        assert_eq!(a.connected().cloned().collect::<Vec<_>>(), vec![ident("b")]);

        // b tells us of its subscriber; then its stream ends.
        let filter = FilterSpec::of(&TopicFilter::Prefix("news".into()));
        a.handle_control(
            &ident("b"),
            &encode_control(&Control::SubscriberAdded(filter.clone())),
        );
        assert!(a.poll_interest_changed());
        assert!(!a.poll_interest_changed(), "told once");
        assert_eq!(a.subscribers_of("news.today"), vec![ident("b")]);
        assert_eq!(a.subscribers_of("weather"), vec![ident("a")]);
        events(&mut a);

        a.handle_streams([], Instant::now());
        assert_eq!(
            events(&mut a),
            vec![
                ParticipantEvent::SubscriberRemoved {
                    participant: ident("b"),
                    filter,
                },
                ParticipantEvent::Disconnected(ident("b")),
            ]
        );
        assert!(a.poll_interest_changed());
        assert!(a.subscribers_of("news.today").is_empty());
        assert_eq!(a.connected().count(), 0);
    }

    #[test]
    fn neighbours_hear_of_the_first_publisher_of_a_topic_and_of_the_last() {
        let mut a = ParticipantCore::new(id(1), ident("a"), 4);
        a.handle_streams([ident("b"), ident("c")], Instant::now());
        transmits(&mut a);
        a.add_publisher("t");
        let added = controls(&mut a);
        assert_eq!(
            added,
            vec![
                (ident("b"), Control::PublisherAdded("t".into())),
                (ident("c"), Control::PublisherAdded("t".into())),
            ]
        );
        a.add_publisher("t");
        a.remove_publisher("t");
        assert!(transmits(&mut a).is_empty(), "another publisher of t lives");
        a.remove_publisher("t");
        assert_eq!(controls(&mut a).len(), 2);
        a.remove_publisher("t");
        assert!(transmits(&mut a).is_empty(), "an unknown topic is a no-op");
    }

    #[test]
    fn garbage_and_unknown_tags_are_counted_not_acted_on() {
        let mut a = ParticipantCore::new(id(1), ident("a"), 4);
        a.handle_streams([ident("b")], Instant::now());
        transmits(&mut a);
        events(&mut a);
        for bad in [&b"\0WPC\xff\xff"[..], b"\0WPR", b"hello", b""] {
            a.handle_control(&ident("b"), &Bytes::copy_from_slice(bad));
        }
        assert_eq!(a.stats().control_errors, 4);
        assert!(events(&mut a).is_empty());
        assert!(transmits(&mut a).is_empty());
    }

    fn regex(i: usize) -> FilterSpec {
        FilterSpec {
            regex: true,
            text: format!(r"^flood{i}\.[a-z]+$"),
        }
    }

    #[test]
    fn a_neighbour_flooding_regex_subscribers_keeps_only_the_bound_and_the_rest_are_counted() {
        let mut a = ParticipantCore::new(id(1), ident("a"), 4);
        a.handle_streams([ident("b"), ident("c")], Instant::now());
        transmits(&mut a);
        events(&mut a);

        // 500 SubscriberAdded, each a distinct regex.
        for i in 0..500 {
            let added = encode_control(&Control::SubscriberAdded(regex(i)));
            a.handle_control(&ident("b"), &added);
        }
        let limits = FilterLimits::default();
        let kept = limits.regex_filters;
        assert_eq!(kept, 16);
        let b = &a.remote[&ident("b")].subscribers;
        assert_eq!(b.len(), kept);
        assert_eq!(b.compiled, kept, "a refused regex is never compiled");
        assert_eq!(a.stats().filters_refused, 500 - kept as u64);
        assert_eq!(a.stats().regexes_refused, 0);
        let added = events(&mut a);
        assert_eq!(added.len(), kept, "only the kept filters are reported");
        assert!(a.poll_interest_changed());
        assert_eq!(a.subscribers_of("flood3.x"), vec![ident("b")]);
        assert!(a.subscribers_of("flood400.x").is_empty(), "refused");

        // A prefix still fits next to them, and a removal frees its share.
        let news = FilterSpec {
            regex: false,
            text: "news.".into(),
        };
        a.handle_control(
            &ident("b"),
            &encode_control(&Control::SubscriberAdded(news)),
        );
        assert_eq!(a.subscribers_of("news.today"), vec![ident("b")]);
        a.handle_control(
            &ident("b"),
            &encode_control(&Control::SubscriberRemoved(regex(0))),
        );
        a.handle_control(
            &ident("b"),
            &encode_control(&Control::SubscriberAdded(regex(499))),
        );
        assert_eq!(a.subscribers_of("flood499.x"), vec![ident("b")]);
        assert_eq!(a.remote[&ident("b")].subscribers.compiled, kept + 1);
        assert_eq!(a.stats().filters_refused, 500 - kept as u64);

        // A Hello with the most a list may hold, all regexes: the same
        // bound, per neighbour.
        let hello = Control::Hello {
            publishers: Vec::new(),
            subscribers: (0..MAX_LIST).map(regex).collect(),
            routes: Vec::new(),
            features: 0,
        };
        a.handle_control(&ident("c"), &encode_control(&hello));
        let c = &a.remote[&ident("c")].subscribers;
        assert_eq!((c.len(), c.compiled), (kept, kept));
        assert_eq!(
            a.stats().filters_refused,
            (500 - kept + MAX_LIST - kept) as u64
        );
        let memory: usize = a.remote.values().map(|r| r.subscribers.len()).sum();
        assert_eq!(memory, 2 * kept + 1, "what the core holds stays small");
        assert_eq!(a.stats().control_errors, 0);
    }

    #[test]
    fn a_regex_too_costly_to_compile_is_refused_and_counted() {
        let mut a = ParticipantCore::new(id(1), ident("a"), 4).with_filter_limits(FilterLimits {
            regex_size: 1 << 10,
            ..FilterLimits::default()
        });
        a.handle_streams([ident("b")], Instant::now());
        transmits(&mut a);
        events(&mut a);
        let costly = FilterSpec {
            regex: true,
            text: r"\w{200}".into(),
        };
        a.handle_control(
            &ident("b"),
            &encode_control(&Control::SubscriberAdded(costly)),
        );
        assert_eq!(a.stats().regexes_refused, 1);
        assert!(events(&mut a).is_empty());
        assert!(!a.poll_interest_changed());
        assert!(a.remote[&ident("b")].subscribers.is_empty());
    }

    /// Cores joined by streams; transmits are delivered until none is left.
    struct Net {
        cores: Vec<ParticipantCore>,
    }

    impl Net {
        /// A line: each core has a stream with the next.
        fn line(names: &[&str]) -> Net {
            let mut cores: Vec<ParticipantCore> = names
                .iter()
                .enumerate()
                .map(|(i, n)| ParticipantCore::new(id(i as u8 + 1), ident(n), 4))
                .collect();
            for i in 0..cores.len() {
                let mut neighbours = Vec::new();
                if i > 0 {
                    neighbours.push(ident(names[i - 1]));
                }
                if i + 1 < names.len() {
                    neighbours.push(ident(names[i + 1]));
                }
                cores[i].handle_streams(neighbours, Instant::now());
            }
            let mut net = Net { cores };
            net.settle();
            net
        }

        fn index(&self, who: &Identity) -> usize {
            self.cores.iter().position(|c| c.identity == *who).unwrap()
        }

        /// Delivers transmits until the network is quiet (bounded).
        fn settle(&mut self) {
            for _ in 0..100 {
                let mut moved = false;
                for i in 0..self.cores.len() {
                    let from = self.cores[i].identity.clone();
                    while let Some(t) = self.cores[i].poll_transmit() {
                        moved = true;
                        let to = self.index(&t.to);
                        self.cores[to].handle_control(&from, &t.data);
                    }
                }
                if !moved {
                    return;
                }
            }
            panic!("the network did not settle");
        }
    }

    #[test]
    fn routed_messages_cross_a_line_and_arrive_once_with_their_hops() {
        let mut net = Net::line(&["a", "b", "c"]);
        assert!(
            net.cores[0]
                .routes()
                .iter()
                .any(|r| r.destination == "c" && r.next_hop == "b" && r.hops == 2),
            "{:?}",
            net.cores[0].routes()
        );
        let Some(Outgoing::Forward(next, data)) = net.cores[0].route_outgoing(&ident("c"), b"hi")
        else {
            panic!("a route to c")
        };
        assert_eq!(next, ident("b"));
        net.cores[1].handle_control(&ident("a"), &data);
        net.settle();
        let got = net.cores[2].poll_direct().expect("delivered to c");
        assert_eq!(
            (got.from.as_str(), &got.data[..], got.hops),
            ("a", &b"hi"[..], 1)
        );
        assert_eq!(net.cores[2].poll_direct(), None, "exactly once");
        assert_eq!(net.cores[2].stats().routed_delivered, 1);

        assert!(matches!(
            net.cores[0].route_outgoing(&ident("a"), b"me"),
            Some(Outgoing::Deliver(Direct { hops: 0, .. }))
        ));
        assert_eq!(net.cores[0].route_outgoing(&ident("nobody"), b"x"), None);
    }

    #[test]
    fn changes_within_a_batch_are_told_once_at_its_end_and_only_what_changed() {
        let t0 = Instant::now();
        let batch = Duration::from_millis(20);
        let mut a = ParticipantCore::new(id(1), ident("a"), 8).with_advertise_batch(batch);
        a.handle_streams([ident("b"), ident("c")], t0);
        transmits(&mut a);
        let hello = Control::Hello {
            publishers: Vec::new(),
            subscribers: Vec::new(),
            routes: Vec::new(),
            features: FEATURE_INTEREST | FEATURE_CHANGES,
        };
        for n in ["b", "c"] {
            a.handle_control(&ident(n), &encode_control(&hello));
        }
        let routes = |r: &[(&str, u8)]| {
            let r = r.iter().map(|(d, h)| ((*d).to_owned(), *h)).collect();
            encode_control(&Control::Routes(r))
        };
        // b's routes move three times within the batch.
        for r in [
            &[("x", 1)][..],
            &[("x", 1), ("y", 1)],
            &[("x", 2), ("y", 1)],
        ] {
            a.handle_control(&ident("b"), &routes(r));
        }
        assert!(
            transmits(&mut a).is_empty(),
            "nothing before the batch ends"
        );
        // The batch began with the new streams, at t0.
        assert_eq!(a.poll_timeout(), Some(t0 + batch));
        a.handle_timeout(t0 + batch - Duration::from_millis(1));
        assert!(transmits(&mut a).is_empty());
        a.handle_timeout(t0 + batch);
        let told: Vec<(Identity, Control)> = controls(&mut a)
            .into_iter()
            .filter(|(_, c)| matches!(c, Control::Routes(_) | Control::RoutesChanged { .. }))
            .collect();
        // c, told b in its Hello, hears of x and y once; b hears nothing
        // (what a reaches through b is not told to b).
        assert_eq!(
            told,
            vec![(
                ident("c"),
                Control::RoutesChanged {
                    set: vec![("x".into(), 3), ("y".into(), 2)],
                    removed: vec![],
                }
            )]
        );
        assert_eq!(a.poll_timeout(), None, "nothing waits");
    }

    /// A core in a group past its full mesh's size (3), at most
    /// `max_streams`, knowing p2, p3 and p4; its clock at `t0`.
    fn sparse(max_streams: usize, t0: Instant) -> ParticipantCore {
        let mut a = ParticipantCore::new(id(1), ident("a"), 8)
            .with_overlay(3, max_streams)
            .with_dial_timeout(Duration::from_secs(10));
        a.handle_streams([], t0);
        for n in 2..5 {
            let at = addr(&format!("127.0.0.{n}:9000"));
            a.handle_discovery(DiscoveryEvent::Found(peer(&format!("p{n}"), id(n), at)));
        }
        a
    }

    #[test]
    fn past_the_mesh_a_dial_whose_stream_never_comes_is_given_up_for_another() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        let mut a = sparse(2, t0);
        // The mesh's dials, then past its size one kept (half the limit).
        let asked = dials(&mut a);
        let open: Vec<ParticipantId> = asked
            .iter()
            .filter_map(|d| match d {
                Dial::Open { peer, .. } if !asked.contains(&Dial::Close(*peer)) => Some(*peer),
                _ => None,
            })
            .collect();
        let [first] = open[..] else {
            panic!("one dial kept: {asked:?}")
        };
        // The wait starts at the next tick.
        assert_eq!(a.poll_timeout(), Some(t0));
        a.handle_timeout(t0);
        assert_eq!(a.poll_timeout(), Some(t0 + timeout));
        a.handle_timeout(t0 + timeout - Duration::from_millis(1));
        assert!(dials(&mut a).is_empty(), "not before its time");
        a.handle_timeout(t0 + timeout);
        let next = dials(&mut a);
        assert_eq!(next[0], Dial::Close(first), "{next:?}");
        assert!(
            matches!(&next[1..], [Dial::Open { peer, .. }] if *peer != first),
            "someone else: {next:?}"
        );
        // A dial whose stream came up waits for nothing.
        let Dial::Open { peer, .. } = next[1] else {
            unreachable!()
        };
        let name = format!("p{}", peer.0[0]);
        a.handle_streams([ident(&name)], t0 + timeout);
        a.handle_timeout(t0 + timeout);
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn past_the_mesh_a_dialled_stream_closed_before_its_hello_is_replaced_at_once() {
        let t0 = Instant::now();
        let mut a = sparse(2, t0);
        let asked = dials(&mut a);
        let Some(Dial::Open { peer, .. }) = asked
            .iter()
            .find(|d| matches!(d, Dial::Open { peer, .. } if !asked.contains(&Dial::Close(*peer))))
            .cloned()
        else {
            panic!("a dial kept: {asked:?}")
        };
        let name = ident(&format!("p{}", peer.0[0]));
        a.handle_streams([name.clone()], t0);
        // Closed by the other side before its Hello: it had no room.
        a.handle_streams([], t0);
        let next = dials(&mut a);
        assert_eq!(next[0], Dial::Close(peer), "{next:?}");
        assert!(
            matches!(&next[1..], [Dial::Open { peer: other, .. }] if *other != peer),
            "someone else at once: {next:?}"
        );
    }

    #[test]
    fn past_the_limit_a_stream_is_asked_to_leave_and_closed_if_it_stays() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        let mut a = sparse(1, t0);
        dials(&mut a);
        transmits(&mut a);
        // Two streams arrive from participants we did not dial: one is
        // kept, the other asked to leave.
        a.handle_streams([ident("u1"), ident("u2")], t0);
        assert_eq!(a.connected().cloned().collect::<Vec<_>>(), [ident("u1")]);
        let leave: Vec<Identity> = controls(&mut a)
            .into_iter()
            .filter(|(_, c)| *c == Control::Leave)
            .map(|(to, _)| to)
            .collect();
        assert_eq!(leave, [ident("u2")]);
        assert!(!dials(&mut a).contains(&Dial::Refuse(ident("u2"))));
        // u2 ignores Leave: closed by us once the timeout passed.
        a.handle_timeout(t0);
        a.handle_timeout(t0 + timeout - Duration::from_millis(1));
        assert!(!dials(&mut a).contains(&Dial::Refuse(ident("u2"))));
        a.handle_timeout(t0 + timeout);
        assert!(dials(&mut a).contains(&Dial::Refuse(ident("u2"))));
        // Once it is gone nothing waits.
        a.handle_streams([ident("u1")], t0 + timeout);
        assert!(a.poll_timeout().is_none_or(|t| t > t0 + timeout));
    }

    fn keyed(n: u8, name: &str, key: u8) -> ParticipantCore {
        let key = weft_discovery::GroupKey::new([key; 32]).unwrap();
        let timeout = std::time::Duration::from_secs(5);
        ParticipantCore::new(id(n), ident(name), 4)
            .with_handshakes(Handshakes::new(key, [n; 32], timeout))
    }

    /// Passes every transmit between `a` and `b` until both are quiet.
    fn exchange(a: &mut ParticipantCore, b: &mut ParticipantCore) {
        for _ in 0..20 {
            let from_a = transmits(a);
            let from_b = transmits(b);
            if from_a.is_empty() && from_b.is_empty() {
                return;
            }
            for t in from_a {
                b.handle_control(&a.identity.clone(), &t.data);
            }
            for t in from_b {
                a.handle_control(&b.identity.clone(), &t.data);
            }
        }
        panic!("the two did not settle");
    }

    #[test]
    fn with_a_group_key_a_stream_is_a_neighbour_once_it_proved_the_key() {
        let now = Instant::now();
        let mut a = keyed(1, "a", 7);
        let mut b = keyed(2, "b", 7);
        a.handle_streams([ident("b")], now);
        b.handle_streams([ident("a")], now);
        assert_eq!(a.connected().count(), 0, "not before its proof");
        assert!(a.poll_timeout().is_some());
        // b says it hosts a subscriber before proving anything: ignored.
        a.handle_control(
            &ident("b"),
            &encode_control(&Control::SubscriberAdded(FilterSpec::of(
                &TopicFilter::Prefix("x".into()),
            ))),
        );
        assert_eq!(a.stats().unproved_controls, 1);
        assert!(a.subscribers_of("x").is_empty());

        exchange(&mut a, &mut b);
        assert_eq!(a.connected().cloned().collect::<Vec<_>>(), vec![ident("b")]);
        assert_eq!(b.connected().cloned().collect::<Vec<_>>(), vec![ident("a")]);
        assert!(events(&mut a).contains(&ParticipantEvent::Connected(ident("b"))));
        assert_eq!(a.poll_timeout(), None, "nothing left to prove");
        assert!(dials(&mut a).is_empty() && dials(&mut b).is_empty());
        assert_eq!(a.stats().streams_refused, 0);
    }

    #[test]
    fn a_stream_with_another_key_or_none_is_refused() {
        let now = Instant::now();
        let mut a = keyed(1, "a", 7);
        let mut forger = keyed(2, "b", 8);
        a.handle_streams([ident("b")], now);
        forger.handle_streams([ident("a")], now);
        exchange(&mut a, &mut forger);
        assert_eq!(dials(&mut a), vec![Dial::Refuse(ident("b"))]);
        assert_eq!(dials(&mut forger), vec![Dial::Refuse(ident("a"))]);
        assert_eq!(a.connected().count(), 0);
        assert_eq!(a.stats().streams_refused, 1);

        // A peer without the key never answers: refused at the deadline.
        let mut a = keyed(1, "a", 7);
        let mut keyless = ParticipantCore::new(id(3), ident("c"), 4);
        a.handle_streams([ident("c")], now);
        keyless.handle_streams([ident("a")], now);
        exchange(&mut a, &mut keyless);
        assert_eq!(a.connected().count(), 0);
        let deadline = a.poll_timeout().expect("a deadline for c's proof");
        a.handle_timeout(deadline - std::time::Duration::from_millis(1));
        assert!(dials(&mut a).is_empty(), "not before the deadline");
        a.handle_timeout(deadline);
        assert_eq!(dials(&mut a), vec![Dial::Refuse(ident("c"))]);
        assert_eq!(a.poll_timeout(), None);
    }
}
