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

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use crate::db;

/// The channel the trigger notifies on.
const CHANNEL: &str = "gatehouse_board";
/// How many announcements a slow stream may fall behind before it re-reads its board.
const CAPACITY: usize = 1024;
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

impl db::listen::Subscriber for BoardEvents {
    fn connected(&self) {
        self.announce(Change::Any);
    }

    fn notified(&self, payload: &str) -> Option<String> {
        self.announce(payload.parse().map_or(Change::Any, Change::Board));
        None
    }

    fn disconnected(&self) {}
}

/// Passes the trigger's notifications on to `events` until `stop`; see the module
/// documentation.
pub async fn listen(events: BoardEvents, database_url: String, stop: watch::Receiver<bool>) {
    let name = format!("{LISTENER_NAME}-{:08x}", rand::random::<u32>());
    db::listen::listen(&database_url, &name, CHANNEL, &events, stop).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
