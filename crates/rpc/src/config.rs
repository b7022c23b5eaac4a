//! Plain configuration with documented defaults.

use std::time::Duration;

/// How an [`Rpc`](crate::Rpc) behaves, as a caller and as a server.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RpcConfig {
    /// The largest CALL or SIGNAL frame (the whole MESSAGE data) this peer
    /// sends or accepts. A call over it fails with
    /// [`RpcError::TooLarge`](crate::RpcError::TooLarge) before it is
    /// sent; a received one is answered with
    /// [`RemoteErrorKind::TooLarge`](crate::RemoteErrorKind::TooLarge).
    /// Default: 1 MiB.
    pub max_request_bytes: usize,
    /// The largest RESULT frame this peer sends or accepts. A handler's
    /// result over it is replaced by a
    /// [`TooLarge`](crate::RemoteErrorKind::TooLarge) error; a received
    /// one fails the call with [`RpcError::TooLarge`](crate::RpcError::TooLarge).
    /// Default: 1 MiB.
    pub max_response_bytes: usize,
    /// The timeout of calls made without [`CallOptions`]. Default: 30 s.
    pub default_timeout: Duration,
    /// Calls, signals and cancels received and not yet handled by the
    /// dispatcher. Results skip it (they are matched to their callers as
    /// they arrive), and so does a call handled on messaging's task as it
    /// is read (the first call of the messages read together, when the
    /// dispatcher has nothing to handle, see
    /// [`RpcStats::calls_inline`](crate::RpcStats::calls_inline)). When
    /// full, the newest frame is dropped and counted in
    /// [`RpcStats::inbound_dropped`](crate::RpcStats::inbound_dropped).
    /// Default: 65 536.
    pub inbound_capacity: usize,
    /// Removes the messaging instance's default queue (id 0) when the RPC
    /// instance starts. That queue keeps a copy of every received message,
    /// RPC frames included, until someone reads it; on an instance used
    /// for RPC nobody does. Turn this off only if the default queue is
    /// read. Default: true.
    pub close_default_queue: bool,
    /// The serving side.
    pub server: ServerConfig,
}

impl Default for RpcConfig {
    fn default() -> RpcConfig {
        RpcConfig {
            max_request_bytes: 1 << 20,
            max_response_bytes: 1 << 20,
            default_timeout: Duration::from_secs(30),
            inbound_capacity: 65_536,
            close_default_queue: true,
            server: ServerConfig::default(),
        }
    }
}

/// How an [`Rpc`](crate::Rpc) serves calls.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Handlers (calls and signals) running at once; more wait for a turn.
    /// Default: 256.
    pub max_concurrent_calls: usize,
    /// Calls and signals waiting for a turn. Beyond it a call is answered
    /// with [`RemoteErrorKind::Overloaded`](crate::RemoteErrorKind::Overloaded)
    /// (and does not run), a signal is dropped; both are counted in
    /// [`RpcStats::overloaded`](crate::RpcStats::overloaded). Default: 4 096.
    pub max_waiting_calls: usize,
    /// Results remembered per caller, to answer a repeated call id without
    /// running the method again. First in, first out: a repeat of a call
    /// older than the last `result_cache` calls of that caller runs again.
    /// 0 turns the cache off. Default: 4 096.
    pub result_cache: usize,
    /// Bytes the result caches of all callers hold together (each result
    /// counts its frame plus 64 bytes). Over it, the oldest result of the
    /// caller holding the most bytes is dropped. Default: 64 MiB.
    pub result_cache_bytes: usize,
    /// The longest a handler may run, whatever deadline the caller asked
    /// for; also the deadline of signals. Default: 1 hour.
    pub max_deadline: Duration,
    /// Start every handler in a task of its own. Off, the task that
    /// handles the call polls a handler once itself when a turn is free:
    /// one that finishes at once (nothing it awaits has to wait) costs no
    /// task and no timer; one that has to wait goes on in a task of its
    /// own, as all do when this is on. The task that handles a call is
    /// messaging's I/O task for a call that arrives alone while the
    /// dispatcher is idle (see
    /// [`RpcStats::calls_inline`](crate::RpcStats::calls_inline)), the RPC
    /// dispatcher's task otherwise. Turn it on when handlers do heavy work
    /// before their first wait, so that the work runs in tasks (on any
    /// worker thread of a multi-thread runtime) and not in messaging's task
    /// or the dispatcher, which meanwhile receive nothing. Default: false.
    pub spawn_handlers: bool,
    /// Send the caller what went wrong when a call fails: the error's
    /// [kind](crate::RemoteError::kind), Rust type name, message and chain
    /// of causes ([`RemoteError::context`](crate::RemoteError::context)),
    /// like snakeMQ's `transfer_exceptions`. Off, the caller learns only
    /// that the call failed and the [kind](crate::RemoteErrorKind) of
    /// failure (an application error, a panic, an unknown method,
    /// overloaded, ...): every error goes out [bare](crate::RemoteError::bare),
    /// with no type name, message or context, whether a handler returned
    /// it, a handler panicked, or the RPC layer refused the call. Turn it
    /// off for callers that must not see the server's internals. Default:
    /// true.
    #[doc(alias = "transfer_exceptions", alias = "send_error_context")]
    pub transfer_errors: bool,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_concurrent_calls: 256,
            max_waiting_calls: 4096,
            result_cache: 4096,
            result_cache_bytes: 64 << 20,
            max_deadline: Duration::from_secs(3600),
            spawn_handlers: false,
            transfer_errors: true,
        }
    }
}

/// Options of one call ([`Rpc::call_with`](crate::Rpc::call_with)).
///
/// ```
/// use std::time::Duration;
/// use weft_rpc::CallOptions;
/// let quick = CallOptions::timeout(Duration::from_millis(200));
/// assert_eq!(quick.timeout, Some(Duration::from_millis(200)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallOptions {
    /// How long to wait for the result; also the server's deadline (sent
    /// as a relative duration) and the CALL message's TTL while it waits
    /// for the peer to connect. `None`: the config's
    /// [`default_timeout`](RpcConfig::default_timeout). Default: `None`.
    pub timeout: Option<Duration>,
}

impl CallOptions {
    /// Options with this timeout.
    pub fn timeout(timeout: Duration) -> CallOptions {
        CallOptions {
            timeout: Some(timeout),
        }
    }
}
