//! The old request log, as `access` entries of the activity log. Its messages carry
//! full URLs, and with them verification and password-reset tokens that never expired
//! in the old service: those are replaced by `[redacted]`.

use std::collections::HashMap;

use super::accounts::Carried;
use super::old::OldDb;
use super::report::{Report, Table};
use super::{next_id, record, Ctx, ImportError, BATCH};
use crate::db;
use crate::logs::store::{self as log_store, ImportedEntry};

pub async fn import(
    ctx: &mut Ctx<'_>,
    old: &mut OldDb,
    report: &mut Report,
    carried: &Carried,
) -> Result<(), ImportError> {
    let rows = old
        .rows(
            "log_entry",
            &[
                "id",
                "timestamp",
                "log_level",
                "message",
                "client_ip",
                "user_agent",
                "user_email",
            ],
            "id",
        )
        .await?;
    let mut table = Table::new("log_entry", rows.len());
    let now = db::now();
    let mut next = next_id(ctx.db, "activity_logs").await?;
    let users: HashMap<&str, i64> = carried
        .emails
        .iter()
        .filter_map(|(email, old)| ctx.id("user", *old).map(|id| (email.as_str(), id)))
        .collect();
    let mut entries = Vec::new();
    let mut olds = Vec::new();
    for row in &rows {
        let Some(old_id) = row.int(0) else { continue };
        if ctx.already("log_entry", old_id) {
            table.already += 1;
            continue;
        }
        let message = redact(row.text(3).unwrap_or(""));
        let (method, path) = request_of(&message);
        let email = row.text(6).map(str::to_owned);
        entries.push(ImportedEntry {
            id: next,
            created_at: row.time(1, time::UtcOffset::UTC).unwrap_or(now),
            level: match row.text(2).map(str::to_ascii_uppercase).as_deref() {
                Some("WARNING" | "WARN") => "WARNING",
                Some("ERROR" | "CRITICAL") => "ERROR",
                _ => "INFO",
            },
            user_id: email.as_deref().and_then(|e| users.get(e).copied()),
            user_email: email,
            client_ip: row.text(4).map(str::to_owned),
            user_agent: row.text(5).map(str::to_owned),
            method,
            path,
            details: serde_json::json!({ "imported_from": "flask", "flask_id": old_id })
                .to_string(),
            message,
        });
        olds.push((old_id, next));
        next += 1;
    }
    table.imported = entries.len();
    if !ctx.options.dry_run {
        let bar = ctx.bar("log_entry", entries.len());
        for (chunk, pairs) in entries.chunks(BATCH).zip(olds.chunks(BATCH)) {
            let mut tx = ctx.db.begin().await?;
            log_store::insert_imported(&mut tx, ctx.backend, chunk).await?;
            record(&mut tx, ctx.backend, "log_entry", pairs).await?;
            db::sync_id_sequence(&mut tx, ctx.backend, "activity_logs").await?;
            tx.commit().await?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish();
    }
    report.tables.push(table);
    Ok(())
}

/// The message with the token of every `/verify_email/…` and `/reset_password/…`
/// URL replaced.
fn redact(message: &str) -> String {
    let mut out = message.to_owned();
    for marker in ["/verify_email/", "/reset_password/"] {
        let mut from = 0;
        while let Some(at) = out[from..].find(marker) {
            let start = from + at + marker.len();
            let end = out[start..]
                .find(|c: char| c.is_whitespace() || c == '?' || c == '#')
                .map_or(out.len(), |e| start + e);
            out.replace_range(start..end, "[redacted]");
            from = start + "[redacted]".len();
        }
    }
    out
}

/// The method and path of `Before Request: GET http://host/path?q - …` messages.
fn request_of(message: &str) -> (Option<String>, Option<String>) {
    let rest = ["Before Request: ", "After Request: ", "Request: "]
        .iter()
        .find_map(|p| message.find(p).map(|at| &message[at + p.len()..]));
    let Some(rest) = rest else {
        return (None, None);
    };
    let mut words = rest.split_whitespace();
    let method = words.next().map(str::to_owned);
    let path = words.next().map(|url| {
        let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
        let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
        path.split('?').next().unwrap_or(path).to_owned()
    });
    (method, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_redacted_and_requests_read() {
        let m = "Before Request: GET http://localhost/verify_email/\"a@b.c\".aw15bg.0STu?x=1 - Client IP: 1.2.3.4 - User Agent: ua";
        let r = redact(m);
        assert!(!r.contains("aw15bg"), "{r}");
        assert!(r.contains("/verify_email/[redacted]?x=1"), "{r}");
        assert_eq!(
            request_of(&r),
            (Some("GET".into()), Some("/verify_email/[redacted]".into()))
        );
        assert_eq!(
            redact("POST http://h/reset_password/tok1 and /reset_password/tok2"),
            "POST http://h/reset_password/[redacted] and /reset_password/[redacted]"
        );
        assert_eq!(request_of("free text"), (None, None));
    }
}
