//! `Link::adopt_tls`: TLS over any byte stream (here an in-memory pipe),
//! the connection's id known before the handshake, the other end's
//! certificate in `ConnectionInfo`, and a failed handshake counted with
//! no connection.

use std::time::Duration;

use bytes::Bytes;
use weft_link::tls::{ClientAuth, SelfSignedPki, TlsClientConfig, TlsIdentity};
use weft_link::{AdoptTls, Link, LinkError, LinkEvent};

mod common;
use common::{config, connected, read_exactly};

const PIPE: usize = 64 * 1024;

/// A CA whose server certificate names `peer`.
fn pki() -> SelfSignedPki {
    SelfSignedPki::generate(&["peer"]).unwrap()
}

#[tokio::test]
async fn mutual_tls_over_a_pipe_carries_both_certificates() {
    let pki = pki();
    let (ours, theirs) = tokio::io::duplex(PIPE);
    let (client, mut client_events) = Link::new(config());
    let (server, mut server_events) = Link::new(config());
    let connect = pki.client_config(true).unwrap().with_server_name("peer");
    let accept = pki
        .server_config(ClientAuth::Required(pki.anchors()))
        .unwrap();
    let client_id = client
        .adopt_tls(ours, AdoptTls::Client(connect), None, None)
        .unwrap();
    let server_id = server
        .adopt_tls(theirs, AdoptTls::Server(accept), None, None)
        .unwrap();
    // Neither connection exists before its handshake: only the ids do.
    let c = connected(&mut client_events).await;
    let s = connected(&mut server_events).await;
    assert_eq!((c.id(), s.id()), (client_id, server_id));
    let names =
        |conn: &weft_link::Connection| conn.info().peer_certificates.clone().expect("a chain");
    assert_eq!(names(&c)[0].as_ref(), der(&pki.server_cert_pem));
    assert_eq!(names(&s)[0].as_ref(), der(&pki.client_cert_pem));
    c.send(Bytes::from_static(b"over tls")).await.unwrap();
    assert_eq!(
        read_exactly(&mut server_events, s.id(), 8).await,
        b"over tls"
    );
    s.send(Bytes::from_static(b"back")).await.unwrap();
    assert_eq!(read_exactly(&mut client_events, c.id(), 4).await, b"back");
    assert_eq!(server.stats().handshake_failures, 0);
}

#[tokio::test]
async fn a_client_certificate_of_another_ca_is_refused_and_counted() {
    let (pki, other) = (pki(), pki());
    let (ours, theirs) = tokio::io::duplex(PIPE);
    let (client, _client_events) = Link::new(config());
    let (server, mut server_events) = Link::new(config());
    let wrong = TlsIdentity::from_pem(
        other.client_cert_pem.as_bytes(),
        other.client_key_pem.as_bytes(),
    )
    .unwrap();
    let connect = TlsClientConfig::new(pki.anchors(), Some(wrong))
        .unwrap()
        .with_server_name("peer");
    let accept = pki
        .server_config(ClientAuth::Required(pki.anchors()))
        .unwrap();
    client
        .adopt_tls(ours, AdoptTls::Client(connect), None, None)
        .unwrap();
    server
        .adopt_tls(theirs, AdoptTls::Server(accept), None, None)
        .unwrap();
    // The server's task ends without a connection: its count moves, and
    // no event comes.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while server.stats().handshake_failures == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no failure counted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(server.connections().is_empty());
    assert!(server_events.try_recv().is_none());
}

#[tokio::test]
async fn a_client_without_a_server_name_is_a_typed_error_at_once() {
    let pki = pki();
    let (ours, _theirs) = tokio::io::duplex(PIPE);
    let (client, _events) = Link::new(config());
    let err = client
        .adopt_tls(
            ours,
            AdoptTls::Client(pki.client_config(false).unwrap()),
            None,
            None,
        )
        .unwrap_err();
    assert!(matches!(err, LinkError::TlsMaterial(_)), "{err}");
}

#[tokio::test]
async fn a_closing_link_stops_a_handshake_that_never_ends() {
    let pki = pki();
    // Nobody at the other end of the pipe: the handshake waits.
    let (theirs, _silent) = tokio::io::duplex(PIPE);
    let mut patient = config();
    patient.tls_handshake_timeout = Duration::from_secs(600);
    let (server, mut events) = Link::new(patient);
    server
        .adopt_tls(
            theirs,
            AdoptTls::Server(pki.server_config(ClientAuth::None).unwrap()),
            None,
            None,
        )
        .unwrap();
    // close() waits for the link's tasks: the handshake's ends at once.
    tokio::time::timeout(common::WAIT, server.close())
        .await
        .expect("the handshake stopped when the link closed");
    // The link ends: no connection was ever made.
    loop {
        match tokio::time::timeout(common::WAIT, events.recv()).await {
            Ok(None) => break,
            Ok(Some(LinkEvent::Connected(c))) => panic!("{c:?} connected"),
            Ok(Some(_)) => {}
            Err(_) => panic!("the link did not end"),
        }
    }
}

fn der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}
