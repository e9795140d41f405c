//! What other connections to a SQLite file changed that the session cache relies on.
//!
//! SQLite has no LISTEN/NOTIFY. Instead, the triggers of migration
//! `0015_session_cache_changes.sql` append to `cache_changes` the user whose sessions
//! each committed change may concern, whoever made it, and an instance reads the rows
//! it has not read yet. Reading them on every request would cost the round trip the
//! cache exists to save, so a request first reads the header of SQLite's WAL index
//! (the `-shm` file next to the database, <https://sqlite.org/walformat.html>): every
//! commit to the file, by any connection of any process, changes it before the commit
//! returns. While it is unchanged since the last catch-up, nothing can be new; that
//! costs one `pread` of 48 bytes.
//!
//! POSIX record locks belong to a process and a file, and closing any descriptor of
//! the file releases all of them. SQLite locks the `-shm` file to coordinate with other
//! processes, so the descriptor opened here must not be closed while this process has
//! other connections to the database: it is closed when the [`Changes`] is dropped,
//! which the server does only after its pool is closed.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use sqlx::sqlite::SqliteConnection;
use sqlx::ConnectOptions;

use super::{sqlite_options, DbError};

/// Bytes of the WAL-index header compared: its first copy, which holds the change
/// counter, the last valid frame and the checksums.
const HEADER: usize = 48;
/// Past this many unread changes, dropping everything is cheaper than reading them.
const MAX_UNREAD: i64 = 1_000;
/// How many of the newest changes the pruning keeps.
const KEEP: i64 = 10_000;

/// What was committed since the last catch-up.
#[derive(Debug, PartialEq, Eq)]
pub enum Caught {
    /// Nothing the cache relies on.
    Nothing,
    /// The sessions of these users.
    Users(Vec<i64>),
    /// Anything: a role or permission changed, or more changed than is worth reading.
    Everything,
}

/// The WAL-index header before a commit of this process's own, and the change log it
/// belongs to; see [`Changes::before_own_commit`].
#[derive(Debug)]
pub struct OwnCommit<'a> {
    changes: &'a Changes,
    before: [u8; HEADER],
}

/// The change log of one SQLite database, as one instance reads it.
#[derive(Debug)]
pub struct Changes {
    shm: File,
    /// The header as of the last catch-up.
    seen: Mutex<[u8; HEADER]>,
    reader: tokio::sync::Mutex<Reader>,
}

/// A connection of its own, which also keeps the `-shm` file in place: SQLite may
/// delete it when the last connection to the database closes.
#[derive(Debug)]
struct Reader {
    conn: SqliteConnection,
    /// The last change read.
    last: i64,
}

impl Changes {
    /// Starts reading the changes of the database at `url` from now on.
    pub async fn open(url: &str) -> Result<Self, DbError> {
        let options = sqlite_options(url)?;
        let mut shm_path = options.get_filename().as_os_str().to_owned();
        shm_path.push("-shm");
        let mut conn = options.connect().await?;
        // The header is read first: a commit after it makes the next request catch up.
        let shm = File::open(&shm_path).map_err(DbError::Changes)?;
        let seen = header(&shm).map_err(DbError::Changes)?;
        let last = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM cache_changes")
            .fetch_one(&mut conn)
            .await?;
        Ok(Self {
            shm,
            seen: Mutex::new(seen),
            reader: tokio::sync::Mutex::new(Reader { conn, last }),
        })
    }

    /// Whether nothing can have been committed since the last catch-up.
    pub fn quiet(&self) -> bool {
        header(&self.shm).is_ok_and(|now| now == *lock(&self.seen))
    }

    /// The WAL-index header as it is now. Call it in a transaction that has written,
    /// and so holds the database's write lock: no other commit can come between this
    /// reading and the transaction's own commit. See [`OwnCommit::committed`].
    pub fn before_own_commit(&self) -> Option<OwnCommit<'_>> {
        header(&self.shm).ok().map(|before| OwnCommit {
            changes: self,
            before,
        })
    }

    /// Reads what was committed since the last catch-up. Callers that find the file
    /// changed at the same time wait for one another, and only the first reads.
    pub async fn catch_up(&self) -> Result<Caught, DbError> {
        let mut reader = self.reader.lock().await;
        // Read before the rows: what commits after it changes the header again.
        let now = header(&self.shm).map_err(DbError::Changes)?;
        if now == *lock(&self.seen) {
            return Ok(Caught::Nothing);
        }
        let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, user_id FROM cache_changes WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(reader.last)
        .bind(MAX_UNREAD + 1)
        .fetch_all(&mut reader.conn)
        .await?;
        let caught = read(reader.last, &rows);
        if caught == Caught::Everything {
            reader.last = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM cache_changes")
                .fetch_one(&mut reader.conn)
                .await?;
        } else if let Some((id, _)) = rows.last() {
            reader.last = *id;
        }
        *lock(&self.seen) = now;
        Ok(caught)
    }
}

impl OwnCommit<'_> {
    /// After the commit of a transaction of this process that wrote nothing the
    /// triggers record (the activity log's rows): when it was the only commit since
    /// the header was read, and everything up to that header had been read, there is
    /// nothing new to read, so the header is taken as read and requests stay
    /// [`Changes::quiet`]. Otherwise nothing changes and the next request catches up as
    /// usual.
    ///
    /// The activity log's writer commits a batch several times a second under load,
    /// and a catch-up holds up every request that arrives while it reads, for the
    /// round trip to its connection's thread: 1.6 ms on average, 10–15 ms at worst, on
    /// the two busy cores of the benchmark.
    ///
    /// The header's change counter goes up by exactly one at each commit, and by
    /// nothing else (<https://sqlite.org/walformat.html>; `iChange` in SQLite's
    /// `walFrames`): one more than before means that this commit, which held the write
    /// lock since the header was read, is the only one.
    pub fn committed(self) {
        let Ok(now) = header(&self.changes.shm) else {
            return;
        };
        let mut seen = lock(&self.changes.seen);
        if *seen == self.before
            && change_counter(&now) == change_counter(&self.before).wrapping_add(1)
        {
            *seen = now;
        }
    }
}

/// What the rows after `last` say. Ids have no gaps (a rolled-back insert gives its
/// id back), so a first id past `last + 1` means rows were pruned before they were
/// read.
fn read(last: i64, rows: &[(i64, Option<i64>)]) -> Caught {
    let Some((first, _)) = rows.first() else {
        return Caught::Nothing;
    };
    if *first != last + 1 || rows.len() as i64 > MAX_UNREAD {
        return Caught::Everything;
    }
    let mut users = Vec::with_capacity(rows.len());
    for (_, user) in rows {
        match user {
            Some(id) => users.push(*id),
            None => return Caught::Everything,
        }
    }
    users.sort_unstable();
    users.dedup();
    Caught::Users(users)
}

/// Forgets all but the newest changes; an instance that had not read them drops
/// everything instead.
pub async fn prune(pool: &sqlx::AnyPool) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM cache_changes WHERE id <= (SELECT MAX(id) FROM cache_changes) - $1",
    )
    .bind(KEEP)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

fn header(shm: &File) -> std::io::Result<[u8; HEADER]> {
    let mut bytes = [0; HEADER];
    shm.read_exact_at(&mut bytes, 0)?;
    Ok(bytes)
}

/// The header's `iChange`: bytes 8 to 11, in the machine's byte order.
fn change_counter(header: &[u8; HEADER]) -> u32 {
    u32::from_ne_bytes([header[8], header[9], header[10], header[11]])
}

/// No code panics while holding the lock; the header is plain bytes.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    /// An activity log row, written the way the log's writer writes a batch.
    async fn log_row(db: &Db, changes: &Changes, after_commit: impl AsyncFnOnce()) {
        let mut tx = db.writer().begin().await.unwrap();
        sqlx::query(
            "INSERT INTO activity_logs (created_at, level, kind, message) \
             VALUES (1, 'INFO', 'access', 'GET / 200')",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        let own = changes.before_own_commit().unwrap();
        tx.commit().await.unwrap();
        after_commit().await;
        own.committed();
    }

    /// What a trigger records when a user's session changes.
    async fn session_change(db: &Db, user: i64) {
        sqlx::query("INSERT INTO cache_changes (user_id) VALUES ($1)")
            .bind(user)
            .execute(db.writer())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_own_commit_is_taken_as_read_only_when_nothing_else_is_unread() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("changes.db").display());
        let db = Db::connect(&url).await.unwrap();
        let changes = Changes::open(&url).await.unwrap();
        assert!(changes.quiet());

        // The only commit since the last catch-up: nothing to read.
        log_row(&db, &changes, async || {}).await;
        assert!(changes.quiet());

        // Another commit right after it: the next request must read it.
        log_row(&db, &changes, async || session_change(&db, 7).await).await;
        assert!(!changes.quiet());
        assert_eq!(changes.catch_up().await.unwrap(), Caught::Users(vec![7]));
        assert!(changes.quiet());

        // A commit before it that was not read yet: still read, own commit or not.
        session_change(&db, 8).await;
        log_row(&db, &changes, async || {}).await;
        assert!(!changes.quiet());
        assert_eq!(changes.catch_up().await.unwrap(), Caught::Users(vec![8]));

        // A commit that is not the activity log's, after one that was.
        log_row(&db, &changes, async || {}).await;
        assert!(changes.quiet());
        session_change(&db, 9).await;
        assert!(!changes.quiet());
        assert_eq!(changes.catch_up().await.unwrap(), Caught::Users(vec![9]));
        assert!(changes.quiet());
        db.close().await;
    }

    #[test]
    fn rows_are_read_as_users_or_everything() {
        assert_eq!(read(5, &[]), Caught::Nothing);
        assert_eq!(
            read(5, &[(6, Some(2)), (7, Some(1)), (8, Some(2))]),
            Caught::Users(vec![1, 2])
        );
        // A role or permission changed.
        assert_eq!(read(5, &[(6, Some(2)), (7, None)]), Caught::Everything);
        // Rows were pruned before this instance read them.
        assert_eq!(read(5, &[(9, Some(2))]), Caught::Everything);
        // More than is worth reading.
        let many: Vec<_> = (6..=6 + MAX_UNREAD).map(|id| (id, Some(1))).collect();
        assert_eq!(read(5, &many), Caught::Everything);
    }
}
