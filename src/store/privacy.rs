//! Retention and privacy: export or delete everything about one visitor, purge what is older
//! than the retention period, and the audit log that records each of these.

use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};
use utoipa::ToSchema;

use super::{Feedback, Store, StoreError, from_ms, now_ms};
use crate::domain::{Conversation, Message, VisitorId};

/// Everything stored about one visitor.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VisitorExport {
    pub visitor_id: VisitorId,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[schema(value_type = Object)]
    pub attributes: serde_json::Value,
    pub conversations: Vec<ConversationExport>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConversationExport {
    pub conversation: Conversation,
    pub messages: Vec<Message>,
    pub feedback: Vec<Feedback>,
}

/// How much a deletion or purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Removed {
    pub visitors: u64,
    pub conversations: u64,
    pub messages: u64,
}

/// One audit record.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntry {
    pub at: chrono::DateTime<chrono::Utc>,
    /// The agent's id, or `system` for the retention job.
    pub actor: String,
    pub action: String,
    pub subject: Option<String>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// The one value the deletion queries are bound to.
enum Arg {
    Text(String),
    Int(i64),
}

impl Store {
    pub async fn export_visitor(&self, visitor: VisitorId) -> Result<VisitorExport, StoreError> {
        let row = sqlx::query("SELECT attributes, created_at FROM visitors WHERE id = $1")
            .bind(visitor.to_string())
            .fetch_optional(&self.reader)
            .await?
            .ok_or(StoreError::NotFound("visitor"))?;
        let attributes: String = row.try_get("attributes")?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM conversations WHERE visitor_id = $1 ORDER BY created_at, id",
        )
        .bind(visitor.to_string())
        .fetch_all(&self.reader)
        .await?;
        let mut conversations = Vec::with_capacity(ids.len());
        for id in ids {
            let id = id
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("conversation id {id:?}")))?;
            let conversation = self.conversation(id).await?;
            let messages = self.messages_after(id, 0, u32::MAX).await?;
            let feedback = self.feedback_of(id).await?;
            conversations.push(ConversationExport {
                conversation,
                messages,
                feedback,
            });
        }
        Ok(VisitorExport {
            visitor_id: visitor,
            created_at: from_ms(row.try_get("created_at")?)?,
            attributes: serde_json::from_str(&attributes)
                .map_err(|e| StoreError::Corrupt(format!("attributes: {e}")))?,
            conversations,
        })
    }

    /// Deletes a visitor with their conversations, messages and feedback.
    pub async fn delete_visitor(&self, visitor: VisitorId) -> Result<Removed, StoreError> {
        self.remove(
            "visitor_id = $1",
            "id = $1",
            Arg::Text(visitor.to_string()),
            Some("visitor"),
        )
        .await
    }

    /// Deletes conversations untouched since `cutoff_ms`, and visitors left with none.
    pub async fn purge_before(&self, cutoff_ms: i64) -> Result<Removed, StoreError> {
        self.remove(
            "updated_at < $1",
            "created_at < $1 AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.visitor_id = visitors.id)",
            Arg::Int(cutoff_ms),
            None,
        )
        .await
    }

    async fn remove(
        &self,
        conversations_where: &str,
        visitors_where: &str,
        arg: Arg,
        must_exist: Option<&'static str>,
    ) -> Result<Removed, StoreError> {
        let bind = |sql: String| {
            let q = sqlx::query(AssertSqlSafe(sql));
            match &arg {
                Arg::Text(t) => q.bind(t.clone()),
                Arg::Int(n) => q.bind(*n),
            }
        };
        let mut tx = self.writer.begin().await?;
        let messages = bind(format!(
            "DELETE FROM messages WHERE conversation_id IN (SELECT id FROM conversations WHERE {conversations_where})"
        ))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let conversations = bind(format!(
            "DELETE FROM conversations WHERE {conversations_where}"
        ))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let visitors = bind(format!("DELETE FROM visitors WHERE {visitors_where}"))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if let Some(what) = must_exist
            && visitors == 0
        {
            return Err(StoreError::NotFound(what));
        }
        tx.commit().await?;
        Ok(Removed {
            visitors,
            conversations,
            messages,
        })
    }

    pub async fn audit(
        &self,
        actor: &str,
        action: &'static str,
        subject: Option<String>,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(now_ms())
        .bind(actor)
        .bind(action)
        .bind(subject)
        .bind(detail.to_string())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Newest first.
    pub async fn audit_entries(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT at, actor, action, subject, detail FROM audit_log ORDER BY at DESC, id DESC LIMIT {limit}"
        )))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let detail: String = row.try_get("detail")?;
                Ok(AuditEntry {
                    at: from_ms(row.try_get("at")?)?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    subject: row.try_get("subject")?,
                    detail: serde_json::from_str(&detail)
                        .map_err(|e| StoreError::Corrupt(format!("audit detail: {e}")))?,
                })
            })
            .collect()
    }
}
