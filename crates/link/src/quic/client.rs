//! The client endpoints a link's QUIC connectors share: one UDP socket and
//! one quinn endpoint per address family, made when a connector first needs
//! it and closed once no connection or attempt uses it.
//!
//! A QUIC endpoint tells its connections apart by connection ID, not by
//! port, so every connector of a link can dial from one socket: a thousand
//! connectors cost one socket, one receive buffer and one endpoint driver
//! instead of a thousand of each. Connectors whose socket options ask for a
//! local address or an interface do not share: they get an endpoint of
//! their own, bound as asked (see [`dial`](super::dial)).

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{StunInbox, endpoint};
use crate::config::SocketOptions;
use crate::error::LinkError;
use crate::socket;

/// One shared endpoint and how many attempts and connections use it.
#[derive(Default)]
struct Slot {
    endpoint: Option<quinn::Endpoint>,
    users: usize,
}

/// The link's shared client endpoints, IPv4's and IPv6's.
#[derive(Default)]
pub(crate) struct ClientEndpoints {
    slots: Arc<Mutex<[Slot; 2]>>,
}

fn lock(slots: &Mutex<[Slot; 2]>) -> MutexGuard<'_, [Slot; 2]> {
    slots.lock().unwrap_or_else(|p| p.into_inner())
}

/// The slot of the family of `peer`.
fn family(peer: &SocketAddr) -> usize {
    usize::from(peer.is_ipv6())
}

impl ClientEndpoints {
    /// The shared endpoint for dialling `peer`, made on a new socket with
    /// `options` (which ask for no local address or interface) when the
    /// family has none yet, counting datagrams that are not QUIC in
    /// `dropped` and handing STUN to `stun`. The lease keeps it open.
    pub(crate) async fn lease(
        &self,
        peer: &SocketAddr,
        options: &SocketOptions,
        dropped: &Arc<AtomicU64>,
        stun: &Arc<StunInbox>,
    ) -> Result<Lease, LinkError> {
        let slot = family(peer);
        if let Some(lease) = self.existing(slot) {
            return Ok(lease);
        }
        let made =
            endpoint::bind(socket::any_local_for(peer), options, None, dropped, stun).await?;
        let mut slots = lock(&self.slots);
        // Another attempt may have made one meanwhile: use the first, so
        // that the family keeps one socket.
        let endpoint = slots[slot].endpoint.get_or_insert(made).clone();
        slots[slot].users += 1;
        Ok(Lease {
            endpoint,
            slots: self.slots.clone(),
            slot,
        })
    }

    fn existing(&self, slot: usize) -> Option<Lease> {
        let mut slots = lock(&self.slots);
        let endpoint = slots[slot].endpoint.clone()?;
        slots[slot].users += 1;
        Some(Lease {
            endpoint,
            slots: self.slots.clone(),
            slot,
        })
    }
}

/// A use of a shared client endpoint: an attempt, or the connection it
/// made. The last lease of a family to go closes its endpoint, whose socket
/// is released once its connections have finished closing.
pub(crate) struct Lease {
    endpoint: quinn::Endpoint,
    slots: Arc<Mutex<[Slot; 2]>>,
    slot: usize,
}

impl Lease {
    /// The shared endpoint.
    pub(crate) fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let unused = {
            let mut slots = lock(&self.slots);
            let slot = &mut slots[self.slot];
            slot.users -= 1;
            if slot.users == 0 {
                slot.endpoint.take()
            } else {
                None
            }
        };
        drop(unused);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 4433))
    }

    #[tokio::test]
    async fn connectors_of_a_family_share_one_socket_until_the_last_lease_goes() {
        let endpoints = ClientEndpoints::default();
        let options = SocketOptions::default();
        let dropped = Arc::default();
        let stun = StunInbox::new(0, Arc::default());
        let a = endpoints
            .lease(&v4(), &options, &dropped, &stun)
            .await
            .unwrap();
        let b = endpoints
            .lease(&v4(), &options, &dropped, &stun)
            .await
            .unwrap();
        let port = a.endpoint().local_addr().unwrap().port();
        assert_eq!(b.endpoint().local_addr().unwrap().port(), port);
        drop(a);
        let c = endpoints
            .lease(&v4(), &options, &dropped, &stun)
            .await
            .unwrap();
        assert_eq!(
            c.endpoint().local_addr().unwrap().port(),
            port,
            "a live lease keeps the endpoint"
        );
        drop((b, c));
        assert!(
            lock(&endpoints.slots)[0].endpoint.is_none(),
            "the last lease closes it"
        );
    }

    #[tokio::test]
    async fn each_family_has_its_own_endpoint() {
        let endpoints = ClientEndpoints::default();
        let options = SocketOptions::default();
        let dropped = Arc::default();
        let stun = StunInbox::new(0, Arc::default());
        let four = endpoints
            .lease(&v4(), &options, &dropped, &stun)
            .await
            .unwrap();
        let six = endpoints
            .lease(
                &SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], 4433)),
                &options,
                &dropped,
                &stun,
            )
            .await
            .unwrap();
        assert!(four.endpoint().local_addr().unwrap().is_ipv4());
        assert!(six.endpoint().local_addr().unwrap().is_ipv6());
    }
}
