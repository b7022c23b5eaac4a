//! Root only: two messaging peers, each on a private LAN behind a router
//! doing `masquerade fully-random` (a symmetric NAT) that drops
//! unsolicited inbound traffic, reach each other through a rendezvous on
//! the "internet", in network namespaces this test creates and deletes:
//!
//! ```text
//!  weft-trav-<pid>-la            weft-trav-<pid>-ra              weft-trav-<pid>-inet
//!  la0 10.202.1.2/24 <=veth=>    ral 10.202.1.1/24
//!  default via 10.202.1.1        ra0 10.202.0.11/24 <=veth=>  ia --+
//!                                masquerade fully-random           br0 10.202.0.2/24
//!                                forward, input: established only         |   10.202.0.3/24
//!  weft-trav-<pid>-lb            weft-trav-<pid>-rb                |   (rendezvous, STUN
//!  lb0 10.202.2.2/24 <=veth=>    rbl 10.202.2.1/24                 |    with RFC 5780)
//!  default via 10.202.2.1        rb0 10.202.0.12/24 <=veth=>  ib --+
//! ```
//!
//! The internet has no route into either LAN. Each side runs on a thread
//! that joined its namespace with `setns`, with a tokio runtime of its
//! own. Both peers start with nothing but the rendezvous's URL and send
//! 2,000 messages each from the first moment; all arrive once each and in
//! order, through the relay, and the first within 1 s of both having
//! registered. The rendezvous's STUN server (RFC 5780 on its second IP)
//! finds the NAT symmetric: the pair stays on the relay. The other cells
//! run the same lab with plain `masquerade` (a port-restricted cone NAT
//! that keeps ports): a public host (bob on the bridge) and alice go
//! direct, both behind NATs go direct by TCP simultaneous open, and two
//! peers on one LAN go direct on the LAN addresses, each within 5 s of
//! both having registered, to the address expected (also with UDP
//! blocked at one router); and a direct path cut mid-stream at a router
//! falls back to the relay, delivery going on with nothing lost or
//! duplicated. Where both TCP and UDP can get through, whichever direct
//! path comes first wins (UDP hole punching carries QUIC). With plain
//! `masquerade` at router a and `masquerade fully-random` at router b,
//! TCP cannot cross and the pair goes direct over QUIC on a socket
//! punched by birthday probing. Without root, `ip netns` or nft, the test
//! says loudly that it was skipped, and passes. With `WEFT_NATLAB_RECORD`
//! set, each cell also appends its times to a file before asserting (see
//! `record`), which `cargo xtask natlab` runs the cells for and reads.

#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::Barrier;
use weft_link::Address;
use weft_messaging::{Identity, Message, Messaging, MessagingConfig};
use weft_stun::transaction::RetransmitConfig;
use weft_stun::{ClientConfig, NatType, discover_nat};
use weft_traversal::{
    Rendezvous, RendezvousOptions, Transport, Traversal, TraversalConfig, TraversalEvent, Via,
};

#[path = "nat_lab/record.rs"]
mod record;

const COUNT: usize = 2_000;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// The bound on each peer's whole run.
const PEER_TIMEOUT: Duration = Duration::from_secs(60);
const RENDEZVOUS: [u8; 4] = [10, 202, 0, 2];
const RENDEZVOUS_ALT: [u8; 4] = [10, 202, 0, 3];

fn skip(why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "!!!!! SKIPPED (needs root, `ip netns`, sysctl and nft): nat_lab: {why} !!!!!"
    );
}

/// Runs a command to completion, killing it after [`COMMAND_TIMEOUT`].
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program} {args:?}: {e}"))?;
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} {args:?} still running"));
            }
            Err(e) => return Err(format!("{program} {args:?}: {e}")),
        }
    };
    let text = reader.join().unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?} failed ({status}): {}",
            text.trim()
        ))
    }
}

fn ip(args: &str) -> Result<(), String> {
    run("ip", &args.split_whitespace().collect::<Vec<_>>())
}

/// Runs `args` inside namespace `ns`.
fn exec(ns: &str, args: &[&str]) -> Result<(), String> {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// The five namespaces; dropping deletes them and everything in them.
struct Lab {
    base: String,
    created: Vec<String>,
}

impl Lab {
    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.base)
    }

    fn create(cell: &str) -> Result<Lab, String> {
        let mut lab = Lab {
            base: format!("weft-trav-{}-{cell}", std::process::id()),
            created: Vec::new(),
        };
        for name in ["inet", "ra", "rb", "la", "lb"] {
            let ns = lab.ns(name);
            let _ = ip(&format!("netns delete {ns}"));
            ip(&format!("netns add {ns}"))?;
            lab.created.push(ns);
        }
        Ok(lab)
    }

    /// Builds the lab with `nat` (`masquerade` or `masquerade
    /// fully-random`) on both routers.
    fn build(&self, nats: [&str; 2]) -> Result<(), String> {
        let inet = self.ns("inet");
        ip(&format!("-n {inet} link add br0 type bridge"))?;
        ip(&format!("-n {inet} addr add 10.202.0.2/24 dev br0"))?;
        ip(&format!("-n {inet} addr add 10.202.0.3/24 dev br0"))?;
        ip(&format!("-n {inet} link set br0 up"))?;
        ip(&format!("-n {inet} link set lo up"))?;
        for ((side, n), nat) in [("a", 1), ("b", 2)].into_iter().zip(nats) {
            let (router, lan) = (self.ns(&format!("r{side}")), self.ns(&format!("l{side}")));
            for cmd in [
                format!("-n {router} link add r{side}0 type veth peer name i{side} netns {inet}"),
                format!("-n {inet} link set i{side} master br0"),
                format!("-n {inet} link set i{side} up"),
                format!("-n {router} addr add 10.202.0.1{n}/24 dev r{side}0"),
                format!("-n {router} link set r{side}0 up"),
                format!("-n {lan} link add l{side}0 type veth peer name r{side}l netns {router}"),
                format!("-n {router} addr add 10.202.{n}.1/24 dev r{side}l"),
                format!("-n {router} link set r{side}l up"),
                format!("-n {router} link set lo up"),
                format!("-n {lan} addr add 10.202.{n}.2/24 dev l{side}0"),
                format!("-n {lan} link set l{side}0 up"),
                format!("-n {lan} link set lo up"),
                format!("-n {lan} route add default via 10.202.{n}.1"),
            ] {
                ip(&cmd)?;
            }
            exec(&router, &["sysctl", "-w", "net.ipv4.ip_forward=1"])?;
            let out = format!("r{side}0");
            let lan_if = format!("r{side}l");
            for rule in [
                "add table ip nat".to_owned(),
                "add chain ip nat post { type nat hook postrouting priority 100 ; }".to_owned(),
                format!("add rule ip nat post oifname {out} {nat}"),
                "add table ip filter".to_owned(),
                "add chain ip filter forward_in { type filter hook forward priority 0 ; policy drop ; }"
                    .to_owned(),
                "add rule ip filter forward_in ct state established,related accept".to_owned(),
                format!("add rule ip filter forward_in iifname {lan_if} accept"),
                // Nor does the router itself answer what nobody asked
                // for from outside (no RST to a stray SYN), as home
                // routers do not.
                "add chain ip filter input { type filter hook input priority 0 ; policy accept ; }"
                    .to_owned(),
                format!("add rule ip filter input iifname {out} ct state established,related accept"),
                format!("add rule ip filter input iifname {out} drop"),
            ] {
                exec(&router, &["nft", &rule])?;
            }
        }
        Ok(())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.created {
            if let Err(e) = ip(&format!("netns delete {ns}")) {
                let _ = writeln!(std::io::stderr(), "nat_lab: {e}");
            }
        }
    }
}

/// Runs `make()`'s future on a new thread that first joins namespace `ns`,
/// on a tokio runtime of its own, for at most `limit`.
fn spawn_in<T, F, Fut>(ns: &str, limit: Duration, make: F) -> JoinHandle<Result<T, String>>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        // SAFETY: `file` is an open network namespace file; setns changes
        // only this thread's namespace, and this thread is ours alone.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            // Worker threads are spawned from this thread, in its namespace.
            .build()
            .map_err(|e| format!("a runtime in {path}: {e}"))?;
        runtime
            .block_on(async move { tokio::time::timeout(limit, make()).await })
            .map_err(|_| format!("not finished within {limit:?} in {path}"))?
    })
}

fn join_within<T>(thread: JoinHandle<Result<T, String>>, limit: Duration) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    while !thread.is_finished() {
        if Instant::now() >= deadline {
            return Err(format!("a namespace thread still running after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    match thread.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// What a peer saw.
#[derive(Debug)]
struct Seen {
    observed: Option<SocketAddr>,
    registered: Instant,
    first_message: Instant,
    remote: Option<SocketAddr>,
    /// The first direct TCP path and when it was reported.
    direct: Option<(Instant, SocketAddr)>,
    /// The first direct QUIC path (UDP hole punching) and when it was
    /// reported.
    quic: Option<(Instant, SocketAddr)>,
    /// The first direct path of either transport, which wins the race.
    first_direct: Option<(Instant, SocketAddr, Transport)>,
    /// The TCP port of our direct candidates.
    direct_port: u16,
    /// How long after the direct path was cut the relay was back.
    fallback: Option<Duration>,
}

/// Cutting the direct path mid-stream: both peers meet at `phase` once
/// half the messages went both ways on a direct path; the cutter then
/// drops its direct port's packets at `router` (both ways), and both meet
/// again before sending the other half.
struct Cut {
    router: String,
    lan_ip: &'static str,
    cutter: bool,
    phase: Arc<Barrier>,
}

/// Sends messages `range` to `other`.
async fn send_range(
    messaging: &Messaging,
    me: &str,
    other: &Identity,
    range: std::ops::Range<usize>,
) -> Result<(), String> {
    for i in range {
        messaging
            .send_message(other, Message::new(format!("{me}-{i}")))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Receives messages `range` from `other`, in order, once each.
async fn receive_range(
    messaging: &Messaging,
    me: &str,
    other: &Identity,
    range: std::ops::Range<usize>,
) -> Result<(), String> {
    for i in range {
        let got = messaging
            .recv(Some(PEER_TIMEOUT))
            .await
            .map_err(|e| format!("{me}: message {i}: {e}"))?;
        let want = format!("{other}-{i}");
        if got.message.data != want.as_bytes() {
            return Err(format!(
                "{me}: message {i} is {:?}, not {want}",
                String::from_utf8_lossy(&got.message.data)
            ));
        }
    }
    Ok(())
}

/// A peer in its LAN: registers, sends `COUNT` messages to `other` at
/// once, and receives `COUNT` from it, checking order (with `cut`, in two
/// halves around cutting the direct path).
async fn peer(
    me: &'static str,
    other: &'static str,
    at: Address,
    done: Arc<Barrier>,
    direct_expected: bool,
    cut: Option<Cut>,
) -> Result<Seen, String> {
    let mut config = MessagingConfig::default();
    // A dead direct path is noticed within 1.5 s, and its connection, which
    // can no longer flush what it holds, is let go within 0.5 s more (a
    // keep-alive failure closes gracefully, within close_timeout).
    config.keepalive_interval = Some(Duration::from_millis(500));
    config.keepalive_wait = Duration::from_secs(1);
    config.link.close_timeout = Duration::from_millis(500);
    let messaging = Messaging::new(Identity::new(me).unwrap(), config)
        .await
        .map_err(|e| e.to_string())?;
    let other = Identity::new(other).unwrap();
    let mut traversal_config = TraversalConfig::default();
    // The cut drops the direct TCP path's packets; a QUIC path beside it
    // would carry on and keep the relay away.
    traversal_config.punch.enabled = cut.is_none();
    let (traversal, mut events) =
        Traversal::start(&messaging, &at, Default::default(), traversal_config)
            .map_err(|e| e.to_string())?;
    traversal.reach(&other).map_err(|e| e.to_string())?;
    let direct_port = traversal.direct_port().ok_or("direct paths off")?;
    // The moments of registration and of each path, read as they happen.
    let (registered_tx, registered_rx) = tokio::sync::oneshot::channel();
    let (direct_tx, mut direct_rx) = tokio::sync::watch::channel(false);
    let paths = tokio::spawn(async move {
        let mut registered_tx = Some(registered_tx);
        let mut paths = Vec::new();
        while let Some(event) = events.recv().await {
            match event {
                TraversalEvent::Registered { observed } => {
                    if let Some(tx) = registered_tx.take() {
                        let _ = tx.send((observed, Instant::now()));
                    }
                }
                TraversalEvent::Path(path) => {
                    let _ =
                        direct_tx.send(direct_tx.borrow().to_owned() || path.via == Via::Direct);
                    paths.push((Instant::now(), path));
                }
                _ => {}
            }
        }
        paths
    });
    let half = if cut.is_some() { COUNT / 2 } else { COUNT };
    send_range(&messaging, me, &other, 0..half).await?;
    let Ok((observed, registered)) = registered_rx.await else {
        return Err(format!("{me}: never registered"));
    };
    receive_range(&messaging, me, &other, 0..1).await?;
    let first_message = Instant::now();
    receive_range(&messaging, me, &other, 1..half).await?;
    // Where a direct path is expected, until it is reported (or 6 s after
    // registering; the test then says it was not).
    if direct_expected {
        let limit = tokio::time::Instant::from_std(registered + Duration::from_secs(6));
        let _ = tokio::time::timeout_at(limit, direct_rx.wait_for(|d| *d)).await;
    }
    let mut cut_at = None;
    if let Some(cut) = cut {
        cut.phase.wait().await;
        if cut.cutter {
            let (router, ip, port) = (cut.router.clone(), cut.lan_ip, direct_port);
            tokio::task::spawn_blocking(move || {
                for rule in [
                    format!("insert rule ip filter forward_in ip saddr {ip} tcp sport {port} drop"),
                    format!("insert rule ip filter forward_in ip daddr {ip} tcp dport {port} drop"),
                ] {
                    exec(&router, &["nft", &rule])?;
                }
                Ok::<(), String>(())
            })
            .await
            .map_err(|e| e.to_string())??;
        }
        cut.phase.wait().await;
        cut_at = Some(Instant::now());
        send_range(&messaging, me, &other, half..COUNT).await?;
        receive_range(&messaging, me, &other, half..COUNT).await?;
    }
    // Until the other side has all of ours too, and has been told so:
    // whoever finishes first waits for the other before leaving.
    if !messaging.flush(PEER_TIMEOUT).await {
        return Err(format!("{me}: not everything delivered"));
    }
    done.wait().await;
    traversal.close().await;
    let paths = paths.await.map_err(|e| e.to_string())?;
    let remote = paths
        .iter()
        .find(|(_, p)| p.via == Via::Relay)
        .and_then(|(_, p)| p.remote);
    // The first relay path after the cut: the fallback.
    let fallback = cut_at.and_then(|cut| {
        paths
            .iter()
            .find(|(at, p)| p.via == Via::Relay && *at > cut)
            .map(|(at, _)| at.saturating_duration_since(cut))
    });
    let first = |transport| {
        paths
            .iter()
            .find(|(_, p)| p.via == Via::Direct && p.transport == transport)
            .map(|(at, p)| (*at, p.remote.expect("a direct path's remote")))
    };
    let (direct, quic) = (first(Transport::Tcp), first(Transport::Quic));
    let first_direct = paths
        .iter()
        .find(|(_, p)| p.via == Via::Direct)
        .map(|(at, p)| (*at, p.remote.expect("a direct path's remote"), p.transport));
    messaging.close().await;
    Ok(Seen {
        observed,
        registered,
        first_message,
        remote,
        direct,
        quic,
        first_direct,
        fallback,
        direct_port,
    })
}

/// Where the two peers run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Alice behind router a, bob behind router b.
    TwoLans,
    /// Alice behind router a, bob on the internet bridge (a public host).
    PublicBob,
    /// Both on alice's LAN, behind one NAT.
    SameLan,
}

/// One cell of the matrix, run.
struct Cell {
    alice: Seen,
    bob: Seen,
    at: Address,
    stun: Option<SocketAddr>,
    /// Dropped to stop the rendezvous.
    stop: tokio::sync::oneshot::Sender<()>,
    rendezvous: JoinHandle<Result<weft_traversal::RendezvousStats, String>>,
    lab: Lab,
}

impl Cell {
    /// Stops the rendezvous: its counters, and the lab.
    fn finish(self) -> (weft_traversal::RendezvousStats, Lab) {
        drop(self.stop);
        let stats = join_within(self.rendezvous, Duration::from_secs(20)).expect("the rendezvous");
        (stats, self.lab)
    }
}

/// The cells share the host's namespaces and CPU: one at a time, so that
/// each one's times are its own.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Builds a lab with `nat` on its routers, runs the rendezvous and the two
/// peers placed as `placement`; `None` (said loudly) when the host cannot.
/// What a cell does besides the plain run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Twist {
    None,
    /// The direct path is cut mid-stream (see [`Cut`]).
    Cut,
    /// Router a forwards no UDP at all.
    NoUdp,
    /// Router b's NAT is `masquerade fully-random` (symmetric), router
    /// a's the cell's.
    SymmetricB,
    /// As `SymmetricB`, with a rendezvous on one IP: no RFC 5780, its
    /// second STUN port tells the varying mapping.
    SymmetricBOneIp,
}

fn cell(tag: &str, nat: &str, placement: Placement, twist: Twist) -> Option<Cell> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("not root, cannot create network namespaces");
        return None;
    }
    if let Err(e) = ip("netns list") {
        skip(&format!("`ip netns` does not work: {e}"));
        return None;
    }
    if run("nft", &["--version"]).is_err() {
        skip("nft is not installed");
        return None;
    }
    let lab = match Lab::create(tag) {
        Ok(lab) => lab,
        Err(e) => {
            skip(&format!("`ip netns add` failed: {e}"));
            return None;
        }
    };
    let nats = if matches!(twist, Twist::SymmetricB | Twist::SymmetricBOneIp) {
        [nat, "masquerade fully-random"]
    } else {
        [nat, nat]
    };
    if let Err(e) = lab.build(nats) {
        skip(&format!("building the lab failed: {e}"));
        return None;
    }
    if twist == Twist::NoUdp {
        let rule = "insert rule ip filter forward_in meta l4proto udp drop";
        exec(&lab.ns("ra"), &["nft", rule]).expect("blocking UDP");
    }

    // The rendezvous, until the test lets go of `stop`.
    let (ready, bound) = mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let one_ip = twist == Twist::SymmetricBOneIp;
    let rendezvous = spawn_in(&lab.ns("inet"), PEER_TIMEOUT * 2, move || async move {
        let mut options =
            RendezvousOptions::listen(Address::tcp(SocketAddr::from((RENDEZVOUS, 0))));
        if !one_ip {
            options.alternate_ip = Some(RENDEZVOUS_ALT.into());
        }
        let (rv, _events) = Rendezvous::start(options)
            .await
            .map_err(|e| e.to_string())?;
        let _ = ready.send((rv.listening()[0].clone(), rv.stun_addr()));
        let _ = stopped.await;
        let stats = rv.stats();
        rv.close().await;
        Ok(stats)
    });
    let (at, stun) = bound
        .recv_timeout(Duration::from_secs(10))
        .expect("the rendezvous starts");
    assert_eq!(stun, at.socket_addr());

    let (a, b) = (at.clone(), at.clone());
    let done = Arc::new(Barrier::new(2));
    let (d1, d2) = (done.clone(), done);
    let bob_ns = match placement {
        Placement::TwoLans => lab.ns("lb"),
        Placement::PublicBob => lab.ns("inet"),
        Placement::SameLan => lab.ns("la"),
    };
    let direct = nat == "masquerade";
    let (alice_cut, bob_cut) = if twist == Twist::Cut {
        let phase = Arc::new(Barrier::new(2));
        let cut = |cutter| Cut {
            router: lab.ns("ra"),
            lan_ip: "10.202.1.2",
            cutter,
            phase: phase.clone(),
        };
        (Some(cut(true)), Some(cut(false)))
    } else {
        (None, None)
    };
    let alice = spawn_in(&lab.ns("la"), PEER_TIMEOUT, move || {
        peer("alice", "bob", a, d1, direct, alice_cut)
    });
    let bob = spawn_in(&bob_ns, PEER_TIMEOUT, move || {
        peer("bob", "alice", b, d2, direct, bob_cut)
    });
    let alice = join_within(alice, PEER_TIMEOUT + Duration::from_secs(5)).expect("alice");
    let bob = join_within(bob, PEER_TIMEOUT + Duration::from_secs(5)).expect("bob");
    let cell = Cell {
        alice,
        bob,
        at,
        stun,
        stop,
        rendezvous,
        lab,
    };
    record::record(&cell, tag);
    Some(cell)
}

/// What every cell asserts: the first message within 1 s of both having
/// registered (delivery of all, once and in order, the peers checked);
/// the times are printed for the record.
fn first_messages_in_time(cell: &Cell, name: &str) -> Instant {
    let both = cell.alice.registered.max(cell.bob.registered);
    for (who, seen) in [("alice", &cell.alice), ("bob", &cell.bob)] {
        let first = seen.first_message.saturating_duration_since(both);
        let direct = seen
            .direct
            .map(|(at, remote)| (at.saturating_duration_since(both), remote));
        eprintln!("{name}: {who}: first message after {first:?}, direct path {direct:?}");
        assert!(
            first <= Duration::from_secs(1),
            "{name}: {who}'s first message after {first:?}"
        );
    }
    both
}

/// A direct path within 5 s of both having registered, to `expected`
/// (the TCP addresses: a QUIC path, when UDP punching won the race, goes
/// to an expected IP on the port of the peer's punching socket).
fn direct_in_time(seen: &Seen, both: Instant, expected: &[SocketAddr], who: &str) {
    let (at, remote, transport) = seen
        .first_direct
        .unwrap_or_else(|| panic!("{who}: no direct path"));
    let after = at.saturating_duration_since(both);
    eprintln!("{who}: direct over {transport:?} after {after:?} to {remote}");
    assert!(
        after <= Duration::from_secs(5),
        "{who}: direct after {after:?}"
    );
    let expected_here = match transport {
        Transport::Quic => expected.iter().any(|e| e.ip() == remote.ip()),
        _ => expected.contains(&remote),
    };
    assert!(
        expected_here,
        "{who}: direct over {transport:?} to {remote}, not {expected:?}"
    );
}

#[test]
fn a_public_host_and_a_peer_behind_masquerade_go_direct() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Some(cell) = cell("pub", "masquerade", Placement::PublicBob, Twist::None) else {
        return;
    };
    let both = first_messages_in_time(&cell, "public host");
    // Bob is on the bridge with both of its addresses; alice is seen from
    // her router, with the port she dials from kept.
    let bob_port = cell.bob.direct_port;
    let bob_addrs = [
        SocketAddr::from((RENDEZVOUS, bob_port)),
        SocketAddr::from((RENDEZVOUS_ALT, bob_port)),
    ];
    direct_in_time(&cell.alice, both, &bob_addrs, "alice");
    let alice_public = SocketAddr::from(([10, 202, 0, 11], cell.alice.direct_port));
    direct_in_time(&cell.bob, both, &[alice_public], "bob");
    drop(cell.finish());
}

#[test]
fn two_peers_behind_port_restricted_cone_nats_go_direct_by_simultaneous_open() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Some(cell) = cell("cone", "masquerade", Placement::TwoLans, Twist::None) else {
        return;
    };
    let both = first_messages_in_time(&cell, "both cone");
    let bob_public = SocketAddr::from(([10, 202, 0, 12], cell.bob.direct_port));
    let alice_public = SocketAddr::from(([10, 202, 0, 11], cell.alice.direct_port));
    direct_in_time(&cell.alice, both, &[bob_public], "alice");
    direct_in_time(&cell.bob, both, &[alice_public], "bob");
    drop(cell.finish());
}

#[test]
fn two_peers_behind_one_nat_go_direct_on_the_lan() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Some(cell) = cell("same", "masquerade", Placement::SameLan, Twist::None) else {
        return;
    };
    let both = first_messages_in_time(&cell, "same NAT");
    let lan = [10, 202, 1, 2];
    direct_in_time(
        &cell.alice,
        both,
        &[SocketAddr::from((lan, cell.bob.direct_port))],
        "alice",
    );
    direct_in_time(
        &cell.bob,
        both,
        &[SocketAddr::from((lan, cell.alice.direct_port))],
        "bob",
    );
    drop(cell.finish());
}

#[test]
fn two_peers_behind_symmetric_nats_talk_through_the_relay() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Some(cell) = cell(
        "sym",
        "masquerade fully-random",
        Placement::TwoLans,
        Twist::None,
    ) else {
        return;
    };
    let (alice, bob, at) = (&cell.alice, &cell.bob, &cell.at);
    // The rendezvous's STUN, RFC 5780 on its second IP, sees alice's NAT
    // for what it is.
    let stun_server = cell.stun.expect("STUN on");
    let nat = spawn_in(&cell.lab.ns("la"), PEER_TIMEOUT, move || async move {
        let config = ClientConfig {
            // Nothing is lost on these veths: short retransmissions keep
            // the filtering tests the NAT leaves unanswered short.
            retransmit: RetransmitConfig {
                rto: Duration::from_millis(100),
                rc: 3,
                rm: 4,
            },
            ..ClientConfig::default()
        };
        discover_nat(stun_server, &config)
            .await
            .map_err(|e| e.to_string())
    });
    let nat = join_within(nat, PEER_TIMEOUT + Duration::from_secs(5)).expect("NAT discovery");
    assert_eq!(nat.nat_type, Some(NatType::Symmetric), "{nat:#?}");
    eprintln!("alice {alice:?}\nbob {bob:?}");

    // Each was seen from its router's outside address, never its own.
    assert_eq!(
        alice.observed.map(|a| a.ip()),
        Some([10, 202, 0, 11].into())
    );
    assert_eq!(bob.observed.map(|a| a.ip()), Some([10, 202, 0, 12].into()));
    assert_eq!(alice.remote, at.socket_addr());
    assert_eq!(bob.remote, at.socket_addr());
    first_messages_in_time(&cell, "both symmetric");
    // No direct path through two symmetric NATs: the relay stays.
    assert!(alice.direct.is_none() && bob.direct.is_none());
    assert!(alice.quic.is_none() && bob.quic.is_none());
    let (stats, lab) = cell.finish();
    assert_eq!(stats.channels_opened, 1, "{stats:?}");
    drop(lab);
}

#[test]
fn a_cut_direct_path_falls_back_to_the_relay_and_delivery_goes_on() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Some(cell) = cell("cut", "masquerade", Placement::TwoLans, Twist::Cut) else {
        return;
    };
    let both = first_messages_in_time(&cell, "cut");
    let bob_public = SocketAddr::from(([10, 202, 0, 12], cell.bob.direct_port));
    direct_in_time(&cell.alice, both, &[bob_public], "alice");
    // The relay back on both sides once keep-alive found the path dead
    // (500 ms without news, 1 s for the answer, 0.5 s to close), and all
    // messages
    // of the second half delivered over it, once each and in order.
    for (who, seen) in [("alice", &cell.alice), ("bob", &cell.bob)] {
        let fallback = seen
            .fallback
            .unwrap_or_else(|| panic!("{who}: no relay after the cut"));
        eprintln!("cut: {who}: relay back after {fallback:?}");
        assert!(
            fallback <= Duration::from_secs(5),
            "{who}: relay after {fallback:?}"
        );
    }
    drop(cell.finish());
}

#[test]
fn with_udp_blocked_on_one_side_the_path_is_direct_over_tcp() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Some(cell) = cell("noudp", "masquerade", Placement::TwoLans, Twist::NoUdp) else {
        return;
    };
    let both = first_messages_in_time(&cell, "UDP blocked");
    for seen in [&cell.alice, &cell.bob] {
        assert!(seen.quic.is_none(), "no UDP path with UDP blocked");
    }
    let bob_public = SocketAddr::from(([10, 202, 0, 12], cell.bob.direct_port));
    let alice_public = SocketAddr::from(([10, 202, 0, 11], cell.alice.direct_port));
    direct_in_time(&cell.alice, both, &[bob_public], "alice");
    direct_in_time(&cell.bob, both, &[alice_public], "bob");
    drop(cell.finish());
}

#[test]
fn a_cone_nat_and_a_symmetric_nat_go_direct_over_quic_by_birthday_probing() {
    cone_and_symmetric("bday", Twist::SymmetricB);
}

/// The rendezvous has one IP: no RFC 5780, so the symmetric side learns
/// that its mapping varies from the rendezvous's second STUN port.
#[test]
fn with_a_rendezvous_on_one_ip_a_cone_nat_and_a_symmetric_nat_still_go_direct() {
    cone_and_symmetric("bday1", Twist::SymmetricBOneIp);
}

fn cone_and_symmetric(tag: &str, twist: Twist) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Some(cell) = cell(tag, "masquerade", Placement::TwoLans, twist) else {
        return;
    };
    let both = first_messages_in_time(&cell, "cone and symmetric");
    // TCP simultaneous open cannot cross the symmetric NAT; the punched
    // UDP socket can, and QUIC runs on it, to the other router's address.
    for (who, seen, router) in [
        ("alice", &cell.alice, [10, 202, 0, 12]),
        ("bob", &cell.bob, [10, 202, 0, 11]),
    ] {
        let (at, remote) = seen
            .quic
            .unwrap_or_else(|| panic!("{who}: no direct QUIC path"));
        let after = at.saturating_duration_since(both);
        eprintln!("cone and symmetric: {who}: direct over QUIC after {after:?} to {remote}");
        assert!(
            after <= Duration::from_secs(5),
            "{who}: direct after {after:?}"
        );
        assert_eq!(remote.ip(), std::net::IpAddr::from(router), "{who}");
    }
    drop(cell.finish());
}
