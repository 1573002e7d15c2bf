//! The raw figures behind analytics and the desk's metrics. Every summary query looks at the
//! conversations created in a window `[from, to)` (unix milliseconds) and at what belongs to
//! them; the arithmetic (rates, means, medians, distributions) is `crate::analytics`' job.
//! Plain portable SQL: JSON is parsed in Rust, because SQLite and PostgreSQL read it differently.

use futures_util::TryStreamExt;
use sqlx::Row;

use super::{Store, StoreError, enum_col};
use crate::domain::{ConversationId, ConversationState};

/// One conversation of the window with the times (unix ms) the summary needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationFacts {
    pub state: ConversationState,
    pub escalated_at: Option<i64>,
    pub agent_messages: i64,
    /// The first visitor message.
    pub first_visitor_at: Option<i64>,
    /// The earliest bot message after the first visitor message.
    pub first_bot_after_visitor_at: Option<i64>,
    /// The earliest agent message after the first visitor message.
    pub first_agent_after_visitor_at: Option<i64>,
    /// The earliest agent message at or after `escalated_at`.
    pub first_agent_after_escalation_at: Option<i64>,
}

/// How often one escalation rule fired on the window's conversations.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFirings {
    pub rule: String,
    pub firings: i64,
    pub conversations: i64,
}

/// Feedback on the window's conversations, counted.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FeedbackTotals {
    pub csat_count: i64,
    pub csat_sum: i64,
    pub answers_up: i64,
    pub answers_down: i64,
}

const IN_WINDOW: &str = "c.created_at >= $1 AND c.created_at < $2";

impl Store {
    pub async fn analytics_conversations(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<ConversationFacts>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT c.state, c.escalated_at, \
               (SELECT COUNT(*) FROM messages a WHERE a.conversation_id = c.id AND a.author = 'agent') \
                 AS agent_messages, \
               v.created_at AS first_visitor_at, \
               (SELECT MIN(r.created_at) FROM messages r WHERE r.conversation_id = c.id \
                 AND r.author = 'bot' AND r.seq > v.seq) AS first_bot_after_visitor_at, \
               (SELECT MIN(r.created_at) FROM messages r WHERE r.conversation_id = c.id \
                 AND r.author = 'agent' AND r.seq > v.seq) AS first_agent_after_visitor_at, \
               (SELECT MIN(r.created_at) FROM messages r WHERE r.conversation_id = c.id \
                 AND r.author = 'agent' AND r.created_at >= c.escalated_at) \
                 AS first_agent_after_escalation_at \
             FROM conversations c \
             LEFT JOIN messages v ON v.conversation_id = c.id AND v.seq = \
               (SELECT MIN(x.seq) FROM messages x WHERE x.conversation_id = c.id AND x.author = 'visitor') \
             WHERE {IN_WINDOW}"
        )))
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ConversationFacts {
                    state: enum_col(row, "state", ConversationState::parse)?,
                    escalated_at: row.try_get("escalated_at")?,
                    agent_messages: row.try_get("agent_messages")?,
                    first_visitor_at: row.try_get("first_visitor_at")?,
                    first_bot_after_visitor_at: row.try_get("first_bot_after_visitor_at")?,
                    first_agent_after_visitor_at: row.try_get("first_agent_after_visitor_at")?,
                    first_agent_after_escalation_at: row
                        .try_get("first_agent_after_escalation_at")?,
                })
            })
            .collect()
    }

    /// Firings per rule, by rule name.
    pub async fn analytics_firings(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<RuleFirings>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT e.rule, COUNT(*) AS firings, COUNT(DISTINCT e.conversation_id) AS conversations \
             FROM escalations e JOIN conversations c ON c.id = e.conversation_id \
             WHERE {IN_WINDOW} GROUP BY e.rule ORDER BY e.rule"
        )))
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RuleFirings {
                    rule: row.try_get("rule")?,
                    firings: row.try_get("firings")?,
                    conversations: row.try_get("conversations")?,
                })
            })
            .collect()
    }

    pub async fn analytics_feedback(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<FeedbackTotals, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(CASE WHEN f.kind = 'conversation' THEN 1 END) AS csat_count, \
               CAST(COALESCE(SUM(CASE WHEN f.kind = 'conversation' THEN f.rating END), 0) AS BIGINT) \
                 AS csat_sum, \
               COUNT(CASE WHEN f.kind = 'answer' AND f.rating > 0 THEN 1 END) AS answers_up, \
               COUNT(CASE WHEN f.kind = 'answer' AND f.rating < 0 THEN 1 END) AS answers_down \
             FROM feedback f JOIN conversations c ON c.id = f.conversation_id WHERE {IN_WINDOW}"
        )))
        .bind(from_ms)
        .bind(to_ms)
        .fetch_one(&self.reader)
        .await?;
        Ok(FeedbackTotals {
            csat_count: row.try_get("csat_count")?,
            csat_sum: row.try_get("csat_sum")?,
            answers_up: row.try_get("answers_up")?,
            answers_down: row.try_get("answers_down")?,
        })
    }

    /// Hands `each` the analysis JSON of every analysed visitor message of the window, as
    /// stored, streaming rather than holding them all.
    pub async fn analytics_analyses(
        &self,
        from_ms: i64,
        to_ms: i64,
        mut each: impl FnMut(&str),
    ) -> Result<(), StoreError> {
        let query = format!(
            "SELECT m.analysis FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE {IN_WINDOW} AND m.author = 'visitor' AND m.analysis IS NOT NULL"
        );
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(query))
            .bind(from_ms)
            .bind(to_ms)
            .fetch(&self.reader);
        while let Some(row) = rows.try_next().await? {
            let analysis: String = row.try_get("analysis")?;
            each(&analysis);
        }
        Ok(())
    }

    /// How many conversations are in each state now (states with none are left out).
    pub async fn conversations_by_state(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM conversations GROUP BY state")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("state")?, row.try_get("n")?)))
            .collect()
    }

    /// When a queued conversation entered the queue; `None` when it is not queued.
    pub async fn queued_since(&self, id: ConversationId) -> Result<Option<i64>, StoreError> {
        let queued: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT queued_at FROM conversations WHERE id = $1 AND state = 'queued'",
        )
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await?;
        Ok(queued.flatten())
    }

    /// When the conversation was escalated, if the agent message `seq` sent at `sent_ms` is
    /// the first agent message since then; `None` otherwise.
    pub async fn escalated_before_first_reply(
        &self,
        id: ConversationId,
        seq: i64,
        sent_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let escalated: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT c.escalated_at FROM conversations c \
             WHERE c.id = $1 AND c.escalated_at IS NOT NULL AND c.escalated_at <= $3 \
             AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id \
               AND m.author = 'agent' AND m.seq < $2 AND m.created_at >= c.escalated_at)",
        )
        .bind(id.to_string())
        .bind(seq)
        .bind(sent_ms)
        .fetch_optional(&self.reader)
        .await?;
        Ok(escalated.flatten())
    }
}
