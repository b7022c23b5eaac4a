//! The fuzz workspace's `Cargo.lock` is current. The fuzz targets live
//! outside the workspace with a lock file of their own, which CI builds
//! with `--locked`: a weft crate that gains a dependency, or a target that
//! gains a weft crate, changes that file too, and nothing else would say so
//! before CI.

use std::process::Command;

use super::Violation;
use crate::util::cargo;

const RULE: &str = "lock-files";

/// The fuzz manifest, relative to the workspace root.
const FUZZ_MANIFEST: &str = "fuzz/Cargo.toml";

pub(crate) fn check() -> Vec<Violation> {
    // `cargo tree` resolves for this host only, so it needs no package
    // that only another platform uses; `--locked` fails on a stale file.
    let mut cmd = cargo();
    cmd.args(["tree", "--locked", "--edges", "normal", "--depth", "0"])
        .args(["--manifest-path", FUZZ_MANIFEST]);
    check_with(cmd)
}

/// [`check`] with the command that resolves the fuzz workspace, so tests can
/// give one that fails.
fn check_with(mut cmd: Command) -> Vec<Violation> {
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) => {
            return vec![Violation::new(
                FUZZ_MANIFEST,
                RULE,
                format!("could not run cargo tree: {e}"),
            )];
        }
    };
    if out.status.success() {
        return Vec::new();
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reason = stderr
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or("cargo tree failed");
    vec![Violation::new(
        "fuzz/Cargo.lock",
        RULE,
        format!(
            "{reason} (run `cargo check --manifest-path {FUZZ_MANIFEST} --bins` and commit fuzz/Cargo.lock)"
        ),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_file_that_needs_updating_is_a_violation() {
        let mut fails = Command::new("sh");
        fails.args([
            "-c",
            "echo 'error: cannot update the lock file because --locked was passed' >&2; exit 101",
        ]);
        let v = check_with(fails);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].rule, RULE);
        assert!(
            v[0].message.contains("cannot update the lock file"),
            "{}",
            v[0].message
        );
        assert!(check_with(Command::new("true")).is_empty());
    }
}
