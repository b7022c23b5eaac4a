//! The RPC layer's errors: [`RpcError`] at the caller, [`RemoteError`] as
//! it travels from the server.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weft_messaging::MessagingError;

/// Everything a call, a signal or a registration can fail with. Match on
/// the variant; the enum grows, so keep a catch-all arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The server answered with an error: the handler's own, or one of the
    /// RPC layer's ([`RemoteErrorKind`]).
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// No result came within the call's timeout. The server was sent a
    /// CANCEL; the method may or may not have run.
    #[error("no result within {0:?}")]
    Timeout(Duration),
    /// The call was pending when [`Rpc::close`](crate::Rpc::close) ran.
    #[error("the call was cancelled: the RPC instance closed")]
    Cancelled,
    /// The arguments could not be encoded.
    #[error("cannot encode the arguments: {0}")]
    Encode(#[source] postcard::Error),
    /// The result (or a frame of it) could not be decoded.
    #[error("cannot decode: {0}")]
    Decode(#[source] DecodeError),
    /// A request or response is over its configured limit.
    #[error("{what} of {size} bytes; the limit is {limit}")]
    TooLarge {
        /// `"request"` or `"response"`.
        what: &'static str,
        /// Its size in bytes (the whole frame).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// An object or method name is longer than
    /// [`MAX_NAME`](crate::wire::MAX_NAME) bytes.
    #[error("name of {0} bytes; the limit is 255")]
    NameTooLong(usize),
    /// The messaging layer refused the message (a full queue, a closed
    /// instance).
    #[error(transparent)]
    Messaging(#[from] MessagingError),
    /// This RPC instance is closed.
    #[error("the RPC instance is closed")]
    Closed,
    /// No Tokio runtime is running.
    #[error("weft-rpc needs a Tokio runtime")]
    NoRuntime,
}

/// What could not be decoded, in [`RpcError::Decode`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The result's bytes are not a value of the type the caller asked for.
    #[error("the result does not decode as {type_name}: {source}")]
    Result {
        /// The type asked for.
        type_name: &'static str,
        /// Why postcard could not decode it.
        #[source]
        source: postcard::Error,
    },
    /// A RESULT frame from the server is malformed.
    #[error(transparent)]
    Frame(#[from] crate::wire::WireError),
}

/// Which kind of failure a [`RemoteError`] reports.
///
/// On the wire each kind is a number (below); a number this version does
/// not know arrives as [`Other`](RemoteErrorKind::Other).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemoteErrorKind {
    /// 0: the handler returned an error.
    Application,
    /// 1: no object of that name is registered.
    UnknownObject,
    /// 2: the object has no method of that name.
    UnknownMethod,
    /// 3: the arguments did not decode as the method's argument type (or
    /// the result did not encode).
    BadPayload,
    /// 4: the handler panicked; the server went on serving.
    Panic,
    /// 5: the call's deadline passed before the handler finished; the
    /// server stopped working on it.
    DeadlineExceeded,
    /// 6: the caller cancelled the call (seen when a cancelled call's id
    /// is sent again).
    Cancelled,
    /// 7: the server had too many calls running and waiting; the call did
    /// not run.
    Overloaded,
    /// 8: the request or the result is over the server's size limit.
    TooLarge,
    /// A kind this version does not know, with its number.
    Other(u32),
}

impl RemoteErrorKind {
    /// The kind's number on the wire.
    pub fn code(self) -> u32 {
        match self {
            RemoteErrorKind::Application => 0,
            RemoteErrorKind::UnknownObject => 1,
            RemoteErrorKind::UnknownMethod => 2,
            RemoteErrorKind::BadPayload => 3,
            RemoteErrorKind::Panic => 4,
            RemoteErrorKind::DeadlineExceeded => 5,
            RemoteErrorKind::Cancelled => 6,
            RemoteErrorKind::Overloaded => 7,
            RemoteErrorKind::TooLarge => 8,
            RemoteErrorKind::Other(n) => n,
        }
    }

    /// The kind of a number.
    pub fn from_code(code: u32) -> RemoteErrorKind {
        match code {
            0 => RemoteErrorKind::Application,
            1 => RemoteErrorKind::UnknownObject,
            2 => RemoteErrorKind::UnknownMethod,
            3 => RemoteErrorKind::BadPayload,
            4 => RemoteErrorKind::Panic,
            5 => RemoteErrorKind::DeadlineExceeded,
            6 => RemoteErrorKind::Cancelled,
            7 => RemoteErrorKind::Overloaded,
            8 => RemoteErrorKind::TooLarge,
            n => RemoteErrorKind::Other(n),
        }
    }

    /// The `type_name` the server gives errors of this kind that have no
    /// Rust type of their own.
    pub(crate) fn builtin_type_name(self) -> &'static str {
        match self {
            RemoteErrorKind::Application => "weft_rpc::RemoteErrorKind::Application",
            RemoteErrorKind::UnknownObject => "weft_rpc::RemoteErrorKind::UnknownObject",
            RemoteErrorKind::UnknownMethod => "weft_rpc::RemoteErrorKind::UnknownMethod",
            RemoteErrorKind::BadPayload => "weft_rpc::RemoteErrorKind::BadPayload",
            RemoteErrorKind::Panic => "weft_rpc::RemoteErrorKind::Panic",
            RemoteErrorKind::DeadlineExceeded => "weft_rpc::RemoteErrorKind::DeadlineExceeded",
            RemoteErrorKind::Cancelled => "weft_rpc::RemoteErrorKind::Cancelled",
            RemoteErrorKind::Overloaded => "weft_rpc::RemoteErrorKind::Overloaded",
            RemoteErrorKind::TooLarge => "weft_rpc::RemoteErrorKind::TooLarge",
            RemoteErrorKind::Other(_) => "weft_rpc::RemoteErrorKind::Other",
        }
    }
}

impl fmt::Display for RemoteErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteErrorKind::Application => f.write_str("application error"),
            RemoteErrorKind::UnknownObject => f.write_str("unknown object"),
            RemoteErrorKind::UnknownMethod => f.write_str("unknown method"),
            RemoteErrorKind::BadPayload => f.write_str("bad payload"),
            RemoteErrorKind::Panic => f.write_str("handler panicked"),
            RemoteErrorKind::DeadlineExceeded => f.write_str("deadline exceeded"),
            RemoteErrorKind::Cancelled => f.write_str("cancelled"),
            RemoteErrorKind::Overloaded => f.write_str("server overloaded"),
            RemoteErrorKind::TooLarge => f.write_str("too large"),
            RemoteErrorKind::Other(n) => write!(f, "remote error of kind {n}"),
        }
    }
}

mod kind_code {
    use super::RemoteErrorKind;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(k: &RemoteErrorKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(k.code())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<RemoteErrorKind, D::Error> {
        Ok(RemoteErrorKind::from_code(u32::deserialize(d)?))
    }
}

/// The most bytes of a message or context line a server sends; longer
/// ones are cut (at a character boundary).
pub(crate) const MAX_TEXT: usize = 4096;
/// The most context lines a server sends.
pub(crate) const MAX_CONTEXT_LINES: usize = 32;

fn cut(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut at = MAX_TEXT;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
    s
}

/// An error that happened on the server, as the caller receives it: what
/// kind, the Rust type of the error, its message, and the remote context
/// (the error's chain of causes, one line each, outermost first; like
/// snakeMQ's remote traceback). A server may send the kind alone
/// ([`ServerConfig::transfer_errors`](crate::ServerConfig::transfer_errors)
/// off, [`RemoteError::bare`]).
///
/// Serializable; this is what travels in a RESULT frame.
///
/// ```
/// use weft_rpc::{RemoteError, RemoteErrorKind};
///
/// let io = std::io::Error::other("disk on fire");
/// let e = RemoteError::from_error(&io);
/// assert_eq!(e.kind, RemoteErrorKind::Application);
/// assert_eq!(e.type_name, "std::io::error::Error");
/// assert_eq!(e.message, "disk on fire");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RemoteError {
    /// What kind of failure.
    #[serde(with = "kind_code")]
    pub kind: RemoteErrorKind,
    /// The Rust type of the error (`std::any::type_name`), or
    /// `weft_rpc::RemoteErrorKind::...` for the RPC layer's own errors.
    pub type_name: String,
    /// The error's message (its `Display`).
    pub message: String,
    /// The error's causes (`source()` chain), outermost first; empty when
    /// the server does not send context.
    pub context: Vec<String>,
}

impl RemoteError {
    /// An error of `kind` without context.
    pub fn new(
        kind: RemoteErrorKind,
        type_name: impl Into<String>,
        message: impl Into<String>,
    ) -> RemoteError {
        RemoteError {
            kind,
            type_name: cut(type_name.into()),
            message: cut(message.into()),
            context: Vec::new(),
        }
    }

    /// A failure of `kind` and nothing else: no type name, message or
    /// context. What a server that does not transfer errors sends
    /// ([`ServerConfig::transfer_errors`](crate::ServerConfig::transfer_errors)).
    ///
    /// ```
    /// use weft_rpc::{RemoteError, RemoteErrorKind};
    /// let e = RemoteError::bare(RemoteErrorKind::Application);
    /// assert!(e.type_name.is_empty() && e.message.is_empty() && e.context.is_empty());
    /// assert_eq!(e.to_string(), "remote application error");
    /// ```
    pub fn bare(kind: RemoteErrorKind) -> RemoteError {
        RemoteError {
            kind,
            type_name: String::new(),
            message: String::new(),
            context: Vec::new(),
        }
    }

    /// One of the RPC layer's own errors.
    pub(crate) fn builtin(kind: RemoteErrorKind, message: impl Into<String>) -> RemoteError {
        RemoteError::new(kind, kind.builtin_type_name(), message)
    }

    /// An [`Application`](RemoteErrorKind::Application) error from a Rust
    /// error: its `Display`, its type name, and its `source()` chain as
    /// context.
    pub fn from_error<E: std::error::Error + ?Sized>(error: &E) -> RemoteError {
        let mut e = RemoteError::new(
            RemoteErrorKind::Application,
            std::any::type_name::<E>(),
            error.to_string(),
        );
        let mut source = error.source();
        while let Some(s) = source {
            if e.context.len() == MAX_CONTEXT_LINES {
                break;
            }
            e.context.push(cut(s.to_string()));
            source = s.source();
        }
        e
    }

    /// Adds a context line.
    pub fn with_context(mut self, line: impl Into<String>) -> RemoteError {
        if self.context.len() < MAX_CONTEXT_LINES {
            self.context.push(cut(line.into()));
        }
        self
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.type_name.is_empty() && self.message.is_empty() {
            // A bare failure: there is nothing more to say.
            return write!(f, "remote {}", self.kind);
        }
        write!(
            f,
            "remote {}: {}: {}",
            self.kind, self.type_name, self.message
        )
    }
}

impl std::error::Error for RemoteError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn chain_becomes_context() {
        let e = RemoteError::from_error(&Outer(Middle(std::io::Error::other("inner"))));
        assert_eq!(e.message, "outer");
        assert!(e.type_name.ends_with("::Outer"), "{}", e.type_name);
        assert_eq!(e.context, vec!["middle".to_string(), "inner".to_string()]);
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let e = RemoteError::new(RemoteErrorKind::Application, "t", "é".repeat(MAX_TEXT));
        assert!(e.message.len() <= MAX_TEXT);
        assert!(e.message.chars().all(|c| c == 'é'));
    }

    #[test]
    fn codes_round_trip() {
        for code in 0..12 {
            assert_eq!(RemoteErrorKind::from_code(code).code(), code);
        }
    }
}
