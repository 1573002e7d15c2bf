//! Feedback over REST: ratings of bot answers and conversations, newest first. Admins see all;
//! an agent sees the ratings of the conversations assigned to them (resolved ones included).

use actix_web::{get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::AuthAgent;
use super::conversations::page_size;
use super::error::{ApiError, ErrorBody};
use crate::domain::FeedbackKind;
use crate::startup::AppState;
use crate::store::{Feedback, FeedbackCursor, FeedbackFilter};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FeedbackQuery {
    /// Only ratings given at or after this time (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// Only ratings given before this time (RFC 3339).
    to: Option<DateTime<Utc>>,
    /// Only `answer` or only `conversation` ratings.
    kind: Option<FeedbackKind>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackList {
    items: Vec<Feedback>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

/// Ratings, newest first (a replaced rating counts at the time it was replaced).
#[utoipa::path(
    params(FeedbackQuery),
    responses((status = 200, body = FeedbackList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
#[get("/feedback")]
pub async fn list(
    AuthAgent(me): AuthAgent,
    query: web::Query<FeedbackQuery>,
    state: web::Data<AppState>,
) -> Result<web::Json<FeedbackList>, ApiError> {
    let query = query.into_inner();
    let cursor =
        match query.cursor.as_deref() {
            None => None,
            Some(c) => Some(FeedbackCursor::decode(c).ok_or_else(|| {
                ApiError::BadRequest("cursor is not one this API gave out".into())
            })?),
        };
    let filter = FeedbackFilter {
        from_ms: query.from.map(|t| t.timestamp_millis()),
        to_ms: query.to.map(|t| t.timestamp_millis()),
        kind: query.kind,
        assignee: (!me.is_admin()).then_some(me.id),
    };
    let page = state
        .chat
        .store()
        .list_feedback(&filter, cursor, page_size(query.limit)?)
        .await?;
    Ok(web::Json(FeedbackList {
        items: page.items,
        next_cursor: page.next.map(|c| c.encode()),
    }))
}
