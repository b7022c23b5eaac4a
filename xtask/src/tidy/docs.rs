//! Every library's crate docs open with `//!` and show the crate at work in
//! an example that rustdoc runs (or at least compiles: `no_run` is fine).

use super::{Crate, Violation};

const RULE: &str = "crate-docs";

pub(crate) fn check(krate: &Crate<'_>) -> Vec<Violation> {
    let Some(lib) = krate.lib_rs() else {
        return vec![Violation::new(
            krate.package.dir.join("src/lib.rs"),
            RULE,
            format!("{} is a library without src/lib.rs", krate.package.name),
        )];
    };
    check_text(&lib.text)
        .map(|why| vec![Violation::new(lib.path.clone(), RULE, why)])
        .unwrap_or_default()
}

/// Why the crate docs of a `lib.rs` break the rule, if they do.
pub(crate) fn check_text(lib_rs: &str) -> Option<String> {
    if !lib_rs.starts_with("//!") {
        return Some("the file must open with the crate docs (`//!` lines)".into());
    }
    let docs = lib_rs
        .lines()
        .map(str::trim_start)
        .filter_map(|l| l.strip_prefix("//!"));
    let mut fence: Option<bool> = None;
    for line in docs {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        match fence {
            None => fence = Some(is_runnable(info)),
            Some(true) => return None,
            Some(false) => fence = None,
        }
    }
    Some(
        "the crate docs need an example rustdoc runs: a ``` or ```rust block \
         (`no_run` allowed, not `ignore`, `text` or `compile_fail`)"
            .into(),
    )
}

/// Whether a code block with this info string is a doc test that is built.
fn is_runnable(info: &str) -> bool {
    info.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .all(|t| matches!(t, "rust" | "no_run" | "should_panic") || t.starts_with("edition"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runnable_example_passes() {
        assert_eq!(
            check_text("//! Hi.\n//!\n//! ```\n//! f();\n//! ```\n"),
            None
        );
        assert_eq!(
            check_text("//! Hi.\n//! ```rust,no_run\n//! f();\n//! ```\n"),
            None
        );
        assert_eq!(
            check_text("//! ```text\n//! a\n//! ```\n//! ```edition2024\n//! f();\n//! ```\n"),
            None
        );
    }

    #[test]
    fn missing_docs_or_examples_fail() {
        assert!(check_text("#![forbid(unsafe_code)]\n//! Late docs.\n").is_some());
        assert!(check_text("/*! Block docs. */\n").is_some());
        assert!(check_text("//! No example.\n").is_some());
        assert!(check_text("//! ```ignore\n//! f();\n//! ```\n").is_some());
        assert!(check_text("//! ```text\n//! f();\n//! ```\n").is_some());
        assert!(check_text("//! ```rust,compile_fail\n//! f();\n//! ```\n").is_some());
        // An unclosed block is not an example.
        assert!(check_text("//! ```\n//! f();\n").is_some());
        // A code block in an item's docs is not the crate's.
        assert!(check_text("//! Hi.\n/// ```\n/// f();\n/// ```\nfn f() {}\n").is_some());
    }
}
