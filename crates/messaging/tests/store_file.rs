//! A store's file: where none exists a new store is made; an existing file
//! that is empty, truncated, damaged or another program's database is an
//! error, never an empty queue.
#![cfg(feature = "sqlite")]

use std::path::Path;

use rusqlite::Connection;
use weft_messaging::Message;
use weft_messaging::error::StorageError;
use weft_messaging::storage::{SqliteStorage, Storage, StoredMessage};

mod common;
use common::id;

/// A store at `path` holding `n` persistent messages of 1 KiB, its WAL
/// folded into the file (as when the last process using it closed it).
fn store_of(path: &Path, n: usize) {
    let mut store = SqliteStorage::open(path).unwrap();
    let messages: Vec<StoredMessage> = (0..n)
        .map(|k| StoredMessage {
            to: id("bob"),
            message: Message::new(vec![k as u8; 1024]).persistent(),
            expires_at: None,
        })
        .collect();
    store.store(&messages).unwrap();
    drop(store);
    assert!(!path.with_extension("sqlite-wal").exists(), "WAL folded in");
}

fn open_err(path: &Path) -> StorageError {
    match SqliteStorage::open(path) {
        Ok(_) => panic!("{} opened as a store", path.display()),
        Err(e) => e,
    }
}

#[test]
fn a_path_with_no_file_becomes_a_new_store_and_nothing_else_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    let mut store = SqliteStorage::open(&path).unwrap();
    assert!(store.load().unwrap().messages.is_empty());
    drop(store);
    store_of(&path, 3);
    assert_eq!(
        SqliteStorage::open(&path)
            .unwrap()
            .load()
            .unwrap()
            .messages
            .len(),
        3,
        "opened again, as it was"
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["q.sqlite"], "no file from making it is left");
}

#[test]
fn an_empty_file_is_an_error_and_is_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    store_of(&path, 200);
    // Truncated to 0 bytes.
    std::fs::File::create(&path).unwrap();
    let e = open_err(&path);
    assert!(matches!(e, StorageError::EmptyFile), "{e:?}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "untouched");
}

#[test]
fn a_truncated_store_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    store_of(&path, 200);
    let whole = std::fs::read(&path).unwrap();
    for keep in [whole.len() / 2, 4096, 50] {
        std::fs::write(&path, &whole[..keep]).unwrap();
        let e = open_err(&path);
        assert!(
            matches!(e, StorageError::Damaged(_)),
            "cut to {keep} bytes: {e:?}"
        );
    }
}

#[test]
fn a_file_that_is_no_database_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    std::fs::write(&path, "queue = [\"not SQLite\"]\n".repeat(300)).unwrap();
    let e = open_err(&path);
    assert!(matches!(e, StorageError::Damaged(_)), "{e:?}");
}

#[test]
fn a_database_of_another_schema_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // Another program's database.
    let other = dir.path().join("other.sqlite");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ann');")
        .unwrap();
    let e = open_err(&other);
    assert!(
        matches!(&e, StorageError::ForeignSchema(s) if s.contains("users")),
        "{e:?}"
    );
    // A `messages` table that is not weft's.
    let lookalike = dir.path().join("lookalike.sqlite");
    Connection::open(&lookalike)
        .unwrap()
        .execute_batch("CREATE TABLE messages (id INTEGER, body TEXT);")
        .unwrap();
    let e = open_err(&lookalike);
    assert!(
        matches!(&e, StorageError::ForeignSchema(s) if s.contains("body")),
        "{e:?}"
    );
    // A store whose table is gone.
    let gutted = dir.path().join("gutted.sqlite");
    store_of(&gutted, 5);
    Connection::open(&gutted)
        .unwrap()
        .execute_batch("DROP TABLE messages;")
        .unwrap();
    let e = open_err(&gutted);
    assert!(matches!(e, StorageError::ForeignSchema(_)), "{e:?}");
}

#[test]
fn a_store_made_before_the_set_aside_table_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    store_of(&path, 4);
    Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TABLE set_aside;")
        .unwrap();
    let loaded = SqliteStorage::open(&path).unwrap().load().unwrap();
    assert_eq!(loaded.messages.len(), 4);
}
