//! A PostgreSQL `LISTEN` loop on a connection of its own, for the caches and streams
//! that other instances' changes must reach. It reconnects whenever the connection is
//! lost, and tells its [`Subscriber`] when it is and is not listening, so that what
//! relies on the notifications can stop trusting itself meanwhile. A connection that
//! has gone quiet is asked to answer every [`PING_EVERY`]: one that does not answer
//! within [`PING_TIMEOUT`] (a half-open connection, a server that stopped without
//! closing it) counts as lost, instead of being trusted until TCP notices.
//!
//! The connection takes its name (`application_name`) only once it listens, so that
//! whoever finds it in `pg_stat_activity` knows it hears every notification sent from
//! then on; a subscriber may answer a notification with one of its own on the channel.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::ConnectOptions;
use tokio::sync::watch;

/// How long to wait before connecting again.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// How often the listening connection is asked to answer.
pub const PING_EVERY: Duration = Duration::from_secs(10);
/// How long it has to answer.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// What a listener reports to its owner.
pub trait Subscriber {
    /// Listening (again): notifications sent before now may have been missed.
    fn connected(&self);
    /// One notification on the channel; what it returns is sent on the channel in
    /// answer, from this connection.
    fn notified(&self, payload: &str) -> Option<String>;
    /// No longer listening, until the next [`Subscriber::connected`].
    fn disconnected(&self);
}

/// Listens on `channel` until `stop`, as `name` (its `application_name`, so that it
/// can be told apart in `pg_stat_activity`).
pub async fn listen(
    database_url: &str,
    name: &str,
    channel: &str,
    subscriber: &impl Subscriber,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match connect(database_url, name, channel).await {
            Ok(mut listener) => {
                subscriber.connected();
                tracing::info!(channel, "listener connected");
                let mut ping = tokio::time::interval(PING_EVERY);
                ping.reset();
                loop {
                    tokio::select! {
                        _ = stop.changed() => {
                            subscriber.disconnected();
                            return;
                        }
                        _ = ping.tick() => {
                            let answered = tokio::time::timeout(
                                PING_TIMEOUT,
                                sqlx::query("SELECT 1").execute(&mut listener),
                            )
                            .await;
                            if !matches!(answered, Ok(Ok(_))) {
                                tracing::warn!(channel, "listener's connection did not answer");
                                break;
                            }
                        }
                        received = listener.try_recv() => match received {
                            Ok(Some(notification)) => {
                                let Some(answer) = subscriber.notified(notification.payload()) else {
                                    continue;
                                };
                                let sent = sqlx::query("SELECT pg_notify($1, $2)")
                                    .bind(channel)
                                    .bind(answer)
                                    .execute(&mut listener)
                                    .await;
                                if let Err(e) = sent {
                                    tracing::warn!(channel, error = %e, "listener cannot answer");
                                    break;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(channel, error = %e, "listener failed");
                                break;
                            }
                        },
                    }
                }
                subscriber.disconnected();
                tracing::warn!(channel, "listener disconnected; reconnecting");
            }
            Err(e) => tracing::warn!(channel, error = %e, "listener cannot connect"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(RECONNECT_DELAY) => {}
        }
    }
}

async fn connect(database_url: &str, name: &str, channel: &str) -> Result<PgListener, sqlx::Error> {
    let options = PgConnectOptions::from_str(database_url)?.disable_statement_logging();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    // The listener keeps the pool's one connection; the pool goes with the listener.
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(channel).await?;
    sqlx::query("SELECT set_config('application_name', $1, false)")
        .bind(name)
        .execute(&mut listener)
        .await?;
    Ok(listener)
}
