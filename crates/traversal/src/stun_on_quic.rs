//! The rendezvous's STUN on its QUIC port: when the first listen address
//! is `quic://`, STUN and QUIC share that one UDP socket (RFC 7983), so
//! the rendezvous answers STUN from the datagrams the link sets aside for
//! it (weft-link's `StunChannel`) instead of binding a socket of its own.

use std::net::SocketAddr;

use weft_link::quic::StunChannel;
use weft_stun::Responder;
use weft_stun::responder::{Endpoint, Handled, ResponderConfig};
use weft_stun::url::Transport;

/// Answers the STUN requests that arrive on `channel`, the socket bound
/// at `primary`, until the socket is closed. Only Binding on the primary
/// address: RFC 5780's other addresses need sockets of their own.
pub(crate) async fn answer(channel: StunChannel, primary: SocketAddr) {
    let mut responder = Responder::new(ResponderConfig::new(primary));
    while let Some((request, from)) = channel.recv().await {
        let now = tokio::time::Instant::now().into_std();
        let handled = responder.handle(now, &request, from, Endpoint::PRIMARY, Transport::Udp);
        let Handled::Reply(reply) = handled else {
            continue;
        };
        if let Err(error) = channel.send_to(&reply.payload, reply.to).await {
            tracing::debug!(to = %reply.to, %error, "rendezvous: a STUN answer on the QUIC port failed");
        }
    }
}
