//! STUN attributes: types, owned values and their wire form.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::StunError;
use crate::error::DecodeError;
use crate::message::{MAGIC_COOKIE, TransactionId};

/// A 16-bit attribute type. The constants are the types this crate
/// understands; any other value is kept as [`Attribute::Unknown`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributeType(pub u16);

macro_rules! attribute_types {
    ($($(#[$doc:meta])* $name:ident = $value:literal, $text:literal;)*) => {
        impl AttributeType {
            $($(#[$doc])* pub const $name: AttributeType = AttributeType($value);)*

            /// The RFC's name for a known type (`XOR-MAPPED-ADDRESS`), or
            /// `None`.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some($text),)*
                    _ => None,
                }
            }
        }
    };
}

attribute_types! {
    /// MAPPED-ADDRESS (RFC 8489 §14.1).
    MAPPED_ADDRESS = 0x0001, "MAPPED-ADDRESS";
    /// CHANGE-REQUEST (RFC 5780 §7.2).
    CHANGE_REQUEST = 0x0003, "CHANGE-REQUEST";
    /// SOURCE-ADDRESS (RFC 3489 §11.2.5).
    SOURCE_ADDRESS = 0x0004, "SOURCE-ADDRESS";
    /// CHANGED-ADDRESS (RFC 3489 §11.2.3).
    CHANGED_ADDRESS = 0x0005, "CHANGED-ADDRESS";
    /// USERNAME (RFC 8489 §14.3).
    USERNAME = 0x0006, "USERNAME";
    /// MESSAGE-INTEGRITY, HMAC-SHA1 (RFC 8489 §14.5).
    MESSAGE_INTEGRITY = 0x0008, "MESSAGE-INTEGRITY";
    /// ERROR-CODE (RFC 8489 §14.8).
    ERROR_CODE = 0x0009, "ERROR-CODE";
    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.13).
    UNKNOWN_ATTRIBUTES = 0x000A, "UNKNOWN-ATTRIBUTES";
    /// REALM (RFC 8489 §14.9).
    REALM = 0x0014, "REALM";
    /// NONCE (RFC 8489 §14.10).
    NONCE = 0x0015, "NONCE";
    /// MESSAGE-INTEGRITY-SHA256, HMAC-SHA256 (RFC 8489 §14.6).
    MESSAGE_INTEGRITY_SHA256 = 0x001C, "MESSAGE-INTEGRITY-SHA256";
    /// PASSWORD-ALGORITHM (RFC 8489 §14.12).
    PASSWORD_ALGORITHM = 0x001D, "PASSWORD-ALGORITHM";
    /// USERHASH (RFC 8489 §14.4).
    USERHASH = 0x001E, "USERHASH";
    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
    XOR_MAPPED_ADDRESS = 0x0020, "XOR-MAPPED-ADDRESS";
    /// PADDING (RFC 5780 §7.6).
    PADDING = 0x0026, "PADDING";
    /// RESPONSE-PORT (RFC 5780 §7.5).
    RESPONSE_PORT = 0x0027, "RESPONSE-PORT";
    /// PASSWORD-ALGORITHMS (RFC 8489 §14.11).
    PASSWORD_ALGORITHMS = 0x8002, "PASSWORD-ALGORITHMS";
    /// ALTERNATE-DOMAIN (RFC 8489 §14.16).
    ALTERNATE_DOMAIN = 0x8003, "ALTERNATE-DOMAIN";
    /// SOFTWARE (RFC 8489 §14.14).
    SOFTWARE = 0x8022, "SOFTWARE";
    /// ALTERNATE-SERVER (RFC 8489 §14.15).
    ALTERNATE_SERVER = 0x8023, "ALTERNATE-SERVER";
    /// FINGERPRINT, CRC-32 (RFC 8489 §14.7).
    FINGERPRINT = 0x8028, "FINGERPRINT";
    /// RESPONSE-ORIGIN (RFC 5780 §7.3).
    RESPONSE_ORIGIN = 0x802B, "RESPONSE-ORIGIN";
    /// OTHER-ADDRESS (RFC 5780 §7.4).
    OTHER_ADDRESS = 0x802C, "OTHER-ADDRESS";
}

impl AttributeType {
    /// Whether the type is comprehension-required (below 0x8000).
    pub fn is_comprehension_required(self) -> bool {
        self.0 < 0x8000
    }

    /// Whether this crate parses the type into a typed [`Attribute`].
    pub fn is_known(self) -> bool {
        self.name().is_some()
    }
}

impl fmt::Display for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "0x{:04x}", self.0),
        }
    }
}

impl fmt::Debug for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}(0x{:04x})", self.0),
            None => write!(f, "AttributeType(0x{:04x})", self.0),
        }
    }
}

/// The longest USERNAME accepted, in bytes (RFC 5389: fewer than 513).
/// Public because it binds callers: a longer one fails to encode and to
/// decode.
pub const MAX_USERNAME_LEN: usize = 512;
/// The longest REALM, NONCE, SOFTWARE, ALTERNATE-DOMAIN or ERROR-CODE reason
/// accepted, in bytes (RFC 8489: at most 763 bytes when decoding).
/// Public for the same reason as [`MAX_USERNAME_LEN`].
pub const MAX_TEXT_LEN: usize = 763;

/// An ERROR-CODE: a code from 300 to 699 and a reason phrase.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCode {
    /// The code, from 300 to 699.
    pub code: u16,
    /// A human-readable reason (UTF-8, at most [`MAX_TEXT_LEN`] bytes).
    pub reason: String,
}

impl ErrorCode {
    /// 300 Try Alternate.
    pub const TRY_ALTERNATE: u16 = 300;
    /// 400 Bad Request.
    pub const BAD_REQUEST: u16 = 400;
    /// 401 Unauthenticated.
    pub const UNAUTHENTICATED: u16 = 401;
    /// 420 Unknown Attribute.
    pub const UNKNOWN_ATTRIBUTE: u16 = 420;
    /// 438 Stale Nonce.
    pub const STALE_NONCE: u16 = 438;
    /// 500 Server Error.
    pub const SERVER_ERROR: u16 = 500;

    /// An error code with a reason.
    pub fn new(code: u16, reason: impl Into<String>) -> ErrorCode {
        ErrorCode {
            code,
            reason: reason.into(),
        }
    }
}

/// The flags of a CHANGE-REQUEST (RFC 5780 §7.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChangeRequest {
    /// Answer from the other IP address ("A" flag, 0x4).
    pub change_ip: bool,
    /// Answer from the other port ("B" flag, 0x2).
    pub change_port: bool,
}

/// One entry of PASSWORD-ALGORITHM or PASSWORD-ALGORITHMS: an algorithm
/// number and its parameters (RFC 8489 §14.11, §14.12). 1 is MD5, 2 is
/// SHA-256 ([`PasswordAlgorithm`](crate::integrity::PasswordAlgorithm)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PasswordAlgorithmParams {
    /// The algorithm number.
    pub algorithm: u16,
    /// Its parameters (empty for MD5 and SHA-256).
    pub parameters: Vec<u8>,
}

/// An attribute with its value decoded into owned data.
///
/// Addresses are plain [`SocketAddr`]s: XOR-MAPPED-ADDRESS is stored
/// un-XORed, and XORed again when encoded. MESSAGE-INTEGRITY,
/// MESSAGE-INTEGRITY-SHA256 and FINGERPRINT carry the values found on the
/// wire; to compute them when encoding, use
/// [`StunMessage::encode_with`](crate::StunMessage::encode_with).
///
/// Every attribute is a TLV: a 16-bit type, a 16-bit length of the value,
/// then the value padded with zeros to a multiple of 4 bytes. Types below
/// 0x8000 are comprehension-required: an agent that does not know one must
/// not process the message as if it were absent (a server answers 420).
/// Types from 0x8000 are comprehension-optional and may be ignored; this
/// crate keeps unknown ones as [`Attribute::Unknown`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Attribute {
    /// MAPPED-ADDRESS: the reflexive address, in the clear.
    MappedAddress(SocketAddr),
    /// XOR-MAPPED-ADDRESS: the reflexive address.
    XorMappedAddress(SocketAddr),
    /// USERNAME.
    Username(String),
    /// MESSAGE-INTEGRITY: an HMAC-SHA1.
    MessageIntegrity([u8; 20]),
    /// MESSAGE-INTEGRITY-SHA256: an HMAC-SHA256, possibly truncated to 16,
    /// 20, 24 or 28 bytes.
    MessageIntegritySha256(Vec<u8>),
    /// FINGERPRINT: CRC-32 of the message XOR 0x5354554e.
    Fingerprint(u32),
    /// ERROR-CODE.
    ErrorCode(ErrorCode),
    /// REALM.
    Realm(String),
    /// NONCE.
    Nonce(String),
    /// PASSWORD-ALGORITHM.
    PasswordAlgorithm(PasswordAlgorithmParams),
    /// USERHASH: SHA-256 of `username ":" realm`.
    Userhash([u8; 32]),
    /// UNKNOWN-ATTRIBUTES: the types a server did not understand.
    UnknownAttributes(Vec<AttributeType>),
    /// PASSWORD-ALGORITHMS.
    PasswordAlgorithms(Vec<PasswordAlgorithmParams>),
    /// ALTERNATE-DOMAIN.
    AlternateDomain(String),
    /// SOFTWARE: the agent's name and version.
    Software(String),
    /// ALTERNATE-SERVER.
    AlternateServer(SocketAddr),
    /// CHANGE-REQUEST (RFC 5780).
    ChangeRequest(ChangeRequest),
    /// RESPONSE-ORIGIN (RFC 5780): where the response was sent from.
    ResponseOrigin(SocketAddr),
    /// OTHER-ADDRESS (RFC 5780): the server's address for "change IP and
    /// port".
    OtherAddress(SocketAddr),
    /// RESPONSE-PORT (RFC 5780): the port the response should go to.
    ResponsePort(u16),
    /// PADDING (RFC 5780).
    Padding(Vec<u8>),
    /// CHANGED-ADDRESS (RFC 3489): the older OTHER-ADDRESS.
    ChangedAddress(SocketAddr),
    /// SOURCE-ADDRESS (RFC 3489): the older RESPONSE-ORIGIN.
    SourceAddress(SocketAddr),
    /// A type this crate does not know, kept as it was.
    Unknown {
        /// The type.
        kind: AttributeType,
        /// The value, without padding.
        value: Vec<u8>,
    },
}

const FAMILY_V4: u8 = 0x01;
const FAMILY_V6: u8 = 0x02;

impl Attribute {
    /// The attribute's type.
    pub fn kind(&self) -> AttributeType {
        match self {
            Attribute::MappedAddress(_) => AttributeType::MAPPED_ADDRESS,
            Attribute::XorMappedAddress(_) => AttributeType::XOR_MAPPED_ADDRESS,
            Attribute::Username(_) => AttributeType::USERNAME,
            Attribute::MessageIntegrity(_) => AttributeType::MESSAGE_INTEGRITY,
            Attribute::MessageIntegritySha256(_) => AttributeType::MESSAGE_INTEGRITY_SHA256,
            Attribute::Fingerprint(_) => AttributeType::FINGERPRINT,
            Attribute::ErrorCode(_) => AttributeType::ERROR_CODE,
            Attribute::Realm(_) => AttributeType::REALM,
            Attribute::Nonce(_) => AttributeType::NONCE,
            Attribute::PasswordAlgorithm(_) => AttributeType::PASSWORD_ALGORITHM,
            Attribute::Userhash(_) => AttributeType::USERHASH,
            Attribute::UnknownAttributes(_) => AttributeType::UNKNOWN_ATTRIBUTES,
            Attribute::PasswordAlgorithms(_) => AttributeType::PASSWORD_ALGORITHMS,
            Attribute::AlternateDomain(_) => AttributeType::ALTERNATE_DOMAIN,
            Attribute::Software(_) => AttributeType::SOFTWARE,
            Attribute::AlternateServer(_) => AttributeType::ALTERNATE_SERVER,
            Attribute::ChangeRequest(_) => AttributeType::CHANGE_REQUEST,
            Attribute::ResponseOrigin(_) => AttributeType::RESPONSE_ORIGIN,
            Attribute::OtherAddress(_) => AttributeType::OTHER_ADDRESS,
            Attribute::ResponsePort(_) => AttributeType::RESPONSE_PORT,
            Attribute::Padding(_) => AttributeType::PADDING,
            Attribute::ChangedAddress(_) => AttributeType::CHANGED_ADDRESS,
            Attribute::SourceAddress(_) => AttributeType::SOURCE_ADDRESS,
            Attribute::Unknown { kind, .. } => *kind,
        }
    }

    /// Decodes the value of an attribute of type `kind`. The transaction id
    /// is needed for XOR-MAPPED-ADDRESS over IPv6.
    pub fn parse(
        kind: AttributeType,
        value: &[u8],
        transaction_id: &TransactionId,
    ) -> Result<Attribute, DecodeError> {
        let attr = match kind {
            AttributeType::MAPPED_ADDRESS => Attribute::MappedAddress(parse_address(kind, value)?),
            AttributeType::XOR_MAPPED_ADDRESS => {
                let addr = parse_address(kind, value)?;
                Attribute::XorMappedAddress(xor_address(addr, transaction_id))
            }
            AttributeType::USERNAME => {
                Attribute::Username(parse_text(kind, value, MAX_USERNAME_LEN)?.to_owned())
            }
            AttributeType::MESSAGE_INTEGRITY => {
                let hmac: [u8; 20] = value.try_into().map_err(|_| DecodeError::BadAttribute {
                    attribute: kind,
                    reason: "the value must be 20 bytes",
                })?;
                Attribute::MessageIntegrity(hmac)
            }
            AttributeType::MESSAGE_INTEGRITY_SHA256 => {
                if !(16..=32).contains(&value.len()) || value.len() % 4 != 0 {
                    return Err(DecodeError::BadAttribute {
                        attribute: kind,
                        reason: "the value must be 16, 20, 24, 28 or 32 bytes",
                    });
                }
                Attribute::MessageIntegritySha256(value.to_vec())
            }
            AttributeType::FINGERPRINT => Attribute::Fingerprint(parse_u32(kind, value)?),
            AttributeType::ERROR_CODE => Attribute::ErrorCode(parse_error_code(value)?),
            AttributeType::REALM => {
                Attribute::Realm(parse_text(kind, value, MAX_TEXT_LEN)?.to_owned())
            }
            AttributeType::NONCE => {
                Attribute::Nonce(parse_text(kind, value, MAX_TEXT_LEN)?.to_owned())
            }
            AttributeType::PASSWORD_ALGORITHM => {
                let (params, rest) = parse_algorithm(kind, value)?;
                if !rest.is_empty() {
                    return Err(DecodeError::BadAttribute {
                        attribute: kind,
                        reason: "bytes follow the algorithm's parameters",
                    });
                }
                Attribute::PasswordAlgorithm(params)
            }
            AttributeType::USERHASH => {
                let hash: [u8; 32] = value.try_into().map_err(|_| DecodeError::BadAttribute {
                    attribute: kind,
                    reason: "the value must be 32 bytes",
                })?;
                Attribute::Userhash(hash)
            }
            AttributeType::UNKNOWN_ATTRIBUTES => {
                if value.len() % 2 != 0 {
                    return Err(DecodeError::BadAttribute {
                        attribute: kind,
                        reason: "the value's length must be even",
                    });
                }
                Attribute::UnknownAttributes(
                    value
                        .chunks_exact(2)
                        .map(|c| AttributeType(u16::from_be_bytes([c[0], c[1]])))
                        .collect(),
                )
            }
            AttributeType::PASSWORD_ALGORITHMS => {
                let mut list = Vec::new();
                let mut rest = value;
                while !rest.is_empty() {
                    let (params, after) = parse_algorithm(kind, rest)?;
                    list.push(params);
                    rest = after;
                }
                Attribute::PasswordAlgorithms(list)
            }
            AttributeType::ALTERNATE_DOMAIN => {
                Attribute::AlternateDomain(parse_text(kind, value, MAX_TEXT_LEN)?.to_owned())
            }
            AttributeType::SOFTWARE => {
                Attribute::Software(parse_text(kind, value, MAX_TEXT_LEN)?.to_owned())
            }
            AttributeType::ALTERNATE_SERVER => {
                Attribute::AlternateServer(parse_address(kind, value)?)
            }
            AttributeType::CHANGE_REQUEST => {
                let flags = parse_u32(kind, value)?;
                Attribute::ChangeRequest(ChangeRequest {
                    change_ip: flags & 0x4 != 0,
                    change_port: flags & 0x2 != 0,
                })
            }
            AttributeType::RESPONSE_ORIGIN => {
                Attribute::ResponseOrigin(parse_address(kind, value)?)
            }
            AttributeType::OTHER_ADDRESS => Attribute::OtherAddress(parse_address(kind, value)?),
            AttributeType::RESPONSE_PORT => {
                // A 16-bit port followed by 2 bytes of padding; accept the
                // bare port too.
                if value.len() != 4 && value.len() != 2 {
                    return Err(DecodeError::BadAttribute {
                        attribute: kind,
                        reason: "the value must be a 16-bit port and 2 bytes of padding",
                    });
                }
                Attribute::ResponsePort(u16::from_be_bytes([value[0], value[1]]))
            }
            AttributeType::PADDING => Attribute::Padding(value.to_vec()),
            AttributeType::CHANGED_ADDRESS => {
                Attribute::ChangedAddress(parse_address(kind, value)?)
            }
            AttributeType::SOURCE_ADDRESS => Attribute::SourceAddress(parse_address(kind, value)?),
            _ => Attribute::Unknown {
                kind,
                value: value.to_vec(),
            },
        };
        Ok(attr)
    }

    /// Appends the value (without header or padding) to `out`.
    pub(crate) fn emit_value(
        &self,
        transaction_id: &TransactionId,
        out: &mut Vec<u8>,
    ) -> Result<(), StunError> {
        let kind = self.kind();
        match self {
            Attribute::MappedAddress(a)
            | Attribute::AlternateServer(a)
            | Attribute::ResponseOrigin(a)
            | Attribute::OtherAddress(a)
            | Attribute::ChangedAddress(a)
            | Attribute::SourceAddress(a) => emit_address(*a, out),
            Attribute::XorMappedAddress(a) => emit_address(xor_address(*a, transaction_id), out),
            Attribute::Username(s) => emit_text(kind, s, MAX_USERNAME_LEN, out)?,
            Attribute::Realm(s)
            | Attribute::Nonce(s)
            | Attribute::AlternateDomain(s)
            | Attribute::Software(s) => emit_text(kind, s, MAX_TEXT_LEN, out)?,
            Attribute::MessageIntegrity(h) => out.extend_from_slice(h),
            Attribute::MessageIntegritySha256(h) => {
                if !(16..=32).contains(&h.len()) || h.len() % 4 != 0 {
                    return Err(StunError::encode(
                        kind.to_string(),
                        "the value must be 16, 20, 24, 28 or 32 bytes",
                    ));
                }
                out.extend_from_slice(h);
            }
            Attribute::Fingerprint(v) => out.extend_from_slice(&v.to_be_bytes()),
            Attribute::ErrorCode(e) => {
                if !(300..=699).contains(&e.code) {
                    return Err(StunError::encode(
                        kind.to_string(),
                        format!("code {} is outside 300 to 699", e.code),
                    ));
                }
                out.extend_from_slice(&[0, 0, (e.code / 100) as u8, (e.code % 100) as u8]);
                emit_text(kind, &e.reason, MAX_TEXT_LEN, out)?;
            }
            Attribute::PasswordAlgorithm(p) => emit_algorithm(kind, p, out)?,
            Attribute::PasswordAlgorithms(list) => {
                for p in list {
                    emit_algorithm(kind, p, out)?;
                }
            }
            Attribute::Userhash(h) => out.extend_from_slice(h),
            Attribute::UnknownAttributes(types) => {
                for t in types {
                    out.extend_from_slice(&t.0.to_be_bytes());
                }
            }
            Attribute::ChangeRequest(c) => {
                let flags =
                    if c.change_ip { 0x4u32 } else { 0 } | if c.change_port { 0x2 } else { 0 };
                out.extend_from_slice(&flags.to_be_bytes());
            }
            Attribute::ResponsePort(p) => {
                out.extend_from_slice(&p.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            Attribute::Padding(v) | Attribute::Unknown { value: v, .. } => {
                out.extend_from_slice(v);
            }
        }
        Ok(())
    }
}

fn parse_u32(kind: AttributeType, value: &[u8]) -> Result<u32, DecodeError> {
    let bytes: [u8; 4] = value.try_into().map_err(|_| DecodeError::BadAttribute {
        attribute: kind,
        reason: "the value must be 4 bytes",
    })?;
    Ok(u32::from_be_bytes(bytes))
}

fn parse_text(kind: AttributeType, value: &[u8], max: usize) -> Result<&str, DecodeError> {
    if value.len() > max {
        return Err(DecodeError::AttributeTooLong {
            attribute: kind,
            len: value.len(),
            max,
        });
    }
    std::str::from_utf8(value).map_err(|_| DecodeError::InvalidUtf8 { attribute: kind })
}

fn emit_text(
    kind: AttributeType,
    text: &str,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), StunError> {
    if text.len() > max {
        return Err(StunError::encode(
            kind.to_string(),
            format!("{} bytes, the most allowed is {max}", text.len()),
        ));
    }
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Parses the reserved byte, family, port and address of the address
/// attributes (no XOR).
fn parse_address(kind: AttributeType, value: &[u8]) -> Result<SocketAddr, DecodeError> {
    if value.len() < 4 {
        return Err(DecodeError::BadAttribute {
            attribute: kind,
            reason: "shorter than family and port",
        });
    }
    let port = u16::from_be_bytes([value[2], value[3]]);
    match value[1] {
        FAMILY_V4 => {
            let ip: [u8; 4] = value[4..]
                .try_into()
                .map_err(|_| DecodeError::BadAttribute {
                    attribute: kind,
                    reason: "an IPv4 address value must be 8 bytes",
                })?;
            Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        FAMILY_V6 => {
            let ip: [u8; 16] = value[4..]
                .try_into()
                .map_err(|_| DecodeError::BadAttribute {
                    attribute: kind,
                    reason: "an IPv6 address value must be 20 bytes",
                })?;
            Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => Err(DecodeError::BadAttribute {
            attribute: kind,
            reason: "the address family is neither IPv4 (1) nor IPv6 (2)",
        }),
    }
}

fn emit_address(addr: SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.extend_from_slice(&[0, FAMILY_V4]);
            out.extend_from_slice(&addr.port().to_be_bytes());
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.extend_from_slice(&[0, FAMILY_V6]);
            out.extend_from_slice(&addr.port().to_be_bytes());
            out.extend_from_slice(&ip.octets());
        }
    }
}

/// XORs an address with the magic cookie (and transaction id for IPv6);
/// its own inverse.
fn xor_address(addr: SocketAddr, transaction_id: &TransactionId) -> SocketAddr {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match addr.ip() {
        IpAddr::V4(ip) => {
            let mut o = ip.octets();
            for (b, c) in o.iter_mut().zip(cookie) {
                *b ^= c;
            }
            IpAddr::V4(Ipv4Addr::from(o))
        }
        IpAddr::V6(ip) => {
            let mut o = ip.octets();
            let pad = cookie.iter().chain(transaction_id.as_bytes().iter());
            for (b, c) in o.iter_mut().zip(pad) {
                *b ^= c;
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
    };
    SocketAddr::new(ip, port)
}

fn parse_error_code(value: &[u8]) -> Result<ErrorCode, DecodeError> {
    let kind = AttributeType::ERROR_CODE;
    if value.len() < 4 {
        return Err(DecodeError::BadAttribute {
            attribute: kind,
            reason: "shorter than 4 bytes",
        });
    }
    let class = value[2] & 0x07;
    let number = value[3];
    if !(3..=6).contains(&class) {
        return Err(DecodeError::BadAttribute {
            attribute: kind,
            reason: "the class must be 3 to 6",
        });
    }
    if number > 99 {
        return Err(DecodeError::BadAttribute {
            attribute: kind,
            reason: "the number must be 0 to 99",
        });
    }
    let reason = parse_text(kind, &value[4..], MAX_TEXT_LEN)?.to_owned();
    Ok(ErrorCode {
        code: u16::from(class) * 100 + u16::from(number),
        reason,
    })
}

/// Parses one algorithm entry; returns it and the bytes after its padding.
fn parse_algorithm(
    kind: AttributeType,
    value: &[u8],
) -> Result<(PasswordAlgorithmParams, &[u8]), DecodeError> {
    if value.len() < 4 {
        return Err(DecodeError::BadAttribute {
            attribute: kind,
            reason: "an algorithm entry is shorter than 4 bytes",
        });
    }
    let algorithm = u16::from_be_bytes([value[0], value[1]]);
    let len = usize::from(u16::from_be_bytes([value[2], value[3]]));
    let padded = len.div_ceil(4) * 4;
    let rest = &value[4..];
    if rest.len() < padded {
        return Err(DecodeError::BadAttribute {
            attribute: kind,
            reason: "an algorithm's parameters run past the value",
        });
    }
    Ok((
        PasswordAlgorithmParams {
            algorithm,
            parameters: rest[..len].to_vec(),
        },
        &rest[padded..],
    ))
}

fn emit_algorithm(
    kind: AttributeType,
    p: &PasswordAlgorithmParams,
    out: &mut Vec<u8>,
) -> Result<(), StunError> {
    let len = u16::try_from(p.parameters.len()).map_err(|_| {
        StunError::encode(kind.to_string(), "algorithm parameters over 65535 bytes")
    })?;
    out.extend_from_slice(&p.algorithm.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&p.parameters);
    out.resize(out.len() + (4 - p.parameters.len() % 4) % 4, 0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tid() -> TransactionId {
        TransactionId::new([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
    }

    fn value_of(attr: &Attribute) -> Vec<u8> {
        let mut out = Vec::new();
        attr.emit_value(&tid(), &mut out).unwrap();
        out
    }

    #[test]
    fn xor_is_its_own_inverse_for_both_families() {
        for addr in ["192.0.2.1:32853", "[2001:db8::1]:40000"] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_ne!(xor_address(addr, &tid()), addr);
            assert_eq!(xor_address(xor_address(addr, &tid()), &tid()), addr);
        }
    }

    #[test]
    fn values_decode_back() {
        let cases = [
            Attribute::XorMappedAddress("[::1]:3478".parse().unwrap()),
            Attribute::ErrorCode(ErrorCode::new(420, "Unknown Attribute")),
            Attribute::ChangeRequest(ChangeRequest {
                change_ip: true,
                change_port: false,
            }),
            Attribute::ResponsePort(4000),
            Attribute::UnknownAttributes(vec![AttributeType(0x0024), AttributeType(0x7fff)]),
            Attribute::PasswordAlgorithms(vec![
                PasswordAlgorithmParams {
                    algorithm: 2,
                    parameters: vec![],
                },
                PasswordAlgorithmParams {
                    algorithm: 9,
                    parameters: vec![1, 2, 3],
                },
            ]),
        ];
        for attr in cases {
            let value = value_of(&attr);
            assert_eq!(Attribute::parse(attr.kind(), &value, &tid()).unwrap(), attr);
        }
    }

    #[test]
    fn bad_values_name_the_attribute() {
        let err =
            Attribute::parse(AttributeType::XOR_MAPPED_ADDRESS, &[0, 3, 0, 0], &tid()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad XOR-MAPPED-ADDRESS attribute: the address family is neither IPv4 (1) nor IPv6 (2)"
        );
        let err = Attribute::parse(AttributeType::ERROR_CODE, &[0, 0, 2, 0], &tid()).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::BadAttribute {
                attribute: AttributeType::ERROR_CODE,
                ..
            }
        ));
        let err = Attribute::parse(AttributeType::SOFTWARE, &[0xff, 0xfe], &tid()).unwrap_err();
        assert_eq!(
            err,
            DecodeError::InvalidUtf8 {
                attribute: AttributeType::SOFTWARE
            }
        );
        assert!(
            Attribute::ErrorCode(ErrorCode::new(200, "no"))
                .emit_value(&tid(), &mut Vec::new())
                .is_err()
        );
    }

    #[test]
    fn unknown_types_are_kept() {
        let attr = Attribute::parse(AttributeType(0x8123), b"abc", &tid()).unwrap();
        assert_eq!(
            attr,
            Attribute::Unknown {
                kind: AttributeType(0x8123),
                value: b"abc".to_vec()
            }
        );
        assert!(!AttributeType(0x8123).is_comprehension_required());
        assert!(AttributeType(0x0024).is_comprehension_required());
        assert_eq!(AttributeType(0x0024).to_string(), "0x0024");
    }
}
