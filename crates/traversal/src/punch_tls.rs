//! TLS for QUIC on a punched socket. QUIC cannot run without TLS, but
//! the peers of a traversal share no trust anchors: the direct TCP paths
//! are not authenticated either. So the accepting end presents a
//! throw-away self-signed certificate and the connecting end accepts any
//! certificate, while still checking that the handshake was signed with
//! its key (the connection is encrypted; who is at the other end is
//! settled above, by messaging's handshake and the rendezvous's word, as
//! on the TCP paths).

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use weft_link::LinkError;
use weft_link::tls::{ClientAuth, SelfSignedPki, TlsClientConfig, TlsServerConfig};

/// The name in the throw-away certificate, and the name connectors ask
/// for.
pub(crate) const SERVER_NAME: &str = "weft-direct";

/// The accepting end's configuration: a new self-signed certificate.
pub(crate) fn server() -> Result<TlsServerConfig, LinkError> {
    SelfSignedPki::generate(&[SERVER_NAME])?.server_config(ClientAuth::None)
}

/// The connecting end's configuration: any certificate, a signature that
/// verifies.
pub(crate) fn client() -> TlsClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring offers TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    TlsClientConfig::from_rustls(Arc::new(config)).with_server_name(SERVER_NAME)
}

/// Accepts any certificate; checks handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
