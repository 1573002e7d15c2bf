//! Escalation rules and their firings. The store keeps a rule's definition as the JSON the
//! admin wrote; checking it is the `escalation` module's job, before anything is saved.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use utoipa::ToSchema;

use super::{Store, StoreError, from_ms, now_ms};
use crate::domain::ConversationId;

/// A rule as stored: its definition is a checked `escalation::RuleSpec` in JSON.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StoredRule {
    pub id: String,
    pub name: String,
    #[schema(value_type = Object)]
    pub definition: serde_json::Value,
    pub enabled: bool,
    /// Rules are evaluated in ascending position.
    pub position: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// A rule that fired on a conversation, and why.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RecordedFiring {
    pub rule: String,
    pub reason: String,
    pub message_seq: Option<i64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

const COLUMNS: &str = "id, name, definition, enabled, position, created_at, updated_at";

fn stored_rule(row: &AnyRow) -> Result<StoredRule, StoreError> {
    let definition: String = row.try_get("definition")?;
    Ok(StoredRule {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        definition: serde_json::from_str(&definition)
            .map_err(|e| StoreError::Corrupt(format!("rule definition: {e}")))?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        position: row.try_get("position")?,
        created_at: from_ms(row.try_get("created_at")?)?,
        updated_at: from_ms(row.try_get("updated_at")?)?,
    })
}

fn name_taken(e: sqlx::Error) -> StoreError {
    if StoreError::is_unique_violation(&e) {
        StoreError::Conflict("a rule with this name exists")
    } else {
        e.into()
    }
}

impl Store {
    /// Every rule, in evaluation order.
    pub async fn rules(&self) -> Result<Vec<StoredRule>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM escalation_rules ORDER BY position, name"
        )))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(stored_rule).collect()
    }

    pub async fn rule(&self, id: &str) -> Result<StoredRule, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM escalation_rules WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?
        .ok_or(StoreError::NotFound("rule"))?;
        stored_rule(&row)
    }

    /// Adds a rule after the last one.
    pub async fn insert_rule(
        &self,
        name: &str,
        definition: &serde_json::Value,
        enabled: bool,
    ) -> Result<StoredRule, StoreError> {
        let now = now_ms();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO escalation_rules (id, name, definition, enabled, position, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, (SELECT COALESCE(MAX(position), 0) + 1 FROM escalation_rules), $5, $5) \
             RETURNING {COLUMNS}"
        )))
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(name)
        .bind(definition.to_string())
        .bind(i64::from(enabled))
        .bind(now)
        .fetch_one(&self.writer)
        .await
        .map_err(name_taken)?;
        stored_rule(&row)
    }

    pub async fn update_rule(
        &self,
        id: &str,
        name: &str,
        definition: &serde_json::Value,
        enabled: bool,
    ) -> Result<StoredRule, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE escalation_rules SET name = $1, definition = $2, enabled = $3, updated_at = $4 \
             WHERE id = $5 RETURNING {COLUMNS}"
        )))
        .bind(name)
        .bind(definition.to_string())
        .bind(i64::from(enabled))
        .bind(now_ms())
        .bind(id)
        .fetch_optional(&self.writer)
        .await
        .map_err(name_taken)?
        .ok_or(StoreError::NotFound("rule"))?;
        stored_rule(&row)
    }

    pub async fn delete_rule(&self, id: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM escalation_rules WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("rule"));
        }
        Ok(())
    }

    /// Stores the firings of one visitor message.
    pub async fn record_firings(
        &self,
        conversation: ConversationId,
        message_seq: Option<i64>,
        firings: &[(String, String)],
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        for (rule, reason) in firings {
            sqlx::query(
                "INSERT INTO escalations (id, conversation_id, rule, reason, message_seq, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(conversation.to_string())
            .bind(rule)
            .bind(reason)
            .bind(message_seq)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn firings(
        &self,
        conversation: ConversationId,
    ) -> Result<Vec<RecordedFiring>, StoreError> {
        let rows = sqlx::query(
            "SELECT rule, reason, message_seq, created_at FROM escalations \
             WHERE conversation_id = $1 ORDER BY created_at, id",
        )
        .bind(conversation.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RecordedFiring {
                    rule: row.try_get("rule")?,
                    reason: row.try_get("reason")?,
                    message_seq: row.try_get("message_seq")?,
                    created_at: from_ms(row.try_get("created_at")?)?,
                })
            })
            .collect()
    }
}
