//! Certificates on the paths between peers: mutual TLS on every path a
//! traversal opens, when the peers have certificates.

use weft_link::tls::{ClientAuth, TlsClientConfig, TlsIdentity, TlsServerConfig, TrustAnchors};
use weft_link::{AdoptTls, LinkError};
use weft_messaging::Identity;

/// Certificates for the paths a [`Traversal`](crate::Traversal) opens.
/// With them every path (the relay's channel, a direct TCP stream, QUIC
/// on a punched socket) runs mutual TLS from end to end: each peer
/// presents its certificate and checks the other's against the trust
/// anchors and the other's identity, as a DNS name of the certificate.
/// So the rendezvous relays only ciphertext, and with messaging's
/// `bind_identity` a peer proves its identity on every path, as on a
/// `tls://` connection. Of two peers, the one whose identity sorts first
/// is TLS's client (and QUIC's, on a punched socket).
///
/// Without them (the default) the relay and the direct TCP paths carry
/// messaging in the clear, and QUIC on a punched socket is encrypted
/// with a throw-away certificate but not authenticated: who is at the
/// other end rests on the rendezvous's word.
///
/// ```
/// use weft_link::tls::{TlsIdentity, TrustAnchors};
/// use weft_traversal::{PathTls, TraversalConfig};
/// # fn load(identity: TlsIdentity, anchors: TrustAnchors) -> Result<(), weft_link::LinkError> {
/// let mut config = TraversalConfig::default();
/// config.tls = Some(PathTls::new(identity, anchors)?);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PathTls {
    server: TlsServerConfig,
    client: TlsClientConfig,
}

impl PathTls {
    /// Paths on which this peer presents `identity` (its certificate
    /// names the peer's identity) and accepts peers whose certificates
    /// chain to `anchors`.
    pub fn new(identity: TlsIdentity, anchors: TrustAnchors) -> Result<PathTls, LinkError> {
        Ok(PathTls {
            server: TlsServerConfig::new(identity.clone(), ClientAuth::Required(anchors.clone()))?,
            client: TlsClientConfig::new(anchors, Some(identity))?,
        })
    }

    /// Whether `me` is TLS's client toward `peer`.
    pub(crate) fn is_client(me: &Identity, peer: &Identity) -> bool {
        me.as_str() < peer.as_str()
    }

    /// The side `me` takes toward `peer` on a stream.
    pub(crate) fn side(&self, me: &Identity, peer: &Identity) -> AdoptTls {
        if Self::is_client(me, peer) {
            AdoptTls::Client(self.client_for(peer))
        } else {
            AdoptTls::Server(self.server.clone())
        }
    }

    /// The client configuration toward `peer`: its certificate must name
    /// it.
    pub(crate) fn client_for(&self, peer: &Identity) -> TlsClientConfig {
        self.client.clone().with_server_name(peer.as_str())
    }

    /// The server configuration.
    pub(crate) fn server(&self) -> TlsServerConfig {
        self.server.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_that_sorts_first_is_the_client_on_both_ends() {
        let (a, b) = (
            Identity::new("alice").unwrap(),
            Identity::new("bob").unwrap(),
        );
        assert!(PathTls::is_client(&a, &b));
        assert!(!PathTls::is_client(&b, &a));
    }
}
