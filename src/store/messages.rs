use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Store, StoreError, enum_col, from_ms, now_ms, parse_col, parse_opt_col};
use crate::domain::{
    AgentId, AuthorRole, ClientId, ConversationId, ConversationState, Message, MessageText,
};

const COLUMNS: &str =
    "conversation_id, seq, author, author_id, text, client_id, analysis, created_at";

/// A message about to be stored; the store gives it its `seq`.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub conversation_id: ConversationId,
    pub author: AuthorRole,
    pub author_id: Option<String>,
    pub text: MessageText,
    pub client_id: Option<ClientId>,
    /// Stored with the message: for a bot's reply, what it answered and from which sources.
    pub analysis: Option<serde_json::Value>,
}

impl NewMessage {
    /// The message as stored with `seq` at `sent_at`.
    pub(super) fn stored(&self, seq: i64, sent_at: chrono::DateTime<chrono::Utc>) -> Message {
        Message {
            conversation_id: self.conversation_id,
            seq,
            author: self.author,
            author_id: self.author_id.clone(),
            text: self.text.as_str().to_string(),
            client_id: self.client_id.as_ref().map(|c| c.as_str().to_string()),
            analysis: self.analysis.clone(),
            sent_at,
        }
    }
}

/// The outcome of an append: new (with the conversation's owner at that moment, to route
/// it), or the earlier message with the same client id.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    New {
        message: Message,
        owner: Option<AgentId>,
    },
    Duplicate(Message),
}

impl Appended {
    pub fn message(&self) -> &Message {
        match self {
            Appended::New { message, .. } | Appended::Duplicate(message) => message,
        }
    }
}

fn message(row: &AnyRow) -> Result<Message, StoreError> {
    let analysis: Option<String> = row.try_get("analysis")?;
    Ok(Message {
        conversation_id: parse_col(row, "conversation_id")?,
        seq: row.try_get("seq")?,
        author: enum_col(row, "author", AuthorRole::parse)?,
        author_id: row.try_get("author_id")?,
        text: row.try_get("text")?,
        client_id: row.try_get("client_id")?,
        analysis: analysis
            .map(|a| serde_json::from_str(&a))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("analysis: {e}")))?,
        sent_at: from_ms(row.try_get("created_at")?)?,
    })
}

impl Store {
    /// Stores a message with the conversation's next `seq`, through the group-commit writer.
    /// A message whose client id was already stored in this conversation is not stored again.
    pub async fn append_message(&self, new: &NewMessage) -> Result<Appended, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = super::appender::AppendRequest {
            new: new.clone(),
            reply,
        };
        if self.appends.send(request).await.is_err() {
            return Err(StoreError::Unavailable("the message writer has stopped"));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the message writer has stopped")))
    }

    /// One message in its own transaction: the path for resends and for batches that could
    /// not go through whole.
    pub(super) async fn append_one(&self, new: &NewMessage) -> Result<Appended, StoreError> {
        match self.insert_message(new).await {
            Ok(stored) => Ok(stored),
            Err(StoreError::Database(e)) if StoreError::is_unique_violation(&e) => self
                .message_by_client_id(new)
                .await?
                .map(Appended::Duplicate)
                .ok_or(StoreError::Database(e)),
            Err(e) => Err(e),
        }
    }

    /// Four statements on the hot path: a resend (same client id) fails the INSERT on the
    /// unique index, rolls back the `seq` increment, and is answered by `append_message`.
    async fn insert_message(&self, new: &NewMessage) -> Result<Appended, StoreError> {
        let now = now_ms();
        let conversation = new.conversation_id.to_string();
        let from_visitor = i64::from(new.author == AuthorRole::Visitor);
        let mut tx = self.writer.begin().await?;
        let bumped = sqlx::query(
            "UPDATE conversations SET last_seq = last_seq + 1, updated_at = $2 \
             WHERE id = $1 AND NOT (state = 'resolved' AND $3 = 1) RETURNING last_seq, assignee_id",
        )
        .bind(&conversation)
        .bind(now)
        .bind(from_visitor)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(bumped) = bumped else {
            drop(tx);
            return Err(self.why_not_bumped(new.conversation_id).await);
        };
        let seq: i64 = bumped.try_get("last_seq")?;
        let owner: Option<AgentId> = parse_opt_col(&bumped, "assignee_id")?;
        let stored = new.stored(seq, from_ms(now)?);
        sqlx::query(
            "INSERT INTO messages (conversation_id, seq, author, author_id, text, client_id, analysis, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&conversation)
        .bind(seq)
        .bind(new.author.as_str())
        .bind(new.author_id.clone())
        .bind(new.text.as_str())
        .bind(stored.client_id.clone())
        .bind(new.analysis.as_ref().map(|a| a.to_string()))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        self.announce_in(&mut tx, [crate::cluster::Event::message(&stored, owner)])
            .await?;
        tx.commit().await?;
        Ok(Appended::New {
            message: stored,
            owner,
        })
    }

    /// Why the `seq` UPDATE matched no row: a visitor writing into a resolved conversation,
    /// a conversation that is gone, or one that changed state meanwhile.
    pub(super) async fn why_not_bumped(&self, id: ConversationId) -> StoreError {
        match self.conversation(id).await {
            Ok(c) if c.state == ConversationState::Resolved => StoreError::Resolved,
            Ok(_) => StoreError::Conflict("conversation changed while storing; resend"),
            Err(e) => e,
        }
    }

    async fn message_by_client_id(&self, new: &NewMessage) -> Result<Option<Message>, StoreError> {
        let Some(client_id) = &new.client_id else {
            return Ok(None);
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM messages WHERE conversation_id = $1 AND client_id = $2"
        )))
        .bind(new.conversation_id.to_string())
        .bind(client_id.as_str())
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref().map(message).transpose()
    }

    /// Stores what the engine found in a message, once it has analysed it.
    pub async fn set_analysis(
        &self,
        conversation: ConversationId,
        seq: i64,
        analysis: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE messages SET analysis = $1 WHERE conversation_id = $2 AND seq = $3",
        )
        .bind(analysis.to_string())
        .bind(conversation.to_string())
        .bind(seq)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("message"));
        }
        Ok(())
    }

    /// The last `limit` messages of a conversation, oldest first.
    pub async fn recent_messages(
        &self,
        conversation: ConversationId,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM messages WHERE conversation_id = $1 ORDER BY seq DESC LIMIT $2"
        )))
        .bind(conversation.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        let mut messages = rows.iter().map(message).collect::<Result<Vec<_>, _>>()?;
        messages.reverse();
        Ok(messages)
    }

    /// Messages with `seq > after_seq`, oldest first, at most `limit`.
    pub async fn messages_after(
        &self,
        conversation: ConversationId,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Message>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM messages WHERE conversation_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3"
        )))
        .bind(conversation.to_string())
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(message).collect()
    }
}
