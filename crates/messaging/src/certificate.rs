//! The names in a peer's certificate, which binding an identity checks
//! (see [`MessagingConfig::bind_identity`](crate::MessagingConfig::bind_identity)).
//!
//! The certificate is parsed by rustls-webpki (the parser that verified
//! it during the handshake); the subject's common name, which webpki does
//! not read, comes from a small DER reader over the subject's bytes that
//! is bounded by them: every length is checked against what remains, and
//! a malformed subject is a typed error, never a panic.

use rustls_pki_types::CertificateDer;

/// The names a certificate holds: its subject's common name and its DNS
/// names (subjectAltName).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct CertificateNames {
    /// The subject's common name (CN), when it has one (the last, most
    /// specific, when it has several).
    pub subject: Option<String>,
    /// The DNS names of its subjectAltName extension, in order (wildcard
    /// names such as `*.example.com` included as written).
    pub dns_names: Vec<String>,
}

/// Why a certificate's names could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The certificate does not parse as an X.509 end-entity certificate.
    #[error("not an X.509 certificate: {0}")]
    X509(String),
    /// The subject's DER encoding is malformed (a length past its end, a
    /// tag of a form a name never uses).
    #[error("malformed certificate subject")]
    MalformedSubject,
    /// The subject's common name is not text.
    #[error("the certificate's common name is not text")]
    CommonNameNotText,
}

impl CertificateNames {
    /// The names of the DER certificate `der` (a peer's leaf certificate).
    pub fn from_der(der: &[u8]) -> Result<CertificateNames, CertificateError> {
        let der = CertificateDer::from(der);
        let cert = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| CertificateError::X509(format!("{e:?}")))?;
        let dns_names = cert.valid_dns_names().map(str::to_owned).collect();
        let subject = common_name(cert.subject())?;
        Ok(CertificateNames { subject, dns_names })
    }

    /// The names an identity may be bound to: the DNS names, or the
    /// subject's common name when there are none (as TLS name checks did
    /// before subjectAltName).
    pub fn binding_names(&self) -> Vec<String> {
        if self.dns_names.is_empty() {
            self.subject.iter().cloned().collect()
        } else {
            self.dns_names.clone()
        }
    }

    /// Whether a peer holding this certificate may be `ident`: it is one
    /// of the [`binding_names`](Self::binding_names), byte for byte (no
    /// case folding, no wildcard expansion: identities are
    /// case-sensitive, so `carol` and `Carol` are different peers, and a
    /// wildcard certificate binds no individual name).
    pub fn binds(&self, ident: &str) -> bool {
        if self.dns_names.is_empty() {
            self.subject.as_deref() == Some(ident)
        } else {
            self.dns_names.iter().any(|n| n == ident)
        }
    }
}

/// The OID of the common name attribute, 2.5.4.3, as DER content.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_PRINTABLE_STRING: u8 = 0x13;
const TAG_TELETEX_STRING: u8 = 0x14;
const TAG_IA5_STRING: u8 = 0x16;
const TAG_UNIVERSAL_STRING: u8 = 0x1c;
const TAG_BMP_STRING: u8 = 0x1e;

/// The last common name in `subject`, the content of a DER `Name`: a
/// sequence of relative distinguished names (SETs of attribute type and
/// value SEQUENCEs).
fn common_name(mut subject: &[u8]) -> Result<Option<String>, CertificateError> {
    let mut found = None;
    while !subject.is_empty() {
        let (rdn, rest) = read_tlv(subject, TAG_SET)?;
        subject = rest;
        let mut rdn = rdn;
        while !rdn.is_empty() {
            let (attribute, rest) = read_tlv(rdn, TAG_SEQUENCE)?;
            rdn = rest;
            let (oid, value) = read_tlv(attribute, TAG_OID)?;
            if oid != OID_COMMON_NAME {
                continue;
            }
            let (tag, text, rest) = read_any(value)?;
            if !rest.is_empty() {
                return Err(CertificateError::MalformedSubject);
            }
            found = Some(decode_text(tag, text)?);
        }
    }
    Ok(found)
}

fn decode_text(tag: u8, text: &[u8]) -> Result<String, CertificateError> {
    let utf8 = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| CertificateError::CommonNameNotText)
    };
    match tag {
        TAG_UTF8_STRING | TAG_PRINTABLE_STRING | TAG_IA5_STRING | TAG_TELETEX_STRING => utf8(text),
        TAG_BMP_STRING => {
            if text.len() % 2 != 0 {
                return Err(CertificateError::CommonNameNotText);
            }
            let units = text
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .map_err(|_| CertificateError::CommonNameNotText)
        }
        TAG_UNIVERSAL_STRING => {
            if text.len() % 4 != 0 {
                return Err(CertificateError::CommonNameNotText);
            }
            text.chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Option<String>>()
                .ok_or(CertificateError::CommonNameNotText)
        }
        _ => Err(CertificateError::CommonNameNotText),
    }
}

/// One DER element of tag `tag` at the start of `input`: its content and
/// what follows it.
fn read_tlv(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), CertificateError> {
    let (found, content, rest) = read_any(input)?;
    if found != tag {
        return Err(CertificateError::MalformedSubject);
    }
    Ok((content, rest))
}

/// One DER element at the start of `input`: its tag, its content and what
/// follows it. Only single-byte tags and lengths of up to four bytes: a
/// certificate name never needs more.
fn read_any(input: &[u8]) -> Result<(u8, &[u8], &[u8]), CertificateError> {
    let malformed = CertificateError::MalformedSubject;
    let (&tag, input) = input.split_first().ok_or(malformed.clone())?;
    if tag & 0x1f == 0x1f {
        return Err(malformed);
    }
    let (&first, mut input) = input.split_first().ok_or(malformed.clone())?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return Err(malformed);
        }
        let (bytes, rest) = input.split_at_checked(count).ok_or(malformed.clone())?;
        input = rest;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    let (content, rest) = input.split_at_checked(len).ok_or(malformed)?;
    Ok((tag, content, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_common_name_of_a_subject() {
        // SET { SEQUENCE { OID 2.5.4.6, PrintableString "NZ" } },
        // SET { SEQUENCE { OID 2.5.4.3, UTF8String "carol" } }
        let subject = [
            0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'N', b'Z', 0x31,
            0x0e, 0x30, 0x0c, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x05, b'c', b'a', b'r', b'o',
            b'l',
        ];
        assert_eq!(common_name(&subject), Ok(Some("carol".into())));
        assert_eq!(common_name(&subject[..13]), Ok(None));
    }

    #[test]
    fn malformed_subjects_are_errors_not_panics() {
        let subject = [
            0x31, 0x0e, 0x30, 0x0c, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x05, b'c', b'a', b'r',
            b'o', b'l',
        ];
        // Every truncation, and every byte changed to every value: an
        // answer, never a panic.
        for n in 0..subject.len() {
            assert_eq!(
                common_name(&subject[..n]).err(),
                (n > 0).then_some(CertificateError::MalformedSubject)
            );
        }
        for i in 0..subject.len() {
            for b in 0..=255u8 {
                let mut s = subject;
                s[i] = b;
                let _ = common_name(&s);
            }
        }
        // A length of four bytes far past the end.
        assert_eq!(
            common_name(&[0x31, 0x84, 0xff, 0xff, 0xff, 0xff]),
            Err(CertificateError::MalformedSubject)
        );
        // A common name that is not text.
        let bmp_odd = [
            0x31, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x04, 0x03, 0x1e, 0x03, 0, b'a', 0,
        ];
        assert_eq!(
            common_name(&bmp_odd),
            Err(CertificateError::CommonNameNotText)
        );
    }

    #[test]
    fn what_is_not_a_certificate_is_an_error() {
        // Real certificates' names are read in tests/identity_binding.rs.
        assert!(matches!(
            CertificateNames::from_der(b"not a certificate"),
            Err(CertificateError::X509(_))
        ));
        assert!(matches!(
            CertificateNames::from_der(&[]),
            Err(CertificateError::X509(_))
        ));
    }

    #[test]
    fn the_common_name_binds_only_without_dns_names() {
        let names = CertificateNames {
            subject: Some("carol".into()),
            dns_names: vec![],
        };
        assert!(names.binds("carol"));
        assert_eq!(names.binding_names(), ["carol"]);
        let names = CertificateNames {
            subject: Some("carol".into()),
            dns_names: vec!["dave".into()],
        };
        assert!(!names.binds("carol"));
        assert!(names.binds("dave"));
    }
}
