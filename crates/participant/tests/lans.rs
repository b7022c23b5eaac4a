//! Root only: networks joined by participants with an interface on each;
//! publications cross them.
//!
//! The test builds its own networks, entirely inside namespaces it creates
//! and deletes (nothing is added to the host's namespace):
//!
//! ```text
//!   weft-pl-<pid>-1          weft-pl-<pid>-2                     weft-pl-<pid>-3
//!   eth0 10.212.1.1/24       eth0 10.212.1.2/24  eth1 10.212.2.2/24  eth0 10.212.2.3/24
//!        |                        |                   |                   |
//!        a1 --- br0 (LAN 1) ---- a2                  b2 --- br0 (LAN 2) -- b3
//!          in weft-pl-<pid>-lan1                       in weft-pl-<pid>-lan2
//! ```
//!
//! Each host runs this test binary again inside its namespace (`ip netns
//! exec`) with `ParticipantConfig::default()`: h1 publishes numbered
//! lines, h3 subscribes, h2 only joins the two networks. h1 and h3 never
//! hear each other's beacons, so every publication reaches h3 through h2.
//! Every line h1 sends once h3's interest reached it arrives, once and in
//! order, within 3 s of the first; with h2 killed they stop, and they come
//! back once h2 runs again.
//!
//! The second test adds two more networks, LAN 3 (h1 and h4) and LAN 4
//! (h4 and h3), so that h1 reaches h3 both through h2 and through h4: a
//! cycle, where every line still arrives once, also while h2 dies.

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::{ip, skip, unix_ms};

/// Set in the environment of the processes run inside the namespaces: the
/// role (`pub`, `sub` or `join`).
const ROLE: &str = "WEFT_PL_NETNS_ROLE";
/// How long an inner process lives at most.
const INNER_LIFETIME: Duration = Duration::from_secs(60);

/// The namespaces; dropping deletes them and everything in them.
struct Namespaces {
    lans: Vec<String>,
    hosts: Vec<String>,
    created: Vec<String>,
}

/// An interface of a host on a LAN: (host, its name there, LAN, the
/// bridge's port, the host's address), hosts and LANs counted from 0.
type Attachment = (usize, &'static str, usize, &'static str, &'static str);

/// The line: h1 and h2 on LAN 1, h2 and h3 on LAN 2.
const LINE: &[Attachment] = &[
    (0, "eth0", 0, "a1", "10.212.1.1"),
    (1, "eth0", 0, "a2", "10.212.1.2"),
    (1, "eth1", 1, "b2", "10.212.2.2"),
    (2, "eth0", 1, "b3", "10.212.2.3"),
];

/// The line, and h1 and h4 on LAN 3, h4 and h3 on LAN 4.
const SQUARE: &[Attachment] = &[
    (0, "eth0", 0, "a1", "10.213.1.1"),
    (1, "eth0", 0, "a2", "10.213.1.2"),
    (1, "eth1", 1, "b2", "10.213.2.2"),
    (2, "eth0", 1, "b3", "10.213.2.3"),
    (0, "eth1", 2, "c1", "10.213.3.1"),
    (3, "eth0", 2, "c4", "10.213.3.4"),
    (3, "eth1", 3, "d4", "10.213.4.4"),
    (2, "eth1", 3, "d3", "10.213.4.3"),
];

impl Namespaces {
    /// `lans` bridges and `hosts` hosts, named after `tag`.
    fn create(tag: &str, lans: usize, hosts: usize) -> Result<Namespaces, String> {
        let base = format!("weft-pl-{}-{tag}", std::process::id());
        let mut ns = Namespaces {
            lans: (1..=lans).map(|i| format!("{base}-lan{i}")).collect(),
            hosts: (1..=hosts).map(|i| format!("{base}-{i}")).collect(),
            created: Vec::new(),
        };
        let all: Vec<String> = ns.lans.iter().chain(&ns.hosts).cloned().collect();
        // Leftovers of an earlier run with the same pid.
        for name in &all {
            let _ = ip(&format!("netns delete {name}"));
        }
        for name in all {
            ip(&format!("netns add {name}"))?;
            ns.created.push(name);
        }
        Ok(ns)
    }

    /// Host `host`'s interface `dev` on LAN `lan` (0 or 1), as `port` on
    /// that LAN's bridge, with address `addr`.
    fn attach(
        &self,
        host: usize,
        dev: &str,
        lan: usize,
        port: &str,
        addr: &str,
    ) -> Result<(), String> {
        let (h, br) = (&self.hosts[host], &self.lans[lan]);
        for cmd in [
            format!("-n {h} link add {dev} type veth peer name {port} netns {br}"),
            format!("-n {br} link set {port} master br0"),
            format!("-n {br} link set {port} up"),
            format!("-n {h} addr add {addr}/24 brd + dev {dev}"),
            format!("-n {h} link set {dev} up"),
        ] {
            ip(&cmd)?;
        }
        Ok(())
    }

    fn build_networks(&self, attachments: &[Attachment]) -> Result<(), String> {
        for br in &self.lans {
            ip(&format!("-n {br} link set lo up"))?;
            ip(&format!("-n {br} link add br0 type bridge"))?;
            ip(&format!("-n {br} link set br0 up"))?;
        }
        for h in &self.hosts {
            ip(&format!("-n {h} link set lo up"))?;
        }
        for &(host, dev, lan, port, addr) in attachments {
            self.attach(host, dev, lan, port, addr)?;
        }
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.created {
            let _ = ip(&format!("netns delete {name}"));
        }
    }
}

/// A process of this test binary inside a namespace; killed on drop. Its
/// stdout lines with `WEFT ` arrive on `lines` (from there on).
struct Inner {
    child: Child,
    pid: Option<i32>,
    lines: mpsc::Receiver<String>,
}

impl Inner {
    fn start(ns: &str, role: &str) -> Inner {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(exe)
            .args([
                "--exact",
                "inner_participant",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE, role)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ip netns exec starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest's `test inner_participant ... ` may precede ours.
                if let Some(at) = line.find("WEFT ") {
                    if tx.send(line[at + 5..].to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        let mut inner = Inner {
            child,
            pid: None,
            lines,
        };
        let ready = inner.expect("READY", Duration::from_secs(20));
        inner.pid = ready[1].parse().ok();
        inner
    }

    /// The next line starting with `word`, split in words; the panic on
    /// timeout shows the lines skipped meanwhile.
    fn expect(&self, word: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                panic!("no `{word}` line within {within:?}; skipped: {skipped:#?}");
            };
            let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            if words.first().map(String::as_str) == Some(word) {
                return words;
            }
            skipped.push(line);
        }
    }

    /// Kills it at once, as a crash would (no goodbye).
    fn kill(&mut self) {
        if let Some(pid) = self.pid.take() {
            // `ip netns exec` may run the command as its child: kill the
            // process that said READY, which this test started.
            // SAFETY: kill has no memory preconditions; the pid is our
            // descendant's, still running (it has not been waited for).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `GOT n ms` line: the number received and when.
fn got(words: &[String]) -> (u64, u128) {
    (words[1].parse().unwrap(), words[2].parse().unwrap())
}

/// The namespaces of `attachments` built, or `None` (said loudly) when
/// this is not root or they cannot be made.
fn networks(tag: &str, attachments: &[Attachment]) -> Option<Namespaces> {
    if std::env::var_os(ROLE).is_some() {
        return None;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("not root, cannot create network namespaces");
        return None;
    }
    let lans = attachments.iter().map(|a| a.2).max()? + 1;
    let hosts = attachments.iter().map(|a| a.0).max()? + 1;
    let ns = match Namespaces::create(tag, lans, hosts) {
        Ok(ns) => ns,
        Err(e) => {
            skip(&format!("`ip netns add` failed: {e}"));
            return None;
        }
    };
    if let Err(e) = ns.build_networks(attachments) {
        skip(&format!("building the networks failed: {e}"));
        return None;
    }
    Some(ns)
}

/// Waits for the publisher's first line sent to anyone and checks that the
/// subscriber gets it within 3 s, then `more` lines after it, each once
/// and in order; returns the last.
fn first_lines(publisher: &Inner, sub: &Inner, more: usize) -> u64 {
    let first = publisher.expect("FIRST", Duration::from_secs(20));
    let (first_n, first_at): (u64, u128) = (first[1].parse().unwrap(), first[2].parse().unwrap());
    let (n, at) = got(&sub.expect("GOT", Duration::from_secs(5)));
    assert_eq!(n, first_n, "the first line sent is the first received");
    let took = at.saturating_sub(first_at);
    eprintln!("the first line crossed in {took} ms");
    assert!(took <= 3000, "the first line crossed in {took} ms");
    let mut last = n;
    for _ in 0..more {
        let (n, _) = got(&sub.expect("GOT", Duration::from_secs(3)));
        assert_eq!(n, last + 1, "once each, in order");
        last = n;
    }
    last
}

#[test]
fn a_participant_on_two_networks_carries_publications_across() {
    let Some(ns) = networks("line", LINE) else {
        return;
    };
    {
        let mut joiner = Inner::start(&ns.hosts[1], "join");
        let sub = Inner::start(&ns.hosts[2], "sub");
        let publisher = Inner::start(&ns.hosts[0], "pub");

        // The first line sent to anyone, and every line after it, in
        // order, once each, the first within 3 s.
        let mut last = first_lines(&publisher, &sub, 50);

        // h2 killed: the lines stop reaching h3.
        joiner.kill();
        let killed_at = unix_ms();
        let mut stopped = false;
        while !stopped {
            match sub.lines.recv_timeout(Duration::from_secs(2)) {
                Ok(line) if line.starts_with("GOT") => {
                    let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
                    let (n, at) = got(&words);
                    assert!(n > last, "no line twice, none out of order");
                    assert!(at < killed_at + 2000, "lines still crossing without h2");
                    last = n;
                }
                Ok(_) => {}
                Err(_) => stopped = true,
            }
        }

        // h2 back: the lines resume within the lease, in order.
        let back_at = unix_ms();
        let _joiner = Inner::start(&ns.hosts[1], "join");
        let (n, at) = got(&sub.expect("GOT", Duration::from_secs(20)));
        assert!(n > last, "after the outage, new lines only");
        let took = at.saturating_sub(back_at);
        eprintln!("the lines resumed {took} ms after h2 came back");
        let lease = weft_participant::DiscoveryConfig::default()
            .lease
            .as_millis();
        assert!(
            took <= lease,
            "resumed after {took} ms; the lease is {lease} ms"
        );
        let mut last = n;
        for _ in 0..20 {
            let (n, _) = got(&sub.expect("GOT", Duration::from_secs(3)));
            assert_eq!(n, last + 1, "once each, in order");
            last = n;
        }
        drop(publisher);
    }
    drop(ns);
}

#[test]
fn around_a_cycle_of_networks_every_line_arrives_once() {
    let Some(ns) = networks("square", SQUARE) else {
        return;
    };
    {
        let mut second = Inner::start(&ns.hosts[1], "join");
        let _fourth = Inner::start(&ns.hosts[3], "join");
        let sub = Inner::start(&ns.hosts[2], "sub");
        let publisher = Inner::start(&ns.hosts[0], "pub");
        let mut last = first_lines(&publisher, &sub, 50);

        // h2 dies: whichever way the lines went, they go on through h4,
        // never twice, never out of order.
        second.kill();
        let killed_at = unix_ms();
        let mut after = 0;
        while after < 50 {
            let (n, at) = got(&sub.expect("GOT", Duration::from_secs(10)));
            assert!(n > last, "line {n} after {last}: once each, in order");
            last = n;
            if at > killed_at {
                after += 1;
            }
        }
        drop(publisher);
    }
    drop(ns);
}

/// One host's part, run by the tests above inside its namespace; on its
/// own it does nothing.
#[test]
#[ignore = "runs only inside the namespaces of the tests above"]
fn inner_participant() {
    let Some(role) = std::env::var_os(ROLE) else {
        eprintln!("inner_participant does nothing outside its namespace");
        return;
    };
    // Die with whoever started us (`ip netns exec` may fork), so that no
    // participant outlives the test.
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    // The default configuration beacons on every interface: make sure
    // this is one of the test's namespaces.
    let names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| ["eth0", "eth1", "lo"].contains(&n.as_str())),
        "not inside a test namespace: {names:?}"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        use weft_participant::{Participant, ParticipantConfig, TopicFilter};
        let say = |line: String| {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "WEFT {line}");
            let _ = out.flush();
        };
        let p = Participant::start(ParticipantConfig::default())
            .await
            .unwrap();
        say(format!("READY {} {}", std::process::id(), p.identity()));
        let end = tokio::time::Instant::now() + INNER_LIFETIME;
        match role.to_str() {
            Some("sub") => {
                let sub = p.subscriber(TopicFilter::Prefix("lans.".into()));
                while tokio::time::Instant::now() < end {
                    if let Ok(m) = sub.recv(Some(Duration::from_millis(500))).await {
                        let n = u64::from_be_bytes(m.data[..8].try_into().unwrap());
                        say(format!("GOT {n} {} {}", unix_ms(), m.from));
                    }
                }
            }
            Some("pub") => {
                let publisher = p.publisher("lans.test").unwrap();
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                let mut told = false;
                for n in 0u64.. {
                    if tokio::time::Instant::now() >= end {
                        break;
                    }
                    tick.tick().await;
                    let sent = publisher.publish(n.to_be_bytes()).unwrap_or(0);
                    if sent > 0 && !told {
                        say(format!("FIRST {n} {}", unix_ms()));
                        told = true;
                    }
                }
            }
            _ => tokio::time::sleep_until(end).await,
        }
    });
}
