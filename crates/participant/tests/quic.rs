//! Participants whose streams are QUIC with mutual TLS, in one process on
//! loopback: beacons to 127.255.255.255 on a port of each test's own.

mod common;

use std::time::Duration;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use tokio::time::{Instant, sleep};
use weft_link::address::Scheme;
use weft_link::tls::{TlsIdentity, TrustAnchors};
use weft_participant::{
    Participant, ParticipantConfig, ParticipantError, ParticipantId, StreamTls, StreamTransport,
    TopicFilter,
};

use common::{eventually, free_port};

/// A throw-away CA that issues certificates as `weft cert issue` does:
/// the name as DNS name and CN, good for servers and clients alike.
struct Ca {
    pem: String,
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "weft test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            cert,
            key,
        }
    }

    fn anchors(&self) -> TrustAnchors {
        TrustAnchors::from_pem(self.pem.as_bytes()).unwrap()
    }

    fn issue(&self, name: &str) -> TlsIdentity {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let chain = format!("{}{}", cert.pem(), self.pem);
        TlsIdentity::from_pem(chain.as_bytes(), key.serialize_pem().as_bytes()).unwrap()
    }
}

fn quic(port: u16, name: &str, ca: &Ca) -> ParticipantConfig {
    let mut c = ParticipantConfig::loopback(port).with_identity(name);
    c.transport = StreamTransport::Quic;
    c.tls = Some(StreamTls::new(ca.issue(name), ca.anchors()));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_quic_participants_form_a_full_mesh_and_publish() {
    let port = free_port();
    let ca = Ca::new();
    let mut ps = Vec::new();
    for name in ["q0", "q1", "q2"] {
        ps.push(Participant::start(quic(port, name, &ca)).await.unwrap());
    }
    eventually(Duration::from_secs(5), "a full mesh", || {
        ps.iter().all(|p| p.connected().len() == 2)
    })
    .await;
    // One stream per pair, each QUIC, each end showing the other's
    // verified certificate (mutual TLS).
    let mut ends = 0;
    for p in &ps {
        for c in p.messaging().link().connections() {
            let info = c.info();
            let peer = info.peer.as_ref().expect("a QUIC peer has an address");
            assert_eq!(peer.scheme(), Scheme::Quic, "{peer}");
            assert!(info.peer_certificates.is_some(), "{peer}: no certificate");
            ends += 1;
        }
    }
    assert_eq!(ends, 6, "one stream per pair");

    let subs: Vec<_> = ps[1..]
        .iter()
        .map(|p| p.subscriber(TopicFilter::Prefix("news.".into())))
        .collect();
    let publisher = ps[0].publisher("news.quic").unwrap();
    eventually(Duration::from_secs(5), "both subscribers heard of", || {
        publisher.subscribers().len() == 2
    })
    .await;
    assert_eq!(publisher.publish("over quic").unwrap(), 2);
    for sub in &subs {
        let p = sub.recv(Some(Duration::from_secs(5))).await.unwrap();
        assert_eq!(&*p.topic, "news.quic");
        assert_eq!(p.from.as_str(), "q0");
        assert_eq!(&p.data[..], b"over quic");
    }
    for p in &ps {
        p.close().await;
    }
}

#[tokio::test]
async fn quic_without_tls_does_not_start() {
    let mut c = ParticipantConfig::loopback(free_port()).with_identity("bare");
    c.transport = StreamTransport::Quic;
    let e = Participant::start(c).await.unwrap_err();
    assert!(matches!(e, ParticipantError::QuicWithoutTls), "{e}");
}

/// `member` (the group's certificate for its identity) and `other` see
/// each other in beacons but never get a stream: whichever of them dials
/// (the lower id), the handshake or the identity check fails.
async fn never_meet(member: ParticipantConfig, other: ParticipantConfig) {
    let a = Participant::start(member).await.unwrap();
    let b = Participant::start(other).await.unwrap();
    eventually(Duration::from_secs(5), "each discovers the other", || {
        a.peers().len() == 1 && b.peers().len() == 1
    })
    .await;
    // Dialling starts on discovery; on loopback a handshake takes
    // milliseconds, and a refused one is retried after 1 s.
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        assert!(a.connected().is_empty() && b.connected().is_empty());
        sleep(Duration::from_millis(20)).await;
    }
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_gets_no_stream() {
    let port = free_port();
    let (ca, stranger_ca) = (Ca::new(), Ca::new());
    let mut stranger = quic(port, "stranger", &ca);
    // Trusts the group's CA, but its own certificate is not the group's.
    stranger.tls = Some(StreamTls::new(stranger_ca.issue("stranger"), ca.anchors()));
    never_meet(quic(port, "member", &ca), stranger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_identity_gets_no_stream() {
    // Both ways: the lower id dials, so first the member checks the
    // impostor's certificate as a server's, then the impostor's stream
    // claims an identity its certificate does not name.
    for impostor_dials in [false, true] {
        let port = free_port();
        let ca = Ca::new();
        let (low, high) = (ParticipantId([0; 16]), ParticipantId([0xff; 16]));
        let mut member = quic(port, "member", &ca);
        let mut impostor = quic(port, "impostor", &ca);
        // The group's certificate, but for a name it does not announce.
        impostor.tls = Some(StreamTls::new(ca.issue("someone-else"), ca.anchors()));
        (member.id, impostor.id) = if impostor_dials {
            (Some(high), Some(low))
        } else {
            (Some(low), Some(high))
        };
        never_meet(member, impostor).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_naming_the_group_with_a_server_name() {
    let port = free_port();
    let ca = Ca::new();
    let group = |name: &str| {
        let mut c = quic(port, name, &ca);
        c.tls =
            Some(StreamTls::new(ca.issue("the-group"), ca.anchors()).with_server_name("the-group"));
        c
    };
    let a = Participant::start(group("g0")).await.unwrap();
    let b = Participant::start(group("g1")).await.unwrap();
    eventually(Duration::from_secs(5), "a stream", || {
        a.connected().len() == 1 && b.connected().len() == 1
    })
    .await;
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_group_key_the_handshake_runs_on_quic_streams() {
    let port = free_port();
    let ca = Ca::new();
    let member = |name: &str| {
        let mut c = quic(port, name, &ca);
        c.group_key = Some(weft_participant::GroupKey::new([1; 32]).unwrap());
        c.handshake_timeout = Duration::from_millis(300);
        c
    };
    let a = Participant::start(member("a")).await.unwrap();
    let b = Participant::start(member("b")).await.unwrap();
    // The group's certificate but not its key; the lowest id, so that it
    // dials the members it hears of (its beacons carry no tag, so the
    // members never dial it).
    let mut keyless = quic(port, "keyless", &ca);
    keyless.id = Some(ParticipantId([0; 16]));
    let keyless = Participant::start(keyless).await.unwrap();

    let news = b.subscriber(TopicFilter::Prefix("news".into()));
    let publisher = a.publisher("news.today").unwrap();
    assert!(publisher.wait_for_subscribers(Duration::from_secs(5)).await);
    publisher.publish("hello").unwrap();
    let got = news.recv(Some(Duration::from_secs(5))).await.unwrap();
    assert_eq!(&got.data[..], b"hello");

    eventually(Duration::from_secs(5), "the keyless stream refused", || {
        a.stats().streams_refused + b.stats().streams_refused >= 1
    })
    .await;
    for p in [&a, &b] {
        assert_eq!(p.connected().len(), 1, "{:?}", p.connected());
        for c in p.messaging().link().connections() {
            let peer = c.info().peer.clone().unwrap();
            assert_eq!(peer.scheme(), Scheme::Quic, "{peer}");
        }
    }
    for p in [a, b, keyless] {
        p.close().await;
    }
}
