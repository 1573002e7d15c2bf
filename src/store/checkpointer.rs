//! SQLite's WAL checkpoints, off the commit path. With SQLite's automatic checkpoint, the
//! COMMIT that takes the log past 1,000 pages copies it into the database first, and at
//! thousands of messages a second that COMMIT was the delivery latency's tail. So the writer
//! never checkpoints (`wal_autocheckpoint = 0`); this task checkpoints from a reader
//! connection every few milliseconds, PASSIVE (the writer goes on meanwhile). When a
//! checkpoint has copied every page before the writer's next transaction, the writer starts
//! the log over; should the log still outgrow [`WAL_LIMIT_PAGES`], a RESTART checkpoint waits
//! for the writer and makes it start over. While nothing is written, the task checks less and
//! less often, down to once every [`IDLE_EVERY`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use sqlx::{AnyPool, AssertSqlSafe, Row};
/// How often the log is copied into the database while it is being written.
const EVERY: Duration = Duration::from_millis(10);
/// The longest wait between two checkpoints of a log nobody writes.
const IDLE_EVERY: Duration = Duration::from_secs(1);
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
        let mut wait = EVERY;
        let mut last = None;
        loop {
            tokio::time::sleep(wait).await;
            if pool.is_closed() {
                return;
            }
            let result = match checkpoint(&pool, "PASSIVE").await {
                Ok(log) if log.pages > WAL_LIMIT_PAGES => checkpoint(&pool, "RESTART").await,
                other => other,
            };
            match result {
                Ok(log) => {
                    stats.pages.store(log.pages, Ordering::Relaxed);
                    wait = next_wait(wait, last == Some(log) && log.pages == log.copied);
                    last = Some(log);
                }
                Err(e) if !pool.is_closed() => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = ?e, "WAL checkpoint failed");
                }
                Err(_) => {}
            }
        }
    });
}

/// The log as one checkpoint left it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Log {
    /// Its length in pages.
    pages: i64,
    /// How many of them are in the database file.
    copied: i64,
}

/// The wait before the next checkpoint: doubled (up to [`IDLE_EVERY`]) when the last one found
/// the log as the one before had left it, all copied; back to [`EVERY`] as soon as it moves.
fn next_wait(wait: Duration, quiet: bool) -> Duration {
    if quiet {
        (wait * 2).min(IDLE_EVERY)
    } else {
        EVERY
    }
}

/// Runs one checkpoint.
async fn checkpoint(pool: &AnyPool, mode: &str) -> Result<Log, sqlx::Error> {
    let row = sqlx::query(AssertSqlSafe(format!("PRAGMA wal_checkpoint({mode})")))
        .fetch_one(pool)
        .await?;
    Ok(Log {
        pages: row.try_get(1)?,
        copied: row.try_get(2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_log_is_checked_less_often_and_a_written_one_at_once() {
        let mut wait = EVERY;
        for _ in 0..20 {
            wait = next_wait(wait, true);
        }
        assert_eq!(wait, IDLE_EVERY);
        assert_eq!(next_wait(EVERY, true), EVERY * 2);
        assert_eq!(next_wait(IDLE_EVERY, false), EVERY);
    }
}
