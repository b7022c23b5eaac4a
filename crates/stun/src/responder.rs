//! The server's request handling, free of I/O.

use std::net::SocketAddr;
use std::time::Instant;

use crate::attribute::{AttributeType, ChangeRequest, ErrorCode};
use crate::integrity::Trailer;
use crate::limit::{LimitStats, SourceLimits, SourceTable};
use crate::url::Transport;
use crate::{Attribute, Class, StunMessage, StunMessageView, StunMethod};

/// How many times its request's size an error answer may be at most, so
/// that a forged source cannot use the server to amplify traffic.
const ERROR_AMPLIFICATION: usize = 2;

/// One of the server's (up to four) UDP sockets, named by whether it uses
/// the alternate IP and the alternate port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Uses the alternate IP address.
    pub alternate_ip: bool,
    /// Uses the alternate port.
    pub alternate_port: bool,
}

impl Endpoint {
    /// Primary IP, primary port: the only socket without RFC 5780.
    pub const PRIMARY: Endpoint = Endpoint {
        alternate_ip: false,
        alternate_port: false,
    };

    /// All four, in [`index`](Self::index) order.
    pub const ALL: [Endpoint; 4] = [
        Endpoint::PRIMARY,
        Endpoint {
            alternate_ip: false,
            alternate_port: true,
        },
        Endpoint {
            alternate_ip: true,
            alternate_port: false,
        },
        Endpoint {
            alternate_ip: true,
            alternate_port: true,
        },
    ];

    /// 0 to 3: the position in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        usize::from(self.alternate_ip) * 2 + usize::from(self.alternate_port)
    }

    /// The endpoint a CHANGE-REQUEST received here asks to answer from.
    pub fn changed(self, change: ChangeRequest) -> Endpoint {
        Endpoint {
            alternate_ip: self.alternate_ip ^ change.change_ip,
            alternate_port: self.alternate_port ^ change.change_port,
        }
    }
}

/// How the [`Responder`] answers. Plain data with a constructor for the
/// common case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponderConfig {
    /// The primary address (IP and port), as bound.
    pub primary: SocketAddr,
    /// The alternate address: its IP is the alternate IP, its port the
    /// alternate port. `Some` enables RFC 5780.
    pub alternate: Option<SocketAddr>,
    /// SOFTWARE in responses. Default (from [`new`](Self::new)): `weft-stun`
    /// and its version.
    pub software: Option<String>,
    /// Whether responses carry FINGERPRINT. Default: `true`.
    pub fingerprint: bool,
    /// What one source address may ask for. Default:
    /// [`SourceLimits::default`].
    pub limits: SourceLimits,
}

impl ResponderConfig {
    /// A single-address responder with SOFTWARE and FINGERPRINT.
    pub fn new(primary: SocketAddr) -> ResponderConfig {
        ResponderConfig {
            primary,
            alternate: None,
            software: Some(concat!("weft-stun ", env!("CARGO_PKG_VERSION")).to_owned()),
            fingerprint: true,
            limits: SourceLimits::default(),
        }
    }

    /// The address of an endpoint; `None` for the alternate ones without
    /// RFC 5780.
    pub fn address(&self, endpoint: Endpoint) -> Option<SocketAddr> {
        if endpoint == Endpoint::PRIMARY {
            return Some(self.primary);
        }
        let alt = self.alternate?;
        let ip = if endpoint.alternate_ip {
            alt.ip()
        } else {
            self.primary.ip()
        };
        let port = if endpoint.alternate_port {
            alt.port()
        } else {
            self.primary.port()
        };
        Some(SocketAddr::new(ip, port))
    }
}

/// A response to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The socket to send from (always the receiving one over TCP and TLS).
    pub from: Endpoint,
    /// Where to send it (over TCP and TLS, the connection's peer).
    pub to: SocketAddr,
    /// The encoded response.
    pub payload: Vec<u8>,
}

/// Why a datagram got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Not a STUN message.
    Malformed,
    /// FINGERPRINT present and wrong.
    BadFingerprint,
    /// A response or an indication.
    NotARequest,
    /// Its source is over [`SourceLimits::answers`].
    RateLimited,
    /// It names a RESPONSE-PORT and its source is over
    /// [`SourceLimits::redirects`].
    RedirectLimited,
}

/// What the [`Responder`] made of a datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Send this response (success or error).
    Reply(Reply),
    /// No answer.
    Ignored(Ignored),
}

/// The server's request handling, free of I/O: bytes and their source in,
/// response bytes and the socket to send them from out.
///
/// With one address the server answers Binding requests with
/// XOR-MAPPED-ADDRESS. With an alternate address (RFC 5780) it owns four
/// sockets, every pairing of the primary and alternate IP with the primary
/// and alternate port; it then adds RESPONSE-ORIGIN and OTHER-ADDRESS,
/// answers CHANGE-REQUEST from the socket it names and honours
/// RESPONSE-PORT.
///
/// Each source address gets a limited number of answers, and of answers
/// sent to a RESPONSE-PORT ([`SourceLimits`]); every error answer is at
/// most twice the size of its request (short reason phrases, and no
/// SOFTWARE when it does not fit).
///
/// ```
/// use weft_stun::{StunMessage, Responder};
/// use weft_stun::responder::{Endpoint, Handled, ResponderConfig};
/// use weft_stun::url::Transport;
/// use std::time::Instant;
/// let mut responder = Responder::new(ResponderConfig::new("127.0.0.1:3478".parse().unwrap()));
/// let request = StunMessage::binding_request().encode()?;
/// let client = "127.0.0.1:40000".parse().unwrap();
/// let now = Instant::now();
/// let Handled::Reply(reply) =
///     responder.handle(now, &request, client, Endpoint::PRIMARY, Transport::Udp)
/// else { panic!("no reply") };
/// assert_eq!((reply.from, reply.to), (Endpoint::PRIMARY, client));
/// let response = StunMessage::decode(&reply.payload)?;
/// assert_eq!(response.mapped_address(), Some(client));
/// # Ok::<(), weft_stun::StunError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Responder {
    config: ResponderConfig,
    sources: SourceTable,
}

impl Responder {
    /// A responder.
    pub fn new(config: ResponderConfig) -> Responder {
        Responder {
            sources: SourceTable::new(config.limits),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ResponderConfig {
        &self.config
    }

    /// How often each of the [`SourceLimits`] has bitten.
    pub fn limit_stats(&self) -> LimitStats {
        self.sources.stats()
    }

    /// How many source addresses are tracked now (at most
    /// [`SourceLimits::max_sources`]).
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// Handles one message from `source`, received on endpoint `on` over
    /// `transport` at `now` (which refills the source's budgets). Never
    /// panics on any input.
    pub fn handle(
        &mut self,
        now: Instant,
        data: &[u8],
        source: SocketAddr,
        on: Endpoint,
        transport: Transport,
    ) -> Handled {
        let Ok(view) = StunMessageView::new_checked(data) else {
            return Handled::Ignored(Ignored::Malformed);
        };
        if view.verify_fingerprint().is_err() {
            return Handled::Ignored(Ignored::BadFingerprint);
        }
        if view.class() != Class::Request {
            return Handled::Ignored(Ignored::NotARequest);
        }
        if !self.sources.take_answer(source.ip(), now) {
            return Handled::Ignored(Ignored::RateLimited);
        }
        self.answer(now, &view, source, on, transport)
            .unwrap_or(Handled::Ignored(Ignored::Malformed))
    }

    /// The response to a request; `None` only if it cannot be encoded.
    fn answer(
        &mut self,
        now: Instant,
        view: &StunMessageView<'_>,
        source: SocketAddr,
        on: Endpoint,
        transport: Transport,
    ) -> Option<Handled> {
        let config = &self.config;
        let error = |code: u16, reason: &str, unknown: Vec<AttributeType>| {
            let mut response =
                StunMessage::new(Class::ErrorResponse, view.method(), view.transaction_id())
                    .with(Attribute::ErrorCode(ErrorCode::new(code, reason)));
            if !unknown.is_empty() {
                response.push(Attribute::UnknownAttributes(unknown));
            }
            let budget = view.as_bytes().len().saturating_mul(ERROR_AMPLIFICATION);
            encode_error(config, response, budget).map(|payload| {
                Handled::Reply(Reply {
                    from: on,
                    to: source,
                    payload,
                })
            })
        };
        if view.method() != StunMethod::BINDING {
            return error(ErrorCode::BAD_REQUEST, "Bad Request", vec![]);
        }
        let mut unknown = view.unknown_comprehension_required();
        let rfc5780 = self.config.alternate.is_some() && transport == Transport::Udp;
        if !rfc5780 {
            // Without an alternate address (or over a stream) CHANGE-REQUEST
            // and RESPONSE-PORT cannot be honoured: RFC 5780 §6.1 treats
            // them as unknown.
            for kind in [AttributeType::CHANGE_REQUEST, AttributeType::RESPONSE_PORT] {
                if view.get(kind).is_some() {
                    unknown.push(kind);
                }
            }
        }
        if !unknown.is_empty() {
            return error(ErrorCode::UNKNOWN_ATTRIBUTE, "Unknown Attribute", unknown);
        }
        let request = match view.to_message() {
            Ok(r) => r,
            Err(_) => return error(ErrorCode::BAD_REQUEST, "Bad Request", vec![]),
        };
        let from = match request.change_request() {
            Some(change) if rfc5780 => on.changed(change),
            _ => on,
        };
        let to = match request.response_port() {
            Some(port) if rfc5780 && port != source.port() => {
                if !self.sources.take_redirect(source.ip(), now) {
                    return Some(Handled::Ignored(Ignored::RedirectLimited));
                }
                SocketAddr::new(source.ip(), port)
            }
            _ => source,
        };
        let mut response = StunMessage::new(
            Class::SuccessResponse,
            StunMethod::BINDING,
            request.transaction_id,
        )
        .with(Attribute::XorMappedAddress(source));
        if rfc5780 {
            let all = ChangeRequest {
                change_ip: true,
                change_port: true,
            };
            if let Some(origin) = self.config.address(from) {
                response.push(Attribute::ResponseOrigin(origin));
            }
            if let Some(other) = self.config.address(on.changed(all)) {
                response.push(Attribute::OtherAddress(other));
            }
        }
        let payload = encode(&self.config, response)?;
        Some(Handled::Reply(Reply { from, to, payload }))
    }
}

fn trailer(config: &ResponderConfig) -> Trailer<'static> {
    Trailer {
        fingerprint: config.fingerprint,
        ..Trailer::default()
    }
}

/// A response with SOFTWARE when it can carry it.
fn encode(config: &ResponderConfig, mut response: StunMessage) -> Option<Vec<u8>> {
    if let Some(software) = &config.software {
        response.push(Attribute::Software(software.clone()));
        if let Ok(bytes) = response.encode_with(&trailer(config)) {
            return Some(bytes);
        }
        // Only SOFTWARE over the limits can fail: answer without it rather
        // than not at all.
        response.attributes.pop();
    }
    response.encode_with(&trailer(config)).ok()
}

/// An error response of at most `budget` bytes: with SOFTWARE if that
/// fits, else without it and with as much of the reason phrase as fits.
/// Without SOFTWARE and reason it is at most 36 bytes plus 4 for every 2
/// unknown attributes listed, each of which took at least 4 bytes of the
/// request, so it fits twice any request (20 bytes or more); `None` if it
/// still would not.
fn encode_error(config: &ResponderConfig, response: StunMessage, budget: usize) -> Option<Vec<u8>> {
    if let Some(bytes) = encode(config, response.clone()) {
        if bytes.len() <= budget {
            return Some(bytes);
        }
    }
    let mut response = response;
    loop {
        if let Ok(bytes) = response.encode_with(&trailer(config)) {
            if bytes.len() <= budget {
                return Some(bytes);
            }
        }
        let shortened = response.attributes.iter_mut().any(|a| match a {
            Attribute::ErrorCode(e) => e.reason.pop().is_some(),
            _ => false,
        });
        if !shortened {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc5780() -> Responder {
        let mut config = ResponderConfig::new("127.0.0.1:3478".parse().unwrap());
        config.alternate = Some("127.0.0.2:3479".parse().unwrap());
        Responder::new(config)
    }

    fn now() -> Instant {
        Instant::now()
    }

    fn client() -> SocketAddr {
        "127.0.0.1:50000".parse().unwrap()
    }

    fn reply(h: Handled) -> (Reply, StunMessage) {
        match h {
            Handled::Reply(r) => {
                let m = StunMessage::decode(&r.payload).unwrap();
                assert!(
                    StunMessageView::new_checked(&r.payload)
                        .unwrap()
                        .verify_fingerprint()
                        .unwrap()
                );
                (r, m)
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn endpoints() {
        for (i, e) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
        let r = rfc5780();
        let addrs: Vec<String> = Endpoint::ALL
            .iter()
            .map(|e| r.config().address(*e).unwrap().to_string())
            .collect();
        assert_eq!(
            addrs,
            [
                "127.0.0.1:3478",
                "127.0.0.1:3479",
                "127.0.0.2:3478",
                "127.0.0.2:3479"
            ]
        );
    }

    #[test]
    fn rfc5780_change_request_and_response_port() {
        let mut r = rfc5780();
        let request = StunMessage::binding_request()
            .with(Attribute::ChangeRequest(ChangeRequest {
                change_ip: true,
                change_port: true,
            }))
            .encode()
            .unwrap();
        let (rep, m) =
            reply(r.handle(now(), &request, client(), Endpoint::PRIMARY, Transport::Udp));
        assert_eq!(rep.from, Endpoint::ALL[3]);
        assert_eq!(rep.to, client());
        assert_eq!(m.mapped_address(), Some(client()));
        assert_eq!(m.response_origin(), Some("127.0.0.2:3479".parse().unwrap()));
        assert_eq!(m.other_address(), Some("127.0.0.2:3479".parse().unwrap()));

        let request = StunMessage::binding_request()
            .with(Attribute::ChangeRequest(ChangeRequest {
                change_ip: false,
                change_port: true,
            }))
            .with(Attribute::ResponsePort(6000))
            .encode()
            .unwrap();
        let on = Endpoint::ALL[2]; // alternate IP, primary port
        let (rep, m) = reply(r.handle(now(), &request, client(), on, Transport::Udp));
        assert_eq!(rep.from, Endpoint::ALL[3]);
        assert_eq!(rep.to, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(m.mapped_address(), Some(client()));
        // OTHER-ADDRESS is relative to the receiving socket.
        assert_eq!(m.other_address(), Some("127.0.0.1:3479".parse().unwrap()));
    }

    #[test]
    fn without_alternate_change_request_is_unknown() {
        let mut r = Responder::new(ResponderConfig::new("127.0.0.1:3478".parse().unwrap()));
        let request = StunMessage::binding_request()
            .with(Attribute::ChangeRequest(ChangeRequest::default()))
            .encode()
            .unwrap();
        let (rep, m) =
            reply(r.handle(now(), &request, client(), Endpoint::PRIMARY, Transport::Udp));
        assert_eq!(rep.from, Endpoint::PRIMARY);
        assert_eq!(m.class, Class::ErrorResponse);
        assert_eq!(m.error_code().unwrap().code, 420);
        assert_eq!(
            m.get(AttributeType::UNKNOWN_ATTRIBUTES),
            Some(&Attribute::UnknownAttributes(vec![
                AttributeType::CHANGE_REQUEST
            ]))
        );
        assert!(m.other_address().is_none());
    }

    #[test]
    fn unknown_required_attributes_get_420_and_bad_ones_400() {
        let mut r = rfc5780();
        let request = StunMessage::binding_request()
            .with(Attribute::Unknown {
                kind: AttributeType(0x0024),
                value: vec![0; 4],
            })
            .with(Attribute::Unknown {
                kind: AttributeType(0x8029),
                value: vec![0; 8],
            })
            .encode()
            .unwrap();
        let (_, m) = reply(r.handle(now(), &request, client(), Endpoint::PRIMARY, Transport::Udp));
        assert_eq!(m.error_code().unwrap().code, 420);
        assert_eq!(
            m.get(AttributeType::UNKNOWN_ATTRIBUTES),
            Some(&Attribute::UnknownAttributes(vec![AttributeType(0x0024)]))
        );

        let mut bad = StunMessage::binding_request().encode().unwrap();
        bad.extend_from_slice(&[0x00, 0x20, 0x00, 0x04, 0, 9, 0, 0]);
        bad[3] = 8;
        let (_, m) = reply(r.handle(now(), &bad, client(), Endpoint::PRIMARY, Transport::Udp));
        assert_eq!(m.error_code().unwrap(), &ErrorCode::new(400, "Bad Request"));

        let other_method = StunMessage::new(
            Class::Request,
            StunMethod::new(3).unwrap(),
            crate::TransactionId::random(),
        )
        .encode()
        .unwrap();
        let (_, m) = reply(r.handle(
            now(),
            &other_method,
            client(),
            Endpoint::PRIMARY,
            Transport::Udp,
        ));
        assert_eq!(m.error_code().unwrap().code, 400);
        assert_eq!(m.method, StunMethod::new(3).unwrap());
    }

    #[test]
    fn junk_and_non_requests_are_ignored() {
        let mut r = rfc5780();
        assert_eq!(
            r.handle(now(), b"hello", client(), Endpoint::PRIMARY, Transport::Udp),
            Handled::Ignored(Ignored::Malformed)
        );
        let indication = StunMessage::new(
            Class::Indication,
            StunMethod::BINDING,
            crate::TransactionId::random(),
        )
        .encode()
        .unwrap();
        assert_eq!(
            r.handle(
                now(),
                &indication,
                client(),
                Endpoint::PRIMARY,
                Transport::Udp
            ),
            Handled::Ignored(Ignored::NotARequest)
        );
        let mut request = StunMessage::binding_request()
            .encode_with(&Trailer::fingerprint())
            .unwrap();
        let last = request.len() - 1;
        request[last] ^= 0xff;
        assert_eq!(
            r.handle(now(), &request, client(), Endpoint::PRIMARY, Transport::Udp),
            Handled::Ignored(Ignored::BadFingerprint)
        );
    }

    #[test]
    fn streams_never_change_address() {
        let mut r = rfc5780();
        let request = StunMessage::binding_request()
            .with(Attribute::ChangeRequest(ChangeRequest {
                change_ip: true,
                change_port: false,
            }))
            .encode()
            .unwrap();
        let (_, m) = reply(r.handle(now(), &request, client(), Endpoint::PRIMARY, Transport::Tcp));
        assert_eq!(m.error_code().unwrap().code, 420);
        let plain = StunMessage::binding_request().encode().unwrap();
        let (rep, m) = reply(r.handle(now(), &plain, client(), Endpoint::PRIMARY, Transport::Tcp));
        assert_eq!(rep.from, Endpoint::PRIMARY);
        assert_eq!(m.mapped_address(), Some(client()));
        assert!(m.other_address().is_none());
    }
}
