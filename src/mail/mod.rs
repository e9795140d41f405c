//! Outgoing email that is never lost and never fails a request.
//!
//! A request only inserts the message into the `mail_outbox` table, in the same
//! transaction as the change that caused it; the background [`sender`] delivers it,
//! retrying with exponential backoff for as long as it takes. Several instances can
//! share one outbox: a message is leased to one sender at a time.

pub mod sender;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use askama::Template;
use tokio::sync::{watch, Notify};

use crate::db;

/// One message, rendered and ready for the outbox.
#[derive(Debug, Clone)]
pub struct Email {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The action link the message carries; the development backends log it.
    pub link: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("rendering the {0} template: {1}")]
    Template(&'static str, askama::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The handle requests use to queue mail.
#[derive(Clone, Default)]
pub struct Mailer {
    wake: Arc<Notify>,
    /// Passes over the outbox asked for by [`Mailer::drain`], and the last one the
    /// sender has finished.
    asked: Arc<AtomicU64>,
    done: Arc<watch::Sender<u64>>,
}

impl Mailer {
    /// Queues the message as part of the caller's transaction; call [`Mailer::wake`]
    /// after committing it.
    pub async fn enqueue(
        &self,
        conn: &mut sqlx::AnyConnection,
        email: &Email,
    ) -> Result<(), MailError> {
        let now = db::now();
        sqlx::query(
            "INSERT INTO mail_outbox (recipient, subject, text_body, html_body, link, \
             created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(&email.to)
        .bind(&email.subject)
        .bind(&email.text)
        .bind(&email.html)
        .bind(email.link.as_deref())
        .bind(now)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Tells this instance's sender that new mail is waiting.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// Has the sender go over the outbox now and waits until it has: every message
    /// due before the call is then delivered or scheduled for a retry. What a test
    /// waits on instead of sleeping.
    pub async fn drain(&self) {
        let asked = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = self.done.subscribe();
        self.wake();
        let _ = done.wait_for(|d| *d >= asked).await;
    }

    /// The sender begins a pass: the drains asked for so far are answered by it.
    pub(crate) fn pass_begins(&self) -> u64 {
        self.asked.load(Ordering::SeqCst)
    }

    pub(crate) fn pass_done(&self, answered: u64) {
        self.done.send_if_modified(|d| {
            let moved = answered > *d;
            *d = (*d).max(answered);
            moved
        });
    }
}

#[derive(Template)]
#[template(path = "email/welcome.txt")]
struct WelcomeText<'a> {
    first_name: &'a str,
    username: &'a str,
}

#[derive(Template)]
#[template(path = "email/welcome.html")]
struct WelcomeHtml<'a> {
    first_name: &'a str,
    username: &'a str,
}

#[derive(Template)]
#[template(path = "email/verify.txt")]
struct VerifyText<'a> {
    first_name: &'a str,
    link: &'a str,
}

#[derive(Template)]
#[template(path = "email/verify.html")]
struct VerifyHtml<'a> {
    first_name: &'a str,
    link: &'a str,
}

pub fn welcome(to: &str, first_name: &str, username: &str) -> Result<Email, MailError> {
    Ok(Email {
        to: to.to_owned(),
        subject: "Welcome to Gatehouse".to_owned(),
        text: WelcomeText {
            first_name,
            username,
        }
        .render()
        .map_err(|e| MailError::Template("welcome", e))?,
        html: WelcomeHtml {
            first_name,
            username,
        }
        .render()
        .map_err(|e| MailError::Template("welcome", e))?,
        link: None,
    })
}

pub fn verify_email(to: &str, first_name: &str, link: &str) -> Result<Email, MailError> {
    Ok(Email {
        to: to.to_owned(),
        subject: "Verify your email address".to_owned(),
        text: VerifyText { first_name, link }
            .render()
            .map_err(|e| MailError::Template("verify", e))?,
        html: VerifyHtml { first_name, link }
            .render()
            .map_err(|e| MailError::Template("verify", e))?,
        link: Some(link.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let email = verify_email(
            "a@example.com",
            "<b>Ann</b>",
            "http://x/verify_email/abc?a=1&b=2",
        )
        .unwrap();
        assert!(email.html.contains("&#60;b&#62;Ann") || email.html.contains("&lt;b&gt;Ann"));
        assert!(email.text.contains("<b>Ann</b>"));
        assert!(email.text.contains("http://x/verify_email/abc?a=1&b=2"));
    }
}
