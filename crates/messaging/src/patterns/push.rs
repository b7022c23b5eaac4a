//! PUSH/PULL: work items carry [`Flags::PUSH`] and go to one puller each,
//! round robin over the connected ones.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use crate::message::Flags;
use crate::{Identity, Message, Messaging, MessagingError};

impl Messaging {
    /// A pusher that spreads work over `pullers` (PUSH/PULL). Pullers take
    /// work with a subscription of [`Kind::Push`](crate::Kind::Push).
    pub fn pusher(&self, pullers: impl IntoIterator<Item = Identity>) -> Pusher {
        Pusher {
            messaging: self.clone(),
            pullers: pullers.into_iter().collect(),
            next: AtomicUsize::new(0),
        }
    }
}

/// Spreads work over pullers in turn (PUSH/PULL).
#[derive(Debug)]
pub struct Pusher {
    messaging: Messaging,
    pullers: Vec<Identity>,
    next: AtomicUsize,
}

impl Pusher {
    /// Pushes to the next connected puller, round robin; returns which.
    /// Fails with [`MessagingError::NoPeer`] when none is connected.
    pub fn push(&self, data: impl Into<Bytes>) -> Result<Identity, MessagingError> {
        let connected: Vec<&Identity> = self
            .pullers
            .iter()
            .filter(|p| self.messaging.is_connected(p))
            .collect();
        if connected.is_empty() {
            return Err(MessagingError::NoPeer);
        }
        let who = connected[self.next.fetch_add(1, Ordering::Relaxed) % connected.len()];
        self.push_to(who, data)?;
        Ok(who.clone())
    }

    /// Pushes to a named puller, queued until it connects.
    pub fn push_to(&self, puller: &Identity, data: impl Into<Bytes>) -> Result<(), MessagingError> {
        let mut message = Message::new(data);
        message.flags = Flags::PUSH;
        self.messaging.try_send_message(puller, message)
    }
}
