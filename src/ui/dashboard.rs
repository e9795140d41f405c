//! The dashboard (`/ui/`): everyone's own recent sign-ins, failed attempts and devices;
//! for holders of `access_logs`, the service's figures over the last 30 days with
//! charts. Every number links to the activity log filtered to exactly what it counts.
//! The figures come from grouped queries in the logs and accounts stores, each a range
//! of an index (migration 0013), so they cost the same at ten million log entries.

use askama::Template;
use axum::http::StatusCode;

use super::chart::{Bar, BarChart};
use super::me::{device_name, when};
use super::page::Shell;
use super::users::caller;
use super::{Ctx, PageResult};
use crate::accounts::{service, store as accounts};
use crate::auth::session;
use crate::auth::Authenticated;
use crate::db;
use crate::error::AppError;
use crate::logs::store::{self as logs, Filter, FAILED_SIGN_IN, SIGN_IN};
use crate::logs::Kind;
use crate::rbac::Permission;

/// The charts' span, in days, today included.
const DAYS: i64 = 30;
const DAY: i64 = 86_400;
/// How many of your own recent sign-in events the dashboard lists.
const RECENT: i64 = 8;

/// The activity log's address for these filters.
fn log_link(params: &[(&str, &str)]) -> String {
    format!(
        "/ui/logs?{}",
        serde_urlencoded::to_string(params).unwrap_or_default()
    )
}

/// `2026-11-30` for a day number since the epoch.
fn day_name(day: i64) -> String {
    db::iso8601(day * DAY).chars().take(10).collect()
}

/// The 30 days ending today as bars, with zero for days missing from `counts`; each
/// bar leads to that day's entries in the log.
fn daily_bars(today: i64, counts: &[(i64, i64)], q: &str) -> Vec<Bar> {
    (today - DAYS + 1..=today)
        .map(|day| {
            let name = day_name(day);
            let since = format!("{name}T00:00:00Z");
            let until = format!("{name}T23:59:59Z");
            Bar {
                short: name.get(5..).unwrap_or_default().to_owned(),
                value: counts
                    .iter()
                    .find(|(d, _)| *d == day)
                    .map_or(0, |(_, n)| *n),
                href: log_link(&[
                    ("kind", "auth"),
                    ("q", q),
                    ("since", &since),
                    ("until", &until),
                ]),
                label: name,
            }
        })
        .collect()
}

/// One of your recent sign-in events.
struct Recent {
    when: String,
    message: String,
    failed: bool,
    address: String,
    device: String,
}

struct Device {
    name: String,
    address: String,
    last_used: String,
    current: bool,
}

/// A figure with the log view that shows what it counts.
struct Figure {
    label: &'static str,
    value: String,
    href: String,
    note: String,
}

struct FailingAddress {
    address: String,
    count: i64,
    href: String,
}

/// What holders of `access_logs` see.
struct Service {
    figures: Vec<Figure>,
    charts: Vec<BarChart>,
    failing: Vec<FailingAddress>,
    failing_href: String,
}

#[derive(Template)]
#[template(path = "ui/dashboard.html")]
struct DashboardPage<'a> {
    shell: Shell,
    auth: &'a Authenticated,
    recent: Vec<Recent>,
    recent_href: String,
    failed: i64,
    failed_href: String,
    devices: Vec<Device>,
    service: Option<Service>,
}

pub(super) async fn dashboard(ctx: Ctx) -> PageResult {
    let auth = caller(&ctx)?;
    let now = db::now();
    let today = now / DAY;
    let since = (today - DAYS + 1) * DAY;
    let since_iso = db::iso8601(since);
    let mine = Filter {
        only_user_id: Some(auth.user.id),
        kind: Some(Kind::Auth),
        ..Filter::default()
    };
    let recent = logs::page_before(&ctx.state.db, &mine, i64::MAX, RECENT)
        .await
        .map_err(AppError::from)?
        .into_iter()
        .map(|r| Recent {
            when: when(r.created_at),
            failed: r.level != "INFO",
            device: device_name(r.user_agent.as_deref()),
            address: r.client_ip.unwrap_or_default(),
            message: r.message,
        })
        .collect();
    let my_failures = Filter {
        q: Some("login failed".to_owned()),
        since: Some(since),
        ..mine
    };
    // Exact up to the count's cap, estimated past it: either way "many".
    let failed = logs::count(&ctx.state.db, &my_failures)
        .await
        .map_err(AppError::from)?
        .value;
    let devices = service::sessions(&ctx.state, auth)
        .await?
        .into_iter()
        .map(|s| Device {
            name: device_name(s.user_agent.as_deref()),
            address: s.ip.unwrap_or_else(|| "unknown".to_owned()),
            last_used: when(s.last_seen_at),
            current: s.id == auth.session.id,
        })
        .collect();
    let service = if auth.access.has(Permission::AccessLogs) {
        Some(service_figures(&ctx, now, today, &since_iso).await?)
    } else {
        None
    };
    let page = DashboardPage {
        shell: Shell::new(&ctx, "Dashboard"),
        auth,
        recent,
        recent_href: log_link(&[("kind", "auth")]),
        failed,
        failed_href: log_link(&[
            ("kind", "auth"),
            ("q", "login failed"),
            ("since", &since_iso),
        ]),
        devices,
        service,
    };
    Ok(ctx.render(StatusCode::OK, page.render()?))
}

async fn service_figures(
    ctx: &Ctx,
    now: i64,
    today: i64,
    since_iso: &str,
) -> Result<Service, AppError> {
    let db = &ctx.state.db;
    let since = (today - DAYS + 1) * DAY;
    let sign_ins = logs::auth_events_per_day(db, SIGN_IN, since).await?;
    let failures = logs::auth_events_per_day(db, FAILED_SIGN_IN, since).await?;
    let created = accounts::created_per_day(db, since).await?;
    let idle = session::secs(ctx.state.config.session_idle_timeout);
    let lifetime = session::secs(ctx.state.config.session_lifetime);
    let counts = accounts::figures(db, idle).await?;
    let failing = logs::top_addresses(db, FAILED_SIGN_IN, since, 5)
        .await?
        .into_iter()
        .map(|(address, count)| FailingAddress {
            href: log_link(&[
                ("kind", "auth"),
                ("q", "login failed"),
                ("ip", &address),
                ("since", since_iso),
            ]),
            address,
            count,
        })
        .collect();
    let total = |rows: &[(i64, i64)]| rows.iter().map(|(_, n)| n).sum::<i64>();
    let last_lifetime = db::iso8601(now - lifetime);
    let figures = vec![
        Figure {
            label: "Sign-ins",
            value: total(&sign_ins).to_string(),
            href: log_link(&[("kind", "auth"), ("q", "login ok"), ("since", since_iso)]),
            note: "last 30 days".to_owned(),
        },
        Figure {
            label: "Failed sign-ins",
            value: total(&failures).to_string(),
            href: log_link(&[
                ("kind", "auth"),
                ("q", "login failed"),
                ("since", since_iso),
            ]),
            note: "last 30 days".to_owned(),
        },
        Figure {
            label: "New accounts",
            value: total(&created).to_string(),
            href: log_link(&[
                ("kind", "auth"),
                ("q", "account created"),
                ("since", since_iso),
            ]),
            note: "last 30 days".to_owned(),
        },
        Figure {
            label: "Active sessions",
            value: counts.live_sessions.to_string(),
            href: log_link(&[
                ("kind", "auth"),
                ("q", "login ok"),
                ("since", &last_lifetime),
            ]),
            note: "the log shows the sign-ins that started them".to_owned(),
        },
        Figure {
            label: "Two-factor on",
            value: format!("{} of {}", counts.twofa_on, counts.accounts),
            href: log_link(&[("kind", "auth"), ("q", "2FA enabled")]),
            note: "accounts".to_owned(),
        },
    ];
    let charts = vec![
        BarChart::new(
            "chart-sign-ins",
            "Sign-ins per day",
            "Sign-ins in the last 30 days",
            "",
            daily_bars(today, &sign_ins, "login ok"),
        ),
        BarChart::new(
            "chart-failures",
            "Failed sign-ins per day",
            "Failed sign-ins in the last 30 days",
            "bar-danger",
            daily_bars(today, &failures, "login failed"),
        ),
        BarChart::new(
            "chart-accounts",
            "New accounts per day",
            "New accounts in the last 30 days",
            "bar-ok",
            daily_bars(today, &created, "account created"),
        ),
    ];
    Ok(Service {
        figures,
        charts,
        failing,
        failing_href: log_link(&[
            ("kind", "auth"),
            ("q", "login failed"),
            ("since", since_iso),
        ]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_days_end_today_and_missing_days_are_zero() {
        let today = 20_000;
        let bars = daily_bars(today, &[(today, 4), (today - 29, 2), (today - 30, 9)], "q");
        assert_eq!(bars.len(), 30);
        assert_eq!(bars[0].value, 2, "the oldest day is 29 days ago");
        assert_eq!(bars[29].value, 4);
        assert_eq!(bars.iter().map(|b| b.value).sum::<i64>(), 6);
        assert_eq!(bars[29].label, day_name(today));
        assert_eq!(day_name(20_000), "2024-10-04");
        assert_eq!(bars[29].short, "10-04");
        assert_eq!(
            bars[29].href,
            "/ui/logs?kind=auth&q=q&since=2024-10-04T00%3A00%3A00Z&until=2024-10-04T23%3A59%3A59Z"
        );
    }
}
