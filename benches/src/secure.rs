//! Where a measurement listens and how it connects: plain tcp://, or
//! tls:// or quic:// with mutual TLS from one self-signed PKI, so that rows
//! comparing transports differ in the transport alone.

use std::sync::Arc;

use weft_link::tls::{ClientAuth, SelfSignedPki};
use weft_link::{ConnectOptions, ListenOptions};

use crate::harness::{LOOPBACK, ctx};

/// The DNS name of the listener's certificate (and the name clients check).
pub(crate) const SERVER_NAME: &str = "bench-recv";

/// A transport with TLS: tls:// or quic://, both with mutual TLS.
#[derive(Clone)]
pub(crate) struct Secure {
    pki: Arc<SelfSignedPki>,
    scheme: &'static str,
}

impl Secure {
    /// Certificates for [`SERVER_NAME`] and a client, shared by both
    /// transports: tls:// first, quic:// second.
    pub(crate) fn pair() -> Result<(Secure, Secure), String> {
        let pki = Arc::new(SelfSignedPki::generate(&[SERVER_NAME]).map_err(ctx("certificates"))?);
        Ok((
            Secure {
                pki: pki.clone(),
                scheme: "tls",
            },
            Secure {
                pki,
                scheme: "quic",
            },
        ))
    }

    /// The same certificates over tls://.
    pub(crate) fn tls(pki: Arc<SelfSignedPki>) -> Secure {
        Secure { pki, scheme: "tls" }
    }
}

/// The URL to listen on and its options: tcp:// when `over` is `None`.
pub(crate) fn listen(over: Option<&Secure>) -> Result<(String, ListenOptions), String> {
    Ok(match over {
        None => (format!("tcp://{LOOPBACK}"), ListenOptions::default()),
        Some(s) => {
            let tls = s
                .pki
                .server_config(ClientAuth::Required(s.pki.anchors()))
                .map_err(ctx("server TLS"))?;
            (
                format!("{}://{LOOPBACK}", s.scheme),
                ListenOptions::tls(tls),
            )
        }
    })
}

/// The options to connect with: the defaults when `over` is `None`.
pub(crate) fn connect(over: Option<&Secure>) -> Result<ConnectOptions, String> {
    Ok(match over {
        None => ConnectOptions::default(),
        Some(s) => ConnectOptions::tls(
            s.pki
                .client_config(true)
                .map_err(ctx("client TLS"))?
                .with_server_name(SERVER_NAME),
        ),
    })
}
