//! `PunchSchedule`: UDP hole punching toward one peer, free of I/O. The
//! shell (`udp_punch.rs`) feeds it the peer's UDP candidates, the start
//! signal and the punch packets that arrive, with the time, and does what
//! it polls out: send a punch from one of its sockets, send the start
//! signal, run QUIC on the socket of a path that opened.
//!
//! Both sides send punches to each other's UDP candidates from the socket
//! whose mapping they advertised, every [`PunchConfig::interval`], at most
//! [`PunchConfig::punches`] times each, from the moment a `Start` signal
//! names (the side with the smaller identity sends it), so that both NATs
//! see an outgoing packet to the other before the other's arrives. Host
//! candidates wait for that moment too: where a direct TCP path gets
//! through at once (a LAN, a public host), the TCP race dials at once and
//! has its path first, and QUIC takes the paths TCP cannot. Every punch
//! is answered from the socket it reached. On the side with the smaller
//! identity, the first punch or answer that arrives from the peer opens
//! the path (our NAT let it in, and our answer tells the peer that its
//! NAT lets ours in); that side names the socket pair to the other
//! ([`PunchKind::Chosen`]), and the other side opens the path where it is
//! named: with birthday probing several pairs may get through, and both
//! ends must run QUIC on the same one.
//!
//! A NAT that maps each destination to a new port (symmetric: the peer's
//! reflexive candidate is of kind [`CandidateKind::Varies`]) cannot be
//! punched at the port the rendezvous saw. Against one such side and one
//! whose mapping does not vary, birthday probing: the varying side sends
//! one punch from each of [`PunchConfig::birthday_sockets`] sockets to the
//! other's reflexive address, opening as many mappings on random ports of
//! its NAT, while the other side sends probes to random ports of the
//! varying side's public IP, at most [`PunchConfig::birthday_probes`] at
//! [`PunchConfig::probe_rate`]. A probe that lands on one of the mappings
//! passes the NAT as a reply; with `n` mappings among the 64,512 ports a
//! fully random NAT uses, `m` probes hit with probability about
//! `1 - exp(-n m / 64512)` (256 sockets and 2,048 probes: 99.97%).
//! Port prediction comes first: a NAT that hands out ports in sequence
//! maps the varying side's birthday sockets just above the port the
//! rendezvous saw, so the first [`PunchConfig::predicted_ports`] probes go
//! to the ports right above it, in order, and the rest to random ports
//! (against a NAT that picks at random, the predicted ones are as good
//! as any). Two varying sides are not tried. Everything stops at
//! [`PunchConfig::timeout`].

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::wire::{Candidate, CandidateKind, CandidateTransport};

/// `Start`'s strategy byte for UDP hole punching carrying QUIC.
pub const STRATEGY_UDP_PUNCH: u8 = 2;

/// The lowest port a NAT that picks ports at random hands out (Linux's
/// `masquerade fully-random` picks from 1024 to 65535).
const RANDOM_PORT_MIN: u16 = 1024;

/// How UDP hole punching runs: plain data with documented defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PunchConfig {
    /// Whether UDP paths are tried at all. Default: `true`.
    pub enabled: bool,
    /// The wait between two punches to one address, and between two
    /// batches of birthday probes. Default: 20 ms.
    pub interval: Duration,
    /// Punches per candidate address. Default: 100 (2 s at the interval).
    pub punches: u32,
    /// Sockets the varying (symmetric) side opens for birthday probing;
    /// 0 turns birthday probing off. Default: 256.
    pub birthday_sockets: usize,
    /// Probes to random ports the other side sends, at most. Default:
    /// 2,048.
    pub birthday_probes: u32,
    /// Probes per second, at most. Default: 2,000.
    pub probe_rate: u32,
    /// Of the probes toward a varying side, how many go first to the
    /// ports right above the one the rendezvous saw (port prediction, for
    /// NATs that allocate ports in sequence); counted in
    /// `birthday_probes`. Default: 512 (twice the birthday sockets).
    pub predicted_ports: u16,
    /// Candidate addresses of the peer used, at most. Default: 8.
    pub max_targets: usize,
    /// A schedule with no open path after this, from its start, gives up.
    /// Default: 5 s.
    pub timeout: Duration,
    /// How far ahead of now a `Start` signal sets the punching of
    /// reflexive candidates. Default: 100 ms.
    pub start_delay: Duration,
}

impl Default for PunchConfig {
    fn default() -> PunchConfig {
        PunchConfig {
            enabled: true,
            interval: Duration::from_millis(20),
            punches: 100,
            birthday_sockets: 256,
            birthday_probes: 2_048,
            probe_rate: 2_000,
            predicted_ports: 512,
            max_targets: 8,
            timeout: Duration::from_secs(5),
            start_delay: Duration::from_millis(100),
        }
    }
}

/// What a punch packet says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PunchKind {
    /// A punch: answer me.
    Punch,
    /// An answer to a punch.
    Answer,
    /// From the side with the smaller identity: the path is this socket
    /// pair; QUIC follows. With birthday probing several pairs may get
    /// through; this names the one both ends use.
    Chosen,
}

/// How many times the chosen pair is named: a datagram may be lost.
const CHOSEN_COPIES: usize = 3;

/// A punch packet to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PunchTransmit {
    /// Which of the shell's sockets sends it: 0 is the one whose mapping
    /// was advertised; 1 and up are birthday sockets, opened on first use.
    pub socket: usize,
    /// Where to.
    pub to: SocketAddr,
    /// What it says.
    pub kind: PunchKind,
}

/// What else the shell should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PunchEvent {
    /// Send the peer a start signal ([`STRATEGY_UDP_PUNCH`]) with this
    /// delay.
    SendStart {
        /// When punching of reflexive candidates begins, from now.
        delay: Duration,
    },
    /// A path opened: packets from `remote` reached `socket` (on the side
    /// with the smaller identity, which names the pair to the other
    /// before this), or the other side named this pair. QUIC runs on that
    /// socket (the side with the smaller identity connects).
    Opened {
        /// The socket.
        socket: usize,
        /// The peer's address as seen from it.
        remote: SocketAddr,
    },
    /// No path within the timeout; the schedule stopped.
    GaveUp,
}

/// One address of the peer's that punches go to.
#[derive(Clone, Debug)]
struct Target {
    to: SocketAddr,
    /// A reflexive candidate (the one birthday probing aims at).
    reflexive: bool,
    sent: u32,
    next: Option<Instant>,
}

/// Birthday probing, on whichever side it is.
#[derive(Debug)]
enum Birthday {
    None,
    /// We vary: one punch from each socket `1..=sockets` to `to`.
    Sockets {
        to: SocketAddr,
        sockets: usize,
        next_socket: usize,
    },
    /// The peer varies: probes to ports of `to`'s IP, the predicted ones
    /// above `to`'s port first, then random ones.
    Probes {
        to: SocketAddr,
        sent: u32,
        predicted: u16,
        tried: HashSet<u16>,
    },
}

/// UDP hole punching toward one peer: see the module's docs.
#[derive(Debug)]
pub struct PunchSchedule {
    config: PunchConfig,
    decides: bool,
    /// Our reflexive mapping varies by destination.
    we_vary: bool,
    targets: Vec<Target>,
    birthday: Birthday,
    got: bool,
    start_sent: bool,
    start_at: Option<Instant>,
    /// When the next batch of birthday traffic is due.
    next_batch: Option<Instant>,
    deadline: Instant,
    done: bool,
    rng: u64,
    transmits: VecDeque<PunchTransmit>,
    events: VecDeque<PunchEvent>,
}

impl PunchSchedule {
    /// A schedule begun at `now`. `decides`: we have the smaller identity
    /// (we send the start signal and connect QUIC). `we_vary`: our NAT's
    /// mapping varies by destination. `seed` drives the random ports of
    /// birthday probes.
    pub fn new(
        config: PunchConfig,
        decides: bool,
        we_vary: bool,
        seed: u64,
        now: Instant,
    ) -> PunchSchedule {
        PunchSchedule {
            deadline: now + config.timeout,
            config,
            decides,
            we_vary,
            targets: Vec::new(),
            birthday: Birthday::None,
            got: false,
            start_sent: false,
            start_at: None,
            next_batch: None,
            done: false,
            // xorshift needs a state other than zero.
            rng: seed | 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Whether the schedule has ended (a path opened, or it gave up).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The sockets the shell may be asked to send from: 0, and the
    /// birthday sockets when we vary.
    pub fn sockets(&self) -> usize {
        match self.birthday {
            Birthday::Sockets { sockets, .. } => sockets + 1,
            _ => 1,
        }
    }

    /// The peer's candidates arrived: its UDP ones become targets (the
    /// first set that has any; a set without is not taken for one).
    pub fn handle_candidates(&mut self, candidates: &[Candidate], now: Instant) {
        let has_udp = candidates
            .iter()
            .any(|c| c.transport == CandidateTransport::Udp);
        if self.done || self.got || !has_udp {
            return;
        }
        self.got = true;
        let mut varies = None;
        for c in candidates {
            if c.transport != CandidateTransport::Udp || !usable(c.addr) {
                continue;
            }
            if c.kind == CandidateKind::Varies {
                varies = Some(c.addr);
                continue;
            }
            if self.targets.len() >= self.config.max_targets
                || self.targets.iter().any(|t| t.to == c.addr)
            {
                continue;
            }
            self.targets.push(Target {
                to: c.addr,
                reflexive: c.kind != CandidateKind::Host,
                sent: 0,
                next: self.start_at,
            });
        }
        let reflexive = self.targets.iter().find(|t| t.reflexive).map(|t| t.to);
        self.birthday = match (self.we_vary, varies, reflexive) {
            (true, None, Some(to)) if self.config.birthday_sockets > 0 => Birthday::Sockets {
                to,
                sockets: self.config.birthday_sockets,
                next_socket: 1,
            },
            (false, Some(to), _) if self.config.birthday_probes > 0 => Birthday::Probes {
                to,
                sent: 0,
                predicted: 0,
                tried: HashSet::new(),
            },
            _ => Birthday::None,
        };
        if let Some(at) = self.start_at {
            self.next_batch = Some(at);
        }
        if self.decides && !self.start_sent {
            self.start_sent = true;
            let delay = self.config.start_delay;
            self.events.push_back(PunchEvent::SendStart { delay });
            self.set_start(now + delay);
        }
    }

    /// The peer's start signal: punching of reflexive candidates begins
    /// after `delay` (bounded, so that a peer cannot hold us for long).
    pub fn handle_start(&mut self, delay: Duration, now: Instant) {
        if self.decides || self.done {
            return;
        }
        let bound = self.config.start_delay.max(Duration::from_secs(1));
        self.set_start(now + delay.min(bound));
    }

    fn set_start(&mut self, at: Instant) {
        // Once: repeated signals cannot renew the punches.
        if self.start_at.is_some() {
            return;
        }
        self.start_at = Some(at);
        for t in self.targets.iter_mut() {
            t.next = Some(at);
        }
        if !matches!(self.birthday, Birthday::None) {
            self.next_batch = Some(at);
        }
    }

    /// A punch packet from the peer arrived on `socket` from `from`. A
    /// punch is answered. On the deciding side the first punch or answer
    /// opens the path, which it names to the other side ([`PunchKind::Chosen`]);
    /// on the other side the path opens where it is named.
    pub fn handle_punch(
        &mut self,
        socket: usize,
        from: SocketAddr,
        kind: PunchKind,
        _now: Instant,
    ) {
        let transmit = |kind| PunchTransmit {
            socket,
            to: from,
            kind,
        };
        if kind == PunchKind::Punch {
            self.transmits.push_back(transmit(PunchKind::Answer));
        }
        let opens = match kind {
            PunchKind::Punch | PunchKind::Answer => self.decides,
            PunchKind::Chosen => !self.decides,
        };
        if self.done || !opens {
            return;
        }
        if self.decides {
            for _ in 0..CHOSEN_COPIES {
                self.transmits.push_back(transmit(PunchKind::Chosen));
            }
        }
        self.done = true;
        self.events.push_back(PunchEvent::Opened {
            socket,
            remote: from,
        });
    }

    /// Another direct path to the peer was chosen: the schedule ends
    /// without opening one (punches that arrive are still answered).
    pub fn handle_stop(&mut self) {
        self.done = true;
    }

    /// Time passes: punches and probes that are due go out; past the
    /// timeout the schedule gives up.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.done {
            return;
        }
        if now >= self.deadline {
            self.done = true;
            self.events.push_back(PunchEvent::GaveUp);
            return;
        }
        let (interval, punches) = (self.config.interval, self.config.punches);
        for t in self.targets.iter_mut() {
            if t.next.is_some_and(|at| at <= now) && t.sent < punches {
                t.sent += 1;
                t.next = (t.sent < punches).then_some(now + interval);
                self.transmits.push_back(PunchTransmit {
                    socket: 0,
                    to: t.to,
                    kind: PunchKind::Punch,
                });
            }
        }
        if self.next_batch.is_some_and(|at| at <= now) {
            self.next_batch = self.birthday_batch(now).then_some(now + interval);
        }
    }

    /// One interval's worth of birthday traffic; whether more is to come.
    fn birthday_batch(&mut self, _now: Instant) -> bool {
        let per_batch = (u128::from(self.config.probe_rate) * self.config.interval.as_millis()
            / 1000)
            .max(1) as u32;
        match &mut self.birthday {
            Birthday::None => false,
            Birthday::Sockets {
                to,
                sockets,
                next_socket,
            } => {
                for _ in 0..per_batch {
                    if *next_socket > *sockets {
                        break;
                    }
                    self.transmits.push_back(PunchTransmit {
                        socket: *next_socket,
                        to: *to,
                        kind: PunchKind::Punch,
                    });
                    *next_socket += 1;
                }
                *next_socket <= *sockets
            }
            Birthday::Probes {
                to,
                sent,
                predicted,
                tried,
            } => {
                let max = self.config.birthday_probes;
                let mut batch = 0;
                while batch < per_batch && *sent < max {
                    let port = if *predicted < self.config.predicted_ports {
                        *predicted += 1;
                        above(to.port(), *predicted)
                    } else {
                        next_port(&mut self.rng)
                    };
                    if !tried.insert(port) {
                        continue;
                    }
                    *sent += 1;
                    batch += 1;
                    self.transmits.push_back(PunchTransmit {
                        socket: 0,
                        to: SocketAddr::new(to.ip(), port),
                        kind: PunchKind::Punch,
                    });
                }
                *sent < max
            }
        }
    }

    /// The next packet to send.
    pub fn poll_transmit(&mut self) -> Option<PunchTransmit> {
        self.transmits.pop_front()
    }

    /// The next thing to do besides sending.
    pub fn poll_event(&mut self) -> Option<PunchEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        self.targets
            .iter()
            .filter_map(|t| t.next)
            .chain(self.next_batch)
            .chain(Some(self.deadline))
            .min()
    }
}

/// A unicast address with a port, worth punching.
fn usable(addr: SocketAddr) -> bool {
    let ip = addr.ip();
    let broadcast = matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

/// The port `offset` above `port` among those a NAT hands out
/// ([`RANDOM_PORT_MIN`] to 65535, wrapping around).
fn above(port: u16, offset: u16) -> u16 {
    let span = u32::from(u16::MAX - RANDOM_PORT_MIN) + 1;
    let from = u32::from(port.max(RANDOM_PORT_MIN) - RANDOM_PORT_MIN);
    let at = (from + u32::from(offset)) % span;
    // At most 64,511 above the minimum: within u16.
    RANDOM_PORT_MIN + at as u16
}

/// A random port among those a randomising NAT hands out (xorshift64).
fn next_port(state: &mut u64) -> u16 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    let span = u64::from(u16::MAX - RANDOM_PORT_MIN) + 1;
    RANDOM_PORT_MIN + (x % span) as u16
}

#[cfg(test)]
mod tests;
