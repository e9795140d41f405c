//! Reading the activity log: `GET /logs` (paged JSON) and `GET /logs/export.csv`.
//!
//! Pagination: `page` is what the old client sends. A shallow page is walked from the
//! newest entry; a deep one (or any page of a time window ending in the past) is placed
//! by an exact count of the view that keeps the id of every thousandth match, and
//! walked from the nearest of those (see `store::page_at`), so any depth costs about
//! the same. Deep reading can also use the keyset cursor `before_id` (every answer
//! carries `next_before_id`), which walks the primary key index and costs the same at
//! row ten million as at row ten.
//!
//! Totals: `total` and `total_pages` are exact up to 10,000 matching entries and an
//! estimate past that (`total_estimated: true`), so that a page view never counts the
//! whole log (see `db::count`); except that a deep page by number counts its view
//! exactly, and this instance then answers that view's pages with the exact total for
//! a minute (see `store::Totals`).

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::store::{self, Filter, LogRow};
use super::Kind;
use crate::app::AppState;
use crate::auth::policy::Policy::{LoggedIn, Permission as Needs};
use crate::auth::policy::Routes;
use crate::auth::{Authenticated, CurrentUser};
use crate::error::{AppError, ErrorBody};
use crate::http::query::{before_id, page_param};
use crate::rbac::Permission;

pub fn routes() -> Routes {
    Routes::new()
        .api(LoggedIn, routes!(list))
        .api(Needs(Permission::AccessLogs), routes!(export_csv))
}

/// The listing's query, which the web UI's log page reads too. Every parameter is
/// optional; an empty one is as good as a missing one.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// The page, from 1 (by offset from the newest entry; a deep page first counts the
    /// view exactly, at most once a minute).
    /// Past 9223372036854775 it reads as that.
    #[param(value_type = Option<i64>, minimum = 1, example = 1)]
    page: Option<String>,
    /// Entries per page, 1 to 100 (default 10); more reads as 100.
    #[param(value_type = Option<i64>, minimum = 1, example = 10)]
    per_page: Option<String>,
    /// Keyset paging: only entries with a smaller id (an answer's `next_before_id`).
    /// `page` is then only checked.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub before_id: Option<String>,
    /// `INFO`, `WARNING` or `ERROR`, in any case.
    #[param(value_type = Option<String>, pattern = "^ *([Ii][Nn][Ff][Oo]|[Ww][Aa][Rr][Nn][Ii][Nn][Gg]|[Ee][Rr][Rr][Oo][Rr])? *$", example = "WARNING")]
    pub level: Option<String>,
    /// The user's email or id, at most 254 characters.
    #[param(value_type = Option<String>, max_length = 254, example = "ada@example.com")]
    pub user: Option<String>,
    /// Entries at or after this time: ISO 8601 (`2026-01-31T12:00:00Z`; without a zone,
    /// as a form's `2026-01-31T12:00`, read as UTC) or Unix seconds. The pattern lets
    /// through dates that do not exist (month 13): those are a 400.
    #[param(value_type = Option<String>, pattern = r"^ *(-?[0-9]{1,18}|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))? *$", example = "2026-01-31T12:00:00Z")]
    pub since: Option<String>,
    /// Entries at or before this time, written as `since` is.
    #[param(value_type = Option<String>, pattern = r"^ *(-?[0-9]{1,18}|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))? *$", example = "2026-02-01T00:00:00Z")]
    pub until: Option<String>,
    /// Text the message contains, case-insensitively, at most 200 characters.
    #[param(value_type = Option<String>, max_length = 200, example = "login failed")]
    pub q: Option<String>,
    /// `access`, `auth`, `admin` or `change`, in any case.
    #[param(value_type = Option<String>, pattern = "^ *([Aa][Cc][Cc][Ee][Ss][Ss]|[Aa][Uu][Tt][Hh]|[Aa][Dd][Mm][Ii][Nn]|[Cc][Hh][Aa][Nn][Gg][Ee])? *$", example = "auth")]
    pub kind: Option<String>,
    /// The client address, at most 64 characters.
    #[param(value_type = Option<String>, max_length = 64, example = "203.0.113.7")]
    pub ip: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A point in time given as ISO 8601 or as Unix seconds.
pub fn instant(name: &str, value: Option<&str>) -> Result<Option<i64>, AppError> {
    let Some(value) = value else { return Ok(None) };
    if let Ok(secs) = value.parse::<i64>() {
        return Ok(Some(secs));
    }
    // A form's `datetime-local` field sends `2026-01-31T12:00` (seconds optional) with
    // no zone: read as UTC, the zone every time on the pages is shown in.
    let zoned = match value.len() {
        16 if value.as_bytes().get(10) == Some(&b'T') => format!("{value}:00Z"),
        19 if value.as_bytes().get(10) == Some(&b'T') => format!("{value}Z"),
        _ => value.to_owned(),
    };
    time::OffsetDateTime::parse(&zoned, &time::format_description::well_known::Rfc3339)
        .map(|t| Some(t.unix_timestamp()))
        .map_err(|_| {
            AppError::invalid(format!(
                "{name} must be an ISO 8601 time such as 2026-01-31T12:00:00Z"
            ))
        })
}

/// The filter a caller asked for, narrowed to their own entries unless they hold
/// `access_logs`.
pub fn filter(caller: &Authenticated, query: &LogQuery) -> Result<Filter, AppError> {
    let level = match nonempty(&query.level).map(str::to_ascii_uppercase) {
        None => None,
        Some(l) if ["INFO", "WARNING", "ERROR"].contains(&l.as_str()) => Some(l),
        Some(_) => return Err(AppError::invalid("level must be INFO, WARNING or ERROR")),
    };
    let q = nonempty(&query.q).map(str::to_owned);
    if q.as_deref().is_some_and(|q| q.chars().count() > 200) {
        return Err(AppError::invalid("q must be at most 200 characters"));
    }
    let user = nonempty(&query.user).map(str::to_owned);
    if user.as_deref().is_some_and(|u| u.chars().count() > 254) {
        return Err(AppError::invalid("user must be at most 254 characters"));
    }
    let kind = match nonempty(&query.kind).map(str::to_ascii_lowercase) {
        None => None,
        Some(k) => Some(
            Kind::parse(&k)
                .ok_or_else(|| AppError::invalid("kind must be access, auth, admin or change"))?,
        ),
    };
    let ip = nonempty(&query.ip).map(str::to_owned);
    if ip.as_deref().is_some_and(|ip| ip.chars().count() > 64) {
        return Err(AppError::invalid("ip must be at most 64 characters"));
    }
    let own_only = !caller.access.has(Permission::AccessLogs);
    Ok(Filter {
        only_user_id: own_only.then_some(caller.user.id),
        user,
        level,
        since: instant("since", nonempty(&query.since))?,
        until: instant("until", nonempty(&query.until))?,
        q,
        kind,
        ip,
    })
}

/// One entry of the activity log.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "id": 4711,
    "timestamp": "2026-01-31T12:00:00Z",
    "log_level": "WARNING",
    "message": "login failed",
    "client_ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0",
    "user_email": "ada@example.com"
}))]
struct LogEntryView {
    id: i64,
    /// When it happened, ISO 8601 in UTC.
    timestamp: String,
    /// `INFO`, `WARNING` or `ERROR`.
    log_level: String,
    message: String,
    client_ip: Option<String>,
    user_agent: Option<String>,
    /// The account it concerns, if any.
    user_email: Option<String>,
}

impl From<&LogRow> for LogEntryView {
    fn from(row: &LogRow) -> Self {
        Self {
            id: row.id,
            timestamp: crate::db::iso8601(row.created_at),
            log_level: row.level.clone(),
            message: row.message.clone(),
            client_ip: row.client_ip.clone(),
            user_agent: row.user_agent.clone(),
            user_email: row.user_email.clone(),
        }
    }
}

/// A page of the activity log, newest first.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "logs": [{
        "id": 4711,
        "timestamp": "2026-01-31T12:00:00Z",
        "log_level": "WARNING",
        "message": "login failed",
        "client_ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0",
        "user_email": "ada@example.com"
    }],
    "total_pages": 1,
    "current_page": 1,
    "total": 1,
    "total_estimated": false,
    "next_before_id": null
}))]
struct LogPage {
    logs: Vec<LogEntryView>,
    total_pages: i64,
    /// The `page` served; `null` when paging by `before_id`.
    current_page: Option<i64>,
    /// Matching entries: exact up to 10,000, an estimate past that, except where a
    /// recent deep page by number (or a page of a time window ending in the past)
    /// counted them exactly.
    total: i64,
    /// Whether `total` (and so `total_pages`) is an estimate.
    total_estimated: bool,
    /// The `before_id` of the next page, when this one is full.
    next_before_id: Option<i64>,
}

/// The activity log
///
/// Newest first. A caller with `access_logs` sees every entry, others only their own.
/// `total` and `total_pages` are exact up to 10,000 matching entries and an estimate
/// past that (`total_estimated`). A `page` past the middle of a larger view, or deeper
/// than 20,000 entries, and any page of a time window (`until`) ending in the past,
/// counts the view exactly (and the same view's pages carry that exact total for a
/// minute after), so the last page is placed by the same `total_pages` the answer
/// gives.
#[utoipa::path(
    get,
    path = "/logs",
    tag = "logs",
    params(LogQuery),
    responses(
        (status = 200, description = "A page of entries", body = LogPage),
        (status = 400, description = "A paging parameter that is not a positive integer, an unknown `level` or `kind`, a `since` or `until` that is not a time, or a text filter over its limit; the message names the parameter", body = ErrorBody),
    )
)]
async fn list(
    State(state): State<AppState>,
    caller: CurrentUser,
    Query(query): Query<LogQuery>,
) -> Result<axum::Json<LogPage>, AppError> {
    let filter = filter(&caller, &query)?;
    let per_page = page_param("per_page", query.per_page.as_deref(), 10, 100)?;
    let page = page_param("page", query.page.as_deref(), 1, i64::MAX / 1000)?;
    let before_id = before_id(query.before_id.as_deref())?;
    let totals = state.activity.totals();
    let (total, rows) = match before_id {
        Some(before) => store::page_below(&state.db, totals, &filter, before, per_page).await?,
        None => {
            let offset = (page - 1) * per_page;
            store::page_at(&state.db, totals, &filter, offset, per_page).await?
        }
    };
    let total_pages = total.pages(per_page);
    let next_before_id = (rows.len() as i64 == per_page)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(axum::Json(LogPage {
        logs: rows.iter().map(LogEntryView::from).collect(),
        total_pages,
        current_page: before_id.is_none().then_some(page),
        total: total.value,
        total_estimated: !total.exact,
        next_before_id,
    }))
}

const CSV_HEADER: &str =
    "id,timestamp,level,kind,message,user_email,client_ip,user_agent,method,path,status,duration_ms\n";
const EXPORT_BATCH: i64 = 1000;

/// Quotes a CSV field, and defuses text a spreadsheet would run as a formula.
fn csv_field(value: &str) -> String {
    let defused = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    format!("\"{}\"", defused.replace('"', "\"\""))
}

fn csv_line(row: &LogRow) -> String {
    let opt = |v: &Option<String>| csv_field(v.as_deref().unwrap_or(""));
    let num = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{}\n",
        row.id,
        crate::db::iso8601(row.created_at),
        row.level,
        row.kind,
        csv_field(&row.message),
        opt(&row.user_email),
        opt(&row.client_ip),
        opt(&row.user_agent),
        opt(&row.method),
        opt(&row.path),
        num(row.status),
        num(row.duration_ms),
    )
}

/// The activity log as CSV
///
/// Every matching entry, newest first (from below `before_id` when given), with the
/// columns `id,timestamp,level,kind,message,user_email,client_ip,user_agent,method,path,
/// status,duration_ms`. Text a spreadsheet would run as a formula is prefixed with `'`.
/// The paging parameters are checked as the listing's are; `page` and `per_page` do not
/// limit the export.
#[utoipa::path(
    get,
    path = "/logs/export.csv",
    tag = "logs",
    params(LogQuery),
    responses(
        (status = 200, description = "The entries, streamed as an attachment (`gatehouse-logs.csv`)",
        content_type = "text/csv", body = String,
        example = "id,timestamp,level,kind,message,user_email,client_ip,user_agent,method,path,status,duration_ms\n4711,2026-01-31T12:00:00Z,WARNING,auth,\"login failed\",\"ada@example.com\",\"203.0.113.7\",\"Mozilla/5.0\",\"\",\"\",,\n"),
        (status = 400, description = "A parameter the listing would refuse (see `GET /logs`); the message names it", body = ErrorBody),
    )
)]
// Streams every matching entry, a keyset batch at a time, so an export of millions of
// rows holds one batch in memory.
async fn export_csv(
    State(state): State<AppState>,
    caller: CurrentUser,
    Query(query): Query<LogQuery>,
) -> Result<Response, AppError> {
    let filter = filter(&caller, &query)?;
    // The paging parameters follow the listing's rule; the export starts below
    // `before_id` when given and runs to the oldest entry.
    page_param("per_page", query.per_page.as_deref(), 10, 100)?;
    page_param("page", query.page.as_deref(), 1, i64::MAX / 1000)?;
    let start = before_id(query.before_id.as_deref())?.unwrap_or(i64::MAX);
    // Both reads come before the first byte, so a database that is down gives the
    // contract's 503, not a file cut short.
    let (above, start) = store::export_bounds(&state.db, &filter, start).await?;
    let first = store::page_between(&state.db, &filter, above, start, EXPORT_BATCH).await?;
    let db = state.db.clone();
    let stream = futures_util::stream::unfold(
        (Some(first), String::from(CSV_HEADER)),
        move |(batch, header)| {
            let db = db.clone();
            let filter = filter.clone();
            async move {
                let rows = batch?;
                if rows.is_empty() && header.is_empty() {
                    return None;
                }
                let mut chunk = header;
                for row in &rows {
                    chunk.push_str(&csv_line(row));
                }
                let next = match rows.last() {
                    Some(last) if rows.len() as i64 == EXPORT_BATCH => {
                        match store::page_between(&db, &filter, above, last.id, EXPORT_BATCH).await
                        {
                            Ok(rows) => Some(rows),
                            Err(e) => {
                                tracing::error!(error = %e, "log export cut short");
                                None
                            }
                        }
                    }
                    _ => None,
                };
                Some((Ok::<_, std::io::Error>(chunk), (next, String::new())))
            }
        },
    );
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"gatehouse-logs.csv\""),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_8601_or_a_forms_local_time_read_as_utc() {
        let at = |v: &str| instant("since", Some(v)).ok().flatten();
        assert_eq!(at("2026-01-31T12:00:00Z"), Some(1_769_860_800));
        assert_eq!(at("2026-01-31T13:00:00+01:00"), Some(1_769_860_800));
        assert_eq!(at("2026-01-31T12:00"), Some(1_769_860_800));
        assert_eq!(at("2026-01-31T12:00:30"), Some(1_769_860_830));
        assert_eq!(at("1769860800"), Some(1_769_860_800));
        assert_eq!(at("2026-01-31T12:00:00.123456789Z"), Some(1_769_860_800));
        assert_eq!(at("-5"), Some(-5));
        for bad in [
            "2026-01-31",
            "yesterday",
            "2026-01-31 12:00",
            "2026-13-31T12:00",
        ] {
            assert!(instant("since", Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "\"plain\"");
        assert_eq!(csv_field("a \"b\", c"), "\"a \"\"b\"\", c\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
        assert_eq!(csv_field("@cmd"), "\"'@cmd\"");
    }
}
