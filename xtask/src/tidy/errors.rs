//! Libraries return typed errors: a `Box<dyn Error>` hides what went wrong
//! from the caller, who can then only print it. Doc examples may still use
//! one for `?` (they are comments, and binaries may).

use super::{SourceFile, Violation};

const RULE: &str = "typed-errors";

pub(crate) fn check(file: &SourceFile) -> Vec<Violation> {
    let mut violations = Vec::new();
    for (index, line) in file.code.lines().enumerate() {
        if boxes_dyn_error(line) {
            violations.push(
                Violation::new(
                    file.path.clone(),
                    RULE,
                    "a library returns typed errors, not `Box<dyn Error>`: use an error enum \
                     with the source as a field"
                        .into(),
                )
                .at_line(index + 1),
            );
        }
    }
    violations
}

/// Whether `code` names `Box<dyn ...Error ...>`, whatever the path and spacing.
fn boxes_dyn_error(code: &str) -> bool {
    let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    compact.match_indices("Box<dyn").any(|(at, found)| {
        let rest = &compact[at + found.len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        path.rsplit("::").next() == Some("Error")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_boxed_errors_in_code_only() {
        for code in [
            "fn f() -> Result<(), Box<dyn Error>> {",
            "type E = Box<dyn std::error::Error + Send + Sync>;",
            "Box< dyn core::error::Error>",
        ] {
            assert!(boxes_dyn_error(code), "{code}");
        }
        for code in ["Box<dyn Fn()>", "Box<dyn ErrorSink>", "MyError"] {
            assert!(!boxes_dyn_error(code), "{code}");
        }
        let file = SourceFile::new(
            "a.rs",
            "/// # fn main() -> Result<(), Box<dyn std::error::Error>> {\n\
             fn f() -> Box<dyn Error> {}\n"
                .into(),
        );
        let found = check(&file);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].line, Some(2));
    }
}
