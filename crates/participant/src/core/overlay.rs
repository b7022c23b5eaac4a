//! The bounded-degree overlay: which streams a participant keeps once its
//! group is larger than the full mesh's size.
//!
//! Up to [`group_size`](crate::ParticipantConfig::group_size) participants
//! (ourselves included, as discovery knows them) every pair has its
//! stream, the lower id dialling, exactly as before. Past it each
//! participant keeps at most [`max_streams`](crate::ParticipantConfig::max_streams)
//! streams, and interest and publications are routed through the others
//! (see `interest.rs`), which needs nothing more from the graph than to
//! be connected and short.
//!
//! The rules are HyParView's, cut down to what weft's discovery leaves to
//! do:
//!
//! - The active view is our neighbours (streams up) and the streams we
//!   are dialling; the passive view is every other participant discovery
//!   knows (bounded by discovery's `max_participants`). HyParView needs
//!   JOIN, FORWARDJOIN and SHUFFLE random walks to fill the passive view
//!   because its nodes know only a contact; here beacons already tell
//!   every participant of a network about every other, so the passive
//!   view is full from the start and a uniform random choice from it
//!   replaces the walks.
//! - Each participant dials random participants of its passive view
//!   until it has `max_streams / 2` streams (dialled or accepted), and
//!   accepts streams until it has `max_streams`. Since everyone dials up
//!   to half the limit and accepts up to all of it, there is room for
//!   every dial on average, and each participant holds at least half the
//!   limit unless nobody accepts it: a random graph of minimum degree 8
//!   (by default) is connected and its diameter is a few hops, well
//!   within `max_hops`.
//! - A stream past the limit is never taken as a neighbour: the side
//!   that dialled it closes it, the side that accepted it sends `Leave`
//!   (HyParView's DISCONNECT, a refused NEIGHBOR), and the dialler closes
//!   it, remembers not to dial that participant again while it has others
//!   to try, and dials another (HyParView's replacement from the passive
//!   view). Dials beyond what we want (streams that arrived from others
//!   meanwhile) are withdrawn.
//! - A neighbour that discovery reports gone is replaced the same way.
//! - Bounds on streams that never settle: a dial whose stream is not up
//!   within `dial_timeout` is given up and someone else dialled (the
//!   participant may be unreachable, and would hold a slot forever); a
//!   stream asked to leave that is still up after `dial_timeout` (its
//!   dialler ignores `Leave`, or predates it) is closed by us; and a
//!   stream we dialled that ends before the other side's Hello counts as
//!   a `Leave`.
//!
//! Either side of a pair may dial in the overlay, so two participants
//! could dial each other at the same moment; a participant dials no one
//! it already has a stream with, and messaging keeps one stream per
//! identity (`DuplicateIdentity::ReplaceOld`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use weft_discovery::ParticipantId;
use weft_messaging::Identity;

use super::{Dial, ParticipantCore};
use crate::control::Control;

/// The overlay's settings and what it remembers.
pub(crate) struct Overlay {
    /// Up to how many participants (ourselves included) the mesh is full.
    group_size: usize,
    /// At most how many neighbours past that size.
    max_streams: usize,
    /// The participants we dial (those whose `Known::dialled` is set),
    /// kept apart so that the overlay's choices do not scan everyone
    /// known.
    pub(super) dialled: BTreeSet<ParticipantId>,
    /// Streams we asked to leave that are still up: not neighbours, and
    /// what they send is dropped; since when (`None` until the next tick).
    pub(super) leaving: BTreeMap<Identity, Option<Instant>>,
    /// Dials past the full mesh's size whose stream is not up yet, since
    /// when (`None` until the next tick).
    pending: BTreeMap<ParticipantId, Option<Instant>>,
    /// How long a dial may wait for its stream, and a stream asked to
    /// leave for its dialler to close it.
    dial_timeout: Duration,
    /// Streams whose other side's Hello arrived: a stream we dialled that
    /// ends without one was closed by a participant with no room for it.
    pub(super) greeted: BTreeSet<Identity>,
    /// Participants that asked us to leave: not dialled again while there
    /// is anyone else to dial.
    shunned: BTreeSet<ParticipantId>,
    /// Whether the group was past its full-mesh size when last looked at.
    sparse: bool,
    /// The state of the random choices (SplitMix64).
    rng: u64,
}

impl Overlay {
    /// An overlay keeping a full mesh up to `group_size` participants and
    /// at most `max_streams` streams past it; `seed` seeds its choices.
    pub(crate) fn new(group_size: usize, max_streams: usize, seed: u64) -> Overlay {
        Overlay {
            group_size,
            max_streams: max_streams.max(1),
            dialled: BTreeSet::new(),
            leaving: BTreeMap::new(),
            greeted: BTreeSet::new(),
            pending: BTreeMap::new(),
            dial_timeout: crate::config::DIAL_TIMEOUT,
            shunned: BTreeSet::new(),
            sparse: false,
            rng: seed,
        }
    }

    /// Keeps a full mesh up to `group_size` participants and at most
    /// `max_streams` (at least 1) streams past it.
    pub(super) fn set_limits(&mut self, group_size: usize, max_streams: usize) {
        self.group_size = group_size;
        self.max_streams = max_streams.max(1);
    }

    /// Gives up a dial whose stream is not up within `timeout`, and
    /// closes a stream asked to leave still up after it.
    pub(super) fn set_dial_timeout(&mut self, timeout: Duration) {
        self.dial_timeout = timeout;
    }

    /// Mixes `seed` into the random choices, so that participants
    /// started alike choose differently.
    pub(super) fn reseed(&mut self, seed: u64) {
        self.rng ^= seed;
    }

    #[cfg(test)]
    /// At most how many neighbours past the full mesh's size.
    pub(crate) fn max_streams(&self) -> usize {
        self.max_streams
    }

    /// How many streams we dial up to: half the limit, at least 1.
    fn want(&self) -> usize {
        (self.max_streams / 2).max(1)
    }

    #[cfg(test)]
    /// How many participants it holds anything about (streams asked to
    /// leave, participants dialled and shunned): each is bounded by the
    /// participants known.
    pub(crate) fn len(&self) -> usize {
        self.dialled.len()
            + self.leaving.len()
            + self.shunned.len()
            + self.pending.len()
            + self.greeted.len()
    }

    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        usize::try_from(z % n as u64).unwrap_or(0)
    }
}

impl ParticipantCore {
    /// Whether the group (the participants known and ourselves) is larger
    /// than the full mesh's size.
    pub(super) fn sparse(&self) -> bool {
        self.known.len() + 1 > self.overlay.group_size
    }

    /// Whether a new stream may be taken as a neighbour.
    pub(super) fn may_admit(&self) -> bool {
        !self.sparse() || self.connected.len() < self.overlay.max_streams
    }

    /// A stream we will not keep: closed if we dialled it, else its
    /// dialler is asked to leave. It is not (or no longer) a neighbour.
    pub(super) fn turn_away(&mut self, ident: Identity) {
        let ours: Vec<ParticipantId> = self.dialled_ids(&ident);
        if ours.is_empty() {
            // Asked, not closed at once: a dialler whose stream came and
            // went before it looked would not know to dial someone else,
            // and would wait out its dial timeout.
            self.control_to(ident.clone(), &Control::Leave);
            self.overlay.leaving.insert(ident, None);
        } else {
            for id in ours {
                self.close(id);
            }
        }
    }

    /// `from` asked us to leave: the stream we dialled to it is closed and
    /// someone else dialled.
    pub(super) fn handle_leave(&mut self, from: &Identity) {
        for id in self.dialled_ids(from) {
            self.close(id);
            self.overlay.shunned.insert(id);
        }
        self.rebalance();
    }

    /// A participant discovery reports gone: forgotten by the overlay.
    pub(super) fn overlay_forget(&mut self, id: ParticipantId) {
        self.overlay.dialled.remove(&id);
        self.overlay.shunned.remove(&id);
        self.overlay.pending.remove(&id);
    }

    /// The time is `now`: dials that waited `dial_timeout` for their
    /// stream are given up (and someone else dialled), streams asked to
    /// leave that long ago and still up are closed.
    pub(super) fn overlay_tick(&mut self, now: Instant) {
        let timeout = self.overlay.dial_timeout;
        let expired = |since: &mut Option<Instant>| {
            now.saturating_duration_since(*since.get_or_insert(now)) >= timeout
        };
        if !self.sparse() {
            // In the full mesh every dial is wanted, however long it takes.
            self.overlay.pending.clear();
        }
        let pending: Vec<ParticipantId> = self.overlay.pending.keys().copied().collect();
        let mut given_up = false;
        for id in pending {
            if !self.overlay.dialled.contains(&id) || self.is_neighbour(id) {
                self.overlay.pending.remove(&id);
            } else if self.overlay.pending.get_mut(&id).is_some_and(expired) {
                tracing::debug!(peer = %id, "dial given up: no stream in time");
                self.overlay.pending.remove(&id);
                self.close(id);
                self.overlay.shunned.insert(id);
                given_up = true;
            }
        }
        let mut late = Vec::new();
        for (ident, since) in &mut self.overlay.leaving {
            if expired(since) {
                late.push(ident.clone());
                // Closed again only if it lasts another timeout.
                *since = Some(now);
            }
        }
        for ident in late {
            tracing::debug!(peer = %ident, "stream asked to leave closed");
            self.dials.push_back(Dial::Refuse(ident));
        }
        if given_up {
            self.rebalance();
        }
    }

    /// When [`overlay_tick`](Self::overlay_tick) is next due: `now` when
    /// something waits without a start yet.
    pub(super) fn overlay_poll_timeout(&self, now: Option<Instant>) -> Option<Instant> {
        let starts = self
            .overlay
            .pending
            .values()
            .chain(self.overlay.leaving.values());
        let mut next: Option<Instant> = None;
        for since in starts {
            let due = match since {
                Some(t) => *t + self.overlay.dial_timeout,
                None => now?,
            };
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        next
    }

    /// A stream that ended is no longer one we asked to leave.
    /// A stream we dialled that ended before the other side said Hello
    /// was closed by a participant with no room for it (it closes one past
    /// its limit at once when many wait to leave): as after `Leave`, we
    /// stop dialling it and dial someone else.
    pub(super) fn overlay_stream_gone(&mut self, ident: &Identity) {
        self.overlay.leaving.remove(ident);
        let greeted = self.overlay.greeted.remove(ident);
        if self.sparse() && !greeted {
            for id in self.dialled_ids(ident) {
                self.close(id);
                self.overlay.shunned.insert(id);
            }
        }
    }

    /// Brings the streams we keep in line with the group's size: the full
    /// mesh's dials when the group is small, else at most `max_streams`
    /// neighbours and dials up to half that. Cheap when nothing is to
    /// change: it looks at the participants we dial, not at everyone.
    pub(super) fn rebalance(&mut self) {
        if !self.sparse() {
            if self.overlay.sparse {
                self.overlay.sparse = false;
                self.overlay.shunned.clear();
                // Back to the full mesh: of each pair the lower id dials.
                let mut ids: Vec<ParticipantId> = self.known.keys().copied().collect();
                ids.sort_unstable();
                for id in ids {
                    if id < self.id {
                        if self.overlay.dialled.contains(&id) {
                            self.close(id);
                        }
                    } else {
                        self.dial(id, false);
                    }
                }
            }
            return;
        }
        self.overlay.sparse = true;
        let max = self.overlay.max_streams;
        let mut shed = false;
        // More neighbours than the limit only right after the group grew
        // past the full mesh's size.
        while self.connected.len() > max {
            let all: Vec<Identity> = self.connected.iter().cloned().collect();
            let pick = all[self.overlay.below(all.len())].clone();
            self.neighbour_gone(&pick);
            self.turn_away(pick);
            shed = true;
        }
        let mut pending: Vec<ParticipantId> = self
            .overlay
            .dialled
            .iter()
            .filter(|id| !self.is_neighbour(**id))
            .copied()
            .collect();
        let want = self.overlay.want();
        let mut have = self.connected.len() + pending.len();
        while have > want && !pending.is_empty() {
            let id = pending.swap_remove(self.overlay.below(pending.len()));
            self.close(id);
            have -= 1;
        }
        // Dials made while the mesh was full wait within the bound too.
        for id in pending {
            self.overlay.pending.entry(id).or_insert(None);
        }
        if have < want {
            let mut candidates = self.candidates();
            if candidates.is_empty() && !self.overlay.shunned.is_empty() {
                self.overlay.shunned.clear();
                candidates = self.candidates();
            }
            while have < want && !candidates.is_empty() {
                let id = candidates.swap_remove(self.overlay.below(candidates.len()));
                self.overlay.dialled.insert(id);
                self.overlay.pending.insert(id, None);
                self.dial(id, false);
                have += 1;
            }
        }
        if shed {
            self.advertise();
        }
    }

    /// The participants we could dial: known, not dialled, not shunned,
    /// with no stream to us; in id order, so that the random choice among
    /// them follows the seed alone, not the order of a map.
    fn candidates(&self) -> Vec<ParticipantId> {
        let mut candidates: Vec<ParticipantId> = self
            .known
            .iter()
            .filter(|(id, _)| {
                !self.overlay.dialled.contains(id) && !self.overlay.shunned.contains(id)
            })
            .filter(|(_, k)| !self.streams.iter().any(|s| s.as_str() == k.peer.identity))
            .map(|(id, _)| *id)
            .collect();
        candidates.sort_unstable();
        candidates
    }

    /// Whether the participant `id` is a neighbour.
    fn is_neighbour(&self, id: ParticipantId) -> bool {
        self.known
            .get(&id)
            .is_some_and(|k| self.connected.iter().any(|c| c.as_str() == k.peer.identity))
    }

    /// The participants we dial whose identity is `ident`.
    fn dialled_ids(&self, ident: &Identity) -> Vec<ParticipantId> {
        self.overlay
            .dialled
            .iter()
            .filter(|id| {
                self.known
                    .get(id)
                    .is_some_and(|k| k.peer.identity == ident.as_str())
            })
            .copied()
            .collect()
    }

    /// Stops dialling `id` and closes its stream.
    fn close(&mut self, id: ParticipantId) {
        self.overlay.dialled.remove(&id);
        if let Some(known) = self.known.get_mut(&id) {
            known.dialled = None;
            known.redial = false;
        }
        self.dials.push_back(Dial::Close(id));
    }
}
