//! Admin endpoints for visitors' data: export it all, delete it all, read the audit log.

use actix_web::{delete, get, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Admin;
use super::error::{ApiError, ErrorBody};
use crate::domain::VisitorId;
use crate::startup::AppState;
use crate::store::{AuditEntry, Removed, VisitorExport};

fn visitor_id(raw: &str) -> Result<VisitorId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("visitor"))
}

/// Everything stored about a visitor (admins only; audited).
#[utoipa::path(
    params(("id" = String, Path, description = "Visitor id")),
    responses((status = 200, body = VisitorExport), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
#[get("/visitors/{id}/export")]
pub async fn export(
    Admin(admin): Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<web::Json<VisitorExport>, ApiError> {
    let id = visitor_id(&path)?;
    let store = state.chat.store();
    let export = store.export_visitor(id).await?;
    let detail = serde_json::json!({ "conversations": export.conversations.len() });
    store
        .audit(
            &admin.id.to_string(),
            "export_visitor",
            Some(id.to_string()),
            detail,
        )
        .await?;
    Ok(web::Json(export))
}

/// Deletes a visitor with their conversations, messages and feedback (admins only; audited).
#[utoipa::path(
    params(("id" = String, Path, description = "Visitor id")),
    responses((status = 200, body = Removed), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
#[delete("/visitors/{id}")]
pub async fn erase(
    Admin(admin): Admin,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<web::Json<Removed>, ApiError> {
    let id = visitor_id(&path)?;
    let store = state.chat.store();
    let removed = store.delete_visitor(id).await?;
    let detail = serde_json::json!({ "removed": removed });
    store
        .audit(
            &admin.id.to_string(),
            "delete_visitor",
            Some(id.to_string()),
            detail,
        )
        .await?;
    Ok(web::Json(removed))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// How many entries, newest first (1 to 500, default 100).
    limit: Option<u32>,
}

/// The audit log, newest first (admins only).
#[utoipa::path(params(AuditQuery), responses((status = 200, body = Vec<AuditEntry>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[get("/audit")]
pub async fn audit(
    _admin: Admin,
    query: web::Query<AuditQuery>,
    state: web::Data<AppState>,
) -> Result<web::Json<Vec<AuditEntry>>, ApiError> {
    let limit = match query.limit.unwrap_or(100) {
        n @ 1..=500 => n,
        _ => {
            return Err(ApiError::BadRequest(
                "limit must be between 1 and 500".into(),
            ));
        }
    };
    Ok(web::Json(state.chat.store().audit_entries(limit).await?))
}
