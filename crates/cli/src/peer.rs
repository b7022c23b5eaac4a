//! `weft peer`: a messaging peer for people and scripts.
//!
//! ```text
//! weft peer --ident NAME [--listen URL]... [--connect URL]... [--store FILE]
//!           [--ttl SECS] [--persistent] [--linger SECS]
//!           [--cert FILE --key FILE] [--ca FILE] [--server-name NAME]
//!           [--bind-identity] [--rendezvous URL] [--quic-idle-timeout SECS]
//! ```
//!
//! TLS (`tls://`, `unix+tls://`, `quic://`; certificates from `weft cert`):
//! - `--cert FILE --key FILE`: the PEM chain and key this peer presents,
//!   as a listener and, for mutual TLS, as a client. A TLS listener needs
//!   them.
//! - `--ca FILE`: PEM roots that verify the other side. A TLS connector
//!   needs it; on a listener it also requires client certificates.
//! - `--server-name NAME`: the name a listener's certificate must carry
//!   when this peer connects (default: the URL's host). Certificates from
//!   `weft cert issue NAME` name NAME, not an address, so connecting to
//!   `tls://127.0.0.1:PORT` takes `--server-name NAME`.
//! - `--bind-identity`: a peer's identity must be a name of its verified
//!   certificate (its DNS names, or its CN when it has none); any other
//!   peer is refused before it gets anything (see
//!   `MessagingConfig::bind_identity`).
//!
//! Without `--bind-identity` an identity is a claim: any peer that can
//! connect may take an identity no live connection holds and receive what
//! is queued for it, but never one a live connection holds.
//!
//! - First line on stdout: `{"event":"ready","listen":[URL, ...]}` with the
//!   addresses actually bound.
//! - Each stdin line `IDENT<TAB>TEXT` sends TEXT to IDENT.
//! - Each event is one JSON line on stdout: `connect` (with
//!   `"cert":{"subject":CN,"names":[DNS names]}` when the peer presented a
//!   verified certificate), `disconnect`, `rejected` (`ident`: the identity
//!   a peer claimed, `reason`; with `--bind-identity`),
//!   `message` (`from`, `uuid`, `ttl`, `flags`, `data`, `lane`), and, once a line's
//!   message was accepted (stored first with `--persistent`), `sent` (`to`,
//!   `uuid`).
//! - `--rendezvous URL`: registers this identity at a `weft rendezvous`
//!   (reconnecting when the connection drops; a `tls://` or `quic://`
//!   rendezvous is verified with `--ca`). A line for an identity this peer
//!   has no connection to asks the rendezvous for a path to it: at once
//!   when that identity is registered there, else as soon as it
//!   registers; the message waits in its queue meanwhile. Each new path
//!   prints `{"event":"path","ident":IDENT,"via":"relay","transport":"tcp",
//!   "remote":"ip:port"}` (`remote`: where the packets go; for the relay,
//!   the rendezvous). Beside each relay a direct TCP path is raced (the
//!   peers' addresses exchanged through the rendezvous, TCP simultaneous
//!   open through NATs that keep ports); when it wins, `via` is `direct`,
//!   `remote` the peer's address, and it replaces the relay with nothing
//!   lost. Messaging runs over the path as over any connection, so
//!   `connect`, `disconnect` and `message` events are as without it.
//!   A rendezvous run with `--bind-identity` registers this identity only
//!   when `--cert` names it. With `--cert`, `--key` and `--ca`, every path
//!   to a peer (the relay's and the direct ones) runs mutual TLS from end
//!   to end: each side presents its certificate and checks the other's
//!   against `--ca` and the other's identity, so the rendezvous relays
//!   only ciphertext and `--bind-identity` holds on every path (the
//!   `connect` event carries the peer's `cert`). Without them, paths
//!   carry no certificate, and with `--bind-identity` they are
//!   `rejected`.
//! - `--quic-idle-timeout SECS`: a `quic://` connection that hears nothing
//!   from its peer for this long is dead (both ends propose one and the
//!   smaller holds), and a connector reconnects; a quiet connection sends
//!   a PING every third of it (every 10 s at most). Messaging resends what
//!   the peer had not acknowledged, and the peer drops what it already
//!   had. Default: 30 s.
//! - `--data-lane-from BYTES`: a line whose text is at least BYTES long is
//!   sent on the data lane (`Lane::Data`): over `quic://` a stream of its
//!   own beside the connection's, so that large messages hold up neither
//!   the small ones nor, when a packet is lost, anything but themselves.
//!   Order holds within each lane. A `message` event names the lane it
//!   came on (`"lane":"control"` or `"data"`).
//! - On stdin EOF it waits until its queues are delivered, at most
//!   `--linger` seconds. It exits 0 when everything it accepted was
//!   delivered (or, with `--persistent` and `--store`, stored for the
//!   next run); otherwise it prints `{"event":"undelivered","count":N}`
//!   (messages still queued, dropped by a full queue or expired) and
//!   exits 1.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use weft_link::tls::{ClientAuth, TlsClientConfig, TlsIdentity, TlsServerConfig, TrustAnchors};
use weft_link::{Address, ConnectOptions, LinkError, ListenOptions};
use weft_messaging::error::ProtocolError;
use weft_messaging::storage::SqliteStorage;
use weft_messaging::{Identity, Lane, Message, Messaging, MessagingConfig};
use weft_traversal::{PathTls, Traversal, TraversalConfig, TraversalEvent};

use crate::Failure;

/// Arguments of `weft peer`.
#[derive(Args, Debug)]
pub(crate) struct PeerArgs {
    /// This peer's identity (1 to 50 characters).
    #[arg(long)]
    ident: String,
    /// Listen on this URL (repeatable; port 0 picks a free port).
    #[arg(long, value_name = "URL")]
    listen: Vec<String>,
    /// Connect to this URL, reconnecting when it drops (repeatable).
    #[arg(long, value_name = "URL")]
    connect: Vec<String>,
    /// Keep persistent messages in this SQLite file across restarts.
    #[arg(long, value_name = "FILE")]
    store: Option<PathBuf>,
    /// Time to live of sent messages, in seconds (default: none).
    #[arg(long, value_name = "SECS")]
    ttl: Option<u64>,
    /// Mark sent messages persistent.
    #[arg(long)]
    persistent: bool,
    /// On end of input, wait at most this long for queues to drain.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    linger: f64,
    #[command(flatten)]
    tls: TlsFlags,
    /// Refuse peers whose verified certificate does not name the identity
    /// they claim.
    #[arg(long)]
    bind_identity: bool,
    /// Register at this rendezvous (`weft rendezvous`) and reach identities
    /// registered there through it.
    #[arg(long, value_name = "URL")]
    rendezvous: Option<String>,
    /// A quic:// connection silent for this long is dead (default: 30).
    #[arg(long, value_name = "SECS")]
    quic_idle_timeout: Option<f64>,
    /// Send lines whose text is at least this many bytes on the data lane
    /// (over quic://, a stream of its own; default: none).
    #[arg(long, value_name = "BYTES")]
    data_lane_from: Option<usize>,
}

/// The TLS flags (`--cert`, `--key`, `--ca`, `--server-name`), shared by
/// the commands that take them.
#[derive(Args, Debug)]
pub(crate) struct TlsFlags {
    /// PEM certificate chain this peer presents on TLS (needs --key).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// PEM roots that verify the other side; listeners then require client
    /// certificates.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The name a listener's certificate must carry when connecting
    /// (default: the URL's host).
    #[arg(long, value_name = "NAME")]
    pub(crate) server_name: Option<String>,
}

impl TlsFlags {
    /// The chain and key of `--cert` and `--key`, read now, if given.
    pub(crate) fn identity(&self) -> Result<Option<TlsIdentity>, Failure> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => TlsIdentity::from_pem_files(cert, key)
                .map(Some)
                .map_err(|e| file_error("--cert", cert, e)),
            _ => Ok(None),
        }
    }

    /// Whether any of the flags was given.
    pub(crate) fn any(&self) -> bool {
        self.cert.is_some() || self.ca.is_some() || self.server_name.is_some()
    }

    /// The roots of `--ca`, if given.
    pub(crate) fn anchors(&self) -> Result<Option<TrustAnchors>, Failure> {
        match &self.ca {
            Some(ca) => TrustAnchors::from_pem_file(ca)
                .map(Some)
                .map_err(|e| file_error("--ca", ca, e)),
            None => Ok(None),
        }
    }
}

fn file_error(flag: &str, path: &std::path::Path, e: LinkError) -> Failure {
    Failure::Usage(format!("{flag} {}: {e}", path.display()))
}

/// The TLS configurations the flags make: a server side when this peer
/// has a certificate, a client side when it has roots to verify with.
fn tls_configs(
    args: &PeerArgs,
) -> Result<(Option<TlsServerConfig>, Option<TlsClientConfig>), Failure> {
    let tls = &args.tls;
    let anchors = tls.anchors()?;
    // Read once per side: a key is not cloned.
    let server = match tls.identity()? {
        Some(id) => {
            let auth = match &anchors {
                Some(a) => ClientAuth::Required(a.clone()),
                None => ClientAuth::None,
            };
            Some(
                TlsServerConfig::new(id, auth)
                    .map_err(|e| Failure::Usage(format!("--cert: {e}")))?,
            )
        }
        None => None,
    };
    let client = match anchors {
        Some(a) => {
            let c = TlsClientConfig::new(a, tls.identity()?)
                .map_err(|e| Failure::Usage(format!("--ca: {e}")))?;
            Some(match &tls.server_name {
                Some(name) => c.with_server_name(name.clone()),
                None => c,
            })
        }
        None => None,
    };
    Ok((server, client))
}

/// Prints JSON lines; events before `ready` wait until it is printed.
struct Out {
    before_ready: Mutex<Option<Vec<String>>>,
}

impl Out {
    fn emit(&self, line: serde_json::Value) {
        let line = line.to_string();
        let mut pending = self.before_ready.lock().unwrap_or_else(|p| p.into_inner());
        match pending.as_mut() {
            Some(buffer) => buffer.push(line),
            None => print_line(&line),
        }
    }

    fn ready(&self, line: serde_json::Value) {
        let mut pending = self.before_ready.lock().unwrap_or_else(|p| p.into_inner());
        print_line(&line.to_string());
        for l in pending.take().unwrap_or_default() {
            print_line(&l);
        }
    }
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn parse_urls(flag: &str, urls: &[String]) -> Result<Vec<Address>, Failure> {
    urls.iter()
        .map(|u| {
            u.parse()
                .map_err(|e| Failure::Usage(format!("{flag} {u}: {e}")))
        })
        .collect()
}

pub(crate) async fn run(args: PeerArgs) -> Result<(), Failure> {
    let ident = Identity::new(&args.ident).map_err(|e| Failure::Usage(format!("--ident: {e}")))?;
    if !args.linger.is_finite() || args.linger < 0.0 {
        return Err(Failure::Usage(
            "--linger: expected a number of seconds".into(),
        ));
    }
    let listen = parse_urls("--listen", &args.listen)?;
    let connect = parse_urls("--connect", &args.connect)?;
    let rendezvous = parse_urls("--rendezvous", args.rendezvous.as_slice())?
        .into_iter()
        .next();
    let (tls_server, tls_client) = tls_configs(&args)?;
    let mut config = MessagingConfig::default();
    config.bind_identity = args.bind_identity;
    if let Some(secs) = args.quic_idle_timeout {
        let idle = Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                Failure::Usage("--quic-idle-timeout: expected a positive number of seconds".into())
            })?;
        let quic = &mut config.link.quic;
        quic.idle_timeout = idle;
        quic.keep_alive = Some((idle / 3).min(Duration::from_secs(10)));
    }
    let messaging = match &args.store {
        Some(path) => {
            let storage = SqliteStorage::open(path)
                .map_err(|e| Failure::Run(format!("--store {}: {e}", path.display())))?;
            Messaging::with_storage(ident, config, storage).await
        }
        None => Messaging::new(ident, config).await,
    }?;

    let out = Arc::new(Out {
        before_ready: Mutex::new(Some(Vec::new())),
    });
    messaging.unsubscribe(0); // events are printed by the handlers below
    let o = out.clone();
    let weak = messaging.downgrade();
    messaging.on_connect(move |who| {
        let mut event = json!({"event": "connect", "ident": who.as_str()});
        let info = weak.upgrade().and_then(|m| m.peer_info(who));
        if let Some(cert) = info.and_then(|i| i.certificate) {
            event["cert"] = json!({"subject": cert.subject, "names": cert.dns_names});
        }
        o.emit(event)
    });
    let o = out.clone();
    messaging.on_protocol_error(move |who, error| {
        if matches!(
            error,
            ProtocolError::IdentityNotInCertificate { .. } | ProtocolError::NoCertificate(_)
        ) {
            o.emit(json!({
                "event": "rejected",
                "ident": who.map(Identity::as_str),
                "reason": error.to_string(),
            }))
        }
    });
    let o = out.clone();
    messaging
        .on_disconnect(move |who| o.emit(json!({"event": "disconnect", "ident": who.as_str()})));
    let o = out.clone();
    messaging.on_message(move |r| {
        o.emit(json!({
            "event": "message",
            "from": r.from.as_str(),
            "uuid": r.message.id.to_hex(),
            "ttl": r.message.ttl.map(|t| t.as_secs()),
            "flags": r.message.flags.0,
            "data": String::from_utf8_lossy(&r.message.data),
            "lane": match r.message.lane() {
                Lane::Control => "control",
                Lane::Data => "data",
            },
        }))
    });

    let mut bound = Vec::new();
    let flag_error = |flag: &str, url: &Address, e: LinkError| {
        let message = format!("{flag} {url}: {e}");
        match e {
            LinkError::TlsConfigMissing { .. } | LinkError::Address(_) => Failure::Usage(message),
            _ => Failure::Run(message),
        }
    };
    for url in &listen {
        let options = match &tls_server {
            Some(tls) if url.scheme().is_tls() => ListenOptions::tls(tls.clone()),
            _ => ListenOptions::default(),
        };
        let l = messaging
            .link()
            .listen_with(url, options)
            .await
            .map_err(|e| flag_error("--listen", url, e))?;
        bound.push(l.address.to_string());
    }
    for url in &connect {
        let options = match &tls_client {
            Some(tls) if url.scheme().is_tls() => ConnectOptions::tls(tls.clone()),
            _ => ConnectOptions::default(),
        };
        messaging
            .link()
            .connect_with(url, options)
            .map_err(|e| flag_error("--connect", url, e))?;
    }
    let traversal = match &rendezvous {
        Some(url) => {
            let options = match &tls_client {
                Some(tls) if url.scheme().is_tls() => ConnectOptions::tls(tls.clone()),
                _ => ConnectOptions::default(),
            };
            let mut config = TraversalConfig::default();
            // With a certificate and roots, every path runs mutual TLS.
            if let (Some(identity), Some(anchors)) = (args.tls.identity()?, args.tls.anchors()?) {
                config.tls = Some(
                    PathTls::new(identity, anchors)
                        .map_err(|e| Failure::Usage(format!("--cert: {e}")))?,
                );
            }
            let (traversal, mut events) = Traversal::start(&messaging, url, options, config)
                .map_err(|e| Failure::Usage(format!("--rendezvous {url}: {e}")))?;
            let o = out.clone();
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    match event {
                        TraversalEvent::Path(path) => o.emit(json!({
                            "event": "path",
                            "ident": path.peer.as_str(),
                            "via": path.via.as_str(),
                            "transport": path.transport.as_str(),
                            "remote": path.remote.map(|a| a.to_string()),
                        })),
                        TraversalEvent::Refused { reason } => eprintln!(
                            "weft peer: the rendezvous refused this identity: {}",
                            reason.as_str()
                        ),
                        _ => {}
                    }
                }
            });
            Some(traversal)
        }
        None => None,
    };
    out.ready(json!({"event": "ready", "listen": bound}));

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| Failure::Run(format!("reading stdin: {e}")))?
    {
        let Some((to, text)) = line.split_once('\t') else {
            eprintln!("weft peer: ignoring a line without a tab (expected IDENT<TAB>TEXT)");
            continue;
        };
        let to = match Identity::new(to) {
            Ok(to) => to,
            Err(e) => {
                eprintln!("weft peer: ignoring a line for `{to}`: {e}");
                continue;
            }
        };
        let mut message = Message::new(text.to_owned());
        if let Some(ttl) = args.ttl {
            message = message.with_ttl(Duration::from_secs(ttl));
        }
        if args.persistent {
            message = message.persistent();
        }
        if args.data_lane_from.is_some_and(|from| text.len() >= from) {
            message = message.on_lane(Lane::Data);
        }
        let uuid = message.id.to_hex();
        if let Some(traversal) = &traversal {
            if !messaging.is_connected(&to) {
                if let Err(e) = traversal.reach(&to) {
                    eprintln!("weft peer: no path asked for {to}: {e}");
                }
            }
        }
        match messaging.send_message(&to, message).await {
            Ok(()) => out.emit(json!({"event": "sent", "to": to.as_str(), "uuid": uuid})),
            Err(e) => eprintln!("weft peer: not sent to {to}: {e}"),
        }
    }
    messaging.flush(Duration::from_secs_f64(args.linger)).await;
    let undelivered = undelivered(&messaging, args.persistent && args.store.is_some());
    if let Some(traversal) = &traversal {
        traversal.close().await;
    }
    messaging.close().await;
    if undelivered > 0 {
        out.emit(json!({"event": "undelivered", "count": undelivered}));
        return Err(Failure::Run(format!(
            "{undelivered} accepted message(s) were not delivered"
        )));
    }
    Ok(())
}

/// Messages accepted but not delivered: still queued (unless each is in the
/// store for the next run), dropped by a full queue, or expired.
fn undelivered(messaging: &Messaging, stored: bool) -> u64 {
    let stats = messaging.stats();
    let queued: usize = if stored {
        0
    } else {
        messaging.queue_depths().values().sum()
    };
    queued as u64 + stats.dropped + stats.expired
}
