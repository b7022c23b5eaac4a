//! The sans-I/O RPC core: the caller's table of calls ([`calls`]) and the
//! server's admission of calls and signals ([`serving`]). Each is driven
//! with `handle_*` (input) and drained with `poll_*` (output); time is a
//! `std::time::Instant` passed in as `now`, never read here. No tokio: the
//! shell (`client.rs`, `server.rs`) owns the tasks, timers, channels and
//! the messaging instance, and only moves what the core decides.

pub(crate) mod calls;
pub(crate) mod serving;
