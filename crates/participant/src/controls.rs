//! Our control messages, taken on messaging's task: each run of messages
//! read together is gathered as messaging dispatches it and handled at
//! the run's end ([`Inner::on_controls`]), with no queue and no wake-up of
//! another task between a neighbour's message and what it causes.

use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;
use weft_messaging::{HandlerId, Kind, Messaging, Received, Subscription};

use crate::control::{CONTROL_TAG, PUBLICATION_TAG, ROUTED_TAG};
use crate::participant::{Inner, lock};

/// The length of the prefix the three tags share, which takes them.
const PREFIX: usize = 3;

// The tags share their first bytes.
const _: () = {
    let mut i = 0;
    while i < PREFIX {
        assert!(CONTROL_TAG[i] == ROUTED_TAG[i] && CONTROL_TAG[i] == PUBLICATION_TAG[i]);
        i += 1;
    }
};

/// The control messages of the run being dispatched, and the participant
/// they go to once it exists.
#[derive(Default)]
pub(crate) struct Controls {
    pending: Mutex<Vec<Received>>,
    /// Weak: messaging, which holds the handlers, is the participant's.
    inner: OnceLock<Weak<Inner>>,
}

impl Controls {
    /// Registers the handlers that take our control messages from
    /// `messaging`; they are gathered until [`attach`](Self::attach).
    pub(crate) fn take(messaging: &Messaging) -> (Arc<Controls>, Vec<HandlerId>) {
        let controls = Arc::new(Controls::default());
        let filter = Subscription::starting_with(Bytes::copy_from_slice(&CONTROL_TAG[..PREFIX]))
            .of_kind(Kind::Plain);
        let on_message = messaging.on_message({
            let controls = controls.clone();
            move |r: &Received| {
                if filter.matches(r) {
                    lock(&controls.pending).push(r.clone());
                }
            }
        });
        let on_batch_end = messaging.on_batch_end({
            let controls = controls.clone();
            move || controls.handle_pending()
        });
        (controls, vec![on_message, on_batch_end])
    }

    /// The participant now exists: what was gathered before goes to it.
    pub(crate) fn attach(&self, inner: &Arc<Inner>) {
        let _ = self.inner.set(Arc::downgrade(inner));
        self.handle_pending();
    }

    /// Hands the messages gathered to the participant, once it exists.
    fn handle_pending(&self) {
        let Some(inner) = self.inner.get().and_then(Weak::upgrade) else {
            return;
        };
        let mut batch = std::mem::take(&mut *lock(&self.pending));
        if batch.is_empty() {
            return;
        }
        inner.on_controls(&mut batch);
        // The buffer serves the next run.
        batch.clear();
        let mut pending = lock(&self.pending);
        if pending.is_empty() {
            *pending = batch;
        }
    }
}
