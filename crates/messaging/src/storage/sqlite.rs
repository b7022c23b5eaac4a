//! Storage in SQLite (bundled), in WAL mode.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::{Connection, params};

use super::{Storage, StoredMessage};
use crate::error::StorageError;
use crate::message::Flags;
use crate::{Identity, Message, MessageId};

/// A [`Storage`] in an SQLite file.
///
/// WAL journal with `synchronous = NORMAL`: a commit survives the process
/// being killed at any moment (SIGKILL included); a power loss may lose the
/// last commits, never corrupt the file.
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
/// assert_eq!(store.load()?, vec![msg]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SqliteStorage {
    db: Connection,
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl SqliteStorage {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStorage, StorageError> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS messages (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id BLOB NOT NULL UNIQUE,
                dest TEXT NOT NULL,
                data BLOB NOT NULL,
                flags INTEGER NOT NULL,
                ttl_ms INTEGER,
                expires_ms INTEGER
            );",
        )?;
        Ok(SqliteStorage { db })
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

    fn load(&mut self) -> Result<Vec<StoredMessage>, StorageError> {
        let mut select = self.db.prepare(
            "SELECT id, dest, data, flags, ttl_ms, expires_ms FROM messages ORDER BY seq",
        )?;
        let rows = select.query_map([], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Vec<u8>>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, Option<i64>>(4)?,
                row.get::<_, Option<i64>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, dest, data, flags, ttl_ms, expires_ms) = row?;
            let id: [u8; 16] = id
                .try_into()
                .map_err(|id: Vec<u8>| StorageError::CorruptId(id.len()))?;
            let to = Identity::new(&dest).map_err(StorageError::CorruptIdentity)?;
            out.push(StoredMessage {
                to,
                message: Message {
                    id: MessageId(id),
                    data: Bytes::from(data),
                    ttl: ttl_ms.map(|ms| Duration::from_millis(ms.max(0) as u64)),
                    flags: Flags(u32::try_from(flags).unwrap_or(0)),
                },
                expires_at: expires_ms
                    .map(|ms| UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)),
            });
        }
        Ok(out)
    }
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
        assert!(matches!(store.load(), Err(StorageError::CorruptId(3))));
        store.db.execute("DELETE FROM messages", []).unwrap();
        store
            .db
            .execute(insert, params![&[7u8; 16][..], ""])
            .unwrap();
        assert!(matches!(
            store.load(),
            Err(StorageError::CorruptIdentity(IdentityError::Empty))
        ));
    }
}
