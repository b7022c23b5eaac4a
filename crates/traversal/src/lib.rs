//! weft-traversal: NAT traversal for weft messaging. The one place where
//! weft-stun meets the pipeline: it sits on weft-messaging (and
//! weft-packeter, weft-link below it) and weft-stun; only weft-cli and the
//! benches sit on it.

#![forbid(unsafe_code)]

pub mod config;
mod core;
pub mod error;
mod relay;
pub mod wire;

pub use crate::core::{RendezvousCore, RendezvousEvent, RendezvousStats, Transmit};
pub use config::RendezvousConfig;
pub use error::{RendezvousError, TraversalError};
