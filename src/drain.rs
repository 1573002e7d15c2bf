//! Graceful drain. On SIGTERM (or Ctrl-C) the server stops being ready, refuses new WebSocket
//! upgrades, closes every open socket with 1001 so its client reconnects to another replica,
//! lets in-flight requests and messages finish, and stops within the configured deadline.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};

use crate::startup::AppState;

/// How often the drain checks whether every socket has closed.
const POLL: Duration = Duration::from_millis(50);

/// Whether the server is draining; cheap to clone, and sockets can wait on it.
#[derive(Clone, Debug)]
pub struct Drain {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Starts draining: readiness turns false, upgrades are refused, sockets close.
    pub fn start(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.tx.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

/// Drains, then stops the server: gracefully if every socket closed in time, forcibly at
/// `deadline` otherwise.
pub async fn shutdown(state: &AppState, server: ServerHandle, deadline: Duration) {
    state.drain.start();
    let started = Instant::now();
    let graceful = async {
        while state.metrics.open_sockets() > 0 {
            sleep(POLL).await;
        }
        server.stop(true).await;
    };
    if timeout(deadline, graceful).await.is_err() {
        tracing::warn!(
            open = state.metrics.open_sockets(),
            "drain deadline passed; stopping now"
        );
        server.stop(false).await;
    }
    tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "drained");
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = ctrl_c => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C drains");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
