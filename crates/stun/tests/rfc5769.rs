//! The test vectors of RFC 5769 ("Test Vectors for STUN"), typed in from
//! the RFC's section 2, plus RFC 8489 appendix B.1 (with errata 6268) for
//! MESSAGE-INTEGRITY-SHA256, PASSWORD-ALGORITHM and USERHASH.

use std::net::SocketAddr;

use weft_stun::{Attribute, Class, StunMessage, StunMessageView, StunMethod, TransactionId};

use weft_stun::attribute::{AttributeType, PasswordAlgorithmParams};

use weft_stun::integrity::{Key, PasswordAlgorithm, Trailer, userhash};

/// Bytes from whitespace-separated hex pairs.
fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect()
}

/// RFC 5769 §2.1: request with SOFTWARE, PRIORITY, ICE-CONTROLLED,
/// USERNAME, MESSAGE-INTEGRITY and FINGERPRINT. Padding bytes are spaces.
fn sample_request() -> Vec<u8> {
    hex("00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
         00 24 00 04 6e 00 01 ff
         80 29 00 08 93 2f f9 b1 51 26 3b 36
         00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
         00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
         80 28 00 04 e5 7a 3b cf")
}

/// RFC 5769 §2.2: IPv4 response, 192.0.2.1 port 32853.
fn sample_ipv4_response() -> Vec<u8> {
    hex("01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
         00 20 00 08 00 01 a1 47 e1 12 a6 43
         00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
         80 28 00 04 c0 7d 4c 96")
}

/// RFC 5769 §2.3: IPv6 response, 2001:db8:1234:5678:11:2233:4455:6677
/// port 32853.
fn sample_ipv6_response() -> Vec<u8> {
    hex("01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
         00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
         00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
         80 28 00 04 c8 fb 0b 4c")
}

/// RFC 5769 §2.4: request with long-term authentication (USERNAME, NONCE,
/// REALM, MESSAGE-INTEGRITY; no FINGERPRINT).
fn sample_long_term_request() -> Vec<u8> {
    hex("00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
         00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
         00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46
                     53 54 76 79 36 34 73 41
         00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
         00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66")
}

const SHORT_TERM_PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";
/// U+30DE U+30C8 U+30EA U+30C3 U+30AF U+30B9.
const LONG_TERM_USERNAME: &str = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
/// The RFC's password "The<U+00AD>M<U+00AA>tr<U+2168>" after SASLprep.
const LONG_TERM_PASSWORD: &str = "TheMatrIX";
const REALM: &str = "example.org";

fn rfc_tid() -> TransactionId {
    TransactionId::new([
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ])
}

/// Re-encodes `message` (without its integrity and fingerprint values)
/// with a fresh MESSAGE-INTEGRITY and FINGERPRINT, and checks that the
/// result is the vector except for padding: the RFC pads with spaces where
/// this crate pads with zeros, so the HMACs differ, but both verify.
fn reencode_matches_up_to_padding(vector: &[u8], message: &StunMessage, key: &Key) {
    let ours = message
        .encode_with(&Trailer {
            message_integrity: Some(key),
            fingerprint: true,
            ..Trailer::default()
        })
        .unwrap();
    assert_eq!(ours.len(), vector.len());
    let view = StunMessageView::new_checked(vector).unwrap();
    let mut zero_padded = vector.to_vec();
    let mi_offset = view.get(AttributeType::MESSAGE_INTEGRITY).unwrap().offset();
    for a in view.attributes() {
        let start = a.offset() + 4 + a.value().len();
        let end = a.offset() + 4 + a.value().len().div_ceil(4) * 4;
        zero_padded[start..end].fill(0);
    }
    assert_eq!(ours[..mi_offset], zero_padded[..mi_offset]);
    let ours_view = StunMessageView::new_checked(&ours).unwrap();
    assert_eq!(
        ours_view.verify_integrity(key),
        Ok(AttributeType::MESSAGE_INTEGRITY)
    );
    assert_eq!(ours_view.verify_fingerprint(), Ok(true));
}

fn without_trailer(mut message: StunMessage) -> StunMessage {
    message.attributes.retain(|a| {
        !matches!(
            a,
            Attribute::MessageIntegrity(_) | Attribute::Fingerprint(_)
        )
    });
    message
}

#[test]
fn rfc5769_2_1_sample_request_with_short_term_authentication() {
    let bytes = sample_request();
    let view = StunMessageView::new_checked(&bytes).unwrap();
    assert_eq!(view.class(), Class::Request);
    assert_eq!(view.method(), StunMethod::BINDING);
    assert_eq!(view.transaction_id(), rfc_tid());
    let key = Key::short_term(SHORT_TERM_PASSWORD);
    assert_eq!(
        view.verify_integrity(&key),
        Ok(AttributeType::MESSAGE_INTEGRITY)
    );
    assert!(
        view.verify_integrity(&Key::short_term("wrong password"))
            .is_err()
    );
    assert_eq!(view.verify_fingerprint(), Ok(true));
    // PRIORITY (0x0024, an ICE attribute) is comprehension-required and
    // unknown here: a server would answer 420.
    assert_eq!(
        view.unknown_comprehension_required(),
        vec![AttributeType(0x0024)]
    );
    assert_eq!(
        view.get(AttributeType::SOFTWARE).unwrap().as_str(),
        Some("STUN test client")
    );

    let message = StunMessage::decode(&bytes).unwrap();
    assert_eq!(
        message.attributes,
        vec![
            Attribute::Software("STUN test client".into()),
            Attribute::Unknown {
                kind: AttributeType(0x0024),
                value: hex("6e 00 01 ff")
            },
            Attribute::Unknown {
                kind: AttributeType(0x8029),
                value: hex("93 2f f9 b1 51 26 3b 36")
            },
            Attribute::Username("evtj:h6vY".into()),
            Attribute::MessageIntegrity(
                hex("9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2")
                    .try_into()
                    .unwrap()
            ),
            Attribute::Fingerprint(0xe57a3bcf),
        ]
    );
    reencode_matches_up_to_padding(&bytes, &without_trailer(message), &key);
}

#[test]
fn rfc5769_2_2_sample_ipv4_response() {
    let bytes = sample_ipv4_response();
    let view = StunMessageView::new_checked(&bytes).unwrap();
    assert_eq!(view.class(), Class::SuccessResponse);
    let key = Key::short_term(SHORT_TERM_PASSWORD);
    assert_eq!(
        view.verify_integrity(&key),
        Ok(AttributeType::MESSAGE_INTEGRITY)
    );
    assert_eq!(view.verify_fingerprint(), Ok(true));
    assert!(view.unknown_comprehension_required().is_empty());
    let message = StunMessage::decode(&bytes).unwrap();
    let mapped: SocketAddr = "192.0.2.1:32853".parse().unwrap();
    assert_eq!(message.mapped_address(), Some(mapped));
    assert_eq!(message.software(), Some("test vector"));
    assert_eq!(message.transaction_id, rfc_tid());
    reencode_matches_up_to_padding(&bytes, &without_trailer(message), &key);
}

#[test]
fn rfc5769_2_3_sample_ipv6_response() {
    let bytes = sample_ipv6_response();
    let view = StunMessageView::new_checked(&bytes).unwrap();
    let key = Key::short_term(SHORT_TERM_PASSWORD);
    assert_eq!(
        view.verify_integrity(&key),
        Ok(AttributeType::MESSAGE_INTEGRITY)
    );
    assert_eq!(view.verify_fingerprint(), Ok(true));
    let message = StunMessage::decode(&bytes).unwrap();
    let mapped: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
        .parse()
        .unwrap();
    assert_eq!(message.mapped_address(), Some(mapped));
    assert_eq!(message.software(), Some("test vector"));
    reencode_matches_up_to_padding(&bytes, &without_trailer(message), &key);
}

#[test]
fn rfc5769_2_4_sample_request_with_long_term_authentication() {
    let bytes = sample_long_term_request();
    let view = StunMessageView::new_checked(&bytes).unwrap();
    assert_eq!(view.class(), Class::Request);
    let key = Key::long_term(LONG_TERM_USERNAME, REALM, LONG_TERM_PASSWORD);
    assert_eq!(
        view.verify_integrity(&key),
        Ok(AttributeType::MESSAGE_INTEGRITY)
    );
    assert_eq!(view.verify_fingerprint(), Ok(false), "no FINGERPRINT");
    let message = StunMessage::decode(&bytes).unwrap();
    // MD5 is the default when the message names no PASSWORD-ALGORITHM.
    assert_eq!(
        PasswordAlgorithm::of(&message),
        Some(PasswordAlgorithm::Md5)
    );
    assert_eq!(
        &message.attributes[..3],
        &[
            Attribute::Username(LONG_TERM_USERNAME.into()),
            Attribute::Nonce("f//499k954d6OL34oL9FSTvy64sA".into()),
            Attribute::Realm(REALM.into()),
        ]
    );
    // Zero padding throughout: the encoder reproduces the vector exactly.
    let tid = TransactionId::new([
        0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e,
    ]);
    let built = StunMessage::new(Class::Request, StunMethod::BINDING, tid)
        .with(Attribute::Username(LONG_TERM_USERNAME.into()))
        .with(Attribute::Nonce("f//499k954d6OL34oL9FSTvy64sA".into()))
        .with(Attribute::Realm(REALM.into()));
    let encoded = built
        .encode_with(&Trailer {
            message_integrity: Some(&key),
            ..Trailer::default()
        })
        .unwrap();
    assert_eq!(encoded, bytes);
}

/// RFC 8489 appendix B.1 as corrected by errata 6268.
#[test]
fn rfc8489_sample_request_with_sha256_integrity_and_userhash() {
    let bytes = hex("00 01 00 90 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
         00 1e 00 20 4a 3c f3 8f ef 69 92 bd a9 52 c6 78 04 17 da 0f
                     24 81 94 15 56 9e 60 b2 05 c4 6e 41 40 7f 17 04
         00 15 00 29 6f 62 4d 61 74 4a 6f 73 32 41 41 41 43 66 2f 2f
                     34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39
                     46 53 54 76 79 36 34 73 41 00 00 00
         00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
         00 1d 00 04 00 02 00 00
         00 1c 00 20 b5 c7 bf 00 5b 6c 52 a2 1c 51 c5 e8 92 f8 19 24
                     13 62 96 cb 92 7c 43 14 93 09 27 8c c6 51 8e 65");
    let view = StunMessageView::new_checked(&bytes).unwrap();
    let message = view.to_message().unwrap();
    let algorithm = PasswordAlgorithm::of(&message).unwrap();
    assert_eq!(algorithm, PasswordAlgorithm::Sha256);
    let key = Key::long_term_with(algorithm, LONG_TERM_USERNAME, REALM, LONG_TERM_PASSWORD);
    assert_eq!(
        view.verify_integrity(&key),
        Ok(AttributeType::MESSAGE_INTEGRITY_SHA256)
    );
    assert_eq!(
        message.get(AttributeType::USERHASH),
        Some(&Attribute::Userhash(userhash(LONG_TERM_USERNAME, REALM)))
    );
    let built = StunMessage::new(Class::Request, StunMethod::BINDING, message.transaction_id)
        .with(Attribute::Userhash(userhash(LONG_TERM_USERNAME, REALM)))
        .with(Attribute::Nonce(
            "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA".into(),
        ))
        .with(Attribute::Realm(REALM.into()))
        .with(Attribute::PasswordAlgorithm(PasswordAlgorithmParams {
            algorithm: 2,
            parameters: vec![],
        }));
    let encoded = built
        .encode_with(&Trailer {
            message_integrity_sha256: Some(&key),
            ..Trailer::default()
        })
        .unwrap();
    assert_eq!(encoded, bytes);
}

#[test]
fn altered_vectors_fail_their_checks() {
    let key = Key::short_term(SHORT_TERM_PASSWORD);
    for vector in [
        sample_request(),
        sample_ipv4_response(),
        sample_ipv6_response(),
    ] {
        let mut bytes = vector.clone();
        bytes[25] ^= 0x01; // inside the first attribute's value
        let view = StunMessageView::new_checked(&bytes).unwrap();
        assert!(view.verify_integrity(&key).is_err());
        assert!(view.verify_fingerprint().is_err());
    }
}
