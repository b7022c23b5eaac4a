//! Several servers queried in parallel, and whether they agree on the
//! mapped address.
//!
//! UDP servers of one address family share one socket, so that their
//! answers describe the same mapping and can be compared port and all.
//! TCP and TLS servers each get their own connection (and so their own
//! mapping), so only their mapped IP is compared.

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::task::JoinSet;

use crate::client::{binding_tcp, binding_tls};
use crate::transaction::canonical;
use crate::url::Transport;
use crate::{Binding, ClientConfig, ServerUrl, StunClient, StunError};

/// One server's answer.
#[derive(Debug)]
pub struct ServerResult {
    /// The server as given.
    pub url: ServerUrl,
    /// Its resolved address, unless resolution failed.
    pub address: Option<SocketAddr>,
    /// The Binding, or why there is none.
    pub result: Result<Binding, StunError>,
}

/// The answers of every server and their agreement.
#[derive(Debug)]
pub struct QueryReport {
    /// One entry per server, in the order given.
    pub results: Vec<ServerResult>,
    /// The local address behind [`mapped`](Self::mapped).
    pub local: Option<SocketAddr>,
    /// The mapped address most UDP servers of the first answering family
    /// reported (most of all servers when none of them is UDP).
    pub mapped: Option<SocketAddr>,
    /// Whether all answers agree: within each address family, every UDP
    /// server reported the same mapped address and every server the same
    /// mapped IP. True when at most one server answered.
    pub agree: bool,
}

impl QueryReport {
    /// How many servers answered.
    pub fn answered(&self) -> usize {
        self.results.iter().filter(|r| r.result.is_ok()).count()
    }

    /// Whether one answer agrees with the consensus of its family: the same
    /// mapped address for UDP, the same mapped IP for TCP and TLS. `false`
    /// for a failed query.
    pub fn agrees(&self, result: &ServerResult) -> bool {
        let Ok(b) = &result.result else {
            return false;
        };
        match consensus(&self.results, b.mapped.is_ipv4()) {
            Some(c) => {
                if b.transport == Transport::Udp {
                    canonical(b.mapped) == canonical(c)
                } else {
                    canonical(b.mapped).ip() == canonical(c).ip()
                }
            }
            None => true,
        }
    }
}

/// The most common mapped address among the answers of one family: UDP
/// answers first, else all. Ties go to the earliest.
fn consensus(results: &[ServerResult], ipv4: bool) -> Option<SocketAddr> {
    let answers: Vec<&Binding> = results
        .iter()
        .filter_map(|r| r.result.as_ref().ok())
        .filter(|b| canonical(b.mapped).is_ipv4() == ipv4)
        .collect();
    let udp: Vec<&Binding> = answers
        .iter()
        .copied()
        .filter(|b| b.transport == Transport::Udp)
        .collect();
    let pool = if udp.is_empty() { answers } else { udp };
    let mut counts: HashMap<SocketAddr, (usize, usize)> = HashMap::new();
    for (i, b) in pool.iter().enumerate() {
        let e = counts.entry(canonical(b.mapped)).or_insert((0, i));
        e.0 += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.1.1.cmp(&a.1.1)))
        .map(|(addr, _)| addr)
}

/// Queries every server at once: one Binding request each, UDP servers of
/// one family sharing a socket (bound per [`ClientConfig::local_for`]).
/// Never fails as a whole; each server's error is in its
/// [`ServerResult`]. Cancel-safe: dropping the future abandons every
/// query (their tasks are aborted).
pub async fn query_servers(servers: &[ServerUrl], config: &ClientConfig) -> QueryReport {
    let prefer_ipv4 = config.local.map(|l| l.is_ipv4());
    // Resolve every name at once.
    let mut resolving = JoinSet::new();
    for (i, url) in servers.iter().enumerate() {
        let url = url.clone();
        let timeout = config.dns_timeout;
        resolving.spawn(async move { (i, url.resolve(timeout, prefer_ipv4).await) });
    }
    let mut addresses: Vec<Option<Result<SocketAddr, StunError>>> =
        servers.iter().map(|_| None).collect();
    while let Some(done) = resolving.join_next().await {
        if let Ok((i, r)) = done {
            addresses[i] = Some(r);
        }
    }

    // One UDP client per family in use.
    let mut clients: HashMap<bool, Result<StunClient, String>> = HashMap::new();
    let mut queries = JoinSet::new();
    let mut results: Vec<Option<Result<Binding, StunError>>> =
        servers.iter().map(|_| None).collect();
    for (i, url) in servers.iter().enumerate() {
        let address = match &addresses[i] {
            Some(Ok(a)) => *a,
            _ => continue,
        };
        match url.transport {
            Transport::Udp => {
                let family = address.is_ipv4();
                if let std::collections::hash_map::Entry::Vacant(slot) = clients.entry(family) {
                    let client = StunClient::bind(config.local_for(address), config)
                        .await
                        .map_err(|e| e.to_string());
                    slot.insert(client);
                }
                match &clients[&family] {
                    Ok(client) => {
                        let client = client.clone();
                        queries.spawn(async move { (i, client.binding(address).await) });
                    }
                    Err(e) => {
                        results[i] = Some(Err(StunError::io(
                            "binding a UDP socket",
                            std::io::Error::other(e.clone()),
                        )));
                    }
                }
            }
            Transport::Tcp => {
                let config = config.clone();
                queries.spawn(async move { (i, binding_tcp(address, &config).await) });
            }
            Transport::Tls => {
                let config = config.clone();
                let name = url.host.clone();
                queries.spawn(async move { (i, binding_tls(address, &name, &config).await) });
            }
        }
    }
    drop(clients);
    while let Some(done) = queries.join_next().await {
        if let Ok((i, r)) = done {
            results[i] = Some(r);
        }
    }

    let mut out = Vec::with_capacity(servers.len());
    for ((url, address), result) in servers.iter().zip(addresses).zip(results) {
        let (address, result) = match address {
            Some(Ok(a)) => (Some(a), result.unwrap_or(Err(StunError::Closed))),
            Some(Err(e)) => (None, Err(e)),
            None => (None, Err(StunError::Closed)),
        };
        out.push(ServerResult {
            url: url.clone(),
            address,
            result,
        });
    }

    let first = out.iter().find_map(|r| r.result.as_ref().ok());
    let (local, mapped) = match first {
        Some(b) => {
            let ipv4 = canonical(b.mapped).is_ipv4();
            let mapped = consensus(&out, ipv4);
            // The local address of an answer that reported the consensus.
            let local = out
                .iter()
                .filter_map(|r| r.result.as_ref().ok())
                .find(|b| Some(canonical(b.mapped)) == mapped)
                .map(|b| b.local);
            (local, mapped)
        }
        None => (None, None),
    };
    let mut report = QueryReport {
        results: out,
        local,
        mapped,
        agree: true,
    };
    report.agree = report
        .results
        .iter()
        .filter(|r| r.result.is_ok())
        .all(|r| report.agrees(r));
    report
}
