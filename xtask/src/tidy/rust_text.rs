//! Reading Rust source text without a parser: code with its comments and
//! literals blanked out, so that the rules see `unsafe` in code and not in
//! a doc comment or a string.

/// `src` with the text of every comment and the contents of every string,
/// byte string and char literal replaced by spaces. Newlines stay, so line
/// numbers and byte offsets match the original.
pub(crate) fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    while i < b.len() {
        let prev_is_ident = i > 0 && is_ident_byte(b[i - 1]);
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = block_comment_end(b, i);
                blank(&mut out, i, end);
                i = end;
            }
            b'"' => {
                let (contents_end, end) = string_end(b, i + 1);
                blank(&mut out, i + 1, contents_end);
                i = end;
            }
            b'b' | b'c' | b'r' if !prev_is_ident => {
                // A prefixed literal: b"..", b'.', br#".."#, c"..", cr"..", r#".."#.
                let mut j = i;
                if b[j] != b'r' {
                    j += 1;
                }
                if b[i] != b'r' && b.get(j) == Some(&b'"') {
                    let (contents_end, end) = string_end(b, j + 1);
                    blank(&mut out, j + 1, contents_end);
                    i = end;
                } else if b[i] == b'b' && b.get(j) == Some(&b'\'') {
                    i = char_literal(b, j, &mut out).unwrap_or(j + 1);
                } else if let Some((open, hashes)) = raw_string_start(b, j) {
                    let (contents_end, end) = raw_string_end(b, open + 1, hashes);
                    blank(&mut out, open + 1, contents_end);
                    i = end;
                } else {
                    i = skip_ident(b, i);
                }
            }
            b'\'' => {
                // A char literal, or else a lifetime or label.
                i = char_literal(b, i, &mut out).unwrap_or(i + 1);
            }
            c if is_ident_byte(c) => i = skip_ident(b, i),
            _ => i += 1,
        }
    }
    // Only whole ASCII-delimited regions were blanked, so this stays UTF-8.
    String::from_utf8(out).expect("blanking keeps UTF-8 valid")
}

/// Spaces over `out[from..to]`, newlines kept.
fn blank(out: &mut [u8], from: usize, to: usize) {
    for byte in &mut out[from..to] {
        if *byte != b'\n' {
            *byte = b' ';
        }
    }
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

fn skip_ident(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ident_byte(b[i]) {
        i += 1;
    }
    i
}

/// Past the `*/` that closes the (nestable) block comment opening at `i`.
fn block_comment_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < b.len() {
        if b[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if b[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// For a string whose contents start at `i`: where its contents end (its
/// closing quote) and the index past the quote; the end of `b` for both
/// when it is not closed.
fn string_end(b: &[u8], mut i: usize) -> (usize, usize) {
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return (i, i + 1),
            _ => i += 1,
        }
    }
    (b.len(), b.len())
}

/// If a raw string (`r"`, `r#"`, ...) starts at `i`: its opening quote and
/// the number of `#`.
fn raw_string_start(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if b.get(i) != Some(&b'r') {
        return None;
    }
    let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
    let open = i + 1 + hashes;
    (b.get(open) == Some(&b'"')).then_some((open, hashes))
}

/// [`string_end`] for a raw string closed by `"` and `hashes` times `#`.
fn raw_string_end(b: &[u8], mut i: usize, hashes: usize) -> (usize, usize) {
    while i < b.len() {
        if b[i] == b'"'
            && b[i + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == b'#')
                .count()
                == hashes
        {
            return (i, i + 1 + hashes);
        }
        i += 1;
    }
    (b.len(), b.len())
}

/// If a char literal opens at `i` (a `'`): blanks its contents and returns
/// the index past it; `None` for a lifetime or a label.
fn char_literal(b: &[u8], i: usize, out: &mut [u8]) -> Option<usize> {
    let close = if b.get(i + 1) == Some(&b'\\') {
        // An escape: `'\n'`, `'\''`, `'\u{1F600}'`.
        i + 3 + b.get(i + 3..)?.iter().position(|&c| c == b'\'')?
    } else {
        let first = std::str::from_utf8(b.get(i + 1..(i + 5).min(b.len()))?)
            .ok()
            .or_else(|| {
                // Cut mid-character at the end of the window: take a shorter one.
                (1..4)
                    .rev()
                    .find_map(|n| std::str::from_utf8(b.get(i + 1..i + 1 + n)?).ok())
            })?
            .chars()
            .next()?;
        let close = i + 1 + first.len_utf8();
        if b.get(close) != Some(&b'\'') {
            return None;
        }
        close
    };
    blank(out, i + 1, close);
    Some(close + 1)
}

/// How many lines of `code` (output of [`code_only`]) come before its
/// inline test module: the first `#[cfg(test)]` that gates a `mod NAME {`.
/// A `#[cfg(test)]` on a helper function does not end the count. All of
/// the lines when there is no such module.
pub(crate) fn lines_above_tests(code: &str) -> usize {
    test_only_items(code)
        .find(|(_, item)| module_name(item).is_some_and(|(_, inline)| inline))
        .map_or_else(|| code.lines().count(), |(index, _)| index)
}

/// The test modules that `code` keeps in files of their own
/// (`#[cfg(test)] mod tests;`), by name.
pub(crate) fn test_module_files(code: &str) -> Vec<&str> {
    test_only_items(code)
        .filter_map(|(_, item)| module_name(item))
        .filter(|(_, inline)| !inline)
        .map(|(name, _)| name)
        .collect()
}

/// Each `#[cfg(test)]` of `code` (comments blanked) as its line index and the
/// first line of the item it gates: on the same line, or the next line that
/// is not blank and not an attribute.
fn test_only_items(code: &str) -> impl Iterator<Item = (usize, &str)> {
    let lines: Vec<&str> = code.lines().collect();
    (0..lines.len()).filter_map(move |i| {
        let rest = lines[i].trim_start().strip_prefix("#[cfg(test)]")?;
        std::iter::once(rest)
            .chain(lines[i + 1..].iter().copied())
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("#["))
            .map(|item| (i, item))
    })
}

/// For a line declaring a module (`mod x {`, `pub(crate) mod x;`): its name,
/// and whether its body follows in place.
fn module_name(line: &str) -> Option<(&str, bool)> {
    let mut rest = line;
    if let Some(after_pub) = rest.strip_prefix("pub") {
        rest = after_pub.trim_start();
        if rest.starts_with('(') {
            rest = rest.split_once(')')?.1.trim_start();
        }
    }
    let rest = rest.strip_prefix("mod ")?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let (name, after) = rest.split_at(end);
    match after.trim_start().chars().next() {
        Some('{') if !name.is_empty() => Some((name, true)),
        Some(';') if !name.is_empty() => Some((name, false)),
        _ => None,
    }
}

/// Whether `word` occurs in `line` as a whole identifier.
pub(crate) fn has_word(line: &str, word: &str) -> bool {
    word_positions(line, word).next().is_some()
}

/// The byte offsets at which `word` occurs in `text` as a whole identifier.
pub(crate) fn word_positions<'a>(text: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    text.match_indices(word)
        .map(|(at, _)| at)
        .filter(move |&at| {
            let before = text[..at].bytes().next_back();
            let after = text[at + word.len()..].bytes().next();
            !before.is_some_and(is_ident_byte) && !after.is_some_and(is_ident_byte)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blanks_comments_and_literals_but_keeps_lines() {
        let src = "let a = \"unsafe\"; // unsafe\n/* unsafe /* nested */ still */ unsafe {}\n";
        let code = code_only(src);
        assert_eq!(code.len(), src.len());
        assert_eq!(code.lines().count(), 2);
        assert_eq!(
            code.lines().next().unwrap().trim_end(),
            "let a = \"      \";"
        );
        assert_eq!(code.lines().nth(1).unwrap().trim(), "unsafe {}");
    }

    #[test]
    fn raw_and_prefixed_strings() {
        let code = code_only(
            r####"x(r#"a "quoted" unsafe"#, br"unsafe", b"unsafe", c"unsafe"); r#unsafe"####,
        );
        assert_eq!(word_positions(&code, "unsafe").count(), 1, "{code}");
        assert!(code.ends_with("r#unsafe"));
        let src = "let s = \"a \\\" unsafe\"; unsafe_fn(); unsafe";
        let code = code_only(src);
        let last = src.rfind("unsafe").unwrap();
        assert_eq!(word_positions(&code, "unsafe").collect::<Vec<_>>(), [last]);
    }

    #[test]
    fn chars_and_lifetimes() {
        let code =
            code_only("fn f<'a>(x: &'a str) -> char { '\"'; '\\''; 'é'; b'/'; 'x' } // '\nunsafe");
        assert!(code.contains("<'a>") && code.contains("&'a str"), "{code}");
        assert!(!code.contains("//"));
        assert!(has_word(code.lines().nth(1).unwrap(), "unsafe"));
        // A quote char literal does not open a string that swallows the rest.
        let code = code_only("let q = '\"'; unsafe {}");
        assert!(has_word(&code, "unsafe"), "{code}");
    }

    #[test]
    fn counts_lines_above_the_test_module() {
        assert_eq!(lines_above_tests("a\nb\n#[cfg(test)]\nmod tests {}\n"), 2);
        assert_eq!(lines_above_tests("a\nb\nc\n"), 3);
        assert_eq!(lines_above_tests(""), 0);
        // Indented counts too; a mention in a comment, once blanked, does not.
        assert_eq!(
            lines_above_tests("a\n    #[cfg(test)]\n    mod tests {\n"),
            1
        );
        let code = code_only("// #[cfg(test)]\nb\n");
        assert_eq!(lines_above_tests(&code), 2);
        // Only a test module ends the count: not a test-only helper, not a
        // module in another file.
        let src = "a\n#[cfg(test)]\nfn helper() {}\n#[cfg(test)]\nmod other;\nb\n\
                   #[cfg(test)]\n#[allow(unused)]\n// why\npub(crate) mod tests {\n}\n";
        assert_eq!(lines_above_tests(&code_only(src)), 6);
        assert_eq!(lines_above_tests("a\n#[cfg(test)] mod tests {}\n"), 1);
    }

    #[test]
    fn finds_test_modules_in_files_of_their_own() {
        let src = "mod a;\n#[cfg(test)]\nmod tests;\n#[cfg(test)] pub(crate) mod support ;\n\
                   #[cfg(test)]\nmod inline {}\n#[cfg(test)]\nfn f() {}\n";
        assert_eq!(test_module_files(&code_only(src)), ["tests", "support"]);
    }

    #[test]
    fn whole_words_only() {
        assert!(has_word("unsafe {", "unsafe"));
        assert!(has_word("x(unsafe)", "unsafe"));
        assert!(!has_word("forbid(unsafe_code)", "unsafe"));
        assert!(!has_word("is_unsafe", "unsafe"));
    }
}
