//! `cargo xtask interop`: tests against real peers weft did not write.
//!
//! - snakeMQ 1.6 (Python, from PyPI) for weft-messaging: a venv under
//!   `target/interop/venv`, then the `#[ignore]`d suite
//!   `crates/messaging/tests/snakemq_interop.rs` with `WEFT_SNAKEMQ_PYTHON`
//!   pointing at the venv's python; and `weft import-snakemq` on a store
//!   written by that snakeMQ (`crates/cli/tests/import_snakemq.rs`, which
//!   skips loudly when it finds no snakeMQ).
//!
//! Each peer is installed by this task itself, so a fresh machine needs
//! nothing but Python 3 (and `python3-venv`, installed when missing).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{self, cargo, root, run as step};

/// The snakeMQ release weft is wire-compatible with.
const SNAKEMQ: &str = "snakemq==1.6";

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("`interop` takes no arguments, got `{a}`"));
    }
    let python = snakemq_venv()?;
    let mut test = cargo();
    test.args([
        "test",
        "--locked",
        "-p",
        "weft-messaging",
        "--test",
        "snakemq_interop",
        "--",
        "--ignored",
    ])
    .env("WEFT_SNAKEMQ_PYTHON", &python);
    step("interop: weft-messaging against snakeMQ 1.6", test)?;
    let mut import = cargo();
    import
        .args([
            "test",
            "--locked",
            "-p",
            "weft-cli",
            "--test",
            "import_snakemq",
        ])
        .env("WEFT_SNAKEMQ_PYTHON", &python);
    step(
        "interop: weft import-snakemq on a snakeMQ 1.6 store",
        import,
    )?;
    crate::coturn::run()
}

fn venv_dir() -> PathBuf {
    root().join("target").join("interop").join("venv")
}

fn has_snakemq(python: &Path) -> bool {
    Command::new(python)
        .args([
            "-c",
            "import snakemq.version as v; assert v.VERSION == '1.6'",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A venv with snakemq 1.6 (made once, under `target/interop/venv`);
/// returns its python. `cargo xtask bench` uses it too.
pub(crate) fn snakemq_venv() -> Result<PathBuf, String> {
    let venv = venv_dir();
    let python = venv.join("bin").join("python");
    if python.exists() && has_snakemq(&python) {
        return Ok(python);
    }
    let make = || {
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !make() {
        // Debian's python3 splits venv support into its own package.
        util::ensure_debs(&["python3-venv"]);
        if !make() {
            return Err("cannot create a Python venv (python3 and python3-venv are needed)".into());
        }
    }
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        SNAKEMQ,
    ]);
    step("interop: install snakeMQ 1.6 from PyPI", pip)?;
    if has_snakemq(&python) {
        Ok(python)
    } else {
        Err("snakemq 1.6 did not import after installing".into())
    }
}
