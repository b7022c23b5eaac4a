//! Which streams a participant opens: of each pair the lower id dials,
//! and a live stream is never replaced on a beacon alone.

use weft_discovery::{ParticipantId, RemoteParticipant};

use super::{Dial, Known, ParticipantCore};

impl ParticipantCore {
    /// Records what discovery says of a participant and opens the stream
    /// to it if we are the one to. A restart, or a change that drops the
    /// address the stream goes to, reopens it; but while that stream is up
    /// it is kept, and reopened only once it ends: a beacon alone (which
    /// anyone on the network can send) never replaces a live stream.
    pub(super) fn know(&mut self, peer: RemoteParticipant, restart: bool) {
        let id = peer.id;
        let known = self.known.entry(id).or_insert(Known {
            peer: peer.clone(),
            dialled: None,
            redial: false,
        });
        // Whether the participant as we knew it has a stream up.
        let live = self
            .connected
            .iter()
            .any(|i| i.as_str() == known.peer.identity);
        known.peer = peer;
        if self
            .connected
            .iter()
            .any(|i| i.as_str() == known.peer.identity)
        {
            self.protects.push_back(id);
        }
        let addresses = &known.peer.addresses;
        let moved = restart || known.dialled.is_some_and(|at| !addresses.contains(&at));
        if known.dialled.is_some() && !moved {
            return;
        }
        if live && known.dialled.is_some() {
            known.redial = true;
            return;
        }
        self.dial(id, moved);
    }

    /// Opens the stream to a participant if we are the one to: of each
    /// pair, the participant with the lower id connects, so each pair has
    /// exactly one stream. `again` reopens one we opened before.
    /// Past the full mesh's size the overlay chooses whom we dial instead
    /// (see `overlay.rs`), and this only opens again what it chose.
    pub(super) fn dial(&mut self, id: ParticipantId, again: bool) {
        let ours = if self.sparse() {
            self.overlay.dialled.contains(&id)
        } else {
            self.id < id
        };
        if !ours {
            return;
        }
        let Some(known) = self.known.get_mut(&id) else {
            return;
        };
        known.redial = false;
        if known.dialled.is_some() && !again {
            return;
        }
        let addresses = &known.peer.addresses;
        let at = addresses
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addresses.first())
            .copied();
        match at {
            Some(at) => {
                known.dialled = Some(at);
                self.overlay.dialled.insert(id);
                self.dials.push_back(Dial::Open { peer: id, at });
            }
            None => {
                self.overlay.dialled.remove(&id);
                if known.dialled.take().is_some() {
                    self.dials.push_back(Dial::Close(id));
                }
            }
        }
    }
}
