//! SQLite's WAL checkpoints, off the commit path. With SQLite's automatic checkpoint, the
//! COMMIT that takes the log past 1,000 pages copies it into the database first, and at
//! thousands of messages a second that COMMIT was the delivery latency's tail. So the writer
//! never checkpoints (`wal_autocheckpoint = 0`); this task checkpoints from a reader
//! connection every few milliseconds, PASSIVE (the writer goes on meanwhile). When a
//! checkpoint has copied every page before the writer's next transaction, the writer starts
//! the log over; should the log still outgrow [`WAL_LIMIT_PAGES`], a RESTART checkpoint waits
//! for the writer and makes it start over.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::{AnyPool, AssertSqlSafe, Row};
use tokio::time::{MissedTickBehavior, interval};

/// How often the log is copied into the database.
const EVERY: Duration = Duration::from_millis(10);
/// Log pages (4 KiB each) past which a checkpoint waits for the writer: 64 MiB.
const WAL_LIMIT_PAGES: i64 = 16_384;

/// What the checkpoints have seen, for `/metrics`.
#[derive(Debug, Default)]
pub struct LogStats {
    /// The log's length in 4 KiB pages at the last checkpoint.
    pages: AtomicI64,
    /// Checkpoints that failed.
    failures: AtomicU64,
}

impl LogStats {
    pub fn pages(&self) -> i64 {
        self.pages.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// Checkpoints until the pool closes, recording what it sees in `stats`.
pub(super) fn spawn(pool: AnyPool, stats: Arc<LogStats>) {
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
            match result {
                Ok(pages) => stats.pages.store(pages, Ordering::Relaxed),
                Err(e) if !pool.is_closed() => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = ?e, "WAL checkpoint failed");
                }
                Err(_) => {}
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
