//! The activity log: who did what, from where, and what the server answered.
//!
//! Three sources feed it: every request (kind `access`, written by the request
//! middleware), authentication events (kind `auth`: logins, logouts, 2FA changes,
//! password resets, throttling) and changes to data (kind `admin` for users, roles
//! and permissions; `change` for everything else), each with its actor and, for
//! changes, the before and after. [`writer`] stores them off the request path.

mod routes;
pub mod store;
pub mod writer;

use serde_json::Value;

pub use routes::{filter, instant, routes, LogQuery};
pub use writer::ActivityLog;

use crate::accounts::User;
use crate::db;
use crate::http::Origin;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "INFO",
            Self::Warning => "WARNING",
            Self::Error => "ERROR",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Access,
    Auth,
    Admin,
    Change,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Self::Access, Self::Auth, Self::Admin, Self::Change];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether a request that records an entry of this kind is answered only once the
    /// entry is stored: authentication events and changes are; access lines never hold
    /// anything up.
    pub fn awaited(self) -> bool {
        self != Self::Access
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Auth => "auth",
            Self::Admin => "admin",
            Self::Change => "change",
        }
    }
}

/// One entry, built with the methods below and handed to [`ActivityLog::record`].
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub created_at: i64,
    pub level: Level,
    pub kind: Kind,
    pub message: String,
    pub user_id: Option<i64>,
    pub user_email: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<i64>,
    pub duration_ms: Option<i64>,
    pub details: Option<Value>,
}

impl LogEntry {
    pub fn new(kind: Kind, level: Level, message: impl Into<String>) -> Self {
        Self {
            created_at: db::now(),
            level,
            kind,
            message: message.into(),
            user_id: None,
            user_email: None,
            client_ip: None,
            user_agent: None,
            method: None,
            path: None,
            status: None,
            duration_ms: None,
            details: None,
        }
    }

    /// An authentication event.
    pub fn auth(level: Level, message: impl Into<String>) -> Self {
        Self::new(Kind::Auth, level, message)
    }

    /// A change to users, roles or permissions: `action` names it, `details` holds the
    /// target and the before and after.
    pub fn admin(message: impl Into<String>, details: Value) -> Self {
        Self::new(Kind::Admin, Level::Info, message).details(details)
    }

    /// A change to application data (boards, billing).
    pub fn change(message: impl Into<String>, details: Value) -> Self {
        Self::new(Kind::Change, Level::Info, message).details(details)
    }

    /// The user the entry is about or by.
    pub fn user(mut self, user: &User) -> Self {
        self.user_id = Some(user.id);
        self.user_email = Some(user.email.clone());
        self
    }

    pub fn origin(mut self, origin: &Origin) -> Self {
        self.client_ip = origin.ip.clone();
        self.user_agent = origin.user_agent.clone();
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The entry with every NUL character in its text replaced by U+FFFD: PostgreSQL's
    /// text cannot hold one, and a batch it refuses would be retried forever, holding
    /// up every entry behind it.
    pub(crate) fn without_nul(mut self) -> Self {
        fn mend(text: &mut String) {
            if text.contains('\0') {
                *text = text.replace('\0', "\u{FFFD}");
            }
        }
        mend(&mut self.message);
        for text in [
            &mut self.user_email,
            &mut self.client_ip,
            &mut self.user_agent,
            &mut self.method,
            &mut self.path,
        ]
        .into_iter()
        .flatten()
        {
            mend(text);
        }
        self
    }
}

/// The entry for a change that `user` made from `origin`: the one shape the
/// capabilities that change data (kanban, billing, roles) write to the activity log,
/// so every such entry carries its actor, address and user agent alike.
fn change_entry(
    kind: Kind,
    user: &User,
    origin: &Origin,
    message: impl Into<String>,
    details: Value,
) -> LogEntry {
    LogEntry::new(kind, Level::Info, message)
        .details(details)
        .user(user)
        .origin(origin)
}

/// Records a change through the queue; it is still stored before the request that
/// made it is answered (see [`ActivityLog::scope`]).
pub fn record_change(
    activity: &ActivityLog,
    kind: Kind,
    user: &User,
    origin: &Origin,
    message: impl Into<String>,
    details: Value,
) {
    activity.record(change_entry(kind, user, origin, message, details));
}

/// Records a change in the transaction that makes it, so the entry exists exactly
/// when the change does: what administrative changes use.
pub async fn record_change_in(
    tx: &mut sqlx::AnyConnection,
    kind: Kind,
    user: &User,
    origin: &Origin,
    message: impl Into<String>,
    details: Value,
) -> Result<(), sqlx::Error> {
    ActivityLog::record_in(tx, change_entry(kind, user, origin, message, details)).await
}
