//! The pipe without I/O: its peers, its dedupe window, its subscriptions,
//! relays and handlers, and what each event asks the shell to do.
//!
//! The pipe's task feeds it the link's events
//! ([`handle_connected`](PipeCore::handle_connected),
//! [`handle_data`](PipeCore::handle_data),
//! [`handle_disconnected`](PipeCore::handle_disconnected)) and after each
//! one performs every [`Action`] that [`poll_action`](PipeCore::poll_action)
//! returns, in order: relays, then deliveries into queues, then handlers.
//! The pipe's handles change it through plain methods (subscribe, relay,
//! add a handler, look up a peer to send to). Nothing in a pipe depends on
//! time (the dedupe window counts messages), so the core takes no `now`
//! and has no timeout.
//!
//! The core never uses the shell's handles (a connection to send on, a
//! relay's target pipe, a subscription's queue); it keeps them, as the
//! [`Handles`] types say, and hands them back in actions.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use super::dedupe::{DedupeWindow, SenderKey};
use super::{
    Dedupe, EndHandler, HandlerId, MessageHandler, Peer, PeerInfo, PipeError, PipeMessage, RelayId,
    Subscription, SubscriptionId, UpHandler, normalize_addr,
};
use crate::{ConnectionId, DisconnectReason};

/// What the shell attaches to the core's entries and gets back in actions.
pub(crate) trait Handles {
    /// How to send to one peer.
    type Route: Clone;
    /// The pipe a relay sends into.
    type Target: Clone;
    /// Where a subscription's messages go.
    type Queue: Clone;
}

/// Handlers of one kind with their ids, in the order they run. Shared with
/// the actions that run them, so a handler added meanwhile applies from the
/// next event on.
pub(crate) type Handlers<H> = Arc<Vec<(HandlerId, H)>>;

/// What the shell does for the core, in the order polled.
pub(crate) enum Action<H: Handles> {
    /// Send `message`'s data into each target pipe, in order, before the
    /// actions that follow.
    Relay {
        /// The message.
        message: PipeMessage,
        /// The relays, with their ids for logs.
        targets: Vec<(RelayId, H::Target)>,
    },
    /// Push a copy of `message` into each queue (whose subscription it
    /// matches).
    Deliver {
        /// The message.
        message: PipeMessage,
        /// The queues.
        queues: Vec<H::Queue>,
    },
    /// Run the message handlers on `message`, each awaited before the next.
    RunMessageHandlers {
        /// The message.
        message: PipeMessage,
        /// The handlers.
        handlers: Handlers<MessageHandler>,
    },
    /// Run the up handlers for a connection that came up.
    RunUpHandlers {
        /// The connection.
        peer: PeerInfo,
        /// The handlers.
        handlers: Handlers<UpHandler>,
    },
    /// Run the end handlers for a connection that ended.
    RunEndHandlers {
        /// The connection.
        peer: PeerInfo,
        /// Why it ended.
        reason: DisconnectReason,
        /// The handlers.
        handlers: Handlers<EndHandler>,
    },
}

/// What [`PipeCore::handle_data`] made of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// New: its actions are ready to poll.
    Accepted,
    /// Its sender sent its id recently: dropped.
    Duplicate,
    /// The pipe is closed: ignored.
    Closed,
}

/// Where a send goes, as the peers table knows it.
pub(crate) enum Found<R> {
    /// The peer's route.
    Route(R),
    /// A socket address without a connection (yet).
    Missing(SocketAddr),
}

struct PeerEntry<R> {
    info: PeerInfo,
    route: R,
}

struct Sub<Q> {
    id: SubscriptionId,
    subscription: Subscription,
    queue: Q,
}

struct RelayEntry<T> {
    id: RelayId,
    /// Only messages from this peer, or every message.
    from: Option<Peer>,
    target: T,
}

impl<T> RelayEntry<T> {
    fn takes(&self, message: &PipeMessage) -> bool {
        match self.from {
            None => true,
            Some(Peer::Connection(id)) => id == message.connection,
            Some(Peer::Addr(addr)) => message.from == Some(normalize_addr(addr)),
        }
    }
}

/// A pipe's state and decisions, without I/O. See the
/// [module documentation](self).
pub(crate) struct PipeCore<H: Handles> {
    peers: HashMap<ConnectionId, PeerEntry<H::Route>>,
    by_addr: HashMap<SocketAddr, ConnectionId>,
    message_handlers: Handlers<MessageHandler>,
    up_handlers: Handlers<UpHandler>,
    end_handlers: Handlers<EndHandler>,
    subscriptions: Vec<Sub<H::Queue>>,
    relays: Vec<RelayEntry<H::Target>>,
    dedupe: Option<DedupeWindow>,
    closed: bool,
    actions: VecDeque<Action<H>>,
}

impl<H: Handles> PipeCore<H> {
    /// An open pipe with no peers, subscriptions, relays or handlers.
    pub(crate) fn new(dedupe: Option<Dedupe>) -> PipeCore<H> {
        PipeCore {
            peers: HashMap::new(),
            by_addr: HashMap::new(),
            message_handlers: Arc::default(),
            up_handlers: Arc::default(),
            end_handlers: Arc::default(),
            subscriptions: Vec::new(),
            relays: Vec::new(),
            dedupe: dedupe.map(DedupeWindow::new),
            closed: false,
            actions: VecDeque::new(),
        }
    }

    /// A connection came up: it becomes a peer (unless it is one already,
    /// made by a send) and the up handlers run for it.
    pub(crate) fn handle_connected(&mut self, peer: PeerInfo, route: H::Route) {
        self.add_peer(peer.clone(), route);
        if !self.closed && !self.up_handlers.is_empty() {
            self.actions.push_back(Action::RunUpHandlers {
                peer,
                handlers: self.up_handlers.clone(),
            });
        }
    }

    /// Data arrived on `connection`. Unless it is a duplicate (or the
    /// pipe is closed) the message goes to the relays, then to the queues
    /// whose subscription matches it, then to the message handlers.
    pub(crate) fn handle_data(&mut self, connection: ConnectionId, data: Bytes) -> Received {
        if self.closed {
            return Received::Closed;
        }
        let from = self.peers.get(&connection).and_then(|p| p.info.addr);
        if let Some(dedupe) = &mut self.dedupe {
            let sender = match from {
                Some(addr) => SenderKey::Addr(addr),
                None => SenderKey::Connection(connection),
            };
            if !dedupe.check_and_record(sender, &data) {
                return Received::Duplicate;
            }
        }
        let message = PipeMessage {
            data,
            from,
            connection,
        };
        let targets: Vec<_> = self
            .relays
            .iter()
            .filter(|r| r.takes(&message))
            .map(|r| (r.id, r.target.clone()))
            .collect();
        if !targets.is_empty() {
            self.actions.push_back(Action::Relay {
                message: message.clone(),
                targets,
            });
        }
        let queues: Vec<_> = self
            .subscriptions
            .iter()
            .filter(|s| s.subscription.matches(&message.data, message.from))
            .map(|s| s.queue.clone())
            .collect();
        if !queues.is_empty() {
            self.actions.push_back(Action::Deliver {
                message: message.clone(),
                queues,
            });
        }
        if !self.message_handlers.is_empty() {
            self.actions.push_back(Action::RunMessageHandlers {
                message,
                handlers: self.message_handlers.clone(),
            });
        }
        Received::Accepted
    }

    /// A connection ended: it is no longer a peer, its sender's dedupe
    /// window is forgotten, the relays of its messages stop, and the end
    /// handlers run for it.
    pub(crate) fn handle_disconnected(
        &mut self,
        connection: ConnectionId,
        reason: DisconnectReason,
    ) {
        let Some(peer) = self.remove_peer(connection) else {
            return;
        };
        self.relays
            .retain(|r| r.from != Some(Peer::Connection(connection)));
        if !self.end_handlers.is_empty() {
            self.actions.push_back(Action::RunEndHandlers {
                peer,
                reason,
                handlers: self.end_handlers.clone(),
            });
        }
    }

    /// The next thing to do, oldest first.
    pub(crate) fn poll_action(&mut self) -> Option<Action<H>> {
        self.actions.pop_front()
    }

    /// Adds a peer without running handlers (a connection a send made;
    /// its `Connected` event runs them). Returns whether it is new.
    pub(crate) fn add_peer(&mut self, peer: PeerInfo, route: H::Route) -> bool {
        if self.closed || self.peers.contains_key(&peer.connection) {
            return false;
        }
        if let Some(addr) = peer.addr {
            self.by_addr.insert(addr, peer.connection);
        }
        self.peers
            .insert(peer.connection, PeerEntry { info: peer, route });
        true
    }

    fn remove_peer(&mut self, id: ConnectionId) -> Option<PeerInfo> {
        let entry = self.peers.remove(&id)?;
        let sender = match entry.info.addr {
            Some(addr) => {
                if self.by_addr.get(&addr) == Some(&id) {
                    self.by_addr.remove(&addr);
                }
                SenderKey::Addr(addr)
            }
            None => SenderKey::Connection(id),
        };
        if let Some(d) = &mut self.dedupe {
            d.forget(&sender);
        }
        Some(entry.info)
    }

    /// The peer on this connection.
    pub(crate) fn peer(&self, id: ConnectionId) -> Option<&PeerInfo> {
        self.peers.get(&id).map(|p| &p.info)
    }

    /// Every peer.
    pub(crate) fn peers(&self) -> impl Iterator<Item = &PeerInfo> + '_ {
        self.peers.values().map(|p| &p.info)
    }

    /// How many peers there are.
    pub(crate) fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Where a send to `to` goes: a client's `destination` connection when
    /// `to` is `None`, a peer by connection, or a peer by (normalised)
    /// address, which may have no connection yet.
    pub(crate) fn route(
        &self,
        to: Option<Peer>,
        destination: Option<ConnectionId>,
    ) -> Result<Found<H::Route>, PipeError> {
        if self.closed {
            return Err(PipeError::Closed);
        }
        let route = |id: &ConnectionId| self.peers.get(id).map(|p| Found::Route(p.route.clone()));
        match to {
            None => {
                let id = destination.ok_or(PipeError::NoDestination)?;
                route(&id).ok_or(PipeError::Closed)
            }
            Some(Peer::Connection(id)) => {
                route(&id).ok_or(PipeError::UnknownPeer(Peer::Connection(id)))
            }
            Some(Peer::Addr(addr)) => Ok(self
                .by_addr
                .get(&normalize_addr(addr))
                .and_then(route)
                .unwrap_or(Found::Missing(addr))),
        }
    }

    /// Adds a message handler, run after those added before.
    pub(crate) fn add_message_handler(&mut self, id: HandlerId, handler: MessageHandler) {
        if !self.closed {
            Arc::make_mut(&mut self.message_handlers).push((id, handler));
        }
    }

    /// Adds an up handler, run after those added before.
    pub(crate) fn add_up_handler(&mut self, id: HandlerId, handler: UpHandler) {
        if !self.closed {
            Arc::make_mut(&mut self.up_handlers).push((id, handler));
        }
    }

    /// Adds an end handler, run after those added before.
    pub(crate) fn add_end_handler(&mut self, id: HandlerId, handler: EndHandler) {
        if !self.closed {
            Arc::make_mut(&mut self.end_handlers).push((id, handler));
        }
    }

    /// Removes a handler of any kind; whether it existed.
    pub(crate) fn remove_handler(&mut self, id: HandlerId) -> bool {
        fn remove<T: Clone>(list: &mut Handlers<T>, id: HandlerId) -> bool {
            match list.iter().position(|(i, _)| *i == id) {
                Some(at) => {
                    Arc::make_mut(list).remove(at);
                    true
                }
                None => false,
            }
        }
        remove(&mut self.message_handlers, id)
            || remove(&mut self.up_handlers, id)
            || remove(&mut self.end_handlers, id)
    }

    /// Adds a subscription whose matching messages go to `queue`. Returns
    /// false on a closed pipe, which takes none.
    pub(crate) fn subscribe(
        &mut self,
        id: SubscriptionId,
        subscription: Subscription,
        queue: H::Queue,
    ) -> bool {
        if self.closed {
            return false;
        }
        self.subscriptions.push(Sub {
            id,
            subscription,
            queue,
        });
        true
    }

    /// Removes a subscription, returning its queue.
    pub(crate) fn unsubscribe(&mut self, id: SubscriptionId) -> Option<H::Queue> {
        let at = self.subscriptions.iter().position(|s| s.id == id)?;
        Some(self.subscriptions.remove(at).queue)
    }

    /// Whether the subscription is in place.
    pub(crate) fn is_subscribed(&self, id: SubscriptionId) -> bool {
        self.subscriptions.iter().any(|s| s.id == id)
    }

    /// Relays every accepted message (`from` `None`), or those from one
    /// peer, into `target` from the next one on. A relay of one
    /// connection's messages stops when that connection ends.
    pub(crate) fn relay(&mut self, id: RelayId, from: Option<Peer>, target: H::Target) {
        if !self.closed {
            self.relays.push(RelayEntry { id, from, target });
        }
    }

    /// Stops a relay; whether it existed.
    pub(crate) fn stop_relay(&mut self, id: RelayId) -> bool {
        match self.relays.iter().position(|r| r.id == id) {
            Some(at) => {
                self.relays.remove(at);
                true
            }
            None => false,
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Ends the pipe: peers, handlers, relays and pending actions are
    /// dropped and nothing new is taken. Returns the queues, for the shell
    /// to close (what they hold stays readable).
    pub(crate) fn close(&mut self) -> Vec<H::Queue> {
        self.closed = true;
        self.peers.clear();
        self.by_addr.clear();
        self.message_handlers = Arc::default();
        self.up_handlers = Arc::default();
        self.end_handlers = Arc::default();
        self.relays.clear();
        self.actions.clear();
        self.subscriptions.iter().map(|s| s.queue.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Address, ConnectionInfo, Origin};

    /// Plain stand-ins for the shell's handles: a route is its connection's
    /// number, a relay target and a queue their names.
    struct Plain;

    impl Handles for Plain {
        type Route = u64;
        type Target = &'static str;
        type Queue = &'static str;
    }

    fn core() -> PipeCore<Plain> {
        PipeCore::new(None)
    }

    fn peer(id: u64, addr: Option<&str>) -> PeerInfo {
        PeerInfo::of(ConnectionInfo {
            id: ConnectionId(id),
            origin: Origin::Adopted,
            peer: addr.map(|a| Address::udp(a.parse().unwrap())),
            local: None,
            peer_certificates: None,
            datagram: true,
            lanes: false,
            peer_credentials: None,
        })
    }

    fn connected(core: &mut PipeCore<Plain>, id: u64, addr: Option<&str>) {
        core.handle_connected(peer(id, addr), id);
    }

    fn data(core: &mut PipeCore<Plain>, id: u64, payload: &'static str) -> Received {
        core.handle_data(ConnectionId(id), Bytes::from_static(payload.as_bytes()))
    }

    fn noop_message_handler() -> MessageHandler {
        MessageHandler::new(|_, _| async {})
    }

    /// The actions polled, named, with the payload or peer they are about.
    fn drain(core: &mut PipeCore<Plain>) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(action) = core.poll_action() {
            out.push(match action {
                Action::Relay { message, targets } => {
                    let names: Vec<_> = targets.iter().map(|(_, t)| *t).collect();
                    format!("relay {:?} to {names:?}", message.data)
                }
                Action::Deliver { message, queues } => {
                    format!("deliver {:?} to {queues:?}", message.data)
                }
                Action::RunMessageHandlers { message, handlers } => {
                    format!("{} handlers on {:?}", handlers.len(), message.data)
                }
                Action::RunUpHandlers { peer, handlers } => {
                    format!("{} up handlers for {}", handlers.len(), peer.connection)
                }
                Action::RunEndHandlers {
                    peer,
                    reason,
                    handlers,
                } => format!(
                    "{} end handlers for {} ({reason})",
                    handlers.len(),
                    peer.connection
                ),
            });
        }
        out
    }

    #[test]
    fn a_message_is_relayed_then_delivered_then_handled() {
        let mut core = core();
        connected(&mut core, 1, Some("10.0.0.1:5000"));
        core.relay(RelayId(10), None, "other pipe");
        core.subscribe(SubscriptionId(20), Subscription::all(), "all");
        core.add_message_handler(HandlerId(30), noop_message_handler());
        assert_eq!(data(&mut core, 1, "hello"), Received::Accepted);
        assert_eq!(
            drain(&mut core),
            [
                r#"relay b"hello" to ["other pipe"]"#,
                r#"deliver b"hello" to ["all"]"#,
                r#"1 handlers on b"hello""#,
            ]
        );
    }

    #[test]
    fn a_message_without_relays_queues_or_handlers_asks_for_nothing() {
        let mut core = core();
        connected(&mut core, 1, None);
        assert_eq!(data(&mut core, 1, "unheard"), Received::Accepted);
        assert!(core.poll_action().is_none());
    }

    #[test]
    fn messages_carry_their_sender_normalised() {
        let mut core = core();
        core.subscribe(SubscriptionId(1), Subscription::all(), "all");
        connected(&mut core, 7, Some("[::ffff:10.0.0.1]:5000"));
        data(&mut core, 7, "x");
        let Some(Action::Deliver { message, .. }) = core.poll_action() else {
            panic!("a delivery")
        };
        assert_eq!(message.from, Some("10.0.0.1:5000".parse().unwrap()));
        assert_eq!(message.connection, ConnectionId(7));
    }

    #[test]
    fn only_matching_subscriptions_get_a_copy() {
        let mut core = core();
        connected(&mut core, 1, Some("10.0.0.1:5000"));
        connected(&mut core, 2, Some("10.0.0.2:5000"));
        drain(&mut core);
        let pings = Subscription::matching(regex::bytes::Regex::new("^ping").unwrap());
        core.subscribe(SubscriptionId(1), pings, "pings");
        let from_two = Subscription::from_addr("10.0.0.2:0".parse().unwrap());
        core.subscribe(SubscriptionId(2), from_two, "from two");
        data(&mut core, 1, "ping");
        data(&mut core, 1, "pong");
        data(&mut core, 2, "ping");
        assert_eq!(
            drain(&mut core),
            [
                r#"deliver b"ping" to ["pings"]"#,
                r#"deliver b"ping" to ["pings", "from two"]"#,
            ]
        );
        assert_eq!(core.unsubscribe(SubscriptionId(1)), Some("pings"));
        assert_eq!(core.unsubscribe(SubscriptionId(1)), None);
        assert!(!core.is_subscribed(SubscriptionId(1)) && core.is_subscribed(SubscriptionId(2)));
        data(&mut core, 2, "ping");
        assert_eq!(drain(&mut core), [r#"deliver b"ping" to ["from two"]"#]);
    }

    #[test]
    fn duplicates_are_dropped_per_sender_until_the_sender_goes() {
        let mut core = PipeCore::<Plain>::new(Some(Dedupe::payload(4)));
        core.subscribe(SubscriptionId(1), Subscription::all(), "all");
        connected(&mut core, 1, Some("10.0.0.1:5000"));
        connected(&mut core, 2, None);
        assert_eq!(data(&mut core, 1, "a"), Received::Accepted);
        assert_eq!(data(&mut core, 1, "a"), Received::Duplicate);
        assert_eq!(
            data(&mut core, 2, "a"),
            Received::Accepted,
            "another sender"
        );
        assert_eq!(
            data(&mut core, 2, "a"),
            Received::Duplicate,
            "a Unix peer is keyed by connection"
        );
        assert_eq!(drain(&mut core).len(), 2, "duplicates ask for nothing");
        core.handle_disconnected(ConnectionId(1), DisconnectReason::PeerClosed);
        connected(&mut core, 3, Some("10.0.0.1:5000"));
        assert_eq!(
            data(&mut core, 3, "a"),
            Received::Accepted,
            "the old connection's ids are gone"
        );
    }

    #[test]
    fn connections_come_and_go_with_their_handlers() {
        let mut core = core();
        core.add_up_handler(HandlerId(1), UpHandler::new(|_, _| async {}));
        core.add_end_handler(HandlerId(2), EndHandler::new(|_, _, _| async {}));
        connected(&mut core, 5, Some("10.0.0.1:5000"));
        assert_eq!(core.peer_count(), 1);
        assert_eq!(
            core.peer(ConnectionId(5)).unwrap().addr,
            Some("10.0.0.1:5000".parse().unwrap())
        );
        core.handle_disconnected(ConnectionId(5), DisconnectReason::PeerClosed);
        core.handle_disconnected(ConnectionId(5), DisconnectReason::PeerClosed);
        assert_eq!(
            drain(&mut core),
            [
                "1 up handlers for conn#5",
                "1 end handlers for conn#5 (closed by peer)",
            ],
            "a connection ends once"
        );
        assert_eq!(core.peers().count(), 0);
        assert!(matches!(
            core.route(Some(Peer::Addr("10.0.0.1:5000".parse().unwrap())), None),
            Ok(Found::Missing(_))
        ));
    }

    #[test]
    fn a_peer_a_send_made_runs_its_up_handlers_when_it_connects() {
        let mut core = core();
        core.add_up_handler(HandlerId(1), UpHandler::new(|_, _| async {}));
        assert!(core.add_peer(peer(4, Some("10.0.0.4:1")), 4));
        assert!(!core.add_peer(peer(4, Some("10.0.0.4:1")), 4));
        assert!(core.poll_action().is_none());
        connected(&mut core, 4, Some("10.0.0.4:1"));
        assert_eq!(drain(&mut core), ["1 up handlers for conn#4"]);
        assert_eq!(core.peer_count(), 1);
    }

    #[test]
    fn sends_find_their_route() {
        let mut core = core();
        connected(&mut core, 1, Some("10.0.0.1:5000"));
        connected(&mut core, 2, None);
        let route = |core: &PipeCore<Plain>, to, dest| match core.route(to, dest) {
            Ok(Found::Route(r)) => Ok(Some(r)),
            Ok(Found::Missing(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        };
        assert_eq!(route(&core, None, Some(ConnectionId(2))), Ok(Some(2)));
        assert_eq!(
            route(&core, None, None),
            Err(PipeError::NoDestination.to_string())
        );
        assert_eq!(
            route(&core, None, Some(ConnectionId(9))),
            Err(PipeError::Closed.to_string()),
            "a client whose connection ended"
        );
        let mapped = "[::ffff:10.0.0.1]:5000".parse().unwrap();
        assert_eq!(route(&core, Some(Peer::Addr(mapped)), None), Ok(Some(1)));
        let stranger = "10.0.0.9:5000".parse().unwrap();
        assert_eq!(route(&core, Some(Peer::Addr(stranger)), None), Ok(None));
        assert_eq!(
            route(&core, Some(Peer::Connection(ConnectionId(2))), None),
            Ok(Some(2))
        );
        assert!(route(&core, Some(Peer::Connection(ConnectionId(3))), None).is_err());
    }

    #[test]
    fn relays_and_handlers_can_be_removed() {
        let mut core = core();
        connected(&mut core, 1, None);
        core.relay(RelayId(1), None, "a");
        core.relay(RelayId(2), None, "b");
        core.add_message_handler(HandlerId(3), noop_message_handler());
        core.add_message_handler(HandlerId(4), noop_message_handler());
        assert!(core.stop_relay(RelayId(1)));
        assert!(!core.stop_relay(RelayId(1)));
        assert!(core.remove_handler(HandlerId(3)));
        assert!(!core.remove_handler(HandlerId(3)));
        data(&mut core, 1, "m");
        assert_eq!(
            drain(&mut core),
            [r#"relay b"m" to ["b"]"#, r#"1 handlers on b"m""#]
        );
    }

    #[test]
    fn a_relay_from_one_peer_takes_its_messages_only_and_ends_with_it() {
        let mut core = core();
        connected(&mut core, 1, Some("10.0.0.1:5000"));
        connected(&mut core, 2, Some("10.0.0.2:5000"));
        core.relay(RelayId(1), Some(Peer::Connection(ConnectionId(1))), "one");
        let mapped = "[::ffff:10.0.0.2]:5000".parse().unwrap();
        core.relay(RelayId(2), Some(Peer::Addr(mapped)), "two");
        core.relay(RelayId(3), None, "all");
        data(&mut core, 1, "a");
        data(&mut core, 2, "b");
        assert_eq!(
            drain(&mut core),
            [
                r#"relay b"a" to ["one", "all"]"#,
                r#"relay b"b" to ["two", "all"]"#
            ]
        );
        core.handle_disconnected(ConnectionId(1), DisconnectReason::PeerClosed);
        core.handle_disconnected(ConnectionId(2), DisconnectReason::PeerClosed);
        assert!(!core.stop_relay(RelayId(1)), "gone with its connection");
        assert!(
            core.stop_relay(RelayId(2)),
            "an address outlives a connection"
        );
        connected(&mut core, 3, Some("10.0.0.1:5000"));
        data(&mut core, 3, "c");
        assert_eq!(drain(&mut core), [r#"relay b"c" to ["all"]"#]);
    }

    #[test]
    fn a_closed_core_takes_nothing_new_and_gives_back_its_queues() {
        let mut core = core();
        core.subscribe(SubscriptionId(1), Subscription::all(), "q1");
        core.add_message_handler(HandlerId(2), noop_message_handler());
        connected(&mut core, 1, None);
        data(&mut core, 1, "pending");
        assert_eq!(core.close(), ["q1"]);
        assert!(core.is_closed());
        assert!(core.poll_action().is_none(), "pending actions are dropped");
        assert!(!core.subscribe(SubscriptionId(3), Subscription::all(), "q3"));
        assert!(!core.add_peer(peer(2, None), 2));
        core.relay(RelayId(4), None, "late");
        connected(&mut core, 3, None);
        assert_eq!(data(&mut core, 3, "after"), Received::Closed);
        assert_eq!(core.peer_count(), 0);
        assert!(core.poll_action().is_none());
        assert!(matches!(
            core.route(None, Some(ConnectionId(1))),
            Err(PipeError::Closed)
        ));
        assert!(
            core.is_subscribed(SubscriptionId(1)),
            "its queue stays readable"
        );
    }
}
