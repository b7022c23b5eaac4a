//! Helpers shared by the integration tests. Loopback addresses only.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use weft_stun::{ClientConfig, StunServer, StunServerConfig};

use weft_stun::client::tls_config_from_pem;

use weft_stun::server::ServerTls;

use weft_stun::transaction::RetransmitConfig;

/// The bound on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(20);

/// Awaits `f` for at most [`WAIT`].
pub async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .expect("the operation finished in time")
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A client configuration that gives up quickly: requests at 0, 50 and
/// 150 ms, failure at 350 ms.
pub fn quick_client() -> ClientConfig {
    ClientConfig {
        retransmit: RetransmitConfig {
            rto: Duration::from_millis(50),
            rc: 3,
            rm: 4,
        },
        stream_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    }
}

/// A server on `listen`, with RFC 5780 when `alternate` is given.
pub async fn server(listen: &str, alternate: Option<&str>) -> StunServer {
    StunServer::bind(StunServerConfig {
        listen: addr(listen),
        alternate: alternate.map(addr),
        ..StunServerConfig::default()
    })
    .await
    .expect("server binds")
}

/// A self-signed certificate for `localhost` and 127.0.0.1: the server's
/// TLS configuration on `listen`, and a client configuration trusting it.
pub fn tls_pair(listen: &str) -> (ServerTls, Arc<rustls::ClientConfig>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = certified.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(rustls_pki_types::PrivatePkcs8KeyDer::from(
        certified.key_pair.serialize_der(),
    ));
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let client = tls_config_from_pem(certified.cert.pem().as_bytes()).unwrap();
    (
        ServerTls {
            listen: addr(listen),
            config: Arc::new(server),
        },
        client,
    )
}
