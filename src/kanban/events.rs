//! Board changes as they happen, for the web UI's live boards.
//!
//! Every change made through [`super::service`] is announced on this instance's
//! broadcast channel at once. On PostgreSQL the trigger of migration
//! `0011_live_boards.sql` also NOTIFYs `gatehouse_board` when a change commits, from
//! whichever instance (or SQL session) made it; the [`listen`] task of every instance
//! passes those on to its own channel, so browsers connected to any instance hear of
//! every change. An announcement only names the board: a stream then reads the board's
//! version and tells its browser when it differs from what it last told, so repeats
//! (an instance hears its own NOTIFY too) cost one small read and nothing else.
//!
//! When the listener (re)connects it may have missed notifications, so it announces
//! [`Change::Any`]: every stream reads its board's version again.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::ConnectOptions;
use tokio::sync::{broadcast, watch};

/// The channel the trigger notifies on.
const CHANNEL: &str = "gatehouse_board";
/// How many announcements a slow stream may fall behind before it re-reads its board.
const CAPACITY: usize = 1024;
/// How long the listener waits before connecting again after losing its connection.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
const LISTENER_NAME: &str = "gatehouse-board-listener";

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Board(i64),
    /// Anything may have changed (announcements were missed).
    Any,
}

impl Change {
    pub fn concerns(self, board_id: i64) -> bool {
        match self {
            Self::Board(id) => id == board_id,
            Self::Any => true,
        }
    }
}

/// The board announcements of one instance; cheap to clone.
#[derive(Clone, Debug)]
pub struct BoardEvents {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    changes: broadcast::Sender<Change>,
    /// Set when the server shuts down: open streams end, so that they do not hold the
    /// graceful shutdown up.
    closing: watch::Sender<bool>,
}

impl Default for BoardEvents {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                changes: broadcast::Sender::new(CAPACITY),
                closing: watch::Sender::new(false),
            }),
        }
    }
}

impl BoardEvents {
    /// Tells this instance's streams that a board changed.
    pub fn announce(&self, change: Change) {
        // No receiver means no stream is open: nobody to tell.
        let _ = self.inner.changes.send(change);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    /// Ends every open stream, now and from now on.
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Completes once the server shuts down.
    pub async fn closed(&self) {
        let mut closing = self.inner.closing.subscribe();
        let _ = closing.wait_for(|c| *c).await;
    }
}

/// Passes the trigger's notifications on to `events` until `stop`, reconnecting
/// whenever the connection is lost; see the module documentation.
pub async fn listen(events: BoardEvents, database_url: String, mut stop: watch::Receiver<bool>) {
    let name = format!("{LISTENER_NAME}-{:08x}", rand::random::<u32>());
    loop {
        match connect(&database_url, &name).await {
            Ok(mut listener) => {
                events.announce(Change::Any);
                tracing::info!("board listener connected");
                loop {
                    tokio::select! {
                        _ = stop.changed() => return,
                        received = listener.try_recv() => match received {
                            Ok(Some(notification)) => {
                                let change = notification
                                    .payload()
                                    .parse()
                                    .map_or(Change::Any, Change::Board);
                                events.announce(change);
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(error = %e, "board listener failed");
                                break;
                            }
                        },
                    }
                }
                tracing::warn!("board listener disconnected; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "board listener cannot connect"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(RECONNECT_DELAY) => {}
        }
    }
}

async fn connect(database_url: &str, name: &str) -> Result<PgListener, sqlx::Error> {
    let options = PgConnectOptions::from_str(database_url)?
        .application_name(name)
        .disable_statement_logging();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_concerns_its_board_and_any_concerns_all() {
        assert!(Change::Board(3).concerns(3));
        assert!(!Change::Board(3).concerns(4));
        assert!(Change::Any.concerns(4));
    }

    #[tokio::test]
    async fn announcements_reach_subscribers_and_close_is_heard() {
        let events = BoardEvents::default();
        let mut rx = events.subscribe();
        events.announce(Change::Board(7));
        assert_eq!(rx.recv().await.unwrap(), Change::Board(7));
        events.close();
        tokio::time::timeout(Duration::from_secs(5), events.closed())
            .await
            .unwrap();
    }
}
