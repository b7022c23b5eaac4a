//! The crate's error type.

use crate::beacon::Rejection;

/// What can go wrong in discovery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// A socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// [`Discovery::start`](crate::Discovery::start) was called outside a
    /// Tokio runtime.
    #[error("discovery needs a Tokio runtime")]
    NoRuntime,
    /// The configuration cannot work.
    #[error("invalid discovery configuration: {0}")]
    Config(String),
    /// A beacon was rejected.
    #[error(transparent)]
    Rejected(#[from] Rejection),
}

impl DiscoveryError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> DiscoveryError {
        DiscoveryError::Io {
            what: what.into(),
            source,
        }
    }
}
