//! QUIC on a UDP socket the caller already holds: [`Link::adopt_quic`];
//! and the STUN side of QUIC sockets: [`QuicEndpoint::stun`], [`Link::quic_stun`].

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use super::{StunChannel, StunInbox, endpoint};
use crate::address::{Address, Scheme, ToAddress};
use crate::connection::{Connection, Origin};
use crate::dial::{connector_task_on, establish_on, run_established};
use crate::error::LinkError;
use crate::link::{ConnectOptions, ConnectorId, Link, ListenerId, Listening};
use crate::registry::Registry;
use crate::tls::TlsServerConfig;

/// A QUIC endpoint on a socket handed to [`Link::adopt_quic`]: it accepts
/// connections when made with a server configuration, and makes them from
/// the same socket, each a connection of the link like any other. Cheap to
/// clone. The socket is closed once the endpoint's handles are gone and its
/// connections have ended.
#[derive(Clone)]
pub struct QuicEndpoint {
    endpoint: quinn::Endpoint,
    registry: Arc<Registry>,
    listening: Option<Listening>,
    stun: Arc<StunInbox>,
}

impl fmt::Debug for QuicEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicEndpoint")
            .field("local", &self.endpoint.local_addr().ok())
            .field("listening", &self.listening)
            .finish()
    }
}

impl QuicEndpoint {
    /// The socket's address.
    pub fn local_addr(&self) -> Result<SocketAddr, LinkError> {
        self.endpoint
            .local_addr()
            .map_err(|e| LinkError::io("reading the local address", e))
    }

    /// Moves the endpoint to another socket (the local address changed, or
    /// a new hole was punched): its connections carry on from the new
    /// address without loss, as QUIC's connection migration allows; the
    /// peers see the new address once packets come from it. The old socket
    /// is closed.
    pub fn rebind(&self, socket: std::net::UdpSocket) -> Result<(), LinkError> {
        let dropped = &self.registry.stats.quic_datagrams_dropped;
        let (socket, sender) = endpoint::counting(socket, dropped, &self.stun)?;
        self.endpoint
            .rebind_abstract(socket)
            .map_err(|e| LinkError::io("moving a QUIC endpoint to another socket", e))?;
        self.stun.send_through(sender);
        Ok(())
    }

    /// The STUN side of the socket (RFC 7983): the datagrams whose first
    /// byte is 0 to 3, which QUIC never sees, and replies from the same
    /// port. While a [`StunChannel`] of the endpoint lives they are queued
    /// for it (up to [`QuicOptions::stun_queue`](super::QuicOptions::stun_queue));
    /// otherwise they are dropped and counted in
    /// [`LinkStats::stun_datagrams_dropped`](crate::LinkStats::stun_datagrams_dropped).
    /// Every call gives a handle on the same queue.
    pub fn stun(&self) -> StunChannel {
        StunChannel::new(self.stun.clone())
    }

    /// The listener that accepts on the socket, when the endpoint was made
    /// with a server configuration; [`Link::remove_listener`] stops it.
    pub fn listening(&self) -> Option<&Listening> {
        self.listening.as_ref()
    }

    /// Connects once from this socket, without reconnecting, as
    /// [`Link::connect_once`] does: the connection when it is up, or the
    /// error. `address` must be a `quic://` address; `options.tls` is
    /// required and `options.socket` is ignored (the socket exists).
    /// Cancel-safe: a cancelled attempt leaves no connection behind.
    pub async fn connect_once(
        &self,
        address: impl ToAddress,
        options: ConnectOptions,
    ) -> Result<Connection, LinkError> {
        let address = quic_address(address)?;
        let registry = &self.registry;
        let events = registry.sender()?;
        let dialled = establish_on(registry, &address, &options, Some(&self.endpoint)).await?;
        let conn =
            registry.new_connection(Origin::Adopted, dialled.ends, false, registry.shutdown());
        registry.spawn(run_established(
            registry.clone(),
            conn.clone(),
            dialled.socket,
            events,
        ));
        Ok(conn)
    }

    /// Adds a connector that connects from this socket and reconnects as
    /// [`Link::connect_with`]'s do; [`Link::remove_connector`] stops it.
    pub fn connect_with(
        &self,
        address: impl ToAddress,
        options: ConnectOptions,
    ) -> Result<ConnectorId, LinkError> {
        let address = quic_address(address)?;
        if options.tls.is_none() {
            return Err(LinkError::TlsConfigMissing {
                address: address.to_string(),
                side: "client",
            });
        }
        let registry = &self.registry;
        let events = registry.sender()?;
        let id = ConnectorId(registry.next_id());
        let cancel = registry.shutdown().child_token();
        registry.add_connector(id, cancel.clone());
        registry.spawn(connector_task_on(
            registry.clone(),
            id,
            address,
            options,
            Some(self.endpoint.clone()),
            cancel,
            events,
        ));
        Ok(id)
    }
}

/// `address` as a `quic://` address, or why it is not one.
fn quic_address(address: impl ToAddress) -> Result<Address, LinkError> {
    let address = address.to_address()?;
    if address.scheme() != Scheme::Quic {
        return Err(LinkError::Unsupported(format!(
            "{address}: a QUIC endpoint connects to quic:// addresses only"
        )));
    }
    Ok(address)
}

impl Link {
    /// Runs QUIC on a UDP socket the caller already holds (bound, and not
    /// connected: one whose NAT binding hole punching opened, say). With a
    /// `server` configuration the socket accepts `quic://` connections as a
    /// listener of this link; with or without one, connections can be made
    /// from it ([`QuicEndpoint::connect_once`], [`QuicEndpoint::connect_with`]).
    /// Of the link's socket options none apply: the socket is made already.
    pub fn adopt_quic(
        &self,
        socket: std::net::UdpSocket,
        server: Option<TlsServerConfig>,
    ) -> Result<QuicEndpoint, LinkError> {
        let registry = self.registry();
        registry.sender()?;
        let server = server
            .map(|tls| endpoint::server_config(&tls, &registry.config.quic))
            .transpose()?;
        let loopback = server
            .as_ref()
            .map(|s| endpoint::for_loopback(s, &registry.config.quic));
        let stun = super::accept::stun_inbox(registry);
        let dropped = &registry.stats.quic_datagrams_dropped;
        let endpoint = endpoint::on_socket(socket, server, dropped, &stun)?;
        let listening = match loopback {
            Some(loopback) => Some(super::accept::start(
                registry,
                endpoint.clone(),
                stun.clone(),
                loopback,
            )?),
            None => None,
        };
        Ok(QuicEndpoint {
            endpoint,
            registry: registry.clone(),
            listening,
            stun,
        })
    }

    /// The STUN side of a `quic://` listener's socket, as
    /// [`QuicEndpoint::stun`] gives it for an adopted one: a rendezvous
    /// answers STUN on its QUIC port this way. `None` when `listener` is
    /// not a running QUIC listener of this link.
    pub fn quic_stun(&self, listener: ListenerId) -> Option<StunChannel> {
        self.registry().quic_stun(listener).map(StunChannel::new)
    }
}
