//! Endpoints for operators and orchestrators: liveness, readiness, metrics, the API document.

use actix_web::{HttpResponse, get, web};
use utoipa::OpenApi;

use super::ApiDoc;
use crate::domain::ConversationState;
use crate::startup::AppState;

/// Liveness: the process answers.
#[get("/health")]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: not draining, and the database answers and is fully migrated.
#[get("/ready")]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.drain.is_draining() {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({ "status": "draining" }))
    } else if state.chat.store().is_ready().await {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "database unavailable or not migrated" }))
    }
}

/// Prometheus text exposition.
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let (size, idle) = state.chat.store().pool_usage();
    let pool = &state.metrics.db_pool_connections;
    pool.with_label_values(&["idle"]).set(idle as i64);
    pool.with_label_values(&["in_use"])
        .set(i64::from(size) - idle as i64);
    if let Some((pages, failures)) = state.chat.store().sqlite_log() {
        state.metrics.sqlite_wal_pages.set(pages);
        let counted = state.metrics.sqlite_checkpoint_failures.get();
        state
            .metrics
            .sqlite_checkpoint_failures
            .inc_by(failures.saturating_sub(counted));
    }
    match state.chat.store().conversations_by_state().await {
        Ok(counts) => {
            for &s in ConversationState::ALL {
                let n = counts
                    .iter()
                    .find(|(state, _)| state == s.as_str())
                    .map_or(0, |(_, n)| *n);
                state
                    .metrics
                    .conversations
                    .with_label_values(&[s.as_str()])
                    .set(n);
                if s == ConversationState::Queued {
                    state.metrics.queue_depth.set(n);
                }
            }
        }
        Err(e) => tracing::warn!(error = ?e, "conversations by state not read"),
    }
    match state.chat.store().online_agent_loads().await {
        Ok(online) => state.metrics.agents_online.set(online.len() as i64),
        Err(e) => tracing::warn!(error = ?e, "online agents not read"),
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

/// The OpenAPI document generated from the handlers.
#[get("/api/openapi.json")]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
