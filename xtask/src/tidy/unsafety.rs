//! A library with no `unsafe` forbids it (`#![forbid(unsafe_code)]`), so
//! that none creeps in unnoticed; where a library does need it, each
//! `unsafe` says why it is sound: a `// SAFETY:` comment above an `unsafe`
//! block or impl, a `# Safety` section in the docs of an `unsafe fn`.

use super::rust_text::{has_word, word_positions};
use super::{Crate, SourceFile, Violation};

const RULE: &str = "unsafe";

pub(crate) fn check(krate: &Crate<'_>) -> Vec<Violation> {
    let has_unsafe = krate.files.iter().any(|f| has_word(&f.code, "unsafe"));
    if !has_unsafe {
        return match krate.lib_rs() {
            Some(lib) if !forbids_unsafe(&lib.code) => vec![Violation::new(
                lib.path.clone(),
                RULE,
                format!(
                    "{} has no unsafe code: add `#![forbid(unsafe_code)]` after the crate docs",
                    krate.package.name
                ),
            )],
            _ => Vec::new(),
        };
    }
    krate.files.iter().flat_map(unexplained).collect()
}

/// Whether `code` (comments blanked) holds `#![forbid(unsafe_code)]`.
fn forbids_unsafe(code: &str) -> bool {
    code.lines().any(|l| {
        let compact: String = l.chars().filter(|c| !c.is_whitespace()).collect();
        compact.starts_with("#![forbid(") && compact.contains("unsafe_code")
    })
}

/// Each `unsafe` of `file` without its justification.
pub(crate) fn unexplained(file: &SourceFile) -> Vec<Violation> {
    let text: Vec<&str> = file.text.lines().collect();
    let code: Vec<&str> = file.code.lines().collect();
    let mut violations = Vec::new();
    for (index, line) in code.iter().enumerate() {
        for at in word_positions(line, "unsafe") {
            let is_fn = line[at + "unsafe".len()..]
                .split_whitespace()
                .next()
                .is_some_and(|next| next == "fn" || next.starts_with("extern"));
            let above = comments_above(&text, &code, index);
            let (ok, want) = if is_fn {
                (
                    above
                        .iter()
                        .any(|c| c.starts_with("///") && c.contains("# Safety")),
                    "an `unsafe fn` needs a `# Safety` section in its docs",
                )
            } else {
                (
                    above.iter().any(|c| c.starts_with("// SAFETY:")),
                    "`unsafe` needs a `// SAFETY:` comment right above it saying why it is sound",
                )
            };
            if !ok {
                violations
                    .push(Violation::new(file.path.clone(), RULE, want.into()).at_line(index + 1));
            }
        }
    }
    violations
}

/// The comment and attribute lines above line `index`, trimmed, up to the
/// start of the statement the line belongs to (a `// SAFETY:` above
/// `let x =` covers an `unsafe` block on the line after it).
fn comments_above<'a>(text: &[&'a str], code: &[&str], index: usize) -> Vec<&'a str> {
    let mut found = Vec::new();
    for i in (0..index).rev() {
        let line = text[i].trim();
        if line.starts_with("//") || line.starts_with("#[") {
            found.push(line);
            continue;
        }
        let code = code[i].trim();
        let ends_statement = code.is_empty() || code.ends_with([';', '{', '}', ',']);
        if ends_statement {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::metadata::Package;

    fn lines_flagged(src: &str) -> Vec<usize> {
        unexplained(&SourceFile::new("a.rs", src.into()))
            .iter()
            .map(|v| v.line.unwrap())
            .collect()
    }

    #[test]
    fn every_unsafe_needs_its_reason() {
        let src = "\
fn f() {
    // SAFETY: the pointer is valid.
    let a = unsafe { g() };
    let b = unsafe { g() };
    // Not a safety comment.
    unsafe { g() }
}
/// Does it.
///
/// # Safety
/// The caller keeps `p` alive.
#[inline]
pub unsafe fn h(p: *const u8) {}
/// Undocumented.
pub unsafe fn i() {}
// SAFETY: Thing is only ever touched from one thread.
unsafe impl Send for Thing {}
fn g() {
    // SAFETY: the statement's comment covers its continuation lines.
    let name =
        unsafe { h() };
    let other = f(
        unsafe { h() });
}
// unsafe in a comment, \"unsafe\" in a string: ignored.
";
        assert_eq!(lines_flagged(src), [4, 6, 15, 23]);
    }

    #[test]
    fn crates_without_unsafe_must_forbid_it() {
        let package = Package {
            name: "weft-x".into(),
            dir: Path::new("crates/x").into(),
            is_lib: true,
            deps: Vec::new(),
        };
        let krate = |lib: &str| Crate {
            package: &package,
            files: vec![
                SourceFile::new("crates/x/src/lib.rs", lib.into()),
                SourceFile::new("crates/x/src/a.rs", "// unsafe, but only said\n".into()),
            ],
        };
        assert_eq!(check(&krate("//! Docs.\n\n#![forbid(unsafe_code)]\n")), []);
        let found = check(&krate("//! Docs. #![forbid(unsafe_code)]\n"));
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("add `#![forbid(unsafe_code)]`"));
        // With unsafe code somewhere, the attribute is not asked for.
        let with_unsafe = Crate {
            package: &package,
            files: vec![
                SourceFile::new("crates/x/src/lib.rs", "//! Docs.\n".into()),
                SourceFile::new("crates/x/src/a.rs", "// SAFETY: fine.\nunsafe {}\n".into()),
            ],
        };
        assert_eq!(check(&with_unsafe), []);
    }
}
