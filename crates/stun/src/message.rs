//! STUN messages: a borrowed, checked view over bytes ([`StunMessageView`]) and
//! an owned representation ([`StunMessage`]) that encodes back to bytes.

use std::fmt;
use std::net::SocketAddr;

use crate::attribute::{AttributeType, ChangeRequest, ErrorCode};
use crate::error::DecodeError;
use crate::integrity::{self, Key, Trailer};
use crate::{Attribute, StunError};

/// The magic cookie, bytes 4 to 7 of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// The length of the message header.
pub const HEADER_LEN: usize = 20;
/// The largest message: a header and 65535 bytes of attributes (at most
/// 65532, as the length is a multiple of 4).
pub const MAX_MESSAGE_LEN: usize = HEADER_LEN + 0xFFFC;

/// A message's class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// A request, answered by a response.
    Request,
    /// An indication, not answered.
    Indication,
    /// A success response.
    SuccessResponse,
    /// An error response.
    ErrorResponse,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::SuccessResponse => 0b10,
            Class::ErrorResponse => 0b11,
        }
    }

    fn from_bits(bits: u16) -> Class {
        match bits & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::SuccessResponse,
            _ => Class::ErrorResponse,
        }
    }

    /// Whether the class is a success or error response.
    pub fn is_response(self) -> bool {
        matches!(self, Class::SuccessResponse | Class::ErrorResponse)
    }
}

/// A 12-bit STUN method. Binding (1) is the only method of RFC 8489.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StunMethod(u16);

impl StunMethod {
    /// Binding.
    pub const BINDING: StunMethod = StunMethod(0x001);

    /// A method from its number; `None` above 0xFFF.
    pub fn new(value: u16) -> Option<StunMethod> {
        (value <= 0xFFF).then_some(StunMethod(value))
    }

    /// The method's number.
    pub fn value(self) -> u16 {
        self.0
    }
}

/// The message type field: method bits M0-M11 interleaved with class bits
/// C0 (bit 4) and C1 (bit 8).
fn message_type(class: Class, method: StunMethod) -> u16 {
    let m = method.0;
    let c = class.bits();
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
}

fn split_message_type(t: u16) -> (Class, StunMethod) {
    let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    let class = ((t >> 4) & 1) | ((t >> 7) & 2);
    (Class::from_bits(class), StunMethod(method))
}

/// A 96-bit transaction id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId([u8; 12]);

impl TransactionId {
    /// An id from its bytes.
    pub const fn new(bytes: [u8; 12]) -> TransactionId {
        TransactionId(bytes)
    }

    /// A random id from the operating system's generator (getrandom). Should
    /// that fail, a hash of the time, the process id and a counter stands
    /// in, which is unique but guessable.
    pub fn random() -> TransactionId {
        let mut bytes = [0u8; 12];
        if getrandom::getrandom(&mut bytes).is_err() {
            bytes = fallback_id();
        }
        TransactionId(bytes)
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }
}

fn fallback_id() -> [u8; 12] {
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(nanos.to_be_bytes());
    h.update(std::process::id().to_be_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    let digest = h.finalize();
    let mut out = [0u8; 12];
    out.copy_from_slice(&digest[..12]);
    out
}

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransactionId({self})")
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl From<[u8; 12]> for TransactionId {
    fn from(bytes: [u8; 12]) -> TransactionId {
        TransactionId(bytes)
    }
}

fn be16(buf: &[u8], at: usize) -> u16 {
    match buf.get(at..at + 2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    }
}

fn be32(buf: &[u8], at: usize) -> u32 {
    match buf.get(at..at + 4) {
        Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

/// Checks the fixed parts of a header present in `buf` (which may be
/// shorter than a header).
fn check_header_prefix(buf: &[u8]) -> Result<(), DecodeError> {
    if let Some(&first) = buf.first() {
        if first & 0xC0 != 0 {
            return Err(DecodeError::LeadingBits { first_byte: first });
        }
    }
    if buf.len() >= 8 {
        let cookie = be32(buf, 4);
        if cookie != MAGIC_COOKIE {
            return Err(DecodeError::BadMagicCookie { found: cookie });
        }
    }
    if buf.len() >= 4 {
        let length = be16(buf, 2);
        if length % 4 != 0 {
            return Err(DecodeError::UnalignedLength { length });
        }
    }
    Ok(())
}

/// A checked, read-only view of one STUN message in a buffer, in the style
/// of smoltcp's wire module. Nothing is copied; values borrow from the
/// buffer. Build it with [`StunMessageView::new_checked`], which validates the
/// header and the attribute layout, so that no accessor can fail or panic
/// afterwards.
///
/// The header it checks:
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |0 0|     STUN Message Type     |         Message Length        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                 Magic Cookie (0x2112A442)                     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                Transaction ID (96 bits)                       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                attributes (Message Length bytes)              |
/// ```
///
/// ```
/// use weft_stun::{Class, StunMessage, StunMessageView, StunMethod};
/// use weft_stun::attribute::AttributeType;
/// use weft_stun::integrity::Trailer;
/// let bytes = StunMessage::binding_request().encode_with(&Trailer::fingerprint())?;
/// let view = StunMessageView::new_checked(&bytes)?;
/// assert_eq!((view.class(), view.method()), (Class::Request, StunMethod::BINDING));
/// assert!(view.verify_fingerprint()?);
/// assert!(view.get(AttributeType::FINGERPRINT).is_some());
/// # Ok::<(), weft_stun::StunError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StunMessageView<'a> {
    buf: &'a [u8],
}

impl<'a> StunMessageView<'a> {
    /// Checks that `buf` holds exactly one message (a datagram): header,
    /// magic cookie, length, and attributes that fit. Attribute values are
    /// not decoded here.
    pub fn new_checked(buf: &'a [u8]) -> Result<StunMessageView<'a>, DecodeError> {
        if buf.len() < HEADER_LEN {
            // Report a wrong first byte or cookie before the length: it says
            // more about what the bytes are.
            check_header_prefix(buf)?;
            return Err(DecodeError::TooShort { len: buf.len() });
        }
        check_header_prefix(buf)?;
        let declared = usize::from(be16(buf, 2));
        let available = buf.len() - HEADER_LEN;
        if declared != available {
            return Err(DecodeError::LengthMismatch {
                declared,
                available,
            });
        }
        let mut offset = HEADER_LEN;
        while offset < buf.len() {
            let left = buf.len() - offset;
            if left < 4 {
                return Err(DecodeError::TruncatedAttribute {
                    attribute: AttributeType(0),
                    offset,
                    needed: 4,
                    available: left,
                });
            }
            let kind = AttributeType(be16(buf, offset));
            let len = usize::from(be16(buf, offset + 2));
            let needed = 4 + len.div_ceil(4) * 4;
            if left < needed {
                return Err(DecodeError::TruncatedAttribute {
                    attribute: kind,
                    offset,
                    needed,
                    available: left,
                });
            }
            offset += needed;
        }
        Ok(StunMessageView { buf })
    }

    /// For a byte stream (TCP, TLS): the length of the message that starts
    /// `prefix`, once its header is there (`Ok(None)` before that). Errors
    /// as soon as what is there cannot start a STUN message.
    pub fn frame_len(prefix: &[u8]) -> Result<Option<usize>, DecodeError> {
        check_header_prefix(prefix)?;
        if prefix.len() < HEADER_LEN {
            return Ok(None);
        }
        Ok(Some(HEADER_LEN + usize::from(be16(prefix, 2))))
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The raw message type field.
    pub fn message_type(&self) -> u16 {
        be16(self.buf, 0)
    }

    /// The class.
    pub fn class(&self) -> Class {
        split_message_type(self.message_type()).0
    }

    /// The method.
    pub fn method(&self) -> StunMethod {
        split_message_type(self.message_type()).1
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        let mut id = [0u8; 12];
        if let Some(b) = self.buf.get(8..HEADER_LEN) {
            id.copy_from_slice(b);
        }
        TransactionId(id)
    }

    /// The attributes that count, in order. Following RFC 8489 §14.5-14.7,
    /// only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count after
    /// MESSAGE-INTEGRITY, only FINGERPRINT after MESSAGE-INTEGRITY-SHA256,
    /// and nothing after FINGERPRINT; the rest is skipped.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            buf: self.buf,
            offset: HEADER_LEN,
            after: After::Nothing,
        }
    }

    /// The first attribute of type `kind` that counts.
    pub fn get(&self, kind: AttributeType) -> Option<RawAttribute<'a>> {
        self.attributes().find(|a| a.kind == kind)
    }

    /// The comprehension-required attributes (type below 0x8000) this
    /// crate does not know, for a 420 response's UNKNOWN-ATTRIBUTES.
    pub fn unknown_comprehension_required(&self) -> Vec<AttributeType> {
        let mut unknown: Vec<AttributeType> = Vec::new();
        for a in self.attributes() {
            if a.kind.is_comprehension_required()
                && !a.kind.is_known()
                && !unknown.contains(&a.kind)
            {
                unknown.push(a.kind);
            }
        }
        unknown
    }

    /// Checks the message's integrity with `key`: MESSAGE-INTEGRITY-SHA256
    /// when present, else MESSAGE-INTEGRITY. Returns which attribute was
    /// checked.
    pub fn verify_integrity(&self, key: &Key) -> Result<AttributeType, DecodeError> {
        let mut sha1 = None;
        let mut sha256 = None;
        for a in self.attributes() {
            match a.kind {
                AttributeType::MESSAGE_INTEGRITY if sha1.is_none() => sha1 = Some(a),
                AttributeType::MESSAGE_INTEGRITY_SHA256 if sha256.is_none() => sha256 = Some(a),
                _ => {}
            }
        }
        let (attr, sha256) = match (sha256, sha1) {
            (Some(a), _) => (a, true),
            (None, Some(a)) => (a, false),
            (None, None) => {
                return Err(DecodeError::MissingAttribute(
                    AttributeType::MESSAGE_INTEGRITY,
                ));
            }
        };
        let value_ok = if sha256 {
            (16..=32).contains(&attr.value.len()) && attr.value.len() % 4 == 0
        } else {
            attr.value.len() == 20
        };
        if !value_ok {
            return Err(DecodeError::BadAttribute {
                attribute: attr.kind,
                reason: "wrong length for an HMAC",
            });
        }
        // The HMAC covers the message up to the attribute, with a length
        // field that ends the message right after the attribute.
        let end = attr.offset + 4 + attr.value.len();
        let length = ((end - HEADER_LEN) as u16).to_be_bytes();
        let (Some(head), Some(rest)) = (self.buf.get(..2), self.buf.get(4..attr.offset)) else {
            return Err(DecodeError::TooShort {
                len: self.buf.len(),
            });
        };
        let parts: [&[u8]; 3] = [head, &length, rest];
        let ok = if sha256 {
            integrity::verify_sha256(key, &parts, attr.value)
        } else {
            integrity::verify_sha1(key, &parts, attr.value)
        };
        if ok {
            Ok(attr.kind)
        } else {
            Err(DecodeError::IntegrityMismatch {
                attribute: attr.kind,
            })
        }
    }

    /// Checks FINGERPRINT: `Ok(true)` when present and right, `Ok(false)`
    /// when absent.
    pub fn verify_fingerprint(&self) -> Result<bool, DecodeError> {
        let Some(attr) = self.get(AttributeType::FINGERPRINT) else {
            return Ok(false);
        };
        let bytes: [u8; 4] = attr
            .value
            .try_into()
            .map_err(|_| DecodeError::BadAttribute {
                attribute: AttributeType::FINGERPRINT,
                reason: "the value must be 4 bytes",
            })?;
        let found = u32::from_be_bytes(bytes);
        if attr.offset + 8 != self.buf.len() {
            return Err(DecodeError::BadAttribute {
                attribute: AttributeType::FINGERPRINT,
                reason: "it is not the last attribute",
            });
        }
        let covered = self.buf.get(..attr.offset).unwrap_or_default();
        let computed = integrity::fingerprint(&[covered]);
        if computed == found {
            Ok(true)
        } else {
            Err(DecodeError::FingerprintMismatch { found, computed })
        }
    }

    /// Decodes every attribute into an owned [`StunMessage`].
    pub fn to_message(&self) -> Result<StunMessage, DecodeError> {
        let tid = self.transaction_id();
        let attributes = self
            .attributes()
            .map(|a| a.parse(&tid))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StunMessage {
            class: self.class(),
            method: self.method(),
            transaction_id: tid,
            attributes,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    Nothing,
    Integrity,
    IntegritySha256,
    Fingerprint,
}

/// The attributes of a [`StunMessageView`] that count; see
/// [`StunMessageView::attributes`].
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    buf: &'a [u8],
    offset: usize,
    after: After,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = RawAttribute<'a>;

    fn next(&mut self) -> Option<RawAttribute<'a>> {
        loop {
            if self.after == After::Fingerprint || self.offset + 4 > self.buf.len() {
                return None;
            }
            let offset = self.offset;
            let kind = AttributeType(be16(self.buf, offset));
            let len = usize::from(be16(self.buf, offset + 2));
            let value = self.buf.get(offset + 4..offset + 4 + len)?;
            self.offset = offset + 4 + len.div_ceil(4) * 4;
            let counts = match self.after {
                After::Nothing => true,
                After::Integrity => matches!(
                    kind,
                    AttributeType::MESSAGE_INTEGRITY_SHA256 | AttributeType::FINGERPRINT
                ),
                After::IntegritySha256 => kind == AttributeType::FINGERPRINT,
                After::Fingerprint => false,
            };
            if !counts {
                continue;
            }
            self.after = match kind {
                AttributeType::MESSAGE_INTEGRITY if self.after == After::Nothing => {
                    After::Integrity
                }
                AttributeType::MESSAGE_INTEGRITY_SHA256 => After::IntegritySha256,
                AttributeType::FINGERPRINT => After::Fingerprint,
                _ => self.after,
            };
            return Some(RawAttribute {
                kind,
                value,
                offset,
            });
        }
    }
}

/// One attribute as it is in the buffer: its type and its value (without
/// padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    kind: AttributeType,
    value: &'a [u8],
    offset: usize,
}

impl<'a> RawAttribute<'a> {
    /// The type.
    pub fn kind(&self) -> AttributeType {
        self.kind
    }

    /// The value, without padding.
    pub fn value(&self) -> &'a [u8] {
        self.value
    }

    /// Where the attribute's header starts, from the start of the message.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The value as text, if it is UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.value).ok()
    }

    /// Decodes the value (the transaction id un-XORs XOR-MAPPED-ADDRESS).
    pub fn parse(&self, transaction_id: &TransactionId) -> Result<Attribute, DecodeError> {
        Attribute::parse(self.kind, self.value, transaction_id)
    }
}

/// An owned STUN message: class, method, transaction id and attributes in
/// order. `StunMessage::decode(&m.encode()?)? == m` for every message whose
/// attributes respect the RFC's order (MESSAGE-INTEGRITY,
/// MESSAGE-INTEGRITY-SHA256 and FINGERPRINT last, in that order) and whose
/// [`Attribute::Unknown`] entries use types this crate does not know.
///
/// ```
/// use weft_stun::{Attribute, Class, StunMessage, StunMethod, TransactionId};
/// use weft_stun::integrity::Trailer;
/// let tid = TransactionId::new([7; 12]);
/// let response = StunMessage::new(Class::SuccessResponse, StunMethod::BINDING, tid)
///     .with(Attribute::XorMappedAddress("192.0.2.1:32853".parse().unwrap()));
/// let bytes = response.encode_with(&Trailer::fingerprint())?;
/// let back = StunMessage::decode(&bytes)?;
/// assert_eq!(back.mapped_address(), Some("192.0.2.1:32853".parse().unwrap()));
/// # Ok::<(), weft_stun::StunError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StunMessage {
    /// The class.
    pub class: Class,
    /// The method.
    pub method: StunMethod,
    /// The transaction id.
    pub transaction_id: TransactionId,
    /// The attributes, in wire order.
    pub attributes: Vec<Attribute>,
}

impl StunMessage {
    /// A message without attributes.
    pub fn new(class: Class, method: StunMethod, transaction_id: TransactionId) -> StunMessage {
        StunMessage {
            class,
            method,
            transaction_id,
            attributes: Vec::new(),
        }
    }

    /// A Binding request with a random transaction id.
    pub fn binding_request() -> StunMessage {
        StunMessage::new(Class::Request, StunMethod::BINDING, TransactionId::random())
    }

    /// Adds an attribute at the end (builder form).
    pub fn with(mut self, attribute: Attribute) -> StunMessage {
        self.attributes.push(attribute);
        self
    }

    /// Adds an attribute at the end.
    pub fn push(&mut self, attribute: Attribute) {
        self.attributes.push(attribute);
    }

    /// The first attribute of type `kind`.
    pub fn get(&self, kind: AttributeType) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.kind() == kind)
    }

    /// The reflexive address: XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS.
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        self.attributes
            .iter()
            .find_map(|a| match a {
                Attribute::XorMappedAddress(addr) => Some(*addr),
                _ => None,
            })
            .or_else(|| {
                self.attributes.iter().find_map(|a| match a {
                    Attribute::MappedAddress(addr) => Some(*addr),
                    _ => None,
                })
            })
    }

    /// OTHER-ADDRESS, else RFC 3489's CHANGED-ADDRESS.
    pub fn other_address(&self) -> Option<SocketAddr> {
        self.attributes
            .iter()
            .find_map(|a| match a {
                Attribute::OtherAddress(addr) => Some(*addr),
                _ => None,
            })
            .or_else(|| {
                self.attributes.iter().find_map(|a| match a {
                    Attribute::ChangedAddress(addr) => Some(*addr),
                    _ => None,
                })
            })
    }

    /// RESPONSE-ORIGIN, else RFC 3489's SOURCE-ADDRESS.
    pub fn response_origin(&self) -> Option<SocketAddr> {
        self.attributes
            .iter()
            .find_map(|a| match a {
                Attribute::ResponseOrigin(addr) => Some(*addr),
                _ => None,
            })
            .or_else(|| {
                self.attributes.iter().find_map(|a| match a {
                    Attribute::SourceAddress(addr) => Some(*addr),
                    _ => None,
                })
            })
    }

    /// ERROR-CODE.
    pub fn error_code(&self) -> Option<&ErrorCode> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::ErrorCode(e) => Some(e),
            _ => None,
        })
    }

    /// SOFTWARE.
    pub fn software(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Software(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// CHANGE-REQUEST.
    pub fn change_request(&self) -> Option<ChangeRequest> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::ChangeRequest(c) => Some(*c),
            _ => None,
        })
    }

    /// RESPONSE-PORT.
    pub fn response_port(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::ResponsePort(p) => Some(*p),
            _ => None,
        })
    }

    /// The comprehension-required attributes this crate does not know.
    pub fn unknown_comprehension_required(&self) -> Vec<AttributeType> {
        let mut unknown: Vec<AttributeType> = Vec::new();
        for a in &self.attributes {
            if let Attribute::Unknown { kind, .. } = a {
                if kind.is_comprehension_required() && !unknown.contains(kind) {
                    unknown.push(*kind);
                }
            }
        }
        unknown
    }

    /// Decodes one message (a whole datagram): [`StunMessageView::new_checked`]
    /// then [`StunMessageView::to_message`]. Never panics.
    pub fn decode(buf: &[u8]) -> Result<StunMessage, DecodeError> {
        StunMessageView::new_checked(buf)?.to_message()
    }

    /// Encodes the message with its attributes as they are.
    pub fn encode(&self) -> Result<Vec<u8>, StunError> {
        self.encode_with(&Trailer::default())
    }

    /// Encodes the message and appends what `trailer` asks for
    /// (MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256, FINGERPRINT), computed
    /// over the encoded bytes. When the trailer appends anything, those
    /// three attributes are left out of [`StunMessage::attributes`] so that
    /// they are not written twice.
    pub fn encode_with(&self, trailer: &Trailer<'_>) -> Result<Vec<u8>, StunError> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&message_type(self.class, self.method).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        out.extend_from_slice(&self.transaction_id.0);
        let replace = !trailer.is_empty();
        for attr in &self.attributes {
            if replace
                && matches!(
                    attr,
                    Attribute::MessageIntegrity(_)
                        | Attribute::MessageIntegritySha256(_)
                        | Attribute::Fingerprint(_)
                )
            {
                continue;
            }
            let start = out.len();
            out.extend_from_slice(&attr.kind().0.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            attr.emit_value(&self.transaction_id, &mut out)?;
            let len = out.len() - start - 4;
            let len16 = u16::try_from(len).map_err(|_| {
                StunError::encode(
                    attr.kind().to_string(),
                    format!("{len} bytes is over 65535"),
                )
            })?;
            out[start + 2..start + 4].copy_from_slice(&len16.to_be_bytes());
            out.resize(out.len() + (4 - len % 4) % 4, 0);
            check_total(out.len())?;
        }
        if let Some(key) = trailer.message_integrity {
            set_length(&mut out, 24)?;
            let hmac = integrity::hmac_sha1(key, &[&out]);
            push_attribute(&mut out, AttributeType::MESSAGE_INTEGRITY, &hmac);
        }
        if let Some(key) = trailer.message_integrity_sha256 {
            set_length(&mut out, 36)?;
            let hmac = integrity::hmac_sha256(key, &[&out]);
            push_attribute(&mut out, AttributeType::MESSAGE_INTEGRITY_SHA256, &hmac);
        }
        if trailer.fingerprint {
            set_length(&mut out, 8)?;
            let crc = integrity::fingerprint(&[&out]);
            push_attribute(&mut out, AttributeType::FINGERPRINT, &crc.to_be_bytes());
        }
        set_length(&mut out, 0)?;
        Ok(out)
    }
}

fn check_total(len: usize) -> Result<(), StunError> {
    if len > MAX_MESSAGE_LEN {
        return Err(StunError::encode(
            "message",
            format!("{} bytes of attributes is over 65532", len - HEADER_LEN),
        ));
    }
    Ok(())
}

/// Writes the length field as if `extra` more bytes followed.
fn set_length(out: &mut [u8], extra: usize) -> Result<(), StunError> {
    check_total(out.len() + extra)?;
    let len = (out.len() + extra - HEADER_LEN) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn push_attribute(out: &mut Vec<u8>, kind: AttributeType, value: &[u8]) {
    out.extend_from_slice(&kind.0.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in PROTOCOL.md.
    #[test]
    fn protocol_md_example() {
        let tid = TransactionId::new([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let bytes = StunMessage::new(Class::Request, StunMethod::BINDING, tid)
            .with(Attribute::Software("weft-stun 0.1.0".into()))
            .encode_with(&Trailer::fingerprint())
            .unwrap();
        let expected = [
            0x00, 0x01, 0x00, 0x1c, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
            0x80, 0x22, 0x00, 0x0f, b'w', b'e', b'f', b't', b'-', b's', b't', b'u', b'n', b' ',
            b'0', b'.', b'1', b'.', b'0', 0x00, 0x80, 0x28, 0x00, 0x04, 0x5a, 0xf7, 0xb3, 0x9b,
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn message_type_bits() {
        assert_eq!(message_type(Class::Request, StunMethod::BINDING), 0x0001);
        assert_eq!(message_type(Class::Indication, StunMethod::BINDING), 0x0011);
        assert_eq!(
            message_type(Class::SuccessResponse, StunMethod::BINDING),
            0x0101
        );
        assert_eq!(
            message_type(Class::ErrorResponse, StunMethod::BINDING),
            0x0111
        );
        for m in [0u16, 1, 0xF, 0x10, 0x7F, 0x80, 0xABC, 0xFFF] {
            for c in [
                Class::Request,
                Class::Indication,
                Class::SuccessResponse,
                Class::ErrorResponse,
            ] {
                let t = message_type(c, StunMethod(m));
                assert_eq!(t & 0xC000, 0);
                assert_eq!(split_message_type(t), (c, StunMethod(m)));
            }
        }
    }

    #[test]
    fn header_errors_name_what_is_wrong() {
        assert_eq!(
            StunMessageView::new_checked(&[]).unwrap_err(),
            DecodeError::TooShort { len: 0 }
        );
        let mut bytes = StunMessage::binding_request().encode().unwrap();
        bytes[0] = 0x80;
        assert_eq!(
            StunMessageView::new_checked(&bytes).unwrap_err(),
            DecodeError::LeadingBits { first_byte: 0x80 }
        );
        bytes[0] = 0;
        bytes[4] = 0;
        assert!(matches!(
            StunMessageView::new_checked(&bytes).unwrap_err(),
            DecodeError::BadMagicCookie { found: 0x0012_a442 }
        ));
        bytes[4] = 0x21;
        bytes[3] = 2;
        assert_eq!(
            StunMessageView::new_checked(&bytes).unwrap_err(),
            DecodeError::UnalignedLength { length: 2 }
        );
        bytes[3] = 4;
        assert_eq!(
            StunMessageView::new_checked(&bytes).unwrap_err(),
            DecodeError::LengthMismatch {
                declared: 4,
                available: 0
            }
        );
        bytes.extend_from_slice(&[0x80, 0x22, 0x00, 0x05]);
        assert_eq!(
            StunMessageView::new_checked(&bytes).unwrap_err(),
            DecodeError::TruncatedAttribute {
                attribute: AttributeType::SOFTWARE,
                offset: 20,
                needed: 12,
                available: 4
            }
        );
    }

    #[test]
    fn stream_framing() {
        let bytes = StunMessage::binding_request()
            .with(Attribute::Software("x".into()))
            .encode()
            .unwrap();
        assert_eq!(StunMessageView::frame_len(&bytes[..3]), Ok(None));
        assert_eq!(
            StunMessageView::frame_len(&bytes[..20]),
            Ok(Some(bytes.len()))
        );
        assert!(StunMessageView::frame_len(b"GET / HTTP/1.1").is_err());
    }

    #[test]
    fn attributes_after_integrity_do_not_count() {
        let key = Key::short_term("pw");
        let mut bytes = StunMessage::binding_request()
            .with(Attribute::Software("a".into()))
            .encode_with(&Trailer {
                message_integrity: Some(&key),
                ..Trailer::default()
            })
            .unwrap();
        // Append an unauthenticated XOR-MAPPED-ADDRESS after the HMAC.
        bytes.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0, 1, 0, 1, 1, 2, 3, 4]);
        let len = (bytes.len() - HEADER_LEN) as u16;
        bytes[2..4].copy_from_slice(&len.to_be_bytes());
        let view = StunMessageView::new_checked(&bytes).unwrap();
        assert!(view.get(AttributeType::XOR_MAPPED_ADDRESS).is_none());
        assert_eq!(
            view.verify_integrity(&key),
            Ok(AttributeType::MESSAGE_INTEGRITY)
        );
        assert_eq!(view.to_message().unwrap().attributes.len(), 2);
    }

    #[test]
    fn integrity_sha256_and_fingerprint() {
        let key = Key::short_term("secret");
        let bytes = StunMessage::binding_request()
            .encode_with(&Trailer {
                message_integrity: Some(&key),
                message_integrity_sha256: Some(&key),
                fingerprint: true,
            })
            .unwrap();
        let view = StunMessageView::new_checked(&bytes).unwrap();
        assert_eq!(
            view.verify_integrity(&key),
            Ok(AttributeType::MESSAGE_INTEGRITY_SHA256)
        );
        assert_eq!(
            view.verify_integrity(&Key::short_term("wrong")),
            Err(DecodeError::IntegrityMismatch {
                attribute: AttributeType::MESSAGE_INTEGRITY_SHA256
            })
        );
        assert_eq!(view.verify_fingerprint(), Ok(true));
        let mut altered = bytes.clone();
        altered[10] ^= 1;
        let view = StunMessageView::new_checked(&altered).unwrap();
        assert!(matches!(
            view.verify_fingerprint(),
            Err(DecodeError::FingerprintMismatch { .. })
        ));
        assert!(view.verify_integrity(&key).is_err());
    }

    #[test]
    fn unknown_required_attributes_are_reported() {
        let m = StunMessage::binding_request()
            .with(Attribute::Unknown {
                kind: AttributeType(0x0024),
                value: vec![1, 2, 3, 4],
            })
            .with(Attribute::Unknown {
                kind: AttributeType(0x8029),
                value: vec![0; 8],
            });
        let bytes = m.encode().unwrap();
        let view = StunMessageView::new_checked(&bytes).unwrap();
        assert_eq!(
            view.unknown_comprehension_required(),
            vec![AttributeType(0x0024)]
        );
        let back = StunMessage::decode(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            back.unknown_comprehension_required(),
            vec![AttributeType(0x0024)]
        );
    }

    #[test]
    fn oversized_values_are_refused_when_encoding() {
        let m = StunMessage::binding_request().with(Attribute::Software("x".repeat(800)));
        assert!(matches!(m.encode(), Err(StunError::Encode { .. })));
        let m = StunMessage::binding_request().with(Attribute::Padding(vec![0; 70_000]));
        assert!(matches!(m.encode(), Err(StunError::Encode { .. })));
    }
}
