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
//!                                forward: established only         |   10.202.0.3/24
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
//! finds the NAT symmetric. Without root, `ip netns` or nft, the test says loudly that
//! it was skipped, and passes.

#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::Barrier;
use weft_link::Address;
use weft_messaging::{Identity, Message, Messaging};
use weft_stun::transaction::RetransmitConfig;
use weft_stun::{ClientConfig, NatType, discover_nat};
use weft_traversal::{Rendezvous, RendezvousOptions, Traversal, TraversalEvent, Via};

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

    fn create() -> Result<Lab, String> {
        let mut lab = Lab {
            base: format!("weft-trav-{}", std::process::id()),
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

    fn build(&self) -> Result<(), String> {
        let inet = self.ns("inet");
        ip(&format!("-n {inet} link add br0 type bridge"))?;
        ip(&format!("-n {inet} addr add 10.202.0.2/24 dev br0"))?;
        ip(&format!("-n {inet} addr add 10.202.0.3/24 dev br0"))?;
        ip(&format!("-n {inet} link set br0 up"))?;
        ip(&format!("-n {inet} link set lo up"))?;
        for (side, n) in [("a", 1), ("b", 2)] {
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
                format!("add rule ip nat post oifname {out} masquerade fully-random"),
                "add table ip filter".to_owned(),
                "add chain ip filter forward_in { type filter hook forward priority 0 ; policy drop ; }"
                    .to_owned(),
                "add rule ip filter forward_in ct state established,related accept".to_owned(),
                format!("add rule ip filter forward_in iifname {lan_if} accept"),
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
}

/// A peer in its LAN: registers, sends `COUNT` messages to `other` at
/// once, and receives `COUNT` from it, checking order.
async fn peer(
    me: &'static str,
    other: &'static str,
    at: Address,
    done: Arc<Barrier>,
) -> Result<Seen, String> {
    let messaging = Messaging::new(Identity::new(me).unwrap(), Default::default())
        .await
        .map_err(|e| e.to_string())?;
    let other = Identity::new(other).unwrap();
    let (traversal, mut events) =
        Traversal::start(&messaging, &at, Default::default(), Default::default())
            .map_err(|e| e.to_string())?;
    traversal.reach(&other).map_err(|e| e.to_string())?;
    // The moment of registration, read as it happens.
    let registration = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Some(TraversalEvent::Registered { observed }) => {
                    return Some((observed, Instant::now(), events));
                }
                Some(_) => {}
                None => return None,
            }
        }
    });
    for i in 0..COUNT {
        let text = format!("{me}-{i}");
        messaging
            .send_message(&other, Message::new(text))
            .await
            .map_err(|e| e.to_string())?;
    }
    let Ok(Some((observed, registered, mut events))) = registration.await else {
        return Err(format!("{me}: never registered"));
    };
    let mut first_message = None;
    for i in 0..COUNT {
        let got = messaging
            .recv(Some(PEER_TIMEOUT))
            .await
            .map_err(|e| format!("{me}: message {i}: {e}"))?;
        first_message.get_or_insert_with(Instant::now);
        let want = format!("{other}-{i}");
        if got.message.data != want.as_bytes() {
            return Err(format!(
                "{me}: message {i} is {:?}, not {want}",
                String::from_utf8_lossy(&got.message.data)
            ));
        }
    }
    let mut remote = None;
    while let Ok(Some(event)) = tokio::time::timeout(Duration::ZERO, events.recv()).await {
        if let TraversalEvent::Path(path) = event {
            assert_eq!(path.via, Via::Relay);
            remote = path.remote;
        }
    }
    // Until the other side has all of ours too, and has been told so:
    // whoever finishes first waits for the other before leaving.
    if !messaging.flush(PEER_TIMEOUT).await {
        return Err(format!("{me}: not everything delivered"));
    }
    done.wait().await;
    traversal.close().await;
    messaging.close().await;
    Ok(Seen {
        observed,
        registered,
        first_message: first_message.expect("COUNT > 0"),
        remote,
    })
}

#[test]
fn two_peers_behind_symmetric_nats_talk_through_the_relay() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("not root, cannot create network namespaces");
        return;
    }
    if let Err(e) = ip("netns list") {
        skip(&format!("`ip netns` does not work: {e}"));
        return;
    }
    if run("nft", &["--version"]).is_err() {
        skip("nft is not installed");
        return;
    }
    let lab = match Lab::create() {
        Ok(lab) => lab,
        Err(e) => {
            skip(&format!("`ip netns add` failed: {e}"));
            return;
        }
    };
    if let Err(e) = lab.build() {
        skip(&format!("building the lab failed: {e}"));
        return;
    }

    // The rendezvous, until the test lets go of `stop`.
    let (ready, bound) = mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let rendezvous = spawn_in(&lab.ns("inet"), PEER_TIMEOUT * 2, move || async move {
        let mut options =
            RendezvousOptions::listen(Address::tcp(SocketAddr::from((RENDEZVOUS, 0))));
        options.alternate_ip = Some(RENDEZVOUS_ALT.into());
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
    let alice = spawn_in(&lab.ns("la"), PEER_TIMEOUT, move || {
        peer("alice", "bob", a, d1)
    });
    let bob = spawn_in(&lab.ns("lb"), PEER_TIMEOUT, move || {
        peer("bob", "alice", b, d2)
    });
    let alice = join_within(alice, PEER_TIMEOUT + Duration::from_secs(5)).expect("alice");
    let bob = join_within(bob, PEER_TIMEOUT + Duration::from_secs(5)).expect("bob");
    // The rendezvous's STUN, RFC 5780 on its second IP, sees alice's NAT
    // for what it is.
    let stun_server = stun.expect("STUN on");
    let nat = spawn_in(&lab.ns("la"), PEER_TIMEOUT, move || async move {
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
    drop(stop);
    let stats = join_within(rendezvous, Duration::from_secs(20)).expect("the rendezvous");
    eprintln!("alice {alice:?}\nbob {bob:?}\nrendezvous {stats:?}");

    // Each was seen from its router's outside address, never its own.
    assert_eq!(
        alice.observed.map(|a| a.ip()),
        Some([10, 202, 0, 11].into())
    );
    assert_eq!(bob.observed.map(|a| a.ip()), Some([10, 202, 0, 12].into()));
    assert_eq!(alice.remote, at.socket_addr());
    assert_eq!(bob.remote, at.socket_addr());
    let both = alice.registered.max(bob.registered);
    for seen in [&alice, &bob] {
        let first = seen.first_message.saturating_duration_since(both);
        assert!(
            first <= Duration::from_secs(1),
            "first message after {first:?}"
        );
    }
    assert_eq!(stats.channels_opened, 1, "{stats:?}");
    drop(lab);
}
