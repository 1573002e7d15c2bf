//! Agent endpoints: who am I, my status, and (admins) the team.

use actix_web::{HttpResponse, get, post, put, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Admin, AuthAgent};
use super::error::{ApiError, ErrorBody};
use crate::agents::create_agent;
use crate::domain::{Agent, AgentRole, AgentStatus};
use crate::startup::AppState;

/// The calling agent.
#[utoipa::path(responses((status = 200, body = Agent), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
#[get("/agents/me")]
pub async fn get_me(AuthAgent(agent): AuthAgent) -> web::Json<Agent> {
    web::Json(agent)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusUpdate {
    status: AgentStatus,
}

/// Sets the caller's availability: online, away or offline. Going online assigns waiting
/// conversations; offline puts the caller's conversations back in the queue.
#[utoipa::path(request_body = StatusUpdate, responses((status = 200, body = Agent), (status = 400, body = ErrorBody)), security(("bearer" = [])))]
#[put("/agents/me/status")]
pub async fn set_status(
    AuthAgent(me): AuthAgent,
    body: web::Json<StatusUpdate>,
    state: web::Data<AppState>,
) -> Result<web::Json<Agent>, ApiError> {
    Ok(web::Json(
        state.desk.set_agent_status(me.id, body.status).await?,
    ))
}

/// Every agent (admins only).
#[utoipa::path(responses((status = 200, body = Vec<Agent>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
#[get("/agents")]
pub async fn list(
    _admin: Admin,
    state: web::Data<AppState>,
) -> Result<web::Json<Vec<Agent>>, ApiError> {
    Ok(web::Json(state.chat.store().agents().await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    name: String,
    email: String,
    role: AgentRole,
    #[serde(default)]
    skills: Vec<String>,
    /// Conversations this agent may hold at once (default 5).
    max_concurrent: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedAgent {
    agent: Agent,
    /// The agent's API token. Shown once; only its hash is stored.
    token: String,
}

/// Creates an agent and returns its API token (admins only).
#[utoipa::path(request_body = CreateAgent, responses((status = 201, body = CreatedAgent), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
#[post("/agents")]
pub async fn create(
    Admin(admin): Admin,
    body: web::Json<CreateAgent>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let (agent, token) = create_agent(
        state.chat.store(),
        &b.name,
        &b.email,
        b.role,
        &b.skills,
        b.max_concurrent.unwrap_or(5),
    )
    .await?;
    tracing::info!(admin = %admin.id, agent = %agent.id, role = %agent.role, "agent created");
    Ok(HttpResponse::Created().json(CreatedAgent { agent, token }))
}
