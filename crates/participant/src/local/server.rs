//! The server side: a running participant served to the processes of
//! this host that attach to it.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::sync::watch;
use weft_link::address::UnixPath;
use weft_link::{Address, ConnectionId, ConnectionInfo, Link, LinkConfig};
use weft_packeter::{PacketEvent, PacketSender, Packeter, PacketerConfig};

use super::AbortOnDrop;
use super::protocol::{Reply, Request, frame, unframe};
use crate::{Participant, ParticipantError, Publisher};

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
    ///
    /// On Unix sockets only processes of the user running this one are
    /// served: the kernel tells who connects (`SO_PEERCRED`), and anyone
    /// else gets a refusal and a closed stream; a path socket's file is
    /// also made private to the user (mode 0600). A `tcp://` address has
    /// no such check: every local user can attach there.
    /// Cancel-safe: dropped before it completes, it leaves nothing
    /// listening.
    pub async fn start(
        participant: Participant,
        address: &str,
    ) -> Result<LocalServer, ParticipantError> {
        let mut packeter = Packeter::new(LinkConfig::default(), PacketerConfig::default());
        let link = packeter.link().clone();
        let listening = link.listen(address).await?;
        if let Address::Unix {
            path: UnixPath::Path(file),
            ..
        } = &listening.address
        {
            // Only our user may open a path socket at all.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| ParticipantError::Io {
                    what: format!("making {} private", file.display()),
                    source,
                },
            )?;
        }
        let own_uid = own_uid();
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
                        if let Some(reason) = refusal(sender.info(), own_uid) {
                            tracing::info!(conn = %sender.id(), %reason, "local client refused");
                            let _ = sender.try_send(frame(&Reply::Failed { text: reason }, &[]));
                            sender.close();
                            continue;
                        }
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
            let Some(filter) = participant.compile_filter(&filter) else {
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

/// The user this process runs as, where the system tells it without
/// unsafe code (Linux: the owner of `/proc/self`).
fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Why a local client may not attach: a Unix socket peer of another user.
fn refusal(info: &ConnectionInfo, own_uid: Option<u32>) -> Option<String> {
    let (Some(peer), Some(own)) = (info.peer_credentials, own_uid) else {
        return None;
    };
    (peer.uid != own).then(|| {
        format!(
            "refused: this participant serves its own user (uid {own}) only, not uid {}",
            peer.uid
        )
    })
}
