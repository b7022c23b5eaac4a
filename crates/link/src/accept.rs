//! Accepting: one loop that takes streams from a TCP or Unix listener and
//! starts each as a connection, after the TLS handshake where there is one.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::connection::{Ends, PeerCredentials, run_stream};
use crate::registry::Registry;
use crate::tls::{Secured, bounded_handshake};
use rustls::pki_types::CertificateDer;

use crate::{
    Address, LinkConfig, LinkError, LinkEvent, ListenerId, Origin, Scheme, SocketOptions, socket,
};

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

/// A place among a listener's open connections, given back when the
/// connection's task ends.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A place among at most `max`, or `None` when all are taken.
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then(|| n.saturating_add(1))
        })
        .ok()
        .map(|_| Slot(open.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether an accept failed for want of file descriptors.
fn out_of_descriptors(e: &io::Error) -> bool {
    // The process's limit, or the system's.
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// A descriptor kept open to be given up when the process runs out, so
/// that the connection waiting to be accepted can be accepted and closed.
fn reserve() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
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
    let open = Arc::new(AtomicUsize::new(0));
    let max = registry.config.max_connections_per_listener;
    let mut spare = reserve();
    let refused = || {
        registry
            .stats
            .connections_refused
            .fetch_add(1, Ordering::Relaxed);
    };
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = cancel.cancelled() => break,
        };
        match accepted {
            Ok(accepted) => match Slot::take(&open, max) {
                Some(slot) => {
                    start_accepted(&registry, id, accepted, slot, tls.as_ref(), &events);
                }
                None => {
                    // Dropped here: the peer sees its connection closed.
                    tracing::debug!(listener = %id, max, "connection refused: listener full");
                    refused();
                }
            },
            Err(e) if out_of_descriptors(&e) && spare.is_some() => {
                // Give up the reserve to take the waiting connection and
                // close it, rather than leave it (and those behind it)
                // hanging in the backlog.
                drop(spare.take());
                if let Ok(Ok(accepted)) =
                    tokio::time::timeout(ACCEPT_RETRY, listener.accept()).await
                {
                    drop(accepted);
                    refused();
                }
                tracing::warn!(listener = %id, "accept failed: {e}; refusing connections");
                spare = reserve();
                if spare.is_none() {
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
            Err(e) => {
                tracing::warn!(listener = %id, "accept failed: {e}");
                tokio::time::sleep(ACCEPT_RETRY).await;
                if spare.is_none() {
                    spare = reserve();
                }
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
    slot: Slot,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    events: &mpsc::Sender<LinkEvent>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let events = events.clone();
    let Some(acceptor) = tls else {
        let conn = registry.new_connection(Origin::Listener(id), ends, false, registry.shutdown());
        let run = run_stream(registry.clone(), conn, stream, events);
        registry.spawn(async move {
            let _slot = slot;
            run.await;
        });
        return;
    };
    let acceptor = acceptor.clone();
    let registry2 = registry.clone();
    registry.spawn(async move {
        let _slot = slot;
        let registry = registry2;
        let name = ends
            .peer
            .as_ref()
            .or(ends.local.as_ref())
            .map(ToString::to_string)
            .unwrap_or_default();
        let Some((tls, certificates)) =
            accept_tls(&registry, id, &acceptor, stream, name, &events).await
        else {
            return;
        };
        let ends = Ends {
            certificates,
            ..ends
        };
        let conn = registry.new_connection(Origin::Listener(id), ends, false, registry.shutdown());
        run_stream(registry, conn, tls, events).await;
    });
}

/// The server side of a TLS handshake on a stream, bounded by the link's
/// handshake timeout (the twin of `dial::tls_connect`); `peer` names the
/// other end in errors.
pub(crate) async fn tls_accept<S>(
    cfg: &LinkConfig,
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: S,
    peer: String,
) -> Result<Secured<S>, LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = acceptor.accept(stream);
    bounded_handshake(cfg, peer, async move {
        handshake.await.map(tokio_rustls::TlsStream::Server)
    })
    .await
}

/// [`tls_accept`] for a listener: a failure is counted and reported as
/// `AcceptFailed`.
async fn accept_tls<S>(
    registry: &Registry,
    id: ListenerId,
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: S,
    peer: String,
    events: &mpsc::Sender<LinkEvent>,
) -> Option<(
    tokio_rustls::TlsStream<S>,
    Option<Arc<[CertificateDer<'static>]>>,
)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let error = match tls_accept(&registry.config, acceptor, stream, peer).await {
        Ok(done) => return Some(done),
        Err(error) => error,
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
