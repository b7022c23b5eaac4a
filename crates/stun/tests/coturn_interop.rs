//! The client against coturn (Debian's `coturn` package), a STUN server
//! weft did not write, and the same checks against weft's own server for
//! comparison. Loopback only.
//!
//! Ignored in plain test runs: `cargo xtask interop` installs coturn and
//! runs them with `WEFT_TURNSERVER` naming the `turnserver` binary (else
//! `turnserver` is looked up in `PATH`).
//!
//! Each test starts its own `turnserver` (a child process, killed when the
//! test ends, even on panic) with a configuration file of its own in a
//! fresh directory, so that `/etc/turnserver.conf` (which Debian ships with
//! `no-rfc5780`) plays no part: STUN only, no TLS or DTLS, no CLI, and two
//! listening IPs, 127.0.0.1 and 127.0.0.2, with the primary port P and the
//! alternate port P + 1, which is what RFC 5780 needs.

mod common;

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{addr, bounded};
use weft_stun::client::binding_tcp;
use weft_stun::nat::{FilteringBehaviour, MappingBehaviour};
use weft_stun::transaction::RetransmitConfig;
use weft_stun::url::Transport;
use weft_stun::{
    ClientConfig, NatType, ServerUrl, StunClient, StunServer, StunServerConfig, discover_nat,
    query_servers,
};

const PRIMARY_IP: [u8; 4] = [127, 0, 0, 1];
const ALTERNATE_IP: [u8; 4] = [127, 0, 0, 2];
/// How long coturn gets to answer on all its sockets after starting.
const READY_WITHIN: Duration = Duration::from_secs(15);
/// How many times a coturn is started (on new ports) before giving up.
const START_ATTEMPTS: u32 = 3;

/// A STUN server under test: its primary and alternate addresses, and the
/// start of its SOFTWARE.
struct Peer {
    name: &'static str,
    primary: SocketAddr,
    alternate: SocketAddr,
    software: &'static str,
    /// Whether OTHER-ADDRESS is the opposite socket (other IP, other
    /// port) from all four sockets, not only from the primary IP's.
    exact_other_address: bool,
}

impl Peer {
    /// The four UDP addresses, in weft's order: primary, primary IP with
    /// the alternate port, alternate IP with the primary port, alternate.
    fn udp_addrs(&self) -> [SocketAddr; 4] {
        let (p, a) = (self.primary, self.alternate);
        [
            p,
            SocketAddr::new(p.ip(), a.port()),
            SocketAddr::new(a.ip(), p.port()),
            a,
        ]
    }
}

/// A `turnserver` process this test started; dropping it kills it and
/// removes its directory.
struct Coturn {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Coturn {
    /// Starts coturn on free ports and waits until it answers on all of
    /// them (bounded); tries again on other ports when it does not.
    async fn start() -> Coturn {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Coturn::try_start().await {
                Ok(c) => return c,
                Err(e) => failures.push(e),
            }
        }
        panic!(
            "coturn did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    async fn try_start() -> Result<Coturn, String> {
        static RUN: AtomicU32 = AtomicU32::new(0);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "coturn-{}-{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = free_port_pair();
        let d = dir.display();
        let config = format!(
            "listening-ip=127.0.0.1\n\
             listening-ip=127.0.0.2\n\
             listening-port={port}\n\
             alt-listening-port={alt}\n\
             stun-only\n\
             no-tls\n\
             no-dtls\n\
             no-cli\n\
             no-stdout-log\n\
             log-file={d}/turnserver.log\n\
             simple-log\n\
             pidfile={d}/turnserver.pid\n\
             userdb={d}/turndb\n",
            alt = port + 1,
        );
        let conf = dir.join("turnserver.conf");
        std::fs::write(&conf, config).map_err(|e| format!("{}: {e}", conf.display()))?;
        let output = std::fs::File::create(dir.join("output.txt"))
            .map_err(|e| format!("{}/output.txt: {e}", dir.display()))?;
        let program = std::env::var("WEFT_TURNSERVER").unwrap_or_else(|_| "turnserver".into());
        let child = Command::new(&program)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(output.try_clone().map_err(|e| format!("output.txt: {e}"))?)
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                panic!("starting `{program}`: {e} (needs coturn: run `cargo xtask interop`)")
            });
        let mut coturn = Coturn { child, dir, port };
        match coturn.wait_ready().await {
            Ok(()) => Ok(coturn),
            Err(e) => Err(format!("{e}\n{}", coturn.logs())),
        }
    }

    /// Polls every UDP socket with a Binding request, and the TCP one
    /// with a connection, until all answer, coturn exits, or
    /// [`READY_WITHIN`] passes.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let probe = ClientConfig {
            retransmit: RetransmitConfig {
                rto: Duration::from_millis(100),
                rc: 2,
                rm: 2,
            },
            ..ClientConfig::default()
        };
        let client = StunClient::bind(addr("127.0.0.1:0"), &probe)
            .await
            .map_err(|e| e.to_string())?;
        let peer = self.peer();
        let deadline = Instant::now() + READY_WITHIN;
        let mut ready = [false; 4];
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("turnserver exited early ({status})"));
            }
            for (i, target) in peer.udp_addrs().iter().enumerate() {
                if !ready[i] {
                    ready[i] = client.binding(*target).await.is_ok();
                }
            }
            let tcp = TcpStream::connect_timeout(&peer.primary, Duration::from_millis(200)).is_ok();
            if tcp && ready.iter().all(|r| *r) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "turnserver on port {} not ready within {READY_WITHIN:?} \
                     (UDP sockets answering: {ready:?}, TCP: {tcp})",
                    self.port
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn peer(&self) -> Peer {
        Peer {
            name: "coturn",
            primary: SocketAddr::from((PRIMARY_IP, self.port)),
            alternate: SocketAddr::from((ALTERNATE_IP, self.port + 1)),
            software: "Coturn",
            exact_other_address: false,
        }
    }

    /// What coturn wrote, for failure messages.
    fn logs(&self) -> String {
        let mut s = String::new();
        for name in ["output.txt", "turnserver.log"] {
            let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            s.push_str(&format!("--- {name} (last lines)\n{}\n", tail.join("\n")));
        }
        s
    }
}

/// A port P such that P and P + 1 are free for UDP and TCP on both
/// loopback IPs (checked by binding all eight, then letting go).
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let Ok(first) = UdpSocket::bind(SocketAddr::from((PRIMARY_IP, 0))) else {
            continue;
        };
        let port = first.local_addr().unwrap().port();
        let Some(alt) = port.checked_add(1) else {
            continue;
        };
        let mut held_udp = vec![first];
        let mut held_tcp = Vec::new();
        let mut free = true;
        for ip in [PRIMARY_IP, ALTERNATE_IP] {
            for p in [port, alt] {
                let a = SocketAddr::from((ip, p));
                if a != held_udp[0].local_addr().unwrap() {
                    match UdpSocket::bind(a) {
                        Ok(s) => held_udp.push(s),
                        Err(_) => free = false,
                    }
                }
                match TcpListener::bind(a) {
                    Ok(l) => held_tcp.push(l),
                    Err(_) => free = false,
                }
            }
        }
        if free {
            return port;
        }
    }
    panic!("no free port pair on 127.0.0.1 and 127.0.0.2 in 100 tries");
}

/// weft's own server, RFC 5780 on the same two IPs, with TCP.
async fn weft_server() -> (StunServer, Peer) {
    let server = StunServer::bind(StunServerConfig {
        listen: addr("127.0.0.1:0"),
        alternate: Some(addr("127.0.0.2:0")),
        tcp: true,
        ..StunServerConfig::default()
    })
    .await
    .expect("weft's server binds");
    let peer = Peer {
        name: "weft",
        primary: server.primary(),
        alternate: server.alternate().unwrap(),
        software: "weft-stun",
        exact_other_address: true,
    };
    (server, peer)
}

/// A client configuration for RFC 5780 discovery on loopback: every test
/// is answered, so the retransmissions only matter on a loaded machine.
fn discovery_config() -> ClientConfig {
    ClientConfig {
        local: Some(addr("127.0.0.1:0")),
        retransmit: RetransmitConfig {
            rto: Duration::from_millis(200),
            rc: 4,
            rm: 8,
        },
        ..ClientConfig::default()
    }
}

/// Binding requests over UDP to each of the four sockets: the mapped
/// address is the client's own (no NAT on loopback), RESPONSE-ORIGIN is
/// the socket asked, OTHER-ADDRESS is the opposite socket (see
/// [`Peer::exact_other_address`]).
async fn check_udp(peer: &Peer) {
    let name = peer.name;
    let client = StunClient::bind(addr("127.0.0.1:0"), &ClientConfig::default())
        .await
        .unwrap();
    let all = peer.udp_addrs();
    for (i, target) in all.iter().enumerate() {
        let b = bounded(client.binding(*target))
            .await
            .unwrap_or_else(|e| panic!("{name}: binding to {target}: {e}"));
        assert_eq!(
            b.mapped,
            client.local_addr(),
            "{name}: mapped from {target}"
        );
        assert!(b.is_local(), "{name}: {b:?}");
        assert_eq!(b.transport, Transport::Udp);
        assert_eq!(b.server, *target);
        assert_eq!(b.response_origin, Some(*target), "{name}: RESPONSE-ORIGIN");
        let other = b.other_address.expect("OTHER-ADDRESS: RFC 5780 is on");
        if i < 2 || peer.exact_other_address {
            assert_eq!(other, all[3 - i], "{name}: OTHER-ADDRESS from {target}");
        } else {
            // coturn 4.6.1 answers on the alternate IP with an
            // OTHER-ADDRESS on that same IP (the other port): discovery
            // only reads it from the primary address, where it is right.
            assert_eq!(other.port(), all[3 - i].port(), "{name}: from {target}");
            assert!(
                [peer.primary.ip(), peer.alternate.ip()].contains(&other.ip()),
                "{name}: OTHER-ADDRESS {other} from {target}"
            );
        }
        let software = b.software.as_deref().unwrap_or_default();
        assert!(
            software.starts_with(peer.software),
            "{name}: SOFTWARE {software:?}"
        );
    }
    assert_eq!(client.stats().ignored_unexpected_source, 0, "{name}");
}

/// One Binding request over TCP to the primary address.
async fn check_tcp(peer: &Peer) {
    let name = peer.name;
    let config = ClientConfig {
        local: Some(addr("127.0.0.1:0")),
        stream_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    };
    let b = bounded(binding_tcp(peer.primary, &config))
        .await
        .unwrap_or_else(|e| panic!("{name}: TCP binding: {e}"));
    assert_eq!(b.transport, Transport::Tcp);
    assert_eq!(b.requests, 1);
    assert_eq!(b.mapped, b.local, "{name}: no NAT on loopback");
    assert_eq!(b.mapped.ip(), IpAddr::from(PRIMARY_IP));
}

/// RFC 5780 discovery finds no NAT: endpoint-independent mapping and
/// filtering, type open.
async fn check_discovery(peer: &Peer) {
    let name = peer.name;
    let report = bounded(discover_nat(peer.primary, &discovery_config()))
        .await
        .unwrap_or_else(|e| panic!("{name}: discovery: {e}"));
    assert_eq!(report.server, peer.primary);
    assert_eq!(report.other_address, Some(peer.alternate), "{name}");
    assert_eq!(report.mapped, Some(report.local), "{name}: {report:?}");
    assert!(report.is_open(), "{name}: {report:?}");
    assert_eq!(
        report.mapping,
        Some(MappingBehaviour::EndpointIndependent),
        "{name}: {report:?}"
    );
    assert_eq!(
        report.filtering,
        Some(FilteringBehaviour::EndpointIndependent),
        "{name}: {report:?}"
    );
    assert_eq!(report.nat_type, Some(NatType::Open), "{name}: {report:?}");
}

#[tokio::test]
#[ignore = "needs coturn: run `cargo xtask interop`"]
async fn udp_binding_against_coturn_and_weft() {
    let coturn = Coturn::start().await;
    let (_server, weft) = weft_server().await;
    check_udp(&coturn.peer()).await;
    check_udp(&weft).await;
}

#[tokio::test]
#[ignore = "needs coturn: run `cargo xtask interop`"]
async fn tcp_binding_against_coturn_and_weft() {
    let coturn = Coturn::start().await;
    let (_server, weft) = weft_server().await;
    check_tcp(&coturn.peer()).await;
    check_tcp(&weft).await;
}

#[tokio::test]
#[ignore = "needs coturn: run `cargo xtask interop`"]
async fn rfc5780_discovery_against_coturn_and_weft() {
    let coturn = Coturn::start().await;
    let (_server, weft) = weft_server().await;
    check_discovery(&coturn.peer()).await;
    check_discovery(&weft).await;
}

/// Both servers asked at once, over UDP and TCP: every answer agrees.
#[tokio::test]
#[ignore = "needs coturn: run `cargo xtask interop`"]
async fn query_coturn_and_weft_together() {
    let coturn = Coturn::start().await;
    let (_server, weft) = weft_server().await;
    let coturn = coturn.peer();
    let urls = [
        ServerUrl::new(Transport::Udp, coturn.primary),
        ServerUrl::new(Transport::Udp, coturn.alternate),
        ServerUrl::new(Transport::Tcp, coturn.primary),
        ServerUrl::new(Transport::Udp, weft.primary),
        ServerUrl::new(Transport::Tcp, weft.primary),
    ];
    let config = ClientConfig {
        local: Some(addr("127.0.0.1:0")),
        stream_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    };
    let report = bounded(query_servers(&urls, &config)).await;
    for r in &report.results {
        assert!(r.result.is_ok(), "{}: {:?}", r.url, r.result);
    }
    assert_eq!(report.answered(), urls.len());
    assert!(report.agree, "{report:?}");
    assert_eq!(report.mapped, report.local);
    assert_eq!(report.mapped.unwrap().ip(), IpAddr::from(PRIMARY_IP));
}
