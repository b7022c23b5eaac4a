//! Network namespaces the command-line tests create and delete (root
//! only): two namespaces joined by a veth pair, `weft` processes started
//! inside them with `ip netns exec`, and nftables rules on what each side
//! receives (random loss, a cut). Nothing is added to the host's namespace.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The bound on each command (`ip`, `nft`, `id`).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// `weft peer --ident NAME` inside namespace `ns`, with NAME's certificate
/// from `dir` (see [`certificates`](super::certificates)) and trusting
/// its CA, then `more`.
pub(crate) fn peer_in(ns: &str, dir: &std::path::Path, name: &str, more: &[&str]) -> super::Weft {
    let file = |f: String| dir.join(f).to_str().unwrap().to_owned();
    let (cert, key, ca) = (
        file(format!("{name}.pem")),
        file(format!("{name}-key.pem")),
        file("ca.pem".into()),
    );
    let mut args = vec![
        "peer", "--ident", name, "--cert", &cert, "--key", &key, "--ca", &ca,
    ];
    args.extend_from_slice(more);
    super::Weft::start_in(ns, &args)
}

/// Says, past the test harness's output capture, that `test` did not run.
pub(crate) fn skip(test: &str, why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "!!!!! SKIPPED (needs root, `ip netns` and nft): {test}: {why} !!!!!"
    );
}

/// Runs a command to completion, killing it (by its PID) after
/// [`COMMAND_TIMEOUT`]; returns what it printed on stdout, or why it
/// failed.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let shown = format!("{program} {args:?}");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{shown}: {e}"))?;
    let read = |pipe: Option<Box<dyn Read + Send>>| -> JoinHandle<String> {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown} still running after {COMMAND_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("{shown}: {e}")),
        }
    };
    // None of these commands leaves children holding the pipes.
    let (out, err) = (
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    );
    if status.success() {
        Ok(out)
    } else {
        Err(format!("{shown} failed ({status}): {}", err.trim()))
    }
}

/// `ip ARGS` (split on whitespace).
pub(crate) fn ip(args: &str) -> Result<String, String> {
    run("ip", &args.split_whitespace().collect::<Vec<_>>())
}

/// `nft RULE` inside namespace `ns` (one argument: nft joins its
/// arguments anyway).
pub(crate) fn nft(ns: &str, rule: &str) -> Result<String, String> {
    run("ip", &["netns", "exec", ns, "nft", rule])
}

/// Why namespace tests cannot run here, if they cannot: not root, no
/// working `ip netns`, no nft.
pub(crate) fn unusable() -> Option<String> {
    match run("id", &["-u"]) {
        Ok(uid) if uid.trim() == "0" => {}
        Ok(_) => return Some("not root, cannot create network namespaces".into()),
        Err(e) => return Some(format!("cannot tell whether this is root: {e}")),
    }
    if let Err(e) = ip("netns list") {
        return Some(format!("`ip netns` does not work: {e}"));
    }
    if let Err(e) = run("nft", &["--version"]) {
        return Some(format!("nft is missing: {e}"));
    }
    None
}

/// Two namespaces, `a` and `b`, joined by a veth pair (`wa0` in `a` with
/// [`VethPair::A_IP`], `wb0` in `b` with [`VethPair::B_IP`]), each with an
/// nftables table `inet weft` whose input chains are `loss` and `cut`
/// (dropping on input, not output: a packet dropped on output fails the
/// sender's `sendmsg` with EPERM, which a lossy network never does).
/// Dropping deletes both namespaces and everything in them.
pub(crate) struct VethPair {
    /// The namespaces' names: `weft-cli-<pid>-<tag>-a` and `-b`.
    pub(crate) a: String,
    pub(crate) b: String,
    created: Vec<String>,
}

impl VethPair {
    /// `a`'s address (TEST-NET-1, RFC 5737).
    pub(crate) const A_IP: &'static str = "192.0.2.1";
    /// `b`'s address.
    pub(crate) const B_IP: &'static str = "192.0.2.2";

    /// Creates the namespaces (names unique per test process and `tag`)
    /// and the link between them.
    pub(crate) fn create(tag: &str) -> Result<VethPair, String> {
        let base = format!("weft-cli-{}-{tag}", std::process::id());
        let mut pair = VethPair {
            a: format!("{base}-a"),
            b: format!("{base}-b"),
            created: Vec::new(),
        };
        for ns in [pair.a.clone(), pair.b.clone()] {
            // A leftover of an earlier run with the same pid.
            let _ = ip(&format!("netns delete {ns}"));
            ip(&format!("netns add {ns}"))?;
            pair.created.push(ns);
        }
        let (a, b) = (&pair.a, &pair.b);
        for cmd in [
            format!("-n {a} link add wa0 type veth peer name wb0 netns {b}"),
            format!("-n {a} addr add {}/24 dev wa0", Self::A_IP),
            format!("-n {b} addr add {}/24 dev wb0", Self::B_IP),
            format!("-n {a} link set lo up"),
            format!("-n {b} link set lo up"),
            format!("-n {a} link set wa0 up"),
            format!("-n {b} link set wb0 up"),
        ] {
            ip(&cmd)?;
        }
        for (ns, dev) in [(a, "wa0"), (b, "wb0")] {
            for rule in [
                "add table inet weft".to_owned(),
                // The cut comes first: what it drops is not counted as loss.
                "add chain inet weft cut { type filter hook input priority -10 ; }".to_owned(),
                "add chain inet weft loss { type filter hook input priority 0 ; }".to_owned(),
                format!("add rule inet weft loss iifname {dev} counter"),
            ] {
                nft(ns, &rule)?;
            }
        }
        Ok(pair)
    }

    fn sides(&self) -> [(&str, &str); 2] {
        [(&self.a, "wa0"), (&self.b, "wb0")]
    }

    /// Each side drops `percent` % of the packets it receives from the
    /// other, at random (nftables `numgen random`), counting them.
    pub(crate) fn set_loss(&self, percent: u32) -> Result<(), String> {
        for (ns, dev) in self.sides() {
            nft(ns, "flush chain inet weft loss")?;
            nft(
                ns,
                &format!("add rule inet weft loss iifname {dev} counter"),
            )?;
            nft(
                ns,
                &format!(
                    "add rule inet weft loss iifname {dev} numgen random mod 100 < {percent} counter drop"
                ),
            )?;
        }
        Ok(())
    }

    /// Drops every packet either side receives from the other (`true`),
    /// or no longer (`false`).
    pub(crate) fn set_cut(&self, cut: bool) -> Result<(), String> {
        for (ns, dev) in self.sides() {
            nft(ns, "flush chain inet weft cut")?;
            if cut {
                nft(
                    ns,
                    &format!("add rule inet weft cut iifname {dev} counter drop"),
                )?;
            }
        }
        Ok(())
    }

    /// Packets the two sides received from each other (before the loss
    /// rule), and of those how many the loss rule dropped.
    pub(crate) fn loss_counters(&self) -> Result<(u64, u64), String> {
        let (mut sent, mut dropped) = (0, 0);
        for (ns, _) in self.sides() {
            let listing = nft(ns, "list chain inet weft loss")?;
            let counts: Vec<u64> = listing
                .lines()
                .filter_map(|l| {
                    let words: Vec<&str> = l.split_whitespace().collect();
                    let at = words.iter().position(|w| *w == "packets")?;
                    words.get(at + 1)?.parse().ok()
                })
                .collect();
            sent += counts.first().copied().unwrap_or(0);
            dropped += counts.get(1).copied().unwrap_or(0);
        }
        Ok((sent, dropped))
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in &self.created {
            if let Err(e) = ip(&format!("netns delete {ns}")) {
                let _ = writeln!(std::io::stderr(), "netns: {e}");
            }
        }
    }
}
