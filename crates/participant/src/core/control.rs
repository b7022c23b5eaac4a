//! A neighbour's control messages: what it hosts, what it reaches, and
//! its requests, taken into the core's view of it.

use weft_messaging::Identity;

use super::ParticipantCore;
use crate::control::{Control, FEATURE_CHANGES, FilterSpec, MAX_LIST};
use crate::event::ParticipantEvent;
use crate::filters::Refused;

impl ParticipantCore {
    /// A control message from the neighbour `from` (proved, with a group
    /// key).
    pub(super) fn handle_control_message(&mut self, from: &Identity, c: Control) {
        let participant = from.clone();
        match c {
            Control::Hello {
                publishers,
                subscribers,
                routes,
                features,
            } => {
                self.overlay.greeted.insert(from.clone());
                let changes = features & FEATURE_CHANGES != 0;
                self.interest.handle_hello(from.as_str(), features);
                self.router.set_takes_changes(from.as_str(), changes);
                let remote = self.remote.entry(from.clone()).or_default();
                for topic in publishers {
                    if remote.publishers.len() < MAX_LIST && remote.publishers.insert(topic.clone())
                    {
                        self.events.push_back(ParticipantEvent::PublisherAdded {
                            participant: participant.clone(),
                            topic,
                        });
                    }
                }
                for filter in subscribers {
                    self.add_remote_subscriber(from, filter);
                }
                self.router.learn(from.as_str(), routes);
                self.advertise();
            }
            Control::PublisherAdded(topic) => {
                let remote = self.remote.entry(from.clone()).or_default();
                if remote.publishers.len() < MAX_LIST && remote.publishers.insert(topic.clone()) {
                    self.events
                        .push_back(ParticipantEvent::PublisherAdded { participant, topic });
                }
            }
            Control::PublisherRemoved(topic) => {
                if let Some(remote) = self.remote.get_mut(from) {
                    if remote.publishers.remove(&topic) {
                        self.events
                            .push_back(ParticipantEvent::PublisherRemoved { participant, topic });
                    }
                }
            }
            Control::SubscriberAdded(filter) => self.add_remote_subscriber(from, filter),
            Control::SubscriberRemoved(filter) => {
                if let Some(remote) = self.remote.get_mut(from) {
                    if remote.subscribers.remove(&filter) {
                        self.interest
                            .set_direct(from.as_str(), remote.subscribers.specs());
                        self.advertise();
                        self.interest_changed = true;
                        self.events.push_back(ParticipantEvent::SubscriberRemoved {
                            participant,
                            filter,
                        });
                    }
                }
            }
            Control::Routes(routes) => {
                self.router.learn(from.as_str(), routes);
                self.advertise();
            }
            Control::RoutesChanged { set, removed } => {
                self.router.learn_changes(from.as_str(), set, removed);
                self.advertise();
            }
            Control::Interest(entries) => {
                self.interest.handle_interest(from.as_str(), entries);
                self.advertise();
            }
            Control::InterestChanged { set, removed } => {
                self.interest
                    .handle_interest_changes(from.as_str(), set, removed);
                self.advertise();
            }
            Control::Leave => self.handle_leave(from),
            // A handshake we did not ask for (we have no group key).
            Control::Challenge(_) | Control::Proof(_) => self.stats.unproved_controls += 1,
        }
    }

    /// A neighbour hosts a subscriber with `filter`: held if it fits the
    /// limits (and compiles within them), else refused and counted; the
    /// neighbour's other filters stay.
    pub(super) fn add_remote_subscriber(&mut self, from: &Identity, filter: FilterSpec) {
        let remote = self.remote.entry(from.clone()).or_default();
        match remote.subscribers.add(&filter, &self.filter_limits) {
            Ok(true) => {
                self.interest
                    .set_direct(from.as_str(), remote.subscribers.specs());
                self.advertise();
                self.interest_changed = true;
                self.events.push_back(ParticipantEvent::SubscriberAdded {
                    participant: from.clone(),
                    filter,
                });
            }
            Ok(false) => {}
            Err(why) => {
                let counter = match why {
                    Refused::Limit => &mut self.stats.filters_refused,
                    Refused::Regex => &mut self.stats.regexes_refused,
                };
                *counter = counter.saturating_add(1);
                tracing::debug!(peer = %from, %filter, reason = ?why, "subscriber filter refused");
            }
        }
    }
}
