//! Telling the neighbours what changed in the routes and interest we
//! reach: at once, or gathered over a batch
//! ([`with_advertise_batch`](ParticipantCore::with_advertise_batch)) and
//! told at its end.

use weft_messaging::Identity;

use super::{ParticipantCore, Transmit, TransmitKind};
use crate::advert::Advert;
use crate::control::{Control, encode_control};

impl ParticipantCore {
    /// Tells each neighbour the routes and the interest that changed for
    /// it, now or at the end of the batch.
    pub(super) fn advertise(&mut self) {
        if self.batch.is_zero() {
            self.tell_changes();
        } else if self.batched.is_none() {
            self.batched = Some(None);
        }
    }

    /// Tells each neighbour the routes and the interest that changed for
    /// it since it was last told.
    pub(super) fn tell_changes(&mut self) {
        for (n, adv) in self.router.changed_advertisements() {
            if adv.is_empty_change() {
                continue;
            }
            let c = match adv {
                Advert::Full(list) => Control::Routes(list),
                Advert::Changes { set, removed } => Control::RoutesChanged { set, removed },
            };
            self.tell(&n, &c);
        }
        for (n, adv) in self.interest.changed_advertisements() {
            if adv.is_empty_change() {
                continue;
            }
            let c = match adv {
                Advert::Full(list) => Control::Interest(list),
                Advert::Changes { set, removed } => Control::InterestChanged { set, removed },
            };
            self.tell(&n, &c);
        }
    }

    /// Sends neighbour `n` a list or what changed in it.
    fn tell(&mut self, n: &str, c: &Control) {
        let Ok(to) = Identity::new(n) else { return };
        let kind = match c {
            Control::RoutesChanged { .. } | Control::InterestChanged { .. } => {
                TransmitKind::Changes
            }
            _ => TransmitKind::Control,
        };
        let data = encode_control(c);
        self.transmits.push_back(Transmit { to, kind, data });
    }
}
