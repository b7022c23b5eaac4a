//! `RendezvousCore`: the rendezvous protocol with no I/O.
//!
//! The shell feeds it what happens on its connections, each with the
//! current time, and writes out what it polls:
//!
//! ```text
//! loop {
//!     handle_connected(now, conn, observed) | handle_packet(now, conn, bytes)
//!         | handle_disconnected(now, conn) | handle_timeout(now)
//!     while let Some(t) = poll_transmit() { send t.frame to t.conn, or close it }
//!     while let Some(e) = poll_event() { report e }
//!     sleep until poll_timeout()
//! }
//! ```
//!
//! The core sends only to connections it was told about, and frames for
//! another peer (candidates, start signals, relay data) only to
//! connections that registered: no frame makes it send to an address a
//! frame names (no reflection). What it holds is bounded by its
//! [`RendezvousConfig`]: registrations, waiting connections, channels per
//! registration, reaches waiting per registration, relay bytes per
//! direction (the window), events. Transmits are produced only by an input
//! and drained by the shell after each one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weft_link::ConnectionId;
use weft_link::throttle::{Throttle, TokenBucket};
use weft_messaging::Identity;
use weft_messaging::certificate::CertificateNames;

use crate::config::RendezvousConfig;
use crate::error::RendezvousError;
use crate::event::{RendezvousEvent, RendezvousStats, Transmit};
use crate::relay::{Channel, End};
use crate::wire::{ChannelId, CloseReason, Frame, RefuseReason, UnreachableReason};

/// One connection to the rendezvous.
struct Conn {
    observed: Option<SocketAddr>,
    /// The names of its verified certificate, if it presented one.
    certificate: Option<Arc<CertificateNames>>,
    opened: Instant,
    identity: Option<Identity>,
    /// Relay channels it takes part in.
    channels: HashSet<ChannelId>,
    /// Identities it asked to reach that have not registered.
    pending: Vec<Identity>,
    /// Its candidates and start signals.
    signals: Option<TokenBucket>,
}

/// What two registrations share: their one relay channel and its limits.
struct Pair {
    channel: Option<ChannelId>,
    relayed: u64,
    bucket: TokenBucket,
    /// When the rate last stopped forwarding, so that a wait is counted
    /// once.
    waiting: bool,
}

/// The rendezvous protocol's state: registrations by identity, signals
/// between them, and relay channels. See the module docs for the loop that
/// drives it.
pub struct RendezvousCore {
    config: RendezvousConfig,
    conns: HashMap<ConnectionId, Conn>,
    /// Connections waiting to register, oldest first (may hold ones that
    /// since registered or closed; skipped lazily).
    unregistered: VecDeque<ConnectionId>,
    unregistered_count: usize,
    registry: HashMap<Identity, ConnectionId>,
    pairs: HashMap<(Identity, Identity), Pair>,
    channels: HashMap<ChannelId, Channel>,
    next_channel: ChannelId,
    transmits: VecDeque<Transmit>,
    events: VecDeque<RendezvousEvent>,
    stats: RendezvousStats,
    /// The port of the second STUN server, told in `Registered`.
    second_stun: Option<u16>,
}

fn pair_key(a: &Identity, b: &Identity) -> (Identity, Identity) {
    if a.as_str() <= b.as_str() {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    }
}

impl RendezvousCore {
    /// An empty rendezvous.
    pub fn new(config: RendezvousConfig) -> RendezvousCore {
        RendezvousCore {
            config,
            conns: HashMap::new(),
            unregistered: VecDeque::new(),
            unregistered_count: 0,
            registry: HashMap::new(),
            pairs: HashMap::new(),
            channels: HashMap::new(),
            next_channel: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: RendezvousStats::default(),
            second_stun: None,
        }
    }

    /// Names the port of a second STUN server on the IP of the
    /// rendezvous's STUN (one that has no RFC 5780 alternate address), told
    /// to each peer as it registers: a peer whose mapping differs there
    /// knows that its NAT maps each destination anew.
    pub fn set_second_stun(&mut self, port: Option<u16>) {
        self.second_stun = port;
    }

    /// The configuration.
    pub fn config(&self) -> &RendezvousConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> RendezvousStats {
        RendezvousStats {
            registrations: self.registry.len(),
            channels: self.channels.len(),
            ..self.stats
        }
    }

    /// The connection an identity is registered on.
    pub fn registration(&self, identity: &Identity) -> Option<ConnectionId> {
        self.registry.get(identity).copied()
    }

    /// A connection came up; `observed` is the address it comes from. It
    /// has [`register_timeout`](RendezvousConfig::register_timeout) to
    /// register.
    pub fn handle_connected(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        observed: Option<SocketAddr>,
    ) {
        self.handle_connected_with(now, conn, observed, None);
    }

    /// [`handle_connected`](Self::handle_connected) for a connection whose
    /// peer presented a certificate that the TLS handshake verified, with
    /// its names: what [`bind_identity`](RendezvousConfig::bind_identity)
    /// checks.
    pub fn handle_connected_with(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        observed: Option<SocketAddr>,
        certificate: Option<Arc<CertificateNames>>,
    ) {
        if self.conns.contains_key(&conn) {
            return;
        }
        if self.unregistered_count >= self.config.max_unregistered {
            self.transmits.push_back(Transmit::Close { conn });
            return;
        }
        self.conns.insert(
            conn,
            Conn {
                observed,
                certificate,
                opened: now,
                identity: None,
                channels: HashSet::new(),
                pending: Vec::new(),
                signals: None,
            },
        );
        self.unregistered.push_back(conn);
        self.unregistered_count += 1;
    }

    /// A packet arrived on `conn`. A packet that is not a frame, or a
    /// frame a peer may not send, is a protocol error: the connection gets
    /// `Refused{Protocol}` and is closed (its registration and channels
    /// end), and the error is returned for the shell to log.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        packet: &Bytes,
    ) -> Result<(), RendezvousError> {
        if !self.conns.contains_key(&conn) {
            return Ok(()); // closed by us; what was in flight is moot
        }
        let result = Frame::decode(packet)
            .map_err(RendezvousError::from)
            .and_then(|frame| self.handle_frame(now, conn, frame));
        if let Err(error) = &result {
            tracing::debug!(%conn, %error, "rendezvous protocol error");
            self.stats.protocol_errors += 1;
            self.refuse(conn, None, RefuseReason::Protocol);
        }
        result
    }

    fn handle_frame(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        frame: Frame,
    ) -> Result<(), RendezvousError> {
        let registered = self.conns.get(&conn).and_then(|c| c.identity.clone());
        let Some(me) = registered else {
            return match frame {
                Frame::Register { identity } => {
                    self.register(now, conn, identity);
                    Ok(())
                }
                _ => Err(RendezvousError::NotRegistered),
            };
        };
        match frame {
            Frame::Reach { peer } => self.reach(now, conn, &me, peer),
            Frame::Candidates { peer, addrs } => {
                let frame = Frame::Candidates {
                    peer: me.clone(),
                    addrs,
                };
                self.signal(now, conn, peer, frame);
            }
            Frame::Start {
                peer,
                attempt,
                strategy,
                delay_ms,
            } => {
                let frame = Frame::Start {
                    peer: me.clone(),
                    attempt,
                    strategy,
                    delay_ms,
                };
                self.signal(now, conn, peer, frame);
            }
            Frame::RelayData { channel, data } => self.relay_data(now, conn, channel, data)?,
            Frame::RelayWindow { channel, credit } => {
                self.relay_window(now, conn, channel, credit)?
            }
            Frame::RelayClose { channel, .. } => {
                // Both ends may close a channel at once (each of them
                // moved to a direct path): the second close finds it gone
                // and is moot, as other relay frames in flight are.
                if self.check_end(conn, channel).is_ok() {
                    self.close_channel(channel, CloseReason::Closed, Some(conn));
                }
            }
            Frame::Register { .. } => return Err(RendezvousError::AlreadyRegistered),
            other => return Err(RendezvousError::Unexpected(frame_name(&other))),
        }
        Ok(())
    }

    /// A connection ended: its registration, waiting reaches and channels
    /// end with it.
    pub fn handle_disconnected(&mut self, _now: Instant, conn: ConnectionId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        match c.identity {
            None => self.unregistered_count = self.unregistered_count.saturating_sub(1),
            Some(identity) => self.unregister(conn, identity, c.channels),
        }
    }

    /// Time passed: expires registrations that did not come, and forwards
    /// what the rate held back.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&front) = self.unregistered.front() {
            match self.conns.get(&front) {
                Some(c) if c.identity.is_none() => {
                    if now.saturating_duration_since(c.opened) < self.config.register_timeout {
                        break;
                    }
                    self.unregistered.pop_front();
                    self.stats.register_timeouts += 1;
                    self.refuse(front, None, RefuseReason::Timeout);
                }
                _ => {
                    self.unregistered.pop_front();
                }
            }
        }
        let held: Vec<ChannelId> = self
            .channels
            .iter()
            .filter(|(_, c)| c.holds_data())
            .map(|(&id, _)| id)
            .collect();
        for channel in held {
            self.forward(now, channel);
        }
    }

    /// The next frame to write, or connection to close.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<RendezvousEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due: the
    /// oldest waiting registration's deadline, or when the rate lets a
    /// held-back channel forward again.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        let register = self
            .unregistered
            .iter()
            .find_map(|id| self.conns.get(id).filter(|c| c.identity.is_none()))
            .map(|c| c.opened + self.config.register_timeout);
        let mut rate: Option<Instant> = None;
        for channel in self.channels.values() {
            if !channel.rate_bound() {
                continue;
            }
            let key = pair_key(&channel.ends[0].identity, &channel.ends[1].identity);
            if let Some(pair) = self.pairs.get_mut(&key) {
                // One byte is enough to move on; waking for a whole chunk
                // would make the rate lumpier for nothing.
                let wait = pair.bucket.wait_for(now, 1).max(Duration::from_millis(1));
                let at = now + wait;
                rate = Some(rate.map_or(at, |r| r.min(at)));
            }
        }
        match (register, rate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Ends the relay channel between two identities, if one is open
    /// (`RelayClose{Operator}` to both ends). Returns whether there was one.
    pub fn close_relay(&mut self, a: &Identity, b: &Identity) -> bool {
        let channel = self.pairs.get(&pair_key(a, b)).and_then(|p| p.channel);
        match channel {
            Some(channel) => {
                self.close_channel(channel, CloseReason::Operator, None);
                true
            }
            None => false,
        }
    }

    fn send(&mut self, conn: ConnectionId, frame: Frame) {
        self.transmits.push_back(Transmit::Frame { conn, frame });
    }

    fn event(&mut self, event: RendezvousEvent) {
        if self.events.len() >= self.config.max_events.max(1) {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    /// Sends `Refused{reason}` and closes `conn`, ending what it holds.
    fn refuse(&mut self, conn: ConnectionId, identity: Option<Identity>, reason: RefuseReason) {
        self.send(conn, Frame::Refused { reason });
        self.transmits.push_back(Transmit::Close { conn });
        self.event(RendezvousEvent::Refused {
            identity,
            conn,
            reason,
        });
        // Forget it now: nothing it sends from here on is acted on.
        if let Some(c) = self.conns.remove(&conn) {
            match c.identity {
                None => self.unregistered_count = self.unregistered_count.saturating_sub(1),
                Some(identity) => self.unregister(conn, identity, c.channels),
            }
        }
    }

    fn register(&mut self, now: Instant, conn: ConnectionId, identity: Identity) {
        // Before anything else: a connection whose certificate does not
        // name the identity neither registers nor displaces its holder.
        if self.config.bind_identity {
            let binds = self
                .conns
                .get(&conn)
                .and_then(|c| c.certificate.as_ref())
                .is_some_and(|names| names.binds(identity.as_str()));
            if !binds {
                self.stats.refused_unbound += 1;
                return self.refuse(conn, Some(identity), RefuseReason::Unbound);
            }
        }
        if let Some(&old) = self.registry.get(&identity) {
            if !self.config.replace_registration {
                self.stats.refused_duplicate += 1;
                return self.refuse(conn, Some(identity), RefuseReason::Duplicate);
            }
            self.stats.replaced += 1;
            self.refuse(old, Some(identity.clone()), RefuseReason::Replaced);
        } else if self.registry.len() >= self.config.max_registrations {
            self.stats.refused_full += 1;
            return self.refuse(conn, Some(identity), RefuseReason::Full);
        }
        let rate = u64::from(self.config.signals_per_second.max(1));
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.identity = Some(identity.clone());
        c.signals = Some(TokenBucket::new(
            Throttle {
                bytes_per_second: rate,
                burst: rate,
            },
            now,
        ));
        let observed = c.observed;
        self.unregistered_count = self.unregistered_count.saturating_sub(1);
        self.registry.insert(identity.clone(), conn);
        self.stats.registered += 1;
        let second_stun = self.second_stun;
        self.send(
            conn,
            Frame::Registered {
                observed,
                second_stun,
            },
        );
        self.event(RendezvousEvent::Registered {
            identity: identity.clone(),
            conn,
            observed,
        });
        // Reaches that waited for this identity.
        let waiting: Vec<(ConnectionId, Identity)> = self
            .conns
            .iter_mut()
            .filter_map(|(&id, c)| {
                let at = c.pending.iter().position(|p| *p == identity)?;
                c.pending.swap_remove(at);
                Some((id, c.identity.clone()?))
            })
            .collect();
        for (from_conn, from) in waiting {
            self.reach(now, from_conn, &from, identity.clone());
        }
    }

    fn unregister(&mut self, conn: ConnectionId, identity: Identity, channels: HashSet<ChannelId>) {
        for channel in channels {
            self.close_channel(channel, CloseReason::PeerGone, Some(conn));
        }
        if self.registry.get(&identity) == Some(&conn) {
            self.registry.remove(&identity);
            self.pairs
                .retain(|(a, b), _| *a != identity && *b != identity);
        }
        self.event(RendezvousEvent::Unregistered { identity, conn });
    }

    fn unreachable(&mut self, conn: ConnectionId, peer: Identity, reason: UnreachableReason) {
        self.send(conn, Frame::Unreachable { peer, reason });
    }

    fn reach(&mut self, now: Instant, conn: ConnectionId, me: &Identity, peer: Identity) {
        if peer == *me {
            return self.unreachable(conn, peer, UnreachableReason::SelfReach);
        }
        let Some(&other) = self.registry.get(&peer) else {
            let max = self.config.max_pending_reaches;
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.pending.contains(&peer) {
                return;
            }
            if c.pending.len() >= max {
                return self.unreachable(conn, peer, UnreachableReason::TooManyPending);
            }
            c.pending.push(peer);
            return;
        };
        let key = pair_key(me, &peer);
        let rate = Throttle::per_second(self.config.relay_rate);
        let pair = self.pairs.entry(key).or_insert_with(|| Pair {
            channel: None,
            relayed: 0,
            bucket: TokenBucket::new(rate, now),
            waiting: false,
        });
        if pair.channel.is_some() {
            // Both ends were told when it opened.
            return;
        }
        if pair.relayed >= self.config.relay_total {
            return self.unreachable(conn, peer, UnreachableReason::CapReached);
        }
        let full =
            |c: Option<&Conn>| c.is_none_or(|c| c.channels.len() >= self.config.max_channels);
        if full(self.conns.get(&conn)) || full(self.conns.get(&other)) {
            return self.unreachable(conn, peer, UnreachableReason::TooManyChannels);
        }
        let mut id = self.next_channel;
        while id == 0 || self.channels.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next_channel = id.wrapping_add(1);
        pair.channel = Some(id);
        let window = self.config.relay_window;
        self.channels.insert(
            id,
            Channel {
                ends: [
                    End::new(conn, me.clone(), window),
                    End::new(other, peer.clone(), window),
                ],
                relayed: 0,
            },
        );
        for c in [conn, other] {
            if let Some(c) = self.conns.get_mut(&c) {
                c.channels.insert(id);
            }
        }
        self.stats.channels_opened += 1;
        self.send(
            conn,
            Frame::RelayOpen {
                channel: id,
                peer: peer.clone(),
                window,
            },
        );
        self.send(
            other,
            Frame::RelayOpen {
                channel: id,
                peer: me.clone(),
                window,
            },
        );
        self.event(RendezvousEvent::RelayStarted {
            channel: id,
            from: me.clone(),
            to: peer,
        });
    }

    /// Passes a candidates or start frame (already rewritten to name the
    /// sender) to `peer`'s registered connection, within the sender's
    /// signal rate.
    fn signal(&mut self, now: Instant, conn: ConnectionId, peer: Identity, frame: Frame) {
        let allowed = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.signals.as_mut())
            .is_some_and(|b| {
                let ok = b.available(now) >= 1;
                if ok {
                    b.consume(1);
                }
                ok
            });
        let target = self.registry.get(&peer).copied();
        match (allowed, target) {
            (false, _) => {
                self.stats.signals_refused += 1;
                self.unreachable(conn, peer, UnreachableReason::RateLimited);
            }
            (true, None) => {
                self.stats.signals_refused += 1;
                self.unreachable(conn, peer, UnreachableReason::NotRegistered);
            }
            (true, Some(target)) if target == conn => {
                self.stats.signals_refused += 1;
                self.unreachable(conn, peer, UnreachableReason::SelfReach);
            }
            (true, Some(target)) => {
                self.stats.signals += 1;
                self.send(target, frame);
            }
        }
    }

    /// Which end of `channel` `conn` is; an error when it is none.
    fn check_end(&self, conn: ConnectionId, channel: ChannelId) -> Result<usize, RendezvousError> {
        self.channels
            .get(&channel)
            .and_then(|c| c.side_of(conn))
            .ok_or(RendezvousError::UnknownChannel(channel))
    }

    fn relay_data(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        channel: ChannelId,
        data: Bytes,
    ) -> Result<(), RendezvousError> {
        let side = match self.check_end(conn, channel) {
            Ok(side) => side,
            // Data in flight when we closed the channel is moot; data for
            // a channel that never was is an error, but the two cannot be
            // told apart cheaply, so both are dropped.
            Err(_) => return Ok(()),
        };
        let c = self.channels.get_mut(&channel).expect("checked");
        let end = &mut c.ends[side];
        let len = data.len() as u64;
        if len > end.allowance {
            self.stats.flow_violations += 1;
            self.close_channel(channel, CloseReason::FlowViolation, None);
            return Ok(());
        }
        end.allowance -= len;
        end.held_bytes += len;
        end.held.push_back(data);
        self.forward(now, channel);
        Ok(())
    }

    fn relay_window(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        channel: ChannelId,
        credit: u32,
    ) -> Result<(), RendezvousError> {
        let Ok(side) = self.check_end(conn, channel) else {
            return Ok(()); // in flight when the channel closed
        };
        let window = u64::from(self.config.relay_window);
        let c = self.channels.get_mut(&channel).expect("checked");
        let end = &mut c.ends[side];
        // A side may grant at most its window outstanding: more would let
        // the rendezvous hold more than it promised.
        end.credit = (end.credit + u64::from(credit)).min(window);
        self.forward(now, channel);
        Ok(())
    }

    /// Moves held bytes across the channel as far as credit, rate and the
    /// pair's cap allow, granting the senders back what left.
    fn forward(&mut self, now: Instant, channel: ChannelId) {
        let Some(c) = self.channels.get_mut(&channel) else {
            return;
        };
        let key = pair_key(&c.ends[0].identity, &c.ends[1].identity);
        let Some(pair) = self.pairs.get_mut(&key) else {
            return;
        };
        let window = u64::from(self.config.relay_window);
        let chunk = self.config.relay_chunk.max(1) as u64;
        let total = self.config.relay_total;
        let mut out = Vec::new();
        let mut capped = false;
        let mut rate_stopped = false;
        'sides: for from in 0..2 {
            let to = 1 - from;
            while c.ends[from].held_bytes > 0 && c.ends[to].credit > 0 {
                let left = total.saturating_sub(pair.relayed);
                if left == 0 {
                    capped = true;
                    break 'sides;
                }
                let tokens = pair.bucket.available(now) as u64;
                if tokens == 0 {
                    rate_stopped = true;
                    break;
                }
                let Some(front) = c.ends[from].held.front_mut() else {
                    break;
                };
                let n = (front.len() as u64)
                    .min(tokens)
                    .min(c.ends[to].credit)
                    .min(left)
                    .min(chunk);
                let data = if n as usize == front.len() {
                    c.ends[from].held.pop_front().expect("front exists")
                } else {
                    front.split_to(n as usize)
                };
                pair.bucket.consume(n as usize);
                pair.relayed += n;
                c.relayed += n;
                c.ends[to].credit -= n;
                c.ends[from].held_bytes -= n;
                c.ends[from].owed += n;
                self.stats.relayed_bytes += n;
                out.push((c.ends[to].conn, Frame::RelayData { channel, data }));
            }
            // Grant back in batches of a quarter window, or all of it once
            // nothing is held, so the sender is never left waiting on a
            // small remainder.
            let end = &mut c.ends[from];
            if end.owed > 0 && (end.owed >= window / 4 || end.held_bytes == 0) {
                let credit = end.owed.min(u64::from(u32::MAX)) as u32;
                end.allowance += end.owed;
                end.owed = 0;
                out.push((end.conn, Frame::RelayWindow { channel, credit }));
            }
        }
        if pair.relayed >= total {
            capped = true;
        }
        if rate_stopped && !pair.waiting {
            self.stats.rate_waits += 1;
        }
        pair.waiting = rate_stopped;
        for (conn, frame) in out {
            self.send(conn, frame);
        }
        if capped {
            self.stats.channels_capped += 1;
            self.close_channel(channel, CloseReason::CapReached, None);
        }
    }

    /// Ends a channel: `RelayClose{reason}` to each end but `except` (the
    /// end that closed it or is gone).
    fn close_channel(
        &mut self,
        channel: ChannelId,
        reason: CloseReason,
        except: Option<ConnectionId>,
    ) {
        let Some(c) = self.channels.remove(&channel) else {
            return;
        };
        let key = pair_key(&c.ends[0].identity, &c.ends[1].identity);
        if let Some(pair) = self.pairs.get_mut(&key) {
            pair.channel = None;
            pair.waiting = false;
        }
        for end in &c.ends {
            if let Some(conn) = self.conns.get_mut(&end.conn) {
                conn.channels.remove(&channel);
            }
            if Some(end.conn) != except && self.conns.contains_key(&end.conn) {
                self.send(end.conn, Frame::RelayClose { channel, reason });
            }
        }
        let [a, b] = c.ends;
        self.event(RendezvousEvent::RelayEnded {
            channel,
            between: (a.identity, b.identity),
            reason,
            bytes: c.relayed,
        });
    }
}

fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Register { .. } => "Register",
        Frame::Registered { .. } => "Registered",
        Frame::Refused { .. } => "Refused",
        Frame::Reach { .. } => "Reach",
        Frame::Unreachable { .. } => "Unreachable",
        Frame::Candidates { .. } => "Candidates",
        Frame::Start { .. } => "Start",
        Frame::RelayOpen { .. } => "RelayOpen",
        Frame::RelayData { .. } => "RelayData",
        Frame::RelayWindow { .. } => "RelayWindow",
        Frame::RelayClose { .. } => "RelayClose",
    }
}

#[cfg(test)]
mod tests;
