//! Property tests: encode then decode is the identity for the owned
//! representation, and no input makes the decoder or the server panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use weft_stun::attribute::{AttributeType, ChangeRequest, ErrorCode, PasswordAlgorithmParams};
use weft_stun::integrity::{Key, Trailer};
use weft_stun::responder::{Endpoint, ResponderConfig};
use weft_stun::url::Transport;
use weft_stun::{
    Attribute, Class, Responder, StunMessage, StunMessageView, StunMethod, TransactionId,
};

fn address() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

/// Text of at most `max` bytes, any Unicode.
fn text(max: usize) -> impl Strategy<Value = String> {
    "\\PC{0,64}".prop_map(move |mut s: String| {
        while s.len() > max {
            s.pop();
        }
        s
    })
}

fn algorithm() -> impl Strategy<Value = PasswordAlgorithmParams> {
    (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..9)).prop_map(
        |(algorithm, parameters)| PasswordAlgorithmParams {
            algorithm,
            parameters,
        },
    )
}

/// A type this crate does not know.
fn unknown_type() -> impl Strategy<Value = AttributeType> {
    any::<u16>()
        .prop_map(AttributeType)
        .prop_filter("unknown types only", |t| !t.is_known())
}

/// Any attribute except the three that belong at the end.
fn body_attribute() -> impl Strategy<Value = Attribute> {
    prop_oneof![
        address().prop_map(Attribute::MappedAddress),
        address().prop_map(Attribute::XorMappedAddress),
        text(512).prop_map(Attribute::Username),
        (300u16..700, text(100))
            .prop_map(|(code, reason)| Attribute::ErrorCode(ErrorCode::new(code, reason))),
        text(763).prop_map(Attribute::Realm),
        text(763).prop_map(Attribute::Nonce),
        algorithm().prop_map(Attribute::PasswordAlgorithm),
        any::<[u8; 32]>().prop_map(Attribute::Userhash),
        proptest::collection::vec(any::<u16>().prop_map(AttributeType), 0..6)
            .prop_map(Attribute::UnknownAttributes),
        proptest::collection::vec(algorithm(), 0..4).prop_map(Attribute::PasswordAlgorithms),
        text(763).prop_map(Attribute::AlternateDomain),
        text(763).prop_map(Attribute::Software),
        address().prop_map(Attribute::AlternateServer),
        (any::<bool>(), any::<bool>()).prop_map(|(change_ip, change_port)| {
            Attribute::ChangeRequest(ChangeRequest {
                change_ip,
                change_port,
            })
        }),
        address().prop_map(Attribute::ResponseOrigin),
        address().prop_map(Attribute::OtherAddress),
        any::<u16>().prop_map(Attribute::ResponsePort),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Attribute::Padding),
        address().prop_map(Attribute::ChangedAddress),
        address().prop_map(Attribute::SourceAddress),
        (
            unknown_type(),
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(kind, value)| Attribute::Unknown { kind, value }),
    ]
}

/// The trailing attributes, in the RFC's order, each optional.
fn trailer_attributes() -> impl Strategy<Value = Vec<Attribute>> {
    (
        proptest::option::of(any::<[u8; 20]>().prop_map(Attribute::MessageIntegrity)),
        proptest::option::of(
            (4usize..=8)
                .prop_flat_map(|words| proptest::collection::vec(any::<u8>(), words * 4))
                .prop_map(Attribute::MessageIntegritySha256),
        ),
        proptest::option::of(any::<u32>().prop_map(Attribute::Fingerprint)),
    )
        .prop_map(|(mi, mi256, fp)| [mi, mi256, fp].into_iter().flatten().collect())
}

fn message() -> impl Strategy<Value = StunMessage> {
    (
        prop_oneof![
            Just(Class::Request),
            Just(Class::Indication),
            Just(Class::SuccessResponse),
            Just(Class::ErrorResponse),
        ],
        (0u16..=0xFFF).prop_map(|m| StunMethod::new(m).unwrap()),
        any::<[u8; 12]>().prop_map(TransactionId::new),
        proptest::collection::vec(body_attribute(), 0..8),
        trailer_attributes(),
    )
        .prop_map(|(class, method, tid, mut attributes, trailer)| {
            attributes.extend(trailer);
            StunMessage {
                class,
                method,
                transaction_id: tid,
                attributes,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_identity(m in message()) {
        let bytes = m.encode().unwrap();
        prop_assert_eq!(bytes.len() % 4, 0);
        prop_assert_eq!(StunMessageView::frame_len(&bytes), Ok(Some(bytes.len())));
        let back = StunMessage::decode(&bytes).unwrap();
        prop_assert_eq!(back, m);
    }

    #[test]
    fn computed_trailers_verify(m in message(), password in "[ -~]{0,32}") {
        let key = Key::short_term(&password);
        let bytes = m.encode_with(&Trailer {
            message_integrity: Some(&key),
            message_integrity_sha256: Some(&key),
            fingerprint: true,
        }).unwrap();
        let view = StunMessageView::new_checked(&bytes).unwrap();
        prop_assert_eq!(view.verify_integrity(&key), Ok(AttributeType::MESSAGE_INTEGRITY_SHA256));
        prop_assert_eq!(view.verify_fingerprint(), Ok(true));
        // The body survives; the trailer is replaced by the computed one.
        let back = view.to_message().unwrap();
        let body: Vec<&Attribute> = m.attributes.iter().filter(|a| !matches!(a,
            Attribute::MessageIntegrity(_) | Attribute::MessageIntegritySha256(_) | Attribute::Fingerprint(_))).collect();
        prop_assert_eq!(back.attributes.len(), body.len() + 3);
        for (a, b) in back.attributes.iter().zip(body) {
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        exercise(&bytes);
    }

    #[test]
    fn damaged_messages_never_panic(m in message(), cuts in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let mut bytes = m.encode().unwrap();
        for (at, value) in cuts {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        exercise(&bytes);
        let truncated = &bytes[..bytes.len() / 2];
        exercise(truncated);
    }
}

/// A type: mostly known ones, so that values get parsed.
fn any_type() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => prop::sample::select(vec![
            0x0001u16, 0x0003, 0x0004, 0x0005, 0x0006, 0x0008, 0x0009, 0x000A, 0x0014, 0x0015,
            0x001C, 0x001D, 0x001E, 0x0020, 0x0026, 0x0027, 0x8002, 0x8003, 0x8022, 0x8023,
            0x8028, 0x802B, 0x802C,
        ]),
        1 => any::<u16>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Well-framed messages whose attribute values are random: the values
    /// are where parsing can go wrong.
    #[test]
    fn random_attribute_values_never_panic(
        head in any::<[u8; 2]>(),
        tid in any::<[u8; 12]>(),
        attrs in proptest::collection::vec(
            (any_type(), proptest::collection::vec(any::<u8>(), 0..40), any::<u8>()), 0..6),
    ) {
        let mut bytes = vec![head[0] & 0x3f, head[1], 0, 0, 0x21, 0x12, 0xa4, 0x42];
        bytes.extend_from_slice(&tid);
        for (kind, value, pad) in attrs {
            bytes.extend_from_slice(&kind.to_be_bytes());
            bytes.extend_from_slice(&(value.len() as u16).to_be_bytes());
            bytes.extend_from_slice(&value);
            bytes.resize(bytes.len() + (4 - value.len() % 4) % 4, pad);
        }
        let len = (bytes.len() - 20) as u16;
        bytes[2..4].copy_from_slice(&len.to_be_bytes());
        prop_assert!(StunMessageView::new_checked(&bytes).is_ok());
        exercise(&bytes);
    }
}

/// Everything that reads untrusted bytes.
fn exercise(bytes: &[u8]) {
    let _ = StunMessageView::frame_len(bytes);
    if let Ok(message) = StunMessage::decode(bytes) {
        // What decodes re-encodes to the same message (the fuzz target's
        // property too).
        let again = StunMessage::decode(&message.encode().unwrap()).unwrap();
        assert_eq!(again, message);
    }
    if let Ok(view) = StunMessageView::new_checked(bytes) {
        let _ = view.verify_integrity(&Key::short_term("x"));
        let _ = view.verify_fingerprint();
        let _ = view.unknown_comprehension_required();
        for a in view.attributes() {
            let _ = a.parse(&view.transaction_id());
        }
    }
    let mut config = ResponderConfig::new("127.0.0.1:3478".parse().unwrap());
    config.alternate = Some("127.0.0.2:3479".parse().unwrap());
    let mut responder = Responder::new(config);
    let source = "127.0.0.1:5000".parse().unwrap();
    let now = std::time::Instant::now();
    let _ = responder.handle(now, bytes, source, Endpoint::PRIMARY, Transport::Udp);
    let _ = responder.handle(now, bytes, source, Endpoint::ALL[3], Transport::Tcp);
}
