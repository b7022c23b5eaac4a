//! The crate's error type.

use std::io;

/// Everything that can go wrong in weft-netiface. Match on the variant; the
/// enum grows, so keep a catch-all arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetifaceError {
    /// The operation is not implemented on this system (for example reading
    /// the default route anywhere but Linux, or binding a socket to an
    /// interface on a system with neither `SO_BINDTODEVICE` nor `IP_BOUND_IF`).
    #[error("unsupported on this system: {0}")]
    Unsupported(&'static str),
    /// The system refused to bind a socket to an interface (`EPERM` or
    /// `EACCES`; Linux before 5.7 needs `CAP_NET_RAW` for `SO_BINDTODEVICE`).
    #[error("binding to interface `{interface}` is not permitted: {source}")]
    PermissionDenied {
        /// The interface name.
        interface: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// No interface has this name.
    #[error("no network interface is named `{0}`")]
    NoSuchInterface(String),
    /// No interface has this index.
    #[error("no network interface has index {0}")]
    NoSuchIndex(u32),
    /// A system call or a read of a system file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

impl NetifaceError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> NetifaceError {
        NetifaceError::Io {
            context: context.into(),
            source,
        }
    }
}
