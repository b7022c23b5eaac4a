//! The shell around [`PathRace`]: one task owns the direct TCP port (a
//! listener, and every dial made from the same port with `SO_REUSEADDR`
//! and `SO_REUSEPORT`, so that the port a NAT keeps for our dials is the
//! one we advertise, and crossing SYNs meet: TCP simultaneous open), feeds
//! the race what happens, and does what it polls out.
//!
//! A connected stream (dialled or accepted) first carries the path
//! preamble (`PROTOCOL.md`, "Direct paths"): each end names itself, and
//! the end with the smaller identity says whether this stream is the one
//! kept. It keeps the first, so both ends adopt the same single stream
//! into messaging's link ([`Link::adopt_tcp`](weft_link::Link::adopt_tcp)),
//! where messaging's handshake runs and, the relay being a stand-in, the
//! direct connection replaces it losslessly.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use weft_link::Address;
use weft_messaging::{Identity, WeakMessaging};

use crate::choice::PathChoice;
use crate::config::TraversalConfig;
use crate::path::Transport;
use crate::path_tls::PathTls;
use crate::punch::STRATEGY_UDP_PUNCH;
use crate::race::{PathRace, RaceAction};
use crate::udp_punch::{PunchHandle, PunchInput};
use crate::wire::{Candidate, CandidateKind, CandidateTransport, Frame};

/// The preamble's first bytes: "WFTD" and its version.
const MAGIC: &[u8; 5] = b"WFTD\x01";
/// The preamble's decision: keep this stream.
const KEEP: u8 = 1;
/// Streams accepted on the direct port waiting for their preamble, at most.
const MAX_INBOUND: usize = 16;
/// After accepting fails (out of file descriptors, say), how long the
/// listeners rest before accepting again, instead of failing in a loop.
const ACCEPT_REST: Duration = Duration::from_millis(100);

/// What the traversal's task tells the direct shell.
#[derive(Debug)]
pub(crate) enum DirectInput {
    /// The rendezvous sees us at this address (and has a second STUN
    /// server on this port of its STUN IP).
    Registered(Option<SocketAddr>, Option<u16>),
    /// A relay path to the peer opened.
    Relay(Identity),
    /// The peer's candidates.
    Candidates(Identity, Vec<Candidate>),
    /// The peer's start signal: strategy and delay.
    Start(Identity, u8, Duration),
    /// Messaging has a connection to the peer that is none of our relays.
    Connected(Identity),
}

/// The traversal's side of the direct shell.
pub(crate) struct DirectHandle {
    pub(crate) input: mpsc::Sender<DirectInput>,
    /// The port we dial from and accept on.
    pub(crate) port: u16,
    /// The peers with a race, running or finished.
    pub(crate) racing: Arc<Mutex<HashSet<Identity>>>,
}

/// What a task of the shell gives back.
enum Done {
    /// A dial ended: the stream after its preamble, or none.
    Dialled {
        peer: Identity,
        addr: SocketAddr,
        stream: Option<TcpStream>,
    },
    /// An accepted stream's preamble ended: it named this racing peer, or
    /// it did not.
    Accepted {
        peer: Identity,
        stream: Option<TcpStream>,
    },
    /// The non-deciding end's verdict: keep this stream.
    Kept { peer: Identity, stream: TcpStream },
    /// Nothing to do.
    Nothing,
}

/// A socket bound to our direct port, reusable by the listener and every
/// dial.
fn socket_on(local: SocketAddr) -> io::Result<TcpSocket> {
    let socket = match local {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => {
            let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)?;
            s.set_only_v6(true)?;
            s.set_nonblocking(true)?;
            TcpSocket::from_std_stream(std::net::TcpStream::from(s))
        }
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(local)?;
    Ok(socket)
}

/// Starts the shell (`traversal`'s `direct`, with its `tls`): binds the
/// direct port (IPv4, and IPv6 on the same port when the host has it) and
/// runs its task until `closing`; and, unless `traversal.punch` is off,
/// the UDP punching shell beside it, which learns its mapping from the
/// STUN at `stun` (the rendezvous's).
pub(crate) fn spawn(
    messaging: WeakMessaging,
    me: Identity,
    traversal: &TraversalConfig,
    stun: Option<SocketAddr>,
    signals: mpsc::Sender<Frame>,
    closing: watch::Receiver<bool>,
) -> io::Result<DirectHandle> {
    let config = traversal.direct.clone();
    let tls = traversal.tls.clone();
    // One choice between the TCP race's paths and the punched ones.
    let choice = Arc::new(Mutex::new(PathChoice::new(me.clone(), config.max_races)));
    let punch = if traversal.punch.enabled {
        let started = crate::udp_punch::spawn(
            messaging.clone(),
            traversal,
            choice.clone(),
            stun,
            signals.clone(),
            closing.clone(),
        );
        Some(started?)
    } else {
        None
    };
    let v4 = socket_on(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?.listen(64)?;
    let port = v4.local_addr()?.port();
    let v6 = socket_on(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))
        .and_then(|s| s.listen(64))
        .ok();
    let (input, input_rx) = mpsc::channel(64);
    let racing = Arc::new(Mutex::new(HashSet::new()));
    let shell = Shell {
        messaging,
        core: PathRace::new(me.clone(), config),
        me,
        port,
        ipv6: v6.is_some(),
        observed: None,
        signals,
        racing: racing.clone(),
        tasks: JoinSet::new(),
        inbound: 0,
        resting: None,
        punch,
        choice,
        tls,
    };
    tokio::spawn(shell.run(v4, v6, input_rx, closing));
    Ok(DirectHandle {
        input,
        port,
        racing,
    })
}

struct Shell {
    messaging: WeakMessaging,
    core: PathRace,
    me: Identity,
    port: u16,
    ipv6: bool,
    observed: Option<SocketAddr>,
    signals: mpsc::Sender<Frame>,
    racing: Arc<Mutex<HashSet<Identity>>>,
    tasks: JoinSet<Done>,
    /// Accepted streams in their preamble.
    inbound: usize,
    /// Until when the listeners rest after an accept failed.
    resting: Option<Instant>,
    /// The UDP punching shell, when on.
    punch: Option<PunchHandle>,
    /// The one direct path per peer and round, shared with the punching
    /// shell.
    choice: Arc<Mutex<PathChoice>>,
    /// Certificates for TLS on the kept streams.
    tls: Option<PathTls>,
}

async fn accept(listener: &Option<TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

impl Shell {
    async fn run(
        mut self,
        v4: TcpListener,
        v6: Option<TcpListener>,
        mut input: mpsc::Receiver<DirectInput>,
        mut closing: watch::Receiver<bool>,
    ) {
        let v4 = Some(v4);
        loop {
            let now = Instant::now();
            self.resting = self.resting.filter(|until| *until > now);
            let accepting = self.resting.is_none();
            let wake = self
                .core
                .poll_timeout()
                .map(Instant::from_std)
                .into_iter()
                .chain(self.resting)
                .min();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                got = input.recv() => match got {
                    Some(got) => self.handle_input(got),
                    None => break,
                },
                got = accept(&v4), if accepting => self.accept_result(got),
                got = accept(&v6), if accepting => self.accept_result(got),
                Some(Ok(done)) = self.tasks.join_next() => self.done(done),
                _ = sleep => {}
                _ = closing.changed() => break,
            }
            self.step();
        }
        self.tasks.abort_all();
    }

    fn now() -> std::time::Instant {
        Instant::now().into_std()
    }

    fn choice(&self) -> std::sync::MutexGuard<'_, PathChoice> {
        self.choice.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Passes on what the UDP punching shell needs; past its queue's
    /// bound a punch is missed, never a TCP race.
    fn to_punch(&self, input: &DirectInput) {
        let Some(punch) = &self.punch else {
            return;
        };
        let passed = match input {
            DirectInput::Registered(_, second_stun) => PunchInput::Registered(*second_stun),
            DirectInput::Candidates(peer, addrs) => {
                PunchInput::Candidates(peer.clone(), addrs.clone())
            }
            DirectInput::Start(peer, STRATEGY_UDP_PUNCH, delay) => {
                PunchInput::Start(peer.clone(), *delay)
            }
            DirectInput::Connected(peer) => PunchInput::Connected(peer.clone()),
            _ => return,
        };
        let _ = punch.input.try_send(passed);
    }

    fn handle_input(&mut self, input: DirectInput) {
        let now = Self::now();
        self.to_punch(&input);
        match input {
            DirectInput::Registered(observed, _) => self.observed = observed,
            DirectInput::Relay(peer) => {
                self.choice().handle_relay(&peer, now);
                self.core.handle_relay(&peer, now);
            }
            DirectInput::Candidates(peer, addrs) => self.core.handle_candidates(&peer, &addrs, now),
            DirectInput::Start(peer, strategy, delay) => {
                self.core.handle_start(&peer, strategy, delay, now)
            }
            DirectInput::Connected(peer) => self.core.handle_won(&peer),
        }
    }

    /// Runs the race's timers and does what it asks.
    fn step(&mut self) {
        self.core.handle_timeout(Self::now());
        while let Some(action) = self.core.poll_action() {
            match action {
                RaceAction::SendCandidates { peer } => {
                    let addrs = self.candidates();
                    let _ = self.signals.try_send(Frame::Candidates { peer, addrs });
                }
                RaceAction::SendStart {
                    peer,
                    attempt,
                    delay,
                } => {
                    let _ = self.signals.try_send(Frame::Start {
                        peer,
                        attempt,
                        strategy: crate::race::STRATEGY_TCP_SIMULTANEOUS,
                        delay_ms: delay.as_millis().min(u128::from(u16::MAX)) as u16,
                    });
                }
                RaceAction::Dial {
                    peer,
                    addr,
                    timeout,
                } => {
                    let me = self.me.clone();
                    let port = self.port;
                    let preamble = self.core.config().preamble_timeout;
                    self.tasks.spawn(async move {
                        let stream = dial(addr, port, timeout).await.ok().map(|s| (s, preamble));
                        let stream = match stream {
                            Some((s, limit)) => greet(s, &me, limit)
                                .await
                                .filter(|(_, them)| *them == peer)
                                .map(|(s, _)| s),
                            None => None,
                        };
                        Done::Dialled { peer, addr, stream }
                    });
                }
            }
        }
        let mut racing = self.racing.lock().unwrap_or_else(|p| p.into_inner());
        racing.clear();
        racing.extend(self.core.peers().cloned());
    }

    /// Our candidates: the address the rendezvous observed, with our
    /// direct port (NATs that keep ports keep it), then our host
    /// addresses.
    fn candidates(&self) -> Vec<Candidate> {
        let max = self
            .core
            .config()
            .max_candidates
            .min(crate::wire::MAX_CANDIDATES);
        let mut out: Vec<Candidate> = Vec::new();
        let mut add = |kind, ip: IpAddr| {
            let addr = SocketAddr::new(ip, self.port);
            if out.len() < max && !out.iter().any(|c| c.addr == addr) {
                out.push(Candidate {
                    transport: CandidateTransport::Tcp,
                    kind,
                    addr,
                });
            }
        };
        if let Some(observed) = self.observed {
            add(CandidateKind::Reflexive, observed.ip());
        }
        let hosts = match &self.core.config().host_ips {
            Some(ips) => ips.clone(),
            None => host_ips(),
        };
        for ip in hosts {
            if ip.is_ipv4() || self.ipv6 {
                add(CandidateKind::Host, ip);
            }
        }
        // And the UDP ones, for punching, as far as the frame has room.
        if let Some(punch) = &self.punch {
            let udp = punch.candidates.lock().unwrap_or_else(|p| p.into_inner());
            let room = crate::wire::MAX_CANDIDATES.saturating_sub(out.len());
            out.extend(udp.iter().take(room).copied());
        }
        out
    }

    fn accept_result(&mut self, got: io::Result<(TcpStream, SocketAddr)>) {
        match got {
            Ok((stream, from)) => self.accepted(stream, from),
            Err(error) => {
                tracing::debug!(%error, "traversal: accepting on the direct port");
                self.resting = Some(Instant::now() + ACCEPT_REST);
            }
        }
    }

    fn accepted(&mut self, stream: TcpStream, from: SocketAddr) {
        // Only from an address of a peer we race with, and few at once.
        let Some(peer) = self.core.inbound_from(from.ip()).cloned() else {
            return;
        };
        if self.inbound >= MAX_INBOUND {
            return;
        }
        self.inbound += 1;
        let me = self.me.clone();
        let limit = self.core.config().preamble_timeout;
        self.tasks.spawn(async move {
            let stream = greet(stream, &me, limit)
                .await
                .filter(|(_, them)| *them == peer)
                .map(|(s, _)| s);
            Done::Accepted { peer, stream }
        });
    }

    fn done(&mut self, done: Done) {
        match done {
            Done::Dialled { peer, addr, stream } => {
                self.core
                    .handle_dialled(&peer, addr, stream.is_some(), Self::now());
                if let Some(stream) = stream {
                    self.settle(peer, stream);
                }
            }
            Done::Accepted { peer, stream } => {
                self.inbound = self.inbound.saturating_sub(1);
                if let Some(stream) = stream {
                    self.settle(peer, stream);
                }
            }
            Done::Kept { peer, stream } => self.adopt(peer, stream),
            Done::Nothing => {}
        }
    }

    /// A stream to `peer` passed its preamble: the deciding end keeps the
    /// first of a race, unless a punched path was chosen, and tells the
    /// other end; the other end waits to be told.
    fn settle(&mut self, peer: Identity, stream: TcpStream) {
        let limit = self.core.config().preamble_timeout;
        if self.core.decides(&peer) {
            let keep = self
                .choice
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keep_stream(&mut self.core, &peer, Self::now());
            self.tasks.spawn(async move {
                let mut stream = stream;
                let verdict = [u8::from(keep)];
                let sent = tokio::time::timeout(limit, stream.write_all(&verdict)).await;
                match sent {
                    Ok(Ok(())) if keep => Done::Kept { peer, stream },
                    _ => Done::Nothing,
                }
            });
        } else {
            self.tasks.spawn(async move {
                let mut stream = stream;
                let mut verdict = [0u8];
                let read = tokio::time::timeout(limit, stream.read_exact(&mut verdict)).await;
                match read {
                    Ok(Ok(_)) if verdict[0] == KEEP => Done::Kept { peer, stream },
                    _ => Done::Nothing,
                }
            });
        }
    }

    /// The kept stream becomes a messaging connection; punching toward
    /// the peer stops.
    fn adopt(&mut self, peer: Identity, stream: TcpStream) {
        self.core.handle_won(&peer);
        self.choice()
            .handle_told(&peer, Transport::Tcp, Self::now());
        if let Some(punch) = &self.punch {
            let _ = punch.input.try_send(PunchInput::Connected(peer.clone()));
        }
        let Some(messaging) = self.messaging.upgrade() else {
            return;
        };
        let adopted = match &self.tls {
            // With certificates, TLS on the stream (the connection carries
            // the peer's certificate).
            Some(tls) => {
                let _ = stream.set_nodelay(true);
                let ends = (stream.peer_addr().ok(), stream.local_addr().ok());
                messaging
                    .link()
                    .adopt_tls(
                        stream,
                        tls.side(&self.me, &peer),
                        ends.0.map(Address::tcp),
                        ends.1.map(Address::tcp),
                    )
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            None => stream.into_std().map_err(|e| e.to_string()).and_then(|s| {
                messaging
                    .link()
                    .adopt_tcp(s)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
        };
        if let Err(error) = adopted {
            tracing::debug!(%error, %peer, "traversal: a direct stream could not be adopted");
        }
    }
}

/// A TCP connect to `addr` from our direct port, within `timeout`.
async fn dial(addr: SocketAddr, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let local = match addr {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
    };
    let socket = socket_on(local)?;
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// The preamble's greeting, both ways at once: our identity out, the
/// other end's in. `None` when it is not a weft direct path or too slow.
async fn greet(
    mut stream: TcpStream,
    me: &Identity,
    limit: Duration,
) -> Option<(TcpStream, Identity)> {
    let name = me.as_str().as_bytes();
    let mut hello = Vec::with_capacity(MAGIC.len() + 1 + name.len());
    hello.extend_from_slice(MAGIC);
    hello.push(name.len() as u8);
    hello.extend_from_slice(name);
    let exchange = async {
        stream.write_all(&hello).await?;
        let mut head = [0u8; 6];
        stream.read_exact(&mut head).await?;
        if head[..5] != MAGIC[..] {
            return Err(io::ErrorKind::InvalidData.into());
        }
        let mut name = vec![0u8; usize::from(head[5])];
        stream.read_exact(&mut name).await?;
        let name = String::from_utf8(name).map_err(|_| io::ErrorKind::InvalidData)?;
        Identity::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(Ok(them)) => Some((stream, them)),
        _ => None,
    }
}

/// This host's addresses worth offering: not loopback, not link-local.
pub(crate) fn host_ips() -> Vec<IpAddr> {
    use weft_netiface::Scope;
    let Ok(interfaces) = weft_netiface::interfaces() else {
        return Vec::new();
    };
    interfaces
        .iter()
        .filter(|i| i.flags.up)
        .flat_map(|i| i.addrs.iter())
        .filter(|a| !matches!(a.scope, Scope::Loopback | Scope::LinkLocal))
        .map(|a| a.ip)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dialled = TcpStream::connect(listener.local_addr().unwrap());
        let (dialled, accepted) = tokio::join!(dialled, listener.accept());
        (dialled.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn the_preamble_names_both_ends() {
        let (a, b) = pair().await;
        let (alice, bob) = (
            Identity::new("alice").unwrap(),
            Identity::new("bob").unwrap(),
        );
        let limit = Duration::from_secs(5);
        let (at_a, at_b) = tokio::join!(greet(a, &alice, limit), greet(b, &bob, limit));
        assert_eq!(at_a.map(|(_, them)| them), Some(bob));
        assert_eq!(at_b.map(|(_, them)| them), Some(alice));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stranger_or_silence_is_no_preamble() {
        let me = Identity::new("alice").unwrap();
        let limit = Duration::from_secs(2);
        // Something that is not a weft direct path.
        let (a, mut b) = pair().await;
        b.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(greet(a, &me, limit).await.is_none());
        // An end that says nothing, past the preamble's time.
        let (a, _b) = pair().await;
        assert!(greet(a, &me, limit).await.is_none());
    }
}
