//! Accepting: one loop that takes streams from a TCP or Unix listener and
//! starts each as a connection, after the TLS handshake where there is one.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::connection::{Ends, PeerCredentials, run_stream};
use crate::registry::Registry;
use crate::tls::peer_certificates;
use crate::{Address, LinkError, LinkEvent, ListenerId, Origin, Scheme, SocketOptions, socket};

/// How long an accept loop rests after a failed accept (EMFILE and
/// friends), rather than spin on an error that persists.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// A bound stream listener: what the accept loop needs of TCP and Unix.
pub(crate) trait StreamListener: Send + 'static {
    /// The accepted stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next stream, with the addresses of its other end and of ours,
    /// where the socket kind knows them. Cancel-safe.
    fn accept(&self) -> impl Future<Output = io::Result<Accepted<Self::Stream>>> + Send;
}

/// An accepted stream and what is known of its two ends.
pub(crate) struct Accepted<S> {
    pub(crate) stream: S,
    /// What is known of its two ends (no certificates yet).
    pub(crate) ends: Ends,
}

/// A TCP listener; accepted streams get `options` applied.
pub(crate) struct TcpStreams {
    pub(crate) listener: tokio::net::TcpListener,
    pub(crate) options: SocketOptions,
    /// `tcp` or `tls`: the scheme of the addresses reported.
    pub(crate) scheme: Scheme,
}

impl StreamListener for TcpStreams {
    type Stream = tokio::net::TcpStream;

    async fn accept(&self) -> io::Result<Accepted<Self::Stream>> {
        let (stream, peer) = self.listener.accept().await?;
        socket::configure_accepted(&stream, &self.options);
        let local = stream
            .local_addr()
            .ok()
            .map(|a| Address::ip(self.scheme, a));
        Ok(Accepted {
            stream,
            ends: Ends {
                peer: Some(Address::ip(self.scheme, peer)),
                local,
                ..Ends::default()
            },
        })
    }
}

/// A Unix listener; its peers are unnamed, so `local` is the bound address.
pub(crate) struct UnixStreams {
    pub(crate) listener: tokio::net::UnixListener,
    pub(crate) bound: Address,
}

impl StreamListener for UnixStreams {
    type Stream = tokio::net::UnixStream;

    async fn accept(&self) -> io::Result<Accepted<Self::Stream>> {
        let (stream, _) = self.listener.accept().await?;
        let credentials = PeerCredentials::of(&stream);
        Ok(Accepted {
            stream,
            ends: Ends {
                local: Some(self.bound.clone()),
                credentials,
                ..Ends::default()
            },
        })
    }
}

/// Accepts until `cancel`, starting each stream as a connection of the
/// listener `id`.
pub(crate) async fn accept_task<L: StreamListener>(
    registry: Arc<Registry>,
    id: ListenerId,
    listener: L,
    tls: Option<tokio_rustls::TlsAcceptor>,
    cancel: CancellationToken,
    events: mpsc::Sender<LinkEvent>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = cancel.cancelled() => break,
        };
        match accepted {
            Ok(accepted) => start_accepted(&registry, id, accepted, tls.as_ref(), &events),
            Err(e) => {
                tracing::warn!(listener = %id, "accept failed: {e}");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// Runs an accepted stream as a connection, after the TLS handshake when
/// the listener has TLS (in its own task, so a slow handshake never holds
/// up the accept loop).
fn start_accepted<S>(
    registry: &Arc<Registry>,
    id: ListenerId,
    Accepted { stream, ends }: Accepted<S>,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    events: &mpsc::Sender<LinkEvent>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let events = events.clone();
    let Some(acceptor) = tls else {
        let conn = registry.new_connection(Origin::Listener(id), ends, false, registry.shutdown());
        registry.spawn(run_stream(registry.clone(), conn, stream, events));
        return;
    };
    let acceptor = acceptor.clone();
    let registry2 = registry.clone();
    registry.spawn(async move {
        let registry = registry2;
        let name = ends
            .peer
            .as_ref()
            .or(ends.local.as_ref())
            .map(ToString::to_string)
            .unwrap_or_default();
        let Some(tls) = accept_tls(&registry, id, &acceptor, stream, name, &events).await else {
            return;
        };
        let tls = tokio_rustls::TlsStream::Server(tls);
        let ends = Ends {
            certificates: peer_certificates(&tls),
            ..ends
        };
        let conn = registry.new_connection(Origin::Listener(id), ends, false, registry.shutdown());
        run_stream(registry, conn, tls, events).await;
    });
}

/// The server side of a TLS handshake, bounded by the link's handshake
/// timeout; a failure is counted and reported as `AcceptFailed`.
async fn accept_tls<S>(
    registry: &Registry,
    id: ListenerId,
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: S,
    peer: String,
    events: &mpsc::Sender<LinkEvent>,
) -> Option<tokio_rustls::server::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let timeout = registry.config.tls_handshake_timeout;
    let error = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => return Some(s),
        Ok(Err(source)) => LinkError::Tls { peer, source },
        Err(_) => LinkError::HandshakeTimeout { peer, timeout },
    };
    registry
        .stats
        .accept_failures
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(listener = %id, %error, "TLS accept failed");
    registry.inform(
        events,
        LinkEvent::AcceptFailed {
            listener: id,
            error: Arc::new(error),
        },
    );
    None
}
