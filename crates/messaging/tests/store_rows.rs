//! A store's bad rows: one row that cannot be read back, or a message that
//! can never be sent, is set aside and reported; the others load and leave.
#![cfg(feature = "sqlite")]

use std::collections::HashSet;
use std::path::Path;

use rusqlite::Connection;
use weft_messaging::error::StorageError;
use weft_messaging::identity::IdentityError;
use weft_messaging::storage::{MemoryStorage, SqliteStorage, Storage, StoredMessage};
use weft_messaging::{Message, Messaging, MessagingConfig};

mod common;
use common::{WAIT, config, id, until};

/// A store at `path` with `n` persistent messages for bob, "m0" to
/// "m{n-1}", stored in that order (row `seq` k+1 holds "mk").
fn store_of(path: &Path, n: usize) -> Vec<StoredMessage> {
    let mut store = SqliteStorage::open(path).unwrap();
    let messages: Vec<StoredMessage> = (0..n)
        .map(|k| StoredMessage {
            to: id("bob"),
            message: Message::new(format!("m{k}")).persistent(),
            expires_at: None,
        })
        .collect();
    store.store(&messages).unwrap();
    messages
}

/// Runs `sql` on the store at `path`, behind weft's back.
fn tamper(path: &Path, sql: &str) {
    let db = Connection::open(path).unwrap();
    assert_eq!(db.execute(sql, []).unwrap(), 1, "{sql} changed one row");
}

fn count(path: &Path, table: &str) -> i64 {
    let db = Connection::open(path).unwrap();
    db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Each way a row can be damaged, and what its report says.
const DAMAGE: &[(&str, &str)] = &[
    ("UPDATE messages SET id = x'010203' WHERE seq = 100", "id"),
    ("UPDATE messages SET dest = '' WHERE seq = 100", "identity"),
    (
        "UPDATE messages SET dest = 'x' || printf('%.60c', 'y') WHERE seq = 100",
        "identity",
    ),
    ("UPDATE messages SET flags = -1 WHERE seq = 100", "flags"),
    (
        "UPDATE messages SET flags = 8589934592 WHERE seq = 100",
        "flags",
    ),
    ("UPDATE messages SET ttl_ms = -5 WHERE seq = 100", "time"),
    (
        "UPDATE messages SET data = 'text, not a blob' WHERE seq = 100",
        "type",
    ),
    ("UPDATE messages SET dest = x'ff00' WHERE seq = 100", "type"),
];

#[test]
fn one_damaged_row_of_200_is_set_aside_and_the_199_others_load() {
    for (sql, what) in DAMAGE {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        let stored = store_of(&path, 200);
        tamper(&path, sql);

        let loaded = SqliteStorage::open(&path).unwrap().load().unwrap();
        let mut expected = stored.clone();
        expected.remove(99);
        assert_eq!(loaded.messages, expected, "{sql}: the others, in order");
        assert_eq!(loaded.set_aside.len(), 1, "{sql}: one row reported");
        let bad = &loaded.set_aside[0];
        assert_eq!(bad.row, 100, "{sql}: the report names the row");
        let right_kind = match (*what, &bad.error) {
            ("id", StorageError::CorruptId(3)) => true,
            ("identity", StorageError::CorruptIdentity(e)) => {
                matches!(e, IdentityError::Empty | IdentityError::TooLong { .. })
            }
            ("flags", StorageError::CorruptFlags(f)) => *f == -1 || *f == 1 << 33,
            ("time", StorageError::CorruptTime(-5)) => true,
            ("type", StorageError::Sqlite(_)) => true,
            _ => false,
        };
        assert!(right_kind, "{sql}: reported as {:?}", bad.error);

        // Set aside, not deleted: it waits in its own table, with why.
        assert_eq!(count(&path, "messages"), 199, "{sql}");
        assert_eq!(count(&path, "set_aside"), 1, "{sql}");
        let db = Connection::open(&path).unwrap();
        let (seq, reason): (i64, String) = db
            .query_row("SELECT seq, reason FROM set_aside", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((seq, reason), (100, bad.error.to_string()), "{sql}");

        // And it is not reported again.
        let again = SqliteStorage::open(&path).unwrap().load().unwrap();
        assert_eq!((again.messages.len(), again.set_aside.len()), (199, 0));
    }
}

/// Starts alice on the store at `path` with `config`, and bob listening;
/// returns what bob received, once `expected` messages arrived.
async fn deliver(
    path: &Path,
    config_a: MessagingConfig,
    expected: usize,
) -> (Messaging, Vec<String>) {
    let alice = Messaging::with_storage(id("alice"), config_a, SqliteStorage::open(path).unwrap())
        .await
        .unwrap();
    let bob = Messaging::new(id("bob"), config()).await.unwrap();
    let at = bob
        .link()
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap()
        .address;
    alice.link().connect(&at).unwrap();
    let mut got = Vec::new();
    for _ in 0..expected {
        let r = bob.recv(Some(WAIT)).await.unwrap();
        got.push(String::from_utf8(r.message.data.to_vec()).unwrap());
    }
    assert!(alice.flush(WAIT).await, "all acknowledged");
    (alice, got)
}

#[tokio::test]
async fn messaging_sends_the_199_readable_rows_and_counts_the_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    store_of(&path, 200);
    tamper(&path, "UPDATE messages SET id = x'00' WHERE seq = 7");

    let (alice, got) = deliver(&path, config(), 199).await;
    assert_eq!(alice.stats().store_rows_skipped, 1);
    let expected: Vec<String> = (0..200)
        .filter(|k| *k != 6)
        .map(|k| format!("m{k}"))
        .collect();
    assert_eq!(got, expected, "the 199 others, in order, once each");
    // Delivered ones are deleted (by the storage thread, soon after their
    // acks); the damaged one is kept aside.
    until("delivered rows deleted", || count(&path, "messages") == 0).await;
    assert_eq!(count(&path, "set_aside"), 1);
}

#[tokio::test]
async fn a_stored_message_over_the_packet_limit_is_set_aside_and_the_rest_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sqlite");
    let mut store = SqliteStorage::open(&path).unwrap();
    let message = |data: Vec<u8>| StoredMessage {
        to: id("bob"),
        message: Message::new(data).persistent(),
        expires_at: None,
    };
    let big = message(vec![b'x'; 5_000]);
    store
        .store(&[
            message(b"first".to_vec()),
            big.clone(),
            message(b"third".to_vec()),
            message(b"fourth".to_vec()),
        ])
        .unwrap();
    drop(store);

    let mut small = config();
    small.packeter.max_packet = 4_096;
    let (alice, got) = deliver(&path, small, 3).await;
    assert_eq!(got, ["first", "third", "fourth"], "none blocked behind it");
    assert_eq!(alice.stats().store_rows_skipped, 1);
    until("delivered rows deleted", || count(&path, "messages") == 0).await;
    assert_eq!(count(&path, "set_aside"), 1);
    let db = Connection::open(&path).unwrap();
    let (id, reason): (Vec<u8>, String) = db
        .query_row("SELECT id, reason FROM set_aside", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(id, big.message.id.0);
    assert!(reason.contains("packet limit is 4096"), "{reason}");
}

#[tokio::test]
async fn memory_storage_sets_an_unsendable_message_aside_too() {
    let mut storage = MemoryStorage::new();
    let messages: Vec<StoredMessage> = [vec![1u8; 10], vec![2u8; 100]]
        .into_iter()
        .map(|data| StoredMessage {
            to: id("bob"),
            message: Message::new(data).persistent(),
            expires_at: None,
        })
        .collect();
    storage.store(&messages).unwrap();
    let mut small = config();
    small.packeter.max_packet = 64;
    let alice = Messaging::with_storage(id("alice"), small, storage.clone())
        .await
        .unwrap();
    assert_eq!(alice.stats().store_rows_skipped, 1);
    assert_eq!(alice.queue_depth(&id("bob")), 1);
    let aside = storage.set_aside_messages();
    assert_eq!(aside.len(), 1);
    assert_eq!(aside[0].0, messages[1]);
    assert!(matches!(
        aside[0].1,
        StorageError::TooLarge {
            packet: 125,
            max: 64
        }
    ));
    assert_eq!(storage.len(), 1, "the other stays stored");
    let distinct: HashSet<_> = storage
        .load()
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.message.id)
        .collect();
    assert!(distinct.contains(&messages[0].message.id));
}
