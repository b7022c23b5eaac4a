//! Root only: three hosts on one network, each running a participant with
//! no configuration at all.
//!
//! The test builds its own network, entirely inside namespaces it creates
//! and deletes (nothing is added to the host's namespace):
//!
//! ```text
//!   weft-pt-<pid>-1        weft-pt-<pid>-2        weft-pt-<pid>-3
//!   eth0 10.211.0.1/24     eth0 10.211.0.2/24     eth0 10.211.0.3/24
//!        |                      |                      |
//!        v1 ------------------- v2 ------------------- v3
//!                 br0 (a bridge in weft-pt-<pid>-br)
//! ```
//!
//! Each host runs this test binary again inside its namespace (`ip netns
//! exec`): the first publishes, the second and third subscribe. Their
//! participants use `ParticipantConfig::default()`, so beacons go out as
//! they would on a real LAN: broadcast to 10.211.0.255, the IPv4 multicast
//! group and the IPv6 link-local group. The publisher must reach both
//! subscribers within 2 seconds of their start, and notice the third host
//! gone within the lease once it is killed.

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::{ip, skip, unix_ms};

/// Set in the environment of the processes run inside the namespaces: the
/// role (`pub` or `sub`).
const ROLE: &str = "WEFT_PT_NETNS_ROLE";
/// How long an inner process lives at most.
const INNER_LIFETIME: Duration = Duration::from_secs(60);

/// The namespaces; dropping deletes them and everything in them.
struct Namespaces {
    bridge: String,
    hosts: Vec<String>,
    created: Vec<String>,
}

impl Namespaces {
    fn create() -> Result<Namespaces, String> {
        let base = format!("weft-pt-{}", std::process::id());
        let mut ns = Namespaces {
            bridge: format!("{base}-br"),
            hosts: (1..=3).map(|i| format!("{base}-{i}")).collect(),
            created: Vec::new(),
        };
        // Leftovers of an earlier run with the same pid.
        for name in std::iter::once(&ns.bridge).chain(&ns.hosts) {
            let _ = ip(&format!("netns delete {name}"));
        }
        for name in std::iter::once(ns.bridge.clone()).chain(ns.hosts.clone()) {
            ip(&format!("netns add {name}"))?;
            ns.created.push(name);
        }
        Ok(ns)
    }

    fn build_network(&self) -> Result<(), String> {
        let br = &self.bridge;
        ip(&format!("-n {br} link set lo up"))?;
        ip(&format!("-n {br} link add br0 type bridge"))?;
        ip(&format!("-n {br} link set br0 up"))?;
        for (i, host) in self.hosts.iter().enumerate() {
            let n = i + 1;
            for cmd in [
                format!("-n {host} link add eth0 type veth peer name v{n} netns {br}"),
                format!("-n {br} link set v{n} master br0"),
                format!("-n {br} link set v{n} up"),
                format!("-n {host} addr add 10.211.0.{n}/24 brd + dev eth0"),
                format!("-n {host} link set lo up"),
                format!("-n {host} link set eth0 up"),
            ] {
                ip(&cmd)?;
            }
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
        Inner { child, lines }
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
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn three_hosts_on_a_bridge_with_no_configuration() {
    if std::env::var_os(ROLE).is_some() {
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
        skip(&format!("building the bridged network failed: {e}"));
        return;
    }
    {
        let subs = [
            Inner::start(&ns.hosts[1], "sub"),
            Inner::start(&ns.hosts[2], "sub"),
        ];
        let publisher = Inner::start(&ns.hosts[0], "pub");
        let pub_ready = publisher.expect("READY", Duration::from_secs(20));
        let pub_at: u128 = pub_ready[2].parse().unwrap();
        let mut sub_names = Vec::new();
        let mut sub_pids = Vec::new();
        for sub in &subs {
            let ready = sub.expect("READY", Duration::from_secs(20));
            sub_pids.push(ready[3].parse::<i32>().unwrap());
            let sub_at: u128 = ready[2].parse().unwrap();
            let got = sub.expect("GOT", Duration::from_secs(10));
            let got_at: u128 = got[1].parse().unwrap();
            assert_eq!(got[2], pub_ready[1], "from the publisher");
            let took = got_at - pub_at.max(sub_at);
            eprintln!("{} received after {took} ms", ready[1]);
            assert!(took <= 2000, "{} received after {took} ms", ready[1]);
            sub_names.push(ready[1].clone());
        }
        // Its stream may be up before its beacon was heard (the third
        // connects to the publisher when its id is lower): wait until the
        // publisher's discovery knows both.
        let mut known = Vec::new();
        while !sub_names.iter().all(|n| known.contains(n)) {
            known.push(publisher.expect("KNOWS", Duration::from_secs(5))[1].clone());
        }
        // Stop the third host (SIGKILL: no goodbye) and time the notice.
        let [_second, mut third] = subs;
        let killed_at = unix_ms();
        // `ip netns exec` may run the command as its child: kill the
        // process that said READY, which this test started.
        // SAFETY: kill has no memory preconditions; the pid is our
        // descendant's, still running (it has not been waited for).
        unsafe { libc::kill(sub_pids[1], libc::SIGKILL) };
        let _ = third.child.kill();
        let _ = third.child.wait();
        let gone = loop {
            let g = publisher.expect("GONE", Duration::from_secs(10));
            if g[1] == sub_names[1] {
                break g;
            }
        };
        let noticed: u128 = gone[2].parse().unwrap();
        let took = noticed.saturating_sub(killed_at);
        eprintln!(
            "the third host was noticed gone after {took} ms ({})",
            gone[3]
        );
        assert_eq!(gone[3], "lease-expired");
        let lease = weft_participant::DiscoveryConfig::default()
            .lease
            .as_millis();
        assert!(
            took <= lease + 500,
            "noticed after {took} ms; the lease is {lease} ms"
        );
        drop(publisher);
    }
    drop(ns);
}

/// One host's half, run by `three_hosts_on_a_bridge_with_no_configuration`
/// inside its namespace; on its own it does nothing.
#[test]
#[ignore = "runs only inside the namespaces of three_hosts_on_a_bridge_with_no_configuration"]
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
    // this is one of the test's namespaces (only lo and eth0).
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    assert_eq!(names, ["eth0", "lo"], "not inside a test namespace");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        use weft_participant::{Participant, ParticipantConfig, ParticipantEvent, TopicFilter};
        let say = |line: String| {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "WEFT {line}");
            let _ = out.flush();
        };
        let p = Participant::start(ParticipantConfig::default())
            .await
            .unwrap();
        say(format!(
            "READY {} {} {}",
            p.identity(),
            unix_ms(),
            std::process::id()
        ));
        let end = tokio::time::Instant::now() + INNER_LIFETIME;
        if role == "sub" {
            let sub = p.subscriber(TopicFilter::Prefix("netns.".into()));
            let mut first = true;
            while tokio::time::Instant::now() < end {
                if let Ok(m) = sub.recv(Some(Duration::from_millis(500))).await {
                    if first {
                        say(format!("GOT {} {}", unix_ms(), m.from));
                        first = false;
                    }
                }
            }
        } else {
            let publisher = p.publisher("netns.test").unwrap();
            let mut events = p.events();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut known = std::collections::BTreeSet::new();
            while tokio::time::Instant::now() < end {
                tokio::select! {
                    _ = tick.tick() => {
                        let _ = publisher.publish("ping");
                        for peer in p.peers() {
                            if known.insert(peer.identity.clone()) {
                                say(format!("KNOWS {}", peer.identity));
                            }
                        }
                    }
                    e = events.recv() => match e {
                        Some(ParticipantEvent::Gone { identity, reason, .. }) => {
                            let reason = match reason {
                                weft_participant::GoneReason::Left => "left",
                                _ => "lease-expired",
                            };
                            say(format!("GONE {identity} {} {reason}", unix_ms()));
                        }
                        Some(other) => say(format!("EVENT {} {other:?}", unix_ms())),
                        None => break,
                    },
                }
            }
        }
    });
}
