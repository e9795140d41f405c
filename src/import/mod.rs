//! `gatehouse import-flask`: takes over the database of the old Flask service.
//!
//! The old SQLite file is opened read-only and read whole; each table is then
//! planned (every row imported, merged, renamed or skipped, with the reason kept for
//! the report) and written in batches, one transaction each. Every imported row's new
//! id is recorded in `flask_import_ids` in the same transaction as the row, so a
//! second run skips what the first imported and an interrupted run resumes after its
//! last committed batch. New rows get explicit ids (the next free ones), which lets a
//! dry run plan exactly what a real run would write, references included.
//!
//! The SQL of accounts, roles, two-factor secrets and the activity log lives in those
//! modules' stores; boards and billing are written from [`kanban`] and [`billing`]
//! here, one function per table.

mod accounts;
mod billing;
mod kanban;
mod logs;
mod old;
pub mod report;

use std::collections::HashMap;
use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sqlx::Row as _;
use time::UtcOffset;

use crate::db::{self, Backend, Db, JsonCol};
use crate::error::AppError;
use old::OldDb;
pub use report::Report;

/// Rows per transaction.
const BATCH: usize = 1000;

pub struct Options {
    /// The old service's SQLite file.
    pub from: PathBuf,
    /// Plan and report only; nothing is written.
    pub dry_run: bool,
    /// The old server's offset from UTC: Stripe period ends were stored in its local
    /// time (every other time is UTC).
    pub server_utc_offset: UtcOffset,
    /// Draw a progress bar per table on standard error (hidden when it is not a
    /// terminal).
    pub progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the old database {path}: {source}")]
    Old { path: String, source: sqlx::Error },
    #[error("{0}")]
    Target(#[from] AppError),
}

impl From<sqlx::Error> for ImportError {
    fn from(e: sqlx::Error) -> Self {
        Self::Target(AppError::from(e))
    }
}

/// What the planning of one table hands to the next: old id → new id per kind.
struct Ctx<'a> {
    db: &'a Db,
    backend: Backend,
    options: &'a Options,
    secret_key: &'a [u8],
    /// Ids recorded by earlier runs, per kind.
    before: HashMap<&'static str, HashMap<i64, i64>>,
    /// Ids planned by this run (merges included), per kind.
    now: HashMap<&'static str, HashMap<i64, i64>>,
}

impl Ctx<'_> {
    fn already(&self, kind: &'static str, old: i64) -> bool {
        self.before.get(kind).is_some_and(|m| m.contains_key(&old))
    }

    /// The new id of an old row, imported by this run or an earlier one.
    fn id(&self, kind: &'static str, old: i64) -> Option<i64> {
        [&self.now, &self.before]
            .iter()
            .find_map(|m| m.get(kind).and_then(|m| m.get(&old)).copied())
    }

    fn plan(&mut self, kind: &'static str, old: i64, new: i64) {
        self.now.entry(kind).or_default().insert(old, new);
    }

    fn bar(&self, name: &'static str, len: usize) -> ProgressBar {
        let target = if self.options.progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(len as u64), target);
        if let Ok(style) = ProgressStyle::with_template("{prefix:>22} [{bar:40}] {pos}/{len}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(name);
        bar
    }
}

/// Imports the old database into `db` (or plans it, in a dry run) and reports.
/// `secret_key` seals the two-factor secrets as the server does.
pub async fn run(db: &Db, secret_key: &[u8], options: &Options) -> Result<Report, ImportError> {
    let mut old = OldDb::open(&options.from)
        .await
        .map_err(|source| ImportError::Old {
            path: options.from.display().to_string(),
            source,
        })?;
    let mut ctx = Ctx {
        db,
        backend: db.backend(),
        options,
        secret_key,
        before: recorded(db).await?,
        now: HashMap::new(),
    };
    let mut report = Report {
        dry_run: options.dry_run,
        tables: Vec::new(),
    };
    let carried = accounts::users(&mut ctx, &mut old, &mut report).await?;
    accounts::roles(&mut ctx, &mut old, &mut report).await?;
    kanban::import(&mut ctx, &mut old, &mut report).await?;
    logs::import(&mut ctx, &mut old, &mut report, &carried).await?;
    billing::import(&mut ctx, &mut old, &mut report, &carried).await?;
    Ok(report)
}

/// The ids recorded by earlier runs.
async fn recorded(db: &Db) -> Result<HashMap<&'static str, HashMap<i64, i64>>, sqlx::Error> {
    let rows = sqlx::query("SELECT kind, old_id, new_id FROM flask_import_ids")
        .fetch_all(db.pool())
        .await?;
    let mut out: HashMap<&'static str, HashMap<i64, i64>> = HashMap::new();
    for row in rows {
        let kind: String = row.try_get(0)?;
        if let Some(kind) = KINDS.iter().find(|k| **k == kind) {
            out.entry(kind)
                .or_default()
                .insert(row.try_get(1)?, row.try_get(2)?);
        }
    }
    Ok(out)
}

/// The kinds of rows recorded in `flask_import_ids`.
const KINDS: [&str; 7] = [
    "user",
    "role",
    "permission",
    "board",
    "column",
    "ticket",
    "log_entry",
];

/// Records which new row each old row became, in the transaction that wrote them.
async fn record(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    kind: &str,
    pairs: &[(i64, i64)],
) -> Result<(), sqlx::Error> {
    if pairs.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = pairs
        .iter()
        .map(|(old, new)| serde_json::json!([kind, old, new]))
        .collect();
    let select = db::json_rows(backend, &[JsonCol::Text, JsonCol::Int, JsonCol::Int]);
    sqlx::query(&format!(
        "INSERT INTO flask_import_ids (kind, old_id, new_id) {select} ON CONFLICT DO NOTHING"
    ))
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// The first id after the highest one in `table`.
async fn next_id(db: &Db, table: &str) -> Result<i64, sqlx::Error> {
    let max: Option<i64> = sqlx::query_scalar(&format!("SELECT MAX(id) FROM {table}"))
        .fetch_one(db.pool())
        .await?;
    Ok(max.unwrap_or(0) + 1)
}

/// A one-line label as Gatehouse keeps them: trimmed, without control characters, at
/// most `max` characters. Returns it and whether it had to change.
fn clean_label(value: &str, max: usize) -> (String, bool) {
    let cleaned: String = value
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect();
    let cleaned = cleaned.trim().to_owned();
    let changed = cleaned != value.trim();
    (cleaned, changed)
}
