//! Every `pub async fn` of a library says in its docs whether it is
//! cancel-safe: what is lost when its future is dropped before it completes
//! (in `tokio::select!`, on a timeout) is part of its contract.

use super::{SourceFile, Violation};

/// Today's `pub async fn`s whose docs do not say, as `path: name`. This list
/// may only shrink: tidy fails for an undocumented function not on it, and
/// for an entry that is documented now or gone, so that it is taken off.
pub(crate) const UNDOCUMENTED: &[&str] = &[];

const RULE: &str = "cancel-safety";

pub(crate) fn check(files: &[&SourceFile], undocumented: &[&str]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for file in files {
        for (line, name) in undocumented_fns(file) {
            let key = format!("{}: {name}", file.path.display());
            if !undocumented.contains(&key.as_str()) {
                violations.push(
                    Violation::new(
                        file.path.clone(),
                        RULE,
                        format!(
                            "`pub async fn {name}`: say in its docs whether it is cancel-safe \
                             (\"Cancel-safe: ...\" or \"Not cancel-safe: ...\")"
                        ),
                    )
                    .at_line(line),
                );
            }
            seen.push(key);
        }
    }
    for entry in undocumented {
        if !seen.iter().any(|s| s == entry) {
            violations.push(Violation::new(
                "xtask/src/tidy/cancel.rs",
                RULE,
                format!("{entry} is documented now or gone: take it off UNDOCUMENTED"),
            ));
        }
    }
    violations
}

/// The `pub async fn`s of `file` whose docs do not mention cancel safety,
/// as (1-based line, name).
pub(crate) fn undocumented_fns(file: &SourceFile) -> Vec<(usize, String)> {
    let text: Vec<&str> = file.text.lines().collect();
    let mut found = Vec::new();
    for (index, line) in file.code.lines().enumerate() {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = tokens.windows(3).position(|w| w == ["pub", "async", "fn"]) else {
            continue;
        };
        let name: String = tokens
            .get(at + 3)
            .map(|t| {
                t.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect()
            })
            .unwrap_or_default();
        if !mentions_cancel_safety(&docs_above(&text, index)) {
            found.push((index + 1, name));
        }
    }
    found
}

/// The `///` docs of the item at line `index`, attributes skipped.
fn docs_above(lines: &[&str], index: usize) -> String {
    let mut docs: Vec<&str> = lines[..index]
        .iter()
        .rev()
        .map(|l| l.trim())
        .take_while(|l| l.starts_with("///") || l.starts_with("#["))
        .filter_map(|l| l.strip_prefix("///"))
        .collect();
    docs.reverse();
    docs.join(" ")
}

/// "Cancel-safe", "cancel safe", "Cancel safety", "not cancel-safe", ...
fn mentions_cancel_safety(docs: &str) -> bool {
    let words: Vec<String> = docs
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    words
        .windows(2)
        .any(|w| w[0] == "cancel" && (w[1] == "safe" || w[1] == "safety"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "\
impl Thing {
    /// Sends.
    ///
    /// Cancel-safe: nothing is sent unless this completes.
    pub async fn send(&self) {}

    /// Receives. Not cancel
    /// safe: a message read is lost.
    #[must_use]
    pub async fn recv(&self) -> u8 { 0 }

    /// Closes.
    pub async fn close(self) {}

    pub async fn flush<T>(&self) {}

    /// Cancel safety: yes.
    pub(crate) async fn inner(&self) {}
    async fn private(&self) {}
}
/// ```
/// pub async fn in_an_example() {}
/// ```
fn f() {}
";

    #[test]
    fn finds_pub_async_fns_without_a_word_on_cancel_safety() {
        let file = SourceFile::new("a.rs", SRC.into());
        assert_eq!(
            undocumented_fns(&file),
            [(13, "close".to_string()), (15, "flush".to_string())]
        );
    }

    #[test]
    fn the_allowlist_only_shrinks() {
        let file = SourceFile::new("a.rs", SRC.into());
        assert_eq!(check(&[&file], &["a.rs: close", "a.rs: flush"]), []);
        let found = check(&[&file], &["a.rs: close", "a.rs: send"]);
        let messages: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "a.rs:15: [cancel-safety] `pub async fn flush`: say in its docs whether it is \
                 cancel-safe (\"Cancel-safe: ...\" or \"Not cancel-safe: ...\")",
                "xtask/src/tidy/cancel.rs: [cancel-safety] a.rs: send is documented now or \
                 gone: take it off UNDOCUMENTED",
            ]
        );
    }

    #[test]
    fn phrasings() {
        for docs in [
            "Cancel-safe.",
            "cancel safe",
            "Cancel safety: none",
            "Not cancel-safe",
        ] {
            assert!(mentions_cancel_safety(docs), "{docs}");
        }
        for docs in ["Cancels the call.", "safe", "cancellation is safe"] {
            assert!(!mentions_cancel_safety(docs), "{docs}");
        }
    }
}
