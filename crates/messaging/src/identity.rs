//! Who a peer is: a short UTF-8 name.

use std::fmt;
use std::sync::Arc;

/// The most characters an identity may have (snakeMQ's limit).
pub const MAX_IDENTITY_CHARS: usize = 50;

/// A peer's identity: UTF-8, 1 to 50 characters, unique among the peers
/// that talk to each other. Cheap to clone.
///
/// ```
/// use weft_messaging::Identity;
/// let alice = Identity::new("alice")?;
/// assert_eq!(alice.as_str(), "alice");
/// assert!(Identity::new("x".repeat(51)).is_err());
/// # Ok::<(), weft_messaging::identity::IdentityError>(())
/// ```
#[derive(Clone, PartialOrd, Ord)]
pub struct Identity(Arc<str>);

/// Equal names; two handles on the same name are equal without reading
/// it (the common case: a peer's identity is one handle, cloned around).
impl PartialEq for Identity {
    #[inline]
    fn eq(&self, other: &Identity) -> bool {
        self.same_handle(other) || self.0 == other.0
    }
}

impl Eq for Identity {}

/// The name's hash, as `str` hashes it (equal names hash alike).
impl std::hash::Hash for Identity {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// Looked up by name: equality, order and hash are the name's.
impl std::borrow::Borrow<str> for Identity {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Why a name is not a valid identity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The name is empty.
    #[error("an identity cannot be empty")]
    Empty,
    /// The name is longer than [`MAX_IDENTITY_CHARS`].
    #[error("identity has {chars} characters; the limit is {MAX_IDENTITY_CHARS}")]
    TooLong {
        /// Its length in characters.
        chars: usize,
    },
    /// The bytes are not UTF-8.
    #[error("identity is not valid UTF-8")]
    NotUtf8,
}

impl Identity {
    /// Whether both are handles on the same name (a cheap check that
    /// implies equality; equal names may still be separate handles).
    pub(crate) fn same_handle(&self, other: &Identity) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Checks and wraps a name.
    pub fn new(name: impl AsRef<str>) -> Result<Identity, IdentityError> {
        let name = name.as_ref();
        Identity::check(name)?;
        Ok(Identity(Arc::from(name)))
    }

    /// Checks that `name` can be an identity, without making one.
    ///
    /// ```
    /// use weft_messaging::Identity;
    /// assert!(Identity::check("alice").is_ok());
    /// assert!(Identity::check("").is_err());
    /// ```
    pub fn check(name: &str) -> Result<(), IdentityError> {
        if name.is_empty() {
            return Err(IdentityError::Empty);
        }
        let chars = name.chars().count();
        if chars > MAX_IDENTITY_CHARS {
            return Err(IdentityError::TooLong { chars });
        }
        Ok(())
    }

    /// Checks bytes received from the network.
    pub fn from_bytes(bytes: &[u8]) -> Result<Identity, IdentityError> {
        let name = std::str::from_utf8(bytes).map_err(|_| IdentityError::NotUtf8)?;
        Identity::new(name)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl std::str::FromStr for Identity {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Identity, IdentityError> {
        Identity::new(s)
    }
}

impl TryFrom<&str> for Identity {
    type Error = IdentityError;
    fn try_from(s: &str) -> Result<Identity, IdentityError> {
        Identity::new(s)
    }
}

impl AsRef<str> for Identity {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_characters_not_bytes() {
        let fifty = "ž".repeat(50);
        assert_eq!(fifty.len(), 100);
        assert!(Identity::new(&fifty).is_ok());
        assert_eq!(
            Identity::new("ž".repeat(51)),
            Err(IdentityError::TooLong { chars: 51 })
        );
        assert_eq!(Identity::new(""), Err(IdentityError::Empty));
        assert_eq!(
            Identity::from_bytes(&[0xff, 0xfe]),
            Err(IdentityError::NotUtf8)
        );
    }

    #[test]
    fn equality_and_hash_go_by_the_name_whichever_the_handle() {
        use std::collections::HashMap;
        let a = Identity::new("alice").unwrap();
        let same_handle = a.clone();
        let other_handle = Identity::new("alice").unwrap();
        assert!(a.same_handle(&same_handle) && !a.same_handle(&other_handle));
        assert_eq!(a, same_handle);
        assert_eq!(a, other_handle);
        assert_ne!(a, Identity::new("alicf").unwrap());
        assert_ne!(a, Identity::new("alic").unwrap());
        let map: HashMap<Identity, u8> = [(a, 1)].into();
        assert_eq!(map.get(&other_handle), Some(&1));
        assert_eq!(map.get(&Identity::new("bob").unwrap()), None);
    }
}
