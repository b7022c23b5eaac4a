//! `weft import-snakemq`: what a snakeMQ 1.6 peer had queued, moved into a
//! weft store, so that a switch to weft loses nothing.
//!
//! ```text
//! weft import-snakemq SNAKEMQ_DB --store WEFT_DB
//! ```
//!
//! - SNAKEMQ_DB is a file written by snakeMQ 1.6's `SqliteQueuesStorage`:
//!   one table, `items (queue_name, uuid, data, ttl, flags)`, holding the
//!   persistent messages a peer had not delivered yet. It is opened
//!   read-only and left as it was.
//! - WEFT_DB is a store as `weft peer --store` and weft-messaging's
//!   `SqliteStorage` keep it; it is created when missing, and messages
//!   already in it stay. A peer started on it sends the imported messages
//!   to their identities.
//! - On success one JSON line on stdout:
//!   `{"event":"imported","messages":N,"identities":K}` (N messages for K
//!   destinations).
//! - A file that is not such a store, or a row weft cannot take, is a
//!   one-line error (exit 1) and nothing is written: every row is read and
//!   checked before the weft store is opened, and the messages are stored
//!   in one transaction.
//!
//! Each row becomes the message snakeMQ would have sent: the same
//! destination, 16-byte id (snakeMQ keeps it as hex; a shorter one is
//! padded with zero bytes, as snakeMQ's frame does), data and flags. Its
//! `ttl` is what was left of the message's life when snakeMQ last wrote
//! it, in seconds, or NULL for none; snakeMQ does not count the time its
//! process was down, so the clock starts again at the import: the message
//! expires `ttl` seconds after it. Rows are taken in the order snakeMQ
//! wrote them, which keeps each identity's queue in order.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use clap::Args;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use weft_messaging::error::StorageError;
use weft_messaging::identity::IdentityError;
use weft_messaging::message::Flags;
use weft_messaging::storage::{SqliteStorage, Storage, StoredMessage};
use weft_messaging::{Identity, Message, MessageId};

use crate::Failure;

/// Arguments of `weft import-snakemq`.
#[derive(Args, Debug)]
pub(crate) struct ImportArgs {
    /// The snakeMQ 1.6 SQLite queue store to read (left unchanged).
    #[arg(value_name = "SNAKEMQ_DB")]
    snakemq_db: PathBuf,
    /// The weft store to copy the messages into (created when missing).
    #[arg(long, value_name = "WEFT_DB")]
    store: PathBuf,
}

/// The columns of snakeMQ 1.6's `items` table.
const COLUMNS: [&str; 5] = ["queue_name", "uuid", "data", "ttl", "flags"];

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImportError {
    /// The snakeMQ file could not be opened.
    #[error("{path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file is not a snakeMQ 1.6 queue store.
    #[error("{path}: not a snakeMQ 1.6 queue store ({why})")]
    NotAStore {
        /// The file.
        path: String,
        /// What is missing or wrong.
        why: String,
    },
    /// A row weft cannot take.
    #[error("{path}: row {row}: {problem}")]
    Row {
        /// The file.
        path: String,
        /// SQLite's rowid of the row.
        row: i64,
        /// What is wrong with it.
        problem: RowProblem,
    },
    /// The weft store could not be opened or written.
    #[error("--store {path}: {source}")]
    Store {
        /// The weft store.
        path: String,
        /// weft-messaging's error.
        source: StorageError,
    },
}

/// What is wrong with one row of `items`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RowProblem {
    /// A column holds a type snakeMQ never writes there.
    #[error("`{column}` is {found}, expected {expected}")]
    Type {
        /// The column.
        column: &'static str,
        /// The SQLite type found.
        found: &'static str,
        /// What snakeMQ writes there.
        expected: &'static str,
    },
    /// The destination is not a weft identity.
    #[error("destination {name:?}: {source}")]
    Identity {
        /// The destination as stored.
        name: String,
        /// Why it is not an identity.
        source: IdentityError,
    },
    /// The uuid is not hex of at most 16 bytes.
    #[error("uuid {0:?} is not hex of at most 16 bytes")]
    Uuid(String),
    /// Two rows carry one uuid (a weft store keeps one message per id).
    #[error("uuid {0} appears in an earlier row too")]
    DuplicateUuid(MessageId),
    /// The TTL is not a number of seconds weft can keep.
    #[error("ttl {0} is not a number of seconds from 0 up")]
    Ttl(f64),
    /// The flags are not a `u32`.
    #[error("flags {0} do not fit in 32 bits")]
    Flags(i64),
}

/// Runs `weft import-snakemq`.
pub(crate) fn run(args: ImportArgs) -> Result<(), Failure> {
    if same_file(&args.snakemq_db, &args.store) {
        return Err(Failure::Usage(format!(
            "--store {}: the weft store must be another file than the snakeMQ store",
            args.store.display()
        )));
    }
    let messages = read_snakemq(&args.snakemq_db, SystemTime::now())?;
    write_store(&args.store, &messages)?;
    let identities: HashSet<&Identity> = messages.iter().map(|m| &m.to).collect();
    println!(
        r#"{{"event":"imported","messages":{},"identities":{}}}"#,
        messages.len(),
        identities.len()
    );
    Ok(())
}

/// Whether `a` and `b` name one existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Every message of the snakeMQ store at `path`, in the order snakeMQ
/// wrote them, with TTLs counted from `now`.
pub(crate) fn read_snakemq(
    path: &Path,
    now: SystemTime,
) -> Result<Vec<StoredMessage>, ImportError> {
    let shown = path.display().to_string();
    // Read-only: the file stays as snakeMQ left it, and a missing file is
    // an error instead of a new empty database.
    let db = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| ImportError::Open {
        path: shown.clone(),
        source,
    })?;
    let not_a_store = |why: String| ImportError::NotAStore {
        path: shown.clone(),
        why,
    };
    let columns = table_columns(&db).map_err(|e| not_a_store(e.to_string()))?;
    if columns.is_empty() {
        return Err(not_a_store("it has no `items` table".into()));
    }
    if let Some(missing) = COLUMNS
        .iter()
        .find(|c| !columns.iter().any(|have| have == *c))
    {
        return Err(not_a_store(format!(
            "its `items` table has no `{missing}` column"
        )));
    }
    let mut select = db
        .prepare("SELECT rowid, queue_name, uuid, data, ttl, flags FROM items ORDER BY rowid")
        .map_err(|e| not_a_store(e.to_string()))?;
    let mut rows = select.query([]).map_err(|e| not_a_store(e.to_string()))?;
    let mut messages = Vec::new();
    let mut seen = HashSet::new();
    while let Some(row) = rows.next().map_err(|e| not_a_store(e.to_string()))? {
        let rowid: i64 = row.get(0).map_err(|e| not_a_store(e.to_string()))?;
        let cell = |i: usize| row.get_ref(i).map_err(|e| not_a_store(e.to_string()));
        let cells = [cell(1)?, cell(2)?, cell(3)?, cell(4)?, cell(5)?];
        let bad_row = |problem| ImportError::Row {
            path: shown.clone(),
            row: rowid,
            problem,
        };
        let message = convert_row(cells, now).map_err(bad_row)?;
        if !seen.insert(message.message.id) {
            return Err(bad_row(RowProblem::DuplicateUuid(message.message.id)));
        }
        messages.push(message);
    }
    Ok(messages)
}

/// The column names of `items`, none when there is no such table.
fn table_columns(db: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut info = db.prepare("SELECT name FROM pragma_table_info('items')")?;
    let names = info.query_map([], |r| r.get::<_, String>(0))?;
    names.collect()
}

/// One row's `queue_name, uuid, data, ttl, flags` as the message to store.
fn convert_row(cells: [ValueRef<'_>; 5], now: SystemTime) -> Result<StoredMessage, RowProblem> {
    let [queue_name, uuid, data, ttl, flags] = cells;
    // Python 3's snakeMQ writes `bytes` (BLOB) where Python 2's wrote
    // `str` (TEXT): both are taken.
    let text_or_blob = |column, v: ValueRef<'_>, expected| match v {
        ValueRef::Text(b) | ValueRef::Blob(b) => Ok(b.to_vec()),
        other => Err(RowProblem::Type {
            column,
            found: type_name(other),
            expected,
        }),
    };
    let name = text_or_blob("queue_name", queue_name, "text")?;
    let name = String::from_utf8_lossy(&name).into_owned();
    let to = Identity::new(&name).map_err(|source| RowProblem::Identity { name, source })?;
    let id = parse_uuid(&text_or_blob("uuid", uuid, "hex text")?)?;
    let data = Bytes::from(text_or_blob("data", data, "a blob")?);
    let ttl = match ttl {
        ValueRef::Null => None,
        ValueRef::Real(s) => Some(seconds(s)?),
        // Lossless for every TTL worth keeping (up to 2^53 seconds).
        ValueRef::Integer(s) => Some(seconds(s as f64)?),
        other => {
            return Err(RowProblem::Type {
                column: "ttl",
                found: type_name(other),
                expected: "a number or NULL",
            });
        }
    };
    let flags = match flags {
        ValueRef::Integer(f) => u32::try_from(f).map_err(|_| RowProblem::Flags(f))?,
        other => {
            return Err(RowProblem::Type {
                column: "flags",
                found: type_name(other),
                expected: "an integer",
            });
        }
    };
    Ok(StoredMessage {
        to,
        message: Message {
            id,
            data,
            ttl,
            flags: Flags(flags),
        },
        expires_at: ttl.and_then(|t| now.checked_add(t)),
    })
}

/// A TTL in seconds as a duration.
fn seconds(s: f64) -> Result<Duration, RowProblem> {
    if s < 0.0 {
        return Err(RowProblem::Ttl(s));
    }
    Duration::try_from_secs_f64(s).map_err(|_| RowProblem::Ttl(s))
}

/// snakeMQ's hex uuid as a message id, zero-padded to 16 bytes as its
/// MESSAGE frame (`struct` format `16s`) pads it.
fn parse_uuid(hex: &[u8]) -> Result<MessageId, RowProblem> {
    let bad = || RowProblem::Uuid(String::from_utf8_lossy(hex).into_owned());
    if hex.len() % 2 != 0 || hex.len() > 32 {
        return Err(bad());
    }
    let mut id = [0u8; 16];
    for (byte, pair) in id.iter_mut().zip(hex.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(MessageId(id))
}

/// SQLite's name for a value's type.
fn type_name(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

/// Stores `messages` in the weft store at `path` in one transaction; a
/// store this call created is removed again when that fails.
fn write_store(path: &Path, messages: &[StoredMessage]) -> Result<(), ImportError> {
    let existed = path.symlink_metadata().is_ok();
    let written = SqliteStorage::open(path).and_then(|mut store| store.store(messages));
    written.map_err(|source| {
        if !existed {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut file = path.as_os_str().to_owned();
                file.push(suffix);
                let _ = std::fs::remove_file(file);
            }
        }
        ImportError::Store {
            path: path.display().to_string(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `queue_name, uuid, data, ttl, flags` of one row.
    type Item = (
        &'static str,
        rusqlite::types::Value,
        Vec<u8>,
        Option<f64>,
        i64,
    );

    /// A store with snakeMQ 1.6's own table, filled by `rows`.
    fn snakemq_store(dir: &Path, rows: &[Item]) -> PathBuf {
        let path = dir.join("snakemq.db");
        let db = Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE items (queue_name VARCHAR(50), uuid VARCHAR(32),
                                 data BLOB, ttl REAL, flags INTEGER)",
        )
        .unwrap();
        for (queue, uuid, data, ttl, flags) in rows {
            db.execute(
                "INSERT INTO items (queue_name, uuid, data, ttl, flags) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![queue, uuid, data, ttl, flags],
            )
            .unwrap();
        }
        path
    }

    fn blob(s: &str) -> rusqlite::types::Value {
        rusqlite::types::Value::Blob(s.as_bytes().to_vec())
    }

    fn text(s: &str) -> rusqlite::types::Value {
        rusqlite::types::Value::Text(s.into())
    }

    const A: &str = "000102030405060708090a0b0c0d0e0f";

    #[test]
    fn rows_become_the_messages_snakemq_would_send() {
        let dir = tempfile::tempdir().unwrap();
        let path = snakemq_store(
            dir.path(),
            &[
                ("bob", blob(A), b"one".to_vec(), Some(59.5), 1),
                // Python 2's snakeMQ stored text, and a short uuid.
                ("carol", text("ff01"), b"two".to_vec(), None, 1),
            ],
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let got = read_snakemq(&path, now).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].to.as_str(), "bob");
        assert_eq!(got[0].message.id.to_hex(), A);
        assert_eq!(&got[0].message.data[..], b"one");
        assert_eq!(got[0].message.ttl, Some(Duration::from_millis(59_500)));
        assert_eq!(got[0].expires_at, Some(now + Duration::from_millis(59_500)));
        assert_eq!(got[0].message.flags, Flags::PERSISTENT);
        assert_eq!(got[1].to.as_str(), "carol");
        assert_eq!(
            got[1].message.id.to_hex(),
            format!("ff01{}", "0".repeat(28))
        );
        assert_eq!((got[1].message.ttl, got[1].expires_at), (None, None));
    }

    #[test]
    fn a_row_weft_cannot_take_names_its_row_and_problem() {
        let cases: [(&str, rusqlite::types::Value, Option<f64>, i64, &str); 5] = [
            ("", blob(A), None, 1, "row 1: destination \"\""),
            ("bob", blob("xyz"), None, 1, "uuid \"xyz\" is not hex"),
            (
                "bob",
                blob(&"ab".repeat(17)),
                None,
                1,
                "is not hex of at most 16 bytes",
            ),
            ("bob", blob(A), Some(-1.0), 1, "ttl -1 is not a number"),
            (
                "bob",
                blob(A),
                None,
                1 << 40,
                "flags 1099511627776 do not fit",
            ),
        ];
        for (queue, uuid, ttl, flags, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = snakemq_store(dir.path(), &[(queue, uuid, vec![], ttl, flags)]);
            let e = read_snakemq(&path, SystemTime::now()).unwrap_err();
            assert!(matches!(e, ImportError::Row { row: 1, .. }), "{e:?}");
            assert!(
                e.to_string().contains(expected),
                "{e} (expected {expected})"
            );
        }
    }

    #[test]
    fn a_uuid_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = snakemq_store(
            dir.path(),
            &[
                ("bob", blob(A), vec![], None, 1),
                ("carol", text(A), vec![], None, 1),
            ],
        );
        let e = read_snakemq(&path, SystemTime::now()).unwrap_err();
        assert!(
            matches!(
                e,
                ImportError::Row {
                    row: 2,
                    problem: RowProblem::DuplicateUuid(_),
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn other_files_are_not_stores() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE items (name TEXT, price REAL)")
            .unwrap();
        let e = read_snakemq(&other, SystemTime::now()).unwrap_err();
        assert!(e.to_string().contains("no `queue_name` column"), "{e}");

        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, b"").unwrap();
        let e = read_snakemq(&empty, SystemTime::now()).unwrap_err();
        assert!(e.to_string().contains("has no `items` table"), "{e}");

        let missing = dir.path().join("missing.db");
        let e = read_snakemq(&missing, SystemTime::now()).unwrap_err();
        assert!(matches!(e, ImportError::Open { .. }), "{e:?}");
        assert!(!missing.exists(), "a missing file is not created");
    }
}
