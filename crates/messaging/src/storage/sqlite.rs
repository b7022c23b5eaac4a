//! Storage in SQLite (bundled), in WAL mode.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::{Connection, Row, params};

use super::{Loaded, SeenId, SetAside, Storage, StoredMessage};

mod schema;
mod seen;
use crate::error::StorageError;
use crate::message::Flags;
use crate::{Identity, Message, MessageId};

/// A [`Storage`] in an SQLite file.
///
/// WAL journal with `synchronous = NORMAL`: a commit survives the process
/// being killed at any moment (SIGKILL included); a power loss may lose the
/// last commits, never corrupt the file.
///
/// A row that cannot be read back (a damaged id, destination, flags or
/// time, or a column of the wrong type) is moved, as it is, to the
/// `set_aside` table with its reason and the time, and reported by
/// [`load`](Storage::load); so are messages
/// [set aside](Storage::set_aside) as unsendable. Nothing there is loaded
/// again; it stays for someone to look at.
///
/// The ids of received messages ([`Storage::record_seen`]) are in the
/// `seen` table, trimmed now and then to the newest ones the dedupe window
/// holds.
///
/// ```
/// use weft_messaging::storage::{SqliteStorage, Storage, StoredMessage};
/// use weft_messaging::{Identity, Message};
/// let dir = tempfile::tempdir()?;
/// let mut store = SqliteStorage::open(dir.path().join("queues.sqlite"))?;
/// let msg = StoredMessage {
///     to: Identity::new("bob")?,
///     message: Message::new("hi").persistent(),
///     expires_at: None,
/// };
/// store.store(&[msg.clone()])?;
/// assert_eq!(store.load()?.messages, vec![msg]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SqliteStorage {
    db: Connection,
    seen: seen::SeenTable,
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl SqliteStorage {
    /// Opens the store at `path`, or makes a new one where no file
    /// exists. An existing file must be a whole weft store: one that is
    /// empty ([`StorageError::EmptyFile`]), truncated or damaged
    /// ([`StorageError::Damaged`]) or another program's database
    /// ([`StorageError::ForeignSchema`]) is refused, never taken for an
    /// empty queue. Opening reads the whole file once to check it.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStorage, StorageError> {
        Ok(SqliteStorage {
            db: schema::open(path.as_ref())?,
            seen: seen::SeenTable::default(),
        })
    }
}

impl Storage for SqliteStorage {
    fn store(&mut self, messages: &[StoredMessage]) -> Result<(), StorageError> {
        let tx = self.db.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO messages (id, dest, data, flags, ttl_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for m in messages {
                insert.execute(params![
                    &m.message.id.0[..],
                    m.to.as_str(),
                    &m.message.data[..],
                    i64::from(m.message.flags.0),
                    m.message
                        .ttl
                        .map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX)),
                    m.expires_at.map(millis),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn delete(&mut self, ids: &[MessageId]) -> Result<(), StorageError> {
        let tx = self.db.transaction()?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
            for id in ids {
                delete.execute(params![&id.0[..]])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn load(&mut self) -> Result<Loaded, StorageError> {
        let mut loaded = Loaded::default();
        let mut bad = Vec::new();
        {
            let mut select = self.db.prepare(
                "SELECT seq, id, dest, data, flags, ttl_ms, expires_ms FROM messages ORDER BY seq",
            )?;
            // A row's error is its own: the rows after it still load.
            let rows = select.query_map([], |row| Ok((row.get::<_, i64>(0)?, read_row(row))))?;
            for row in rows {
                let (seq, message) = row?;
                match message {
                    Ok(m) => loaded.messages.push(m),
                    Err(error) => bad.push((seq, error)),
                }
            }
        }
        if !bad.is_empty() {
            let tx = self.db.transaction()?;
            for (seq, error) in &bad {
                move_aside(&tx, "seq", seq, error)?;
            }
            tx.commit()?;
            loaded.set_aside = bad
                .into_iter()
                .map(|(seq, error)| SetAside::new(seq.unsigned_abs(), error))
                .collect();
        }
        Ok(loaded)
    }

    fn set_aside(&mut self, ids: &[MessageId], reason: &StorageError) -> Result<(), StorageError> {
        let tx = self.db.transaction()?;
        for id in ids {
            move_aside(&tx, "id", &id.0, reason)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn record_seen(&mut self, seen: &[SeenId], keep: usize) -> Result<(), StorageError> {
        self.seen.record(&mut self.db, seen, keep)
    }

    fn load_seen(&mut self, keep: usize) -> Result<Vec<SeenId>, StorageError> {
        seen::load(&self.db, keep)
    }
}

/// Moves the rows of `messages` whose `column` is `key` to `set_aside`.
fn move_aside(
    db: &Connection,
    column: &str,
    key: &dyn rusqlite::ToSql,
    reason: &StorageError,
) -> Result<(), StorageError> {
    db.prepare_cached(&format!(
        "INSERT OR REPLACE INTO set_aside
         SELECT seq, id, dest, data, flags, ttl_ms, expires_ms, ?2, ?3
         FROM messages WHERE {column} = ?1"
    ))?
    .execute(params![key, reason.to_string(), millis(SystemTime::now())])?;
    db.prepare_cached(&format!("DELETE FROM messages WHERE {column} = ?1"))?
        .execute(params![key])?;
    Ok(())
}

/// One row of `messages` (`seq` first) as a message, or what is wrong with
/// it.
fn read_row(row: &Row<'_>) -> Result<StoredMessage, StorageError> {
    let id: Vec<u8> = row.get(1)?;
    let id: [u8; 16] = id
        .try_into()
        .map_err(|id: Vec<u8>| StorageError::CorruptId(id.len()))?;
    let to = Identity::new(&row.get::<_, String>(2)?).map_err(StorageError::CorruptIdentity)?;
    let data: Vec<u8> = row.get(3)?;
    let flags: i64 = row.get(4)?;
    let flags = u32::try_from(flags).map_err(|_| StorageError::CorruptFlags(flags))?;
    let time = |ms: Option<i64>| match ms {
        None => Ok(None),
        Some(ms) => u64::try_from(ms)
            .map(|ms| Some(Duration::from_millis(ms)))
            .map_err(|_| StorageError::CorruptTime(ms)),
    };
    Ok(StoredMessage {
        to,
        message: Message {
            id: MessageId(id),
            data: Bytes::from(data),
            ttl: time(row.get(5)?)?,
            flags: Flags(flags),
        },
        expires_at: time(row.get(6)?)?.map(|d| UNIX_EPOCH + d),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityError;

    #[test]
    fn sqlite_failures_carry_the_sqlite_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory is no database file.
        let Err(StorageError::Sqlite(e)) = SqliteStorage::open(dir.path()) else {
            panic!("opening a directory must fail with SQLite's error");
        };
        assert!(matches!(*e, rusqlite::Error::SqliteFailure(..)), "{e:?}");
    }

    #[test]
    fn a_damaged_row_is_reported_as_what_is_wrong_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStorage::open(dir.path().join("q.sqlite")).unwrap();
        let insert = "INSERT INTO messages (id, dest, data, flags) VALUES (?1, ?2, x'', 0)";
        store
            .db
            .execute(insert, params![&[1u8, 2, 3][..], "bob"])
            .unwrap();
        store
            .db
            .execute(insert, params![&[7u8; 16][..], ""])
            .unwrap();
        let loaded = store.load().unwrap();
        assert!(loaded.messages.is_empty());
        let [short, empty] = &loaded.set_aside[..] else {
            panic!("two rows set aside: {:?}", loaded.set_aside);
        };
        assert!(matches!(short.error, StorageError::CorruptId(3)));
        assert!(matches!(
            empty.error,
            StorageError::CorruptIdentity(IdentityError::Empty)
        ));
        assert_eq!((short.row, empty.row), (1, 2));
    }
}
