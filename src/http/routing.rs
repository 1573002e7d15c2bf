//! Routing endpoints of the agent console: the queue, assignment by an admin, transfer to an
//! agent or a skill, and handing a conversation back to the bot.

use actix_web::{get, post, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::{Admin, AuthAgent};
use super::conversations::{conversation_id, visible};
use super::error::{ApiError, ErrorBody};
use crate::domain::{Agent, AgentId, Conversation};
use crate::startup::AppState;

/// Queued conversations, most urgent first, then longest waiting.
#[utoipa::path(responses((status = 200, body = Vec<Conversation>)), security(("bearer" = [])))]
#[get("/queue")]
pub async fn queue(
    AuthAgent(_me): AuthAgent,
    state: web::Data<AppState>,
) -> Result<web::Json<Vec<Conversation>>, ApiError> {
    Ok(web::Json(state.chat.store().queue(500).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignTo {
    agent_id: AgentId,
}

/// Gives a waiting conversation to a chosen agent (admins only); it must have free capacity.
#[utoipa::path(params(("id" = String, Path)), request_body = AssignTo, responses((status = 200, body = Conversation), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
#[post("/conversations/{id}/assign")]
pub async fn assign(
    _admin: Admin,
    path: web::Path<String>,
    body: web::Json<AssignTo>,
    state: web::Data<AppState>,
) -> Result<web::Json<Conversation>, ApiError> {
    let id = conversation_id(&path)?;
    let agent = state.chat.store().agent(body.agent_id).await?;
    Ok(web::Json(state.desk.assign(id, agent.id).await?))
}

/// Where a transfer goes: another agent, or back to the queue for a skill.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum TransferTo {
    AgentId(AgentId),
    Skill(String),
}

/// Passes an assigned conversation to another agent or to the queue of a skill (its assignee
/// or an admin).
#[utoipa::path(params(("id" = String, Path)), request_body = TransferTo, responses((status = 200, body = Conversation), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
#[post("/conversations/{id}/transfer")]
pub async fn transfer(
    AuthAgent(me): AuthAgent,
    path: web::Path<String>,
    body: web::Json<TransferTo>,
    state: web::Data<AppState>,
) -> Result<web::Json<Conversation>, ApiError> {
    let conversation = owned(&state, &me, &path).await?;
    let moved = match body.into_inner() {
        TransferTo::AgentId(to) => {
            state.chat.store().agent(to).await?;
            state.chat.transfer_to_agent(conversation.id, to).await?
        }
        TransferTo::Skill(skill) => {
            let skill = skill.trim();
            if skill.is_empty() {
                return Err(ApiError::Invalid("skill must not be empty".into()));
            }
            let queued = state.chat.transfer_to_skill(conversation.id, skill).await?;
            state.desk.route().await?;
            state.chat.store().conversation(queued.id).await?
        }
    };
    Ok(web::Json(moved))
}

/// Hands a queued or assigned conversation back to the bot (its assignee or an admin).
#[utoipa::path(params(("id" = String, Path)), responses((status = 200, body = Conversation), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
#[post("/conversations/{id}/handback")]
pub async fn hand_back(
    AuthAgent(me): AuthAgent,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<web::Json<Conversation>, ApiError> {
    let conversation = owned(&state, &me, &path).await?;
    Ok(web::Json(
        state.chat.hand_back_to_bot(conversation.id).await?,
    ))
}

/// The conversation, if the caller is its assignee or an admin.
async fn owned(state: &AppState, me: &Agent, raw_id: &str) -> Result<Conversation, ApiError> {
    let conversation = visible(state, me, conversation_id(raw_id)?).await?;
    if conversation.assignee_id == Some(me.id) || me.is_admin() {
        Ok(conversation)
    } else {
        Err(ApiError::Forbidden(
            "only the assigned agent or an admin can do this",
        ))
    }
}
