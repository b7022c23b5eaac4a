//! `weft stun` asks STUN servers for this host's public (mapped) address,
//! and with `--nat` runs RFC 5780 NAT behaviour discovery; `weft
//! stun-server` serves STUN.
//!
//! `weft stun --json` prints exactly one JSON object:
//!
//! ```text
//! {"local":"192.168.1.20:40000","mapped":"203.0.113.7:40000",
//!  "servers":[{"server":"udp://stun.example.org:3478","address":"192.0.2.1:3478",
//!              "transport":"udp","mapped":"203.0.113.7:40000","local":"192.168.1.20:40000",
//!              "rtt_ms":12.5,"agrees":true,"error":null}],
//!  "nat":{"mapping":"endpoint-independent","filtering":"address-dependent","type":"restricted"}}
//! ```
//!
//! `nat` is there only with `--nat`. `mapping` and `filtering` are
//! `endpoint-independent`, `address-dependent`, `address-and-port-dependent`
//! or `null` (unknown); `type` is `open`, `full-cone`, `restricted`,
//! `port-restricted`, `symmetric`, `blocked` or `null`; when discovery
//! itself failed (the server does not do RFC 5780, say) `nat` also has an
//! `error` string. A server that did not answer has `mapped`, `local` and
//! `rtt_ms` null and an `error` string; `agrees` says whether its answer
//! matches the others'. When no server answers, `weft stun` prints one
//! error line and exits with status 1; a bad `--server` or `--local` (and,
//! for `weft stun-server`, a bad `--listen` or `--alt`) is a usage error:
//! one line, exit status 2.
//!
//! `weft stun` gives up within `--timeout` seconds (default 5, or 10 with
//! `--nat`), not after RFC 8489's 39.5 s: its requests follow a schedule of
//! the RFC's shape cut to fit ([`ClientConfig::within`]). With `--nat` the
//! query gets a third of the time and NAT discovery the rest
//! ([`ClientConfig::nat_discovery_within`]). When stderr is a terminal, one
//! line there, redrawn as time passes, says what it is waiting for; stdout
//! is the same either way.
//!
//! `weft stun-server` prints `{"event":"ready","listen":["ip:port",...]}`
//! once its sockets are bound (one address, or four with `--alt`), then
//! serves until it is killed or interrupted.

use std::fmt::Write as _;
use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::Failure;
use weft_stun::query::{QueryReport, ServerResult};
use weft_stun::url::Transport;
use weft_stun::{ClientConfig, NatReport, ServerUrl, StunError, StunServer, StunServerConfig};

/// Arguments of `weft stun`.
#[derive(clap::Args, Debug)]
pub(crate) struct StunArgs {
    /// A STUN server, repeatable; all are asked at once: `stun:host[:port]`,
    /// `stun://host[:port]`, `udp://`, `tcp://`, `tls://host[:port]` or `host[:port]`.
    /// UDP unless said otherwise; port 3478 (5349 for TLS).
    #[arg(long = "server", value_name = "URL", required = true)]
    servers: Vec<String>,
    /// Also discover the NAT's mapping and filtering behaviour (RFC 5780)
    /// with the first UDP server that answered.
    #[arg(long)]
    nat: bool,
    /// Give up after SECS seconds in all (default 5, or 10 with --nat).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    timeout: Option<Duration>,
    /// Send from this network interface (SO_BINDTODEVICE; Linux, needs
    /// CAP_NET_RAW).
    #[arg(long, value_name = "NAME")]
    interface: Option<String>,
    /// Send from this local address (ip or ip:port).
    #[arg(long, value_name = "ADDR")]
    local: Option<String>,
    /// Trust the certificates in this PEM file for tls:// servers instead
    /// of the system's CA bundle.
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// Print one JSON object:
    /// {"local","mapped","servers":[{"server","address","transport","mapped","local","rtt_ms","agrees","error"}]},
    /// with --nat also "nat":{"mapping","filtering","type"}.
    #[arg(long)]
    json: bool,
}

/// Arguments of `weft stun-server`.
#[derive(clap::Args, Debug)]
pub(crate) struct StunServerArgs {
    /// The primary address, ip:port (port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// An alternate address (ip or ip:port; the port defaults to the
    /// primary port + 1). Enables RFC 5780: four sockets, OTHER-ADDRESS,
    /// RESPONSE-ORIGIN, CHANGE-REQUEST and RESPONSE-PORT.
    #[arg(long, value_name = "ADDR")]
    alt: Option<String>,
}

/// How long `weft stun` takes at most without `--timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `weft stun --nat` takes at most without `--timeout`.
const DEFAULT_NAT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the progress line on a terminal is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// A positive number of seconds, as `--timeout` takes it.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero() && secs <= 86_400.0)
        .ok_or_else(|| format!("`{s}`: seconds must be above 0 and at most 86400"))
}

/// `ip:port`, or `ip` with `default_port`.
fn parse_addr(what: &str, s: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| format!("bad {what} `{s}`: expected ip:port or ip"))
}

/// The client configuration from the arguments: a bad `--local` is a
/// usage error; an unreadable or unusable `--ca` fails the run.
fn client_config(args: &StunArgs, urls: &[ServerUrl]) -> Result<ClientConfig, Failure> {
    let mut config = ClientConfig {
        interface: args.interface.clone(),
        ..ClientConfig::default()
    };
    if let Some(local) = &args.local {
        config.local = Some(parse_addr("--local", local, 0).map_err(Failure::Usage)?);
    }
    if urls.iter().any(|u| u.transport == Transport::Tls) {
        config.tls = match &args.ca {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("reading --ca {}: {e}", path.display()))?;
                Some(weft_stun::client::tls_config_from_pem(&pem).map_err(|e| e.to_string())?)
            }
            None => match weft_stun::client::system_tls_config() {
                Ok(tls) => Some(tls),
                Err(e) => {
                    tracing::warn!("no TLS trust anchors: {e}");
                    None
                }
            },
        };
    }
    Ok(config)
}

/// Runs `weft stun`. A bad `--server` or `--local` is
/// [`Failure::Usage`] (exit status 2); no server answering is
/// [`Failure::Run`] (exit status 1).
pub(crate) async fn run_stun(args: StunArgs) -> Result<(), Failure> {
    let urls = args
        .servers
        .iter()
        .map(|s| s.parse::<ServerUrl>())
        .collect::<Result<Vec<_>, StunError>>()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let config = client_config(&args, &urls)?;
    let progress = Progress {
        shown: std::io::stderr().is_terminal(),
    };
    let (report, local, mapped, nat) = ask(&args, &urls, &config, progress).await?;
    if args.json {
        println!("{}", to_json(&report, local, mapped, nat.as_ref()));
    } else {
        print!("{}", text(&report, local, mapped, nat.as_ref()));
    }
    Ok(())
}

/// What `weft stun` found: the query's report, its local and mapped
/// addresses, and the NAT discovery's result with `--nat`.
type Found = (
    QueryReport,
    SocketAddr,
    SocketAddr,
    Option<Result<NatReport, String>>,
);

/// The query, and with `--nat` the discovery, within the overall limit:
/// the configuration's schedules are cut to fit it, and a hard deadline
/// stands behind them. No server answering is [`Failure::Run`].
async fn ask(
    args: &StunArgs,
    urls: &[ServerUrl],
    config: &ClientConfig,
    progress: Progress,
) -> Result<Found, Failure> {
    let limit = args.timeout.unwrap_or(if args.nat {
        DEFAULT_NAT_TIMEOUT
    } else {
        DEFAULT_TIMEOUT
    });
    let started = Instant::now();
    let deadline = started + limit;
    let query_limit = if args.nat { limit / 3 } else { limit };
    let asking: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
    let report = progress
        .watch(
            &asking.join(", "),
            started,
            limit,
            tokio::time::timeout_at(
                deadline,
                weft_stun::query_servers(urls, &config.within(query_limit)),
            ),
        )
        .await
        .map_err(|_| format!("no STUN server answered within {}", secs(limit)))?;
    let (Some(local), Some(mapped)) = (report.local, report.mapped) else {
        let reasons: Vec<String> = report
            .results
            .iter()
            .filter_map(|r| r.result.as_ref().err().map(|e| format!("{}: {e}", r.url)))
            .collect();
        return Err(Failure::Run(format!(
            "no STUN server answered ({})",
            reasons.join("; ")
        )));
    };
    let nat = if args.nat {
        let left = deadline.saturating_duration_since(Instant::now());
        let config = config.nat_discovery_within(left);
        let what = match nat_server(&report) {
            Some(server) => format!("{server} (RFC 5780 NAT tests)"),
            None => "NAT discovery".into(),
        };
        let found = progress
            .watch(
                &what,
                started,
                limit,
                tokio::time::timeout_at(deadline, discover(&report, &config)),
            )
            .await;
        Some(found.unwrap_or_else(|_| {
            Err(format!(
                "NAT discovery did not finish within {}",
                secs(limit)
            ))
        }))
    } else {
        None
    };
    Ok((report, local, mapped, nat))
}

/// `1.5 s`.
fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The line on a terminal that says what `weft stun` waits for.
#[derive(Clone, Copy, Debug)]
struct Progress {
    /// Whether it is drawn at all (stderr is a terminal).
    shown: bool,
}

impl Progress {
    /// Runs `work`, redrawing the line every [`PROGRESS_EVERY`] meanwhile
    /// and erasing it at the end.
    async fn watch<F: Future>(
        self,
        what: &str,
        started: Instant,
        limit: Duration,
        work: F,
    ) -> F::Output {
        if !self.shown {
            return work.await;
        }
        tokio::pin!(work);
        let mut ticks = tokio::time::interval(PROGRESS_EVERY);
        let mut stderr = std::io::stderr();
        let out = loop {
            tokio::select! {
                out = &mut work => break out,
                _ = ticks.tick() => {
                    let line = progress_line(what, started.elapsed(), limit);
                    let _ = write!(stderr, "\r\x1b[2K{line}");
                    let _ = stderr.flush();
                }
            }
        };
        let _ = write!(stderr, "\r\x1b[2K");
        let _ = stderr.flush();
        out
    }
}

/// `waiting for udp://... (1.5 s, giving up at 5.0 s)`.
fn progress_line(what: &str, elapsed: Duration, limit: Duration) -> String {
    format!(
        "waiting for {what} ({}, giving up at {})",
        secs(elapsed),
        secs(limit)
    )
}

/// The server NAT discovery asks: the first UDP server that answered.
fn nat_server(report: &QueryReport) -> Option<SocketAddr> {
    report
        .results
        .iter()
        .filter(|r| r.url.transport == Transport::Udp)
        .find_map(|r| r.result.as_ref().ok().map(|b| b.server))
}

/// NAT discovery with the first UDP server that answered.
async fn discover(report: &QueryReport, config: &ClientConfig) -> Result<NatReport, String> {
    let server = nat_server(report).ok_or("NAT discovery needs a UDP server that answers")?;
    // A fresh port: the query's socket may still be closing.
    let config = ClientConfig {
        local: config.local.map(|l| SocketAddr::new(l.ip(), 0)),
        ..config.clone()
    };
    weft_stun::discover_nat(server, &config)
        .await
        .map_err(|e| e.to_string())
}

/// A JSON value that prints its object keys in the order given
/// (serde_json's own map sorts them).
enum Json {
    Null,
    Bool(bool),
    Number(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(&'static str, Json)>),
}

impl Json {
    fn opt(s: Option<String>) -> Json {
        s.map_or(Json::Null, Json::Str)
    }
}

impl std::fmt::Display for Json {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::Number(n) => write!(f, "{}", serde_json::Value::from(*n)),
            Json::Str(s) => write!(f, "{}", serde_json::Value::from(s.as_str())),
            Json::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Json::Object(fields) => {
                f.write_str("{")?;
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}:{v}", serde_json::Value::from(*k))?;
                }
                f.write_str("}")
            }
        }
    }
}

fn server_json(report: &QueryReport, r: &ServerResult) -> Json {
    let ok = r.result.as_ref().ok();
    Json::Object(vec![
        ("server", Json::Str(r.url.to_string())),
        ("address", Json::opt(r.address.map(|a| a.to_string()))),
        ("transport", Json::Str(r.url.transport.as_str().into())),
        ("mapped", Json::opt(ok.map(|b| b.mapped.to_string()))),
        ("local", Json::opt(ok.map(|b| b.local.to_string()))),
        (
            "rtt_ms",
            ok.map_or(Json::Null, |b| {
                Json::Number((b.elapsed.as_secs_f64() * 1e4).round() / 10.0)
            }),
        ),
        ("agrees", Json::Bool(report.agrees(r))),
        (
            "error",
            Json::opt(r.result.as_ref().err().map(|e| e.to_string())),
        ),
    ])
}

fn nat_json(nat: &Result<NatReport, String>) -> Json {
    let word = |w: Option<&'static str>| Json::opt(w.map(str::to_owned));
    match nat {
        Ok(n) => Json::Object(vec![
            ("mapping", word(n.mapping.map(|m| m.as_str()))),
            ("filtering", word(n.filtering.map(|f| f.as_str()))),
            ("type", word(n.nat_type.map(|t| t.as_str()))),
        ]),
        Err(e) => Json::Object(vec![
            ("mapping", Json::Null),
            ("filtering", Json::Null),
            ("type", Json::Null),
            ("error", Json::Str(e.clone())),
        ]),
    }
}

fn to_json(
    report: &QueryReport,
    local: SocketAddr,
    mapped: SocketAddr,
    nat: Option<&Result<NatReport, String>>,
) -> Json {
    let servers = report
        .results
        .iter()
        .map(|r| server_json(report, r))
        .collect();
    let mut fields = vec![
        ("local", Json::Str(local.to_string())),
        ("mapped", Json::Str(mapped.to_string())),
        ("servers", Json::Array(servers)),
    ];
    if let Some(nat) = nat {
        fields.push(("nat", nat_json(nat)));
    }
    Json::Object(fields)
}

fn text(
    report: &QueryReport,
    local: SocketAddr,
    mapped: SocketAddr,
    nat: Option<&Result<NatReport, String>>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "local    {local}");
    let _ = writeln!(s, "mapped   {mapped}");
    let _ = writeln!(
        s,
        "servers  {} of {} answered, {}",
        report.answered(),
        report.results.len(),
        if report.agree {
            "in agreement"
        } else {
            "DISAGREEING"
        }
    );
    for r in &report.results {
        match &r.result {
            Ok(b) => {
                let _ = writeln!(
                    s,
                    "  {}  mapped {}  from {}  {:.1} ms{}",
                    r.url,
                    b.mapped,
                    b.local,
                    b.elapsed.as_secs_f64() * 1000.0,
                    if report.agrees(r) {
                        ""
                    } else {
                        "  (disagrees)"
                    }
                );
            }
            Err(e) => {
                let _ = writeln!(s, "  {}  error: {e}", r.url);
            }
        }
    }
    if let Some(nat) = nat {
        match nat {
            Ok(n) => {
                let word = |o: Option<&'static str>| o.unwrap_or("unknown");
                let _ = writeln!(
                    s,
                    "nat      {} (mapping {}, filtering {})",
                    word(n.nat_type.map(|t| t.as_str())),
                    word(n.mapping.map(|m| m.as_str())),
                    word(n.filtering.map(|f| f.as_str())),
                );
            }
            Err(e) => {
                let _ = writeln!(s, "nat      unknown: {e}");
            }
        }
    }
    s
}

/// Runs `weft stun-server` until interrupted. A bad `--listen` or `--alt`
/// is [`Failure::Usage`] (exit status 2); failing to bind or serve is
/// [`Failure::Run`] (exit status 1).
pub(crate) async fn run_stun_server(args: StunServerArgs) -> Result<(), Failure> {
    let listen =
        parse_addr("--listen", &args.listen, weft_stun::STUN_PORT).map_err(Failure::Usage)?;
    let alternate = match &args.alt {
        Some(alt) => Some(parse_addr("--alt", alt, 0).map_err(Failure::Usage)?),
        None => None,
    };
    let server = StunServer::bind(StunServerConfig {
        listen,
        alternate,
        ..StunServerConfig::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let listening: Vec<String> = server.udp_addrs().iter().map(|a| a.to_string()).collect();
    let ready = Json::Object(vec![
        ("event", Json::Str("ready".into())),
        (
            "listen",
            Json::Array(listening.into_iter().map(Json::Str).collect()),
        ),
    ]);
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{ready}");
    let _ = stdout.flush();
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("waiting for a signal: {e}"))?;
    server.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_and_without_port() {
        assert_eq!(
            parse_addr("--alt", "127.0.0.2", 0).unwrap(),
            "127.0.0.2:0".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse_addr("--listen", "[::1]", 3478).unwrap(),
            "[::1]:3478".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse_addr("--listen", "127.0.0.1:9", 3478).unwrap().port(),
            9
        );
        let err = parse_addr("--listen", "nowhere", 1).unwrap_err();
        assert_eq!(err, "bad --listen `nowhere`: expected ip:port or ip");
    }

    #[test]
    fn json_keeps_the_documented_order() {
        let j = Json::Object(vec![
            ("local", Json::Str("127.0.0.1:1".into())),
            ("mapped", Json::Str("127.0.0.1:1".into())),
            ("servers", Json::Array(vec![Json::Null, Json::Bool(true)])),
            (
                "nat",
                Json::Object(vec![
                    ("mapping", Json::Str("endpoint-independent".into())),
                    ("filtering", Json::Null),
                    ("type", Json::Number(1.5)),
                ]),
            ),
        ]);
        assert_eq!(
            j.to_string(),
            r#"{"local":"127.0.0.1:1","mapped":"127.0.0.1:1","servers":[null,true],"nat":{"mapping":"endpoint-independent","filtering":null,"type":1.5}}"#
        );
        assert_eq!(Json::Str("a\"b\n".into()).to_string(), r#""a\"b\n""#);
    }

    /// `weft stun`'s arguments for these servers, the rest as by default.
    fn stun_args(servers: &[SocketAddr], nat: bool, timeout: Option<Duration>) -> StunArgs {
        StunArgs {
            servers: servers.iter().map(|s| s.to_string()).collect(),
            nat,
            timeout,
            interface: None,
            local: None,
            ca: None,
            json: true,
        }
    }

    /// Runs [`ask`] as `run_stun` does, without a progress line, and says
    /// how long it took on the (paused) clock.
    async fn timed_ask(args: &StunArgs) -> (Result<Found, Failure>, Duration) {
        let urls: Vec<ServerUrl> = args.servers.iter().map(|s| s.parse().unwrap()).collect();
        let config = client_config(args, &urls).unwrap();
        let started = Instant::now();
        let found = ask(args, &urls, &config, Progress { shown: false }).await;
        (found, started.elapsed())
    }

    /// A UDP socket on loopback that never answers.
    async fn silent_server() -> tokio::net::UdpSocket {
        tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    /// Asserts the documented failure, with the server's own timeout in
    /// it: the cut schedule ended, not the deadline behind it.
    fn assert_no_answer(found: Result<Found, Failure>, server: SocketAddr) {
        match found {
            Err(Failure::Run(e)) => {
                assert!(e.starts_with("no STUN server answered ("), "{e}");
                assert!(e.contains(&format!("udp://{server}: ")), "{e}");
            }
            Err(Failure::Usage(e)) => panic!("a usage error: {e}"),
            Ok((report, ..)) => panic!("an answer: {report:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_dead_server_is_given_up_within_five_seconds() {
        let silent = silent_server().await;
        let server = silent.local_addr().unwrap();
        let (found, took) = timed_ask(&stun_args(&[server], false, None)).await;
        assert_no_answer(found, server);
        assert!(took <= DEFAULT_TIMEOUT, "{took:?}");
        // It retransmitted for most of the time rather than giving up at once.
        assert!(took >= Duration::from_secs(3), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_bounds_a_dead_server_and_nat_mode() {
        let silent = silent_server().await;
        let server = [silent.local_addr().unwrap()];
        let (found, took) =
            timed_ask(&stun_args(&server, false, Some(Duration::from_secs(1)))).await;
        assert_no_answer(found, server[0]);
        assert!(took <= Duration::from_secs(1), "{took:?}");
        let (found, took) = timed_ask(&stun_args(&server, true, None)).await;
        assert_no_answer(found, server[0]);
        assert!(took <= DEFAULT_NAT_TIMEOUT, "{took:?}");
        let (found, took) =
            timed_ask(&stun_args(&server, true, Some(Duration::from_secs(30)))).await;
        assert_no_answer(found, server[0]);
        assert!(
            took <= Duration::from_secs(30) && took > DEFAULT_NAT_TIMEOUT / 3,
            "{took:?}"
        );
    }

    /// The address a port-restricted NAT gives the client, as the fake
    /// server reports it.
    const PUBLIC: &str = "203.0.113.7:40000";

    /// A STUN server seen through a port-restricted NAT: it answers Binding
    /// requests on 127.0.0.1:P and 127.0.0.2:P with the mapped address
    /// [`PUBLIC`] (the same for every destination: endpoint-independent
    /// mapping) and OTHER-ADDRESS 127.0.0.2:P+1, and every answer it would
    /// send from another address or port (CHANGE-REQUEST) the NAT drops.
    async fn port_restricted_server() -> (SocketAddr, Vec<tokio::task::JoinHandle<()>>) {
        let primary = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = primary.local_addr().unwrap().port();
        let alternate = tokio::net::UdpSocket::bind(("127.0.0.2", port))
            .await
            .unwrap();
        let other = SocketAddr::new("127.0.0.2".parse().unwrap(), port + 1);
        let public: SocketAddr = PUBLIC.parse().unwrap();
        let tasks = [primary, alternate]
            .into_iter()
            .map(|socket| {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1500];
                    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                        let Ok(request) = weft_stun::StunMessage::decode(&buf[..n]) else {
                            continue;
                        };
                        if request.change_request().is_some() {
                            continue;
                        }
                        let answer = weft_stun::StunMessage::new(
                            weft_stun::Class::SuccessResponse,
                            weft_stun::StunMethod::BINDING,
                            request.transaction_id,
                        )
                        .with(weft_stun::Attribute::XorMappedAddress(public))
                        .with(weft_stun::Attribute::OtherAddress(other));
                        let _ = socket.send_to(&answer.encode().unwrap(), from).await;
                    }
                })
            })
            .collect();
        (SocketAddr::new("127.0.0.1".parse().unwrap(), port), tasks)
    }

    /// Behind a port-restricted NAT the filtering tests II and III are
    /// never answered; the RFC schedule would wait 39.5 s for them.
    #[tokio::test(start_paused = true)]
    async fn a_port_restricted_nat_is_classified_within_ten_seconds() {
        let (server, tasks) = port_restricted_server().await;
        let (found, took) = timed_ask(&stun_args(&[server], true, None)).await;
        let (_, _, mapped, nat) = found.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(mapped, PUBLIC.parse::<SocketAddr>().unwrap());
        let nat = nat.expect("--nat reports").expect("discovery succeeds");
        assert_eq!(
            nat.mapping,
            Some(weft_stun::nat::MappingBehaviour::EndpointIndependent)
        );
        assert_eq!(
            nat.filtering,
            Some(weft_stun::nat::FilteringBehaviour::AddressAndPortDependent)
        );
        assert_eq!(nat.nat_type, Some(weft_stun::NatType::PortRestricted));
        assert!(took <= DEFAULT_NAT_TIMEOUT, "{took:?}");
        for task in tasks {
            task.abort();
        }
    }

    #[test]
    fn timeouts_and_the_progress_line() {
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_secs("3"), Ok(Duration::from_secs(3)));
        for bad in ["0", "-1", "nan", "inf", "1e9", "soon"] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
        assert_eq!(
            progress_line(
                "udp://127.0.0.1:3478",
                Duration::from_millis(1500),
                DEFAULT_TIMEOUT
            ),
            "waiting for udp://127.0.0.1:3478 (1.5 s, giving up at 5.0 s)"
        );
    }

    /// The whole `weft stun --nat --json` output against weft's own RFC 5780
    /// server on loopback.
    #[tokio::test]
    async fn stun_json_against_a_loopback_server() {
        let server = StunServer::bind(StunServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            alternate: Some("127.0.0.2:0".parse().unwrap()),
            ..StunServerConfig::default()
        })
        .await
        .unwrap();
        let urls = vec![
            ServerUrl::new(Transport::Udp, server.primary()),
            ServerUrl::new(Transport::Udp, server.alternate().unwrap()),
        ];
        let config = ClientConfig {
            local: Some("127.0.0.1:0".parse().unwrap()),
            ..ClientConfig::default()
        };
        let wait = std::time::Duration::from_secs(20);
        let report = tokio::time::timeout(wait, weft_stun::query_servers(&urls, &config))
            .await
            .unwrap();
        let nat = tokio::time::timeout(wait, discover(&report, &config))
            .await
            .unwrap();
        let (local, mapped) = (report.local.unwrap(), report.mapped.unwrap());
        let out = to_json(&report, local, mapped, Some(&nat)).to_string();
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["local"], parsed["mapped"]);
        assert_eq!(parsed["servers"].as_array().unwrap().len(), 2);
        assert_eq!(parsed["servers"][1]["agrees"], true);
        assert_eq!(parsed["servers"][0]["error"], serde_json::Value::Null);
        assert_eq!(parsed["nat"]["mapping"], "endpoint-independent");
        assert_eq!(parsed["nat"]["filtering"], "endpoint-independent");
        assert_eq!(parsed["nat"]["type"], "open");
        assert!(out.starts_with(r#"{"local":"#), "{out}");
        assert!(out.contains(r#","nat":{"mapping":"#), "{out}");
        let text = text(&report, local, mapped, Some(&nat));
        assert!(text.contains("2 of 2 answered, in agreement"), "{text}");
        assert!(text.contains("nat      open"), "{text}");
    }
}
