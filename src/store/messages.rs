use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Store, StoreError, enum_col, from_ms, now_ms, parse_col};
use crate::domain::{AuthorRole, ClientId, ConversationId, Message, MessageText};

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
}

/// The outcome of an append: new, or the earlier message with the same client id.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    New(Message),
    Duplicate(Message),
}

impl Appended {
    pub fn message(&self) -> &Message {
        match self {
            Appended::New(m) | Appended::Duplicate(m) => m,
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
    /// Stores a message with the conversation's next `seq`, in one transaction. A message whose
    /// client id was already stored in this conversation is not stored again.
    pub async fn append_message(&self, new: &NewMessage) -> Result<Appended, StoreError> {
        if let Some(existing) = self.message_by_client_id(new).await? {
            return Ok(Appended::Duplicate(existing));
        }
        match self.insert_message(new).await {
            Ok(m) => Ok(Appended::New(m)),
            Err(StoreError::Database(e)) if StoreError::is_unique_violation(&e) => self
                .message_by_client_id(new)
                .await?
                .map(Appended::Duplicate)
                .ok_or(StoreError::Database(e)),
            Err(e) => Err(e),
        }
    }

    async fn insert_message(&self, new: &NewMessage) -> Result<Message, StoreError> {
        let now = now_ms();
        let conversation = new.conversation_id.to_string();
        let mut tx = self.writer.begin().await?;
        let seq: i64 = sqlx::query_scalar(
            "UPDATE conversations SET last_seq = last_seq + 1, updated_at = $2 \
             WHERE id = $1 RETURNING last_seq",
        )
        .bind(&conversation)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("conversation"))?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO messages (conversation_id, seq, author, author_id, text, client_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
        )))
        .bind(&conversation)
        .bind(seq)
        .bind(new.author.as_str())
        .bind(new.author_id.clone())
        .bind(new.text.as_str())
        .bind(new.client_id.as_ref().map(|c| c.as_str().to_string()))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let stored = message(&row)?;
        tx.commit().await?;
        Ok(stored)
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
