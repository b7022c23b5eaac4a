//! TLS with rustls (ring provider): configurations for both sides, loaded
//! from PEM files or memory.
//!
//! A server needs a [`TlsIdentity`] (certificate chain and key) and decides
//! whether clients must present certificates ([`ClientAuth`]). A client needs
//! [`TrustAnchors`] to verify the server, and may present its own identity
//! for mutual TLS. [`TlsClientConfig::with_server_name`] overrides the name
//! checked against the server's certificate (needed for Unix sockets and IP
//! literals whose certificate names a host).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls_pki_types::pem::PemObject;

use crate::LinkError;

/// Re-exported so that users name the certificate type weft uses.
pub use rustls::pki_types::CertificateDer;

/// ring's provider, with the AES-128-GCM suites first: as strong as
/// weft needs and markedly cheaper per byte than AES-256-GCM, which ring
/// lists first (a client's order decides the suite, and both ends of a
/// weft connection use this one).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(provider)
}

fn material(what: &str, e: impl std::fmt::Display) -> LinkError {
    LinkError::TlsMaterial(format!("{what}: {e}"))
}

/// A certificate chain and its private key.
#[derive(Debug)]
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> TlsIdentity {
        TlsIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsIdentity {
    /// From PEM text: the chain (leaf first) and a PKCS#8, PKCS#1 or SEC1 key.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<TlsIdentity, LinkError> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| material("certificate chain", e))?;
        if chain.is_empty() {
            return Err(LinkError::TlsMaterial(
                "certificate chain: no CERTIFICATE block found".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| material("private key", e))?;
        Ok(TlsIdentity { chain, key })
    }

    /// From two PEM files.
    pub fn from_pem_files(
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsIdentity, LinkError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| LinkError::io(format!("reading {}", p.display()), e))
        };
        TlsIdentity::from_pem(&read(chain.as_ref())?, &read(key.as_ref())?)
    }

    /// From DER: the chain (leaf first) and the key.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> TlsIdentity {
        TlsIdentity { chain, key }
    }
}

/// The certificate authorities a side trusts.
#[derive(Clone, Debug)]
pub struct TrustAnchors {
    roots: Arc<RootCertStore>,
}

impl TrustAnchors {
    /// From PEM text with one or more CA certificates.
    pub fn from_pem(pem: &[u8]) -> Result<TrustAnchors, LinkError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| material("CA bundle", e))?;
            roots.add(cert).map_err(|e| material("CA certificate", e))?;
        }
        if roots.is_empty() {
            return Err(LinkError::TlsMaterial(
                "CA bundle: no CERTIFICATE block found".into(),
            ));
        }
        Ok(TrustAnchors {
            roots: Arc::new(roots),
        })
    }

    /// From a PEM file with one or more CA certificates.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<TrustAnchors, LinkError> {
        let p = path.as_ref();
        let pem =
            std::fs::read(p).map_err(|e| LinkError::io(format!("reading {}", p.display()), e))?;
        TrustAnchors::from_pem(&pem)
    }

    /// From DER certificates.
    pub fn from_der(
        certs: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<TrustAnchors, LinkError> {
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots.add(cert).map_err(|e| material("CA certificate", e))?;
        }
        Ok(TrustAnchors {
            roots: Arc::new(roots),
        })
    }
}

/// Whether a TLS server asks clients for certificates.
#[derive(Clone, Debug, Default)]
pub enum ClientAuth {
    /// No client certificates (plain server-authenticated TLS). The default.
    #[default]
    None,
    /// Clients may present a certificate; one that is presented must chain
    /// to these anchors.
    Optional(TrustAnchors),
    /// Clients must present a certificate that chains to these anchors
    /// (mutual TLS).
    Required(TrustAnchors),
}

/// The server side of TLS. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TlsServerConfig {
    pub(crate) inner: Arc<rustls::ServerConfig>,
}

impl TlsServerConfig {
    /// A server presenting `identity`, asking clients as `client_auth` says.
    pub fn new(
        identity: TlsIdentity,
        client_auth: ClientAuth,
    ) -> Result<TlsServerConfig, LinkError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| material("protocol versions", e))?;
        let builder = match client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Optional(anchors) | ClientAuth::Required(anchors)
                if anchors.roots.is_empty() =>
            {
                return Err(LinkError::TlsMaterial(
                    "client authentication needs at least one CA".into(),
                ));
            }
            ClientAuth::Optional(anchors) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    anchors.roots,
                    provider(),
                )
                .allow_unauthenticated()
                .build()
                .map_err(|e| material("client verifier", e))?;
                builder.with_client_cert_verifier(verifier)
            }
            ClientAuth::Required(anchors) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    anchors.roots,
                    provider(),
                )
                .build()
                .map_err(|e| material("client verifier", e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(identity.chain, identity.key)
            .map_err(|e| material("server certificate", e))?;
        Ok(TlsServerConfig {
            inner: Arc::new(config),
        })
    }

    /// Wraps a rustls configuration built by hand.
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> TlsServerConfig {
        TlsServerConfig { inner: config }
    }
}

/// The client side of TLS. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TlsClientConfig {
    pub(crate) inner: Arc<rustls::ClientConfig>,
    pub(crate) server_name: Option<String>,
}

impl TlsClientConfig {
    /// A client that trusts `anchors` and, for mutual TLS, presents `identity`.
    pub fn new(
        anchors: TrustAnchors,
        identity: Option<TlsIdentity>,
    ) -> Result<TlsClientConfig, LinkError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| material("protocol versions", e))?
            .with_root_certificates(anchors.roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some(id) => builder
                .with_client_auth_cert(id.chain, id.key)
                .map_err(|e| material("client certificate", e))?,
        };
        Ok(TlsClientConfig {
            inner: Arc::new(config),
            server_name: None,
        })
    }

    /// Checks the server's certificate against `name` instead of the host
    /// in the address (always needed for `unix+tls://` unless the
    /// certificate names `localhost`).
    pub fn with_server_name(mut self, name: impl Into<String>) -> TlsClientConfig {
        self.server_name = Some(name.into());
        self
    }

    /// Wraps a rustls configuration built by hand.
    pub fn from_rustls(config: Arc<rustls::ClientConfig>) -> TlsClientConfig {
        TlsClientConfig {
            inner: config,
            server_name: None,
        }
    }

    pub(crate) fn server_name_for(
        &self,
        default: String,
    ) -> Result<ServerName<'static>, LinkError> {
        let name = self.server_name.clone().unwrap_or(default);
        ServerName::try_from(name.clone())
            .map_err(|_| LinkError::TlsMaterial(format!("`{name}` is not a valid TLS server name")))
    }
}

#[cfg(feature = "self-signed")]
pub use self_signed::SelfSignedPki;

#[cfg(feature = "self-signed")]
mod self_signed {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };

    /// A throw-away certificate authority with a server and a client
    /// certificate signed by it, made with rcgen. For tests and demos only.
    ///
    /// ```
    /// use weft_link::tls::{ClientAuth, SelfSignedPki};
    /// let pki = SelfSignedPki::generate(&["localhost", "127.0.0.1"])?;
    /// let server = pki.server_config(ClientAuth::Required(pki.anchors()))?;
    /// let client = pki.client_config(true)?;
    /// # let _ = (server, client);
    /// # Ok::<(), weft_link::LinkError>(())
    /// ```
    #[derive(Clone, Debug)]
    pub struct SelfSignedPki {
        /// The CA certificate as PEM.
        pub ca_pem: String,
        /// The server certificate (for the names given) as PEM.
        pub server_cert_pem: String,
        /// The server key as PEM.
        pub server_key_pem: String,
        /// The client certificate as PEM.
        pub client_cert_pem: String,
        /// The client key as PEM.
        pub client_key_pem: String,
    }

    fn gen_err(e: rcgen::Error) -> LinkError {
        LinkError::TlsMaterial(format!("generating certificates: {e}"))
    }

    impl SelfSignedPki {
        /// A new CA, and a server certificate valid for `names` (DNS names or
        /// IP literals), and a client certificate named `weft-client`.
        pub fn generate(names: &[&str]) -> Result<SelfSignedPki, LinkError> {
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(DnType::CommonName, "weft throw-away CA");
            let ca_key = KeyPair::generate().map_err(gen_err)?;
            let ca = ca_params.self_signed(&ca_key).map_err(gen_err)?;

            let leaf = |sans: Vec<String>, purpose: ExtendedKeyUsagePurpose, cn: &str| {
                let mut params = CertificateParams::new(sans).map_err(gen_err)?;
                params.distinguished_name.push(DnType::CommonName, cn);
                params.extended_key_usages = vec![purpose];
                let key = KeyPair::generate().map_err(gen_err)?;
                let cert = params.signed_by(&key, &ca, &ca_key).map_err(gen_err)?;
                Ok::<_, LinkError>((cert.pem(), key.serialize_pem()))
            };
            let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            let (server_cert_pem, server_key_pem) =
                leaf(names, ExtendedKeyUsagePurpose::ServerAuth, "weft server")?;
            let (client_cert_pem, client_key_pem) = leaf(
                vec!["weft-client".into()],
                ExtendedKeyUsagePurpose::ClientAuth,
                "weft-client",
            )?;
            Ok(SelfSignedPki {
                ca_pem: ca.pem(),
                server_cert_pem,
                server_key_pem,
                client_cert_pem,
                client_key_pem,
            })
        }

        /// The CA as trust anchors.
        pub fn anchors(&self) -> TrustAnchors {
            TrustAnchors::from_pem(self.ca_pem.as_bytes()).expect("generated CA parses")
        }

        /// A server configuration with the server certificate.
        pub fn server_config(&self, client_auth: ClientAuth) -> Result<TlsServerConfig, LinkError> {
            let id = TlsIdentity::from_pem(
                self.server_cert_pem.as_bytes(),
                self.server_key_pem.as_bytes(),
            )?;
            TlsServerConfig::new(id, client_auth)
        }

        /// A client configuration trusting the CA, presenting the client
        /// certificate when `with_client_cert`.
        pub fn client_config(&self, with_client_cert: bool) -> Result<TlsClientConfig, LinkError> {
            let id = if with_client_cert {
                Some(TlsIdentity::from_pem(
                    self.client_cert_pem.as_bytes(),
                    self.client_key_pem.as_bytes(),
                )?)
            } else {
                None
            };
            TlsClientConfig::new(self.anchors(), id)
        }
    }
}

/// A stream after its TLS handshake, with the certificate chain the other
/// side presented.
pub(crate) type Secured<S> = (
    tokio_rustls::TlsStream<S>,
    Option<Arc<[CertificateDer<'static>]>>,
);

/// One side's TLS `handshake` (client or server), bounded by the link's
/// handshake timeout, with its errors and the peer's certificates as every
/// TLS stream of the link reports them; `peer` names the other end in
/// errors.
pub(crate) async fn bounded_handshake<S>(
    cfg: &crate::LinkConfig,
    peer: String,
    handshake: impl std::future::Future<Output = std::io::Result<tokio_rustls::TlsStream<S>>>,
) -> Result<Secured<S>, LinkError> {
    let timeout = cfg.tls_handshake_timeout;
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(stream)) => {
            let certificates = peer_certificates(&stream);
            Ok((stream, certificates))
        }
        Ok(Err(source)) => Err(LinkError::Tls { peer, source }),
        Err(_) => Err(LinkError::HandshakeTimeout { peer, timeout }),
    }
}

/// The certificate chain the other side of a finished handshake presented.
pub(crate) fn peer_certificates<IO>(
    tls: &tokio_rustls::TlsStream<IO>,
) -> Option<Arc<[CertificateDer<'static>]>> {
    let (_, state) = tls.get_ref();
    state.peer_certificates().map(|c| c.to_vec().into())
}

#[cfg(test)]
mod tests {

    #[test]
    fn aes_128_gcm_comes_first() {
        let p = provider();
        assert_eq!(
            p.cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        // Nothing is dropped, only reordered.
        assert_eq!(
            p.cipher_suites.len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );
    }
    use super::*;

    #[test]
    fn bad_pem_is_a_typed_error() {
        assert!(matches!(
            TlsIdentity::from_pem(b"garbage", b"garbage"),
            Err(LinkError::TlsMaterial(_))
        ));
        assert!(matches!(
            TrustAnchors::from_pem(b""),
            Err(LinkError::TlsMaterial(_))
        ));
    }

    #[test]
    fn files_load() {
        let pki = SelfSignedPki::generate(&["localhost"]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (c, k, ca) = (
            dir.path().join("c.pem"),
            dir.path().join("k.pem"),
            dir.path().join("ca.pem"),
        );
        std::fs::write(&c, &pki.server_cert_pem).unwrap();
        std::fs::write(&k, &pki.server_key_pem).unwrap();
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        let id = TlsIdentity::from_pem_files(&c, &k).unwrap();
        let anchors = TrustAnchors::from_pem_file(&ca).unwrap();
        TlsServerConfig::new(id, ClientAuth::Required(anchors)).unwrap();
        assert!(matches!(
            TlsIdentity::from_pem_files(dir.path().join("missing"), &k),
            Err(LinkError::Io { .. })
        ));
    }
}
