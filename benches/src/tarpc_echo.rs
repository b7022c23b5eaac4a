//! The tarpc baseline of the rpc rows: a one-method echo service over
//! `tarpc::serde_transport::tcp` with the bincode codec, used as tarpc's
//! own examples use it.
//!
//! The server accepts one connection, serves it with a
//! [`BaseChannel`](server::BaseChannel) with tarpc's default config and
//! spawns every request as a Tokio task (as tarpc's README does); it ends
//! when the client goes. The client is an [`EchoClient`] with tarpc's
//! default [`client::Config`] (up to 1 000 requests in flight), its
//! dispatch task spawned on the client's runtime. Both ends set
//! TCP_NODELAY (tarpc's TCP transport leaves Nagle on; weft turns it off
//! by default, so the baseline gets the same), and nothing else is tuned.

use std::net::SocketAddr;

use futures::StreamExt;
use tarpc::client;
use tarpc::context;
use tarpc::serde_transport::tcp;
use tarpc::server::{self, Channel};
use tarpc::tokio_serde::formats::Bincode;

use crate::harness::{LOOPBACK, ctx};

/// The service: one method that returns its argument.
#[tarpc::service]
pub(crate) trait Echo {
    /// Returns `data` as it came.
    async fn echo(data: Vec<u8>) -> Vec<u8>;
}

/// The server's implementation of [`Echo`].
#[derive(Clone, Copy, Debug)]
struct EchoServer;

impl Echo for EchoServer {
    async fn echo(self, _: context::Context, data: Vec<u8>) -> Vec<u8> {
        data
    }
}

/// Binds a tarpc listener on the loopback address; where it listens, and
/// a future serving the first connection until the client disconnects.
pub(crate) async fn listen() -> Result<
    (
        SocketAddr,
        impl std::future::Future<Output = Result<(), String>>,
    ),
    String,
> {
    let listener = tokio::net::TcpListener::bind(LOOPBACK)
        .await
        .map_err(ctx("binding"))?;
    let mut incoming = tcp::listen_on(listener, Bincode::default)
        .await
        .map_err(ctx("listening"))?;
    let at = incoming.local_addr();
    let serve = async move {
        let transport = incoming
            .next()
            .await
            .ok_or("the tarpc listener closed")?
            .map_err(ctx("accepting"))?;
        transport
            .get_ref()
            .set_nodelay(true)
            .map_err(ctx("TCP_NODELAY"))?;
        server::BaseChannel::with_defaults(transport)
            .execute(EchoServer.serve())
            .for_each(|request| async move {
                tokio::spawn(request);
            })
            .await;
        Ok(())
    };
    Ok((at, serve))
}

/// Connects a client to `at`; its dispatch task runs on the current
/// runtime.
pub(crate) async fn connect(at: SocketAddr) -> Result<EchoClient, String> {
    let transport = tcp::connect(at, Bincode::default)
        .await
        .map_err(ctx("connecting"))?;
    transport
        .get_ref()
        .set_nodelay(true)
        .map_err(ctx("TCP_NODELAY"))?;
    Ok(EchoClient::new(client::Config::default(), transport).spawn())
}

/// One echo call with tarpc's default context (a 10 s deadline).
pub(crate) async fn call(client: &EchoClient, data: Vec<u8>) -> Result<Vec<u8>, String> {
    client
        .echo(context::current(), data)
        .await
        .map_err(ctx("calling tarpc echo"))
}
