//! Identities bound to certificates
//! ([`MessagingConfig::bind_identity`]), on chosen instants: a peer whose
//! certificate does not name the identity it claims is refused before
//! anything queued for that identity leaves.

use std::sync::Arc;

use super::*;
use crate::certificate::CertificateNames;
use crate::config::DuplicateIdentity;

fn binding_core(now: Instant) -> Core<FakeTx> {
    let config = MessagingConfig {
        bind_identity: true,
        ..MessagingConfig::default()
    };
    Core::new(id("me"), config, now)
}

fn names(subject: &str, dns: &[&str]) -> Option<Arc<CertificateNames>> {
    Some(Arc::new(CertificateNames {
        subject: Some(subject.into()),
        dns_names: dns.iter().map(|s| s.to_string()).collect(),
    }))
}

/// Connects `conn` with `certificate` as a weft peer claiming `ident`.
fn claim(
    core: &mut Core<FakeTx>,
    conn: u64,
    certificate: Option<Arc<CertificateNames>>,
    ident: &str,
    now: Instant,
) -> FakeTx {
    let tx = FakeTx::default();
    let facts = ConnFacts {
        certificate,
        ..tx.facts()
    };
    core.handle_connected_with(ConnectionId(conn), tx.clone(), facts, now);
    core.handle_packet(ConnectionId(conn), packet(&WEFT), now);
    core.handle_packet(ConnectionId(conn), packet(&Frame::Ident(id(ident))), now);
    core.handle_batch_end(now);
    tx
}

fn events(core: &mut Core<FakeTx>) -> Vec<CoreEvent> {
    std::iter::from_fn(|| core.poll_event()).collect()
}

#[test]
fn a_squatter_without_a_certificate_gets_nothing_queued_for_the_identity() {
    let t0 = Instant::now();
    let mut core = binding_core(t0);
    for n in 0..100u8 {
        core.send_message(&id("dave"), Message::new(vec![n]), t0)
            .unwrap();
    }
    let tx = claim(&mut core, 1, None, "dave", t0);
    assert!(tx.closed(&mut core));
    assert!(tx.messages().is_empty());
    assert!(core.connected().is_empty());
    assert_eq!(core.queue_depth(&id("dave")), 100);
    assert_eq!(core.counters.identities_unbound, 1);
    assert_eq!(core.counters.protocol_errors, 1);
    assert!(
        matches!(
            &events(&mut core)[..],
            [CoreEvent::ProtocolError {
                ident: Some(who),
                error: ProtocolError::NoCertificate(claimed),
            }] if who.as_str() == "dave" && claimed.as_str() == "dave"
        ),
        "reported with the claimed identity"
    );
}

#[test]
fn a_certificate_for_another_name_is_refused_and_the_holder_gets_the_queue() {
    let t0 = Instant::now();
    let mut core = binding_core(t0);
    core.send_message(&id("carol"), Message::new("for carol"), t0)
        .unwrap();
    let squatter = claim(&mut core, 1, names("mallory", &["mallory"]), "carol", t0);
    assert!(squatter.closed(&mut core));
    assert!(squatter.messages().is_empty());
    match &events(&mut core)[..] {
        [
            CoreEvent::ProtocolError {
                ident: Some(who),
                error: ProtocolError::IdentityNotInCertificate { claimed, names },
            },
        ] => {
            assert_eq!(who.as_str(), "carol");
            assert_eq!(claimed.as_str(), "carol");
            assert_eq!(names, &["mallory".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    let carol = claim(&mut core, 2, names("Carol", &["carol"]), "carol", t0);
    assert!(!carol.closed(&mut core));
    assert_eq!(carol.messages(), [Bytes::from_static(b"for carol")]);
    assert_eq!(core.connected(), [id("carol")]);
}

#[test]
fn a_squatter_does_not_displace_the_holder_even_when_new_connections_replace_old() {
    let t0 = Instant::now();
    let config = MessagingConfig {
        bind_identity: true,
        duplicate_identity: DuplicateIdentity::ReplaceOld,
        ..MessagingConfig::default()
    };
    let mut core = Core::new(id("me"), config, t0);
    let carol = claim(&mut core, 1, names("carol", &[]), "carol", t0);
    let squatter = claim(&mut core, 2, names("x", &["mallory"]), "carol", t0);
    assert!(squatter.closed(&mut core));
    assert!(!carol.closed(&mut core));
    core.send_message(&id("carol"), Message::new("hi"), t0)
        .unwrap();
    assert_eq!(carol.messages(), [Bytes::from_static(b"hi")]);
    assert!(squatter.messages().is_empty());
}

#[test]
fn the_common_name_binds_only_when_there_are_no_dns_names() {
    let t0 = Instant::now();
    let mut core = binding_core(t0);
    let by_cn = claim(&mut core, 1, names("carol", &[]), "carol", t0);
    assert!(!by_cn.closed(&mut core));
    let cn_beside_dns = claim(&mut core, 2, names("dave", &["dave.example"]), "dave", t0);
    assert!(cn_beside_dns.closed(&mut core));
    let by_dns = claim(
        &mut core,
        3,
        names("dave", &["dave.example"]),
        "dave.example",
        t0,
    );
    assert!(!by_dns.closed(&mut core));
    assert_eq!(core.counters.identities_unbound, 1);
}

#[test]
fn without_binding_a_certificate_changes_nothing() {
    let t0 = Instant::now();
    let mut core = Core::new(id("me"), MessagingConfig::default(), t0);
    let plain = claim(&mut core, 1, None, "carol", t0);
    let other = claim(&mut core, 2, names("x", &["mallory"]), "dave", t0);
    assert!(!plain.closed(&mut core));
    assert!(!other.closed(&mut core));
    // As before: a live identity is not taken over by a second claim.
    let second = claim(&mut core, 3, None, "carol", t0);
    assert!(second.closed(&mut core));
    assert_eq!(core.counters.identities_unbound, 0);
}

/// Connects `conn` as one our listener accepted, with `certificate`.
fn accept(
    core: &mut Core<FakeTx>,
    conn: u64,
    certificate: Option<Arc<CertificateNames>>,
) -> FakeTx {
    let tx = FakeTx::default();
    let facts = ConnFacts {
        certificate,
        inbound: true,
        ..tx.facts()
    };
    core.handle_connected_with(ConnectionId(conn), tx.clone(), facts, Instant::now());
    tx
}

fn identifies(core: &mut Core<FakeTx>, conn: u64, ident: &str, now: Instant) {
    core.handle_packet(ConnectionId(conn), packet(&WEFT), now);
    core.handle_packet(ConnectionId(conn), packet(&Frame::Ident(id(ident))), now);
    core.handle_batch_end(now);
}

#[test]
fn an_accepted_connection_hears_who_we_are_only_once_its_identity_is_proved() {
    let t0 = Instant::now();
    let mut core = binding_core(t0);
    let impostor = accept(&mut core, 1, names("x", &["someone-else"]));
    assert!(impostor.take().is_empty(), "nothing before its claim");
    identifies(&mut core, 1, "carol", t0);
    assert!(impostor.closed(&mut core));
    assert!(
        impostor.take().is_empty(),
        "an unproved claim hears nothing"
    );

    let carol = accept(&mut core, 2, names("carol", &[]));
    assert!(carol.take().is_empty());
    identifies(&mut core, 2, "carol", t0);
    let frames = carol.take();
    assert!(
        frames.contains(&Frame::Ident(id("me"))),
        "a proved claim is answered: {frames:?}"
    );
    assert!(!carol.closed(&mut core));
    assert_eq!(core.connected(), [id("carol")]);
}

#[test]
fn dialled_connections_and_connections_without_binding_introduce_themselves_at_once() {
    let t0 = Instant::now();
    let mut core = binding_core(t0);
    let dialled = FakeTx::default();
    core.handle_connected_with(ConnectionId(1), dialled.clone(), dialled.facts(), t0);
    assert!(dialled.take().contains(&Frame::Ident(id("me"))));

    let mut plain = Core::new(id("me"), MessagingConfig::default(), t0);
    let accepted = accept(&mut plain, 1, None);
    assert!(accepted.take().contains(&Frame::Ident(id("me"))));
}
