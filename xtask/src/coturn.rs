//! `cargo xtask interop`, STUN part: weft-stun against coturn.
//!
//! Installs Debian's `coturn` package when missing (as root), then runs the
//! `#[ignore]`d suite `crates/stun/tests/coturn_interop.rs` with
//! `WEFT_TURNSERVER` naming the `turnserver` binary. The suite starts its
//! own `turnserver` processes on loopback (127.0.0.1 and 127.0.0.2) with a
//! configuration of its own; nothing here starts or touches the system's
//! coturn service.

use std::path::Path;

use crate::util::{self, cargo, run as step};

/// Where Debian's coturn puts its server.
const TURNSERVER: &str = "/usr/bin/turnserver";

pub(crate) fn run() -> Result<(), String> {
    util::ensure_debs(&["coturn"]);
    let turnserver = if Path::new(TURNSERVER).exists() {
        TURNSERVER.to_owned()
    } else {
        find_in_path("turnserver").ok_or_else(|| {
            "coturn's `turnserver` is not installed and could not be \
             (`apt-get install coturn` as root)"
                .to_owned()
        })?
    };
    let mut test = cargo();
    test.args([
        "test",
        "--locked",
        "-p",
        "weft-stun",
        "--test",
        "coturn_interop",
        "--",
        "--ignored",
    ])
    .env("WEFT_TURNSERVER", &turnserver);
    step("interop: weft-stun against coturn", test)
}

/// A program's full path, from `PATH`.
fn find_in_path(program: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}
