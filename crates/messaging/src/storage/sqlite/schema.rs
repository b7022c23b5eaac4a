//! The store's file: made whole or not at all, and checked when opened,
//! so that a file that is empty, damaged or another program's database is
//! an error rather than an empty queue.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::error::StorageError;

/// The queue's table, as weft makes it. Its columns are checked on open.
const MESSAGES: &str = "CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id BLOB NOT NULL UNIQUE,
    dest TEXT NOT NULL,
    data BLOB NOT NULL,
    flags INTEGER NOT NULL,
    ttl_ms INTEGER,
    expires_ms INTEGER
);";

/// The `messages` columns, in order.
const MESSAGE_COLUMNS: [&str; 7] = ["seq", "id", "dest", "data", "flags", "ttl_ms", "expires_ms"];

/// Tables added since the first stores: made when missing, so a store from
/// an earlier weft opens as it is.
const LATER_TABLES: &str = "CREATE TABLE IF NOT EXISTS set_aside (
    seq INTEGER PRIMARY KEY,
    id, dest, data, flags, ttl_ms, expires_ms,
    reason TEXT NOT NULL,
    set_aside_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (
    seq INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,
    id BLOB NOT NULL
);";

/// Opens the store at `path`: makes a new one where no file exists, and
/// otherwise checks that the file is a whole weft store.
pub(super) fn open(path: &Path) -> Result<Connection, StorageError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path)?,
        Ok(meta) if meta.is_file() && meta.len() == 0 => return Err(StorageError::EmptyFile),
        // Anything else (a directory, no permission) is for SQLite to refuse.
        _ => {}
    }
    let db = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    check(&db).map_err(damaged)?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    db.execute_batch(LATER_TABLES)?;
    Ok(db)
}

/// Makes a new store at `path` under another name, then links it into
/// place: a process killed while making it leaves no half-made store
/// behind at `path`, only a file named after it that nothing opens.
fn create(path: &Path) -> Result<(), StorageError> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".creating-{}", std::process::id()));
    let making: PathBuf = path.with_file_name(name);
    let _ = std::fs::remove_file(&making);
    {
        let db = Connection::open(&making)?;
        // WAL is recorded in the file: every later open uses it.
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.execute_batch(&format!("BEGIN; {MESSAGES} {LATER_TABLES} COMMIT;"))?;
        // Closing the last connection folds the WAL into the file.
        db.close().map_err(|(_, e)| e)?;
    }
    let linked = std::fs::hard_link(&making, path);
    let _ = std::fs::remove_file(&making);
    match linked {
        // Another process made it first: open theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StorageError::other(e)),
        Ok(()) => Ok(()),
    }
}

/// Checks that `db` reads whole and holds weft's `messages` table.
fn check(db: &Connection) -> Result<(), StorageError> {
    let problems: Vec<String> = db
        .prepare("PRAGMA quick_check")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    if problems != ["ok"] {
        return Err(StorageError::Damaged(problems.join("; ")));
    }
    let columns: Vec<String> = db
        .prepare("SELECT name FROM pragma_table_info('messages') ORDER BY cid")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    if columns.is_empty() {
        let tables: Vec<String> = db
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        return Err(StorageError::ForeignSchema(format!(
            "no `messages` table (tables: {})",
            if tables.is_empty() {
                "none".to_string()
            } else {
                tables.join(", ")
            }
        )));
    }
    if columns != MESSAGE_COLUMNS {
        return Err(StorageError::ForeignSchema(format!(
            "`messages` has columns {}, not {}",
            columns.join(", "),
            MESSAGE_COLUMNS.join(", ")
        )));
    }
    Ok(())
}

/// SQLite's word that a file is no database, or a damaged one, as
/// [`StorageError::Damaged`]; other errors as they are.
fn damaged(e: StorageError) -> StorageError {
    match &e {
        StorageError::Sqlite(inner) => match inner.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                StorageError::Damaged(inner.to_string())
            }
            _ => e,
        },
        _ => e,
    }
}
