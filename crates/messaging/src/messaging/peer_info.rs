//! What is known about a connected peer: snakeMQ's `getpeercert()`, and
//! the connection it came on.

use weft_link::ConnectionInfo;

use super::{Messaging, lock};
use crate::Identity;
use crate::certificate::CertificateNames;

/// A connected peer, from [`Messaging::peer_info`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The identity it announced (and, with
    /// [`bind_identity`](crate::MessagingConfig::bind_identity), proved).
    pub ident: Identity,
    /// The names of the certificate it presented, which the TLS handshake
    /// verified against the configured roots; `None` on a connection
    /// without one (plain transports, or a TLS client that presented
    /// none).
    pub certificate: Option<CertificateNames>,
    /// The transport, as an address scheme: `tcp`, `tls`, `quic`, `unix`,
    /// `unix+tls` or `udp`.
    pub transport: &'static str,
    /// The connection: its id, both addresses, whether a listener or a
    /// connector made it, the peer's raw certificate chain (leaf first)
    /// and, on Unix sockets, the peer process's credentials.
    pub connection: ConnectionInfo,
}

impl Messaging {
    /// What is known about `ident` while it is connected: its verified
    /// certificate's names and its connection; `None` when it is not
    /// connected.
    pub fn peer_info(&self, ident: &Identity) -> Option<PeerInfo> {
        let core = lock(&self.inner.core);
        let (tx, names) = core.peer_connection(ident)?;
        let connection = tx.info().clone();
        let transport = connection
            .local
            .as_ref()
            .or(connection.peer.as_ref())
            .map_or("unknown", |a| a.scheme().as_str());
        Some(PeerInfo {
            ident: ident.clone(),
            certificate: names.map(|n| (**n).clone()),
            transport,
            connection,
        })
    }
}
