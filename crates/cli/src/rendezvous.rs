//! `weft rendezvous`: a rendezvous for peers behind NATs.
//!
//! ```text
//! weft rendezvous --listen URL... [--alt-ip IP] [--relay-rate BYTES_PER_S]
//!                 [--cert FILE --key FILE] [--ca FILE] [--bind-identity]
//! ```
//!
//! - First line on stdout:
//!   `{"event":"ready","listen":[URL, ...],"stun":"ip:port"}` with the
//!   addresses actually bound; STUN is answered over UDP on the IP and
//!   port of the first listen URL (with `--alt-ip`, RFC 5780 on that
//!   second IP and the next port). Without `--alt-ip` a second STUN
//!   server answers on another port of that IP, which the line names as
//!   `"second_stun":"ip:port"` (peers learn it when they register, and
//!   tell from it whether their NAT maps each destination anew).
//! - Then one JSON line per event: `register` (`ident`, `observed`),
//!   `refused` (`ident`, `reason`), `unregister` (`ident`), `relay`
//!   (`channel`, `from`, `to`) when a relay starts and `relay_end`
//!   (`channel`, `between`, `reason`, `bytes`) when it ends.
//! - Runs until killed (or interrupted).
//!
//! `--cert FILE --key FILE` serve `tls://` and `quic://` listen URLs
//! (certificates from `weft cert`). `--ca FILE` requires peers to present
//! certificates it verifies, and `--bind-identity` registers an identity
//! only on a connection whose certificate names it (its DNS names, or its
//! CN when it has none), as `weft peer --bind-identity` does; others get
//! `refused` with reason `unbound`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use weft_link::tls::{ClientAuth, TlsIdentity, TlsServerConfig, TrustAnchors};
use weft_link::{Address, ListenOptions};
use weft_traversal::{Rendezvous, RendezvousEvent, RendezvousOptions};

use crate::Failure;

/// Arguments of `weft rendezvous`.
#[derive(Args, Debug)]
pub(crate) struct RendezvousArgs {
    /// Listen on this URL (repeatable; at least one; port 0 picks a free
    /// port). STUN is served on the first one's IP and port over UDP.
    #[arg(long, value_name = "URL", required = true)]
    listen: Vec<String>,
    /// A second IP of this host for RFC 5780 (CHANGE-REQUEST).
    #[arg(long, value_name = "IP")]
    alt_ip: Option<IpAddr>,
    /// Bytes relayed per second per pair of peers (default: 1 MiB/s).
    #[arg(long, value_name = "BYTES_PER_S")]
    relay_rate: Option<u64>,
    /// PEM certificate chain for tls:// and quic:// listen URLs (needs --key).
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// PEM roots that verify peers' certificates; TLS listeners then
    /// require one (needs --cert).
    #[arg(long, value_name = "FILE", requires = "cert")]
    ca: Option<PathBuf>,
    /// Register an identity only on a connection whose verified
    /// certificate names it (needs --ca).
    #[arg(long, requires = "ca")]
    bind_identity: bool,
}

fn print(line: serde_json::Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub(crate) async fn run(args: RendezvousArgs) -> Result<(), Failure> {
    let auth = match &args.ca {
        Some(ca) => ClientAuth::Required(
            TrustAnchors::from_pem_file(ca)
                .map_err(|e| Failure::Usage(format!("--ca {}: {e}", ca.display())))?,
        ),
        None => ClientAuth::None,
    };
    let tls = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let id = TlsIdentity::from_pem_files(cert, key)
                .map_err(|e| Failure::Usage(format!("--cert {}: {e}", cert.display())))?;
            Some(
                TlsServerConfig::new(id, auth)
                    .map_err(|e| Failure::Usage(format!("--cert: {e}")))?,
            )
        }
        _ => None,
    };
    let mut options = RendezvousOptions::default();
    for url in &args.listen {
        let address: Address = url
            .parse()
            .map_err(|e| Failure::Usage(format!("--listen {url}: {e}")))?;
        let listen = match &tls {
            Some(tls) if address.scheme().is_tls() => ListenOptions::tls(tls.clone()),
            _ => ListenOptions::default(),
        };
        options.listen.push((address, listen));
    }
    options.alternate_ip = args.alt_ip;
    options.config.bind_identity = args.bind_identity;
    if let Some(rate) = args.relay_rate {
        if rate == 0 {
            return Err(Failure::Usage("--relay-rate: must be above 0".into()));
        }
        options.config.relay_rate = rate;
    }
    let (rendezvous, mut events) = Rendezvous::start(options)
        .await
        .map_err(|e| Failure::Run(format!("--listen: {e}")))?;
    let listen: Vec<String> = rendezvous
        .listening()
        .iter()
        .map(ToString::to_string)
        .collect();
    let stun = rendezvous.stun_addr().map(|a| a.to_string());
    let mut ready = json!({"event": "ready", "listen": listen, "stun": stun});
    if let Some(second) = rendezvous.second_stun_addr() {
        ready["second_stun"] = json!(second.to_string());
    }
    print(ready);
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(event) = event else { break };
        print(match event {
            RendezvousEvent::Registered {
                identity, observed, ..
            } => json!({
                "event": "register",
                "ident": identity.as_str(),
                "observed": observed.map(|a| a.to_string()),
            }),
            RendezvousEvent::Refused {
                identity, reason, ..
            } => json!({
                "event": "refused",
                "ident": identity.as_ref().map(|i| i.as_str()),
                "reason": reason.as_str(),
            }),
            RendezvousEvent::Unregistered { identity, .. } => {
                json!({"event": "unregister", "ident": identity.as_str()})
            }
            RendezvousEvent::RelayStarted { channel, from, to } => json!({
                "event": "relay",
                "channel": channel,
                "from": from.as_str(),
                "to": to.as_str(),
            }),
            RendezvousEvent::RelayEnded {
                channel,
                between,
                reason,
                bytes,
            } => json!({
                "event": "relay_end",
                "channel": channel,
                "between": [between.0.as_str(), between.1.as_str()],
                "reason": reason.as_str(),
                "bytes": bytes,
            }),
            _ => continue,
        });
    }
    rendezvous.close().await;
    Ok(())
}
