//! Attaching to a participant of this host: a [`LocalServer`] serves a
//! running [`Participant`] on a local socket (by default the abstract Unix
//! socket [`default_address`]), and a [`LocalClient`] hosts publishers and
//! subscribers there instead of running a participant of its own.
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), weft_participant::ParticipantError> {
//! use std::time::Duration;
//! use weft_participant::local::{LocalClient, LocalServer};
//! use weft_participant::{Participant, ParticipantConfig, TopicFilter};
//!
//! let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
//! let daemon = Participant::start(ParticipantConfig::loopback(port)).await?;
//! let server = LocalServer::start(daemon.clone(), "tcp://127.0.0.1:0").await?;
//!
//! let client = LocalClient::connect(server.address(), Duration::from_secs(2)).await?;
//! assert_eq!(client.identity(), daemon.identity().as_str());
//! let sub = client.subscriber(TopicFilter::Prefix("a".into())).await?;
//! let publisher = client.publisher("abc").await?;
//! // Publications to subscribers of the same participant are local.
//! let got = loop {
//!     publisher.publish("x").await?;
//!     if let Ok(p) = sub.recv(Some(Duration::from_millis(50))).await { break p; }
//! };
//! assert_eq!(&*got.topic, "abc");
//! # Ok(()) }
//! ```
//!
//! The protocol is weft-packeter packets over the local stream; each
//! packet is a postcard header, then raw payload bytes (see
//! `PROTOCOL.md`). Only processes that can open the local socket attach:
//! an abstract Unix socket belongs to its network namespace.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use weft_link::{ConnectOptions, ConnectionId, Link, LinkConfig};
use weft_messaging::{Identity, TopicFilter};
use weft_packeter::{PacketEvent, PacketSender, Packeter, PacketerConfig};

use crate::control::FilterSpec;
use crate::{LocalProtocolError, Participant, ParticipantError, Publication, Publisher};

/// Publications waiting for a [`LocalSubscriber`] to take them before the
/// client stops reading from the participant (which then drops the oldest
/// in its own bounded queue).
const SUBSCRIBER_BACKLOG: usize = 1024;

/// Where the `weft participant` daemon of this user serves local clients:
/// on Linux the abstract Unix socket `unix://@weft-participant-<uid>`
/// (one per network namespace, gone with the process); on other Unix
/// systems a socket file in the temporary directory; elsewhere
/// `tcp://127.0.0.1:47475`.
pub fn default_address() -> String {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0);
        format!("unix://@weft-participant-{uid}")
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
        let path = std::env::temp_dir().join(format!("weft-participant-{user}.sock"));
        format!("unix://{}", path.display())
    }
    #[cfg(not(unix))]
    {
        "tcp://127.0.0.1:47475".to_owned()
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Subscribe {
        sub: u32,
        filter: FilterSpec,
    },
    Unsubscribe {
        sub: u32,
    },
    Advertise {
        publisher: u32,
        topic: String,
    },
    Withdraw {
        publisher: u32,
    },
    /// The payload follows the header.
    Publish {
        publisher: u32,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Welcome {
        identity: String,
    },
    /// The payload follows the header.
    Publication {
        sub: u32,
        topic: String,
        from: String,
    },
    Failed {
        text: String,
    },
}

fn frame<T: Serialize>(header: &T, tail: &[u8]) -> Bytes {
    let head = postcard::to_stdvec(header).expect("encoding to a Vec does not fail");
    let mut b = BytesMut::with_capacity(head.len() + tail.len());
    b.extend_from_slice(&head);
    b.extend_from_slice(tail);
    b.freeze()
}

fn unframe<'de, T: Deserialize<'de>>(data: &'de Bytes) -> Option<(T, Bytes)> {
    let (t, rest) = postcard::take_from_bytes::<T>(data).ok()?;
    let start = data.len() - rest.len();
    Some((t, data.slice(start..)))
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Default)]
struct ClientState {
    subscriptions: HashMap<u32, AbortOnDrop>,
    publishers: HashMap<u32, Publisher>,
}

/// Serves a participant to local clients; stops when dropped or closed.
#[derive(Debug)]
pub struct LocalServer {
    address: String,
    link: Link,
    stop: watch::Sender<bool>,
}

impl LocalServer {
    /// Listens on `address` (`unix://@name`, `unix:///path`, or a
    /// loopback `tcp://` address) and serves `participant` there.
    /// Cancel-safe: dropped before it completes, it leaves nothing
    /// listening.
    pub async fn start(
        participant: Participant,
        address: &str,
    ) -> Result<LocalServer, ParticipantError> {
        let mut packeter = Packeter::new(LinkConfig::default(), PacketerConfig::default());
        let link = packeter.link().clone();
        let listening = link.listen(address).await?;
        let (stop, mut stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            let mut clients: HashMap<ConnectionId, (PacketSender, ClientState)> = HashMap::new();
            loop {
                let event = tokio::select! {
                    e = packeter.recv() => e,
                    _ = stop_rx.changed() => None,
                };
                let Some(event) = event else { break };
                match event {
                    PacketEvent::Connected(sender) => {
                        let welcome = frame(
                            &Reply::Welcome {
                                identity: participant.identity().to_string(),
                            },
                            &[],
                        );
                        let _ = sender.try_send(welcome);
                        clients.insert(sender.id(), (sender, ClientState::default()));
                    }
                    PacketEvent::Packet { connection, data } => {
                        if let Some((sender, state)) = clients.get_mut(&connection) {
                            serve(&participant, sender, state, &data);
                        }
                    }
                    PacketEvent::Disconnected { connection, .. } => {
                        clients.remove(&connection);
                    }
                    _ => {}
                }
            }
            packeter.link().close().await;
        });
        Ok(LocalServer {
            address: listening.address.to_string(),
            link,
            stop,
        })
    }

    /// The address served (with the real port for `tcp://…:0`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Stops serving and closes the clients' streams; their publishers
    /// and subscribers are withdrawn. Cancel-safe.
    pub async fn close(&self) {
        let _ = self.stop.send(true);
        self.link.close().await;
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn serve(participant: &Participant, sender: &PacketSender, state: &mut ClientState, data: &Bytes) {
    let Some((request, tail)) = unframe::<Request>(data) else {
        let _ = sender.try_send(frame(
            &Reply::Failed {
                text: "a request this participant does not understand".into(),
            },
            &[],
        ));
        return;
    };
    match request {
        Request::Subscribe { sub, filter } => {
            let Some(filter) = filter.to_filter() else {
                let _ = sender.try_send(frame(
                    &Reply::Failed {
                        text: format!("filter {filter} does not compile"),
                    },
                    &[],
                ));
                return;
            };
            let subscriber = participant.subscriber(filter);
            let sender = sender.clone();
            let task = tokio::spawn(async move {
                while let Ok(p) = subscriber.recv(None).await {
                    let reply = Reply::Publication {
                        sub,
                        topic: p.topic.to_string(),
                        from: p.from.to_string(),
                    };
                    // Waits while the client is behind; the subscriber's
                    // own bounded queue absorbs (and counts) the rest.
                    if sender.send(frame(&reply, &p.data)).await.is_err() {
                        break;
                    }
                }
            });
            state.subscriptions.insert(sub, AbortOnDrop(task));
        }
        Request::Unsubscribe { sub } => {
            state.subscriptions.remove(&sub);
        }
        Request::Advertise { publisher, topic } => match participant.publisher(topic) {
            Ok(p) => {
                state.publishers.insert(publisher, p);
            }
            Err(e) => {
                let _ = sender.try_send(frame(
                    &Reply::Failed {
                        text: e.to_string(),
                    },
                    &[],
                ));
            }
        },
        Request::Withdraw { publisher } => {
            state.publishers.remove(&publisher);
        }
        Request::Publish { publisher } => {
            if let Some(p) = state.publishers.get(&publisher) {
                let _ = p.publish(tail);
            }
        }
    }
}

struct ClientInner {
    sender: PacketSender,
    identity: String,
    subscriptions: Mutex<HashMap<u32, mpsc::Sender<Publication>>>,
    next: AtomicU32,
    _link: Link,
    _reader: AbortOnDrop,
}

/// A process's attachment to the participant of its host (see
/// [`LocalServer`]). Cheap to clone.
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
    /// `timeout` for it to answer. Fails when nothing serves there.
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
                        if let Some((Reply::Welcome { identity }, _)) = unframe::<Reply>(&data) {
                            if let Some(s) = sender.take() {
                                return Ok((s, identity));
                            }
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
        if topic.len() > weft_messaging::MAX_TOPIC {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let b = frame(&Request::Publish { publisher: 7 }, b"data");
        let (r, tail) = unframe::<Request>(&b).unwrap();
        assert!(matches!(r, Request::Publish { publisher: 7 }));
        assert_eq!(&tail[..], b"data");
        assert!(unframe::<Request>(&Bytes::from_static(&[0xff, 0xff])).is_none());
        assert!(default_address().contains("weft-participant"));
    }
}
