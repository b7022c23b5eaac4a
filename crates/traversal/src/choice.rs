//! `PathChoice`: the one decision between a peer's direct paths, whichever
//! transport, free of I/O.
//!
//! Two races look for a direct path to a peer at the same time: the TCP
//! race ([`PathRace`]) keeps a stream, UDP hole punching
//! ([`PunchSchedule`]) opens a socket pair for QUIC. Each has its
//! tie-break at the end with the smaller identity (the preamble's keep
//! byte, the `chosen` punch packet), but a tie-break of its own: alone,
//! the deciding end could keep a TCP stream and name a punched pair in
//! the same moment (the TCP race stops only once messaging has
//! identified its stream), and late candidates could begin punching
//! again after a TCP path had won. Both ends then had two direct
//! connections, and each end's messaging kept whichever identified first
//! there, which need not be the same one at both ends.
//!
//! So the deciding end makes one choice per round for both races: the
//! first direct path either of them offers is adopted, and the other
//! race's is refused (its stream gets the verdict "close", its pair is
//! never named, its schedule stops). The other end adopts only what the
//! deciding end names, and records it. While a round has a choice,
//! neither end begins punching toward the peer again. A round begins
//! when a relay path to the peer opens: the first time, and again after a
//! direct path died and the relay came back.
//!
//! The shells call through here at each point where a race would adopt a
//! path: [`keep_stream`](PathChoice::keep_stream) for a TCP stream past
//! its preamble at the deciding end, [`handle_punch`](PathChoice::handle_punch)
//! for a punch packet, [`may_punch`](PathChoice::may_punch) before a
//! schedule begins, and [`handle_told`](PathChoice::handle_told) when the
//! other end adopts what it was told.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use weft_messaging::Identity;

use crate::path::Transport;
use crate::punch::{PunchKind, PunchSchedule};
use crate::race::PathRace;

/// A peer's round: what was chosen since its relay opened.
#[derive(Clone, Copy, Debug)]
struct Round {
    chosen: Option<Transport>,
    began: Instant,
}

/// The direct path chosen per peer: see the module's docs.
#[derive(Debug)]
pub(crate) struct PathChoice {
    me: Identity,
    /// Rounds remembered at once; beyond it a new one evicts the oldest.
    max: usize,
    rounds: HashMap<Identity, Round>,
}

impl PathChoice {
    /// Choices for `me`, remembering at most `max` peers' rounds.
    pub(crate) fn new(me: Identity, max: usize) -> PathChoice {
        PathChoice {
            me,
            max: max.max(1),
            rounds: HashMap::new(),
        }
    }

    /// Whose choices these are.
    pub(crate) fn me(&self) -> &Identity {
        &self.me
    }

    /// Whether we choose for both ends (the smaller identity does).
    pub(crate) fn decides(&self, peer: &Identity) -> bool {
        self.me.as_str() < peer.as_str()
    }

    fn round(&mut self, peer: &Identity, now: Instant) -> &mut Round {
        if !self.rounds.contains_key(peer) && self.rounds.len() >= self.max {
            let oldest = self
                .rounds
                .iter()
                .min_by_key(|(_, r)| r.began)
                .map(|(p, _)| p.clone());
            if let Some(oldest) = oldest {
                self.rounds.remove(&oldest);
            }
        }
        self.rounds.entry(peer.clone()).or_insert(Round {
            chosen: None,
            began: now,
        })
    }

    /// A relay path to `peer` opened: a new round, nothing chosen yet.
    pub(crate) fn handle_relay(&mut self, peer: &Identity, now: Instant) {
        let round = self.round(peer, now);
        *round = Round {
            chosen: None,
            began: now,
        };
    }

    /// The deciding end: whether a direct path over `transport` to `peer`
    /// is adopted. The first of a round is, and no later one of either
    /// transport. Never at the other end, which adopts what it is told.
    pub(crate) fn choose(&mut self, peer: &Identity, transport: Transport, now: Instant) -> bool {
        if !self.decides(peer) {
            return false;
        }
        let round = self.round(peer, now);
        if round.chosen.is_some() {
            return false;
        }
        round.chosen = Some(transport);
        true
    }

    /// The other end: the deciding end named a path over `transport`
    /// (the keep byte on a TCP stream, `chosen` on a punched pair).
    pub(crate) fn handle_told(&mut self, peer: &Identity, transport: Transport, now: Instant) {
        self.round(peer, now).chosen = Some(transport);
    }

    /// The path chosen in `peer`'s round, if any.
    pub(crate) fn chosen(&self, peer: &Identity) -> Option<Transport> {
        self.rounds.get(peer).and_then(|r| r.chosen)
    }

    /// Whether a punching schedule toward `peer` may begin: not once a
    /// path was chosen in its round.
    pub(crate) fn may_punch(&self, peer: &Identity) -> bool {
        self.chosen(peer).is_none()
    }

    /// The deciding end's verdict on a TCP stream to `peer` past its
    /// preamble: kept when it is the first of the TCP race
    /// ([`PathRace::handle_keep`]) and no other direct path was chosen.
    pub(crate) fn keep_stream(
        &mut self,
        race: &mut PathRace,
        peer: &Identity,
        now: Instant,
    ) -> bool {
        race.handle_keep(peer) && self.choose(peer, Transport::Tcp, now)
    }

    /// A punch packet from `peer` for its schedule. At the deciding end a
    /// punch or answer would open the path and name the pair: only when
    /// no other direct path was chosen; else the schedule stops.
    pub(crate) fn handle_punch(
        &mut self,
        schedule: &mut PunchSchedule,
        peer: &Identity,
        socket: usize,
        from: SocketAddr,
        kind: PunchKind,
        now: Instant,
    ) {
        let opens = self.decides(peer) && kind != PunchKind::Chosen && !schedule.is_done();
        if opens && !self.choose(peer, Transport::Quic, now) {
            schedule.handle_stop();
        }
        schedule.handle_punch(socket, from, kind, now);
    }
}

#[cfg(test)]
mod tests;
