//! Root only: binding a socket to an interface makes it send through that
//! interface.
//!
//! The test builds its own network, entirely inside namespaces it creates
//! and deletes (nothing is added to the host's namespace):
//!
//! ```text
//!  weft-nif-<pid>  (sender)          weft-nif-<pid>-pa   weft-nif-<pid>-pb
//!  a0 10.200.1.1/24  <== veth ==>  a1 10.200.1.2/24
//!  b0 10.200.2.1/24  <========== veth ==========>        b1 10.200.2.2/24
//!  10.200.9.9/32 via 10.200.1.2 dev a0 metric 100      lo 10.200.9.9/32 in both
//!  10.200.9.9/32 via 10.200.2.2 dev b0 metric 200
//!  default via 10.200.1.2 dev a0
//! ```
//!
//! Both peer namespaces own 10.200.9.9 and listen on it, so where a
//! datagram arrives shows which veth it left through. The sender runs this
//! test binary again inside its namespace (`ip netns exec`, which also
//! gives it the namespace's own /sys), sends once bound to `a0`, once bound
//! to `b0` and once unbound; the routing table alone would send everything
//! through `a0`. The receivers are sockets made in the peer namespaces by
//! threads that joined them with `setns`.

#![cfg(target_os = "linux")]

use std::ffi::OsStr;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Set in the sender's environment when the test binary is run again
/// inside the namespace.
const INNER: &str = "WEFT_NIF_NETNS_INNER";
const TARGET: [u8; 4] = [10, 200, 9, 9];
const PORT: u16 = 47_913;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

fn skip(why: &str) {
    eprintln!("!!!!! SKIPPED (needs root): {why} !!!!!");
}

/// Runs a command to completion, killing it after `timeout`; returns its
/// output, or why it failed.
fn run<I, S>(
    program: &str,
    args: I,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<String, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().map_err(|e| format!("{shown}: {e}"))?;
    let mut pipes = Vec::new();
    for mut pipe in [
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
    {
        pipes.push(std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        }));
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown} still running after {timeout:?}; killed"));
            }
            Err(e) => return Err(format!("{shown}: {e}")),
        }
    };
    // The pipes close when the child exits (ip does not leave children).
    let output: String = pipes.into_iter().filter_map(|p| p.join().ok()).collect();
    if status.success() {
        Ok(output)
    } else {
        Err(format!("{shown} failed ({status}):\n{output}"))
    }
}

fn ip(args: &str) -> Result<String, String> {
    run("ip", args.split_whitespace(), &[], COMMAND_TIMEOUT)
}

/// The three namespaces; dropping deletes them, and everything in them.
struct Namespaces {
    sender: String,
    peer_a: String,
    peer_b: String,
}

impl Namespaces {
    fn create() -> Result<Namespaces, String> {
        let base = format!("weft-nif-{}", std::process::id());
        let ns = Namespaces {
            sender: base.clone(),
            peer_a: format!("{base}-pa"),
            peer_b: format!("{base}-pb"),
        };
        // Leftovers of an earlier run with the same pid.
        ns.delete();
        let mut created = Namespaces {
            sender: String::new(),
            peer_a: String::new(),
            peer_b: String::new(),
        };
        ip(&format!("netns add {}", ns.sender))?;
        created.sender = ns.sender.clone();
        ip(&format!("netns add {}", ns.peer_a))?;
        created.peer_a = ns.peer_a.clone();
        ip(&format!("netns add {}", ns.peer_b))?;
        created.peer_b = ns.peer_b.clone();
        std::mem::forget(created);
        Ok(ns)
    }

    fn delete(&self) {
        for name in [&self.sender, &self.peer_a, &self.peer_b] {
            if !name.is_empty() {
                let _ = ip(&format!("netns delete {name}"));
            }
        }
    }

    fn build_network(&self) -> Result<(), String> {
        let (s, a, b) = (&self.sender, &self.peer_a, &self.peer_b);
        for cmd in [
            format!("-n {s} link add a0 type veth peer name a1 netns {a}"),
            format!("-n {s} link add b0 type veth peer name b1 netns {b}"),
            format!("-n {s} addr add 10.200.1.1/24 brd + dev a0"),
            format!("-n {s} addr add 10.200.2.1/24 brd + dev b0"),
            format!("-n {a} addr add 10.200.1.2/24 dev a1"),
            format!("-n {b} addr add 10.200.2.2/24 dev b1"),
            format!("-n {a} addr add 10.200.9.9/32 dev lo"),
            format!("-n {b} addr add 10.200.9.9/32 dev lo"),
            format!("-n {s} link set lo up"),
            format!("-n {s} link set a0 up"),
            format!("-n {s} link set b0 up"),
            format!("-n {a} link set lo up"),
            format!("-n {a} link set a1 up"),
            format!("-n {b} link set lo up"),
            format!("-n {b} link set b1 up"),
            format!("-n {s} route add 10.200.9.9/32 via 10.200.1.2 dev a0 metric 100"),
            format!("-n {s} route add 10.200.9.9/32 via 10.200.2.2 dev b0 metric 200"),
            format!("-n {s} route add default via 10.200.1.2 dev a0"),
        ] {
            ip(&cmd)?;
        }
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.delete();
    }
}

/// A UDP socket on 10.200.9.9 made inside the namespace `ns`, by a thread
/// that joins it and ends.
fn receiver_in(ns: &str) -> Result<UdpSocket, String> {
    let path = format!("/run/netns/{ns}");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let made = (|| {
            use std::os::fd::AsRawFd;
            let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            // SAFETY: `file` is an open namespace file; setns affects only
            // this thread, which ends right after making the socket.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
            }
            UdpSocket::bind(SocketAddr::from((TARGET, PORT)))
                .map_err(|e| format!("bind in {path}: {e}"))
        })();
        let _ = tx.send(made);
    });
    rx.recv_timeout(Duration::from_secs(10))
        .map_err(|e| format!("making a socket in {ns}: {e}"))?
}

/// Every distinct datagram that arrives until none has come for `idle`.
fn drain(socket: &UdpSocket, idle: Duration) -> Vec<String> {
    socket.set_read_timeout(Some(idle)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 64];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if !got.contains(&msg) {
                    got.push(msg);
                }
            }
            Err(_) => break,
        }
    }
    got.sort();
    got
}

#[test]
fn binding_sends_through_the_chosen_interface() {
    if std::env::var_os(INNER).is_some() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("not root, cannot create network namespaces");
        return;
    }
    let ns = match Namespaces::create() {
        Ok(ns) => ns,
        Err(e) => {
            skip(&format!("`ip netns add` failed: {e}"));
            return;
        }
    };
    if let Err(e) = ns.build_network() {
        skip(&format!("building the veth network failed: {e}"));
        return;
    }
    let at_a = receiver_in(&ns.peer_a).unwrap();
    let at_b = receiver_in(&ns.peer_b).unwrap();

    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_str().expect("a UTF-8 test binary path");
    let output = run(
        "ip",
        [
            "netns",
            "exec",
            &ns.sender,
            exe,
            "--exact",
            "inner_send_through_each_interface",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ],
        &[(INNER, "1")],
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("the sender inside {}: {e}", ns.sender));
    assert!(
        output.contains("1 passed"),
        "the sender did not run:\n{output}"
    );

    let got_a = drain(&at_a, Duration::from_millis(500));
    let got_b = drain(&at_b, Duration::from_millis(500));
    assert_eq!(got_a, ["unbound", "via a0"], "arrived through a0/a1");
    assert_eq!(got_b, ["via b0"], "arrived through b0/b1");
    drop(ns);
}

/// The sender's half, run by `binding_sends_through_the_chosen_interface`
/// inside its namespace; on its own it does nothing.
#[test]
#[ignore = "runs only inside the namespace of binding_sends_through_the_chosen_interface"]
fn inner_send_through_each_interface() {
    if std::env::var_os(INNER).is_none() {
        eprintln!("inner_send_through_each_interface does nothing outside its namespace");
        return;
    }
    use weft_netiface::{Scope, bind_to_interface, default_routes, interfaces};

    // Enumeration sees the namespace's interfaces, with kernel flags.
    let all = interfaces().unwrap();
    let names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names.len(), 3, "lo, a0, b0: {names:?}");
    for (name, ip, brd) in [
        ("a0", "10.200.1.1", "10.200.1.255"),
        ("b0", "10.200.2.1", "10.200.2.255"),
    ] {
        let iface = all.iter().find(|i| i.name == name).unwrap();
        assert!(iface.flags.up && !iface.flags.loopback && !iface.flags.inferred);
        assert_eq!(iface.index, weft_netiface::interface::index_of(name).ok());
        let v4 = iface.addrs.iter().find(|a| a.ip.is_ipv4()).unwrap();
        assert_eq!(v4.ip, ip.parse::<IpAddr>().unwrap());
        assert_eq!((v4.prefix, v4.scope), (24, Scope::Private));
        assert_eq!(v4.broadcast, Some(brd.parse().unwrap()));
    }
    // The default route, from /proc/net/route of the namespace.
    let routes = default_routes().unwrap();
    let v4 = routes.v4.expect("the namespace's IPv4 default route");
    assert_eq!(v4.interface, "a0");
    assert_eq!(v4.gateway, Some(IpAddr::from([10, 200, 1, 2])));
    assert_eq!(routes.v6, None);

    let target = SocketAddr::from((TARGET, PORT));
    for (interface, msg) in [
        (Some("a0"), "via a0"),
        (Some("b0"), "via b0"),
        (None, "unbound"),
    ] {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        if let Some(interface) = interface {
            bind_to_interface(&socket, interface).unwrap();
        }
        // A few copies in case the first waits on ARP; the receiver
        // counts each message once.
        for _ in 0..3 {
            socket.send_to(msg.as_bytes(), target).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
