//! How a participant's streams travel: plain TCP, or QUIC with mutual
//! TLS, and the listener and connectors each one takes.

use weft_link::address::Scheme;
use weft_link::tls::{ClientAuth, TlsClientConfig, TlsIdentity, TlsServerConfig, TrustAnchors};
use weft_link::{Address, ConnectOptions, ListenOptions};

use crate::ParticipantError;

/// The transport of the streams between participants
/// ([`ParticipantConfig::transport`](crate::ParticipantConfig::transport)).
///
/// Every participant of a group must use the same one: beacons announce
/// only an IP address and a port, and a participant dials the others with
/// its own transport (a TCP participant and a QUIC one never meet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamTransport {
    /// Plain TCP (`tcp://`). The default.
    #[default]
    Tcp,
    /// QUIC (`quic://`): reliable, encrypted UDP. It needs
    /// [`ParticipantConfig::tls`](crate::ParticipantConfig::tls): both ends
    /// of every stream present a certificate that chains to the group's CA
    /// (mutual TLS), so that no stream is unauthenticated; without it
    /// [`Participant::start`](crate::Participant::start) fails with
    /// [`ParticipantError::QuicWithoutTls`].
    Quic,
}

/// The TLS material of a participant's streams
/// ([`ParticipantConfig::tls`](crate::ParticipantConfig::tls)), as
/// `tls://` and `quic://` peers take it (certificates from `weft cert`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StreamTls {
    /// The certificate chain and key this participant presents, as the
    /// listener and as the dialling side; good for servers and clients
    /// alike (as `weft cert issue` makes them).
    pub identity: TlsIdentity,
    /// The CAs that verify the other participants' certificates, on both
    /// sides.
    pub anchors: TrustAnchors,
    /// The name every participant's certificate must carry when we dial
    /// it.
    ///
    /// Default (`None`): each participant's certificate names its
    /// identity (`weft cert issue IDENTITY`), checked both ways: the
    /// dialling side checks the certificate against the identity the
    /// dialled participant announces in its beacons, and the accepting
    /// side binds the identity a stream claims to its certificate
    /// ([`MessagingConfig::bind_identity`](weft_messaging::MessagingConfig::bind_identity)
    /// is turned on). A participant whose identity is not a DNS name is
    /// then unreachable. With a name, certificates name the group instead
    /// (one name, every participant's): a stream proves membership of the
    /// group, not who is at its other end, and `bind_identity` stays as
    /// configured.
    pub server_name: Option<String>,
}

impl StreamTls {
    /// Presents `identity`, trusts `anchors`, and checks a dialled
    /// participant's certificate against its identity.
    pub fn new(identity: TlsIdentity, anchors: TrustAnchors) -> StreamTls {
        StreamTls {
            identity,
            anchors,
            server_name: None,
        }
    }

    /// Checks every dialled participant's certificate against `name`
    /// instead of its identity.
    pub fn with_server_name(mut self, name: impl Into<String>) -> StreamTls {
        self.server_name = Some(name.into());
        self
    }
}

/// What a participant's shell listens and dials with, made once at start.
pub(crate) struct Streams {
    /// QUIC's client side; `None` for plain TCP.
    client: Option<TlsClientConfig>,
    /// The fixed name dialled certificates must carry, if any.
    server_name: Option<String>,
}

impl Streams {
    /// The listener for `listen` and the dialling side that `transport`
    /// and `tls` ask for.
    /// With QUIC, the listen address's host and port are listened on with
    /// `quic://` (so the default `tcp://0.0.0.0:0` needs no change).
    pub(crate) fn of(
        transport: StreamTransport,
        tls: Option<&StreamTls>,
        listen: &str,
    ) -> Result<(Streams, Address, ListenOptions), ParticipantError> {
        let listen: Address = listen.parse().map_err(weft_link::LinkError::from)?;
        match transport {
            StreamTransport::Tcp => Ok((
                Streams {
                    client: None,
                    server_name: None,
                },
                listen,
                ListenOptions::default(),
            )),
            StreamTransport::Quic => {
                let tls = tls.ok_or(ParticipantError::QuicWithoutTls)?;
                let Address::Ip { host, port, .. } = listen else {
                    return Err(ParticipantError::ListenNotIp(listen));
                };
                let listen = Address::Ip {
                    scheme: Scheme::Quic,
                    host,
                    port,
                };
                let server = TlsServerConfig::new(
                    tls.identity.clone(),
                    ClientAuth::Required(tls.anchors.clone()),
                )?;
                let client = TlsClientConfig::new(tls.anchors.clone(), Some(tls.identity.clone()))?;
                Ok((
                    Streams {
                        client: Some(client),
                        server_name: tls.server_name.clone(),
                    },
                    listen,
                    ListenOptions::tls(server),
                ))
            }
        }
    }

    /// Whether each participant's certificate must name its identity
    /// (QUIC without a fixed server name): dialling checks it against the
    /// identity the dialled participant announces, and accepting binds
    /// the identity a stream claims to its certificate.
    pub(crate) fn checks_identities(&self) -> bool {
        self.client.is_some() && self.server_name.is_none()
    }

    /// The address and options that dial the participant at `at`, whose
    /// beacons announce `identity` (when known).
    pub(crate) fn dial(
        &self,
        at: std::net::SocketAddr,
        identity: Option<&str>,
    ) -> (Address, ConnectOptions) {
        match &self.client {
            None => (Address::tcp(at), ConnectOptions::default()),
            Some(client) => {
                let name = self.server_name.as_deref().or(identity);
                let client = match name {
                    Some(name) => client.clone().with_server_name(name),
                    // Unknown (never so from discovery): the certificate
                    // must then name the address.
                    None => client.clone(),
                };
                (Address::ip(Scheme::Quic, at), ConnectOptions::tls(client))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_without_tls_is_refused() {
        let r = Streams::of(StreamTransport::Quic, None, "tcp://127.0.0.1:0");
        assert!(matches!(r, Err(ParticipantError::QuicWithoutTls)));
    }

    #[test]
    fn tcp_listens_and_dials_as_told() {
        let (streams, listen, _) =
            Streams::of(StreamTransport::Tcp, None, "tcp://127.0.0.1:0").unwrap();
        assert_eq!(listen.to_string(), "tcp://127.0.0.1:0");
        assert!(!streams.checks_identities());
        let at = "127.0.0.1:9".parse().unwrap();
        assert_eq!(streams.dial(at, Some("x")).0, Address::tcp(at));
    }

    /// Material for one participant, signed by a throw-away CA.
    fn material() -> StreamTls {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["p".to_owned()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        StreamTls::new(
            TlsIdentity::from_pem(leaf.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap(),
            TrustAnchors::from_pem(ca.pem().as_bytes()).unwrap(),
        )
    }

    #[test]
    fn quic_listens_on_the_listen_address_and_dials_quic() {
        let tls = material();
        for listen in ["tcp://127.0.0.1:0", "quic://127.0.0.1:0"] {
            let (streams, at, options) =
                Streams::of(StreamTransport::Quic, Some(&tls), listen).unwrap();
            assert_eq!(at.to_string(), "quic://127.0.0.1:0");
            assert!(options.tls.is_some());
            assert!(streams.checks_identities());
            let peer = "127.0.0.1:9".parse().unwrap();
            let (to, options) = streams.dial(peer, Some("p"));
            assert_eq!(to, Address::ip(Scheme::Quic, peer));
            assert!(options.tls.is_some());
        }
        let named = tls.clone().with_server_name("group");
        let (streams, ..) =
            Streams::of(StreamTransport::Quic, Some(&named), "tcp://127.0.0.1:0").unwrap();
        assert!(
            !streams.checks_identities(),
            "a group name checks no identity"
        );
        let unix = Streams::of(StreamTransport::Quic, Some(&tls), "unix://@x");
        assert!(matches!(unix, Err(ParticipantError::ListenNotIp(_))));
    }
}
