//! Escalation rules over REST (admins only). A rule is checked before it is saved: a bad one is
//! a 422 whose `field` names the part at fault.

use actix_web::{HttpResponse, delete, get, post, put, web};

use super::auth::Admin;
use super::error::{ApiError, ErrorBody};
use crate::automation::RuleBookError;
use crate::startup::AppState;
use crate::store::StoredRule;

impl From<RuleBookError> for ApiError {
    fn from(e: RuleBookError) -> Self {
        match e {
            RuleBookError::Invalid(e) => e.into(),
            RuleBookError::Store(e) => e.into(),
        }
    }
}

/// Every rule, in evaluation order.
#[utoipa::path(responses((status = 200, body = Vec<StoredRule>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[get("/escalation-rules")]
pub async fn list(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<web::Json<Vec<StoredRule>>, ApiError> {
    Ok(web::Json(state.chat.store().rules().await?))
}

#[utoipa::path(params(("id" = String, Path)), responses((status = 200, body = StoredRule), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[get("/escalation-rules/{id}")]
pub async fn get_one(
    _admin: Admin,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<web::Json<StoredRule>, ApiError> {
    Ok(web::Json(state.chat.store().rule(&id).await?))
}

/// Adds a rule at the end of the list. The body is a rule definition (docs/escalation-rules.md).
#[utoipa::path(request_body(content = Object, description = "rule definition"), responses((status = 201, body = StoredRule), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
#[post("/escalation-rules")]
pub async fn create(
    Admin(admin): Admin,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let rule = state.desk.rules().create(&body).await?;
    tracing::info!(admin = %admin.id, rule = %rule.name, "escalation rule created");
    Ok(HttpResponse::Created().json(rule))
}

#[utoipa::path(params(("id" = String, Path)), request_body(content = Object, description = "rule definition"), responses((status = 200, body = StoredRule), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
#[put("/escalation-rules/{id}")]
pub async fn replace(
    Admin(admin): Admin,
    id: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<web::Json<StoredRule>, ApiError> {
    let rule = state.desk.rules().replace(&id, &body).await?;
    tracing::info!(admin = %admin.id, rule = %rule.name, "escalation rule replaced");
    Ok(web::Json(rule))
}

#[utoipa::path(params(("id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[delete("/escalation-rules/{id}")]
pub async fn remove(
    Admin(admin): Admin,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.desk.rules().delete(&id).await?;
    tracing::info!(admin = %admin.id, rule = %id, "escalation rule deleted");
    Ok(HttpResponse::NoContent().finish())
}
