//! How frames travel on the simulated streams: what a core asks for is
//! carried out as the shell would (`pump`), streams are opened and closed
//! as cores ask (`dial`), and frames are sent and arrive after their
//! link's delay, in order, or are lost with a stream that went down.

use std::fmt::Debug;
use std::hash::{DefaultHasher, Hash};
use std::time::Duration;

use super::{Decoded, Dial, Frame, Got, Payload, Sim, TransmitKind, decode, index_of, key};
use crate::control::Control;

impl Sim {
    /// Records the stream between `a` and `b` as connected; false if it
    /// was.
    pub(super) fn connect(&mut self, a: usize, b: usize) -> bool {
        self.streams[a].insert(b);
        self.streams[b].insert(a);
        self.peak_streams = self
            .peak_streams
            .max(self.streams[a].len())
            .max(self.streams[b].len());
        self.established.insert(key(a, b))
    }

    /// Records the stream between `a` and `b` as gone; false if there was
    /// none.
    pub(super) fn disconnect(&mut self, a: usize, b: usize) -> bool {
        self.streams[a].remove(&b);
        self.streams[b].remove(&a);
        self.established.remove(&key(a, b))
    }

    /// Carries out what `i`'s core asks, as the shell does after each
    /// input.
    /// Every output is noted in `i`'s trace first (see
    /// [`Sim::traces`](super::Sim::traces)).
    pub(super) fn pump(&mut self, i: usize) {
        let at = self.now - self.start;
        let neighbours = self.nodes[i].core.connected().count();
        self.peak_neighbours = self.peak_neighbours.max(neighbours);
        while let Some(t) = self.nodes[i].core.poll_transmit() {
            let trace = &mut self.nodes[i].trace;
            (at, 't', t.to.as_str(), t.kind as u8, &t.data[..]).hash(trace);
            match self.neighbour_named(i, t.to.as_str()) {
                Some(j) => self.send(i, j, Payload::Tagged(t.kind, t.data)),
                // Messaging has no stream to it: it would hold the message
                // for the control TTL; the cores never send to a
                // participant that is not a neighbour.
                None => self.sent.entry((i, i)).or_default().lost += 1,
            }
        }
        while let Some(dial) = self.nodes[i].core.poll_dial() {
            note(&mut self.nodes[i].trace, at, &dial);
            self.dial(i, dial);
        }
        let node = &mut self.nodes[i];
        // Protections keep discovery's table, which is not simulated.
        while let Some(id) = node.core.poll_protect() {
            note(&mut node.trace, at, &id);
        }
        while let Some(event) = node.core.poll_event() {
            note(&mut node.trace, at, &event);
        }
        while let Some(direct) = node.core.poll_direct() {
            note(&mut node.trace, at, &direct);
        }
        let changed = node.core.poll_interest_changed();
        (at, 'i', changed).hash(&mut node.trace);
        while let Some(d) = node.core.poll_delivery() {
            note(&mut node.trace, at, &d);
            node.got.push(Got {
                from: d.from.as_str().to_owned(),
                topic: d.topic.to_string(),
                data: d.data,
                routed: true,
            });
        }
        let next = self.nodes[i].core.poll_timeout();
        (at, 'w', next.map(|t| t - self.start)).hash(&mut self.nodes[i].trace);
        if next != self.deadlines[i] {
            if let Some(old) = self.deadlines[i] {
                self.timers.remove(&(old, i));
            }
            if let Some(t) = next {
                self.timers.insert((t, i));
            }
            self.deadlines[i] = next;
        }
    }

    /// A stream `i`'s core asks for or gives up (without discovery no
    /// core asks: it hears of nobody).
    pub(super) fn dial(&mut self, i: usize, dial: Dial) {
        match dial {
            Dial::Open { peer, .. } => {
                let j = index_of(peer);
                self.connectors.insert((i, j));
                let up = self.links.get(&key(i, j)).is_some_and(|l| l.up);
                if up && !self.established.contains(&key(i, j)) {
                    self.send(i, j, Payload::Connect);
                }
            }
            Dial::Close(peer) => {
                let j = index_of(peer);
                self.connectors.remove(&(i, j));
                if !self.connectors.contains(&(j, i)) && self.disconnect(i, j) {
                    if let Some(link) = self.links.get_mut(&key(i, j)) {
                        link.generation += 1;
                    }
                    self.streams_changed(&[i, j]);
                }
            }
            // Closes the stream, whoever dialled it (messaging's
            // disconnect); the dialler's connector tries again only when
            // its core asks or the link comes back.
            Dial::Refuse(ident) => {
                let Some(j) = self.neighbour_named(i, ident.as_str()) else {
                    return;
                };
                if self.disconnect(i, j) {
                    if let Some(link) = self.links.get_mut(&key(i, j)) {
                        link.generation += 1;
                    }
                    self.streams_changed(&[i, j]);
                }
            }
        }
    }

    pub(super) fn send(&mut self, from: usize, to: usize, mut payload: Payload) {
        if let Payload::Tagged(kind, data) = &payload {
            let hello = matches!(decode(data), Some(Decoded::Control(Control::Hello { .. })));
            if self.nodes[from].old && hello {
                // Without the features byte, as old participants send it.
                payload = Payload::Tagged(*kind, data.slice(..data.len() - 1));
            }
        }
        let link = self.links.get_mut(&key(from, to)).expect("a link");
        let way = usize::from(from > to);
        let at = (self.now + link.delay).max(link.last[way]);
        link.last[way] = at;
        let generation = link.generation;
        let sent = self.sent.entry((from, to)).or_default();
        match &payload {
            Payload::Tagged(TransmitKind::Publication, _) => sent.routed += 1,
            Payload::Tagged(_, data) => {
                sent.control += 1;
                sent.control_bytes += data.len() as u64;
            }
            Payload::Publish { .. } => sent.publish += 1,
            Payload::Connect | Payload::Subscribe(_) => {}
        }
        self.sent_frames += 1;
        let frame = Frame {
            from,
            to,
            generation,
            payload,
        };
        self.flight.insert((at, self.sent_frames), frame);
    }

    pub(super) fn arrive(&mut self, frame: Frame) {
        let live = self
            .links
            .get(&key(frame.from, frame.to))
            .is_some_and(|l| l.up && l.generation == frame.generation)
            && self.nodes[frame.from].up
            && self.nodes[frame.to].up;
        if !live {
            self.sent.entry((frame.from, frame.to)).or_default().lost += 1;
            return;
        }
        let from = self.nodes[frame.from].name.clone();
        let to = frame.to;
        match frame.payload {
            Payload::Tagged(_, data) if self.nodes[to].old => {
                let new = matches!(
                    decode(&data),
                    Some(Decoded::Control(Control::Interest(_)) | Decoded::Publication(..))
                );
                if new {
                    self.sent.entry((frame.from, to)).or_default().unreadable += 1;
                } else {
                    self.nodes[to].core.handle_control(&from, &data);
                    self.pump(to);
                }
            }
            Payload::Tagged(_, data) => {
                self.nodes[to].core.handle_control(&from, &data);
                self.pump(to);
            }
            Payload::Connect => {
                let wanted = self.connectors.contains(&(frame.from, to))
                    || self.connectors.contains(&(to, frame.from));
                if wanted && self.connect(frame.from, to) {
                    self.streams_changed(&[frame.from, to]);
                }
            }
            Payload::Subscribe(filters) => {
                self.told.insert((to, frame.from), filters);
            }
            Payload::Publish { topic, data } => {
                let node = &mut self.nodes[to];
                // Messaging hands a PUBLISH to the queues that match.
                if node.filters.iter().any(|f| f.matches(&topic)) {
                    node.got.push(Got {
                        from: from.as_str().to_owned(),
                        topic,
                        data,
                        routed: false,
                    });
                }
            }
        }
    }
}

/// Notes `what` (as it prints) in a participant's trace, at `at`.
fn note(trace: &mut DefaultHasher, at: Duration, what: &impl Debug) {
    (at, format!("{what:?}")).hash(trace);
}
