//! `weft participant`, `weft pub` and `weft sub`: zero-configuration
//! publish/subscribe.
//!
//! ```text
//! weft participant [--ident NAME]        the daemon; JSON events on stdout
//! weft pub TOPIC                         publishes each stdin line
//! weft sub TOPIC [--filter REGEX]        prints each message as a JSON line
//! ```
//!
//! `weft pub` and `weft sub` attach to the participant of this host when
//! one runs (through its local socket, by default
//! `unix://@weft-participant-<uid>`), and embed a participant of their own
//! otherwise. A message is printed as
//! `{"event":"message","topic":...,"from":...,"data":...}`.
//!
//! Every command takes the network options `--local`, `--listen`,
//! `--port` and `--beacon` (repeatable: `broadcast`, `multicast4[=GROUP]`,
//! `multicast6[=GROUP]`, `loopback`, or `IP:PORT` for unicast); without
//! them a participant beacons on every suitable interface.
//!
//! `--transport quic` carries the streams between participants over
//! QUIC instead of TCP (`--listen`'s host and port, with `quic://`), with
//! mutual TLS: `--cert FILE --key FILE` (this participant's certificate,
//! from `weft cert issue IDENT`) and `--ca FILE` (the group's CA) are then
//! required, as `weft peer` takes them. Each certificate must name its
//! participant's identity, unless `--server-name NAME` names the one name
//! every participant's certificate carries. Every participant of a group
//! uses the same transport. The `ready` line says which (`"transport"`).

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use weft_discovery::config::{DEFAULT_GROUP_V4, DEFAULT_GROUP_V6};
use weft_discovery::{BeaconTarget, GoneReason};
use weft_participant::local::{self, LocalClient, LocalServer};
use weft_participant::{
    Participant, ParticipantConfig, ParticipantEvent, Publication, StreamTls, StreamTransport,
    TopicFilter,
};

use crate::Failure;
use crate::peer::TlsFlags;

/// How long `pub` and `sub` try to attach to a running participant.
const ATTACH_WAIT: Duration = Duration::from_millis(500);

/// Network options shared by the three commands.
#[derive(Args, Debug)]
#[command(mut_arg("server_name", |a| a.help(
    "With --transport quic: the one name every participant's certificate \
     carries (default: each names its participant's identity)"
)))]
pub(crate) struct NetArgs {
    /// The local socket where the daemon serves `weft pub` and `weft sub`
    /// (default: `unix://@weft-participant-<uid>` on Linux).
    #[arg(long, value_name = "URL")]
    local: Option<String>,
    /// Accept streams from other participants here (default
    /// `tcp://0.0.0.0:0`).
    #[arg(long, value_name = "URL")]
    listen: Option<String>,
    /// The UDP port of beacons (default 47474).
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// Where beacons go (repeatable): broadcast, multicast4[=GROUP],
    /// multicast6[=GROUP], loopback, or IP:PORT. Default: broadcast,
    /// multicast4 and multicast6 on every suitable interface.
    #[arg(long, value_name = "TARGET")]
    beacon: Vec<String>,
    /// Our identity when running a participant (default: `weft-<id>`).
    #[arg(long, value_name = "NAME")]
    ident: Option<String>,
    /// The group's shared secret, the file's bytes as they are (at least
    /// 16; `head -c 32 /dev/urandom > group.key` makes one): beacons and
    /// streams of participants without it are dropped and counted.
    #[arg(long, value_name = "FILE")]
    group_key: Option<std::path::PathBuf>,
    /// How streams between participants travel: tcp, or quic (mutual TLS:
    /// needs --cert, --key and --ca). Every participant of a group uses
    /// the same.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
    #[command(flatten)]
    tls: TlsFlags,
}

/// The values of `--transport`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Tcp,
    Quic,
}

impl NetArgs {
    fn local(&self) -> String {
        self.local.clone().unwrap_or_else(local::default_address)
    }

    fn config(&self) -> Result<ParticipantConfig, Failure> {
        let mut c = ParticipantConfig::default();
        if let Some(name) = &self.ident {
            weft_messaging::Identity::new(name)
                .map_err(|e| Failure::Usage(format!("--ident: {e}")))?;
            c.identity = Some(name.clone());
        }
        if let Some(l) = &self.listen {
            c.listen = l.clone();
        }
        if let Some(p) = self.port {
            c.discovery.port = p;
        }
        if let Some(file) = &self.group_key {
            let key = weft_participant::GroupKey::from_file(file)
                .map_err(|e| Failure::Usage(format!("--group-key: {e}")))?;
            c.group_key = Some(key);
        }
        match self.transport {
            Transport::Tcp => {
                if self.tls.any() {
                    return Err(Failure::Usage(
                        "--cert, --key, --ca and --server-name are for --transport quic".into(),
                    ));
                }
            }
            Transport::Quic => {
                let (Some(identity), Some(anchors)) = (self.tls.identity()?, self.tls.anchors()?)
                else {
                    return Err(Failure::Usage(
                        "--transport quic needs --cert, --key and --ca".into(),
                    ));
                };
                let mut tls = StreamTls::new(identity, anchors);
                if let Some(name) = &self.tls.server_name {
                    tls = tls.with_server_name(name.clone());
                }
                c.transport = StreamTransport::Quic;
                c.tls = Some(tls);
            }
        }
        if !self.beacon.is_empty() {
            c.discovery.targets = self
                .beacon
                .iter()
                .map(|b| parse_target(b))
                .collect::<Result<_, _>>()?;
        }
        Ok(c)
    }
}

fn parse_target(s: &str) -> Result<BeaconTarget, Failure> {
    let bad = |why: String| Failure::Usage(format!("--beacon {s}: {why}"));
    let (kind, arg) = match s.split_once('=') {
        Some((k, a)) => (k, Some(a)),
        None => (s, None),
    };
    Ok(match (kind, arg) {
        ("broadcast", None) => BeaconTarget::Broadcast,
        ("loopback", None) => BeaconTarget::LoopbackBroadcast,
        ("multicast4", None) => BeaconTarget::Multicast4(DEFAULT_GROUP_V4),
        ("multicast6", None) => BeaconTarget::Multicast6(DEFAULT_GROUP_V6),
        ("multicast4", Some(g)) => {
            let g: std::net::Ipv4Addr = g.parse().map_err(|e| bad(format!("{e}")))?;
            if !g.is_multicast() {
                return Err(bad(format!("{g} is not a multicast group")));
            }
            BeaconTarget::Multicast4(g)
        }
        ("multicast6", Some(g)) => {
            let g: std::net::Ipv6Addr = g.parse().map_err(|e| bad(format!("{e}")))?;
            if !g.is_multicast() {
                return Err(bad(format!("{g} is not a multicast group")));
            }
            BeaconTarget::Multicast6(g)
        }
        _ => match s.parse::<SocketAddr>() {
            Ok(a) => BeaconTarget::Unicast(a),
            Err(_) => {
                return Err(bad(
                    "expected broadcast, multicast4[=GROUP], multicast6[=GROUP], loopback or IP:PORT"
                        .into(),
                ));
            }
        },
    })
}

/// Arguments of `weft participant`.
#[derive(Args, Debug)]
pub(crate) struct ParticipantArgs {
    #[command(flatten)]
    net: NetArgs,
    /// In a group of more than 32 participants, keep at most N streams
    /// (neighbours), inbound included, and reach the others through them
    /// (default 16).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    max_streams: Option<u16>,
}

/// Arguments of `weft pub`.
#[derive(Args, Debug)]
pub(crate) struct PubArgs {
    /// The topic (at most 255 bytes).
    topic: String,
    /// Before the first line, wait at most this long for a subscriber
    /// (default: 2 with a participant of our own, 0 when attached).
    #[arg(long, value_name = "SECS")]
    wait: Option<f64>,
    #[command(flatten)]
    net: NetArgs,
}

/// Arguments of `weft sub`.
#[derive(Args, Debug)]
pub(crate) struct SubArgs {
    /// Print messages whose topic starts with this ("" for all).
    topic: String,
    /// Subscribe with this regular expression over topics instead of the
    /// prefix (printed messages still start with TOPIC).
    #[arg(long, value_name = "REGEX")]
    filter: Option<String>,
    /// Exit after this many messages.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    #[command(flatten)]
    net: NetArgs,
}

fn print_line(line: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `{"event":"message","topic":...,"from":...,"data":...}`, keys in this
/// order (serde_json's maps would sort them).
fn message_line(p: &Publication) -> String {
    let string = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        r#"{{"event":"message","topic":{},"from":{},"data":{}}}"#,
        string(&p.topic),
        string(p.from.as_str()),
        string(&String::from_utf8_lossy(&p.data)),
    )
}

fn print_message(p: &Publication) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", message_line(p));
    let _ = out.flush();
}

/// Resolves when the process is asked to stop (SIGINT, or SIGTERM on Unix).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn event_json(e: &ParticipantEvent) -> Option<serde_json::Value> {
    Some(match e {
        ParticipantEvent::Found {
            id,
            identity,
            addresses,
        } => json!({
            "event": "found", "id": id.to_string(), "identity": identity,
            "addresses": addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        }),
        ParticipantEvent::Restarted {
            id,
            identity,
            incarnation,
        } => json!({
            "event": "restarted", "id": id.to_string(), "identity": identity,
            "incarnation": incarnation,
        }),
        ParticipantEvent::Gone {
            id,
            identity,
            reason,
        } => json!({
            "event": "gone", "id": id.to_string(), "identity": identity,
            "reason": match reason { GoneReason::Left => "left", GoneReason::Evicted => "evicted", _ => "lease-expired" },
        }),
        ParticipantEvent::Connected(who) => json!({"event": "connected", "identity": who.as_str()}),
        ParticipantEvent::Disconnected(who) => {
            json!({"event": "disconnected", "identity": who.as_str()})
        }
        ParticipantEvent::PublisherAdded { participant, topic } => json!({
            "event": "publisher", "participant": participant.as_str(), "topic": topic, "added": true,
        }),
        ParticipantEvent::PublisherRemoved { participant, topic } => json!({
            "event": "publisher", "participant": participant.as_str(), "topic": topic, "added": false,
        }),
        ParticipantEvent::SubscriberAdded {
            participant,
            filter,
        } => json!({
            "event": "subscriber", "participant": participant.as_str(),
            "filter": filter.to_string(), "added": true,
        }),
        ParticipantEvent::SubscriberRemoved {
            participant,
            filter,
        } => json!({
            "event": "subscriber", "participant": participant.as_str(),
            "filter": filter.to_string(), "added": false,
        }),
        _ => return None,
    })
}

/// `weft participant`: runs until SIGINT or SIGTERM, then says goodbye.
pub(crate) async fn run_participant(args: ParticipantArgs) -> Result<(), Failure> {
    let mut config = args.net.config()?;
    if let Some(n) = args.max_streams {
        config.max_streams = usize::from(n);
    }
    let local = args.net.local();
    let participant = Participant::start(config).await?;
    let mut events = participant.events();
    let server = LocalServer::start(participant.clone(), &local)
        .await
        .map_err(|e| Failure::Run(format!("serving local clients on {local}: {e}")))?;
    print_line(&json!({
        "event": "ready",
        "identity": participant.identity().as_str(),
        "id": participant.id().to_string(),
        "local": server.address(),
        "listen": participant.locators().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "beacon_port": participant.beacon_port(),
        "transport": match args.net.transport {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
        },
    }));
    let stop = stop_signal();
    tokio::pin!(stop);
    // The neighbours last reported: a line each time the number changes.
    let mut neighbours = 0;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            e = events.recv() => match e {
                Some(e) => {
                    if let Some(line) = event_json(&e) {
                        print_line(&line);
                    }
                    if matches!(e, ParticipantEvent::Connected(_) | ParticipantEvent::Disconnected(_)) {
                        let count = participant.connected().len();
                        if count != neighbours {
                            neighbours = count;
                            print_line(&json!({"event": "neighbours", "count": count}));
                        }
                    }
                }
                None => break,
            },
        }
    }
    server.close().await;
    participant.close().await;
    Ok(())
}

/// A participant of our own, or an attachment to the host's.
enum Node {
    Attached(LocalClient),
    Embedded(Participant),
}

async fn node(net: &NetArgs) -> Result<Node, Failure> {
    let config = net.config()?;
    match LocalClient::connect(&net.local(), ATTACH_WAIT).await {
        Ok(client) => {
            tracing::info!(participant = client.identity(), "attached");
            Ok(Node::Attached(client))
        }
        Err(e) => {
            tracing::info!(error = %e, "no participant to attach to; running one");
            Ok(Node::Embedded(Participant::start(config).await?))
        }
    }
}

type StdinLines = tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>>;

async fn next_line(lines: &mut StdinLines) -> Result<Option<String>, Failure> {
    lines
        .next_line()
        .await
        .map_err(|e| Failure::Run(format!("reading stdin: {e}")))
}

/// `weft pub TOPIC`.
pub(crate) async fn run_pub(args: PubArgs) -> Result<(), Failure> {
    if args.topic.len() > weft_messaging::patterns::MAX_TOPIC {
        return Err(Failure::Usage(format!(
            "TOPIC: {} bytes; the limit is {}",
            args.topic.len(),
            weft_messaging::patterns::MAX_TOPIC
        )));
    }
    if let Some(w) = args.wait {
        if !w.is_finite() || w < 0.0 {
            return Err(Failure::Usage(
                "--wait: expected a number of seconds".into(),
            ));
        }
    }
    let node = node(&args.net).await?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    match node {
        Node::Attached(client) => {
            let publisher = client.publisher(&args.topic).await?;
            if let Some(w) = args.wait {
                tokio::time::sleep(Duration::from_secs_f64(w)).await;
            }
            while let Some(line) = next_line(&mut lines).await? {
                publisher.publish(line).await?;
            }
        }
        Node::Embedded(participant) => {
            let publisher = participant.publisher(args.topic.clone())?;
            let wait = Duration::from_secs_f64(args.wait.unwrap_or(2.0));
            publisher.wait_for_subscribers(wait).await;
            while let Some(line) = next_line(&mut lines).await? {
                publisher.publish(line)?;
            }
            participant.messaging().flush(Duration::from_secs(2)).await;
            drop(publisher);
            participant.close().await;
        }
    }
    Ok(())
}

/// `weft sub TOPIC [--filter REGEX]`.
pub(crate) async fn run_sub(args: SubArgs) -> Result<(), Failure> {
    let filter = match &args.filter {
        Some(r) => TopicFilter::Regex(
            regex::Regex::new(r).map_err(|e| Failure::Usage(format!("--filter: {e}")))?,
        ),
        None => TopicFilter::Prefix(args.topic.clone()),
    };
    let node = node(&args.net).await?;
    let print = |p: &Publication| {
        if p.topic.starts_with(args.topic.as_str()) {
            print_message(p);
            true
        } else {
            false
        }
    };
    let mut printed = 0u64;
    let done = |printed: u64| args.count.is_some_and(|c| printed >= c);
    let stop = stop_signal();
    tokio::pin!(stop);
    match node {
        Node::Attached(client) => {
            let sub = client.subscriber(filter).await?;
            while !done(printed) {
                tokio::select! {
                    _ = &mut stop => break,
                    p = sub.recv(None) => {
                        let p = p.map_err(|e| Failure::Run(format!("the participant went away: {e}")))?;
                        printed += u64::from(print(&p));
                    }
                }
            }
        }
        Node::Embedded(participant) => {
            let sub = participant.subscriber(filter);
            while !done(printed) {
                tokio::select! {
                    _ = &mut stop => break,
                    p = sub.recv(None) => {
                        let p = p?;
                        printed += u64::from(print(&p));
                    }
                }
            }
            drop(sub);
            participant.close().await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beacon_targets_parse() {
        assert!(matches!(
            parse_target("loopback"),
            Ok(BeaconTarget::LoopbackBroadcast)
        ));
        assert!(matches!(
            parse_target("multicast4=239.1.2.3"),
            Ok(BeaconTarget::Multicast4(_))
        ));
        assert!(matches!(
            parse_target("127.0.0.1:5000"),
            Ok(BeaconTarget::Unicast(_))
        ));
        assert!(parse_target("multicast4=10.0.0.1").is_err());
        assert!(parse_target("nonsense").is_err());
    }
}
