//! Identities bound to certificates over tls:// on loopback
//! (`MessagingConfig::bind_identity`): a squatter without the right
//! certificate is refused and gets nothing, also of what was queued for the
//! identity before it connected; the certificate's holder gets it all.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;
use weft_link::tls::{ClientAuth, SelfSignedPki};
use weft_link::{Address, ConnectOptions, ListenOptions};
use weft_messaging::error::ProtocolError;
use weft_messaging::{Identity, Message, Messaging, MessagingConfig};

mod common;
use common::{WAIT, config, id, until};

/// The name on the client certificate of [`SelfSignedPki`].
const HOLDER: &str = "weft-client";

/// A hub that binds identities, listening on tls:// and asking clients for
/// certificates (optional at the TLS layer, so that a client without one
/// reaches the messaging layer and is refused there), with `queued`
/// messages waiting for each of `for_whom`; and what its protocol error
/// handler saw.
async fn hub(
    pki: &SelfSignedPki,
    for_whom: &[&str],
    queued: u32,
) -> (
    Messaging,
    Address,
    mpsc::UnboundedReceiver<(Option<Identity>, ProtocolError)>,
) {
    let mut c = config();
    c.bind_identity = true;
    let hub = Messaging::new(id("hub"), c).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    hub.on_protocol_error(move |who, e| {
        let _ = tx.send((who.cloned(), e.clone()));
    });
    let at = hub
        .link()
        .listen_with(
            "tls://127.0.0.1:0",
            ListenOptions::tls(
                pki.server_config(ClientAuth::Optional(pki.anchors()))
                    .unwrap(),
            ),
        )
        .await
        .unwrap()
        .address;
    for who in for_whom {
        for i in 0..queued {
            hub.send_message(
                &id(who),
                Message::new(Bytes::from(i.to_be_bytes().to_vec())),
            )
            .await
            .unwrap();
        }
    }
    (hub, at, rx)
}

/// A peer named `ident` connecting to `at`, presenting the client
/// certificate when `with_cert`.
async fn peer(pki: &SelfSignedPki, ident: &str, at: &Address, with_cert: bool) -> Messaging {
    let m = Messaging::new(id(ident), MessagingConfig::default())
        .await
        .unwrap();
    m.link()
        .connect_with(
            at,
            ConnectOptions::tls(pki.client_config(with_cert).unwrap()),
        )
        .unwrap();
    m
}

#[tokio::test]
async fn a_squatter_without_the_right_certificate_gets_nothing() {
    let pki = SelfSignedPki::generate(&["127.0.0.1"]).unwrap();
    let (hub, at, mut errors) = hub(&pki, &["dave", HOLDER], 100).await;

    // No certificate at all, claiming the holder's identity.
    let bare = peer(&pki, HOLDER, &at, false).await;
    let (who, error) = tokio::time::timeout(WAIT, errors.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(who, Some(id(HOLDER)));
    assert_eq!(error, ProtocolError::NoCertificate(id(HOLDER)));
    bare.close().await;
    assert_eq!(bare.stats().received, 0);

    // A verified certificate for another name, claiming `dave`.
    let squatter = peer(&pki, "dave", &at, true).await;
    let (who, error) = tokio::time::timeout(WAIT, errors.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(who, Some(id("dave")));
    assert_eq!(
        error,
        ProtocolError::IdentityNotInCertificate {
            claimed: id("dave"),
            names: vec![HOLDER.to_string()],
        }
    );
    squatter.close().await;
    assert_eq!(squatter.stats().received, 0);

    assert!(hub.stats().identities_unbound >= 2);
    assert_eq!(hub.queue_depth(&id("dave")), 100, "nothing left for dave");
    assert_eq!(hub.queue_depth(&id(HOLDER)), 100);
    assert_eq!(hub.stats().sent, 0);
    assert!(hub.connected().is_empty());
}

#[tokio::test]
async fn the_holder_of_the_certificate_gets_its_queued_messages() {
    let pki = SelfSignedPki::generate(&["127.0.0.1"]).unwrap();
    let (hub, at, _errors) = hub(&pki, &[HOLDER], 100).await;
    let holder = peer(&pki, HOLDER, &at, true).await;
    for i in 0..100u32 {
        let got = holder.recv(Some(WAIT)).await.unwrap();
        assert_eq!(got.from.as_str(), "hub");
        assert_eq!(&got.message.data[..], &i.to_be_bytes(), "in order");
    }
    assert!(hub.flush(WAIT).await, "all acknowledged");
    assert_eq!(hub.stats().identities_unbound, 0);

    // What the hub knows of it: the verified certificate's names and the
    // connection.
    let info = hub.peer_info(&id(HOLDER)).expect("connected");
    let cert = info.certificate.expect("verified certificate");
    assert_eq!(cert.subject.as_deref(), Some(HOLDER));
    assert_eq!(cert.dns_names, [HOLDER]);
    assert_eq!(info.transport, "tls");
    assert!(info.connection.peer.is_some());
    assert!(hub.peer_info(&id("nobody")).is_none());

    // And the holder knows the hub by the server certificate (no binding
    // on its side: the server certificate names the host, not `hub`).
    let server = holder.peer_info(&id("hub")).expect("connected");
    assert_eq!(
        server.certificate.expect("verified").subject.as_deref(),
        Some("weft server")
    );

    let gone = Arc::new(Mutex::new(false));
    let g = gone.clone();
    hub.on_disconnect(move |_| *g.lock().unwrap() = true);
    holder.close().await;
    until("the holder gone", || *gone.lock().unwrap()).await;
    assert!(hub.peer_info(&id(HOLDER)).is_none());
}

#[tokio::test]
async fn plain_tcp_is_refused_when_binding() {
    let mut c = config();
    c.bind_identity = true;
    let hub = Messaging::new(id("hub"), c).await.unwrap();
    hub.send_message(&id("carol"), Message::new("secret"))
        .await
        .unwrap();
    let at = hub
        .link()
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .address;
    let carol = Messaging::new(id("carol"), MessagingConfig::default())
        .await
        .unwrap();
    carol.link().connect(&at).unwrap();
    until("carol refused", || hub.stats().identities_unbound >= 1).await;
    carol.close().await;
    assert_eq!(carol.stats().received, 0);
    assert_eq!(hub.queue_depth(&id("carol")), 1);
}
