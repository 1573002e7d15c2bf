//! Handoff and routing in the database: queueing, the queue's order, agents' load, transfers,
//! handing back to the bot and re-queueing an agent's conversations. Every change is one
//! conditional UPDATE, so replicas and racing requests cannot both win.

use sqlx::{AssertSqlSafe, Row};

use super::conversations::{COLUMNS, conversation};
use super::{Store, StoreError, now_ms, parse_col};
use crate::domain::{AgentId, Conversation, ConversationId};

/// How the queue is ordered: most urgent first, then longest waiting.
const QUEUE_ORDER: &str = "priority DESC, queued_at ASC, id ASC";

/// An online agent and how many conversations they hold.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentLoad {
    pub id: AgentId,
    pub skills: Vec<String>,
    pub max_concurrent: i64,
    pub assigned: i64,
    /// When they last got a conversation; `None` sorts first (idle longest).
    pub last_assigned_at: Option<i64>,
}

/// What an escalation sets on a conversation.
#[derive(Debug, Clone, Default)]
pub struct Escalation {
    pub priority: i64,
    pub skill: Option<String>,
    pub tags: Vec<String>,
    pub handoff: serde_json::Value,
}

impl Store {
    /// Moves a conversation from the bot to the queue. Tags are merged, the priority only rises.
    pub async fn escalate_conversation(
        &self,
        id: ConversationId,
        escalation: &Escalation,
    ) -> Result<Conversation, StoreError> {
        let current = self.conversation(id).await?;
        let mut tags = current.tags.clone();
        for tag in &escalation.tags {
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        let now = now_ms();
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE conversations SET state = 'queued', priority = $1, skill = $2, tags = $3, \
             handoff = $4, queued_at = $5, escalated_at = COALESCE(escalated_at, $5), updated_at = $5 \
             WHERE id = $6 AND state = 'bot' RETURNING {COLUMNS}"
        )))
        .bind(current.priority.max(escalation.priority))
        .bind(escalation.skill.clone())
        .bind(to_json(&tags)?)
        .bind(escalation.handoff.to_string())
        .bind(now)
        .bind(id.to_string())
        .fetch_optional(&self.writer)
        .await?;
        match row {
            Some(row) => conversation(&row),
            None => Err(StoreError::Conflict("conversation is not with the bot")),
        }
    }

    /// Merges tags into a conversation and raises its priority to at least `priority`.
    pub async fn annotate_conversation(
        &self,
        id: ConversationId,
        tags: &[String],
        priority: Option<i64>,
    ) -> Result<Conversation, StoreError> {
        let current = self.conversation(id).await?;
        let mut merged = current.tags.clone();
        for tag in tags {
            if !merged.contains(tag) {
                merged.push(tag.clone());
            }
        }
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE conversations SET tags = $1, priority = $2, updated_at = $3 \
             WHERE id = $4 RETURNING {COLUMNS}"
        )))
        .bind(to_json(&merged)?)
        .bind(priority.map_or(current.priority, |p| current.priority.max(p)))
        .bind(now_ms())
        .bind(id.to_string())
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref()
            .map(conversation)
            .ok_or(StoreError::NotFound("conversation"))?
    }

    /// The handoff summary stored when the conversation was escalated.
    pub async fn handoff(
        &self,
        id: ConversationId,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let raw: Option<Option<String>> =
            sqlx::query_scalar("SELECT handoff FROM conversations WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.reader)
                .await?;
        let raw = raw.ok_or(StoreError::NotFound("conversation"))?;
        raw.map(|r| {
            serde_json::from_str(&r).map_err(|e| StoreError::Corrupt(format!("handoff: {e}")))
        })
        .transpose()
    }

    /// Queued conversations, most urgent first, then longest waiting.
    pub async fn queue(&self, limit: i64) -> Result<Vec<Conversation>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM conversations WHERE state = 'queued' ORDER BY {QUEUE_ORDER} LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(conversation).collect()
    }

    /// 1-based place of a queued conversation in the queue.
    pub async fn queue_position(&self, id: ConversationId) -> Result<i64, StoreError> {
        let ahead: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM conversations q, conversations c \
             WHERE c.id = $1 AND q.state = 'queued' AND q.id <> c.id \
             AND (q.priority > c.priority OR (q.priority = c.priority AND \
                  (q.queued_at < c.queued_at OR (q.queued_at = c.queued_at AND q.id < c.id))))",
        )
        .bind(id.to_string())
        .fetch_one(&self.reader)
        .await?;
        Ok(ahead + 1)
    }

    /// Median wait from queued to assigned over the last `n` assignments, in milliseconds.
    pub async fn recent_median_wait_ms(&self, n: i64) -> Result<Option<i64>, StoreError> {
        let mut waits: Vec<i64> = sqlx::query_scalar(
            "SELECT assigned_at - queued_at FROM conversations \
             WHERE assigned_at IS NOT NULL AND queued_at IS NOT NULL AND assigned_at >= queued_at \
             ORDER BY assigned_at DESC LIMIT $1",
        )
        .bind(n)
        .fetch_all(&self.reader)
        .await?;
        waits.sort_unstable();
        Ok(waits.get(waits.len() / 2).copied())
    }

    /// Online agents with their current number of assigned conversations.
    pub async fn online_agent_loads(&self) -> Result<Vec<AgentLoad>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, a.skills, a.max_concurrent, a.last_assigned_at, \
             (SELECT COUNT(*) FROM conversations c WHERE c.assignee_id = a.id AND c.state = 'assigned') AS assigned \
             FROM agents a WHERE a.status = 'online'",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let skills: String = row.try_get("skills")?;
                Ok(AgentLoad {
                    id: parse_col(row, "id")?,
                    skills: serde_json::from_str(&skills)
                        .map_err(|e| StoreError::Corrupt(format!("skills: {e}")))?,
                    max_concurrent: row.try_get("max_concurrent")?,
                    assigned: row.try_get("assigned")?,
                    last_assigned_at: row.try_get("last_assigned_at")?,
                })
            })
            .collect()
    }

    /// Notes that `agent` just got a conversation, for the longest-idle tie-break.
    pub async fn touch_assignment(&self, agent: AgentId) -> Result<(), StoreError> {
        sqlx::query("UPDATE agents SET last_assigned_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(agent.to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Gives an assigned conversation to another agent with free capacity.
    pub async fn transfer_to_agent(
        &self,
        id: ConversationId,
        to: AgentId,
    ) -> Result<Conversation, StoreError> {
        let mut tx = self.writer.begin().await?;
        self.lock_agent(&mut tx, to).await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE conversations SET assignee_id = $1, assigned_at = $2, updated_at = $2 \
             WHERE id = $3 AND state = 'assigned' AND assignee_id <> $1 \
             AND (SELECT COUNT(*) FROM conversations c WHERE c.assignee_id = $1 AND c.state = 'assigned') \
                 < (SELECT max_concurrent FROM agents WHERE agents.id = $1 AND agents.status = 'online') \
             RETURNING {COLUMNS}"
        )))
        .bind(to.to_string())
        .bind(now_ms())
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        match row {
            Some(row) => conversation(&row),
            None => {
                let current = self.conversation(id).await?;
                if current.state != crate::domain::ConversationState::Assigned {
                    Err(StoreError::Conflict(
                        "only an assigned conversation can be transferred",
                    ))
                } else if current.assignee_id == Some(to) {
                    Err(StoreError::Conflict("the conversation is already theirs"))
                } else {
                    Err(StoreError::Conflict("that agent is offline or at capacity"))
                }
            }
        }
    }

    /// Puts an assigned conversation back in the queue, for `skill`.
    pub async fn transfer_to_skill(
        &self,
        id: ConversationId,
        skill: &str,
    ) -> Result<Conversation, StoreError> {
        self.transition(
            id,
            "state = 'queued', assignee_id = NULL, skill = $3, queued_at = $1, updated_at = $1",
            "state = 'assigned'",
            Some(skill.to_owned()),
            "only an assigned conversation can be transferred",
        )
        .await
    }

    /// The bot takes a queued or assigned conversation back.
    pub async fn hand_back_to_bot(&self, id: ConversationId) -> Result<Conversation, StoreError> {
        self.transition(
            id,
            "state = 'bot', assignee_id = NULL, skill = NULL, updated_at = $1",
            "state IN ('queued', 'assigned')",
            None,
            "only a queued or assigned conversation can go back to the bot",
        )
        .await
    }

    /// Re-queues every conversation `agent` holds (they went offline), keeping each skill.
    pub async fn requeue_agent(&self, agent: AgentId) -> Result<Vec<Conversation>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "UPDATE conversations SET state = 'queued', assignee_id = NULL, queued_at = $1, updated_at = $1 \
             WHERE assignee_id = $2 AND state = 'assigned' RETURNING {COLUMNS}"
        )))
        .bind(now_ms())
        .bind(agent.to_string())
        .fetch_all(&self.writer)
        .await?;
        rows.iter().map(conversation).collect()
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}
