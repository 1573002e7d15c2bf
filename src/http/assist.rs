//! Agent assist: replies and articles the engine suggests for a conversation's latest visitor
//! message.

use actix_web::{get, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::AuthAgent;
use super::conversations::{conversation_id, visible};
use super::error::{ApiError, ErrorBody};
use crate::ai::{AiError, Reply, SuggestedArticle};
use crate::domain::AuthorRole;
use crate::startup::AppState;

/// Messages looked back through for the latest visitor message.
const LOOK_BACK: u32 = 50;

/// Suggestions for the latest visitor message.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistView {
    /// `seq` of the visitor message the suggestions answer; absent when the visitor has not
    /// written yet (the lists are then empty).
    message_seq: Option<i64>,
    /// Replies the agent could send, best first: `kind`, `text`, `intent`, `confidence`
    /// (0–1) and `sources` (`title`, `link`).
    #[schema(value_type = Vec<Object>)]
    replies: Vec<Reply>,
    /// Articles on the topic, best first, with their retrieval score.
    articles: Vec<SuggestedArticle>,
}

/// Suggested replies and articles for the latest visitor message, from the AI engine.
#[utoipa::path(
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = AssistView), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = []))
)]
#[get("/conversations/{id}/suggestions")]
pub async fn suggestions(
    AuthAgent(me): AuthAgent,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<web::Json<AssistView>, ApiError> {
    let conversation = visible(&state, &me, conversation_id(&path)?).await?;
    let bot = state.bot.as_ref().ok_or(ApiError::Unavailable(
        "the AI engine is off on this server (ai.enabled = false)",
    ))?;
    let recent = state
        .chat
        .store()
        .recent_messages(conversation.id, LOOK_BACK)
        .await?;
    let Some(latest) = recent
        .iter()
        .rev()
        .find(|m| m.author == AuthorRole::Visitor)
    else {
        return Ok(web::Json(AssistView {
            message_seq: None,
            replies: Vec::new(),
            articles: Vec::new(),
        }));
    };
    let analysis = bot
        .engine()
        .analyze(&latest.text)
        .await
        .map_err(|e| match e {
            AiError::Overloaded => {
                ApiError::Unavailable("the AI engine is busy; try again in a moment")
            }
            other => {
                tracing::error!(error = ?other, "analysis for agent assist failed");
                ApiError::Unavailable("the AI engine failed on this message")
            }
        })?;
    let suggestions = bot.engine().suggest(&analysis);
    Ok(web::Json(AssistView {
        message_seq: Some(latest.seq),
        replies: suggestions.replies,
        articles: suggestions.articles,
    }))
}
