use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Store, StoreError, enum_col, from_ms, json_col, now_ms, parse_col, parse_opt_col};
use crate::domain::{AgentId, Conversation, ConversationId, ConversationState, VisitorId};

pub(super) const COLUMNS: &str =
    "id, visitor_id, state, priority, assignee_id, skill, tags, last_seq, created_at, updated_at";

/// Narrows a conversation listing; `visible_to` hides other agents' conversations.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub state: Option<ConversationState>,
    pub assignee: Option<AgentId>,
    pub visible_to: Option<AgentId>,
}

/// Position in a listing ordered newest first: the last item's creation time and id
/// (conversations by default; feedback uses it too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor<Id = ConversationId> {
    pub created_at_ms: i64,
    pub id: Id,
}

impl<Id: std::fmt::Display + std::str::FromStr> Cursor<Id> {
    pub fn encode(&self) -> String {
        format!("{}_{}", self.created_at_ms, self.id)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (ms, id) = s.split_once('_')?;
        Some(Self {
            created_at_ms: ms.parse().ok()?,
            id: id.parse().ok()?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ConversationPage {
    pub items: Vec<Conversation>,
    pub next: Option<Cursor>,
}

pub(super) fn conversation(row: &AnyRow) -> Result<Conversation, StoreError> {
    Ok(Conversation {
        id: parse_col(row, "id")?,
        visitor_id: parse_col(row, "visitor_id")?,
        state: enum_col(row, "state", ConversationState::parse)?,
        priority: row.try_get("priority")?,
        assignee_id: parse_opt_col(row, "assignee_id")?,
        skill: row.try_get("skill")?,
        tags: json_col(row, "tags")?,
        last_seq: row.try_get("last_seq")?,
        created_at: from_ms(row.try_get("created_at")?)?,
        updated_at: from_ms(row.try_get("updated_at")?)?,
    })
}

impl Store {
    pub async fn create_visitor(&self) -> Result<VisitorId, StoreError> {
        let id = VisitorId::new();
        sqlx::query("INSERT INTO visitors (id, created_at) VALUES ($1, $2)")
            .bind(id.to_string())
            .bind(now_ms())
            .execute(&self.writer)
            .await?;
        Ok(id)
    }

    pub async fn visitor_exists(&self, id: VisitorId) -> Result<bool, StoreError> {
        let found: Option<String> = sqlx::query_scalar("SELECT id FROM visitors WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await?;
        Ok(found.is_some())
    }

    /// Starts a conversation in `bot` state.
    pub async fn create_conversation(
        &self,
        visitor: VisitorId,
    ) -> Result<Conversation, StoreError> {
        let now = now_ms();
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO conversations (id, visitor_id, state, created_at, updated_at) \
             VALUES ($1, $2, 'bot', $3, $3) RETURNING {COLUMNS}"
        )))
        .bind(ConversationId::new().to_string())
        .bind(visitor.to_string())
        .bind(now)
        .fetch_one(&self.writer)
        .await?;
        conversation(&row)
    }

    pub async fn conversation(&self, id: ConversationId) -> Result<Conversation, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM conversations WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await?
        .ok_or(StoreError::NotFound("conversation"))?;
        conversation(&row)
    }

    /// The visitor's newest conversation, whatever its state.
    pub async fn latest_conversation(
        &self,
        visitor: VisitorId,
    ) -> Result<Option<Conversation>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM conversations WHERE visitor_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        )))
        .bind(visitor.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(conversation).transpose()
    }

    /// Newest first, `limit` at a time, after `cursor`.
    pub async fn list_conversations(
        &self,
        filter: &ConversationFilter,
        cursor: Option<Cursor>,
        limit: u32,
    ) -> Result<ConversationPage, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM conversations WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, value: String| {
            binds.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", binds.len())));
        };
        if let Some(state) = filter.state {
            arg(&mut sql, " AND state = ?", state.as_str().into());
        }
        if let Some(assignee) = filter.assignee {
            arg(&mut sql, " AND assignee_id = ?", assignee.to_string());
        }
        if let Some(viewer) = filter.visible_to {
            arg(
                &mut sql,
                " AND (assignee_id IS NULL OR assignee_id = ?)",
                viewer.to_string(),
            );
        }
        let mut query_after = None;
        if let Some(c) = cursor {
            let n = binds.len();
            sql.push_str(&format!(
                " AND (created_at < ${a} OR (created_at = ${a} AND id < ${b}))",
                a = n + 1,
                b = n + 2
            ));
            query_after = Some(c);
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ");
        sql.push_str(&(i64::from(limit) + 1).to_string());

        let mut query = sqlx::query(AssertSqlSafe(sql));
        for b in binds {
            query = query.bind(b);
        }
        if let Some(c) = query_after {
            query = query.bind(c.created_at_ms).bind(c.id.to_string());
        }
        let rows = query.fetch_all(&self.reader).await?;
        let mut items = rows
            .iter()
            .map(conversation)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|c| Cursor {
                created_at_ms: c.created_at.timestamp_millis(),
                id: c.id,
            })
        } else {
            None
        };
        Ok(ConversationPage { items, next })
    }

    /// Gives an unowned conversation to `agent`, atomically: of racing claims exactly one wins,
    /// and an agent at capacity wins none (claims for one agent count under its row lock).
    pub async fn claim_conversation(
        &self,
        id: ConversationId,
        agent: AgentId,
    ) -> Result<Conversation, StoreError> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        self.lock_agent(&mut tx, agent).await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE conversations SET state = 'assigned', assignee_id = $1, assigned_at = $2, \
             updated_at = $2 \
             WHERE id = $3 AND state IN ('bot', 'queued') AND assignee_id IS NULL \
             AND (SELECT COUNT(*) FROM conversations c WHERE c.assignee_id = $1 AND c.state = 'assigned') \
                 < (SELECT max_concurrent FROM agents WHERE agents.id = $1) \
             RETURNING {COLUMNS}"
        )))
        .bind(agent.to_string())
        .bind(now)
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        match row {
            Some(row) => conversation(&row),
            None => {
                let current = self.conversation(id).await?;
                if current.assignee_id.is_some() || current.state == ConversationState::Resolved {
                    Err(StoreError::Conflict(
                        "conversation is not waiting for an agent",
                    ))
                } else {
                    Err(StoreError::Conflict("agent is at capacity"))
                }
            }
        }
    }

    /// Marks a conversation resolved; resolving twice is a conflict.
    pub async fn resolve_conversation(
        &self,
        id: ConversationId,
    ) -> Result<Conversation, StoreError> {
        self.transition(
            id,
            "state = 'resolved', resolved_at = $1, updated_at = $1",
            "state <> 'resolved'",
            None,
            "conversation is already resolved",
        )
        .await
    }

    /// Brings a resolved conversation back, owned by `agent`.
    pub async fn reopen_conversation(
        &self,
        id: ConversationId,
        agent: AgentId,
    ) -> Result<Conversation, StoreError> {
        self.transition(
            id,
            "state = 'assigned', assignee_id = $3, assigned_at = $1, resolved_at = NULL, updated_at = $1",
            "state = 'resolved'",
            Some(agent.to_string()),
            "only a resolved conversation can be reopened",
        )
        .await
    }

    /// A visitor wrote again after resolution: the bot takes the conversation back.
    pub async fn reopen_for_visitor(&self, id: ConversationId) -> Result<Conversation, StoreError> {
        self.transition(
            id,
            "state = 'bot', assignee_id = NULL, resolved_at = NULL, updated_at = $1",
            "state = 'resolved'",
            None,
            "only a resolved conversation can be reopened",
        )
        .await
    }

    pub(super) async fn transition(
        &self,
        id: ConversationId,
        set: &str,
        guard: &str,
        extra: Option<String>,
        conflict: &'static str,
    ) -> Result<Conversation, StoreError> {
        let mut query = sqlx::query(AssertSqlSafe(format!(
            "UPDATE conversations SET {set} WHERE id = $2 AND {guard} RETURNING {COLUMNS}"
        )))
        .bind(now_ms())
        .bind(id.to_string());
        if let Some(extra) = extra {
            query = query.bind(extra);
        }
        match query.fetch_optional(&self.writer).await? {
            Some(row) => conversation(&row),
            None => {
                self.conversation(id).await?;
                Err(StoreError::Conflict(conflict))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            created_at_ms: 1_700_000_000_123,
            id: ConversationId::new(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::<ConversationId>::decode("nope"), None);
        assert_eq!(Cursor::<ConversationId>::decode("12_notauuid"), None);
    }
}
