//! The client side: a process's publishers and subscribers hosted by the
//! participant it attached to.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use weft_link::{ConnectOptions, Link, LinkConfig};
use weft_messaging::{Identity, TopicFilter};
use weft_packeter::{PacketEvent, PacketSender, Packeter, PacketerConfig};

use super::AbortOnDrop;
use super::protocol::{Reply, Request, frame, unframe};
use crate::control::FilterSpec;
use crate::{LocalProtocolError, ParticipantError, Publication};

/// Publications waiting for a [`LocalSubscriber`] to take them before the
/// client stops reading from the participant (which then drops the oldest
/// in its own bounded queue).
const SUBSCRIBER_BACKLOG: usize = 1024;

struct ClientInner {
    sender: PacketSender,
    identity: String,
    subscriptions: Mutex<HashMap<u32, mpsc::Sender<Publication>>>,
    next: AtomicU32,
    _link: Link,
    _reader: AbortOnDrop,
}

/// A process's attachment to the participant of its host (see
/// [`LocalServer`](super::LocalServer)). Cheap to clone.
#[derive(Clone)]
pub struct LocalClient {
    inner: Arc<ClientInner>,
}

impl std::fmt::Debug for LocalClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalClient")
            .field("identity", &self.inner.identity)
            .finish()
    }
}

impl LocalClient {
    /// Attaches to the participant serving `address`, waiting at most
    /// `timeout` for it to answer. Fails when nothing serves there, and
    /// with [`ParticipantError::LocalRefused`] when it serves another user.
    /// Cancel-safe.
    pub async fn connect(
        address: &str,
        timeout: Duration,
    ) -> Result<LocalClient, ParticipantError> {
        let mut config = LinkConfig::default();
        config.connect_timeout = timeout;
        let mut packeter = Packeter::new(config, PacketerConfig::default());
        let link = packeter.link().clone();
        let attach = async {
            link.connect_once(address, ConnectOptions::default())
                .await?;
            let mut sender = None;
            while let Some(event) = packeter.recv().await {
                match event {
                    PacketEvent::Connected(s) => sender = Some(s),
                    PacketEvent::Packet { data, .. } => {
                        match unframe::<Reply>(&data) {
                            Some((Reply::Welcome { identity }, _)) => {
                                if let Some(s) = sender.take() {
                                    return Ok((s, identity));
                                }
                            }
                            Some((Reply::Failed { text }, _)) => {
                                return Err(ParticipantError::LocalRefused(text));
                            }
                            _ => {}
                        }
                        return Err(ParticipantError::Local(LocalProtocolError::NoWelcome));
                    }
                    PacketEvent::Disconnected { .. } => break,
                    _ => {}
                }
            }
            Err(ParticipantError::Closed)
        };
        let (sender, identity) = tokio::time::timeout(timeout, attach)
            .await
            .map_err(|_| ParticipantError::Timeout(timeout))??;
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<ClientInner>| {
            let weak = weak.clone();
            let reader = tokio::spawn(async move {
                while let Some(event) = packeter.recv().await {
                    match event {
                        PacketEvent::Packet { data, .. } => {
                            let Some(inner) = weak.upgrade() else { break };
                            if let Some((Reply::Publication { sub, topic, from }, payload)) =
                                unframe::<Reply>(&data)
                            {
                                let to = inner
                                    .subscriptions
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .get(&sub)
                                    .cloned();
                                let Ok(from) = Identity::new(&from) else {
                                    continue;
                                };
                                if let Some(to) = to {
                                    drop(inner);
                                    let _ = to
                                        .send(Publication {
                                            topic: topic.into(),
                                            from,
                                            data: payload,
                                        })
                                        .await;
                                }
                            }
                        }
                        PacketEvent::Disconnected { .. } => break,
                        _ => {}
                    }
                }
                // Ends every subscriber's wait.
                if let Some(inner) = weak.upgrade() {
                    inner
                        .subscriptions
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clear();
                }
            });
            ClientInner {
                sender,
                identity,
                subscriptions: Mutex::new(HashMap::new()),
                next: AtomicU32::new(1),
                _link: link,
                _reader: AbortOnDrop(reader),
            }
        });
        Ok(LocalClient { inner })
    }

    /// The identity of the participant attached to.
    pub fn identity(&self) -> &str {
        &self.inner.identity
    }

    async fn request(&self, r: &Request, tail: &[u8]) -> Result<(), ParticipantError> {
        self.inner
            .sender
            .send(frame(r, tail))
            .await
            .map_err(|_| ParticipantError::Closed)
    }

    /// A publisher of `topic` hosted by the participant. Cancel-safe.
    pub async fn publisher(&self, topic: &str) -> Result<LocalPublisher, ParticipantError> {
        if topic.len() > weft_messaging::patterns::MAX_TOPIC {
            return Err(ParticipantError::TopicTooLong(topic.len()));
        }
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.request(
            &Request::Advertise {
                publisher: id,
                topic: topic.to_owned(),
            },
            &[],
        )
        .await?;
        Ok(LocalPublisher {
            client: self.clone(),
            id,
            topic: topic.to_owned(),
        })
    }

    /// A subscriber hosted by the participant. Cancel-safe.
    pub async fn subscriber(
        &self,
        filter: TopicFilter,
    ) -> Result<LocalSubscriber, ParticipantError> {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BACKLOG);
        self.inner
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        self.request(
            &Request::Subscribe {
                sub: id,
                filter: FilterSpec::of(&filter),
            },
            &[],
        )
        .await?;
        Ok(LocalSubscriber {
            client: self.clone(),
            id,
            rx: tokio::sync::Mutex::new(rx),
        })
    }
}

/// A publisher hosted by the participant a [`LocalClient`] is attached
/// to. Dropping it withdraws it.
#[derive(Debug)]
pub struct LocalPublisher {
    client: LocalClient,
    id: u32,
    topic: String,
}

impl LocalPublisher {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Hands `data` to the participant, which publishes it to the
    /// participants with a matching subscriber. Waits while the stream to
    /// the participant is full. Cancel-safe: if dropped while waiting, the
    /// publication is not sent.
    pub async fn publish(&self, data: impl AsRef<[u8]>) -> Result<(), ParticipantError> {
        self.client
            .request(&Request::Publish { publisher: self.id }, data.as_ref())
            .await
    }
}

impl Drop for LocalPublisher {
    fn drop(&mut self) {
        let _ = self
            .client
            .inner
            .sender
            .try_send(frame(&Request::Withdraw { publisher: self.id }, &[]));
    }
}

/// A subscriber hosted by the participant a [`LocalClient`] is attached
/// to. Dropping it withdraws it.
#[derive(Debug)]
pub struct LocalSubscriber {
    client: LocalClient,
    id: u32,
    rx: tokio::sync::Mutex<mpsc::Receiver<Publication>>,
}

impl LocalSubscriber {
    /// The next publication, waiting up to `timeout` (`None`: until the
    /// participant goes away). Cancel-safe.
    pub async fn recv(&self, timeout: Option<Duration>) -> Result<Publication, ParticipantError> {
        let wait = async {
            let mut rx = self.rx.lock().await;
            rx.recv().await.ok_or(ParticipantError::Closed)
        };
        match timeout {
            None => wait.await,
            Some(t) => tokio::time::timeout(t, wait)
                .await
                .map_err(|_| ParticipantError::Timeout(t))?,
        }
    }
}

impl Drop for LocalSubscriber {
    fn drop(&mut self) {
        self.client
            .inner
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        let _ = self
            .client
            .inner
            .sender
            .try_send(frame(&Request::Unsubscribe { sub: self.id }, &[]));
    }
}
