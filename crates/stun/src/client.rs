//! The client: Binding requests over UDP (a [`StunClient`], many
//! transactions on one socket), TCP and TLS ([`binding_tcp`],
//! [`binding_tls`]), or any of them from a [`ServerUrl`] ([`binding`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::attribute::{AttributeType, ChangeRequest};
use crate::error::DecodeError;
use crate::integrity::Trailer;
use crate::socket::{self, local_towards, unspecified_for, with_timeout};
use crate::transaction::{ClientStats, Response, RetransmitConfig, Transactions, canonical};
use crate::url::Transport;
use crate::{Attribute, Class, ServerUrl, StunError, StunMessage, StunMessageView};

/// Client settings. Every field has a documented default.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// UDP retransmission (RFC 8489 §6.2.1). Default: RTO 500 ms, Rc 7,
    /// Rm 16, which gives up after 39.5 s.
    pub retransmit: RetransmitConfig,
    /// The local address to bind. A port of 0 lets the system choose. When
    /// it is of the other family than a server's address, that server is
    /// reached from the unspecified address of its own family. Default:
    /// `None`, the unspecified address of the server's family.
    pub local: Option<SocketAddr>,
    /// The network interface to bind to, by name (SO_BINDTODEVICE, Linux
    /// only, needs CAP_NET_RAW). Default: `None`.
    pub interface: Option<String>,
    /// SOFTWARE sent in requests. Default: `weft-stun` and its version.
    pub software: Option<String>,
    /// Whether requests carry FINGERPRINT. Default: `true`.
    pub fingerprint: bool,
    /// The limit for one TCP or TLS transaction, connecting included
    /// (RFC 8489's Ti). Default: 39.5 s.
    pub stream_timeout: Duration,
    /// The limit for resolving a server's name. Default: 5 s.
    pub dns_timeout: Duration,
    /// The TLS client configuration for `tls://` servers. Default: `None`
    /// (TLS servers fail with [`StunError::TlsConfigMissing`]).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The most transactions in flight on one UDP socket; more fail with
    /// [`StunError::TooManyTransactions`]. Default: 64.
    pub max_in_flight: usize,
    /// The receive buffer for one datagram; longer datagrams are cut by the
    /// system and then ignored as malformed. Default: 4096 bytes.
    pub max_message_size: usize,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            retransmit: RetransmitConfig::default(),
            local: None,
            interface: None,
            software: Some(concat!("weft-stun ", env!("CARGO_PKG_VERSION")).to_owned()),
            fingerprint: true,
            stream_timeout: Duration::from_millis(39_500),
            dns_timeout: Duration::from_secs(5),
            tls: None,
            max_in_flight: 64,
            max_message_size: 4096,
        }
    }
}

impl ClientConfig {
    /// This configuration with its limits cut so that [`binding`] and
    /// [`query_servers`](crate::query_servers), which resolve a name and then
    /// run one transaction, give up within `total`: name resolution gets at
    /// most a quarter of it, and one transaction (UDP retransmissions, or a
    /// TCP or TLS exchange) the rest.
    ///
    /// The UDP schedule keeps RFC 8489's shape (the same RTO, doubling
    /// after each request) with as many requests and as long a final wait
    /// (at most Rc and Rm) as fit; a schedule that already fits is kept
    /// as it is. A command that must answer a person quickly uses this; the
    /// library's defaults stay the RFC's.
    pub fn within(&self, total: Duration) -> ClientConfig {
        let dns_timeout = self.dns_timeout.min(total / 4);
        let transaction = total.saturating_sub(dns_timeout);
        ClientConfig {
            retransmit: fit_retransmit(self.retransmit, transaction),
            stream_timeout: self.stream_timeout.min(transaction),
            dns_timeout,
            ..self.clone()
        }
    }

    /// The address to bind for talking to `server`: [`local`](Self::local)
    /// when of the server's family, else the unspecified address.
    pub fn local_for(&self, server: SocketAddr) -> SocketAddr {
        match self.local {
            Some(local) if local.is_ipv4() == server.is_ipv4() => local,
            _ => unspecified_for(server),
        }
    }
}

/// `retransmit` cut to give up within `total`: the same RTO, the most
/// requests (at most Rc) whose schedule leaves one RTO after the last, then
/// the longest final wait (at most Rm RTOs) that fits. When not even two
/// requests would fit (`total` under two RTOs), the RTO becomes a third of
/// `total`, so that one retransmission still goes out.
pub(crate) fn fit_retransmit(retransmit: RetransmitConfig, total: Duration) -> RetransmitConfig {
    if retransmit.total_timeout() <= total {
        return retransmit;
    }
    let rto = if retransmit.rc > 1 && total < retransmit.rto.saturating_mul(2) {
        total / 3
    } else {
        retransmit.rto.min(total)
    };
    if rto.is_zero() {
        return RetransmitConfig { rto, rc: 1, rm: 1 };
    }
    // Request n goes out at rto × (2^(n-1) - 1); one more fits while
    // rto × 2^n, its time plus one RTO, is within total.
    let mut rc = 1u32;
    while rc < retransmit.rc.max(1) && rc < 31 && rto.saturating_mul(1 << rc) <= total {
        rc += 1;
    }
    let last = rto.saturating_mul((1u32 << (rc - 1)) - 1);
    let left = total.saturating_sub(last).as_nanos() / rto.as_nanos();
    let rm = u32::try_from(left)
        .unwrap_or(u32::MAX)
        .clamp(1, retransmit.rm.max(1));
    RetransmitConfig { rto, rc, rm }
}

/// The answer to a Binding request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The transport used.
    pub transport: Transport,
    /// The server's address.
    pub server: SocketAddr,
    /// The local address the request left from (the routed source IP when
    /// the socket was bound to an unspecified one).
    pub local: SocketAddr,
    /// The reflexive (mapped) address the server saw.
    pub mapped: SocketAddr,
    /// RESPONSE-ORIGIN (or SOURCE-ADDRESS), if the server sent one.
    pub response_origin: Option<SocketAddr>,
    /// OTHER-ADDRESS (or CHANGED-ADDRESS): present when the server does
    /// RFC 5780.
    pub other_address: Option<SocketAddr>,
    /// The server's SOFTWARE.
    pub software: Option<String>,
    /// Time from the first request to the response.
    pub elapsed: Duration,
    /// How many requests were sent (1 over TCP and TLS).
    pub requests: u32,
    /// The whole response.
    pub response: StunMessage,
}

impl Binding {
    /// Whether the mapped address is the local one: no NAT on the path.
    pub fn is_local(&self) -> bool {
        canonical(self.mapped) == canonical(self.local)
    }

    fn from_response(
        response: StunMessage,
        transport: Transport,
        server: SocketAddr,
        local: SocketAddr,
        elapsed: Duration,
        requests: u32,
    ) -> Result<Binding, StunError> {
        if response.class == Class::ErrorResponse {
            let (code, reason) = match response.error_code() {
                Some(e) => (e.code, e.reason.clone()),
                None => {
                    return Err(StunError::IncompleteResponse {
                        server,
                        missing: AttributeType::ERROR_CODE,
                    });
                }
            };
            return Err(StunError::ErrorResponse {
                server,
                code,
                reason,
            });
        }
        let mapped = response
            .mapped_address()
            .ok_or(StunError::IncompleteResponse {
                server,
                missing: AttributeType::XOR_MAPPED_ADDRESS,
            })?;
        Ok(Binding {
            transport,
            server,
            local,
            mapped,
            response_origin: response.response_origin(),
            other_address: response.other_address(),
            software: response.software().map(str::to_owned),
            elapsed,
            requests,
            response,
        })
    }
}

/// Extra attributes for a Binding request (RFC 5780).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindingOptions {
    /// Send CHANGE-REQUEST with these flags.
    pub change_request: Option<ChangeRequest>,
    /// Send RESPONSE-PORT: the server answers to this port.
    pub response_port: Option<u16>,
    /// Accept the response only from this address. Default: the server's
    /// address. With CHANGE-REQUEST the server answers from another
    /// address, which goes here.
    pub expect_from: Option<SocketAddr>,
}

fn binding_request(config_software: Option<&str>, options: &BindingOptions) -> StunMessage {
    let mut request = StunMessage::binding_request();
    if let Some(software) = config_software {
        request.push(Attribute::Software(software.to_owned()));
    }
    if let Some(change) = options.change_request {
        request.push(Attribute::ChangeRequest(change));
    }
    if let Some(port) = options.response_port {
        request.push(Attribute::ResponsePort(port));
    }
    request
}

enum Command {
    Start {
        request: StunMessage,
        payload: Bytes,
        destination: SocketAddr,
        expect_from: SocketAddr,
        reply: oneshot::Sender<Result<Response, StunError>>,
    },
}

#[derive(Debug)]
struct Inner {
    commands: mpsc::Sender<Command>,
    local: SocketAddr,
    interface: Option<String>,
    software: Option<String>,
    fingerprint: bool,
    stats: Arc<Mutex<ClientStats>>,
}

/// A STUN client on one UDP socket. Any number of transactions may be in
/// flight at once (up to [`ClientConfig::max_in_flight`]); responses are
/// matched by transaction id and source address, and everything else that
/// arrives is ignored and counted ([`ClientStats`]).
///
/// One task owns the socket and runs the retransmission timers of the
/// sans-I/O [`Transactions`]. Handles are cheap clones; the task ends when
/// the last handle is dropped and nothing is in flight.
#[derive(Clone, Debug)]
pub struct StunClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Start {
                destination,
                request,
                ..
            } => write!(f, "Start({} to {destination})", request.transaction_id),
        }
    }
}

impl StunClient {
    /// Binds a UDP socket to `local` (and to the configuration's
    /// interface), and starts the task that owns it. Needs a tokio runtime.
    /// Cancel-safe: nothing is started before it completes.
    pub async fn bind(local: SocketAddr, config: &ClientConfig) -> Result<StunClient, StunError> {
        let socket = socket::bind_udp(local, config.interface.as_deref())?;
        let local = socket
            .local_addr()
            .map_err(|e| StunError::io("reading the local address", e))?;
        let (commands, receiver) = mpsc::channel(config.max_in_flight.max(1));
        let stats = Arc::new(Mutex::new(ClientStats::default()));
        let core = Transactions::new(config.retransmit, config.max_in_flight);
        tokio::spawn(drive(
            socket,
            core,
            receiver,
            stats.clone(),
            config.max_message_size.max(64),
        ));
        tracing::debug!(%local, "STUN client bound");
        Ok(StunClient {
            inner: Arc::new(Inner {
                commands,
                local,
                interface: config.interface.clone(),
                software: config.software.clone(),
                fingerprint: config.fingerprint,
                stats,
            }),
        })
    }

    /// The socket's local address (as bound: the IP may be unspecified).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// The local address requests to `server` leave from: the bound one,
    /// with the routed source IP when bound to an unspecified IP.
    pub fn local_towards(&self, server: SocketAddr) -> SocketAddr {
        local_towards(self.inner.local, server, self.inner.interface.as_deref())
    }

    /// The socket's counters.
    pub fn stats(&self) -> ClientStats {
        *self.inner.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A Binding request to `server`. Cancel-safe: dropping the future
    /// abandons the transaction, whose retransmissions then stop.
    pub async fn binding(&self, server: SocketAddr) -> Result<Binding, StunError> {
        self.binding_with(server, BindingOptions::default()).await
    }

    /// A Binding request with RFC 5780 options. Cancel-safe, like
    /// [`binding`](Self::binding).
    pub async fn binding_with(
        &self,
        server: SocketAddr,
        options: BindingOptions,
    ) -> Result<Binding, StunError> {
        let request = binding_request(self.inner.software.as_deref(), &options);
        let trailer = Trailer {
            fingerprint: self.inner.fingerprint,
            ..Trailer::default()
        };
        let expect_from = options.expect_from.unwrap_or(server);
        let response = self
            .request(&request, &trailer, server, expect_from)
            .await?;
        Binding::from_response(
            response.message,
            Transport::Udp,
            server,
            self.local_towards(server),
            response.elapsed,
            response.requests,
        )
    }

    /// Any request: encoded with `trailer`, sent to `server` with
    /// retransmissions, answered from `expect_from`. Returns the response
    /// whatever its class (check [`StunMessageView::verify_integrity`] on
    /// [`Response::raw`] when credentials are in use). Cancel-safe.
    pub async fn request(
        &self,
        request: &StunMessage,
        trailer: &Trailer<'_>,
        server: SocketAddr,
        expect_from: SocketAddr,
    ) -> Result<Response, StunError> {
        let payload = Bytes::from(request.encode_with(trailer)?);
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Start {
                request: request.clone(),
                payload,
                destination: server,
                expect_from,
                reply,
            })
            .await
            .map_err(|_| StunError::Closed)?;
        answer.await.map_err(|_| StunError::Closed)?
    }
}

/// The task that owns a client's UDP socket.
async fn drive(
    socket: UdpSocket,
    mut core: Transactions,
    mut commands: mpsc::Receiver<Command>,
    stats: Arc<Mutex<ClientStats>>,
    buffer: usize,
) {
    let mut waiting: HashMap<crate::TransactionId, oneshot::Sender<Result<Response, StunError>>> =
        HashMap::new();
    let mut buf = vec![0u8; buffer];
    let mut open = true;
    loop {
        let now = clock();
        core.handle_timeout(now);
        // Callers that gave up: stop their retransmissions.
        waiting.retain(|id, reply| {
            if reply.is_closed() {
                core.cancel(*id);
                false
            } else {
                true
            }
        });
        while let Some(t) = core.poll_transmit(now) {
            if let Err(e) = socket.send_to(&t.payload, t.destination).await {
                tracing::debug!(error = %e, destination = %t.destination, "STUN send failed");
                core.cancel(t.transaction_id);
                if let Some(reply) = waiting.remove(&t.transaction_id) {
                    let _ = reply.send(Err(StunError::io(
                        format!("sending to {}", t.destination),
                        e,
                    )));
                }
            }
        }
        while let Some(outcome) = core.poll_outcome() {
            if let Some(reply) = waiting.remove(&outcome.transaction_id) {
                let _ = reply.send(outcome.result);
            }
        }
        *stats.lock().unwrap_or_else(|p| p.into_inner()) = core.stats();
        if !open && core.in_flight() == 0 {
            break;
        }
        let deadline = core.poll_timeout();
        tokio::select! {
            command = commands.recv(), if open => match command {
                Some(Command::Start { request, payload, destination, expect_from, reply }) => {
                    match core.start(&request, payload, destination, expect_from, clock()) {
                        Ok(id) => {
                            waiting.insert(id, reply);
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
                None => open = false,
            },
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, from)) => {
                    let what = core.handle_datagram(&buf[..n], from, clock());
                    tracing::trace!(%from, ?what, "STUN datagram");
                }
                Err(e) => tracing::debug!(error = %e, "STUN receive failed"),
            },
            () = sleep_until(deadline), if deadline.is_some() => {}
        }
    }
    tracing::debug!("STUN client task ended");
}

/// Now, on the runtime's clock (which tests may pause), as the core takes it.
fn clock() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d.into()).await;
    }
}

/// One Binding request over TCP to `server` (one connection, closed
/// afterwards), within [`ClientConfig::stream_timeout`]. Cancel-safe:
/// dropping the future closes the connection.
pub async fn binding_tcp(server: SocketAddr, config: &ClientConfig) -> Result<Binding, StunError> {
    binding_stream(server, None, config).await
}

/// One Binding request over TLS to `server`, verified with
/// [`ClientConfig::tls`] against `server_name` (a DNS name or an IP
/// address), within [`ClientConfig::stream_timeout`]. Cancel-safe, like
/// [`binding_tcp`].
pub async fn binding_tls(
    server: SocketAddr,
    server_name: &str,
    config: &ClientConfig,
) -> Result<Binding, StunError> {
    binding_stream(server, Some(server_name), config).await
}

async fn binding_stream(
    server: SocketAddr,
    tls_name: Option<&str>,
    config: &ClientConfig,
) -> Result<Binding, StunError> {
    let transport = if tls_name.is_some() {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    let tls = match tls_name {
        Some(name) => {
            let tls = config
                .tls
                .clone()
                .ok_or_else(|| StunError::TlsConfigMissing {
                    server: format!("tls://{server}"),
                })?;
            let name = rustls_pki_types::ServerName::try_from(name.to_owned()).map_err(|e| {
                StunError::Tls {
                    server: server.to_string(),
                    source: io::Error::new(io::ErrorKind::InvalidInput, e),
                }
            })?;
            Some((tokio_rustls::TlsConnector::from(tls), name))
        }
        None => None,
    };
    let local_ip: Option<IpAddr> = config
        .local
        .filter(|l| l.is_ipv4() == server.is_ipv4())
        .map(|l| l.ip());
    let request = binding_request(config.software.as_deref(), &BindingOptions::default());
    let payload = request.encode_with(&Trailer {
        fingerprint: config.fingerprint,
        ..Trailer::default()
    })?;
    let started = clock();
    with_timeout(server, config.stream_timeout, async {
        let tcp = socket::connect_tcp(server, local_ip, config.interface.as_deref()).await?;
        let local = tcp
            .local_addr()
            .map_err(|e| StunError::io("reading the local address", e))?;
        let response = match tls {
            Some((connector, name)) => {
                let mut stream =
                    connector
                        .connect(name, tcp)
                        .await
                        .map_err(|source| StunError::Tls {
                            server: server.to_string(),
                            source,
                        })?;
                let r = exchange(&mut stream, &request, &payload, server).await;
                let _ = stream.shutdown().await;
                r?
            }
            None => {
                let mut stream = tcp;
                exchange(&mut stream, &request, &payload, server).await?
            }
        };
        Binding::from_response(response, transport, server, local, started.elapsed(), 1)
    })
    .await
}

/// Writes one request and reads messages until the response to it.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &StunMessage,
    payload: &[u8],
    server: SocketAddr,
) -> Result<StunMessage, StunError> {
    stream
        .write_all(payload)
        .await
        .map_err(|e| StunError::io(format!("writing to {server}"), e))?;
    stream
        .flush()
        .await
        .map_err(|e| StunError::io(format!("writing to {server}"), e))?;
    loop {
        let mut header = [0u8; crate::message::HEADER_LEN];
        read_exact(stream, &mut header, server).await?;
        let len = StunMessageView::frame_len(&header)?.unwrap_or(crate::message::HEADER_LEN);
        let mut buf = vec![0u8; len];
        buf[..crate::message::HEADER_LEN].copy_from_slice(&header);
        read_exact(stream, &mut buf[crate::message::HEADER_LEN..], server).await?;
        let view = StunMessageView::new_checked(&buf)?;
        if !view.class().is_response()
            || view.transaction_id() != request.transaction_id
            || view.method() != request.method
        {
            tracing::debug!(%server, "ignoring a message that is not our response");
            continue;
        }
        view.verify_fingerprint()?;
        let message = view.to_message()?;
        if message.class == Class::SuccessResponse {
            let unknown = message.unknown_comprehension_required();
            if !unknown.is_empty() {
                return Err(DecodeError::UnknownComprehensionRequired(unknown).into());
            }
        }
        return Ok(message);
    }
}

async fn read_exact<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
    server: SocketAddr,
) -> Result<(), StunError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Err(StunError::ConnectionClosed { server })
        }
        Err(e) => Err(StunError::io(format!("reading from {server}"), e)),
    }
}

/// One Binding request to the server a URL names, over its transport (a
/// fresh UDP socket for `udp`). For many servers at once, see
/// [`query_servers`](crate::query_servers). Cancel-safe.
pub async fn binding(url: &ServerUrl, config: &ClientConfig) -> Result<Binding, StunError> {
    let prefer_ipv4 = config.local.map(|l| l.is_ipv4());
    let server = url.resolve(config.dns_timeout, prefer_ipv4).await?;
    match url.transport {
        Transport::Udp => {
            let client = StunClient::bind(config.local_for(server), config).await?;
            client.binding(server).await
        }
        Transport::Tcp => binding_tcp(server, config).await,
        Transport::Tls => binding_tls(server, &url.host, config).await,
    }
}

/// A TLS client configuration (ring provider, safe default protocol
/// versions, no client certificate) trusting the certificates of a PEM
/// bundle.
pub fn tls_config_from_pem(pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, StunError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let mut added = 0usize;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| StunError::Tls {
            server: "(trust anchors)".into(),
            source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        })?;
        if roots.add(cert).is_ok() {
            added += 1;
        }
    }
    if added == 0 {
        return Err(StunError::Tls {
            server: "(trust anchors)".into(),
            source: io::Error::new(io::ErrorKind::InvalidData, "no usable certificate"),
        });
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StunError::Tls {
        server: "(configuration)".into(),
        source: io::Error::other(e),
    })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A TLS client configuration trusting the system's CA bundle: the file
/// named by `SSL_CERT_FILE`, else the first of the usual Linux and BSD
/// locations that exists.
pub fn system_tls_config() -> Result<Arc<rustls::ClientConfig>, StunError> {
    let mut candidates: Vec<std::path::PathBuf> = Vec::new();
    if let Some(file) = std::env::var_os("SSL_CERT_FILE") {
        candidates.push(file.into());
    }
    for path in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ] {
        candidates.push(path.into());
    }
    for path in &candidates {
        if let Ok(pem) = std::fs::read(path) {
            return tls_config_from_pem(&pem);
        }
    }
    Err(StunError::Tls {
        server: "(trust anchors)".into(),
        source: io::Error::new(
            io::ErrorKind::NotFound,
            "no system CA bundle found (set SSL_CERT_FILE)",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_default_schedule_stays_the_rfcs() {
        let config = ClientConfig::default();
        assert_eq!(config.retransmit.total_timeout(), ms(39_500));
        let roomy = config.within(Duration::from_secs(60));
        assert_eq!(roomy.retransmit, config.retransmit);
        assert_eq!(roomy.stream_timeout, config.stream_timeout);
    }

    #[test]
    fn a_schedule_cut_to_five_seconds() {
        // Requests at 0, 0.5, 1.5 and 3.5 s; gives up at 5 s.
        let fitted = fit_retransmit(RetransmitConfig::default(), ms(5_000));
        assert_eq!(
            fitted,
            RetransmitConfig {
                rto: ms(500),
                rc: 4,
                rm: 3
            }
        );
        assert_eq!(fitted.total_timeout(), ms(5_000));
        // With name resolution: a quarter for it, 3.75 s for the
        // transaction, which gives up at 3.5 s.
        let config = ClientConfig::default().within(ms(5_000));
        assert_eq!(config.dns_timeout, ms(1_250));
        assert_eq!(config.stream_timeout, ms(3_750));
        assert_eq!(config.retransmit.total_timeout(), ms(3_500));
    }

    #[test]
    fn every_cut_schedule_fits() {
        let defaults = RetransmitConfig::default();
        for total in (0..=40_000).step_by(50).map(ms) {
            let fitted = fit_retransmit(defaults, total);
            assert!(fitted.total_timeout() <= total, "{total:?}: {fitted:?}");
            assert!(fitted.rc >= 1 && fitted.rc <= defaults.rc, "{fitted:?}");
            assert!(fitted.rm >= 1 && fitted.rm <= defaults.rm, "{fitted:?}");
            let config = ClientConfig::default().within(total);
            let steps = config.dns_timeout + config.retransmit.total_timeout();
            assert!(steps <= total, "{total:?}: {config:?}");
        }
        // Under two RTOs: still one retransmission, a third of the way.
        let short = fit_retransmit(defaults, ms(900));
        assert_eq!((short.rto, short.rc, short.rm), (ms(300), 2, 2));
        assert_eq!(short.total_timeout(), ms(900));
        let single = RetransmitConfig { rc: 1, ..defaults };
        let tiny = fit_retransmit(single, ms(300));
        assert_eq!((tiny.rto, tiny.rc, tiny.rm), (ms(300), 1, 1));
    }
}
