//! What `cargo xtask natlab` reads: each cell's times, one JSON line a run.

use std::io::Write;
use std::time::Instant;

use weft_traversal::Transport;

use super::{Cell, Seen};

/// With `WEFT_NATLAB_RECORD=<file>` set (`cargo xtask natlab` sets it),
/// appends one JSON line with the cell's times to the file, before any of
/// the cell's assertions, so that a run that misses is measured too:
///
/// ```text
/// {"cell":"cone","first_message_ms":12.3,"direct_ms":480.1,"via":"tcp",
///  "alice":{"first_message_ms":11.0,"direct_ms":470.2,"via":"tcp"},"bob":{...}}
/// ```
///
/// Times are from both having registered. The cell's are the later of the
/// two peers': `direct_ms` is `null` unless both went direct, and `via` is
/// `relay`, the transport both went direct over (`tcp`, `quic`), or
/// `mixed`.
pub(super) fn record(cell: &Cell, tag: &str) {
    let Some(path) = std::env::var_os("WEFT_NATLAB_RECORD") else {
        return;
    };
    let both = cell.alice.registered.max(cell.bob.registered);
    let ms = |at: Instant| at.saturating_duration_since(both).as_secs_f64() * 1e3;
    let direct = |seen: &Seen| {
        seen.first_direct
            .map(|(at, _, transport)| (ms(at), transport))
    };
    let via = |transport: Option<Transport>| match transport {
        None => "relay",
        Some(Transport::Tcp) => "tcp",
        Some(Transport::Quic) => "quic",
        Some(Transport::Unix) => "unix",
        Some(_) => "other",
    };
    let number = |v: Option<f64>| v.map_or("null".to_owned(), |v| format!("{v:.1}"));
    let peer = |seen: &Seen| {
        let d = direct(seen);
        format!(
            r#"{{"first_message_ms":{:.1},"direct_ms":{},"via":"{}"}}"#,
            ms(seen.first_message),
            number(d.map(|(at, _)| at)),
            via(d.map(|(_, t)| t))
        )
    };
    let (a, b) = (direct(&cell.alice), direct(&cell.bob));
    let (direct_ms, via) = match (a, b) {
        (Some((x, tx)), Some((y, ty))) => (
            Some(x.max(y)),
            if tx == ty { via(Some(tx)) } else { "mixed" },
        ),
        _ => (None, "relay"),
    };
    let line = format!(
        r#"{{"cell":"{tag}","first_message_ms":{:.1},"direct_ms":{},"via":"{via}","alice":{},"bob":{}}}"#,
        ms(cell.alice.first_message).max(ms(cell.bob.first_message)),
        number(direct_ms),
        peer(&cell.alice),
        peer(&cell.bob),
    ) + "\n";
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(e) = written {
        panic!("nat_lab: recording to {}: {e}", path.to_string_lossy());
    }
}
