//! One idea per file: no source file under `crates/` has more than
//! [`MAX_LINES`] lines above its `#[cfg(test)]` module. A file that grows
//! past it holds more than one idea; split it along them. Test modules kept
//! in files of their own (`#[cfg(test)] mod tests;`) are not counted.

use std::path::{Path, PathBuf};

use super::rust_text::{lines_above_tests, test_module_files};
use super::{SourceFile, Violation};

pub(crate) const MAX_LINES: usize = 800;

/// Files over the budget today, being split. This list may only shrink:
/// tidy fails for a file over budget that is not on it, and for a file on it
/// that is back under budget or gone, so that it is taken off.
pub(crate) const OVER_BUDGET: &[&str] = &[];

const RULE: &str = "line-budget";

pub(crate) fn check(files: &[&SourceFile], over_budget: &[&str]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let tests: Vec<PathBuf> = files.iter().flat_map(|f| test_files_of(f)).collect();
    for file in files {
        if tests.contains(&file.path) {
            continue;
        }
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

/// Where the test modules that `file` declares out of line can live.
fn test_files_of(file: &SourceFile) -> Vec<PathBuf> {
    let owns_dir = file
        .path
        .file_name()
        .is_some_and(|n| n == "mod.rs" || n == "lib.rs" || n == "main.rs");
    let dir = if owns_dir {
        file.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    } else {
        file.path.with_extension("")
    };
    test_module_files(&file.code)
        .into_iter()
        .flat_map(|name| {
            [
                dir.join(format!("{name}.rs")),
                dir.join(name).join("mod.rs"),
            ]
        })
        .collect()
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
    fn test_modules_in_their_own_files_are_not_counted() {
        let files = [
            SourceFile::new("s/core/mod.rs", "#[cfg(test)]\nmod tests;\n".into()),
            file("s/core/tests.rs", 900, false),
            SourceFile::new("s/conn.rs", "#[cfg(test)]\nmod tests;\n".into()),
            file("s/conn/tests/mod.rs", 900, false),
            file("s/other/tests.rs", 900, false),
        ];
        let files: Vec<&SourceFile> = files.iter().collect();
        let found = check(&files, &[]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, Path::new("s/other/tests.rs"));
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
