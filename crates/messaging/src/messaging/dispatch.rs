//! Core events handed to subscription queues, handlers and storage.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{HandlerId, Inner, lock};
use crate::config::DefaultQueue;
use crate::core::CoreEvent;
use crate::error::ProtocolError;
use crate::frame::Frame;
use crate::patterns::{split_publication, split_reply};
use crate::subscription::{Deliveries, QueueMatches, QueueShared};
use crate::{Identity, Kind, Received};

/// The id of the default queue.
pub(super) const DEFAULT_QUEUE: u64 = 0;

type MessageHandler = Arc<dyn Fn(&Received) + Send + Sync>;
type PeerHandler = Arc<dyn Fn(&Identity) + Send + Sync>;
type ErrorHandler = Arc<dyn Fn(Option<&Identity>, &ProtocolError) + Send + Sync>;
type BatchHandler = Arc<dyn Fn() + Send + Sync>;

/// Handlers and queues, as one dispatch sees them.
#[derive(Default, Clone)]
pub(super) struct Dispatch {
    pub(super) queues: Vec<Arc<QueueShared>>,
    pub(super) on_message: Vec<(HandlerId, MessageHandler)>,
    pub(super) on_connect: Vec<(HandlerId, PeerHandler)>,
    pub(super) on_disconnect: Vec<(HandlerId, PeerHandler)>,
    pub(super) on_error: Vec<(HandlerId, ErrorHandler)>,
    pub(super) on_batch_end: Vec<(HandlerId, BatchHandler)>,
}

/// Hands core events to queues, handlers and storage. Messages reach
/// their queues in runs (one lock and one wake-up per queue and run), each
/// run handed over before the next event that is not a message, so queues
/// and handlers see events in the order they happened.
pub(super) fn dispatch(
    inner: &Inner,
    events: &mut VecDeque<CoreEvent>,
    deliveries: &mut Deliveries,
    matches: &mut QueueMatches,
) {
    // A snapshot: handlers may subscribe or add handlers without deadlock.
    let d = Arc::clone(&lock(&inner.dispatch));
    matches.reset(&d.queues);
    // The default queue (id 0) steps aside once anything else takes
    // messages, unless it is configured to take them always.
    let default_active = match inner.config.default_queue {
        DefaultQueue::Always => true,
        _ => d.on_message.is_empty() && d.queues.iter().all(|q| q.id == DEFAULT_QUEUE),
    };
    let mut last_topic = None;
    let deliver = |deliveries: &mut Deliveries| {
        let dropped = deliveries.deliver();
        if dropped > 0 {
            inner
                .subscription_drops
                .fetch_add(dropped, Ordering::Relaxed);
        }
    };
    for event in events.drain(..) {
        if !matches!(event, CoreEvent::Message { .. }) {
            deliver(deliveries);
        }
        match event {
            CoreEvent::Message { from, mut message } => {
                let mut topic = None;
                let kind = message.flags.kind();
                match kind {
                    Kind::Reply => {
                        let waiting = split_reply(&mut message.data)
                            .and_then(|id| lock(&inner.pending).remove(&id));
                        match waiting {
                            Some(tx) => {
                                let _ = tx.send(Received {
                                    from,
                                    message,
                                    topic: None,
                                });
                            }
                            None => {
                                inner.unhandled.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        continue;
                    }
                    Kind::Publish => match split_publication(&mut message.data, &mut last_topic) {
                        Some(t) => topic = Some(t),
                        None => {
                            inner.unhandled.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    },
                    _ => {}
                }
                let received = Received {
                    from,
                    message,
                    topic,
                };
                // Every matching queue gets a copy; the last one (when no
                // handler needs it after) gets the message itself.
                let mut matched: Option<&Arc<QueueShared>> = None;
                for &i in matches.find(&d.queues, &received, kind) {
                    let queue = &d.queues[i];
                    if queue.id == DEFAULT_QUEUE && !default_active {
                        continue;
                    }
                    if let Some(before) = matched.replace(queue) {
                        deliveries.add(before, received.clone());
                    }
                }
                if d.on_message.is_empty() {
                    match matched {
                        Some(q) => deliveries.add(q, received),
                        None => {
                            inner.unhandled.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                } else {
                    if let Some(q) = matched {
                        deliveries.add(q, received.clone());
                    }
                    for (_, h) in &d.on_message {
                        h(&received);
                    }
                }
            }
            CoreEvent::Connected { ident } => {
                // Our topic interest travels to every weft peer that connects.
                let filters = lock(&inner.topics).local_filters();
                if !filters.is_empty() {
                    let mut core = lock(&inner.core);
                    for (kind, text) in filters {
                        core.send_extension(&ident, &Frame::Subscribe(kind, text));
                    }
                }
                for (_, h) in &d.on_connect {
                    h(&ident);
                }
            }
            CoreEvent::Disconnected { ident } => {
                lock(&inner.topics).handle_disconnected(&ident);
                // The connection that made others redundant is gone: their
                // connectors go on.
                if let Some(resting) = lock(&inner.resting).remove(&ident) {
                    for connector in resting {
                        inner.link.wake_connector(connector);
                    }
                }
                for (_, h) in &d.on_disconnect {
                    h(&ident);
                }
            }
            CoreEvent::Redundant { ident, connector } => {
                if inner.link.rest_connector(connector) {
                    lock(&inner.resting)
                        .entry(ident)
                        .or_default()
                        .push(connector);
                }
            }
            CoreEvent::Settled { id } => {
                if let Some(s) = &inner.storage {
                    s.delete(id);
                }
            }
            CoreEvent::ProtocolError { ident, error } => {
                for (_, h) in &d.on_error {
                    h(ident.as_ref(), &error);
                }
            }
            CoreEvent::Subscribe { from, kind, filter } => {
                lock(&inner.topics).handle_subscribe(from, kind, filter);
            }
            CoreEvent::Unsubscribe { from, kind, filter } => {
                lock(&inner.topics).handle_unsubscribe(&from, kind, &filter);
            }
        }
    }
    deliver(deliveries);
    for (_, h) in &d.on_batch_end {
        h();
    }
}
