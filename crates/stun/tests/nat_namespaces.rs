//! Root only: STUN through a real NAT, the Linux kernel's, in network
//! namespaces this test creates and deletes (nothing is added to the
//! host's namespace, and no packet is sent anywhere else):
//!
//! ```text
//!  weft-nat-<pid>-client       weft-nat-<pid>-router            weft-nat-<pid>-server
//!  cr0 10.201.1.2/24 <=veth=> rc0 10.201.1.1/24
//!  default via 10.201.1.1      rs0 10.201.2.1/24 <=veth=> sr0 10.201.2.2/24
//!                              ip_forward=1                   10.201.2.3/24
//!                              masquerade out of rs0
//! ```
//!
//! weft's STUN server runs in the server namespace with RFC 5780 (primary
//! 10.201.2.2, alternate 10.201.2.3); the client runs in the client
//! namespace. Each runs on a thread that joined its namespace with
//! `setns`, with a tokio runtime of its own, so both live in this test
//! process. The router NATs with nftables (`iptables` when `nft` is
//! missing): first plain `masquerade`, then `masquerade random`.
//!
//! Without root, `ip netns`, `sysctl` or a NAT tool, the test says loudly
//! that it was skipped, and passes.

#![cfg(target_os = "linux")]

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use weft_stun::{
    Binding, ClientConfig, NatReport, NatType, StunClient, StunServer, StunServerConfig,
    discover_nat,
};

use weft_stun::client::binding_tcp;

use weft_stun::nat::{FilteringBehaviour, MappingBehaviour};

use weft_stun::transaction::RetransmitConfig;

use weft_stun::url::Transport;

const CLIENT: [u8; 4] = [10, 201, 1, 2];
/// The router's outside address: what the NAT maps the client to.
const ROUTER_OUTSIDE: [u8; 4] = [10, 201, 2, 1];
const SERVER_PRIMARY: [u8; 4] = [10, 201, 2, 2];
const SERVER_ALTERNATE: [u8; 4] = [10, 201, 2, 3];
/// The router's interface towards the server, where the NAT applies.
const OUTSIDE_IF: &str = "rs0";
/// The bound on each command (`ip`, `nft`, `sysctl`).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// The bound on all the client's work in one NAT configuration.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The bound on the server's life, should the test never stop it.
const SERVER_LIFETIME: Duration = Duration::from_secs(120);

/// Says, past the test harness's output capture, that the test did not
/// run.
fn skip(why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "!!!!! SKIPPED (needs root, `ip netns`, sysctl, and nft or iptables): \
         nat_namespaces: {why} !!!!!"
    );
}

/// Runs a command to completion, killing it after [`COMMAND_TIMEOUT`];
/// returns its output, or why it failed.
fn run<I, S>(program: &str, args: I) -> Result<String, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().map_err(|e| format!("{shown}: {e}"))?;
    let readers: Vec<JoinHandle<String>> = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    })
    .collect();
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown} still running after {COMMAND_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("{shown}: {e}")),
        }
    };
    // None of these commands leaves children holding the pipes.
    let output: String = readers.into_iter().filter_map(|r| r.join().ok()).collect();
    if status.success() {
        Ok(output)
    } else {
        Err(format!("{shown} failed ({status}): {}", output.trim()))
    }
}

fn ip(args: &str) -> Result<String, String> {
    run("ip", args.split_whitespace())
}

/// The router's NAT, as configured in turn by the test.
#[derive(Clone, Copy, Debug)]
enum Nat {
    /// `masquerade`: the source port is kept when free.
    Masquerade,
    /// `masquerade random`: the source port is drawn from a hash keyed by
    /// the destination, so each destination gets its own mapping.
    MasqueradeRandom,
}

/// The tool that configures the router's NAT.
#[derive(Clone, Copy, Debug)]
enum Firewall {
    Nft,
    Iptables,
}

impl Firewall {
    fn detect() -> Option<Firewall> {
        if run("nft", ["--version"]).is_ok() {
            Some(Firewall::Nft)
        } else if run("iptables", ["--version"]).is_ok() {
            Some(Firewall::Iptables)
        } else {
            None
        }
    }

    /// The commands (run in the router's namespace) that replace its NAT
    /// with `nat`. `first` when there is none yet.
    fn commands(self, nat: Nat, first: bool) -> Vec<Vec<String>> {
        let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let mut cmds = Vec::new();
        match self {
            Firewall::Nft => {
                if first {
                    cmds.push(words("nft add table ip nat"));
                    // One argument: nft joins its arguments anyway.
                    cmds.push(vec![
                        "nft".into(),
                        "add chain ip nat post { type nat hook postrouting priority 100 ; }".into(),
                    ]);
                } else {
                    cmds.push(words("nft flush chain ip nat post"));
                }
                let statement = match nat {
                    Nat::Masquerade => "masquerade",
                    Nat::MasqueradeRandom => "masquerade random",
                };
                cmds.push(words(&format!(
                    "nft add rule ip nat post oifname {OUTSIDE_IF} {statement}"
                )));
            }
            Firewall::Iptables => {
                if !first {
                    cmds.push(words("iptables -t nat -F POSTROUTING"));
                }
                let extra = match nat {
                    Nat::Masquerade => "",
                    Nat::MasqueradeRandom => " --random",
                };
                cmds.push(words(&format!(
                    "iptables -t nat -A POSTROUTING -o {OUTSIDE_IF} -j MASQUERADE{extra}"
                )));
            }
        }
        cmds
    }
}

/// The three namespaces; dropping deletes them, and everything in them.
struct Network {
    client: String,
    router: String,
    server: String,
    /// The namespaces made so far, deleted on drop.
    created: Vec<String>,
}

impl Network {
    fn create() -> Result<Network, String> {
        let base = format!("weft-nat-{}", std::process::id());
        let mut net = Network {
            client: format!("{base}-client"),
            router: format!("{base}-router"),
            server: format!("{base}-server"),
            created: Vec::new(),
        };
        for name in [net.client.clone(), net.router.clone(), net.server.clone()] {
            // A leftover of an earlier run with the same pid.
            let _ = ip(&format!("netns delete {name}"));
            ip(&format!("netns add {name}"))?;
            net.created.push(name);
        }
        Ok(net)
    }

    fn build(&self) -> Result<(), String> {
        let (c, r, s) = (&self.client, &self.router, &self.server);
        for cmd in [
            format!("-n {c} link add cr0 type veth peer name rc0 netns {r}"),
            format!("-n {r} link add {OUTSIDE_IF} type veth peer name sr0 netns {s}"),
            format!("-n {c} addr add 10.201.1.2/24 dev cr0"),
            format!("-n {r} addr add 10.201.1.1/24 dev rc0"),
            format!("-n {r} addr add 10.201.2.1/24 dev {OUTSIDE_IF}"),
            format!("-n {s} addr add 10.201.2.2/24 dev sr0"),
            format!("-n {s} addr add 10.201.2.3/24 dev sr0"),
            format!("-n {c} link set lo up"),
            format!("-n {r} link set lo up"),
            format!("-n {s} link set lo up"),
            format!("-n {c} link set cr0 up"),
            format!("-n {r} link set rc0 up"),
            format!("-n {r} link set {OUTSIDE_IF} up"),
            format!("-n {s} link set sr0 up"),
            format!("-n {c} route add default via 10.201.1.1 dev cr0"),
        ] {
            ip(&cmd)?;
        }
        run(
            "ip",
            ["netns", "exec", r, "sysctl", "-w", "net.ipv4.ip_forward=1"],
        )?;
        Ok(())
    }

    fn set_nat(&self, firewall: Firewall, nat: Nat, first: bool) -> Result<(), String> {
        for cmd in firewall.commands(nat, first) {
            let mut args: Vec<String> = vec!["netns".into(), "exec".into(), self.router.clone()];
            args.extend(cmd);
            run("ip", &args)?;
        }
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for name in &self.created {
            if let Err(e) = ip(&format!("netns delete {name}")) {
                let _ = writeln!(std::io::stderr(), "nat_namespaces: {e}");
            }
        }
    }
}

/// Runs `make()`'s future on a new thread that first joins the network
/// namespace `ns`, on a current-thread tokio runtime of its own, for at
/// most `limit`. Returns the thread; its result is the future's output, or
/// why it could not run or did not finish.
fn spawn_in<T, F, Fut>(ns: &str, limit: Duration, make: F) -> JoinHandle<Result<T, String>>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
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
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("a runtime in {path}: {e}"))?;
        // The timer starts inside the runtime, which it needs.
        runtime
            .block_on(async move { tokio::time::timeout(limit, make()).await })
            .map_err(|_| format!("not finished within {limit:?} in {path}"))
    })
}

/// Waits for a thread's result, at most `limit`.
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

/// One RFC 5780 server's addresses.
#[derive(Clone, Copy, Debug)]
struct ServerAddrs {
    primary: SocketAddr,
    alternate: SocketAddr,
}

/// The STUN servers in the server namespace: one per NAT configuration,
/// so that the second configuration's flows never meet the first's
/// conntrack entries (which would keep the first's mappings). Dropping
/// stops them.
struct Servers {
    addrs: Vec<ServerAddrs>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Servers {
    fn start(ns: &str, count: usize) -> Result<Servers, String> {
        let (ready, addrs) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = spawn_in(ns, SERVER_LIFETIME, move || async move {
            let mut servers = Vec::new();
            for _ in 0..count {
                let bound = StunServer::bind(StunServerConfig {
                    listen: SocketAddr::from((SERVER_PRIMARY, 0)),
                    alternate: Some(SocketAddr::from((SERVER_ALTERNATE, 0))),
                    tcp: true,
                    ..StunServerConfig::default()
                })
                .await;
                match bound {
                    Ok(s) => servers.push(s),
                    Err(e) => {
                        let _ = ready.send(Err(e.to_string()));
                        return;
                    }
                }
            }
            let _ = ready.send(Ok(servers
                .iter()
                .map(|s| ServerAddrs {
                    primary: s.primary(),
                    alternate: s.alternate().expect("RFC 5780 server"),
                })
                .collect::<Vec<_>>()));
            // Until the test lets go of `stop` (or SERVER_LIFETIME).
            let _ = stopped.await;
            drop(servers);
        });
        let mut servers = Servers {
            addrs: Vec::new(),
            stop: Some(stop),
            thread: Some(thread),
        };
        servers.addrs = match addrs.recv_timeout(Duration::from_secs(10)) {
            Ok(bound) => bound?,
            // The thread ended without a word: it could not join the
            // namespace or make its runtime, and says why.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let thread = servers.thread.take().expect("not joined yet");
                return Err(match join_within(thread, Duration::from_secs(10)) {
                    Ok(()) => "the STUN server thread ended early".into(),
                    Err(e) => format!("the STUN servers did not start: {e}"),
                });
            }
            Err(e) => return Err(format!("the STUN servers did not start: {e}")),
        };
        Ok(servers)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// What the client in its namespace saw through one NAT configuration.
#[derive(Debug)]
struct Observed {
    udp: Binding,
    tcp: Binding,
    nat: NatReport,
}

/// The client's work, in the client namespace: a UDP and a TCP Binding
/// request to the primary address, then RFC 5780 discovery.
fn observe(ns: &str, server: ServerAddrs) -> Observed {
    let thread = spawn_in(ns, CLIENT_TIMEOUT, move || async move {
        let config = ClientConfig {
            local: Some(SocketAddr::from((CLIENT, 0))),
            // Short, so that the filtering tests the NAT leaves unanswered
            // cost 0.7 s rather than 39.5 s: requests at 0, 100 and 300 ms,
            // failure at 700 ms. Nothing is lost on these veths.
            retransmit: RetransmitConfig {
                rto: Duration::from_millis(100),
                rc: 3,
                rm: 4,
            },
            stream_timeout: Duration::from_secs(5),
            ..ClientConfig::default()
        };
        let step = |what: &str, e: weft_stun::StunError| format!("{what}: {e}");
        let client = StunClient::bind(SocketAddr::from((CLIENT, 0)), &config)
            .await
            .map_err(|e| step("binding the client socket", e))?;
        let udp = client
            .binding(server.primary)
            .await
            .map_err(|e| step("UDP binding", e))?;
        drop(client);
        let tcp = binding_tcp(server.primary, &config)
            .await
            .map_err(|e| step("TCP binding", e))?;
        let nat = discover_nat(server.primary, &config)
            .await
            .map_err(|e| step("NAT discovery", e))?;
        Ok::<_, String>(Observed { udp, tcp, nat })
    });
    let seen = join_within(thread, CLIENT_TIMEOUT + Duration::from_secs(10))
        .and_then(|r| r)
        .unwrap_or_else(|e| panic!("the client in {ns}: {e}"));
    let Observed { udp, tcp, nat } = &seen;
    let word = |w: Option<&'static str>| w.unwrap_or("unknown");
    eprintln!(
        "  UDP {} -> {}, TCP {} -> {}; discovery from {}: mapped {:?}, \
         mapping {}, filtering {}, type {}",
        udp.local,
        udp.mapped,
        tcp.local,
        tcp.mapped,
        nat.local,
        nat.mapped,
        word(nat.mapping.map(|m| m.as_str())),
        word(nat.filtering.map(|f| f.as_str())),
        word(nat.nat_type.map(|t| t.as_str())),
    );
    seen
}

fn router_outside() -> IpAddr {
    IpAddr::from(ROUTER_OUTSIDE)
}

#[test]
fn the_client_sees_the_nat_the_router_really_does() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("not root, cannot create network namespaces");
        return;
    }
    if let Err(e) = ip("netns list") {
        skip(&format!("`ip netns` does not work: {e}"));
        return;
    }
    let Some(firewall) = Firewall::detect() else {
        skip("neither nft nor iptables is installed");
        return;
    };
    let net = match Network::create() {
        Ok(net) => net,
        Err(e) => {
            skip(&format!("`ip netns add` failed: {e}"));
            return;
        }
    };
    if let Err(e) = net
        .build()
        .and_then(|()| net.set_nat(firewall, Nat::Masquerade, true))
    {
        skip(&format!("building the routed network failed: {e}"));
        return;
    }
    let servers = Servers::start(&net.server, 2).expect("STUN servers in the server namespace");
    let (cone_server, symmetric_server) = (servers.addrs[0], servers.addrs[1]);

    // Plain masquerade. Linux's NAT keeps the source port when no other
    // connection uses it on the outside address, and makes one conntrack
    // entry per 5-tuple: each new destination gets the same outside port
    // again, so the mapping is endpoint-independent (M1 = M2, and equal to
    // the local port). Inbound, only replies matching a conntrack entry
    // (the exact remote IP and port the client sent to) are translated
    // back; a datagram from the alternate IP or port is addressed to the
    // router itself, where nothing listens: address-and-port-dependent
    // filtering. Hence "port-restricted cone".
    eprintln!("router: {firewall:?}, {:?}", Nat::Masquerade);
    let seen = observe(&net.client, cone_server);
    let Observed { udp, tcp, nat } = &seen;
    assert_eq!(udp.local.ip(), IpAddr::from(CLIENT), "{seen:#?}");
    assert_eq!(udp.mapped.ip(), router_outside(), "{seen:#?}");
    assert_eq!(udp.mapped.port(), udp.local.port(), "port kept: {seen:#?}");
    assert!(!udp.is_local(), "{seen:#?}");
    assert_eq!(udp.transport, Transport::Udp);
    assert_eq!(udp.other_address, Some(cone_server.alternate));
    assert_eq!(tcp.transport, Transport::Tcp);
    assert_eq!(tcp.local.ip(), IpAddr::from(CLIENT), "{seen:#?}");
    assert_eq!(tcp.mapped.ip(), router_outside(), "{seen:#?}");
    assert_eq!(tcp.mapped.port(), tcp.local.port(), "port kept: {seen:#?}");
    assert_eq!(nat.server, cone_server.primary);
    assert_eq!(nat.local.ip(), IpAddr::from(CLIENT), "{nat:#?}");
    assert_eq!(
        nat.mapped,
        Some(SocketAddr::new(router_outside(), nat.local.port())),
        "{nat:#?}"
    );
    assert!(!nat.is_open(), "{nat:#?}");
    assert_eq!(nat.other_address, Some(cone_server.alternate));
    assert_eq!(
        nat.mapping,
        Some(MappingBehaviour::EndpointIndependent),
        "{nat:#?}"
    );
    assert_eq!(
        nat.filtering,
        Some(FilteringBehaviour::AddressAndPortDependent),
        "{nat:#?}"
    );
    assert_eq!(nat.nat_type, Some(NatType::PortRestricted), "{nat:#?}");

    // `masquerade random`: the outside port is chosen from a keyed hash of
    // the source and the destination, so every destination (IP or port)
    // gets a mapping of its own: address-and-port-dependent mapping, a
    // symmetric NAT. (Two destinations hashing to the same port, about
    // one chance in 64 000, would look endpoint-independent.) Filtering is
    // conntrack's, as before. This runs against the second server so that
    // no conntrack entry of the first configuration can match.
    net.set_nat(firewall, Nat::MasqueradeRandom, false)
        .expect("reconfiguring the router's NAT");
    eprintln!("router: {firewall:?}, {:?}", Nat::MasqueradeRandom);
    let seen = observe(&net.client, symmetric_server);
    let Observed { udp, tcp, nat } = &seen;
    assert_eq!(udp.mapped.ip(), router_outside(), "{seen:#?}");
    assert_eq!(tcp.mapped.ip(), router_outside(), "{seen:#?}");
    assert_eq!(nat.mapped.map(|m| m.ip()), Some(router_outside()));
    assert_eq!(nat.other_address, Some(symmetric_server.alternate));
    assert_eq!(
        nat.mapping,
        Some(MappingBehaviour::AddressAndPortDependent),
        "{nat:#?}"
    );
    assert_eq!(
        nat.filtering,
        Some(FilteringBehaviour::AddressAndPortDependent),
        "{nat:#?}"
    );
    assert_eq!(nat.nat_type, Some(NatType::Symmetric), "{nat:#?}");

    // The servers go before the namespaces they live in.
    drop(servers);
    drop(net);
}
