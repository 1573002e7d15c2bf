//! The LISTEN/NOTIFY backplane. Publishing is done by the store, in the transaction that
//! stores (see `store/cluster.rs`); this side holds one dedicated connection that LISTENs,
//! pings it, and on any failure drops it, reconnects with backoff and reports the outage so
//! the replica recovers what it missed from the database.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};

use super::event::{CHANNEL, ReplicaId, decode};
use super::{Backplane, Signal};
use crate::store::now_ms;

/// A listener silent this long is pinged, and one whose ping takes longer is reconnected.
const PING_EVERY: Duration = Duration::from_secs(5);
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// Reconnection backoff: doubles from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_LAST: Duration = Duration::from_secs(5);

/// LISTEN/NOTIFY on the replicas' shared PostgreSQL database.
pub struct PgBackplane {
    options: PgConnectOptions,
    replica: ReplicaId,
}

impl PgBackplane {
    /// The listener's connection shows in `pg_stat_activity` as
    /// `switchboard listener pid=<process id>`.
    pub fn new(url: &str, replica: ReplicaId) -> Result<Self, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?
            .application_name(&format!("switchboard listener pid={}", std::process::id()));
        Ok(Self { options, replica })
    }

    async fn connect(&self) -> Result<PgListener, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(PING_EVERY)
            .connect_lazy_with(self.options.clone());
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.ignore_pool_close_event(true);
        listener.eager_reconnect(false);
        listener.listen(CHANNEL).await?;
        Ok(listener)
    }

    /// Forwards notifications until the connection fails or `signals` closes; returns
    /// whether the caller should reconnect. `alive_ms` is kept at the last moment the
    /// connection was known to be listening.
    async fn listen(
        &self,
        listener: &mut PgListener,
        signals: &mpsc::Sender<Signal>,
        alive_ms: &mut i64,
    ) -> bool {
        loop {
            match timeout(PING_EVERY, listener.try_recv()).await {
                Ok(Ok(Some(notification))) => {
                    *alive_ms = now_ms();
                    if let Some(event) = decode(&self.replica, notification.payload())
                        && signals.send(Signal::Event(event)).await.is_err()
                    {
                        return false;
                    }
                }
                Ok(Ok(None)) => {
                    tracing::warn!("cluster listener lost its connection");
                    return true;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cluster listener failed");
                    return true;
                }
                Err(_quiet) => {
                    let pinged_at = now_ms();
                    match timeout(
                        PING_TIMEOUT,
                        sqlx::query("SELECT 1").execute(&mut *listener),
                    )
                    .await
                    {
                        Ok(Ok(_)) => *alive_ms = pinged_at,
                        _ => {
                            tracing::warn!("cluster listener did not answer its ping");
                            return true;
                        }
                    }
                }
            }
        }
    }
}

impl Backplane for PgBackplane {
    async fn run(self, signals: mpsc::Sender<Signal>) {
        let mut backoff = BACKOFF_FIRST;
        let mut alive_ms = now_ms();
        loop {
            let mut listener = match self.connect().await {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "cluster listener cannot connect");
                    sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_LAST);
                    continue;
                }
            };
            backoff = BACKOFF_FIRST;
            tracing::info!("cluster listener is listening");
            let resumed = Signal::Resumed { since_ms: alive_ms };
            if signals.send(resumed).await.is_err()
                || !self.listen(&mut listener, &signals, &mut alive_ms).await
            {
                return;
            }
        }
    }
}
