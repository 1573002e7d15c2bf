//! Feedback: ratings of bot answers and of resolved conversations. One rating per target (a
//! bot message, or the conversation); rating again replaces it. Each insert checks its target
//! in the same statement, so a rating never lands on a visitor message or an open conversation.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Store, StoreError, enum_col, from_ms, now_ms, parse_col};
use crate::domain::{
    AgentId, AnswerRating, ConversationId, ConversationState, CsatScore, FeedbackKind,
};

const COLUMNS: &str =
    "f.id, f.conversation_id, f.kind, f.message_seq, f.rating, f.comment, f.created_at";

/// When a rating replaces an earlier one on the same target.
const UPSERT: &str = "ON CONFLICT (conversation_id, kind, COALESCE(message_seq, 0)) DO UPDATE \
     SET rating = excluded.rating, comment = excluded.comment, created_at = excluded.created_at";

/// One stored rating, as the console shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Feedback {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    pub conversation_id: ConversationId,
    pub kind: FeedbackKind,
    /// The rated bot message (`answer` only).
    pub message_seq: Option<i64>,
    /// `up` or `down` (`answer` only).
    pub rating: Option<AnswerRating>,
    /// 1 to 5 (`conversation` only).
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 5)]
    pub score: Option<CsatScore>,
    pub comment: Option<String>,
    /// When the rating was given (or last replaced).
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Why a rating was not stored.
#[derive(Debug, thiserror::Error)]
pub enum RateError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("only the bot's answers can be rated")]
    NotAnAnswer,
    #[error("the conversation can be rated once it is resolved")]
    NotResolved,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RateError {
    fn from(e: sqlx::Error) -> Self {
        RateError::Store(e.into())
    }
}

/// Narrows a feedback listing; `assignee` keeps the conversations of one agent.
#[derive(Debug, Clone, Default)]
pub struct FeedbackFilter {
    /// Unix milliseconds, inclusive.
    pub from_ms: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub to_ms: Option<i64>,
    pub kind: Option<FeedbackKind>,
    pub assignee: Option<AgentId>,
}

/// Position in a feedback listing, newest first.
pub type FeedbackCursor = super::Cursor<Uuid>;

#[derive(Debug, Clone)]
pub struct FeedbackPage {
    pub items: Vec<Feedback>,
    pub next: Option<FeedbackCursor>,
}

fn feedback(row: &AnyRow) -> Result<Feedback, StoreError> {
    let kind = enum_col(row, "kind", FeedbackKind::parse)?;
    let value: i64 = row.try_get("rating")?;
    let corrupt = || StoreError::Corrupt(format!("{} rating {value}", kind.as_str()));
    let (rating, score) = match kind {
        FeedbackKind::Answer => (
            Some(AnswerRating::from_stored(value).ok_or_else(corrupt)?),
            None,
        ),
        FeedbackKind::Conversation => (
            None,
            Some(CsatScore::try_from(value).map_err(|_| corrupt())?),
        ),
    };
    Ok(Feedback {
        id: parse_col(row, "id")?,
        conversation_id: parse_col(row, "conversation_id")?,
        kind,
        message_seq: row.try_get("message_seq")?,
        rating,
        score,
        comment: row.try_get("comment")?,
        created_at: from_ms(row.try_get("created_at")?)?,
    })
}

impl Store {
    /// Rates the bot message `seq` of `conversation`, replacing an earlier rating of it.
    pub async fn rate_answer(
        &self,
        conversation: ConversationId,
        seq: i64,
        rating: AnswerRating,
        comment: Option<&str>,
    ) -> Result<(), RateError> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO feedback (id, conversation_id, message_seq, kind, rating, comment, created_at) \
             SELECT $1, conversation_id, seq, 'answer', $2, $3, $4 FROM messages \
             WHERE conversation_id = $5 AND seq = $6 AND author = 'bot' {UPSERT}"
        )))
        .bind(Uuid::now_v7().to_string())
        .bind(rating.stored())
        .bind(comment.map(str::to_owned))
        .bind(now_ms())
        .bind(conversation.to_string())
        .bind(seq)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() > 0 {
            return Ok(());
        }
        let author: Option<String> = sqlx::query_scalar(
            "SELECT author FROM messages WHERE conversation_id = $1 AND seq = $2",
        )
        .bind(conversation.to_string())
        .bind(seq)
        .fetch_optional(&self.writer)
        .await?;
        Err(match author {
            None => RateError::NotFound("message"),
            Some(_) => RateError::NotAnAnswer,
        })
    }

    /// Scores a resolved conversation, replacing an earlier score of it.
    pub async fn rate_conversation(
        &self,
        conversation: ConversationId,
        score: CsatScore,
        comment: Option<&str>,
    ) -> Result<(), RateError> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO feedback (id, conversation_id, message_seq, kind, rating, comment, created_at) \
             SELECT $1, id, NULL, 'conversation', $2, $3, $4 FROM conversations \
             WHERE id = $5 AND state = 'resolved' {UPSERT}"
        )))
        .bind(Uuid::now_v7().to_string())
        .bind(i64::from(score))
        .bind(comment.map(str::to_owned))
        .bind(now_ms())
        .bind(conversation.to_string())
        .execute(&self.writer)
        .await?;
        if done.rows_affected() > 0 {
            return Ok(());
        }
        match self.conversation(conversation).await {
            Ok(c) if c.state == ConversationState::Resolved => Err(RateError::Store(
                StoreError::Conflict("conversation changed while rating; try again"),
            )),
            Ok(_) => Err(RateError::NotResolved),
            Err(StoreError::NotFound(what)) => Err(RateError::NotFound(what)),
            Err(e) => Err(e.into()),
        }
    }

    /// Every rating of one conversation, oldest first.
    pub async fn feedback_of(
        &self,
        conversation: ConversationId,
    ) -> Result<Vec<Feedback>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM feedback f WHERE f.conversation_id = $1 \
             ORDER BY f.created_at, f.id"
        )))
        .bind(conversation.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(feedback).collect()
    }

    /// Ratings newest first, `limit` at a time, after `cursor`.
    pub async fn list_feedback(
        &self,
        filter: &FeedbackFilter,
        cursor: Option<FeedbackCursor>,
        limit: u32,
    ) -> Result<FeedbackPage, StoreError> {
        enum Arg {
            Text(String),
            Int(i64),
        }
        let mut sql = format!(
            "SELECT {COLUMNS} FROM feedback f JOIN conversations c ON c.id = f.conversation_id \
             WHERE 1 = 1"
        );
        let mut args = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, value: Arg| {
            args.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        };
        if let Some(from) = filter.from_ms {
            arg(&mut sql, " AND f.created_at >= ?", Arg::Int(from));
        }
        if let Some(to) = filter.to_ms {
            arg(&mut sql, " AND f.created_at < ?", Arg::Int(to));
        }
        if let Some(kind) = filter.kind {
            arg(&mut sql, " AND f.kind = ?", Arg::Text(kind.as_str().into()));
        }
        if let Some(agent) = filter.assignee {
            arg(
                &mut sql,
                " AND c.assignee_id = ?",
                Arg::Text(agent.to_string()),
            );
        }
        if let Some(c) = cursor {
            arg(
                &mut sql,
                " AND (f.created_at < ?",
                Arg::Int(c.created_at_ms),
            );
            arg(&mut sql, " OR (f.created_at = ?", Arg::Int(c.created_at_ms));
            arg(&mut sql, " AND f.id < ?))", Arg::Text(c.id.to_string()));
        }
        sql.push_str(" ORDER BY f.created_at DESC, f.id DESC LIMIT ");
        sql.push_str(&(i64::from(limit) + 1).to_string());

        let mut query = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            query = match a {
                Arg::Text(t) => query.bind(t),
                Arg::Int(i) => query.bind(i),
            };
        }
        let rows = query.fetch_all(&self.reader).await?;
        let mut items = rows.iter().map(feedback).collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|f| FeedbackCursor {
                created_at_ms: f.created_at.timestamp_millis(),
                id: f.id,
            })
        } else {
            None
        };
        Ok(FeedbackPage { items, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = FeedbackCursor {
            created_at_ms: 1_700_000_000_123,
            id: Uuid::now_v7(),
        };
        assert_eq!(FeedbackCursor::decode(&c.encode()), Some(c));
        assert_eq!(FeedbackCursor::decode("12"), None);
        assert_eq!(FeedbackCursor::decode("x_0193"), None);
    }
}
