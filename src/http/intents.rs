//! Intents over REST (admins only). A change is stored and applied to the running engine at
//! once: the intent head is retrained on the new examples (only new examples are embedded),
//! and the other replicas follow within seconds.

use actix_web::{HttpResponse, delete, get, put, web};

use super::articles::engine;
use super::auth::Admin;
use super::error::{ApiError, ErrorBody};
use crate::kb::Intent;
use crate::knowledge::{self, IntentInput};
use crate::startup::AppState;
use crate::store::StoreError;

/// Every intent, by name.
#[utoipa::path(responses((status = 200, body = Vec<Intent>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[get("/intents")]
pub async fn list(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<web::Json<Vec<Intent>>, ApiError> {
    Ok(web::Json(state.chat.store().intents().await?))
}

#[utoipa::path(params(("name" = String, Path)), responses((status = 200, body = Intent), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
#[get("/intents/{name}")]
pub async fn get_one(
    _admin: Admin,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<web::Json<Intent>, ApiError> {
    let intent = state
        .chat
        .store()
        .intents()
        .await?
        .into_iter()
        .find(|i| i.name == *name)
        .ok_or(StoreError::NotFound("intent"))?;
    Ok(web::Json(intent))
}

/// Creates (201) or replaces (200) the intent with this name; the running engine recognises
/// it from the next message on.
#[utoipa::path(params(("name" = String, Path)), request_body = IntentInput, responses((status = 200, body = Intent), (status = 201, body = Intent), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)), security(("bearer" = [])))]
#[put("/intents/{name}")]
pub async fn replace(
    Admin(admin): Admin,
    name: web::Path<String>,
    body: web::Json<IntentInput>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (intent, created) =
        knowledge::put_intent(state.chat.store(), engine(&state), &name, body.into_inner()).await?;
    tracing::info!(admin = %admin.id, intent = %intent.name, created, "intent stored");
    Ok(if created {
        HttpResponse::Created().json(intent)
    } else {
        HttpResponse::Ok().json(intent)
    })
}

/// Deletes the intent; refused (422) while an article lists it, an escalation rule tests for
/// it, or when two intents are left.
#[utoipa::path(params(("name" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
#[delete("/intents/{name}")]
pub async fn remove(
    Admin(admin): Admin,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let rules = state.desk.rules().current().await?;
    knowledge::delete_intent(state.chat.store(), engine(&state), &rules, &name).await?;
    tracing::info!(admin = %admin.id, intent = %name, "intent deleted");
    Ok(HttpResponse::NoContent().finish())
}
