//! The background task that empties the outbox.
//!
//! It leases one due message at a time (`locked_until`), hands it to the configured
//! backend and then deletes it, or on failure schedules the next attempt after an
//! exponentially growing delay. A crash mid-delivery only lets the lease lapse, so
//! delivery is at least once, never zero times; each message's `Message-ID` comes from
//! its outbox row, so a receiver can drop the copy a retry sends.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use sqlx::Row;
use tokio::sync::watch;

use super::Mailer;
use crate::config::{MailBackend, MailConfig};
use crate::db::{self, Db};

/// How long one delivery may hold its message before another sender may take it.
const LEASE_SECS: i64 = 120;
/// How often the outbox is looked at when nothing wakes the sender.
const POLL: Duration = Duration::from_secs(5);
/// How long delivery may go on after shutdown was asked for.
const FLUSH_LIMIT: Duration = Duration::from_secs(10);

struct Queued {
    id: i64,
    to: String,
    subject: String,
    text: String,
    html: String,
    link: Option<String>,
    attempts: i64,
    created_at: i64,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(PathBuf),
    Log,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("invalid address: {0}")]
    Address(String),
    #[error("building the message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("smtp: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("writing the message file: {0}")]
    File(#[from] std::io::Error),
}

impl Transport {
    fn new(config: &MailConfig) -> Result<Self, SendError> {
        Ok(match config.backend {
            MailBackend::Log => Self::Log,
            MailBackend::File => Self::File(config.outbox_dir.clone()),
            MailBackend::Smtp => {
                let server = config.server.as_deref().unwrap_or("localhost");
                let mut builder = if config.use_ssl {
                    AsyncSmtpTransport::<Tokio1Executor>::relay(server)?
                } else if config.use_tls {
                    AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(server)?
                } else {
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server)
                };
                if let Some(port) = config.port {
                    builder = builder.port(port);
                }
                if let (Some(user), Some(password)) = (&config.username, &config.password) {
                    builder = builder.credentials(Credentials::new(
                        user.clone(),
                        password.expose_secret().to_owned(),
                    ));
                }
                Self::Smtp(builder.timeout(Some(Duration::from_secs(20))).build())
            }
        })
    }

    async fn deliver(&self, sender: &Mailbox, mail: &Queued) -> Result<(), SendError> {
        match self {
            Self::Log => {
                tracing::info!(to = %mail.to, subject = %mail.subject, body = %mail.text, "email (log backend)");
                Ok(())
            }
            Self::File(dir) => {
                let message = build(sender, mail)?;
                tokio::fs::create_dir_all(dir).await?;
                let name = format!("{}-{}.eml", db::now(), mail.id);
                let path = dir.join(&name);
                // Written beside the folder, then renamed into it: whoever watches the
                // outbox never reads a message half written.
                let staging = dir.with_extension("partial");
                tokio::fs::create_dir_all(&staging).await?;
                let staged = staging.join(&name);
                tokio::fs::write(&staged, message.formatted()).await?;
                tokio::fs::rename(&staged, &path).await?;
                tracing::info!(
                    to = %mail.to,
                    subject = %mail.subject,
                    path = %path.display(),
                    link = mail.link.as_deref().unwrap_or(""),
                    "email written (file backend)"
                );
                Ok(())
            }
            Self::Smtp(transport) => {
                transport.send(build(sender, mail)?).await?;
                Ok(())
            }
        }
    }
}

fn build(sender: &Mailbox, mail: &Queued) -> Result<Message, SendError> {
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|_| SendError::Address(mail.to.clone()))?;
    Ok(Message::builder()
        .message_id(Some(message_id(sender, mail)))
        .from(sender.clone())
        .to(to)
        .subject(&mail.subject)
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(mail.text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(mail.html.clone()),
                ),
        )?)
}

/// The same `Message-ID` on every attempt to deliver one outbox row, so that a
/// receiver can drop the copy a retry sends after a crash between the sending and the
/// deleting (delivery is at least once). The row id alone is not unique over time (a
/// delivered row is deleted, and SQLite may reuse its id), so its creation time is in
/// it too; the domain is the sender's.
fn message_id(sender: &Mailbox, mail: &Queued) -> String {
    format!(
        "<outbox-{}-{}@{}>",
        mail.id,
        mail.created_at,
        sender.email.domain()
    )
}

/// The delay before attempt `attempts + 1`: the base doubled per failure, capped.
fn backoff(config: &MailConfig, attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    config
        .retry_base
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(config.retry_max)
}

async fn lease_next(db: &Db) -> Result<Option<Queued>, sqlx::Error> {
    let now = db::now();
    // The inner SELECT picks a candidate; the outer condition repeats the lease test
    // so that two senders racing for one row cannot both win it. On PostgreSQL the
    // candidate is also locked, skipping rows another sender is taking: without that,
    // two instances draining together picked the same row, the loser's UPDATE matched
    // nothing and its pass ended as if the outbox were empty, leaving the rest of a
    // burst to the next poll. SQLite runs the statement under its one writer lock, so
    // no two senders ever pick at once there.
    let skip_locked = match db.backend() {
        db::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        db::Backend::Sqlite => "",
    };
    let row = sqlx::query(&format!(
        "UPDATE mail_outbox SET locked_until = $2, attempts = attempts + 1 \
         WHERE id = (SELECT id FROM mail_outbox WHERE sent_at IS NULL AND next_attempt_at <= $1 \
                     AND (locked_until IS NULL OR locked_until <= $1) ORDER BY id LIMIT 1{skip_locked}) \
         AND (locked_until IS NULL OR locked_until <= $1) \
         RETURNING id, recipient, subject, text_body, html_body, link, attempts, created_at"
    ))
    .bind(now)
    .bind(now + LEASE_SECS)
    .fetch_optional(db.writer())
    .await?;
    row.map(|r| {
        Ok(Queued {
            id: r.try_get(0)?,
            to: r.try_get(1)?,
            subject: r.try_get(2)?,
            text: r.try_get(3)?,
            html: r.try_get(4)?,
            link: r.try_get(5)?,
            attempts: r.try_get(6)?,
            created_at: r.try_get(7)?,
        })
    })
    .transpose()
}

/// Messages waiting for delivery.
pub async fn queue_depth(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NULL")
        .fetch_one(db.pool())
        .await
}

struct Sender {
    db: Db,
    config: MailConfig,
    from: Mailbox,
    transport: Transport,
}

impl Sender {
    /// Delivers every due message; returns when none is left or the database fails.
    async fn drain(&self) {
        loop {
            let mail = match lease_next(&self.db).await {
                Ok(Some(mail)) => mail,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "mail outbox unavailable");
                    return;
                }
            };
            let outcome = self.transport.deliver(&self.from, &mail).await;
            let recorded = match &outcome {
                Ok(()) => {
                    // Delivered mail is deleted: the outbox holds live tokens in
                    // clear text and should keep them no longer than needed.
                    sqlx::query("DELETE FROM mail_outbox WHERE id = $1")
                        .bind(mail.id)
                        .execute(self.db.writer())
                        .await
                }
                Err(e) => {
                    let delay = backoff(&self.config, mail.attempts);
                    tracing::warn!(
                        id = mail.id,
                        attempts = mail.attempts,
                        retry_in_secs = delay.as_secs(),
                        error = %e,
                        "email delivery failed; will retry"
                    );
                    sqlx::query(
                        "UPDATE mail_outbox SET locked_until = NULL, next_attempt_at = $1, \
                         last_error = $2 WHERE id = $3",
                    )
                    .bind(db::now() + crate::auth::session::secs(delay).max(1))
                    .bind(e.to_string())
                    .bind(mail.id)
                    .execute(self.db.writer())
                    .await
                }
            };
            if let Err(e) = recorded {
                tracing::warn!(error = %e, id = mail.id, "recording a delivery outcome failed; the lease will lapse");
                return;
            }
            if outcome.is_err() {
                // A failing server fails the next message too: wait for the backoff.
                return;
            }
        }
    }
}

/// Runs the sender until `shutdown` turns true, then delivers what is due for at most
/// a few seconds more and returns.
pub async fn run(
    db: Db,
    config: MailConfig,
    mailer: Mailer,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SendError> {
    let from: Mailbox = config
        .sender
        .parse()
        .map_err(|_| SendError::Address(config.sender.clone()))?;
    let transport = Transport::new(&config)?;
    let sender = Sender {
        db,
        config,
        from,
        transport,
    };
    loop {
        let answered = mailer.pass_begins();
        sender.drain().await;
        mailer.pass_done(answered);
        // A failed message's retry is at least a second away; polling covers it, and
        // mail queued by other instances.
        tokio::select! {
            _ = mailer.notified() => {}
            _ = tokio::time::sleep(POLL.min(sender.config.retry_base)) => {}
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    if tokio::time::timeout(FLUSH_LIMIT, sender.drain())
        .await
        .is_err()
    {
        tracing::warn!("mail still queued at shutdown; it stays in the outbox for the next start");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let config = crate::config::Config::from_vars(&crate::config::Vars::from_pairs([(
            "APP_ENV", "testing",
        )]))
        .unwrap()
        .mail;
        assert_eq!(backoff(&config, 1), Duration::from_secs(5));
        assert_eq!(backoff(&config, 2), Duration::from_secs(10));
        assert_eq!(backoff(&config, 4), Duration::from_secs(40));
        assert_eq!(backoff(&config, 40), Duration::from_secs(3600));
    }
}
