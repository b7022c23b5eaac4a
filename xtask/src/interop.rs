//! Tests against real peers that weft did not write.
//!
//! The link and packeter layers speak no third-party protocol beyond TCP,
//! TLS and UDP, which their own tests cover against the system's stacks and
//! rustls. Suites join here as the layers above them land: snakeMQ 1.6 for
//! weft-messaging, coturn for weft-stun.

pub(crate) fn run(_args: &[String]) -> Result<(), String> {
    println!("==> interop: no suites yet (snakeMQ and coturn arrive with messaging and stun)");
    Ok(())
}
