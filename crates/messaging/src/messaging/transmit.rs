//! The core's [`Transmit`] on a packeter connection (a frame is queued on
//! the connection's send queue without waiting), what the core is told of
//! a connection when it comes up ([`facts`]), and how the shell ends the
//! connections the core gives up on ([`end`]).

use std::sync::Arc;

use bytes::Bytes;
use weft_link::connection::Origin;
use weft_packeter::codec::HEADER_LEN;
use weft_packeter::{PacketSender, PacketerError};

use crate::certificate::CertificateNames;
use crate::core::{Close, ConnFacts, Ending, Transmit, TxError};

impl Transmit for PacketSender {
    #[inline]
    fn try_send(&self, head: &[u8], body: &Bytes) -> Result<(), TxError> {
        match self.try_send_parts(head, body) {
            Ok(()) => Ok(()),
            Err(PacketerError::Link(weft_link::LinkError::QueueFull)) => Err(TxError::Full),
            Err(_) => Err(TxError::Closed),
        }
    }

    fn bytes_written(&self) -> u64 {
        self.connection().bytes_written()
    }
}

/// What the core is told of `sender`'s connection: whether it carries
/// datagrams, the connector that dialled it, the length prefix the
/// packeter adds to each packet on a stream (the link counts it among the
/// bytes written), and the names of the certificate its peer presented.
pub(super) fn facts(sender: &PacketSender) -> ConnFacts {
    let info = sender.info();
    ConnFacts {
        datagram: info.datagram,
        connector: match info.origin {
            Origin::Connector(id) => Some(id),
            _ => None,
        },
        inbound: matches!(info.origin, Origin::Listener(_)),
        overhead: if info.datagram { 0 } else { HEADER_LEN as u64 },
        certificate: certificate_names(sender),
        lanes: info.lanes,
        lane_of: match info.origin {
            Origin::Lane(first) => Some(first),
            _ => None,
        },
    }
}

/// Ends a connection the way the core asked.
pub(super) fn end(close: Close<PacketSender>) {
    tracing::trace!(conn = %close.conn, how = ?close.how, "connection ended by the core");
    match close.how {
        Ending::Close => close.tx.close(),
        Ending::Abort => close.tx.connection().abort(),
    }
}

/// The names of the certificate a connection's peer presented (the TLS
/// handshake verified it against the configured roots), read here so the
/// core gets plain data. A certificate whose names cannot be read binds
/// nothing.
fn certificate_names(sender: &PacketSender) -> Option<Arc<CertificateNames>> {
    let leaf = sender.info().peer_certificates.as_ref()?.first()?;
    let names = CertificateNames::from_der(leaf).unwrap_or_else(|error| {
        tracing::debug!(conn = %sender.id(), %error, "unreadable peer certificate");
        CertificateNames::default()
    });
    Some(Arc::new(names))
}
