//! Boards, columns and tickets. The old positions were whatever clients sent (column
//! ids, empty strings, duplicates), and the old service showed rows in id order, so
//! positions are rebuilt dense (0..n-1) in id order within each parent.
//!
//! The SQL is here, one function per table, while the kanban store is being
//! rewritten; it belongs in `crate::kanban::store`.

use std::collections::HashMap;

use super::old::OldDb;
use super::report::{Outcome, Report, Table};
use super::{clean_label, next_id, record, Ctx, ImportError, BATCH};
use crate::db::{self, Backend, JsonCol};
use crate::kanban::validate::{DESCRIPTION_MAX, NAME_MAX, TITLE_MAX};

pub async fn import(
    ctx: &mut Ctx<'_>,
    old: &mut OldDb,
    report: &mut Report,
) -> Result<(), ImportError> {
    let now = db::now();

    let rows = old.rows("board", &["id", "name"], "id").await?;
    let mut table = Table::new("board", rows.len());
    let mut next = next_id(ctx.db, "boards").await?;
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
        boards.push((old_id, next, name));
        next += 1;
    }
    table.imported = boards.len();
    if !ctx.options.dry_run {
        let bar = ctx.bar("board", boards.len());
        for chunk in boards.chunks(BATCH) {
            let mut tx = ctx.db.begin().await?;
            insert_boards(&mut tx, ctx.backend, chunk, now).await?;
            let pairs: Vec<(i64, i64)> = chunk.iter().map(|(o, n, _)| (*o, *n)).collect();
            record(&mut tx, ctx.backend, "board", &pairs).await?;
            db::sync_id_sequence(&mut tx, ctx.backend, "boards").await?;
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
    let mut next = next_id(ctx.db, "board_columns").await?;
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
        columns.push(NewColumn {
            old_id,
            id: next,
            board_id: board,
            name,
            position,
        });
        next += 1;
    }
    table.imported = columns.len();
    if !ctx.options.dry_run {
        let bar = ctx.bar("column", columns.len());
        for chunk in columns.chunks(BATCH) {
            let mut tx = ctx.db.begin().await?;
            insert_columns(&mut tx, ctx.backend, chunk, now).await?;
            let pairs: Vec<(i64, i64)> = chunk.iter().map(|c| (c.old_id, c.id)).collect();
            record(&mut tx, ctx.backend, "column", &pairs).await?;
            db::sync_id_sequence(&mut tx, ctx.backend, "board_columns").await?;
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
    let mut next = next_id(ctx.db, "tickets").await?;
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
        tickets.push(ticket(
            old_id,
            next,
            column,
            order,
            title,
            description,
            created_at,
        ));
        next += 1;
    }
    table.imported = tickets.len();
    if !ctx.options.dry_run {
        let bar = ctx.bar("ticket", tickets.len());
        for chunk in tickets.chunks(BATCH) {
            let mut tx = ctx.db.begin().await?;
            insert_tickets(&mut tx, ctx.backend, chunk, now).await?;
            let pairs: Vec<(i64, i64)> = chunk.iter().map(|t| (t.old_id, t.id)).collect();
            record(&mut tx, ctx.backend, "ticket", &pairs).await?;
            db::sync_id_sequence(&mut tx, ctx.backend, "tickets").await?;
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

struct NewColumn {
    old_id: i64,
    id: i64,
    board_id: i64,
    name: String,
    position: i64,
}

/// One ticket as the current schema keeps it: its column and its dense place there
/// (`sort_order`, which the API calls `order`).
/// The one place that knows the ticket layout, for when tickets change shape.
struct NewTicket {
    old_id: i64,
    id: i64,
    column_id: i64,
    sort_order: i64,
    title: String,
    description: String,
    created_at: i64,
}

fn ticket(
    old_id: i64,
    id: i64,
    column_id: i64,
    order: i64,
    title: String,
    description: String,
    created_at: i64,
) -> NewTicket {
    NewTicket {
        old_id,
        id,
        column_id,
        sort_order: order,
        title,
        description,
        created_at,
    }
}

async fn insert_boards(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    boards: &[(i64, i64, String)],
    now: i64,
) -> Result<(), sqlx::Error> {
    let rows: Vec<serde_json::Value> = boards
        .iter()
        .map(|(_, id, name)| serde_json::json!([id, name, now, now]))
        .collect();
    let select = db::json_rows(
        backend,
        &[JsonCol::Int, JsonCol::Text, JsonCol::Int, JsonCol::Int],
    );
    sqlx::query(&format!(
        "INSERT INTO boards (id, name, created_at, updated_at) {select}"
    ))
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_columns(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    columns: &[NewColumn],
    now: i64,
) -> Result<(), sqlx::Error> {
    use JsonCol::{Int, Text};
    let rows: Vec<serde_json::Value> = columns
        .iter()
        .map(|c| serde_json::json!([c.id, c.board_id, c.name, c.position, now, now]))
        .collect();
    let select = db::json_rows(backend, &[Int, Int, Text, Int, Int, Int]);
    sqlx::query(&format!(
        "INSERT INTO board_columns (id, board_id, name, position, created_at, updated_at) {select}"
    ))
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_tickets(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    tickets: &[NewTicket],
    now: i64,
) -> Result<(), sqlx::Error> {
    use JsonCol::{Int, Text};
    let rows: Vec<serde_json::Value> = tickets
        .iter()
        .map(|t| {
            serde_json::json!([
                t.id,
                t.column_id,
                t.title,
                t.description,
                t.sort_order,
                t.created_at,
                now
            ])
        })
        .collect();
    let select = db::json_rows(backend, &[Int, Int, Text, Text, Int, Int, Int]);
    sqlx::query(&format!(
        "INSERT INTO tickets (id, column_id, title, description, sort_order, created_at, updated_at) {select}"
    ))
    .bind(serde_json::Value::Array(rows).to_string())
    .execute(conn)
    .await?;
    Ok(())
}
