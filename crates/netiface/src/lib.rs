//! weft-netiface: this host's network interfaces, their addresses and
//! scopes, the default route, and binding sockets to an interface; a
//! sibling of weft's pipeline that depends on no weft crate.
//!
//! Nothing here sends a packet: interfaces and addresses come from the
//! system ([`if_addrs`], and `/sys/class/net` on Linux), the default route
//! from the routing table, and binding only sets a socket option.
//!
//! ```
//! use weft_netiface::{NetifaceError, Scope};
//!
//! for iface in weft_netiface::interfaces()? {
//!     let state = if iface.flags.up { "up" } else { "down" };
//!     println!("{} (index {:?}, {state})", iface.name, iface.index);
//!     for addr in &iface.addrs {
//!         // For example `192.168.1.7/24 private` or `fe80::1/64 link-local`.
//!         println!("  {addr} {}", addr.scope);
//!     }
//! }
//!
//! match weft_netiface::default_routes() {
//!     Ok(routes) => {
//!         if let Some(v4) = routes.v4 {
//!             println!("IPv4 leaves through {} via {:?}", v4.interface, v4.gateway);
//!         }
//!     }
//!     Err(NetifaceError::Unsupported(what)) => println!("{what}"),
//!     Err(e) => return Err(e),
//! }
//!
//! assert_eq!(Scope::of("100.64.1.2".parse().unwrap()), Scope::Private);
//! # Ok::<(), NetifaceError>(())
//! ```
//!
//! # What is where
//! - [`interfaces`], [`interface_by_name`] (and, in [`interface`],
//!   [`index_of`](interface::index_of), [`name_of`](interface::name_of)):
//!   [`Interface`]s with [`InterfaceFlags`] and [`InterfaceAddr`]s, each classified
//!   by [`Scope`] (loopback, link-local, unique local, private, global).
//! - [`default_routes`]: the IPv4 and IPv6 [`DefaultRoute`] (interface and
//!   gateway). Linux only; the parsers of Linux's tables, in
//!   [`default_route`], are pure functions usable anywhere.
//! - [`routes`]: P2PD-style [`Route`]s, an interface's addresses grouped by
//!   the external address seen through them, found by an
//!   [`ExternalLookup`] the caller supplies (such as a STUN client).
//! - [`bind_to_interface`]: `SO_BINDTODEVICE` on Linux, `IP_BOUND_IF` on
//!   Apple systems, a typed error elsewhere or when not permitted.
//!
//! Errors are one enum, [`NetifaceError`].

mod bind;
pub mod default_route;
mod error;
pub mod interface;
mod route;
mod scope;

#[cfg(any(unix, windows))]
pub use bind::bind_to_interface;
pub use default_route::{DefaultRoute, DefaultRoutes, default_routes};
pub use error::NetifaceError;
pub use interface::{Interface, InterfaceAddr, InterfaceFlags, interface_by_name, interfaces};
pub use route::{ExternalLookup, Route, routes};
pub use scope::Scope;
