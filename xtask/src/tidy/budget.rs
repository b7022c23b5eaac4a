//! One idea per file: no source file under `crates/` has more than
//! [`MAX_LINES`] lines above its `#[cfg(test)]` module. A file that grows
//! past it holds more than one idea; split it along them.

use std::path::Path;

use super::rust_text::lines_above_tests;
use super::{SourceFile, Violation};

pub(crate) const MAX_LINES: usize = 800;

/// Files over the budget today, being split. This list may only shrink:
/// tidy fails for a file over budget that is not on it, and for a file on it
/// that is back under budget or gone, so that it is taken off.
pub(crate) const OVER_BUDGET: &[&str] = &[
    "crates/link/src/pipe/mod.rs",
    "crates/participant/src/participant.rs",
];

const RULE: &str = "line-budget";

pub(crate) fn check(files: &[&SourceFile], over_budget: &[&str]) -> Vec<Violation> {
    let mut violations = Vec::new();
    for file in files {
        let lines = lines_above_tests(&file.code);
        let listed = over_budget.iter().any(|p| Path::new(p) == file.path);
        if lines > MAX_LINES && !listed {
            violations.push(Violation::new(
                file.path.clone(),
                RULE,
                format!(
                    "{lines} lines above #[cfg(test)], over the budget of {MAX_LINES}: \
                     split the file along its ideas"
                ),
            ));
        } else if lines <= MAX_LINES && listed {
            violations.push(Violation::new(
                "xtask/src/tidy/budget.rs",
                RULE,
                format!(
                    "{} is down to {lines} lines: take it off OVER_BUDGET",
                    file.path.display()
                ),
            ));
        }
    }
    for listed in over_budget {
        if !files.iter().any(|f| f.path == Path::new(listed)) {
            violations.push(Violation::new(
                "xtask/src/tidy/budget.rs",
                RULE,
                format!("{listed} no longer exists: take it off OVER_BUDGET"),
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, lines: usize, then_tests: bool) -> SourceFile {
        let mut text = "fn f() {}\n".repeat(lines);
        if then_tests {
            text.push_str("#[cfg(test)]\nmod tests {\n");
            text.push_str(&"    fn t() {}\n".repeat(1000));
            text.push_str("}\n");
        }
        SourceFile::new(path, text)
    }

    #[test]
    fn over_budget_files_fail_unless_listed() {
        let files = [
            file("a.rs", 800, true),
            file("b.rs", 801, false),
            file("c.rs", 900, true),
        ];
        let files: Vec<&SourceFile> = files.iter().collect();
        let found = check(&files, &["c.rs"]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, Path::new("b.rs"));
        assert!(found[0].message.starts_with("801 lines"));
    }

    #[test]
    fn the_list_only_shrinks() {
        let files = [file("a.rs", 700, true)];
        let files: Vec<&SourceFile> = files.iter().collect();
        let found = check(&files, &["a.rs", "gone.rs"]);
        let messages: Vec<&str> = found.iter().map(|v| v.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "a.rs is down to 700 lines: take it off OVER_BUDGET",
                "gone.rs no longer exists: take it off OVER_BUDGET",
            ]
        );
    }
}
