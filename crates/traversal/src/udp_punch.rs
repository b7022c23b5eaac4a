//! The shell around [`PunchSchedule`]: one task owns the UDP punching
//! socket (socket 0) and, per schedule, the birthday sockets; learns
//! socket 0's mapping from the rendezvous's STUN (and whether it varies
//! by destination, from RFC 5780's other address); feeds each peer's
//! schedule what arrives and sends what it polls out; and when a path
//! opens, hands that very socket to messaging's link
//! ([`Link::adopt_quic`](weft_link::Link::adopt_quic)), where QUIC runs on
//! the hole: the side with the smaller identity connects, the other
//! accepts (TLS: `punch_tls.rs`). Messaging's handshake then runs on the
//! QUIC connection, which becomes one more path to the peer.
//!
//! Punch packets (`PROTOCOL.md`, "Direct UDP paths"): `3f 57 50 01`, a
//! type (1 punch, 2 answer, 3 chosen), a `u8` length and the sender's
//! identity. The first byte is neither STUN's (0 to 3) nor QUIC's (the
//! fixed bit 0x40 is clear), so a late punch on a socket QUIC took is
//! dropped there.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weft_link::address::Scheme;
use weft_link::{Address, ConnectOptions};
use weft_messaging::{Identity, WeakMessaging};
use weft_stun::StunMessage;

use crate::choice::PathChoice;
use crate::config::TraversalConfig;
use crate::path::Transport;
use crate::path_tls::PathTls;
use crate::punch::{PunchConfig, PunchEvent, PunchKind, PunchSchedule, STRATEGY_UDP_PUNCH};
use crate::punch_tls;
use crate::wire::{Candidate, CandidateKind, CandidateTransport, Frame};

/// A punch packet's first bytes: a magic and the version.
const MAGIC: [u8; 4] = [0x3f, b'W', b'P', 1];
const PUNCH: u8 = 1;
const ANSWER: u8 = 2;
const CHOSEN: u8 = 3;
/// The largest datagram read while punching (punches and STUN answers
/// are small).
const READ_BUF: usize = 1500;
/// How long one STUN request waits for its answer, and how many are sent.
const STUN_WAIT: Duration = Duration::from_millis(250);
const STUN_TRIES: u32 = 3;
/// How long an accepting end's QUIC listener on a punched socket waits
/// for the connecting end before it is removed.
const ACCEPT_WINDOW: Duration = Duration::from_secs(10);
/// Peers remembered as sent our UDP candidates, at most (each is
/// forgotten after the punching timeout).
const MAX_TOLD: usize = 256;

/// What the direct shell passes on to this one.
#[derive(Debug)]
pub(crate) enum PunchInput {
    /// Registered at the rendezvous: learn socket 0's mapping if not yet
    /// (the rendezvous has a second STUN server on this port of its STUN
    /// IP, when it has no RFC 5780 alternate address).
    Registered(Option<u16>),
    /// The peer's candidates.
    Candidates(Identity, Vec<Candidate>),
    /// The peer's start signal for UDP punching, with its delay.
    Start(Identity, Duration),
    /// Messaging has a direct connection to the peer, or a direct TCP
    /// path to it was adopted: stop punching.
    Connected(Identity),
}

/// The direct shell's side of this one.
pub(crate) struct PunchHandle {
    pub(crate) input: mpsc::Sender<PunchInput>,
    /// Our UDP candidates, once STUN answered (empty before).
    pub(crate) candidates: Arc<Mutex<Vec<Candidate>>>,
}

/// One datagram a socket's reader passed on: the peer whose birthday
/// socket it came on (`None`: socket 0), the socket's index, the sender.
type Received = (Option<Identity>, usize, SocketAddr, Vec<u8>);

/// What learning socket 0's mapping found: the socket itself, our UDP
/// candidates, and whether the mapping varies by destination.
struct Learnt {
    socket: UdpSocket,
    ours: Vec<Candidate>,
    varies: bool,
}

/// A socket and the task reading it.
struct Reading {
    socket: Arc<UdpSocket>,
    reader: JoinHandle<()>,
}

impl Reading {
    fn start(
        socket: UdpSocket,
        key: (Option<Identity>, usize),
        to: mpsc::Sender<Received>,
    ) -> Self {
        let socket = Arc::new(socket);
        let reading = socket.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; READ_BUF];
            while let Ok((n, from)) = reading.recv_from(&mut buf).await {
                // After the pair is named QUIC follows at once: what comes
                // next stays in the socket for QUIC to read.
                let named = matches!(parse(&buf[..n]), Some((PunchKind::Chosen, _)));
                let got = (key.0.clone(), key.1, from, buf[..n].to_vec());
                if to.send(got).await.is_err() || named {
                    break;
                }
            }
        });
        Reading { socket, reader }
    }

    /// Stops the reader and gives the socket back, for QUIC.
    async fn take(self) -> io::Result<std::net::UdpSocket> {
        self.reader.abort();
        let _ = self.reader.await;
        let socket = Arc::try_unwrap(self.socket)
            .map_err(|_| io::Error::other("the punching socket is still shared"))?;
        socket.into_std()
    }
}

/// A peer's schedule and its birthday sockets (index 1 and up).
struct Run {
    schedule: PunchSchedule,
    birthday: HashMap<usize, Reading>,
}

/// Starts the shell (`traversal`'s `punch`, with its `tls` and the host
/// addresses of its `direct`) for the identity `choice` chooses for;
/// `stun` is the rendezvous's STUN address.
pub(crate) fn spawn(
    messaging: WeakMessaging,
    traversal: &TraversalConfig,
    choice: Arc<Mutex<PathChoice>>,
    stun: Option<SocketAddr>,
    signals: mpsc::Sender<Frame>,
    closing: watch::Receiver<bool>,
) -> io::Result<PunchHandle> {
    let (config, tls) = (traversal.punch.clone(), traversal.tls.clone());
    let host_ips = traversal.direct.host_ips.clone();
    let socket = bind()?;
    let me = choice
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .me()
        .clone();
    let (input, input_rx) = mpsc::channel(64);
    let candidates = Arc::new(Mutex::new(Vec::new()));
    let (received_tx, received) = mpsc::channel(256);
    let (learnt_tx, learnt) = mpsc::channel(1);
    let shell = Shell {
        messaging,
        me,
        config,
        tls,
        choice,
        host_ips,
        stun,
        second_stun: None,
        signals,
        candidates: candidates.clone(),
        socket0: Some(socket),
        learning: None,
        learnt_tx,
        reading0: None,
        we_vary: false,
        runs: HashMap::new(),
        told: HashMap::new(),
        received_tx,
        seed: seed(),
    };
    tokio::spawn(shell.run(input_rx, received, learnt, closing));
    Ok(PunchHandle { input, candidates })
}

/// A new IPv4 UDP socket on any port.
fn bind() -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// A seed for the birthday probes' ports that differs between processes
/// and runs.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

struct Shell {
    messaging: WeakMessaging,
    me: Identity,
    config: PunchConfig,
    /// Certificates for QUIC's TLS (a throw-away one without).
    tls: Option<PathTls>,
    /// The one direct path per peer and round, shared with the TCP race.
    choice: Arc<Mutex<PathChoice>>,
    /// The host addresses offered (the direct race's), `None`: this
    /// host's.
    host_ips: Option<Vec<IpAddr>>,
    stun: Option<SocketAddr>,
    /// The rendezvous's second STUN server, when it named one.
    second_stun: Option<SocketAddr>,
    signals: mpsc::Sender<Frame>,
    candidates: Arc<Mutex<Vec<Candidate>>>,
    /// Socket 0 before its mapping is learnt and its reader started.
    socket0: Option<UdpSocket>,
    /// The task learning socket 0's mapping, while it runs: STUN waits
    /// up to 1.5 s for a silent server, and the shell goes on meanwhile
    /// (its inputs wait).
    learning: Option<JoinHandle<()>>,
    learnt_tx: mpsc::Sender<Learnt>,
    reading0: Option<Reading>,
    we_vary: bool,
    runs: HashMap<Identity, Run>,
    /// The peers sent our UDP candidates lately, and when.
    told: HashMap<Identity, std::time::Instant>,
    received_tx: mpsc::Sender<Received>,
    seed: u64,
}

impl Shell {
    async fn run(
        mut self,
        mut input: mpsc::Receiver<PunchInput>,
        mut received: mpsc::Receiver<Received>,
        mut learnt: mpsc::Receiver<Learnt>,
        mut closing: watch::Receiver<bool>,
    ) {
        loop {
            let wake = self
                .runs
                .values()
                .filter_map(|r| r.schedule.poll_timeout())
                .min()
                .map(Instant::from_std);
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // Inputs wait while socket 0's mapping is learnt: a peer's
                // candidates or start signal need socket 0 to punch from.
                // Datagrams, timers and the close go on meanwhile.
                got = input.recv(), if self.learning.is_none() => match got {
                    Some(got) => self.handle_input(got).await,
                    None => break,
                },
                Some((peer, socket, from, bytes)) = received.recv() => {
                    self.handle_datagram(peer, socket, from, &bytes);
                }
                Some(found) = learnt.recv() => self.handle_learnt(found),
                _ = sleep => {}
                _ = closing.changed() => break,
            }
            self.step().await;
        }
        for run in self.runs.into_values() {
            for reading in run.birthday.into_values() {
                reading.reader.abort();
            }
        }
        if let Some(reading) = self.reading0 {
            reading.reader.abort();
        }
        if let Some(learning) = self.learning {
            learning.abort();
        }
    }

    fn now() -> std::time::Instant {
        Instant::now().into_std()
    }

    async fn handle_input(&mut self, input: PunchInput) {
        let now = Self::now();
        match input {
            PunchInput::Registered(second_stun) => {
                self.second_stun = second_stun
                    .zip(self.stun)
                    .map(|(port, stun)| SocketAddr::new(stun.ip(), port));
                self.learn_mapping();
            }
            PunchInput::Candidates(peer, addrs) => {
                self.tell(&peer, now);
                if !addrs.iter().any(|c| c.transport == CandidateTransport::Udp) {
                    return;
                }
                if let Some(run) = self.run_for(&peer, now) {
                    run.schedule.handle_candidates(&addrs, now);
                }
            }
            PunchInput::Start(peer, delay) => {
                if let Some(run) = self.run_for(&peer, now) {
                    run.schedule.handle_start(delay, now);
                }
            }
            PunchInput::Connected(peer) => {
                if let Some(run) = self.runs.remove(&peer) {
                    for reading in run.birthday.into_values() {
                        reading.reader.abort();
                    }
                }
            }
        }
    }

    /// Sends `peer` our UDP candidates, once per punching timeout: the
    /// TCP race's candidates may have left before STUN told us ours, so
    /// each peer's candidates are answered with them.
    fn tell(&mut self, peer: &Identity, now: std::time::Instant) {
        let recent = self.config.timeout;
        self.told.retain(|_, at| now < *at + recent);
        if *peer == self.me || self.told.contains_key(peer) || self.told.len() >= MAX_TOLD {
            return;
        }
        let addrs = self
            .candidates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if addrs.is_empty() {
            return;
        }
        self.told.insert(peer.clone(), now);
        let _ = self.signals.try_send(Frame::Candidates {
            peer: peer.clone(),
            addrs,
        });
    }

    fn choice(&self) -> std::sync::MutexGuard<'_, PathChoice> {
        self.choice.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `peer`'s running schedule, begun when none runs, socket 0 is ready
    /// and no direct path to `peer` was chosen since its relay opened
    /// (late candidates or start signals begin nothing then).
    fn run_for(&mut self, peer: &Identity, now: std::time::Instant) -> Option<&mut Run> {
        if *peer == self.me || self.reading0.is_none() || !self.choice().may_punch(peer) {
            return None;
        }
        if self.runs.get(peer).is_some_and(|r| r.schedule.is_done()) {
            self.runs.remove(peer);
        }
        let decides = self.me.as_str() < peer.as_str();
        let (config, we_vary) = (self.config.clone(), self.we_vary);
        self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let seed = self.seed;
        Some(self.runs.entry(peer.clone()).or_insert_with(|| Run {
            schedule: PunchSchedule::new(config, decides, we_vary, seed, now),
            birthday: HashMap::new(),
        }))
    }

    /// Starts learning socket 0's mapping (unless it is learnt or being
    /// learnt), in a task of its own: STUN on socket 0 gives its mapping
    /// (a candidate of ours), and a second server address seeing another
    /// port says that it varies. [`handle_learnt`](Self::handle_learnt)
    /// takes the result.
    fn learn_mapping(&mut self) {
        let Some(socket) = self.socket0.take() else {
            return;
        };
        let (stun, host_ips, to) = (
            self.stun.map(|at| (at, self.second_stun)),
            self.host_ips.clone(),
            self.learnt_tx.clone(),
        );
        if let Some(old) = self.learning.take() {
            old.abort();
        }
        self.learning = Some(tokio::spawn(async move {
            let found = learn(socket, stun, host_ips).await;
            let _ = to.send(found).await;
        }));
    }

    /// Socket 0's mapping is learnt: our candidates are known, and the
    /// socket's reader starts.
    fn handle_learnt(
        &mut self,
        Learnt {
            socket,
            ours,
            varies,
        }: Learnt,
    ) {
        self.learning = None;
        self.we_vary = varies;
        *self.candidates.lock().unwrap_or_else(|p| p.into_inner()) = ours;
        self.reading0 = Some(Reading::start(socket, (None, 0), self.received_tx.clone()));
    }

    fn handle_datagram(
        &mut self,
        peer: Option<Identity>,
        socket: usize,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        let Some((kind, them)) = parse(bytes) else {
            return;
        };
        // A birthday socket belongs to one peer; socket 0 to whoever
        // names itself, if we punch toward it.
        if peer.as_ref().is_some_and(|p| *p != them) {
            return;
        }
        if let Some(run) = self.runs.get_mut(&them) {
            // At the deciding end a punch opens the path only when no
            // TCP path was chosen.
            self.choice
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .handle_punch(&mut run.schedule, &them, socket, from, kind, Self::now());
        }
    }

    /// Runs the schedules' timers and does what they ask.
    async fn step(&mut self) {
        let now = Self::now();
        let peers: Vec<Identity> = self.runs.keys().cloned().collect();
        for peer in peers {
            let mut opened = None;
            if let Some(run) = self.runs.get_mut(&peer) {
                run.schedule.handle_timeout(now);
                while let Some(t) = run.schedule.poll_transmit() {
                    let packet = encode(t.kind, &self.me);
                    let socket = if t.socket == 0 {
                        self.reading0.as_ref().map(|r| &r.socket)
                    } else {
                        if !run.birthday.contains_key(&t.socket)
                            && t.socket < run.schedule.sockets()
                        {
                            if let Ok(s) = bind() {
                                let key = (Some(peer.clone()), t.socket);
                                run.birthday.insert(
                                    t.socket,
                                    Reading::start(s, key, self.received_tx.clone()),
                                );
                            }
                        }
                        run.birthday.get(&t.socket).map(|r| &r.socket)
                    };
                    if let Some(socket) = socket {
                        // A full socket buffer drops a punch, as the
                        // network may: the schedule sends more.
                        // Sent on the socket directly: tokio knows a new
                        // socket writable only once its reactor has seen
                        // it, and a punch need not wait for that.
                        let _ =
                            socket2::SockRef::from(socket.as_ref()).send_to(&packet, &t.to.into());
                    }
                }
                while let Some(event) = run.schedule.poll_event() {
                    match event {
                        PunchEvent::SendStart { delay } => {
                            let _ = self.signals.try_send(Frame::Start {
                                peer: peer.clone(),
                                attempt: 0,
                                strategy: STRATEGY_UDP_PUNCH,
                                delay_ms: delay.as_millis().min(u128::from(u16::MAX)) as u16,
                            });
                        }
                        PunchEvent::Opened { socket, remote } => opened = Some((socket, remote)),
                        PunchEvent::GaveUp => {}
                    }
                }
            }
            if let Some((socket, remote)) = opened {
                self.open(&peer, socket, remote).await;
            }
        }
        self.runs
            .retain(|_, r| !r.schedule.is_done() || !r.birthday.is_empty());
        for run in self.runs.values_mut().filter(|r| r.schedule.is_done()) {
            for (_, reading) in run.birthday.drain() {
                reading.reader.abort();
            }
        }
    }

    /// A path to `peer` opened on `socket`: QUIC runs on it.
    async fn open(&mut self, peer: &Identity, socket: usize, remote: SocketAddr) {
        self.choice()
            .handle_told(peer, Transport::Quic, Self::now());
        let taken = if socket == 0 {
            self.reading0.take()
        } else {
            self.runs
                .get_mut(peer)
                .and_then(|r| r.birthday.remove(&socket))
        };
        let Some(reading) = taken else {
            return;
        };
        let Some(messaging) = self.messaging.upgrade() else {
            return;
        };
        let std = match reading.take().await {
            Ok(std) => std,
            Err(error) => {
                tracing::debug!(%error, %peer, "traversal: a punched socket could not be taken");
                return;
            }
        };
        let link = messaging.link().clone();
        let decides = PathTls::is_client(&self.me, peer);
        let tls = self.tls.clone();
        let peer = peer.clone();
        tokio::spawn(async move {
            if decides {
                let endpoint = match link.adopt_quic(std, None) {
                    Ok(endpoint) => endpoint,
                    Err(error) => {
                        tracing::debug!(%error, %peer, "traversal: QUIC on a punched socket");
                        return;
                    }
                };
                let to = Address::ip(Scheme::Quic, remote);
                let options = ConnectOptions::tls(match &tls {
                    Some(tls) => tls.client_for(&peer),
                    None => punch_tls::client(),
                });
                if let Err(error) = endpoint.connect_once(to, options).await {
                    tracing::debug!(%error, %peer, %remote, "traversal: QUIC over a punched hole");
                }
            } else {
                let server = match tls.map_or_else(punch_tls::server, |t| Ok(t.server())) {
                    Ok(server) => server,
                    Err(error) => {
                        tracing::debug!(%error, "traversal: a certificate for QUIC");
                        return;
                    }
                };
                let endpoint = match link.adopt_quic(std, Some(server)) {
                    Ok(endpoint) => endpoint,
                    Err(error) => {
                        tracing::debug!(%error, %peer, "traversal: QUIC on a punched socket");
                        return;
                    }
                };
                // Accepting only while the connecting end is expected; a
                // connection accepted by then carries on.
                tokio::time::sleep(ACCEPT_WINDOW).await;
                if let Some(listening) = endpoint.listening() {
                    link.remove_listener(listening.id);
                }
            }
        });
        if socket == 0 {
            // A new socket 0 for later peers, its mapping learnt beside
            // the punching of others.
            if let Ok(fresh) = bind() {
                self.socket0 = Some(fresh);
                self.learn_mapping();
            }
        }
    }
}

/// What STUN tells of `socket`'s mapping through `stun` (nothing without
/// a server or an answer), and its host candidates on `host_ips` (this
/// host's when `None`). `stun` is the server and, if it has one, the
/// rendezvous's second STUN server; RFC 5780's other address, when the
/// first answer names one, is asked instead of that second one.
async fn learn(
    socket: UdpSocket,
    stun: Option<(SocketAddr, Option<SocketAddr>)>,
    host_ips: Option<Vec<IpAddr>>,
) -> Learnt {
    let mut ours = Vec::new();
    let mut varies = false;
    if let Some((server, second)) = stun {
        if let Some((mapped, other)) = binding(&socket, server).await {
            varies = match other.or(second) {
                Some(other) => binding(&socket, other)
                    .await
                    .is_some_and(|(again, _)| again != mapped),
                None => false,
            };
            let kind = if varies {
                CandidateKind::Varies
            } else {
                CandidateKind::Reflexive
            };
            ours.push(udp(kind, mapped));
        }
    }
    if let Ok(local) = socket.local_addr() {
        let hosts = host_ips.unwrap_or_else(crate::direct::host_ips);
        for ip in hosts.into_iter().filter(|ip| ip.is_ipv4()) {
            ours.push(udp(CandidateKind::Host, SocketAddr::new(ip, local.port())));
        }
    }
    ours.truncate(crate::wire::MAX_CANDIDATES / 2);
    Learnt {
        socket,
        ours,
        varies,
    }
}

fn udp(kind: CandidateKind, addr: SocketAddr) -> Candidate {
    Candidate {
        transport: CandidateTransport::Udp,
        kind,
        addr,
    }
}

/// A punch packet of `kind` from `me`.
fn encode(kind: PunchKind, me: &Identity) -> Vec<u8> {
    let name = me.as_str().as_bytes();
    let mut packet = Vec::with_capacity(MAGIC.len() + 2 + name.len());
    packet.extend_from_slice(&MAGIC);
    packet.push(match kind {
        PunchKind::Punch => PUNCH,
        PunchKind::Answer => ANSWER,
        PunchKind::Chosen => CHOSEN,
    });
    packet.push(name.len() as u8);
    packet.extend_from_slice(name);
    packet
}

/// A punch packet's kind and sender, or `None` for anything else.
fn parse(bytes: &[u8]) -> Option<(PunchKind, Identity)> {
    let rest = bytes.strip_prefix(&MAGIC[..])?;
    let (&kind, rest) = rest.split_first()?;
    let (&len, name) = rest.split_first()?;
    let kind = match kind {
        PUNCH => PunchKind::Punch,
        ANSWER => PunchKind::Answer,
        CHOSEN => PunchKind::Chosen,
        _ => return None,
    };
    if name.len() != usize::from(len) {
        return None;
    }
    let name = std::str::from_utf8(name).ok()?;
    Some((kind, Identity::new(name).ok()?))
}

/// A STUN Binding from `socket` to `server`: the mapped address and the
/// server's other address (RFC 5780), or `None` when it never answers.
async fn binding(
    socket: &UdpSocket,
    server: SocketAddr,
) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let request = StunMessage::binding_request();
    let bytes = request.encode().ok()?;
    let mut buf = vec![0u8; READ_BUF];
    for _ in 0..STUN_TRIES {
        socket.send_to(&bytes, server).await.ok()?;
        let deadline = Instant::now() + STUN_WAIT;
        loop {
            let got = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await;
            let Ok(Ok((n, from))) = got else { break };
            if from != server {
                continue;
            }
            let Ok(answer) = StunMessage::decode(&buf[..n]) else {
                continue;
            };
            if answer.transaction_id != request.transaction_id {
                continue;
            }
            return Some((answer.mapped_address()?, answer.other_address()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_stun::server::{StunServer, StunServerConfig};

    #[tokio::test]
    async fn the_punching_socket_learns_its_mapping_and_the_other_address() {
        // RFC 5780 on a second address of loopback: the other address
        // answers from another port and sees the same mapping (loopback
        // is no NAT).
        let server = StunServer::bind(StunServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            alternate: Some("127.0.0.2:0".parse().unwrap()),
            ..StunServerConfig::default()
        })
        .await
        .unwrap();
        let socket = bind().unwrap();
        let port = socket.local_addr().unwrap().port();
        let (mapped, other) = binding(&socket, server.primary()).await.expect("an answer");
        assert_eq!(mapped, SocketAddr::from(([127, 0, 0, 1], port)));
        let other = other.expect("RFC 5780's other address");
        assert_ne!(other, server.primary());
        let (again, _) = binding(&socket, other).await.expect("an answer there too");
        assert_eq!(again.port(), port, "no NAT, no varying mapping");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_server_gives_no_mapping_in_bounded_time() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let socket = bind().unwrap();
        let started = Instant::now();
        assert_eq!(binding(&socket, silent.local_addr().unwrap()).await, None);
        assert_eq!(started.elapsed(), STUN_WAIT * STUN_TRIES);
    }

    /// Defaults, offering loopback as the host address.
    fn loopback() -> TraversalConfig {
        let mut config = TraversalConfig::default();
        config.direct.host_ips = Some(vec![IpAddr::from([127, 0, 0, 1])]);
        config
    }

    /// alice's punching shell, whose STUN server never answers.
    struct Alice {
        handle: PunchHandle,
        signalled: mpsc::Receiver<Frame>,
        close: watch::Sender<bool>,
        _silent: std::net::UdpSocket,
        _messaging: weft_messaging::Messaging,
    }

    impl Alice {
        async fn start() -> Alice {
            let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let alice = Identity::new("alice").unwrap();
            let messaging = weft_messaging::Messaging::new(alice.clone(), Default::default())
                .await
                .unwrap();
            let choice = Arc::new(Mutex::new(PathChoice::new(alice, 8)));
            let (signals, signalled) = mpsc::channel(8);
            let (close, closing) = watch::channel(false);
            let handle = spawn(
                messaging.downgrade(),
                &loopback(),
                choice,
                Some(silent.local_addr().unwrap()),
                signals,
                closing,
            )
            .unwrap();
            Alice {
                handle,
                signalled,
                close,
                _silent: silent,
                _messaging: messaging,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_shell_goes_on_while_stun_goes_unanswered() {
        // Registered starts learning socket 0's mapping from a server that
        // never answers (1.5 s of retries); the shell still takes its
        // next input at once: here the close, after which it drops its
        // signal sender.
        let alice = Alice::start().await;
        let (handle, mut signalled, close) = (alice.handle, alice.signalled, alice.close);
        let started = Instant::now();
        handle
            .input
            .send(PunchInput::Registered(None))
            .await
            .unwrap();
        tokio::task::yield_now().await;
        close.send(true).unwrap();
        assert!(signalled.recv().await.is_none(), "the shell ended");
        assert!(
            started.elapsed() < STUN_WAIT,
            "the shell waited {:?} for STUN",
            started.elapsed()
        );
        assert!(handle.candidates.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_peers_candidates_that_come_while_stun_goes_unanswered_are_punched_to_after() {
        // Candidates arrive while socket 0's mapping is being learnt: they
        // wait for it, and the punches go out once it is learnt.
        let bob = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let alice = Alice::start().await;
        let handle = &alice.handle;
        handle
            .input
            .send(PunchInput::Registered(None))
            .await
            .unwrap();
        let theirs = vec![udp(CandidateKind::Host, bob.local_addr().unwrap())];
        handle
            .input
            .send(PunchInput::Candidates(
                Identity::new("bob").unwrap(),
                theirs,
            ))
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = tokio::time::timeout(Duration::from_secs(10), bob.recv_from(&mut buf))
            .await
            .expect("a punch")
            .unwrap();
        assert_eq!(
            parse(&buf[..n]),
            Some((PunchKind::Punch, Identity::new("alice").unwrap()))
        );
    }

    /// A STUN server that answers every Binding with `port` as the mapped
    /// port (the NAT it pretends to sit behind maps anew there).
    async fn answering_with_port(port: u16) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let at = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let Ok(request) = StunMessage::decode(&buf[..n]) else {
                    continue;
                };
                let answer = StunMessage::new(
                    weft_stun::message::Class::SuccessResponse,
                    request.method,
                    request.transaction_id,
                )
                .with(weft_stun::attribute::Attribute::XorMappedAddress(
                    SocketAddr::new(from.ip(), port),
                ));
                let _ = socket.send_to(&answer.encode().unwrap(), from).await;
            }
        });
        at
    }

    #[tokio::test]
    async fn a_second_stun_server_that_sees_another_port_means_the_mapping_varies() {
        // No RFC 5780 here: the first server names no other address, so
        // the rendezvous's second server is asked.
        let first = StunServer::bind(StunServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..StunServerConfig::default()
        })
        .await
        .unwrap();
        let socket = bind().unwrap();
        let port = socket.local_addr().unwrap().port();
        let elsewhere = answering_with_port(port.wrapping_add(1)).await;
        let learnt = learn(
            socket,
            Some((first.primary(), Some(elsewhere))),
            Some(vec![]),
        )
        .await;
        assert!(learnt.varies);
        assert_eq!(
            learnt.ours,
            [udp(
                CandidateKind::Varies,
                SocketAddr::from(([127, 0, 0, 1], port))
            )]
        );
        // The same port there: it does not vary.
        let socket = bind().unwrap();
        let port = socket.local_addr().unwrap().port();
        let same = answering_with_port(port).await;
        let learnt = learn(socket, Some((first.primary(), Some(same))), Some(vec![])).await;
        assert!(!learnt.varies);
        assert_eq!(learnt.ours[0].kind, CandidateKind::Reflexive);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_server_still_leaves_the_host_candidates() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let socket = bind().unwrap();
        let port = socket.local_addr().unwrap().port();
        let learnt = learn(
            socket,
            Some((silent.local_addr().unwrap(), None)),
            Some(vec![IpAddr::from([127, 0, 0, 1])]),
        )
        .await;
        assert!(!learnt.varies);
        assert_eq!(
            learnt.ours,
            vec![udp(
                CandidateKind::Host,
                SocketAddr::from(([127, 0, 0, 1], port))
            )]
        );
    }

    #[test]
    fn punch_packets_name_their_sender_and_nothing_else_parses() {
        let alice = Identity::new("alice").unwrap();
        let punch = encode(PunchKind::Punch, &alice);
        assert_eq!(punch, b"\x3fWP\x01\x01\x05alice");
        assert_eq!(parse(&punch), Some((PunchKind::Punch, alice.clone())));
        for kind in [PunchKind::Answer, PunchKind::Chosen] {
            assert_eq!(parse(&encode(kind, &alice)), Some((kind, alice.clone())));
        }
        assert_eq!(encode(PunchKind::Chosen, &alice)[4], 3);
        // Not STUN, not QUIC: the first byte has neither's bits.
        assert!(punch[0] > 3 && punch[0] & 0x40 == 0);
        for bad in [
            &b""[..],
            b"\x3fWP\x02\x01\x05alice",
            b"\x3fWP\x01\x04\x05alice",
            b"\x3fWP\x01\x01\x06alice",
            b"\x3fWP\x01\x01\x00",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
