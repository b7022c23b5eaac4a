//! `weft demo`: the layers at work, as a readable transcript. Loopback only.

mod messaging;
mod rpc;
mod transports;

use std::time::Duration;

pub(crate) type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;

/// How long any one step may take before the demo gives up.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) async fn run() -> DemoResult<()> {
    println!("weft demo, loopback only\n");
    transports::run().await?;
    messaging::run().await?;
    rpc::run().await?;
    println!("demo complete.");
    Ok(())
}
