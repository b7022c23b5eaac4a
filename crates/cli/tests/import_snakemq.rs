//! `weft import-snakemq` on stores written by a real snakeMQ 1.6, and on
//! files that are not such stores.
//!
//! The snakeMQ test needs Python with snakemq 1.6: `WEFT_SNAKEMQ_PYTHON`
//! (set by `cargo xtask interop`, which runs this file) or the venv that
//! task makes under `target/interop/venv`. Without either it says SKIPPED
//! on stderr and passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use weft_messaging::message::Flags;
use weft_messaging::storage::SqliteStorage;
use weft_messaging::{Identity, Messaging, MessagingConfig, Received};

const WAIT: Duration = Duration::from_secs(15);

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

fn import(snakemq_db: &Path, store: &Path) -> Output {
    weft()
        .arg("import-snakemq")
        .arg(snakemq_db)
        .arg("--store")
        .arg(store)
        .output()
        .unwrap()
}

fn id(s: &str) -> Identity {
    Identity::new(s).unwrap()
}

/// Python with snakemq 1.6, or `None` (after saying so loudly) when this
/// machine has none.
fn snakemq_python() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("WEFT_SNAKEMQ_PYTHON") {
        return Some(PathBuf::from(python));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/interop/venv/bin/python");
    if venv.exists() {
        return Some(venv);
    }
    eprintln!(
        "!!! SKIPPED: importing a real snakeMQ 1.6 store: no snakeMQ venv \
         (run `cargo xtask interop`, or set WEFT_SNAKEMQ_PYTHON)"
    );
    None
}

/// A message as the snakeMQ script reports it.
#[derive(Debug)]
struct Queued {
    to: String,
    uuid: String,
    data: Vec<u8>,
    ttl: Option<u64>,
    flags: u32,
    persistent: bool,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Has snakeMQ 1.6 queue the script's messages into a store at `path`.
fn snakemq_queues(python: &Path, path: &Path) -> Vec<Queued> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/snakemq_store.py"
    );
    let out = Command::new(python).arg(script).arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "snakeMQ script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            Queued {
                to: v["to"].as_str().unwrap().to_owned(),
                uuid: v["uuid"].as_str().unwrap().to_owned(),
                data: unhex(v["data"].as_str().unwrap()),
                ttl: v["ttl"].as_u64(),
                flags: u32::try_from(v["flags"].as_u64().unwrap()).unwrap(),
                persistent: v["persistent"].as_bool().unwrap(),
            }
        })
        .collect()
}

/// Checks that `got` is the message `want`, as snakeMQ queued it.
fn assert_is(got: &Received, want: &Queued) {
    assert_eq!(got.from.as_str(), "migrated");
    assert_eq!(got.message.id.to_hex(), want.uuid, "{want:?}");
    assert_eq!(&got.message.data[..], &want.data[..], "{want:?}");
    assert_eq!(got.message.flags, Flags(want.flags), "{want:?}");
    match want.ttl {
        None => assert_eq!(got.message.ttl, None, "{want:?}"),
        Some(ttl) => {
            let left = got.message.ttl.expect("a TTL").as_secs();
            // Whole seconds on the wire, counted from the import.
            assert!((ttl - 10..=ttl).contains(&left), "{left} of {want:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_by_snakemq_is_delivered_by_weft() {
    let Some(python) = snakemq_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let snake_db = dir.path().join("snakemq.db");
    let weft_db = dir.path().join("weft.db");
    let queued = snakemq_queues(&python, &snake_db);
    let stored: Vec<&Queued> = queued.iter().filter(|q| q.persistent).collect();
    assert_eq!((queued.len(), stored.len()), (5, 4), "{queued:?}");
    let before = std::fs::read(&snake_db).unwrap();

    let out = import(&snake_db, &weft_db);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\"event\":\"imported\",\"messages\":4,\"identities\":2}\n"
    );
    assert_eq!(
        std::fs::read(&snake_db).unwrap(),
        before,
        "the snakeMQ store is left as it was"
    );

    // A weft peer on the imported store delivers exactly snakeMQ's
    // persistent messages, each to its identity, in snakeMQ's order.
    let alice = Messaging::new(id("alice"), MessagingConfig::default())
        .await
        .unwrap();
    let bob = Messaging::new(id("bob"), MessagingConfig::default())
        .await
        .unwrap();
    let storage = SqliteStorage::open(&weft_db).unwrap();
    let sender = Messaging::with_storage(id("migrated"), MessagingConfig::default(), storage)
        .await
        .unwrap();
    assert_eq!(sender.queue_depth(&id("alice")), 2);
    assert_eq!(sender.queue_depth(&id("bob")), 2);
    for receiver in [&alice, &bob] {
        let at = receiver
            .link()
            .listen("tcp://127.0.0.1:0")
            .await
            .unwrap()
            .address;
        sender.link().connect(&at).unwrap();
    }
    for (receiver, name) in [(&alice, "alice"), (&bob, "bob")] {
        for want in stored.iter().filter(|q| q.to == name) {
            let got = receiver.recv(Some(WAIT)).await.unwrap();
            assert_is(&got, want);
        }
    }
    assert!(sender.flush(WAIT).await, "every imported message delivered");
    for receiver in [&alice, &bob] {
        assert!(
            receiver.default_queue().try_recv().is_none(),
            "nothing but the imported messages"
        );
    }
    sender.close().await;
}

/// Runs an import of `file` that must fail: one line on stderr, exit 1,
/// `file` unchanged and no weft store.
fn assert_refused(file: &Path, expected: &str) {
    let before = std::fs::read(file).unwrap();
    let store = file.with_extension("weft");
    let out = import(file, &store);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(expected), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(!store.exists(), "no weft store is created");
    assert_eq!(
        std::fs::read(file).unwrap(),
        before,
        "{} unchanged",
        file.display()
    );
}

#[test]
fn random_bytes_are_not_a_snakemq_store() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("random.db");
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, bytes).unwrap();
    assert_refused(&file, "not a snakeMQ 1.6 queue store");
}

#[test]
fn a_sqlite_file_of_another_schema_is_not_a_snakemq_store() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("other.db");
    let db = rusqlite::Connection::open(&file).unwrap();
    db.execute_batch(
        "CREATE TABLE items (name TEXT, price REAL);
         INSERT INTO items VALUES ('tea', 2.5);",
    )
    .unwrap();
    drop(db);
    assert_refused(&file, "has no `queue_name` column");

    // A weft store is not a snakeMQ store either.
    let weft_store = dir.path().join("store.db");
    drop(SqliteStorage::open(&weft_store).unwrap());
    assert_refused(&weft_store, "has no `items` table");
}

#[test]
fn a_bad_row_refuses_the_whole_store() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snakemq.db");
    let db = rusqlite::Connection::open(&file).unwrap();
    db.execute_batch(
        "CREATE TABLE items (queue_name VARCHAR(50), uuid VARCHAR(32),
                             data BLOB, ttl REAL, flags INTEGER);
         INSERT INTO items VALUES ('bob', x'3030303030303030303030303030303030303030303030303030303030303031', x'01', NULL, 1);
         INSERT INTO items VALUES ('', x'3030303030303030303030303030303030303030303030303030303030303032', x'02', NULL, 1);",
    )
    .unwrap();
    drop(db);
    assert_refused(&file, "row 2: destination \"\"");
}

#[test]
fn a_missing_file_is_an_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("missing.db");
    let out = import(&file, &dir.path().join("weft.db"));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .trim_end()
            .lines()
            .count(),
        1
    );
    assert!(!file.exists());
    assert!(!dir.path().join("weft.db").exists());
}
