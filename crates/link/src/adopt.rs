//! Adopting a byte stream with TLS over it: the handshake runs in the
//! connection's own task, under an id the caller has at once.

use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::accept::tls_accept;
use crate::connection::{Ends, run_stream};
use crate::dial::tls_connect;
use crate::tls::{TlsClientConfig, TlsServerConfig};
use crate::{Address, ConnectionId, Link, LinkError, Origin};

/// The side of the TLS handshake [`Link::adopt_tls`] runs on a stream.
#[derive(Clone, Debug)]
pub enum AdoptTls {
    /// The client side: verifies the other end's certificate against the
    /// configuration's anchors and its server name
    /// ([`TlsClientConfig::with_server_name`], which an adopted stream
    /// needs, having no host name of its own).
    Client(TlsClientConfig),
    /// The server side, asking the other end for a certificate as the
    /// configuration says.
    Server(TlsServerConfig),
}

impl Link {
    /// Runs TLS over any byte stream (an in-memory pipe, a relayed
    /// channel, a socket made elsewhere), then the stream as a connection
    /// of this link whose [`ConnectionInfo`](crate::ConnectionInfo)
    /// carries the certificate chain the other end presented.
    ///
    /// The id is the connection's from the start: the handshake runs in
    /// the connection's own task, bounded by
    /// [`LinkConfig::tls_handshake_timeout`](crate::LinkConfig::tls_handshake_timeout),
    /// and the `Connected` event follows it, so whatever the caller does
    /// with the id (tell the layer above what the connection is for)
    /// happens before any of the other end's data can arrive. A failed
    /// handshake drops the stream; no connection event is sent, and the
    /// failure is counted in [`LinkStats::handshake_failures`](crate::LinkStats::handshake_failures).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), weft_link::LinkError> {
    /// use weft_link::tls::{ClientAuth, SelfSignedPki};
    /// use weft_link::{AdoptTls, Link, LinkConfig, LinkEvent};
    ///
    /// let pki = SelfSignedPki::generate(&["weft-server"])?;
    /// let (ours, theirs) = tokio::io::duplex(64 * 1024);
    /// let (a, _a_events) = Link::new(LinkConfig::default());
    /// let (b, mut b_events) = Link::new(LinkConfig::default());
    /// let client = pki.client_config(false)?.with_server_name("weft-server");
    /// a.adopt_tls(ours, AdoptTls::Client(client), None, None)?;
    /// let id = b.adopt_tls(theirs, AdoptTls::Server(pki.server_config(ClientAuth::None)?), None, None)?;
    /// if let Some(LinkEvent::Connected(conn)) = b_events.recv().await {
    ///     assert_eq!(conn.id(), id);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn adopt_tls<S>(
        &self,
        stream: S,
        tls: AdoptTls,
        peer: Option<Address>,
        local: Option<Address>,
    ) -> Result<ConnectionId, LinkError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let events = self.registry().sender()?;
        if let AdoptTls::Client(config) = &tls {
            config.server_name_for(String::new())?;
        }
        let id = self.registry().reserve_id();
        let registry = self.registry().clone();
        let name = peer.as_ref().map(ToString::to_string).unwrap_or_default();
        let closing = registry.closing().clone();
        self.registry().spawn(async move {
            let handshake = async {
                match tls {
                    AdoptTls::Client(config) => {
                        let connector = tokio_rustls::TlsConnector::from(config.inner.clone());
                        let server_name = config.server_name_for(String::new())?;
                        tls_connect(&registry.config, (connector, server_name), stream, name).await
                    }
                    AdoptTls::Server(config) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(config.inner);
                        tls_accept(&registry.config, &acceptor, stream, name).await
                    }
                }
            };
            let (stream, certificates) = tokio::select! {
                done = handshake => match done {
                    Ok(done) => done,
                    Err(error) => {
                        registry
                            .stats
                            .handshake_failures
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(conn = %id, %error, "TLS on an adopted stream failed");
                        return;
                    }
                },
                () = closing.cancelled() => return,
            };
            let ends = Ends {
                peer,
                local,
                certificates,
                ..Ends::default()
            };
            let conn =
                registry.new_connection_as(id, Origin::Adopted, ends, false, registry.shutdown());
            run_stream(registry, conn, stream, events).await;
        });
        Ok(id)
    }
}
