//! Storage: repositories over one SQL pool that speaks SQLite (embedded default) or
//! PostgreSQL (production, several replicas). Queries are written once in portable SQL and
//! checked at run time; each backend has its own migrations folder.

mod agents;
mod analytics;
mod appender;
mod checkpointer;
mod cluster;
mod conversations;
mod embeddings;
mod feedback;
mod knowledge;
mod messages;
mod privacy;
mod routing;
mod rules;
mod settings;

pub use agents::NewAgent;
pub use analytics::{ConversationFacts, FeedbackTotals, RuleFirings};
pub use conversations::{ConversationFilter, ConversationPage, Cursor};
pub use feedback::{Feedback, FeedbackCursor, FeedbackFilter, FeedbackPage, RateError};
pub use knowledge::KbImport;
pub use messages::{Appended, NewMessage};
pub use privacy::{AuditEntry, ConversationExport, Removed, VisitorExport};
pub use routing::{AgentLoad, Escalation};
pub use rules::{RecordedFiring, StoredRule};

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which SQL engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Storage failures, as the layers above need to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// A visitor wrote in a resolved conversation, which must be reopened first.
    #[error("conversation is resolved")]
    Resolved,
    #[error("storage unavailable: {0}")]
    Unavailable(&'static str),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e)
    }
}

impl StoreError {
    pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
        matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
    }
}

/// The storage handle: cheap to clone, shared by every request.
#[derive(Clone, Debug)]
pub struct Store {
    /// Writes go here. On SQLite this pool has one connection, so writers queue in the pool
    /// instead of failing with SQLITE_BUSY.
    writer: AnyPool,
    reader: AnyPool,
    backend: Backend,
    /// The group-commit writer for messages (see `appender.rs`).
    appends: tokio::sync::mpsc::Sender<appender::AppendRequest>,
    /// In cluster mode, the replica whose writes this store announces (see `cluster.rs`).
    replica: Option<crate::cluster::ReplicaId>,
    /// SQLite's write-ahead log as the checkpointer sees it; `None` on PostgreSQL.
    log: Option<std::sync::Arc<checkpointer::LogStats>>,
}

impl Store {
    /// Opens the database named by `url`, creating the SQLite file and its folder if needed.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        Self::connect_as(url, max_connections, None).await
    }

    /// Opens the database like [`Store::connect`]; with a `replica` (cluster mode, on
    /// PostgreSQL) every write that others must see is announced to the other replicas.
    pub async fn connect_as(
        url: &str,
        max_connections: u32,
        replica: Option<crate::cluster::ReplicaId>,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        if backend == Backend::Sqlite {
            ensure_sqlite_folder(url)?;
        }
        let options = |n: u32| {
            AnyPoolOptions::new()
                .max_connections(n)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        if backend == Backend::Sqlite {
                            sqlx::raw_sql(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                                 PRAGMA wal_autocheckpoint = 0; PRAGMA temp_store = MEMORY;",
                            )
                            .execute(conn)
                            .await?;
                        }
                        Ok(())
                    })
                })
        };
        let (writer, reader, log) = match backend {
            Backend::Sqlite => {
                // An in-process connection has no link to test: skip the ping before each use.
                let writer = options(1).test_before_acquire(false).connect(url).await?;
                let reader = options(max_connections).connect(url).await?;
                let log = std::sync::Arc::default();
                checkpointer::spawn(reader.clone(), std::sync::Arc::clone(&log));
                (writer, reader, Some(log))
            }
            Backend::Postgres => {
                let pool = options(max_connections).connect(url).await?;
                (pool.clone(), pool, None)
            }
        };
        let (appends, queue) = tokio::sync::mpsc::channel(appender::QUEUE);
        let store = Self {
            writer,
            reader,
            backend,
            appends,
            replica,
            log,
        };
        appender::spawn(store.clone(), queue);
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies every pending migration of this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrator().run(&self.writer).await?;
        Ok(())
    }

    /// True when the database answers and has every migration this binary knows.
    pub async fn is_ready(&self) -> bool {
        let Some(latest) = self.migrator().iter().map(|m| m.version).max() else {
            return true;
        };
        let applied: Result<Option<i64>, _> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.reader)
                .await;
        matches!(applied, Ok(Some(v)) if v >= latest)
    }

    /// Connections open and idle, summed over the pools, for the metrics.
    pub fn pool_usage(&self) -> (u32, usize) {
        let pools: &[&AnyPool] = match self.backend {
            Backend::Sqlite => &[&self.writer, &self.reader],
            Backend::Postgres => &[&self.writer],
        };
        pools.iter().fold((0, 0), |(size, idle), p| {
            (size + p.size(), idle + p.num_idle())
        })
    }

    /// SQLite's write-ahead log: its length in 4 KiB pages at the last checkpoint, and how
    /// many checkpoints failed. `None` on PostgreSQL.
    pub fn sqlite_log(&self) -> Option<(i64, u64)> {
        self.log.as_ref().map(|l| (l.pages(), l.failures()))
    }

    /// Closes every connection; used when the server stops.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// Whether [`Self::close`] was called: background tasks stop then.
    pub fn is_closed(&self) -> bool {
        self.writer.is_closed()
    }
}

fn ensure_sqlite_folder(url: &str) -> Result<(), StoreError> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Corrupt(
            "an in-memory SQLite database cannot be shared by the server's pools; name a file"
                .into(),
        ));
    }
    if let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::Corrupt(format!("cannot create {}: {e}", parent.display())))?;
    }
    Ok(())
}

/// Milliseconds since the epoch, the storage format of every timestamp.
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(crate) fn from_ms(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

pub(crate) fn parse_col<T: std::str::FromStr>(row: &AnyRow, col: &str) -> Result<T, StoreError> {
    let raw: String = row.try_get(col)?;
    raw.parse()
        .map_err(|_| StoreError::Corrupt(format!("column {col} holds {raw:?}")))
}

pub(crate) fn parse_opt_col<T: std::str::FromStr>(
    row: &AnyRow,
    col: &str,
) -> Result<Option<T>, StoreError> {
    let raw: Option<String> = row.try_get(col)?;
    raw.map(|r| {
        r.parse()
            .map_err(|_| StoreError::Corrupt(format!("column {col} holds {r:?}")))
    })
    .transpose()
}

pub(crate) fn json_col<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    col: &str,
) -> Result<T, StoreError> {
    let raw: String = row.try_get(col)?;
    serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

pub(crate) fn enum_col<T>(
    row: &AnyRow,
    col: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let raw: String = row.try_get(col)?;
    parse(&raw).ok_or_else(|| StoreError::Corrupt(format!("column {col} holds {raw:?}")))
}
