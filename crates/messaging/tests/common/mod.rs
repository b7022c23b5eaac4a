//! Helpers shared by the messaging integration tests.
#![allow(dead_code)] // each test file uses its own subset

use std::time::Duration;

use tokio::time::timeout;
use weft_link::{LinkConfig, ReconnectPolicy};
use weft_messaging::{Identity, MessagingConfig};

/// The longest any one wait may take.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// An identity from a name known to be valid.
pub(crate) fn id(s: &str) -> Identity {
    Identity::new(s).unwrap()
}

/// Defaults, with connectors that retry every 20 ms.
pub(crate) fn config() -> MessagingConfig {
    let mut c = MessagingConfig::default();
    let mut link = LinkConfig::default();
    link.reconnect = ReconnectPolicy::fixed(Duration::from_millis(20));
    c.link = link;
    c
}

/// Polls `check` every 5 ms until it holds, at most [`WAIT`].
pub(crate) async fn until(what: &str, mut check: impl FnMut() -> bool) {
    timeout(WAIT, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}
