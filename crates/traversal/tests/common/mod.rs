//! Helpers shared by the loopback path tests: a rendezvous, a peer, the
//! next path event, and 2,000 numbered messages each way.
#![allow(dead_code)] // each test file uses its own subset

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::timeout;
use weft_link::Address;
use weft_messaging::{Identity, Message, Messaging};
use weft_traversal::{
    Path, Rendezvous, RendezvousOptions, Traversal, TraversalConfig, TraversalEvent,
    TraversalEvents,
};

/// The longest any one wait may take.
pub(crate) const WAIT: Duration = Duration::from_secs(20);
/// Messages sent each way.
pub(crate) const COUNT: usize = 2_000;
pub(crate) const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A rendezvous on loopback, and the address peers register at.
pub(crate) async fn rendezvous() -> (Rendezvous, Address) {
    let (rv, _) = Rendezvous::start(RendezvousOptions::listen(
        "tcp://127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let at = rv.listening()[0].clone();
    (rv, at)
}

/// A peer named `name` registered at `at` with `config`.
pub(crate) async fn peer_with(
    name: &str,
    at: &Address,
    config: TraversalConfig,
) -> (Messaging, Traversal, TraversalEvents) {
    let messaging = Messaging::new(Identity::new(name).unwrap(), Default::default())
        .await
        .unwrap();
    let (traversal, events) = Traversal::start(&messaging, at, Default::default(), config).unwrap();
    (messaging, traversal, events)
}

/// The next path event.
pub(crate) async fn next_path(events: &mut TraversalEvents) -> Path {
    timeout(WAIT, async {
        loop {
            match events.recv().await.expect("traversal stopped") {
                TraversalEvent::Path(p) => return p,
                _ => continue,
            }
        }
    })
    .await
    .expect("a path in time")
}

/// Sends [`COUNT`] numbered messages from `from` to `to`, and from `to` to
/// `from`, each way in a task of its own.
pub(crate) fn send_both_ways(a: &Messaging, b: &Messaging) -> Vec<JoinHandle<()>> {
    let mut senders = Vec::new();
    for (from, to) in [(a, b), (b, a)] {
        let (from, to) = (from.clone(), to.identity().clone());
        senders.push(tokio::spawn(async move {
            for i in 0..COUNT {
                let text = format!("{}-{i}", from.identity());
                from.send_message(&to, Message::new(text)).await.unwrap();
            }
        }));
    }
    senders
}

/// Two peers exchanging messages: see [`exchange`].
pub(crate) struct Exchange {
    tasks: Vec<JoinHandle<()>>,
}

/// From the first moment, before any path exists: [`COUNT`] numbered
/// messages each way, each peer reaching the other, and a task per peer
/// taking the other's messages ([`receive_all`]).
pub(crate) fn exchange(a: (&Messaging, &Traversal), b: (&Messaging, &Traversal)) -> Exchange {
    let mut tasks = send_both_ways(a.0, b.0);
    a.1.reach(b.0.identity()).unwrap();
    b.1.reach(a.0.identity()).unwrap();
    for (at, from) in [(a.0, b.0), (b.0, a.0)] {
        tasks.push(tokio::spawn(receive_all(
            at.clone(),
            from.identity().clone(),
        )));
    }
    Exchange { tasks }
}

impl Exchange {
    /// Waits for every message to be sent and taken, each task within
    /// [`WAIT`].
    pub(crate) async fn finish(self) {
        for task in self.tasks {
            timeout(WAIT, task).await.unwrap().unwrap();
        }
    }
}

/// Takes the [`COUNT`] messages `from` sent, once each and in order.
pub(crate) async fn receive_all(at: Messaging, from: Identity) {
    for i in 0..COUNT {
        let got = at.recv(Some(WAIT)).await.expect("a message in time");
        assert_eq!(got.from, from);
        assert_eq!(
            std::str::from_utf8(&got.message.data).unwrap(),
            format!("{from}-{i}"),
            "message {i} at {}",
            at.identity()
        );
    }
    // No second copy of anything.
    assert!(at.recv(Some(Duration::from_millis(300))).await.is_err());
}

/// A certificate authority, and for each of `names` a certificate naming
/// it (a DNS name, for TLS as server and as client) with its key.
pub(crate) fn certificates(
    names: &[&str],
) -> (
    weft_link::tls::TrustAnchors,
    Vec<weft_link::tls::TlsIdentity>,
) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let identities = names
        .iter()
        .map(|name| {
            let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
            params.distinguished_name.push(DnType::CommonName, *name);
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            weft_link::tls::TlsIdentity::from_pem(
                cert.pem().as_bytes(),
                key.serialize_pem().as_bytes(),
            )
            .unwrap()
        })
        .collect();
    let anchors = weft_link::tls::TrustAnchors::from_pem(ca.pem().as_bytes()).unwrap();
    (anchors, identities)
}
