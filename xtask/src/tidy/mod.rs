//! `cargo xtask tidy`: the workspace's rules as code, checked in a few
//! seconds without building anything.
//!
//! - [`layers`]: what each crate may depend on (the dependency rules of ARCHITECTURE.md),
//!   read from `cargo metadata`, dev- and build-dependencies included.
//! - [`docs`]: every library's crate docs open with `//!` and hold a runnable
//!   example.
//! - [`unsafety`]: `#![forbid(unsafe_code)]` in every library with no
//!   `unsafe`; elsewhere each `unsafe` says why it is sound (`// SAFETY:`).
//! - [`errors`]: no `Box<dyn Error>` in a library.
//! - [`budget`]: no source file under `crates/` over 800 lines above its
//!   `#[cfg(test)]` module.
//! - [`cancel`]: every `pub async fn` of a library says whether it is
//!   cancel-safe.
//!
//! The budget and cancel-safety rules carry lists of today's exceptions that
//! may only shrink. `cargo test -p xtask` runs the same checks (the `tidy`
//! test), so the workspace tests enforce them too.

mod budget;
mod cancel;
mod docs;
mod errors;
mod layers;
mod lockfiles;
mod rust_text;
mod unsafety;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::metadata::{Package, Workspace};
use crate::util::root;

/// One broken rule: where, which rule, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// Relative to the workspace root.
    pub(crate) path: PathBuf,
    /// 1-based, when the rule points at a line.
    pub(crate) line: Option<usize>,
    pub(crate) rule: &'static str,
    pub(crate) message: String,
}

impl Violation {
    pub(crate) fn new(path: impl Into<PathBuf>, rule: &'static str, message: String) -> Self {
        Violation {
            path: path.into(),
            line: None,
            rule,
            message,
        }
    }

    pub(crate) fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": [{}] {}", self.rule, self.message)
    }
}

/// A Rust source file of a crate.
pub(crate) struct SourceFile {
    /// Relative to the workspace root.
    pub(crate) path: PathBuf,
    pub(crate) text: String,
    /// `text` with comments and literals blanked ([`rust_text::code_only`]).
    pub(crate) code: String,
}

impl SourceFile {
    pub(crate) fn new(path: impl Into<PathBuf>, text: String) -> Self {
        let code = rust_text::code_only(&text);
        SourceFile {
            path: path.into(),
            text,
            code,
        }
    }
}

/// A crate under `crates/` with its `src/` files, sorted by path.
pub(crate) struct Crate<'a> {
    pub(crate) package: &'a Package,
    pub(crate) files: Vec<SourceFile>,
}

impl Crate<'_> {
    /// Its `src/lib.rs`, when it is a library that has one.
    pub(crate) fn lib_rs(&self) -> Option<&SourceFile> {
        let lib = self.package.dir.join("src/lib.rs");
        self.files.iter().find(|f| f.path == lib)
    }
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("`tidy` takes no arguments, got `{a}`"));
    }
    run_tidy()
}

/// Checks every rule and prints each violation; fails when there is one.
pub(crate) fn run_tidy() -> Result<(), String> {
    let violations = check()?;
    for v in &violations {
        println!("{v}");
    }
    match violations.len() {
        0 => {
            println!("tidy: all rules hold");
            Ok(())
        }
        n => Err(format!("{n} rule violation(s)")),
    }
}

/// Every rule over the workspace this xtask belongs to.
pub(crate) fn check() -> Result<Vec<Violation>, String> {
    let root = root();
    let ws = Workspace::load()?;
    let mut crates = Vec::new();
    for package in ws.crates() {
        let mut files = Vec::new();
        for path in rust_files(&root, &package.dir.join("src"))? {
            let text = std::fs::read_to_string(root.join(&path))
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            files.push(SourceFile::new(path, text));
        }
        crates.push(Crate { package, files });
    }

    let mut violations = layers::check(&ws.packages);
    let libraries: Vec<&Crate<'_>> = crates.iter().filter(|c| c.package.is_lib).collect();
    for krate in &libraries {
        violations.extend(docs::check(krate));
        violations.extend(unsafety::check(krate));
        for file in &krate.files {
            violations.extend(errors::check(file));
        }
    }
    let all_files: Vec<&SourceFile> = crates.iter().flat_map(|c| &c.files).collect();
    violations.extend(budget::check(&all_files, budget::OVER_BUDGET));
    let library_files: Vec<&SourceFile> = libraries.iter().flat_map(|c| &c.files).collect();
    violations.extend(cancel::check(&library_files, cancel::UNDOCUMENTED));
    violations.extend(lockfiles::check());
    Ok(violations)
}

/// The `.rs` files under `dir` (relative to `root`), recursively, sorted.
fn rust_files(root: &Path, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(root.join(&dir))
            .map_err(|e| format!("listing {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("listing {}: {e}", dir.display()))?;
            let path = dir.join(entry.file_name());
            let kind = entry
                .file_type()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if kind.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    /// The rules hold on this workspace: `cargo test` enforces them as
    /// `cargo xtask tidy` does.
    #[test]
    fn tidy() {
        let violations = super::check().unwrap();
        let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert!(violations.is_empty(), "\n{}\n", report.join("\n"));
    }
}
