//! Attaching to a participant of this host: a [`LocalServer`] serves a
//! running [`Participant`](crate::Participant) on a local socket (by default the abstract Unix
//! socket [`default_address`]), and a [`LocalClient`] hosts publishers and
//! subscribers there instead of running a participant of its own.
//!
//! ```
//! # #[tokio::main]
//! # async fn main() -> Result<(), weft_participant::ParticipantError> {
//! use std::time::Duration;
//! use weft_participant::local::{LocalClient, LocalServer};
//! use weft_participant::{Participant, ParticipantConfig, TopicFilter};
//!
//! let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
//! let daemon = Participant::start(ParticipantConfig::loopback(port)).await?;
//! let server = LocalServer::start(daemon.clone(), "tcp://127.0.0.1:0").await?;
//!
//! let client = LocalClient::connect(server.address(), Duration::from_secs(2)).await?;
//! assert_eq!(client.identity(), daemon.identity().as_str());
//! let sub = client.subscriber(TopicFilter::Prefix("a".into())).await?;
//! let publisher = client.publisher("abc").await?;
//! // Publications to subscribers of the same participant are local.
//! let got = loop {
//!     publisher.publish("x").await?;
//!     if let Ok(p) = sub.recv(Some(Duration::from_millis(50))).await { break p; }
//! };
//! assert_eq!(&*got.topic, "abc");
//! # Ok(()) }
//! ```
//!
//! The protocol is weft-packeter packets over the local stream; each
//! packet is a postcard header, then raw payload bytes (see
//! `PROTOCOL.md`). Only processes that can open the local socket attach:
//! an abstract Unix socket belongs to its network namespace.

mod client;
mod protocol;
mod server;

pub use client::{LocalClient, LocalPublisher, LocalSubscriber};
pub use server::LocalServer;

/// Where the `weft participant` daemon of this user serves local clients:
/// on Linux the abstract Unix socket `unix://@weft-participant-<uid>`
/// (one per network namespace, gone with the process); on other Unix
/// systems a socket file in the temporary directory; elsewhere
/// `tcp://127.0.0.1:47475`.
pub fn default_address() -> String {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0);
        format!("unix://@weft-participant-{uid}")
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
        let path = std::env::temp_dir().join(format!("weft-participant-{user}.sock"));
        format!("unix://{}", path.display())
    }
    #[cfg(not(unix))]
    {
        "tcp://127.0.0.1:47475".to_owned()
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
