//! Counting the datagrams on a QUIC socket that are not QUIC packets.
//!
//! quinn drops what it cannot use without counting it, so the socket under
//! each endpoint we make looks at every datagram first and counts those
//! that cannot be a QUIC packet of any connection ([`is_not_quic`]) in
//! [`LinkStats::quic_datagrams_dropped`](crate::LinkStats::quic_datagrams_dropped);
//! quinn then drops them as before. Datagrams that look like QUIC but fail
//! authentication, or name no connection, are dropped by quinn alone and
//! are not counted: telling them apart needs its keys and tables.
//! Datagrams that are STUN by RFC 7983 are not QUIC's either: they go to
//! the endpoint's STUN channel ([`stun`](super::stun)), not to quinn, and
//! are not garbage.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

use super::stun::{Sender, StunInbox, is_stun, split_off_stun};

/// The fixed bit: set in every QUIC version 1 packet, long or short
/// header, once greasing it is off (as on every endpoint we make).
const FIXED_BIT: u8 = 0x40;
/// The form bit: set in long headers.
const LONG_HEADER: u8 = 0x80;
/// The smallest datagram that carries a client's Initial (RFC 9000 §14.1).
const MIN_INITIAL_DATAGRAM: usize = 1200;
/// The longest connection ID of QUIC version 1.
const MAX_CID_LEN: usize = 20;

/// Whether `datagram` cannot be a QUIC packet: empty, without the fixed
/// bit (outside a version negotiation), a long header cut short or with a
/// connection ID longer than version 1 allows, or a version 1 Initial in a
/// datagram shorter than QUIC requires of Initials.
pub(crate) fn is_not_quic(datagram: &[u8]) -> bool {
    let Some(&first) = datagram.first() else {
        return true;
    };
    if first & LONG_HEADER == 0 {
        return first & FIXED_BIT == 0;
    }
    // Long header: first byte, version, DCID length and DCID, SCID length.
    let Some(version) = datagram.get(1..5) else {
        return true;
    };
    let version = u32::from_be_bytes(version.try_into().expect("four bytes"));
    if version == 0 {
        // Version negotiation: the rest of its first byte is arbitrary.
        return false;
    }
    if first & FIXED_BIT == 0 {
        return true;
    }
    let Some(&dcid_len) = datagram.get(5) else {
        return true;
    };
    let scid_at = 6 + usize::from(dcid_len);
    if version == 1 && usize::from(dcid_len) > MAX_CID_LEN {
        return true;
    }
    let Some(&scid_len) = datagram.get(scid_at) else {
        return true;
    };
    if version == 1 && usize::from(scid_len) > MAX_CID_LEN {
        return true;
    }
    let initial = (first >> 4) & 0b11 == 0;
    version == 1 && initial && datagram.len() < MIN_INITIAL_DATAGRAM
}

/// A UDP socket for quinn that counts what [`is_not_quic`] calls garbage
/// and hands STUN datagrams (RFC 7983) to the endpoint's [`StunInbox`]
/// instead of quinn.
pub(crate) struct CountingSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    dropped: Arc<AtomicU64>,
    stun: Arc<StunInbox>,
    /// The duplicate of the socket that STUN replies leave through while
    /// this is the endpoint's socket.
    sender: Arc<Sender>,
}

impl CountingSocket {
    /// `socket` for quinn, counting into `dropped` and handing STUN to
    /// `stun`; and the sender that answers STUN from it, which the caller
    /// gives `stun` once the endpoint uses the socket.
    pub(crate) fn wrap(
        socket: std::net::UdpSocket,
        dropped: Arc<AtomicU64>,
        stun: Arc<StunInbox>,
    ) -> io::Result<(Arc<dyn AsyncUdpSocket>, Arc<Sender>)> {
        let sender = super::stun::sender(&socket)?;
        let inner = quinn::Runtime::wrap_udp_socket(&quinn::TokioRuntime, socket)?;
        let wrapped = CountingSocket {
            inner,
            dropped,
            stun,
            sender: sender.clone(),
        };
        Ok((Arc::new(wrapped), sender))
    }
}

impl Drop for CountingSocket {
    fn drop(&mut self) {
        self.stun.closed(&self.sender);
    }
}

impl fmt::Debug for CountingSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountingSocket")
            .field("inner", &self.inner)
            .finish()
    }
}

impl AsyncUdpSocket for CountingSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let received = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(n)) = &received {
            let mut garbage = 0u64;
            for (buf, meta) in bufs.iter_mut().zip(meta.iter_mut()).take(*n) {
                // Coalesced receives (GRO) hold several datagrams of
                // `stride` bytes each.
                let stride = meta.stride.max(1);
                if buf[..meta.len].chunks(stride).any(is_stun) {
                    let from = meta.addr;
                    meta.len = split_off_stun(&mut buf[..meta.len], stride, |d| {
                        self.stun.offer(d, from);
                    });
                }
                garbage += buf[..meta.len]
                    .chunks(stride)
                    .filter(|d| is_not_quic(d))
                    .count() as u64;
            }
            if garbage > 0 {
                self.dropped.fetch_add(garbage, Ordering::Relaxed);
            }
        }
        received
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long header of `version` with the given first byte and CID
    /// lengths, padded to `len`.
    fn long(first: u8, version: u32, dcid: u8, scid: u8, len: usize) -> Vec<u8> {
        let mut d = vec![first];
        d.extend_from_slice(&version.to_be_bytes());
        d.push(dcid);
        d.extend(std::iter::repeat_n(7, usize::from(dcid)));
        d.push(scid);
        d.extend(std::iter::repeat_n(9, usize::from(scid)));
        d.resize(len.max(d.len()), 0);
        d
    }

    #[test]
    fn quic_packets_pass() {
        // A client's Initial, a Handshake packet, a short header, and a
        // version negotiation with its arbitrary first byte.
        assert!(!is_not_quic(&long(0xc3, 1, 8, 8, 1200)));
        assert!(!is_not_quic(&long(0xe1, 1, 8, 8, 60)));
        assert!(!is_not_quic(&[0x41, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
        assert!(!is_not_quic(&long(0x80, 0, 8, 8, 30)));
        // Another version's long header is not judged beyond its form.
        assert!(!is_not_quic(&long(0xc0, 0xff00_001d, 30, 0, 40)));
    }

    #[test]
    fn what_cannot_be_quic_is_garbage() {
        assert!(is_not_quic(&[]));
        assert!(
            is_not_quic(&[0, 0, 0, 7]),
            "short header without the fixed bit"
        );
        assert!(
            is_not_quic(&long(0x80, 1, 8, 8, 1200)),
            "long header without it"
        );
        assert!(is_not_quic(&[0xc0, 0, 0]), "cut in the version");
        assert!(is_not_quic(&long(0xc0, 1, 21, 0, 1200)), "DCID too long");
        assert!(is_not_quic(&long(0xc0, 1, 8, 21, 1200)), "SCID too long");
        assert!(is_not_quic(&long(0xc0, 1, 8, 8, 1199)), "short Initial");
        assert!(
            is_not_quic(&long(0xc0, 1, 8, 8, 30)[..10]),
            "cut in the DCID"
        );
    }
}
