//! Writing the activity log off the request path.
//!
//! Requests hand entries to a bounded in-memory queue; one task per instance writes
//! them in batches, each batch one transaction. Two guarantees hold whatever the
//! database does:
//!
//! - An answered request's authentication events and changes are stored: the
//!   request middleware ([`ActivityLog::scope`]) holds the answer until the writer has
//!   stored the entries the request recorded, so they are visible to the very next
//!   request and a crash after the answer cannot lose them. If they cannot be stored
//!   in time the answer is a 503, never a success without its record.
//! - A batch that cannot be written is kept and retried, with a growing pause, until
//!   the database is back. Memory stays bounded by [`QUEUE_CAPACITY`]: when the queue
//!   is full the oldest access line is dropped to make room (events and changes only
//!   when nothing else is left), and every dropped entry is counted in
//!   [`ActivityLog::dropped`], the metric and `/readyz`.
//!
//! On a clean shutdown the writer empties the queue, trying for at most
//! [`SHUTDOWN_FLUSH`] while the database is away.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::store::Totals;
use super::{Kind, LogEntry};
use crate::db::batch::{self, Step, Value};
use crate::db::changes::Changes;
use crate::db::{Backend, Db};

/// Entries waiting for the writer, at most.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Rows per batch, at most: a power of two, so that a full batch is one statement on
/// SQLite too (see [`insert`]).
const BATCH: usize = 256;
/// How long the writer waits for more entries before writing a partial batch, unless
/// a request is waiting for its entries.
const LINGER: Duration = Duration::from_millis(200);
/// The longest pause between attempts while the database is away.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);
/// How long the writer keeps trying at shutdown before giving up on what is left.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

tokio::task_local! {
    /// The highest sequence number of an entry the current request must see stored
    /// before it is answered.
    static MUST_STORE: std::cell::Cell<u64>;
}

/// The handle requests log through, and read this instance's exact totals from;
/// cheap to clone.
#[derive(Clone)]
pub struct ActivityLog {
    shared: Arc<Shared>,
    totals: Totals,
}

struct Shared {
    queue: Mutex<Queue>,
    capacity: usize,
    /// Wakes the writer when entries arrive.
    arrived: Notify,
    /// Tells the writer to stop lingering: someone waits for the entries.
    hurry: Notify,
    /// Tells the writer that a full batch may be waiting (see [`linger`]).
    filled: Notify,
    /// How many entries, in order of arrival, are settled (stored or dropped).
    settled: watch::Sender<u64>,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Queue {
    entries: VecDeque<(u64, LogEntry)>,
    /// The sequence number the next entry gets (1, 2, ...).
    next: u64,
    /// Entries the writer holds in its current batch.
    in_flight: usize,
}

/// The entries of one batch with their sequence numbers, oldest first.
type Batch = Vec<(u64, LogEntry)>;

impl ActivityLog {
    pub fn new(capacity: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    next: 1,
                    ..Queue::default()
                }),
                capacity: capacity.max(1),
                arrived: Notify::new(),
                hurry: Notify::new(),
                filled: Notify::new(),
                settled: watch::Sender::new(0),
                dropped: AtomicU64::new(0),
            }),
            totals: Totals::default(),
        }
    }

    /// The exact totals this instance counted, which deep pages by number are read by.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// Queues the entry without waiting. Inside a request ([`ActivityLog::scope`]) an
    /// event or a change is stored before the request is answered; an access line
    /// never holds anything up.
    pub fn record(&self, entry: LogEntry) {
        let entry = entry.without_nul();
        let kind = entry.kind;
        let (seq, full_batch) = {
            let Ok(mut queue) = self.shared.queue.lock() else {
                self.count_dropped(1);
                return;
            };
            if queue.entries.len() >= self.shared.capacity {
                let victim = queue
                    .entries
                    .iter()
                    .position(|(_, e)| e.kind == Kind::Access)
                    .unwrap_or(0);
                queue.entries.remove(victim);
                self.count_dropped(1);
            }
            let seq = queue.next;
            queue.next += 1;
            queue.entries.push_back((seq, entry));
            (seq, queue.entries.len() == BATCH)
        };
        if kind.awaited() {
            let _ = MUST_STORE.try_with(|must| must.set(must.get().max(seq)));
        }
        self.shared.arrived.notify_one();
        // Once a batch is full, lingering longer only lets the queue grow (see
        // docs/performance.md, "a full batch does not wait").
        if full_batch {
            self.shared.filled.notify_one();
        }
    }

    /// Runs a request's handler and returns its answer once the events and changes it
    /// recorded are stored, or `None` when they could not be stored within `limit`.
    pub async fn scope<T>(&self, limit: Duration, handler: impl Future<Output = T>) -> Option<T> {
        let must = std::cell::Cell::new(0);
        let (answer, must) = MUST_STORE
            .scope(must, async {
                let answer = handler.await;
                (answer, MUST_STORE.with(std::cell::Cell::get))
            })
            .await;
        if must == 0 {
            return Some(answer);
        }
        tokio::time::timeout(limit, self.settled_through(must))
            .await
            .ok()
            .map(|()| answer)
    }

    /// Waits until every entry recorded so far is stored (or dropped): what a test
    /// calls instead of sleeping, and what `scope` waits on.
    pub async fn drain(&self) {
        let last = self
            .shared
            .queue
            .lock()
            .map(|q| q.next.saturating_sub(1))
            .unwrap_or(0);
        self.settled_through(last).await;
    }

    async fn settled_through(&self, seq: u64) {
        let mut settled = self.shared.settled.subscribe();
        if *settled.borrow() >= seq {
            return;
        }
        self.shared.hurry.notify_one();
        let _ = settled.wait_for(|s| *s >= seq).await;
    }

    /// Stores an event or a change in the caller's transaction, so that it exists
    /// exactly when the change it records does.
    pub async fn record_in(
        conn: &mut sqlx::AnyConnection,
        entry: LogEntry,
    ) -> Result<(), sqlx::Error> {
        let row = [(0, entry.without_nul())];
        if conn.backend_name() == "PostgreSQL" {
            insert_json(conn, &row).await
        } else {
            insert_values(conn, &row).await
        }
    }

    /// Entries dropped since start: the queue was full, or shutdown could not store
    /// them.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Entries waiting to be written.
    pub fn depth(&self) -> usize {
        self.shared
            .queue
            .lock()
            .map(|q| q.entries.len() + q.in_flight)
            .unwrap_or(0)
    }

    fn count_dropped(&self, n: u64) {
        let before = self.shared.dropped.fetch_add(n, Ordering::Relaxed);
        if before == 0 || (before + n).ilog2() > before.ilog2() {
            tracing::warn!(
                dropped = before + n,
                "activity log entries are being dropped"
            );
        }
    }

    fn take_batch(&self) -> Option<Batch> {
        let mut queue = self.shared.queue.lock().ok()?;
        let n = queue.entries.len().min(BATCH);
        if n == 0 {
            return None;
        }
        let batch: Batch = queue.entries.drain(..n).collect();
        queue.in_flight = batch.len();
        Some(batch)
    }

    fn queued(&self) -> usize {
        self.shared
            .queue
            .lock()
            .map(|q| q.entries.len())
            .unwrap_or(0)
    }

    /// Everything up to `last` is stored or given up (batches leave the queue in
    /// order, and dropped entries leave it for good); wakes whoever waits for it.
    fn settle(&self, mut last: u64) {
        if let Ok(mut queue) = self.shared.queue.lock() {
            queue.in_flight = 0;
            if queue.entries.is_empty() {
                last = last.max(queue.next - 1);
            }
        }
        self.shared.settled.send_if_modified(|s| {
            let moved = last > *s;
            *s = (*s).max(last);
            moved
        });
    }
}

/// Writes queued entries until `stop` turns true, then writes what is left (trying for
/// at most [`SHUTDOWN_FLUSH`]) and returns. On SQLite, `changes` is the change log the
/// session cache follows, if it does: each batch's commit is marked as read there
/// ([`crate::db::changes::OwnCommit::committed`]), so that it does not make requests
/// catch up.
pub async fn run(
    db: Db,
    log: ActivityLog,
    changes: Option<Arc<Changes>>,
    mut stop: watch::Receiver<bool>,
) {
    let changes = changes.as_deref();
    loop {
        if log.queued() == 0 {
            tokio::select! {
                _ = log.shared.arrived.notified() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        linger(&log, LINGER, &mut stop).await;
        let Some(batch) = log.take_batch() else {
            continue;
        };
        let last = batch.last().map_or(0, |(seq, _)| *seq);
        let mut pause = Duration::from_millis(50);
        let mut failures = 0u32;
        loop {
            match insert(&db, changes, &batch).await {
                Ok(()) => break,
                Err(e) => {
                    crate::db::note_failure(&e);
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(error = %e, failures, waiting = batch.len() + log.queued(), "writing the activity log failed; retrying");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                    if *stop.borrow() {
                        break;
                    }
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                }
            }
        }
        if *stop.borrow() && failures > 0 {
            // Stopping while the database is away: the batch goes to the shutdown
            // flush below with what is left in the queue.
            requeue(&log, batch);
            break;
        }
        log.settle(last);
    }
    let flushed = tokio::time::timeout(SHUTDOWN_FLUSH, async {
        while let Some(batch) = log.take_batch() {
            let last = batch.last().map_or(0, |(seq, _)| *seq);
            while let Err(e) = insert(&db, changes, &batch).await {
                tracing::warn!(error = %e, "writing the activity log at shutdown failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            log.settle(last);
        }
    })
    .await;
    if flushed.is_err() {
        let lost = log.depth();
        log.count_dropped(u64::try_from(lost).unwrap_or(u64::MAX));
        tracing::error!(
            lost,
            "activity log entries could not be stored before shutdown"
        );
        if let Ok(mut queue) = log.shared.queue.lock() {
            queue.entries.clear();
        }
        log.settle(u64::MAX);
    }
}

/// Waits up to `longest` for a burst to gather into one transaction, unless a batch
/// is full; returns sooner when one fills, someone waits for the entries or the writer
/// is told to stop.
async fn linger(log: &ActivityLog, longest: Duration, stop: &mut watch::Receiver<bool>) {
    let until = tokio::time::Instant::now() + longest;
    while log.queued() < BATCH {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return,
            _ = log.shared.hurry.notified() => return,
            // Only a hint: a wake-up stored during the batch before may be stale.
            _ = log.shared.filled.notified() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Puts a batch back at the front of the queue, in order.
fn requeue(log: &ActivityLog, batch: Batch) {
    if let Ok(mut queue) = log.shared.queue.lock() {
        queue.in_flight = 0;
        for item in batch.into_iter().rev() {
            queue.entries.push_front(item);
        }
    }
}

async fn insert(
    db: &Db,
    changes: Option<&Changes>,
    batch: &[(u64, LogEntry)],
) -> Result<(), sqlx::Error> {
    match db.backend() {
        Backend::Postgres if must_be_durable(batch) => insert_json(db.writer(), batch).await,
        Backend::Postgres => insert_json(db.relaxed_pool(), batch).await,
        Backend::Sqlite => {
            let mut tx = db.writer().begin().await?;
            for chunk in sqlite_chunks(batch) {
                insert_values(&mut *tx, chunk).await?;
            }
            // The rows are written, so the transaction holds the write lock.
            let own = changes.and_then(Changes::before_own_commit);
            tx.commit().await?;
            if let Some(own) = own {
                own.committed();
            }
            Ok(())
        }
    }
}

/// Whether a batch must reach the disk before its commit returns: when it holds an
/// event or a change, whose request is answered once they are stored. A batch of
/// access lines alone commits without waiting for PostgreSQL's WAL flush
/// ([`Db::relaxed_pool`]): a crash of the database server may lose its last few
/// hundred milliseconds, as a full queue may drop access lines, and in exchange the
/// writer does not wait for the disk under load. (Under the benchmark's flood of GETs
/// one batch took 1.3 s to commit, and the queue dropped 8,335 access lines behind it.)
fn must_be_durable(batch: &[(u64, LogEntry)]) -> bool {
    batch.iter().any(|(_, e)| e.kind.awaited())
}

/// The columns an entry fills, in the order every insert binds them.
macro_rules! columns {
    () => {
        "(created_at, level, kind, message, user_id, user_email, client_ip, user_agent, \
         method, path, status, duration_ms, details)"
    };
}

/// On PostgreSQL the batch travels as one JSON array bound to one parameter and is
/// unpacked by the database, in its own process; bound rows were not measured there.
const INSERT_POSTGRES: &str = concat!(
    "INSERT INTO activity_logs ",
    columns!(),
    " SELECT (r ->> 0)::bigint, r ->> 1, r ->> 2, r ->> 3, (r ->> 4)::bigint, r ->> 5, \
     r ->> 6, r ->> 7, r ->> 8, r ->> 9, (r ->> 10)::bigint, (r ->> 11)::bigint, r ->> 12 \
     FROM jsonb_array_elements($1::jsonb) AS r"
);

async fn insert_json<'c>(
    conn: impl sqlx::Executor<'c, Database = sqlx::Any>,
    rows: &[(u64, LogEntry)],
) -> Result<(), sqlx::Error> {
    let rows = rows_json(rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(INSERT_POSTGRES)
        .bind(rows)
        .execute(conn)
        .await?;
    Ok(())
}

/// The batch cut into runs of a power of two rows, largest first, so that
/// [`insert_values`] needs one prepared statement per size (nine in all) and a full
/// batch is one statement.
///
/// SQLite runs the statement on a thread that takes a core from the requests while
/// it writes, and there unpacking the rows from JSON cost more than the rest of the
/// insert: about 10 µs per row that way against 6.5 µs bound, with the five indexes an
/// access line enters (the bundled SQLite, 100,000 access lines; see
/// docs/performance.md).
fn sqlite_chunks(batch: &[(u64, LogEntry)]) -> impl Iterator<Item = &[(u64, LogEntry)]> {
    let mut rest = batch;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = 1 << rest.len().ilog2();
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

/// `INSERT … VALUES (?, …), …` for `rows` rows, one of the sizes [`sqlite_chunks`]
/// gives.
fn values_sql(rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        (0..=BATCH.ilog2())
            .map(|power| {
                let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
                let rows = vec![row; 1 << power].join(", ");
                format!("INSERT INTO activity_logs {} VALUES {rows}", columns!())
            })
            .collect()
    });
    &all[rows.ilog2() as usize]
}

async fn insert_values<'c>(
    conn: impl sqlx::Executor<'c, Database = sqlx::Any>,
    rows: &[(u64, LogEntry)],
) -> Result<(), sqlx::Error> {
    let details: Vec<Option<String>> = rows
        .iter()
        .map(|(_, e)| e.details.as_ref().map(ToString::to_string))
        .collect();
    let mut query = sqlx::query(values_sql(rows.len()));
    for ((_, e), details) in rows.iter().zip(&details) {
        for value in row_values(e, details.as_deref()) {
            query = batch::bind(query, value);
        }
    }
    query.execute(conn).await?;
    Ok(())
}

/// An entry stored in the round trip of other writes ([`crate::db::batch::run`]) instead of by
/// the writer, so that it exists exactly when they do (as [`ActivityLog::record_in`]
/// does inside a transaction) and its request has no writer to wait for. Sent through
/// [`Db::writer`] when it must be durable, as the writer stores authentication events.
pub struct Direct {
    entry: LogEntry,
    details: Option<String>,
}

impl Direct {
    pub fn new(entry: LogEntry) -> Self {
        let entry = entry.without_nul();
        let details = entry.details.as_ref().map(ToString::to_string);
        Self { entry, details }
    }

    /// The entry's `INSERT`.
    pub fn step(&self) -> Step<'_> {
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let values: Vec<String> = (1..=13).map(|i| format!("${i}")).collect();
            format!(
                "INSERT INTO activity_logs {} VALUES ({})",
                columns!(),
                values.join(", ")
            )
        });
        Step::new(
            &SQL,
            row_values(&self.entry, self.details.as_deref()).to_vec(),
        )
    }
}

/// An entry's values in the order of `columns!`, its details already serialised.
fn row_values<'a>(e: &'a LogEntry, details: Option<&'a str>) -> [Value<'a>; 13] {
    [
        Value::Int(e.created_at),
        Value::Text(e.level.as_str()),
        Value::Text(e.kind.as_str()),
        Value::Text(&e.message),
        Value::OptionalInt(e.user_id),
        Value::OptionalText(e.user_email.as_deref()),
        Value::OptionalText(e.client_ip.as_deref()),
        Value::OptionalText(e.user_agent.as_deref()),
        Value::OptionalText(e.method.as_deref()),
        Value::OptionalText(e.path.as_deref()),
        Value::OptionalInt(e.status),
        Value::OptionalInt(e.duration_ms),
        Value::OptionalText(details),
    ]
}

/// The entries as the one JSON array the INSERT unpacks, each an array of its
/// columns, serialised from borrowed fields (no `serde_json::Value` per field).
fn rows_json(batch: &[(u64, LogEntry)]) -> Result<String, serde_json::Error> {
    let rows: Vec<_> = batch
        .iter()
        .map(|(_, e)| {
            (
                e.created_at,
                e.level.as_str(),
                e.kind.as_str(),
                &e.message,
                e.user_id,
                &e.user_email,
                &e.client_ip,
                &e.user_agent,
                &e.method,
                &e.path,
                e.status,
                e.duration_ms,
                e.details.as_ref().map(|d| d.to_string()),
            )
        })
        .collect();
    serde_json::to_string(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::Level;

    fn entry(kind: Kind, i: usize) -> LogEntry {
        LogEntry::new(kind, Level::Info, format!("entry {i}"))
    }

    #[test]
    fn a_full_queue_drops_the_oldest_access_lines_and_counts_them() {
        let log = ActivityLog::new(3);
        log.record(entry(Kind::Access, 0));
        log.record(entry(Kind::Auth, 1));
        log.record(entry(Kind::Access, 2));
        log.record(entry(Kind::Admin, 3));
        log.record(entry(Kind::Access, 4));
        assert_eq!(log.depth(), 3);
        assert_eq!(log.dropped(), 2);
        let batch = log.take_batch().unwrap();
        let kept: Vec<&str> = batch.iter().map(|(_, e)| e.message.as_str()).collect();
        assert_eq!(kept, ["entry 1", "entry 3", "entry 4"]);
    }

    #[tokio::test]
    async fn the_writer_lingers_for_a_partial_batch_only() {
        let (_stopper, mut stop) = watch::channel(false);
        let log = ActivityLog::new(QUEUE_CAPACITY);
        for i in 0..BATCH - 1 {
            log.record(entry(Kind::Access, i));
        }
        // The wake-up of a batch filled while the writer was writing the one before.
        log.shared.filled.notify_one();
        let wait = Duration::from_millis(50);
        let started = tokio::time::Instant::now();
        linger(&log, wait, &mut stop).await;
        assert!(started.elapsed() >= wait, "a stale wake-up ended the wait");

        // A batch filled while the writer waits ends the wait (of an hour: the
        // timeout only keeps a broken writer from hanging the test).
        let hour = Duration::from_secs(3600);
        let full = async {
            tokio::task::yield_now().await;
            log.record(entry(Kind::Access, BATCH));
        };
        tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(linger(&log, hour, &mut stop), full)
        })
        .await
        .expect("a full batch ends the wait");

        // So does a request waiting for its entries, whatever the queue holds.
        let _ = log.take_batch();
        log.record(entry(Kind::Auth, 0));
        log.shared.hurry.notify_one();
        tokio::time::timeout(Duration::from_secs(10), linger(&log, hour, &mut stop))
            .await
            .expect("a waiting request ends the wait");
    }

    #[test]
    fn only_a_batch_of_access_lines_alone_may_skip_the_disk_flush() {
        let batch = |kinds: &[Kind]| -> Batch {
            kinds
                .iter()
                .enumerate()
                .map(|(i, kind)| (i as u64, entry(*kind, i)))
                .collect()
        };
        assert!(!must_be_durable(&batch(&[Kind::Access, Kind::Access])));
        assert!(must_be_durable(&batch(&[Kind::Access, Kind::Auth])));
        assert!(must_be_durable(&batch(&[Kind::Admin, Kind::Access])));
        assert!(must_be_durable(&batch(&[Kind::Auth])));
    }

    #[test]
    fn a_batch_is_cut_into_runs_of_a_power_of_two_largest_first() {
        for n in 0..=BATCH {
            let batch: Batch = (0..n).map(|i| (i as u64, entry(Kind::Access, i))).collect();
            let chunks: Vec<&[(u64, LogEntry)]> = sqlite_chunks(&batch).collect();
            let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
            assert!(sizes.iter().all(|s| s.is_power_of_two()), "{n}: {sizes:?}");
            assert!(sizes.windows(2).all(|w| w[0] > w[1]), "{n}: {sizes:?}");
            let order: Vec<u64> = chunks.concat().iter().map(|(seq, _)| *seq).collect();
            assert_eq!(order, (0..n as u64).collect::<Vec<_>>());
            for size in sizes {
                assert_eq!(values_sql(size).matches('?').count(), 13 * size);
            }
        }
        assert_eq!(sqlite_chunks(&[]).count(), 0);
        let full: Batch = (0..BATCH)
            .map(|i| (i as u64, entry(Kind::Access, i)))
            .collect();
        assert_eq!(sqlite_chunks(&full).count(), 1);
    }
}
