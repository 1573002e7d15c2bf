//! SQLite's WAL checkpoints, off the commit path. With SQLite's automatic checkpoint, the
//! COMMIT that takes the log past 1,000 pages copies it into the database first, and at
//! thousands of messages a second that COMMIT was the delivery latency's tail. So the writer
//! never checkpoints (`wal_autocheckpoint = 0`); this task checkpoints from a reader
//! connection every few milliseconds, PASSIVE (the writer goes on meanwhile). When a
//! checkpoint has copied every page before the writer's next transaction, the writer starts
//! the log over; should the log still outgrow [`WAL_LIMIT_PAGES`], a RESTART checkpoint waits
//! for the writer and makes it start over.

use std::time::Duration;

use sqlx::{AnyPool, AssertSqlSafe, Row};
use tokio::time::{MissedTickBehavior, interval};

/// How often the log is copied into the database.
const EVERY: Duration = Duration::from_millis(10);
/// Log pages (4 KiB each) past which a checkpoint waits for the writer: 64 MiB.
const WAL_LIMIT_PAGES: i64 = 16_384;

/// Checkpoints until the pool closes.
pub(super) fn spawn(pool: AnyPool) {
    tokio::spawn(async move {
        let mut every = interval(EVERY);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if pool.is_closed() {
                return;
            }
            let result = match checkpoint(&pool, "PASSIVE").await {
                Ok(pages) if pages > WAL_LIMIT_PAGES => checkpoint(&pool, "RESTART").await,
                other => other,
            };
            if let Err(e) = result
                && !pool.is_closed()
            {
                tracing::warn!(error = ?e, "WAL checkpoint failed");
            }
        }
    });
}

/// Runs one checkpoint; returns the log's length in pages.
async fn checkpoint(pool: &AnyPool, mode: &str) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(AssertSqlSafe(format!("PRAGMA wal_checkpoint({mode})")))
        .fetch_one(pool)
        .await?;
    row.try_get(1)
}
