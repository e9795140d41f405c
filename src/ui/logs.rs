//! The activity log page: everyone reads their own entries, holders of `access_logs`
//! everybody's. The filters are a GET form, so a filtered view is an address to keep
//! or share; pages go back in time by keyset (`before_id`), which costs the same deep
//! in ten million entries as on the first page. The CSV link is the JSON API's
//! streamed export with the same filters.

use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use serde_json::Value;

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
use crate::logs::{filter, Kind, LogQuery};
use crate::rbac::Permission;

const PER_PAGE: i64 = 50;

pub fn routes() -> Routes {
    Routes::pages().get("/ui/logs", LoggedIn, logs_page)
}

struct Row {
    when: String,
    entry: LogRow,
    change: Option<Change>,
}

/// What an administrative change did, read from the before and after its entry holds.
struct Change {
    action: String,
    /// Whom or what it was done to, as field and value.
    target: Vec<(String, String)>,
    diff: Vec<Diff>,
}

/// One field before and after a change; `-` where it did not exist.
struct Diff {
    field: String,
    before: String,
    after: String,
    changed: bool,
}

/// Values longer than this are cut: the page shows a diff, not a dump.
const VALUE_MAX: usize = 120;

fn show(value: Option<&Value>) -> String {
    let text = match value {
        None | Some(Value::Null) => return "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    match text.char_indices().nth(VALUE_MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// The change an entry's details describe, when they have an action and a before or
/// after (what `record_change` writes); other details are not a change.
fn change(details: Option<&str>) -> Option<Change> {
    let details: Value = serde_json::from_str(details?).ok()?;
    let action = details.get("action")?.as_str()?.replace('_', " ");
    let target = match details.get("target") {
        Some(Value::Object(fields)) => fields
            .iter()
            .map(|(k, v)| (k.replace('_', " "), show(Some(v))))
            .collect(),
        _ => Vec::new(),
    };
    let before = details.get("before");
    let after = details.get("after");
    let mut fields: Vec<&String> = Vec::new();
    for side in [before, after].into_iter().flatten() {
        if let Value::Object(map) = side {
            for key in map.keys() {
                if !fields.contains(&key) {
                    fields.push(key);
                }
            }
        }
    }
    let field = |side: Option<&Value>, key: &str| match side {
        Some(Value::Object(map)) => map.get(key).cloned(),
        _ => None,
    };
    let diff = fields
        .into_iter()
        .map(|key| {
            let b = field(before, key);
            let a = field(after, key);
            Diff {
                field: key.replace('_', " "),
                changed: b != a,
                before: show(b.as_ref()),
                after: show(a.as_ref()),
            }
        })
        .collect();
    Some(Change {
        action,
        target,
        diff,
    })
}

/// A time from the address as the `datetime-local` field shows it (UTC), or as
/// typed when it is not a time.
fn local_time(value: Option<&str>) -> String {
    let value = value.unwrap_or_default();
    match filter_instant(value) {
        Some(at) => crate::db::iso8601(at).chars().take(19).collect(),
        None => value.to_owned(),
    }
}

fn filter_instant(value: &str) -> Option<i64> {
    crate::logs::instant("t", Some(value).filter(|v| !v.trim().is_empty()))
        .ok()
        .flatten()
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
    kinds: [Kind; 4],
    kind: String,
    since: String,
    until: String,
}

async fn logs_page(ctx: Ctx, Query(query): Query<LogQuery>) -> PageResult {
    let auth = caller(&ctx)?;
    let filter = filter(auth, &query)?;
    let before = before_id(query.before_id.as_deref())?;
    let (total, entries) = store::page_below(
        &ctx.state.db,
        ctx.state.activity.totals(),
        &filter,
        before.unwrap_or(i64::MAX),
        PER_PAGE,
    )
    .await
    .map_err(AppError::from)?;
    let filters = serde_urlencoded::to_string([
        ("user", query.user.as_deref().unwrap_or_default()),
        ("level", query.level.as_deref().unwrap_or_default()),
        ("q", query.q.as_deref().unwrap_or_default()),
        ("since", query.since.as_deref().unwrap_or_default()),
        ("until", query.until.as_deref().unwrap_or_default()),
        ("kind", query.kind.as_deref().unwrap_or_default()),
        ("ip", query.ip.as_deref().unwrap_or_default()),
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
            change: change(entry.details.as_deref()),
            entry,
        })
        .collect();
    let page = LogsPage {
        shell: Shell::new(&ctx, "Activity log"),
        everyone: auth.access.has(Permission::AccessLogs),
        kinds: Kind::ALL,
        kind: filter.kind.map(Kind::as_str).unwrap_or_default().to_owned(),
        since: local_time(query.since.as_deref()),
        until: local_time(query.until.as_deref()),
        query,
        total,
        rows,
        filters,
        older,
        first_page: before.is_none(),
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_shows_its_target_and_what_changed() {
        let details = r#"{"action":"disable_user","target":{"user_id":7,"username":"bob"},"before":{"disabled":false},"after":{"disabled":true}}"#;
        let c = change(Some(details)).unwrap();
        assert_eq!(c.action, "disable user");
        assert_eq!(
            c.target,
            vec![
                ("user id".to_owned(), "7".to_owned()),
                ("username".to_owned(), "bob".to_owned())
            ]
        );
        assert_eq!(c.diff.len(), 1);
        assert_eq!(c.diff[0].field, "disabled");
        assert_eq!(
            (c.diff[0].before.as_str(), c.diff[0].after.as_str()),
            ("false", "true")
        );
        assert!(c.diff[0].changed);
    }

    #[test]
    fn created_and_deleted_things_diff_against_nothing() {
        let created = r#"{"action":"create_role","target":{"name":"Ed"},"before":null,"after":{"name":"Ed"}}"#;
        let c = change(Some(created)).unwrap();
        assert_eq!(
            (c.diff[0].before.as_str(), c.diff[0].after.as_str()),
            ("-", "Ed")
        );
        let renamed = r#"{"action":"rename_role","before":{"name":"A","builtin":false},"after":{"name":"B","builtin":false}}"#;
        let c = change(Some(renamed)).unwrap();
        let changed: Vec<(&str, bool)> = c
            .diff
            .iter()
            .map(|d| (d.field.as_str(), d.changed))
            .collect();
        assert_eq!(changed, vec![("builtin", false), ("name", true)]);
        assert!(c.target.is_empty());
    }

    #[test]
    fn other_details_are_no_change_and_long_values_are_cut() {
        assert!(change(None).is_none());
        assert!(change(Some("not json")).is_none());
        assert!(change(Some(r#"{"username_or_email":"x"}"#)).is_none());
        let long = format!(
            r#"{{"action":"x","before":{{"a":"{}"}},"after":null}}"#,
            "é".repeat(500)
        );
        let c = change(Some(&long)).unwrap();
        assert_eq!(c.diff[0].before.chars().count(), VALUE_MAX + 1);
    }

    #[test]
    fn times_show_in_the_fields_format_in_utc() {
        assert_eq!(
            local_time(Some("2026-01-31T13:00:00+01:00")),
            "2026-01-31T12:00:00"
        );
        assert_eq!(local_time(Some("2026-01-31T12:00")), "2026-01-31T12:00:00");
        assert_eq!(local_time(Some("garbage")), "garbage");
        assert_eq!(local_time(None), "");
    }
}
