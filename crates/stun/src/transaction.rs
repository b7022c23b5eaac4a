//! Client transactions over an unreliable transport, free of I/O.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::DecodeError;
use crate::{Class, StunError, StunMessage, StunMessageView, StunMethod, TransactionId};

/// Intervals longer than this are cut to it, so that no time overflows.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// RFC 8489 §6.2.1 retransmission parameters for UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetransmitConfig {
    /// The first retransmission timeout; it doubles after each request.
    /// Default: 500 ms (the RFC's value for fixed-line links).
    pub rto: Duration,
    /// Rc: how many requests are sent in all (the first one included).
    /// Default: 7. Zero is taken as 1.
    pub rc: u32,
    /// Rm: after the last request, the transaction fails when `rm × rto`
    /// passes without a response. Default: 16.
    pub rm: u32,
}

impl Default for RetransmitConfig {
    fn default() -> RetransmitConfig {
        RetransmitConfig {
            rto: Duration::from_millis(500),
            rc: 7,
            rm: 16,
        }
    }
}

impl RetransmitConfig {
    /// The wait after request number `sent` (1-based): `rto × 2^(sent-1)`,
    /// or `rm × rto` after the last.
    fn interval_after(&self, sent: u32) -> Duration {
        let d = if sent >= self.rc.max(1) {
            self.rto.saturating_mul(self.rm)
        } else {
            let factor = 1u32.checked_shl(sent - 1).unwrap_or(u32::MAX);
            self.rto.saturating_mul(factor)
        };
        d.min(MAX_INTERVAL)
    }

    /// The total time from the first request to giving up.
    pub fn total_timeout(&self) -> Duration {
        (1..=self.rc.max(1))
            .map(|n| self.interval_after(n))
            .fold(Duration::ZERO, Duration::saturating_add)
    }
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The transaction it belongs to.
    pub transaction_id: TransactionId,
    /// Where to send it.
    pub destination: SocketAddr,
    /// The bytes.
    pub payload: Bytes,
}

/// A response matched to its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The decoded response (success or error).
    pub message: StunMessage,
    /// The response's bytes, for [`StunMessageView::verify_integrity`].
    pub raw: Bytes,
    /// Where it came from.
    pub source: SocketAddr,
    /// Time from the first request to the response.
    pub elapsed: Duration,
    /// How many requests had been sent.
    pub requests: u32,
}

/// How a transaction ended.
#[derive(Debug)]
pub struct Outcome {
    /// The transaction.
    pub transaction_id: TransactionId,
    /// Where its requests went.
    pub destination: SocketAddr,
    /// The response, or why there is none: [`StunError::Timeout`], or
    /// [`StunError::Decode`] for a matched response whose attributes are
    /// malformed or include unknown comprehension-required ones.
    pub result: Result<Response, StunError>,
}

/// What became of a received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseMatch {
    /// It answered the transaction; its [`Outcome`] is ready.
    Matched(TransactionId),
    /// Not a STUN message, or a bad FINGERPRINT: ignored.
    Malformed,
    /// A request or indication, not a response: ignored.
    NotAResponse,
    /// No transaction in flight has this id: ignored.
    UnknownTransaction,
    /// The id is known but the datagram came from elsewhere: ignored.
    UnexpectedSource,
}

/// Counters of one [`Transactions`] (or one client socket).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Transactions started.
    pub transactions: u64,
    /// Requests sent, first ones and retransmissions.
    pub requests_sent: u64,
    /// Of those, retransmissions.
    pub retransmissions: u64,
    /// Responses matched to a transaction.
    pub responses: u64,
    /// Transactions that gave up.
    pub timeouts: u64,
    /// Datagrams ignored: not STUN, or a bad FINGERPRINT.
    pub ignored_malformed: u64,
    /// Datagrams ignored: requests or indications.
    pub ignored_not_response: u64,
    /// Datagrams ignored: no transaction with that id.
    pub ignored_unknown_transaction: u64,
    /// Datagrams ignored: right id, wrong source address.
    pub ignored_unexpected_source: u64,
}

#[derive(Debug)]
struct Entry {
    id: TransactionId,
    method: StunMethod,
    payload: Bytes,
    destination: SocketAddr,
    expect_from: SocketAddr,
    started: Instant,
    sent: u32,
    /// The next request is due (while `sent < rc`), or the give-up time.
    next: Instant,
}

/// The requests in flight on one UDP socket, with their retransmission
/// timers, free of I/O.
///
/// It is driven from outside: the caller starts requests, hands in what the
/// socket received and the current time, and asks what to send and when to
/// wake up next. No clock and no socket are touched here, which makes the
/// RFC 8489 §6.2.1 schedule testable to the millisecond.
///
/// With the defaults (RTO 500 ms, Rc 7, Rm 16) requests go out at 0, 0.5,
/// 1.5, 3.5, 7.5, 15.5 and 31.5 s, and the transaction fails at
/// 31.5 + 16 × 0.5 = 39.5 s.
///
/// ```
/// use std::time::Duration;
/// use std::time::Instant;
/// use weft_stun::{StunMessage, Transactions};
/// use weft_stun::integrity::Trailer;
/// use weft_stun::transaction::RetransmitConfig;
///
/// let mut transactions = Transactions::new(RetransmitConfig::default(), 16);
/// let t0 = Instant::now();
/// let request = StunMessage::binding_request();
/// let bytes = request.encode_with(&Trailer::fingerprint())?;
/// let server = "127.0.0.1:3478".parse().unwrap();
/// transactions.start(&request, bytes.into(), server, server, t0)?;
/// assert!(transactions.poll_transmit(t0).is_some()); // the first request
/// assert_eq!(transactions.poll_timeout(), Some(t0 + Duration::from_millis(500)));
/// # Ok::<(), weft_stun::StunError>(())
/// ```
#[derive(Debug)]
pub struct Transactions {
    config: RetransmitConfig,
    max_in_flight: usize,
    entries: Vec<Entry>,
    outcomes: VecDeque<Outcome>,
    stats: ClientStats,
}

impl Transactions {
    /// No transactions yet; at most `max_in_flight` at once (at least 1).
    pub fn new(config: RetransmitConfig, max_in_flight: usize) -> Transactions {
        Transactions {
            config,
            max_in_flight: max_in_flight.max(1),
            entries: Vec::new(),
            outcomes: VecDeque::new(),
            stats: ClientStats::default(),
        }
    }

    /// Starts a transaction for `request`, whose encoded bytes are
    /// `payload`, sent to `destination`. Only a response from `expect_from`
    /// counts (usually the destination; with CHANGE-REQUEST, the address
    /// the server answers from). The first request is due at `now`.
    pub fn start(
        &mut self,
        request: &StunMessage,
        payload: Bytes,
        destination: SocketAddr,
        expect_from: SocketAddr,
        now: Instant,
    ) -> Result<TransactionId, StunError> {
        if self.entries.len() >= self.max_in_flight {
            return Err(StunError::TooManyTransactions {
                limit: self.max_in_flight,
            });
        }
        let id = request.transaction_id;
        if self.entries.iter().any(|e| e.id == id) {
            return Err(StunError::encode(
                "transaction id",
                "a transaction with this id is already in flight",
            ));
        }
        self.entries.push(Entry {
            id,
            method: request.method,
            payload,
            destination,
            expect_from: canonical(expect_from),
            started: now,
            sent: 0,
            next: now,
        });
        self.stats.transactions += 1;
        Ok(id)
    }

    /// The next datagram due at `now`, if any. Call until `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let rc = self.config.rc.max(1);
        let config = self.config;
        let entry = self
            .entries
            .iter_mut()
            .filter(|e| e.sent < rc && e.next <= now)
            .min_by_key(|e| e.next)?;
        entry.sent += 1;
        entry.next = now + config.interval_after(entry.sent);
        self.stats.requests_sent += 1;
        if entry.sent > 1 {
            self.stats.retransmissions += 1;
        }
        Some(Transmit {
            transaction_id: entry.id,
            destination: entry.destination,
            payload: entry.payload.clone(),
        })
    }

    /// When [`handle_timeout`](Self::handle_timeout) or
    /// [`poll_transmit`](Self::poll_transmit) next has work; `None` when
    /// nothing is in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.entries.iter().map(|e| e.next).min()
    }

    /// Fails the transactions whose last wait ended by `now`
    /// ([`StunError::Timeout`] outcomes).
    pub fn handle_timeout(&mut self, now: Instant) {
        let rc = self.config.rc.max(1);
        let mut i = 0;
        while i < self.entries.len() {
            let e = &self.entries[i];
            if e.sent >= rc && e.next <= now {
                let e = self.entries.swap_remove(i);
                self.stats.timeouts += 1;
                self.outcomes.push_back(Outcome {
                    transaction_id: e.id,
                    destination: e.destination,
                    result: Err(StunError::Timeout {
                        server: e.destination,
                        requests: e.sent,
                        elapsed: now.saturating_duration_since(e.started),
                    }),
                });
            } else {
                i += 1;
            }
        }
    }

    /// Hands in a datagram that arrived from `source`. A response to a
    /// transaction in flight, from the address it expects, ends the
    /// transaction; anything else is ignored and counted.
    pub fn handle_datagram(
        &mut self,
        data: &[u8],
        source: SocketAddr,
        now: Instant,
    ) -> ResponseMatch {
        let received = self.match_datagram(data, source, now);
        match received {
            ResponseMatch::Matched(_) => self.stats.responses += 1,
            ResponseMatch::Malformed => self.stats.ignored_malformed += 1,
            ResponseMatch::NotAResponse => self.stats.ignored_not_response += 1,
            ResponseMatch::UnknownTransaction => self.stats.ignored_unknown_transaction += 1,
            ResponseMatch::UnexpectedSource => self.stats.ignored_unexpected_source += 1,
        }
        received
    }

    fn match_datagram(&mut self, data: &[u8], source: SocketAddr, now: Instant) -> ResponseMatch {
        let Ok(view) = StunMessageView::new_checked(data) else {
            return ResponseMatch::Malformed;
        };
        if !view.class().is_response() {
            return ResponseMatch::NotAResponse;
        }
        let id = view.transaction_id();
        let Some(index) = self
            .entries
            .iter()
            .position(|e| e.id == id && e.method == view.method())
        else {
            return ResponseMatch::UnknownTransaction;
        };
        if canonical(source) != self.entries[index].expect_from {
            return ResponseMatch::UnexpectedSource;
        }
        if view.verify_fingerprint().is_err() {
            return ResponseMatch::Malformed;
        }
        let entry = self.entries.swap_remove(index);
        let result = decode_response(&view).map(|message| Response {
            message,
            raw: Bytes::copy_from_slice(data),
            source,
            elapsed: now.saturating_duration_since(entry.started),
            requests: entry.sent,
        });
        self.outcomes.push_back(Outcome {
            transaction_id: id,
            destination: entry.destination,
            result,
        });
        ResponseMatch::Matched(id)
    }

    /// The next finished transaction, if any.
    pub fn poll_outcome(&mut self) -> Option<Outcome> {
        self.outcomes.pop_front()
    }

    /// Forgets a transaction (its caller gave up); no outcome follows.
    /// Returns whether it was in flight.
    pub fn cancel(&mut self, id: TransactionId) -> bool {
        match self.entries.iter().position(|e| e.id == id) {
            Some(i) => {
                self.entries.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// How many transactions are in flight.
    pub fn in_flight(&self) -> usize {
        self.entries.len()
    }

    /// The counters so far.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }
}

/// Decodes a matched response, refusing unknown comprehension-required
/// attributes in a success response (RFC 8489 §6.3.3).
fn decode_response(view: &StunMessageView<'_>) -> Result<StunMessage, StunError> {
    let message = view.to_message()?;
    if message.class == Class::SuccessResponse {
        let unknown = message.unknown_comprehension_required();
        if !unknown.is_empty() {
            return Err(DecodeError::UnknownComprehensionRequired(unknown).into());
        }
    }
    Ok(message)
}

/// An IPv4-mapped IPv6 address as plain IPv4, so that a dual-stack socket's
/// view of a sender compares equal to the IPv4 address.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Attribute;
    use crate::integrity::Trailer;

    fn server() -> SocketAddr {
        "127.0.0.1:3478".parse().unwrap()
    }

    fn start(t: &mut Transactions, now: Instant) -> StunMessage {
        let request = StunMessage::binding_request();
        let bytes = request.encode_with(&Trailer::fingerprint()).unwrap();
        t.start(&request, bytes.into(), server(), server(), now)
            .unwrap();
        request
    }

    fn response_to(request: &StunMessage) -> Vec<u8> {
        StunMessage::new(
            Class::SuccessResponse,
            StunMethod::BINDING,
            request.transaction_id,
        )
        .with(Attribute::XorMappedAddress(
            "192.0.2.7:999".parse().unwrap(),
        ))
        .encode_with(&Trailer::fingerprint())
        .unwrap()
    }

    #[test]
    fn rfc_schedule_then_timeout_at_39_5_s() {
        let mut t = Transactions::new(RetransmitConfig::default(), 4);
        let t0 = Instant::now();
        start(&mut t, t0);
        let mut sent_at = Vec::new();
        let mut now = t0;
        loop {
            t.handle_timeout(now);
            while t.poll_transmit(now).is_some() {
                sent_at.push((now - t0).as_millis());
            }
            if let Some(outcome) = t.poll_outcome() {
                match outcome.result {
                    Err(StunError::Timeout {
                        requests, elapsed, ..
                    }) => {
                        assert_eq!(requests, 7);
                        assert_eq!(elapsed, Duration::from_millis(39_500));
                    }
                    other => panic!("expected a timeout, got {other:?}"),
                }
                break;
            }
            now = t.poll_timeout().unwrap();
        }
        assert_eq!(sent_at, [0, 500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(now - t0, Duration::from_millis(39_500));
        assert_eq!(
            RetransmitConfig::default().total_timeout(),
            Duration::from_millis(39_500)
        );
        assert_eq!(t.stats().retransmissions, 6);
        assert_eq!(t.stats().timeouts, 1);
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn responses_match_by_id_and_source() {
        let mut t = Transactions::new(RetransmitConfig::default(), 4);
        let now = Instant::now();
        let a = start(&mut t, now);
        let b = start(&mut t, now);
        assert!(t.poll_transmit(now).is_some());
        assert!(t.poll_transmit(now).is_some());
        assert!(t.poll_transmit(now).is_none());

        let other: SocketAddr = "127.0.0.9:3478".parse().unwrap();
        assert_eq!(
            t.handle_datagram(&response_to(&a), other, now),
            ResponseMatch::UnexpectedSource
        );
        let stranger = StunMessage::binding_request();
        assert_eq!(
            t.handle_datagram(&response_to(&stranger), server(), now),
            ResponseMatch::UnknownTransaction
        );
        assert_eq!(
            t.handle_datagram(b"garbage", server(), now),
            ResponseMatch::Malformed
        );
        assert_eq!(
            t.handle_datagram(&a.encode().unwrap(), server(), now),
            ResponseMatch::NotAResponse
        );
        let later = now + Duration::from_millis(20);
        assert_eq!(
            t.handle_datagram(&response_to(&b), server(), later),
            ResponseMatch::Matched(b.transaction_id)
        );
        let outcome = t.poll_outcome().unwrap();
        assert_eq!(outcome.transaction_id, b.transaction_id);
        let response = outcome.result.unwrap();
        assert_eq!(
            response.message.mapped_address(),
            Some("192.0.2.7:999".parse().unwrap())
        );
        assert_eq!(response.elapsed, Duration::from_millis(20));
        assert_eq!(t.in_flight(), 1);
        // A dual-stack socket reports IPv4 senders as mapped IPv6.
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:3478".parse().unwrap();
        assert_eq!(
            t.handle_datagram(&response_to(&a), mapped, later),
            ResponseMatch::Matched(a.transaction_id)
        );
        let s = t.stats();
        assert_eq!(
            (
                s.responses,
                s.ignored_unexpected_source,
                s.ignored_unknown_transaction,
                s.ignored_malformed,
                s.ignored_not_response
            ),
            (2, 1, 1, 1, 1)
        );
    }

    #[test]
    fn bounded_and_cancellable() {
        let mut t = Transactions::new(RetransmitConfig::default(), 1);
        let now = Instant::now();
        let a = start(&mut t, now);
        let request = StunMessage::binding_request();
        assert!(matches!(
            t.start(&request, Bytes::new(), server(), server(), now),
            Err(StunError::TooManyTransactions { limit: 1 })
        ));
        assert!(t.cancel(a.transaction_id));
        assert_eq!(t.poll_timeout(), None);
        assert!(t.poll_transmit(now).is_none());
    }

    #[test]
    fn unknown_required_attribute_in_a_success_fails_the_transaction() {
        let mut t = Transactions::new(RetransmitConfig::default(), 4);
        let now = Instant::now();
        let a = start(&mut t, now);
        let bytes = StunMessage::new(
            Class::SuccessResponse,
            StunMethod::BINDING,
            a.transaction_id,
        )
        .with(Attribute::Unknown {
            kind: crate::attribute::AttributeType(0x7777),
            value: vec![],
        })
        .encode()
        .unwrap();
        assert!(matches!(
            t.handle_datagram(&bytes, server(), now),
            ResponseMatch::Matched(_)
        ));
        let outcome = t.poll_outcome().unwrap();
        assert!(matches!(
            outcome.result,
            Err(StunError::Decode(
                DecodeError::UnknownComprehensionRequired(_)
            ))
        ));
    }

    #[test]
    fn huge_settings_do_not_overflow() {
        let config = RetransmitConfig {
            rto: Duration::from_secs(u64::MAX / 4),
            rc: 100,
            rm: u32::MAX,
        };
        let mut t = Transactions::new(config, 1);
        let now = Instant::now();
        start(&mut t, now);
        assert!(t.poll_transmit(now).is_some());
        assert_eq!(t.poll_timeout(), Some(now + MAX_INTERVAL));
        assert!(config.total_timeout() > Duration::from_secs(3600));
    }
}
