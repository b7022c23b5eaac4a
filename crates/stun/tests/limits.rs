//! What one source can make the server do: answers and RESPONSE-PORT
//! redirects within per-source budgets, a bounded table of sources, and
//! error answers no larger than twice their request. The responder is
//! driven on chosen instants; the server on loopback.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use weft_stun::attribute::{AttributeType, ChangeRequest};
use weft_stun::integrity::Trailer;
use weft_stun::limit::{RateLimit, SourceLimits};
use weft_stun::responder::{Endpoint, Handled, Ignored, ResponderConfig};
use weft_stun::url::Transport;
use weft_stun::{
    Attribute, Class, Responder, StunMessage, StunMessageView, StunMethod, StunServer,
    StunServerConfig, TransactionId,
};

use common::{addr, bounded};

fn rfc5780(limits: SourceLimits) -> Responder {
    let mut config = ResponderConfig::new(addr("127.0.0.1:3478"));
    config.alternate = Some(addr("127.0.0.2:3479"));
    config.limits = limits;
    Responder::new(config)
}

fn source(n: u32) -> SocketAddr {
    SocketAddr::from((n.to_be_bytes(), 40000))
}

fn with_response_port(port: u16) -> Vec<u8> {
    StunMessage::binding_request()
        .with(Attribute::ResponsePort(port))
        .encode_with(&Trailer::fingerprint())
        .unwrap()
}

#[test]
fn response_port_is_honoured_only_within_the_redirect_budget() {
    let limits = SourceLimits::default();
    let mut responder = rfc5780(limits);
    let client = source(0x0a00_0001);
    let request = with_response_port(6000);
    let t0 = Instant::now();
    let window = Duration::from_secs(10);
    let mut redirected = 0u64;
    let mut answered_here = 0u64;
    for i in 0..10_000u32 {
        // One request a millisecond: 10,000 over the 10 s window.
        let now = t0 + window * i / 10_000;
        if let Handled::Reply(reply) =
            responder.handle(now, &request, client, Endpoint::PRIMARY, Transport::Udp)
        {
            if reply.to == client {
                answered_here += 1;
            } else {
                assert_eq!(reply.to, SocketAddr::new(client.ip(), 6000));
                redirected += 1;
            }
        }
    }
    let budget = u64::from(limits.redirects.burst)
        + u64::from(limits.redirects.per_second) * window.as_secs();
    assert!(
        redirected <= budget,
        "{redirected} redirected answers, budget {budget}"
    );
    assert!(redirected >= u64::from(limits.redirects.burst));
    assert_eq!(answered_here, 0, "a refused redirect is not answered");
    let stats = responder.limit_stats();
    assert!(stats.redirects_refused > 0);
    assert!(
        stats.rate_limited > 0,
        "1,000 a second is over 100 a second"
    );

    // With the redirect budget spent, plain requests are still answered.
    let later = t0 + window;
    let plain = StunMessage::binding_request().encode().unwrap();
    let Handled::Reply(reply) =
        responder.handle(later, &plain, client, Endpoint::PRIMARY, Transport::Udp)
    else {
        panic!("a plain request is answered");
    };
    assert_eq!(reply.to, client);
}

#[test]
fn at_one_instant_only_the_burst_is_redirected() {
    let limits = SourceLimits {
        answers: RateLimit::new(u32::MAX, 0),
        redirects: RateLimit::new(3, 1),
        ..SourceLimits::default()
    };
    let mut responder = rfc5780(limits);
    let client = source(0x0a00_0001);
    let request = with_response_port(6000);
    let now = Instant::now();
    let outcomes: Vec<Handled> = (0..10_000)
        .map(|_| responder.handle(now, &request, client, Endpoint::PRIMARY, Transport::Udp))
        .collect();
    let redirected = outcomes
        .iter()
        .filter(|h| matches!(h, Handled::Reply(_)))
        .count();
    assert_eq!(redirected, 3);
    assert_eq!(
        outcomes
            .iter()
            .filter(|h| **h == Handled::Ignored(Ignored::RedirectLimited))
            .count(),
        9_997
    );
    assert_eq!(responder.limit_stats().redirects_refused, 9_997);
    // RESPONSE-PORT naming the source's own port is no redirect.
    let own = with_response_port(client.port());
    assert!(matches!(
        responder.handle(now, &own, client, Endpoint::PRIMARY, Transport::Udp),
        Handled::Reply(r) if r.to == client
    ));
}

#[test]
fn a_flood_from_one_source_does_not_silence_another() {
    let limits = SourceLimits::default();
    let mut responder = rfc5780(limits);
    let request = StunMessage::binding_request().encode().unwrap();
    let flooder = source(0x0a00_0001);
    let now = Instant::now();
    let answered = (0..10_000)
        .filter(|_| {
            matches!(
                responder.handle(now, &request, flooder, Endpoint::PRIMARY, Transport::Udp),
                Handled::Reply(_)
            )
        })
        .count();
    assert_eq!(answered, limits.answers.burst as usize);
    assert_eq!(responder.limit_stats().rate_limited, 10_000 - 200);

    let other = source(0x0a00_0002);
    for _ in 0..10 {
        assert!(matches!(
            responder.handle(now, &request, other, Endpoint::PRIMARY, Transport::Udp),
            Handled::Reply(r) if r.to == other
        ));
    }
    // Over streams the same budget applies.
    assert_eq!(
        responder.handle(now, &request, flooder, Endpoint::PRIMARY, Transport::Tcp),
        Handled::Ignored(Ignored::RateLimited)
    );
    // A second later the flooder has 100 more, not more.
    let later = now + Duration::from_secs(1);
    let answered = (0..10_000)
        .filter(|_| {
            matches!(
                responder.handle(later, &request, flooder, Endpoint::PRIMARY, Transport::Udp),
                Handled::Reply(_)
            )
        })
        .count();
    assert_eq!(answered, 100);
}

#[test]
fn many_sources_stay_within_the_table_and_keep_being_answered() {
    let limits = SourceLimits {
        max_sources: 64,
        ..SourceLimits::default()
    };
    let mut responder = rfc5780(limits);
    let request = StunMessage::binding_request().encode().unwrap();
    let now = Instant::now();
    // 100,000 forged sources, each asking once: each is answered, the
    // table stays bounded and the forgotten are counted.
    for n in 0..100_000u32 {
        let from = source(0x0b00_0000 + n);
        assert!(matches!(
            responder.handle(now, &request, from, Endpoint::PRIMARY, Transport::Udp),
            Handled::Reply(_)
        ));
        assert!(responder.tracked_sources() <= 64);
    }
    assert_eq!(responder.limit_stats().sources_evicted, 100_000 - 64);
    // IPv6 sources share the table.
    let v6: SocketAddr = "[2001:db8::1]:4000".parse().unwrap();
    assert!(matches!(
        responder.handle(now, &request, v6, Endpoint::PRIMARY, Transport::Udp),
        Handled::Reply(_)
    ));
    assert_eq!(responder.tracked_sources(), 64);
}

/// A responder whose answer budget never runs out, for the size tests.
fn unlimited(alternate: bool, software: Option<String>, fingerprint: bool) -> Responder {
    let mut config = ResponderConfig::new(addr("127.0.0.1:3478"));
    if alternate {
        config.alternate = Some(addr("127.0.0.2:3479"));
    }
    config.software = software;
    config.fingerprint = fingerprint;
    config.limits.answers = RateLimit::new(u32::MAX, u32::MAX);
    Responder::new(config)
}

/// `message` with `padding` bytes of a comprehension-optional attribute
/// the server ignores (none when `None`).
fn padded(message: StunMessage, padding: Option<usize>) -> StunMessage {
    match padding {
        Some(len) => message.with(Attribute::Unknown {
            kind: AttributeType(0x8123),
            value: vec![7; len],
        }),
        None => message,
    }
}

/// Asserts the answer to `request` is the error `code`, at most twice the
/// request's size; returns it.
fn error_answer(
    responder: &mut Responder,
    request: &[u8],
    transport: Transport,
    code: u16,
) -> StunMessage {
    let client = source(0x0a00_0001);
    let now = Instant::now();
    let Handled::Reply(reply) =
        responder.handle(now, request, client, Endpoint::PRIMARY, transport)
    else {
        panic!("no answer to a {}-byte request", request.len());
    };
    assert!(
        reply.payload.len() <= 2 * request.len(),
        "a {}-byte request drew a {}-byte error answer",
        request.len(),
        reply.payload.len()
    );
    let view = StunMessageView::new_checked(&reply.payload).unwrap();
    if responder.config().fingerprint {
        assert!(view.verify_fingerprint().unwrap());
    }
    let answer = view.to_message().unwrap();
    assert_eq!(answer.class, Class::ErrorResponse);
    assert_eq!(answer.error_code().unwrap().code, code);
    answer
}

fn responders() -> Vec<Responder> {
    let long = Some("x".repeat(120));
    let default = ResponderConfig::new(addr("127.0.0.1:3478")).software;
    vec![
        unlimited(false, default.clone(), true),
        unlimited(true, default, true),
        unlimited(true, long, true),
        unlimited(true, None, false),
    ]
}

fn paddings() -> impl Iterator<Item = Option<usize>> {
    std::iter::once(None).chain((0..=300).map(Some))
}

#[test]
fn bad_request_answers_are_at_most_twice_the_request() {
    for mut responder in responders() {
        for padding in paddings() {
            // A method other than Binding.
            for method in [0x002, 0x003, 0xfff] {
                let request = padded(
                    StunMessage::new(
                        Class::Request,
                        StunMethod::new(method).unwrap(),
                        TransactionId::random(),
                    ),
                    padding,
                )
                .encode()
                .unwrap();
                error_answer(&mut responder, &request, Transport::Udp, 400);
            }
            // A known attribute whose value does not parse.
            let mut bad = padded(StunMessage::binding_request(), padding)
                .encode()
                .unwrap();
            bad.extend_from_slice(&[0x00, 0x20, 0x00, 0x04, 0, 9, 0, 0]);
            let len = u16::try_from(bad.len() - 20).unwrap();
            bad[2..4].copy_from_slice(&len.to_be_bytes());
            error_answer(&mut responder, &bad, Transport::Udp, 400);
        }
    }
}

#[test]
fn unknown_attribute_answers_are_at_most_twice_the_request() {
    for mut responder in responders() {
        let rfc5780 = responder.config().alternate.is_some();
        for padding in paddings() {
            // Unknown comprehension-required attributes, 1 to 40 of them,
            // as small as they come and larger.
            for count in 1..=40u16 {
                for len in [0, 1, 4, 9] {
                    let mut message = padded(StunMessage::binding_request(), padding);
                    for k in 0..count {
                        message.push(Attribute::Unknown {
                            kind: AttributeType(0x0040 + k),
                            value: vec![1; len],
                        });
                    }
                    let request = message.encode().unwrap();
                    let answer = error_answer(&mut responder, &request, Transport::Udp, 420);
                    let Some(Attribute::UnknownAttributes(listed)) =
                        answer.get(AttributeType::UNKNOWN_ATTRIBUTES)
                    else {
                        panic!("no UNKNOWN-ATTRIBUTES");
                    };
                    assert_eq!(listed.len(), usize::from(count));
                }
            }
            // CHANGE-REQUEST and RESPONSE-PORT where they cannot be
            // honoured: without an alternate address, or over a stream.
            let change = padded(StunMessage::binding_request(), padding)
                .with(Attribute::ChangeRequest(ChangeRequest::default()))
                .encode()
                .unwrap();
            let port = padded(StunMessage::binding_request(), padding)
                .with(Attribute::ResponsePort(9))
                .encode()
                .unwrap();
            for request in [&change, &port] {
                error_answer(&mut responder, request, Transport::Tcp, 420);
                if !rfc5780 {
                    error_answer(&mut responder, request, Transport::Udp, 420);
                }
            }
        }
    }
}

#[test]
fn large_enough_requests_get_the_whole_error_answer() {
    let mut responder = unlimited(false, Some("weft-stun test".into()), true);
    let request = padded(
        StunMessage::new(
            Class::Request,
            StunMethod::new(2).unwrap(),
            TransactionId::random(),
        ),
        Some(64),
    )
    .encode()
    .unwrap();
    let answer = error_answer(&mut responder, &request, Transport::Udp, 400);
    assert_eq!(answer.error_code().unwrap().reason, "Bad Request");
    assert_eq!(answer.software(), Some("weft-stun test"));
    // The smallest request gets a shorter reason and no SOFTWARE.
    let request = StunMessage::new(
        Class::Request,
        StunMethod::new(2).unwrap(),
        TransactionId::random(),
    )
    .encode()
    .unwrap();
    assert_eq!(request.len(), 20);
    let answer = error_answer(&mut responder, &request, Transport::Udp, 400);
    assert_eq!(answer.software(), None);
    assert!("Bad Request".starts_with(&answer.error_code().unwrap().reason));
}

#[tokio::test]
async fn the_server_applies_and_counts_its_limits() {
    let server = StunServer::bind(StunServerConfig {
        listen: addr("127.0.0.1:0"),
        alternate: Some(addr("127.0.0.2:0")),
        limits: SourceLimits {
            answers: RateLimit::new(5, 0),
            redirects: RateLimit::new(2, 0),
            max_sources: 1,
        },
        ..StunServerConfig::default()
    })
    .await
    .unwrap();
    let asking = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let hearing = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let redirect = with_response_port(hearing.local_addr().unwrap().port());
    let plain = StunMessage::binding_request().encode().unwrap();
    // 3 redirects asked for (2 granted), then 10 plain requests: the 5
    // answers are 2 redirected, 1 refused redirect and 2 plain answers.
    for _ in 0..3 {
        asking.send_to(&redirect, server.primary()).await.unwrap();
    }
    for _ in 0..10 {
        asking.send_to(&plain, server.primary()).await.unwrap();
    }
    // Another source, answered after all of those were handled (one
    // socket, in order); it takes the only slot in the table.
    let other = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    other.send_to(&plain, server.primary()).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = bounded(other.recv_from(&mut buf)).await.unwrap();
    assert!(StunMessageView::new_checked(&buf[..n]).is_ok());

    // Loopback delivers before the send returns: what was sent is queued.
    let count = |socket: &UdpSocket| {
        let mut buf = [0u8; 1500];
        std::iter::from_fn(|| socket.try_recv_from(&mut buf).ok()).count()
    };
    assert_eq!(count(&hearing), 2);
    assert_eq!(count(&asking), 2);
    let stats = server.stats();
    assert_eq!(stats.received, 14);
    assert_eq!(stats.rate_limited, 8);
    assert_eq!(stats.redirects_refused, 1);
    assert_eq!(stats.sources_evicted, 1);
    assert_eq!(stats.ignored, 0);
}
