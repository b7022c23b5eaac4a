//! Arbitrary bytes through the STUN codec and the server's request
//! handling: never a panic, whatever decodes encodes back to bytes that
//! decode to the same message, and no error answer is larger than twice
//! its request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_stun::integrity::Key;
use weft_stun::responder::{Endpoint, Handled, ResponderConfig};
use weft_stun::url::Transport;
use weft_stun::{Class, Responder, StunMessage, StunMessageView};

fuzz_target!(|input: &[u8]| {
    let _ = StunMessageView::frame_len(input);
    if let Ok(view) = StunMessageView::new_checked(input) {
        let _ = view.verify_integrity(&Key::short_term("fuzz"));
        let _ = view.verify_fingerprint();
        let _ = view.unknown_comprehension_required();
        let tid = view.transaction_id();
        for attribute in view.attributes() {
            let _ = attribute.parse(&tid);
        }
    }
    if let Ok(message) = StunMessage::decode(input) {
        let bytes = message.encode().expect("a decoded message encodes");
        let again = StunMessage::decode(&bytes).expect("an encoded message decodes");
        assert_eq!(again, message);
    }
    let mut config = ResponderConfig::new("127.0.0.1:3478".parse().unwrap());
    config.alternate = Some("127.0.0.2:3479".parse().unwrap());
    let mut responder = Responder::new(config);
    let source = "127.0.0.1:40000".parse().unwrap();
    let now = std::time::Instant::now();
    let mut answers: Vec<Handled> = Endpoint::ALL
        .into_iter()
        .map(|endpoint| responder.handle(now, input, source, endpoint, Transport::Udp))
        .collect();
    answers.push(responder.handle(now, input, source, Endpoint::PRIMARY, Transport::Tcp));
    for answer in answers {
        // An error answer is never more than twice its request.
        if let Handled::Reply(reply) = answer {
            if let Ok(view) = StunMessageView::new_checked(&reply.payload) {
                if view.class() == Class::ErrorResponse {
                    assert!(reply.payload.len() <= 2 * input.len());
                }
            }
        }
    }
});
