//! Writing the activity log off the request path.
//!
//! Requests hand entries to a bounded in-memory queue and move on; one task per
//! instance writes them in batches, each batch one transaction and one multi-row
//! INSERT. When the queue is full (the database is slower than the traffic for long
//! enough to fill [`QUEUE_CAPACITY`] entries) a new entry is dropped and counted in
//! [`ActivityLog::dropped`] rather than slowing the request or growing memory without
//! bound. On a clean shutdown the writer empties the queue before it returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::LogEntry;
use crate::db::{Backend, Db};

/// Entries waiting for the writer, at most.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Rows per INSERT.
const BATCH: usize = 250;
/// How long the writer waits for more entries before writing a partial batch.
const LINGER: Duration = Duration::from_millis(200);

/// The handle requests log through; cheap to clone.
#[derive(Clone)]
pub struct ActivityLog {
    queue: mpsc::Sender<LogEntry>,
    dropped: Arc<AtomicU64>,
}

impl ActivityLog {
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<LogEntry>) {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        (
            Self {
                queue,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            receiver,
        )
    }

    /// Queues the entry without waiting; see the module documentation for a full queue.
    pub fn record(&self, entry: LogEntry) {
        if self.queue.try_send(entry).is_err() {
            let before = self.dropped.fetch_add(1, Ordering::Relaxed);
            if before.is_power_of_two() || before == 0 {
                tracing::warn!(
                    dropped = before + 1,
                    "activity log queue full; entries are being dropped"
                );
            }
        }
    }

    /// Entries dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Entries waiting to be written.
    pub fn depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

/// Writes queued entries until `stop` turns true, then writes what is left and
/// returns.
pub async fn run(db: Db, mut receiver: mpsc::Receiver<LogEntry>, mut stop: watch::Receiver<bool>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            received = receiver.recv_many(&mut batch, BATCH) => {
                if received == 0 {
                    break;
                }
            }
            _ = stop.wait_for(|s| *s) => break,
        }
        // Let a burst gather into one transaction.
        if batch.len() < BATCH {
            let _ = tokio::time::timeout(LINGER, async {
                while batch.len() < BATCH {
                    let room = BATCH - batch.len();
                    if receiver.recv_many(&mut batch, room).await == 0 {
                        return;
                    }
                }
            })
            .await;
        }
        write(&db, &mut batch).await;
    }
    // Shutdown: everything still queued is written.
    loop {
        while batch.len() < BATCH {
            match receiver.try_recv() {
                Ok(entry) => batch.push(entry),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            return;
        }
        write(&db, &mut batch).await;
    }
}

async fn write(db: &Db, batch: &mut Vec<LogEntry>) {
    if batch.is_empty() {
        return;
    }
    for attempt in 1..=3 {
        match insert(db, batch).await {
            Ok(()) => {
                batch.clear();
                return;
            }
            Err(e) if attempt < 3 => {
                tracing::warn!(error = %e, attempt, "writing the activity log failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, lost = batch.len(), "activity log entries could not be written");
            }
        }
    }
    batch.clear();
}

/// The batch travels as one JSON array bound to one parameter and is unpacked by the
/// database: thousands of bound values through sqlx's `Any` driver cost more than
/// the inserts themselves.
const INSERT_SQLITE: &str = "INSERT INTO activity_logs (created_at, level, kind, message, \
     user_id, user_email, client_ip, user_agent, method, path, status, duration_ms, details) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
     value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11, \
     value ->> 12 FROM json_each($1)";
const INSERT_POSTGRES: &str = "INSERT INTO activity_logs (created_at, level, kind, message, \
     user_id, user_email, client_ip, user_agent, method, path, status, duration_ms, details) \
     SELECT (r ->> 0)::bigint, r ->> 1, r ->> 2, r ->> 3, (r ->> 4)::bigint, r ->> 5, \
     r ->> 6, r ->> 7, r ->> 8, r ->> 9, (r ->> 10)::bigint, (r ->> 11)::bigint, r ->> 12 \
     FROM jsonb_array_elements($1::jsonb) AS r";

async fn insert(db: &Db, batch: &[LogEntry]) -> Result<(), sqlx::Error> {
    let rows: Vec<serde_json::Value> = batch
        .iter()
        .map(|e| {
            serde_json::json!([
                e.created_at,
                e.level.as_str(),
                e.kind.as_str(),
                e.message,
                e.user_id,
                e.user_email,
                e.client_ip,
                e.user_agent,
                e.method,
                e.path,
                e.status,
                e.duration_ms,
                e.details.as_ref().map(|d| d.to_string()),
            ])
        })
        .collect();
    let sql = match db.backend() {
        Backend::Sqlite => INSERT_SQLITE,
        Backend::Postgres => INSERT_POSTGRES,
    };
    sqlx::query(sql)
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(db.pool())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{Kind, Level};

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (log, mut receiver) = ActivityLog::new(2);
        for i in 0..5 {
            log.record(LogEntry::new(
                Kind::Access,
                Level::Info,
                format!("entry {i}"),
            ));
        }
        assert_eq!(log.depth(), 2);
        assert_eq!(log.dropped(), 3);
        // The oldest entries are the ones kept.
        assert_eq!(receiver.try_recv().unwrap().message, "entry 0");
        assert_eq!(receiver.try_recv().unwrap().message, "entry 1");
        assert!(receiver.try_recv().is_err());
    }
}
