//! The server: the sans-I/O [`Responder`] behind tokio sockets.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use crate::limit::SourceLimits;
use crate::message::HEADER_LEN;
use crate::responder::{Endpoint, Handled, Ignored, ResponderConfig};
use crate::socket::{listen_tcp, server_udp};
use crate::url::Transport;
use crate::{Responder, StunError, StunMessageView};

/// TLS for a server: where to listen and the rustls configuration.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// The address for STUN over TLS (port 0 lets the system choose).
    pub listen: SocketAddr,
    /// The server's certificate and settings.
    pub config: Arc<rustls::ServerConfig>,
}

/// Server settings. Every field has a documented default.
#[derive(Clone, Debug)]
pub struct StunServerConfig {
    /// The primary address. Port 0 lets the system choose. Default:
    /// `0.0.0.0:3478`.
    pub listen: SocketAddr,
    /// The alternate address, which enables RFC 5780: its IP is the
    /// alternate IP and its port the alternate port (0 means the primary
    /// port + 1). The server then listens on all four pairings. Default:
    /// `None`.
    pub alternate: Option<SocketAddr>,
    /// SOFTWARE in responses. Default: `weft-stun` and its version.
    pub software: Option<String>,
    /// Whether responses carry FINGERPRINT. Default: `true`.
    pub fingerprint: bool,
    /// Whether to serve TCP on the primary address too. Default: `false`.
    pub tcp: bool,
    /// Whether to serve TLS, and where. Default: `None`.
    pub tls: Option<ServerTls>,
    /// The most TCP and TLS connections at once (each kind); more are
    /// closed on arrival and counted. Default: 256.
    pub max_connections: usize,
    /// A TCP or TLS connection that sends nothing for this long (or whose
    /// handshake takes this long) is closed. Default: 10 s.
    pub idle_timeout: Duration,
    /// The receive buffer for one datagram; longer ones are cut and then
    /// ignored as malformed. Default: 4096 bytes.
    pub max_message_size: usize,
    /// With a primary port of 0 and RFC 5780, how many times to pick new
    /// ports when one of the four is taken. Default: 16.
    pub bind_attempts: u32,
    /// Answers and RESPONSE-PORT redirects per source address, over every
    /// socket and transport together. Default: [`SourceLimits::default`].
    pub limits: SourceLimits,
}

impl Default for StunServerConfig {
    fn default() -> StunServerConfig {
        StunServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], crate::STUN_PORT)),
            alternate: None,
            software: Some(concat!("weft-stun ", env!("CARGO_PKG_VERSION")).to_owned()),
            fingerprint: true,
            tcp: false,
            tls: None,
            max_connections: 256,
            idle_timeout: Duration::from_secs(10),
            max_message_size: 4096,
            bind_attempts: 16,
            limits: SourceLimits::default(),
        }
    }
}

/// A server's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Messages received (datagrams, and messages on connections).
    pub received: u64,
    /// Responses sent (success and error).
    pub replied: u64,
    /// Messages not answered: not STUN, bad FINGERPRINT, not a request.
    pub ignored: u64,
    /// Requests not answered because their source was over
    /// [`SourceLimits::answers`].
    pub rate_limited: u64,
    /// Requests not answered because their source was over
    /// [`SourceLimits::redirects`].
    pub redirects_refused: u64,
    /// Sources forgotten to stay within [`SourceLimits::max_sources`].
    pub sources_evicted: u64,
    /// Responses that could not be sent.
    pub send_errors: u64,
    /// TCP and TLS connections accepted.
    pub connections: u64,
    /// Connections closed on arrival because of `max_connections`.
    pub refused_connections: u64,
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    replied: AtomicU64,
    ignored: AtomicU64,
    send_errors: AtomicU64,
    connections: AtomicU64,
    refused_connections: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The responder, shared by every socket and connection: its per-source
/// budgets are one table.
type Shared = Arc<Mutex<Responder>>;

/// Hands one message to the responder at the (tokio) clock's now.
fn handle(
    responder: &Shared,
    data: &[u8],
    source: SocketAddr,
    on: Endpoint,
    transport: Transport,
) -> Handled {
    let now = tokio::time::Instant::now().into_std();
    // `handle` cannot leave the responder half-updated: a panic elsewhere
    // while holding the lock does not make it unusable.
    let mut responder = responder.lock().unwrap_or_else(PoisonError::into_inner);
    responder.handle(now, data, source, on, transport)
}

/// A running STUN server. Dropping it stops every task it started.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), weft_stun::StunError> {
/// use weft_stun::{StunServerConfig, StunServer};
/// let server = StunServer::bind(StunServerConfig {
///     listen: "127.0.0.1:0".parse().unwrap(),
///     alternate: Some("127.0.0.2:0".parse().unwrap()), // RFC 5780
///     ..StunServerConfig::default()
/// })
/// .await?;
/// assert_eq!(server.udp_addrs().len(), 4);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StunServer {
    responder: ResponderConfig,
    shared: Shared,
    udp: Vec<SocketAddr>,
    tcp: Option<SocketAddr>,
    tls: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl Drop for StunServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Bound {
    udp: [Option<UdpSocket>; 4],
    tcp: Option<TcpListener>,
    responder: ResponderConfig,
}

fn try_bind(config: &StunServerConfig) -> io::Result<Bound> {
    let primary_socket = server_udp(config.listen)?;
    let primary = primary_socket.local_addr()?;
    let mut udp: [Option<UdpSocket>; 4] = [Some(primary_socket), None, None, None];
    let mut responder = ResponderConfig::new(primary);
    responder.software = config.software.clone();
    responder.fingerprint = config.fingerprint;
    responder.limits = config.limits;
    if let Some(alt) = config.alternate {
        let alt_port = match alt.port() {
            0 => primary
                .port()
                .checked_add(1)
                .ok_or_else(|| io::Error::new(io::ErrorKind::AddrInUse, "no port after 65535"))?,
            p => p,
        };
        responder.alternate = Some(SocketAddr::new(alt.ip(), alt_port));
        for endpoint in &Endpoint::ALL[1..] {
            if let Some(addr) = responder.address(*endpoint) {
                udp[endpoint.index()] = Some(server_udp(addr)?);
            }
        }
    }
    let tcp = if config.tcp {
        Some(listen_tcp(primary)?)
    } else {
        None
    };
    Ok(Bound {
        udp,
        tcp,
        responder,
    })
}

impl StunServer {
    /// Binds every socket the configuration asks for and starts serving.
    /// Needs a tokio runtime. Cancel-safe: sockets bound before the future
    /// is dropped are closed with it.
    pub async fn bind(config: StunServerConfig) -> Result<StunServer, StunError> {
        let retry = config.listen.port() == 0 && (config.alternate.is_some() || config.tcp);
        let attempts = if retry {
            config.bind_attempts.max(1)
        } else {
            1
        };
        let mut last = None;
        let mut bound = None;
        for _ in 0..attempts {
            match try_bind(&config) {
                Ok(b) => {
                    bound = Some(b);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => {
                    return Err(StunError::io(format!("binding {}", config.listen), e));
                }
            }
        }
        let Some(bound) = bound else {
            let e = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse));
            return Err(StunError::io(format!("binding {}", config.listen), e));
        };
        let tls_listener = match &config.tls {
            Some(tls) => Some((
                listen_tcp(tls.listen)
                    .map_err(|e| StunError::io(format!("binding TLS to {}", tls.listen), e))?,
                tokio_rustls::TlsAcceptor::from(tls.config.clone()),
            )),
            None => None,
        };

        let counters = Arc::new(Counters::default());
        let responder: Shared = Arc::new(Mutex::new(Responder::new(bound.responder.clone())));
        let sockets: Arc<[Option<UdpSocket>; 4]> = Arc::new(bound.udp);
        let mut udp = Vec::new();
        let mut tasks = Vec::new();
        for endpoint in Endpoint::ALL {
            if let Some(socket) = &sockets[endpoint.index()] {
                let addr = socket
                    .local_addr()
                    .map_err(|e| StunError::io("reading a local address", e))?;
                udp.push(addr);
                tasks.push(tokio::spawn(serve_udp(
                    sockets.clone(),
                    endpoint,
                    responder.clone(),
                    counters.clone(),
                    config.max_message_size.max(64),
                )));
            }
        }
        let mut tcp = None;
        if let Some(listener) = bound.tcp {
            tcp = listener.local_addr().ok();
            tasks.push(tokio::spawn(accept(
                listener,
                None,
                responder.clone(),
                counters.clone(),
                config.clone(),
            )));
        }
        let mut tls = None;
        if let Some((listener, acceptor)) = tls_listener {
            tls = listener.local_addr().ok();
            tasks.push(tokio::spawn(accept(
                listener,
                Some(acceptor),
                responder.clone(),
                counters.clone(),
                config.clone(),
            )));
        }
        tracing::info!(?udp, ?tcp, ?tls, "STUN server ready");
        Ok(StunServer {
            responder: bound.responder,
            shared: responder,
            udp,
            tcp,
            tls,
            tasks,
            counters,
        })
    }

    /// The primary address, as bound.
    pub fn primary(&self) -> SocketAddr {
        self.responder.primary
    }

    /// The alternate address (alternate IP, alternate port) with RFC 5780.
    pub fn alternate(&self) -> Option<SocketAddr> {
        self.responder.alternate
    }

    /// Every UDP address served: the primary, then with RFC 5780 primary
    /// IP with alternate port, alternate IP with primary port, and the
    /// alternate address.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp.clone()
    }

    /// The TCP address, when serving TCP.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp
    }

    /// The TLS address, when serving TLS.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls
    }

    /// The counters so far.
    pub fn stats(&self) -> ServerStats {
        let c = &self.counters;
        let limits = self
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .limit_stats();
        ServerStats {
            received: c.received.load(Ordering::Relaxed),
            replied: c.replied.load(Ordering::Relaxed),
            ignored: c.ignored.load(Ordering::Relaxed),
            rate_limited: limits.rate_limited,
            redirects_refused: limits.redirects_refused,
            sources_evicted: limits.sources_evicted,
            send_errors: c.send_errors.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
            refused_connections: c.refused_connections.load(Ordering::Relaxed),
        }
    }

    /// Stops serving and waits until every task has ended. Cancel-safe:
    /// the tasks are aborted at once; only the wait is cut short.
    pub async fn close(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

async fn serve_udp(
    sockets: Arc<[Option<UdpSocket>; 4]>,
    endpoint: Endpoint,
    responder: Shared,
    counters: Arc<Counters>,
    buffer: usize,
) {
    let Some(socket) = &sockets[endpoint.index()] else {
        return;
    };
    let mut buf = vec![0u8; buffer];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "STUN server receive failed");
                continue;
            }
        };
        bump(&counters.received);
        match handle(&responder, &buf[..n], from, endpoint, Transport::Udp) {
            Handled::Reply(reply) => {
                let out = sockets[reply.from.index()].as_ref().unwrap_or(socket);
                match out.send_to(&reply.payload, reply.to).await {
                    Ok(_) => bump(&counters.replied),
                    Err(e) => {
                        tracing::debug!(error = %e, to = %reply.to, "STUN server send failed");
                        bump(&counters.send_errors);
                    }
                }
            }
            Handled::Ignored(why) => {
                tracing::trace!(%from, ?why, "STUN datagram ignored");
                count_ignored(&counters, why);
            }
        }
    }
}

async fn accept(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    responder: Shared,
    counters: Arc<Counters>,
    config: StunServerConfig,
) {
    let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
    // Dropping the set (when this task is aborted) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(r) => r,
            Err(e) => {
                // Out of descriptors and the like: do not spin.
                tracing::debug!(error = %e, "STUN server accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            bump(&counters.refused_connections);
            continue;
        };
        bump(&counters.connections);
        let _ = stream.set_nodelay(true);
        let responder = responder.clone();
        let counters = counters.clone();
        let idle = config.idle_timeout;
        let tls = tls.clone();
        connections.spawn(async move {
            let _permit = permit;
            match tls {
                Some(acceptor) => match tokio::time::timeout(idle, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        serve_stream(stream, peer, Transport::Tls, &responder, &counters, idle)
                            .await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
                None => {
                    serve_stream(stream, peer, Transport::Tcp, &responder, &counters, idle).await;
                }
            }
        });
    }
}

/// Answers messages on one connection until it closes, goes idle or sends
/// something that is not STUN.
async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    transport: Transport,
    responder: &Shared,
    counters: &Counters,
    idle: Duration,
) {
    loop {
        let mut header = [0u8; HEADER_LEN];
        match tokio::time::timeout(idle, stream.read_exact(&mut header)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let Ok(Some(len)) = StunMessageView::frame_len(&header) else {
            bump(&counters.ignored);
            break;
        };
        let mut buf = vec![0u8; len];
        buf[..HEADER_LEN].copy_from_slice(&header);
        match tokio::time::timeout(idle, stream.read_exact(&mut buf[HEADER_LEN..])).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        bump(&counters.received);
        match handle(responder, &buf, peer, Endpoint::PRIMARY, transport) {
            Handled::Reply(reply) => {
                if stream.write_all(&reply.payload).await.is_err() || stream.flush().await.is_err()
                {
                    bump(&counters.send_errors);
                    break;
                }
                bump(&counters.replied);
            }
            Handled::Ignored(Ignored::Malformed) => {
                bump(&counters.ignored);
                break;
            }
            Handled::Ignored(why) => count_ignored(counters, why),
        }
    }
    let _ = stream.shutdown().await;
}

/// Counts a message left unanswered; the responder counts those its
/// limits refused.
fn count_ignored(counters: &Counters, why: Ignored) {
    match why {
        Ignored::RateLimited | Ignored::RedirectLimited => {}
        Ignored::Malformed | Ignored::BadFingerprint | Ignored::NotARequest => {
            bump(&counters.ignored);
        }
    }
}
