//! Boards, columns and tickets. The old positions were whatever clients sent (column
//! ids, empty strings, duplicates), and the old service showed rows in id order, so
//! positions are rebuilt dense (0..n-1) in id order within each parent.
//!
//! The SQL is the kanban store's (`insert_imported_*`), one statement per table and
//! batch.

use std::collections::HashMap;

use super::old::OldDb;
use super::report::{Outcome, Report, Table};
use super::{clean_label, record, Ctx, ImportError, BATCH};
use crate::db;
use crate::error::AppError;
use crate::kanban::store::{
    self as kanban_store, ImportedBoard, ImportedColumn, ImportedTicket, StoreError,
};
use crate::kanban::validate::{DESCRIPTION_MAX, NAME_MAX, TITLE_MAX};

fn store_failed(e: StoreError) -> ImportError {
    ImportError::Target(AppError::from(e))
}

pub async fn import(
    ctx: &mut Ctx<'_>,
    old: &mut OldDb,
    report: &mut Report,
) -> Result<(), ImportError> {
    let now = db::now();
    let free = kanban_store::free_ids(ctx.db).await.map_err(store_failed)?;

    let rows = old.rows("board", &["id", "name"], "id").await?;
    let mut table = Table::new("board", rows.len());
    let mut next = free.board;
    let mut boards = Vec::new();
    for row in &rows {
        let Some(old_id) = row.int(0) else { continue };
        if ctx.already("board", old_id) {
            table.already += 1;
            continue;
        }
        let name = label_or(
            row.text(1),
            NAME_MAX,
            "Untitled board",
            old_id,
            "board",
            &mut table,
        );
        ctx.plan("board", old_id, next);
        boards.push((old_id, ImportedBoard { id: next, name }));
        next += 1;
    }
    table.imported = boards.len();
    if !ctx.options.dry_run {
        let bar = ctx.bar("board", boards.len());
        for chunk in boards.chunks(BATCH) {
            let mut tx = ctx.db.begin().await?;
            let rows = chunk.iter().map(|(_, b)| b);
            kanban_store::insert_imported_boards(&mut tx, ctx.backend, rows, now)
                .await
                .map_err(store_failed)?;
            let pairs: Vec<(i64, i64)> = chunk.iter().map(|(o, b)| (*o, b.id)).collect();
            record(&mut tx, ctx.backend, "board", &pairs).await?;
            tx.commit().await?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish();
    }
    report.tables.push(table);

    let rows = old
        .rows("column", &["id", "name", "board_id"], "id")
        .await?;
    let mut table = Table::new("column", rows.len());
    let mut next = free.column;
    let mut columns = Vec::new();
    let mut per_board: HashMap<i64, i64> = HashMap::new();
    for row in &rows {
        let Some(old_id) = row.int(0) else { continue };
        let label = format!("column {old_id}");
        let Some(board) = row.int(2).and_then(|b| ctx.id("board", b)) else {
            table.note(
                Outcome::Skipped,
                label,
                format!("its board {} does not exist", row.text(2).unwrap_or("NULL")),
            );
            continue;
        };
        let slot = per_board.entry(board).or_insert(0);
        let position = *slot;
        *slot += 1;
        if ctx.already("column", old_id) {
            table.already += 1;
            continue;
        }
        let name = label_or(
            row.text(1),
            NAME_MAX,
            "Untitled column",
            old_id,
            "column",
            &mut table,
        );
        ctx.plan("column", old_id, next);
        columns.push((
            old_id,
            ImportedColumn {
                id: next,
                board_id: board,
                name,
                position,
            },
        ));
        next += 1;
    }
    table.imported = columns.len();
    if !ctx.options.dry_run {
        let bar = ctx.bar("column", columns.len());
        for chunk in columns.chunks(BATCH) {
            let mut tx = ctx.db.begin().await?;
            let rows = chunk.iter().map(|(_, c)| c);
            kanban_store::insert_imported_columns(&mut tx, ctx.backend, rows, now)
                .await
                .map_err(store_failed)?;
            let pairs: Vec<(i64, i64)> = chunk.iter().map(|(o, c)| (*o, c.id)).collect();
            record(&mut tx, ctx.backend, "column", &pairs).await?;
            tx.commit().await?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish();
    }
    report.tables.push(table);

    let rows = old
        .rows(
            "ticket",
            &["id", "title", "description", "column_id", "created_at"],
            "id",
        )
        .await?;
    let mut table = Table::new("ticket", rows.len());
    let mut next = free.ticket;
    let mut tickets = Vec::new();
    let mut per_column: HashMap<i64, i64> = HashMap::new();
    for row in &rows {
        let Some(old_id) = row.int(0) else { continue };
        let label = format!("ticket {old_id}");
        let Some(column) = row.int(3).and_then(|c| ctx.id("column", c)) else {
            table.note(
                Outcome::Skipped,
                label,
                format!(
                    "its column {} does not exist",
                    row.text(3).unwrap_or("NULL")
                ),
            );
            continue;
        };
        let slot = per_column.entry(column).or_insert(0);
        let order = *slot;
        *slot += 1;
        if ctx.already("ticket", old_id) {
            table.already += 1;
            continue;
        }
        let title = label_or(
            row.text(1),
            TITLE_MAX,
            "Untitled ticket",
            old_id,
            "ticket",
            &mut table,
        );
        let description: String = row
            .text(2)
            .unwrap_or("")
            .chars()
            .take(DESCRIPTION_MAX)
            .collect();
        if description.chars().count() < row.text(2).unwrap_or("").chars().count() {
            table.note(
                Outcome::Changed,
                label,
                format!("description cut to {DESCRIPTION_MAX} characters"),
            );
        }
        let created_at = row.time(4, time::UtcOffset::UTC).unwrap_or(now);
        ctx.plan("ticket", old_id, next);
        tickets.push((
            old_id,
            ImportedTicket {
                id: next,
                column_id: column,
                order,
                title,
                description,
                created_at,
            },
        ));
        next += 1;
    }
    table.imported = tickets.len();
    if !ctx.options.dry_run {
        let bar = ctx.bar("ticket", tickets.len());
        for chunk in tickets.chunks(BATCH) {
            let mut tx = ctx.db.begin().await?;
            let rows = chunk.iter().map(|(_, t)| t);
            kanban_store::insert_imported_tickets(&mut tx, ctx.backend, rows, now)
                .await
                .map_err(store_failed)?;
            let pairs: Vec<(i64, i64)> = chunk.iter().map(|(o, t)| (*o, t.id)).collect();
            record(&mut tx, ctx.backend, "ticket", &pairs).await?;
            tx.commit().await?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish();
    }
    report.tables.push(table);
    Ok(())
}

/// The cleaned label, or `fallback` when nothing is left of it; noted either way.
fn label_or(
    value: Option<&str>,
    max: usize,
    fallback: &str,
    old_id: i64,
    what: &str,
    table: &mut Table,
) -> String {
    let (name, changed) = clean_label(value.unwrap_or(""), max);
    if name.is_empty() {
        table.note(
            Outcome::Changed,
            format!("{what} {old_id}"),
            format!("no name: now {fallback:?}"),
        );
        return fallback.to_owned();
    }
    if changed {
        table.note(
            Outcome::Changed,
            format!("{what} {old_id}"),
            format!("name cut to {max} characters without control characters"),
        );
    }
    name
}
