//! The crate's error types: [`StunError`] for every operation, with
//! [`DecodeError`] naming what is wrong with bytes that are not a valid STUN
//! message.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::attribute::AttributeType;

/// Why bytes are not a valid STUN message, or why a message fails a check.
/// Each variant names the part that is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than a STUN header (20).
    #[error("{len} bytes is too short for a STUN header (20 bytes)")]
    TooShort {
        /// How many bytes there were.
        len: usize,
    },
    /// The two most significant bits of the first byte are not zero.
    #[error("the first byte is 0x{first_byte:02x}: a STUN message starts with two zero bits")]
    LeadingBits {
        /// The first byte.
        first_byte: u8,
    },
    /// The magic cookie is not 0x2112A442 (an RFC 3489 message, or not STUN).
    #[error("magic cookie is 0x{found:08x}, expected 0x2112a442")]
    BadMagicCookie {
        /// The four bytes found where the cookie belongs.
        found: u32,
    },
    /// The header's message length is not a multiple of 4.
    #[error("message length {length} is not a multiple of 4")]
    UnalignedLength {
        /// The header's length field.
        length: u16,
    },
    /// The header's message length disagrees with the bytes present.
    #[error("the header announces {declared} bytes of attributes but {available} follow it")]
    LengthMismatch {
        /// The header's length field.
        declared: usize,
        /// Bytes after the header.
        available: usize,
    },
    /// An attribute (header or value with padding) runs past the message end.
    #[error(
        "attribute {attribute} at offset {offset} needs {needed} bytes, only {available} remain"
    )]
    TruncatedAttribute {
        /// The attribute's type, or 0 when even its header is cut.
        attribute: AttributeType,
        /// Where the attribute starts, from the start of the message.
        offset: usize,
        /// Bytes the attribute (header, value, padding) needs.
        needed: usize,
        /// Bytes left in the message.
        available: usize,
    },
    /// An attribute's value has the wrong form for its type.
    #[error("bad {attribute} attribute: {reason}")]
    BadAttribute {
        /// The attribute's type.
        attribute: AttributeType,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A text attribute's value is longer than the RFC allows.
    #[error("{attribute} is {len} bytes, the most allowed is {max}")]
    AttributeTooLong {
        /// The attribute's type.
        attribute: AttributeType,
        /// Its value's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A text attribute's value is not UTF-8.
    #[error("{attribute} is not valid UTF-8")]
    InvalidUtf8 {
        /// The attribute's type.
        attribute: AttributeType,
    },
    /// Comprehension-required attributes (type below 0x8000) this crate does
    /// not know. A server answers 420 (Unknown Attribute) listing them.
    #[error("unknown comprehension-required attributes: {}", list(.0))]
    UnknownComprehensionRequired(Vec<AttributeType>),
    /// A required attribute is absent.
    #[error("no {0} attribute")]
    MissingAttribute(AttributeType),
    /// MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 does not match: the key
    /// is wrong or the message was altered.
    #[error("{attribute} does not match (wrong key, or the message was altered)")]
    IntegrityMismatch {
        /// Which integrity attribute failed.
        attribute: AttributeType,
    },
    /// FINGERPRINT does not match the message's CRC-32.
    #[error("FINGERPRINT is 0x{found:08x} but the message's is 0x{computed:08x}")]
    FingerprintMismatch {
        /// The attribute's value.
        found: u32,
        /// The value computed over the message.
        computed: u32,
    },
}

fn list(types: &[AttributeType]) -> String {
    types
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything that can go wrong in weft-stun. Match on the variant; the
/// enum grows, so keep a catch-all arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StunError {
    /// Bytes that are not a valid STUN message, or a failed integrity or
    /// fingerprint check.
    #[error("malformed STUN message: {0}")]
    Decode(#[from] DecodeError),
    /// A message or attribute cannot be encoded (too long, out of range).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// The attribute or part concerned.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// No response after all retransmissions (RFC 8489 §6.2.1), or a stream
    /// transaction that outlived its timeout.
    #[error("no response from {server} after {requests} request(s) in {elapsed:?}")]
    Timeout {
        /// Where the requests went.
        server: SocketAddr,
        /// How many requests were sent (Rc over UDP, 1 over TCP and TLS).
        requests: u32,
        /// Time from the first request to giving up.
        elapsed: Duration,
    },
    /// The server answered with an error response.
    #[error("{server} answered with error {code}: {reason}")]
    ErrorResponse {
        /// The server.
        server: SocketAddr,
        /// The ERROR-CODE (300 to 699).
        code: u16,
        /// The reason phrase.
        reason: String,
    },
    /// A success response lacks an attribute the operation needs.
    #[error("the response from {server} has no {missing}")]
    IncompleteResponse {
        /// The server.
        server: SocketAddr,
        /// What is missing (for a Binding: XOR-MAPPED-ADDRESS).
        missing: AttributeType,
    },
    /// The server does not do RFC 5780 (no OTHER-ADDRESS), so NAT behaviour
    /// cannot be discovered with it.
    #[error("{server} does not support RFC 5780 NAT behaviour discovery (no OTHER-ADDRESS)")]
    Rfc5780Unsupported {
        /// The server.
        server: SocketAddr,
    },
    /// A server URL did not parse.
    #[error("bad STUN server `{input}`: {reason}")]
    BadUrl {
        /// The whole input.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// DNS resolution failed or gave no usable address.
    #[error("resolving `{host}` failed: {source}")]
    Dns {
        /// The name being resolved.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// DNS resolution took longer than the configured timeout.
    #[error("resolving `{host}` timed out after {timeout:?}")]
    DnsTimeout {
        /// The name being resolved.
        host: String,
        /// The configured limit.
        timeout: Duration,
    },
    /// A `tls://` server was given without a TLS client configuration.
    #[error("{server} is a TLS server and no TLS client configuration was given")]
    TlsConfigMissing {
        /// The server URL.
        server: String,
    },
    /// The TLS handshake failed, or the host is not a valid TLS server name.
    #[error("TLS with {server} failed: {source}")]
    Tls {
        /// The server.
        server: String,
        /// What rustls (or the name check) reported.
        #[source]
        source: io::Error,
    },
    /// Binding to an interface is not permitted (needs CAP_NET_RAW on Linux).
    #[error("binding to interface `{interface}` is not permitted: {source}")]
    InterfacePermission {
        /// The interface name.
        interface: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// The connection closed before a response arrived (TCP, TLS).
    #[error("{server} closed the connection before answering")]
    ConnectionClosed {
        /// The server.
        server: SocketAddr,
    },
    /// The client already has its limit of transactions in flight.
    #[error("too many transactions in flight (the limit is {limit})")]
    TooManyTransactions {
        /// The configured limit.
        limit: usize,
    },
    /// The client's socket task has ended.
    #[error("the STUN client is closed")]
    Closed,
    /// The operation does not apply here (for example binding to an
    /// interface on a system without SO_BINDTODEVICE).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An operating system I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

impl StunError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> StunError {
        StunError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn encode(what: impl Into<String>, reason: impl Into<String>) -> StunError {
        StunError::Encode {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Whether this is a [`StunError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, StunError::Timeout { .. })
    }
}
