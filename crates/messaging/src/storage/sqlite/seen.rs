//! The ids of received messages, with their senders: the dedupe window as
//! the store keeps it, appended to in groups and trimmed to the window.

use rusqlite::{Connection, params};

use crate::error::StorageError;
use crate::storage::SeenId;
use crate::{Identity, MessageId};

/// Ids recorded between two trims of the table: trimming deletes a range
/// of `seq`, so doing it now and then costs about as much per id as doing
/// it every commit, in far fewer statements.
const TRIM_EVERY: usize = 4_096;

/// Appends to the `seen` table, trimming it to the newest `keep` rows.
#[derive(Debug, Default)]
pub(super) struct SeenTable {
    /// Rows added since the table was last trimmed.
    since_trim: usize,
}

impl SeenTable {
    /// Records `seen` in one transaction.
    pub(super) fn record(
        &mut self,
        db: &mut Connection,
        seen: &[SeenId],
        keep: usize,
    ) -> Result<(), StorageError> {
        let tx = db.transaction()?;
        {
            let mut insert = tx.prepare_cached("INSERT INTO seen (sender, id) VALUES (?1, ?2)")?;
            for s in seen {
                insert.execute(params![s.from.as_str(), &s.id.0])?;
            }
        }
        self.since_trim = self.since_trim.saturating_add(seen.len());
        if self.since_trim >= TRIM_EVERY.min(keep.max(1)) {
            trim(&tx, keep)?;
            self.since_trim = 0;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Deletes all but the newest `keep` rows.
fn trim(db: &Connection, keep: usize) -> Result<(), StorageError> {
    db.prepare_cached("DELETE FROM seen WHERE seq <= (SELECT max(seq) FROM seen) - ?1")?
        .execute(params![i64::try_from(keep).unwrap_or(i64::MAX)])?;
    Ok(())
}

/// The newest `keep` rows, oldest first. A row that cannot be read back
/// (damaged) is skipped and logged: it can only make one resend go
/// unrecognised, and it must not keep the store from opening.
pub(super) fn load(db: &Connection, keep: usize) -> Result<Vec<SeenId>, StorageError> {
    let mut select = db.prepare(
        "SELECT seq, sender, id FROM (SELECT seq, sender, id FROM seen ORDER BY seq DESC LIMIT ?1)
         ORDER BY seq",
    )?;
    let rows = select.query_map(params![i64::try_from(keep).unwrap_or(i64::MAX)], |row| {
        let seq: i64 = row.get(0)?;
        let read = || -> Result<SeenId, StorageError> {
            let from =
                Identity::new(&row.get::<_, String>(1)?).map_err(StorageError::CorruptIdentity)?;
            let id: Vec<u8> = row.get(2)?;
            let id: [u8; 16] = id
                .try_into()
                .map_err(|id: Vec<u8>| StorageError::CorruptId(id.len()))?;
            Ok(SeenId {
                from,
                id: MessageId(id),
            })
        };
        Ok((seq, read()))
    })?;
    let mut seen = Vec::new();
    for row in rows {
        match row? {
            (_, Ok(s)) => seen.push(s),
            (seq, Err(error)) => {
                tracing::warn!(row = seq, %error, "a recorded message id was skipped");
            }
        }
    }
    Ok(seen)
}
