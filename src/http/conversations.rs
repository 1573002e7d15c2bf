//! Conversation endpoints of the agent console.

use actix_web::{HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::AuthAgent;
use super::error::{ApiError, ErrorBody};
use crate::domain::{
    AgentId, AuthorRole, ClientId, Conversation, ConversationId, ConversationState, Message,
    MessageText, TextError,
};
use crate::startup::AppState;
use crate::store::{Appended, ConversationFilter, Cursor, Feedback, NewMessage, RecordedFiring};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only conversations in this state.
    state: Option<ConversationState>,
    /// Only conversations assigned to this agent id, or `me`.
    assignee: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationList {
    items: Vec<Conversation>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

pub(super) fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => Ok(n),
        _ => Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_PAGE}"
        ))),
    }
}

/// Lists conversations, newest first. Agents see unassigned ones and their own; admins all.
#[utoipa::path(
    params(ListQuery),
    responses((status = 200, body = ConversationList), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
#[get("/conversations")]
pub async fn list(
    AuthAgent(me): AuthAgent,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<web::Json<ConversationList>, ApiError> {
    let query = query.into_inner();
    let assignee = match query.assignee.as_deref() {
        None => None,
        Some("me") => Some(me.id),
        Some(id) => Some(
            id.parse::<AgentId>()
                .map_err(|_| ApiError::BadRequest("assignee must be an agent id or `me`".into()))?,
        ),
    };
    let cursor =
        match query.cursor.as_deref() {
            None => None,
            Some(c) => Some(Cursor::decode(c).ok_or_else(|| {
                ApiError::BadRequest("cursor is not one this API gave out".into())
            })?),
        };
    let filter = ConversationFilter {
        state: query.state,
        assignee,
        visible_to: (!me.is_admin()).then_some(me.id),
    };
    let page = state
        .chat
        .store()
        .list_conversations(&filter, cursor, page_size(query.limit)?)
        .await?;
    Ok(web::Json(ConversationList {
        items: page.items,
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

pub(super) async fn visible(
    state: &AppState,
    me: &crate::domain::Agent,
    id: ConversationId,
) -> Result<Conversation, ApiError> {
    let conversation = state.chat.store().conversation(id).await?;
    if me.may_see(&conversation) {
        Ok(conversation)
    } else {
        Err(ApiError::Forbidden(
            "this conversation belongs to another agent",
        ))
    }
}

pub(super) fn conversation_id(raw: &str) -> Result<ConversationId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("conversation"))
}

/// A conversation as the console shows it: with the handoff summary and the rules that fired.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationView {
    #[serde(flatten)]
    conversation: Conversation,
    /// What the agent needs to take over, written when the conversation was escalated.
    #[schema(value_type = Option<Object>)]
    handoff: Option<serde_json::Value>,
    /// Every escalation rule that fired, with its reason and the message that triggered it.
    escalations: Vec<RecordedFiring>,
    /// The visitor's ratings of bot answers and of the conversation, oldest first.
    feedback: Vec<Feedback>,
}

/// One conversation.
#[utoipa::path(
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = ConversationView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
#[get("/conversations/{id}")]
pub async fn get_one(
    AuthAgent(me): AuthAgent,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<web::Json<ConversationView>, ApiError> {
    let conversation = visible(&state, &me, conversation_id(&path)?).await?;
    let store = state.chat.store();
    Ok(web::Json(ConversationView {
        handoff: store.handoff(conversation.id).await?,
        escalations: store.firings(conversation.id).await?,
        feedback: store.feedback_of(conversation.id).await?,
        conversation,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    /// Only messages with a greater `seq` (default 0: from the start).
    after_seq: Option<i64>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    items: Vec<Message>,
    /// Pass as `after_seq` for the next page; absent when there is nothing more yet.
    next_after_seq: Option<i64>,
}

/// Messages of a conversation in `seq` order.
#[utoipa::path(
    params(("id" = String, Path, description = "Conversation id"), MessagesQuery),
    responses((status = 200, body = MessageList), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
#[get("/conversations/{id}/messages")]
pub async fn messages(
    AuthAgent(me): AuthAgent,
    path: web::Path<String>,
    query: web::Query<MessagesQuery>,
    state: web::Data<AppState>,
) -> Result<web::Json<MessageList>, ApiError> {
    let conversation = visible(&state, &me, conversation_id(&path)?).await?;
    let limit = page_size(query.limit)?;
    let items = state
        .chat
        .store()
        .messages_after(conversation.id, query.after_seq.unwrap_or(0), limit)
        .await?;
    let next_after_seq = (items.len() == limit as usize)
        .then(|| items.last().map(|m| m.seq))
        .flatten();
    Ok(web::Json(MessageList {
        items,
        next_after_seq,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessage {
    text: String,
    /// Your id for this message: a resend with the same id is stored once.
    client_id: Option<String>,
}

/// Sends an agent message to the visitor. 201 when stored, 200 when this `client_id` was
/// already stored (the earlier message is returned).
#[utoipa::path(
    params(("id" = String, Path, description = "Conversation id")),
    request_body = PostMessage,
    responses((status = 201, body = Message), (status = 200, body = Message), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []))
)]
#[post("/conversations/{id}/messages")]
pub async fn post_message(
    AuthAgent(me): AuthAgent,
    path: web::Path<String>,
    body: web::Json<PostMessage>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let conversation = visible(&state, &me, conversation_id(&path)?).await?;
    if conversation.assignee_id != Some(me.id) && !me.is_admin() {
        return Err(ApiError::Forbidden(
            "claim the conversation before replying",
        ));
    }
    let body = body.into_inner();
    let invalid = |e: TextError| ApiError::Invalid(e.to_string());
    let text =
        MessageText::parse(body.text, state.settings.websocket.max_text_bytes).map_err(invalid)?;
    let client_id = match body.client_id {
        Some(c) => ClientId::parse(c).map_err(invalid)?,
        None => ClientId::generate(),
    };
    let new = NewMessage {
        conversation_id: conversation.id,
        author: AuthorRole::Agent,
        author_id: Some(me.id.to_string()),
        text,
        client_id: Some(client_id),
        analysis: None,
    };
    Ok(match state.chat.post(new, None).await? {
        Appended::New { message, .. } => HttpResponse::Created().json(message),
        Appended::Duplicate(m) => HttpResponse::Ok().json(m),
    })
}

/// Takes an unassigned conversation. Of racing claims exactly one wins; the rest get 409.
#[utoipa::path(
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 409, body = ErrorBody)),
    security(("bearer" = []))
)]
#[post("/conversations/{id}/claim")]
pub async fn claim(
    AuthAgent(me): AuthAgent,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<web::Json<Conversation>, ApiError> {
    Ok(web::Json(
        state.chat.claim(conversation_id(&path)?, me.id).await?,
    ))
}

/// Marks a conversation resolved (its assignee or an admin).
#[utoipa::path(
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = []))
)]
#[post("/conversations/{id}/resolve")]
pub async fn resolve(
    AuthAgent(me): AuthAgent,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<web::Json<Conversation>, ApiError> {
    let conversation = visible(&state, &me, conversation_id(&path)?).await?;
    if conversation.assignee_id != Some(me.id) && !me.is_admin() {
        return Err(ApiError::Forbidden(
            "only the assigned agent or an admin can resolve",
        ));
    }
    Ok(web::Json(state.chat.resolve(conversation.id).await?))
}

/// Reopens a resolved conversation and assigns it to the caller.
#[utoipa::path(
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 409, body = ErrorBody)),
    security(("bearer" = []))
)]
#[post("/conversations/{id}/reopen")]
pub async fn reopen(
    AuthAgent(me): AuthAgent,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<web::Json<Conversation>, ApiError> {
    let conversation = visible(&state, &me, conversation_id(&path)?).await?;
    Ok(web::Json(state.chat.reopen(conversation.id, me.id).await?))
}
