//! What the participant's core asks of its shell: streams to open or
//! close, messages to send to neighbours, where a message of ours goes,
//! and the counters it keeps.

use std::net::SocketAddr;

use bytes::Bytes;
use weft_discovery::ParticipantId;
use weft_messaging::Identity;

use crate::control::Envelope;
use crate::event::Direct;

/// A stream to open or to close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Dial {
    /// Open a stream to the participant at `at`, replacing the one we
    /// opened to it before, if any.
    Open {
        /// The participant.
        peer: ParticipantId,
        /// Where.
        at: SocketAddr,
    },
    /// Close the stream we opened to the participant: it is gone.
    Close(ParticipantId),
    /// Close the stream with this identity, whoever opened it: it failed
    /// the group key's handshake.
    Refuse(Identity),
}

/// A message for a neighbour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Transmit {
    /// The neighbour.
    pub(crate) to: Identity,
    /// What it is: control messages travel with the control TTL.
    pub(crate) kind: TransmitKind,
    /// The tagged payload.
    pub(crate) data: Bytes,
}

/// What a [`Transmit`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransmitKind {
    /// Our lists or routes.
    Control,
    /// What changed in our routes or interest since the last list: sent
    /// without the control TTL, since a change that expired in a queue
    /// would leave the neighbour's view wrong until the stream restarts
    /// (a late one is harmless: a new stream starts with full lists).
    Changes,
    /// A routed message passed on.
    Routed,
    /// A publication routed through participants, ours or passed on.
    Publication,
}

/// Consecutive [`TransmitKind::Publication`] copies whose bytes are one
/// buffer (a last hop's copies naming no target), gathered so that the
/// shell queues them under one lock.
#[derive(Debug, Default)]
pub(crate) struct SharedCopies {
    data: Option<Bytes>,
    to: Vec<Identity>,
}

impl SharedCopies {
    /// A copy of `data` for `to`. The copies gathered before go to `send`
    /// first when `data` is not their buffer.
    pub(crate) fn add(&mut self, data: Bytes, to: Identity, send: impl FnOnce(&[Identity], Bytes)) {
        let same = self
            .data
            .as_ref()
            .is_some_and(|d| d.as_ptr() == data.as_ptr() && d.len() == data.len());
        if !same {
            self.flush(send);
            self.data = Some(data);
        }
        self.to.push(to);
    }

    /// The copies gathered go to `send`: their bytes and who they are
    /// for.
    pub(crate) fn flush(&mut self, send: impl FnOnce(&[Identity], Bytes)) {
        if let Some(data) = self.data.take() {
            send(&self.to, data);
            self.to.clear();
        }
    }
}

/// Where a message we send with `send_to` goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outgoing {
    /// To ourselves.
    Deliver(Direct),
    /// To this neighbour, as this tagged payload.
    Forward(Identity, Bytes),
}

/// The core's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CoreStats {
    pub(crate) routed_delivered: u64,
    pub(crate) routed_hop_limit: u64,
    pub(crate) routed_loops: u64,
    pub(crate) routed_no_route: u64,
    pub(crate) control_errors: u64,
    /// Streams refused by the group key's handshake.
    pub(crate) streams_refused: u64,
    /// Control messages from streams that had not proved themselves.
    pub(crate) unproved_controls: u64,
    /// Neighbours' subscriber filters refused for a limit.
    pub(crate) filters_refused: u64,
    /// Neighbours' regex filters refused: they do not compile within
    /// their size limits.
    pub(crate) regexes_refused: u64,
}

/// The message an envelope brought us.
pub(crate) fn direct(envelope: &Envelope, data: Bytes) -> Direct {
    Direct {
        from: envelope.from.clone(),
        data,
        hops: u8::try_from(envelope.path.len().saturating_sub(1)).unwrap_or(u8::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> Identity {
        Identity::new(name).unwrap()
    }

    #[test]
    fn copies_are_gathered_while_they_share_one_buffer() {
        let shared = Bytes::from_static(b"same");
        // Equal bytes in another buffer are another copy.
        let other = Bytes::from(b"same".to_vec());
        let mut sent: Vec<(*const u8, Vec<Identity>)> = Vec::new();
        let mut copies = SharedCopies::default();
        for (data, to) in [(&shared, "a"), (&shared, "b"), (&other, "c")] {
            copies.add(data.clone(), id(to), |to, d| {
                sent.push((d.as_ptr(), to.to_vec()))
            });
        }
        assert_eq!(sent, [(shared.as_ptr(), vec![id("a"), id("b")])]);
        copies.flush(|to, d| sent.push((d.as_ptr(), to.to_vec())));
        copies.flush(|_, _| panic!("nothing is left"));
        assert_eq!(sent[1], (other.as_ptr(), vec![id("c")]));
    }
}
