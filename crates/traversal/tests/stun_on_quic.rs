//! A rendezvous whose first listen address is quic:// answers STUN on
//! that same UDP port (RFC 7983 demultiplexing in weft-link), beside the
//! QUIC connections it accepts there.

use std::time::Duration;

use tokio::time::timeout;
use weft_link::tls::{ClientAuth, SelfSignedPki};
use weft_link::{ConnectOptions, Link, LinkConfig, LinkEvent, ListenOptions};
use weft_stun::{ClientConfig, StunClient};
use weft_traversal::{Rendezvous, RendezvousOptions};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_quic_rendezvous_answers_stun_on_its_quic_port() {
    let pki = SelfSignedPki::generate(&["localhost", "127.0.0.1"]).unwrap();
    let mut options = RendezvousOptions::default();
    options.listen = vec![(
        "quic://127.0.0.1:0".parse().unwrap(),
        ListenOptions::tls(pki.server_config(ClientAuth::None).unwrap()),
    )];
    let (rendezvous, _events) = Rendezvous::start(options).await.unwrap();
    let quic_port = rendezvous.listening()[0].socket_addr().unwrap();
    assert_eq!(
        rendezvous.stun_addr(),
        Some(quic_port),
        "STUN on the QUIC port"
    );

    // A QUIC connection to the rendezvous is up while STUN is answered.
    let (link, mut events) = Link::new(LinkConfig::default());
    link.connect_with(
        &rendezvous.listening()[0],
        ConnectOptions::tls(pki.client_config(false).unwrap()),
    )
    .unwrap();
    loop {
        match timeout(WAIT, events.recv()).await.unwrap().unwrap() {
            LinkEvent::Connected(_) => break,
            LinkEvent::ConnectFailed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }

    let client = StunClient::bind("127.0.0.1:0".parse().unwrap(), &ClientConfig::default())
        .await
        .unwrap();
    for _ in 0..3 {
        let binding = timeout(WAIT, client.binding(quic_port))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(binding.mapped, client.local_addr());
        assert_eq!(binding.server, quic_port);
    }
    assert_eq!(link.connections().len(), 1, "the QUIC connection goes on");
    rendezvous.close().await;
}
