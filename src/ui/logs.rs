//! The activity log page: everyone reads their own entries, holders of `access_logs`
//! everybody's. The filters are a GET form, so a filtered view is an address to keep
//! or share; pages go back in time by keyset (`before_id`), which costs the same deep
//! in ten million entries as on the first page. The CSV link is the JSON API's
//! streamed export with the same filters.

use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;

use super::me::when;
use super::page::Shell;
use super::users::caller;
use super::{Ctx, PageResult};
use crate::auth::policy::Policy::LoggedIn;
use crate::auth::policy::Routes;
use crate::db::count::Total;
use crate::error::AppError;
use crate::http::query::before_id;
use crate::logs::store::{self, LogRow};
use crate::logs::{filter, LogQuery};
use crate::rbac::Permission;

const PER_PAGE: i64 = 50;

pub fn routes() -> Routes {
    Routes::pages().get("/ui/logs", LoggedIn, logs_page)
}

struct Row {
    when: String,
    entry: LogRow,
}

#[derive(Template)]
#[template(path = "ui/logs.html")]
struct LogsPage {
    shell: Shell,
    query: LogQuery,
    everyone: bool,
    total: Total,
    rows: Vec<Row>,
    /// This view's filters as a query string, for the next page and the export.
    filters: String,
    older: Option<String>,
    first_page: bool,
}

async fn logs_page(ctx: Ctx, Query(query): Query<LogQuery>) -> PageResult {
    let auth = caller(&ctx)?;
    let filter = filter(auth, &query)?;
    let before = before_id(query.before_id.as_deref())?;
    let total = store::count(&ctx.state.db, &filter)
        .await
        .map_err(AppError::from)?;
    let entries = store::page_before(&ctx.state.db, &filter, before.unwrap_or(i64::MAX), PER_PAGE)
        .await
        .map_err(AppError::from)?;
    let filters = serde_urlencoded::to_string([
        ("user", query.user.as_deref().unwrap_or_default()),
        ("level", query.level.as_deref().unwrap_or_default()),
        ("q", query.q.as_deref().unwrap_or_default()),
        ("since", query.since.as_deref().unwrap_or_default()),
        ("until", query.until.as_deref().unwrap_or_default()),
    ])
    .unwrap_or_default();
    let older = (entries.len() as i64 == PER_PAGE)
        .then(|| {
            entries
                .last()
                .map(|r| format!("/ui/logs?{filters}&before_id={}", r.id))
        })
        .flatten();
    let rows = entries
        .into_iter()
        .map(|entry| Row {
            when: when(entry.created_at),
            entry,
        })
        .collect();
    let page = LogsPage {
        shell: Shell::new(&ctx, "Activity log"),
        everyone: auth.access.has(Permission::AccessLogs),
        query,
        total,
        rows,
        filters,
        older,
        first_page: before.is_none(),
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}
