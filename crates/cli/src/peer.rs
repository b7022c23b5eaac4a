//! `weft peer`: a messaging peer for people and scripts.
//!
//! ```text
//! weft peer --ident NAME [--listen URL]... [--connect URL]... [--store FILE]
//!           [--ttl SECS] [--persistent] [--linger SECS]
//! ```
//!
//! - First line on stdout: `{"event":"ready","listen":[URL, ...]}` with the
//!   addresses actually bound.
//! - Each stdin line `IDENT<TAB>TEXT` sends TEXT to IDENT.
//! - Each event is one JSON line on stdout: `connect`, `disconnect`,
//!   `message` (`from`, `uuid`, `ttl`, `flags`, `data`), and, once a line's
//!   message was accepted (stored first with `--persistent`), `sent` (`to`,
//!   `uuid`).
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
use weft_link::{Address, LinkError};
use weft_messaging::storage::SqliteStorage;
use weft_messaging::{Identity, Message, Messaging, MessagingConfig};

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
    let config = MessagingConfig::default();
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
    messaging.on_connect(move |who| o.emit(json!({"event": "connect", "ident": who.as_str()})));
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
        let l = messaging
            .link()
            .listen(url)
            .await
            .map_err(|e| flag_error("--listen", url, e))?;
        bound.push(l.address.to_string());
    }
    for url in &connect {
        messaging
            .link()
            .connect(url)
            .map_err(|e| flag_error("--connect", url, e))?;
    }
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
        let uuid = message.id.to_hex();
        match messaging.send_message(&to, message).await {
            Ok(()) => out.emit(json!({"event": "sent", "to": to.as_str(), "uuid": uuid})),
            Err(e) => eprintln!("weft peer: not sent to {to}: {e}"),
        }
    }
    messaging.flush(Duration::from_secs_f64(args.linger)).await;
    let undelivered = undelivered(&messaging, args.persistent && args.store.is_some());
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
