//! The store's part in cluster mode (PostgreSQL only): announcing what is stored with
//! `pg_notify` inside the storing transaction, row locks that keep replicas from
//! overrunning an agent's capacity or deadlocking each other, and what a replica reads to
//! recover after its listener was interrupted. On SQLite, or with cluster mode off, the
//! announcing and locking steps do nothing.

use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::conversations::{COLUMNS, conversation};
use super::{Backend, Store, StoreError};
use crate::cluster::{Event, ReplicaId, encode};
use crate::domain::{AgentId, Conversation};

/// `$first, $first+1, …` for `count` values.
fn numbered(first: usize, count: usize) -> impl Iterator<Item = String> {
    (first..first + count).map(|i| format!("${i}"))
}

impl Store {
    /// The replica this store announces as, when cluster mode is on.
    pub(super) fn announcing(&self) -> Option<&ReplicaId> {
        self.replica
            .as_ref()
            .filter(|_| self.backend == Backend::Postgres)
    }

    /// Sends `events` to the other replicas as part of the transaction `conn` is in: they are
    /// delivered if and when it commits, never before and never for a rollback.
    pub(super) async fn announce_in(
        &self,
        conn: &mut AnyConnection,
        events: impl IntoIterator<Item = Event>,
    ) -> Result<(), StoreError> {
        let Some(replica) = self.announcing() else {
            return Ok(());
        };
        let payloads: Vec<String> = events
            .into_iter()
            .filter_map(|e| encode(replica, e))
            .collect();
        if payloads.is_empty() {
            return Ok(());
        }
        let values = numbered(2, payloads.len())
            .map(|p| format!("({p})"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut query = sqlx::query(AssertSqlSafe(format!(
            "SELECT pg_notify($1, p)::text FROM (VALUES {values}) AS v(p)"
        )))
        .bind(crate::cluster::CHANNEL);
        for payload in payloads {
            query = query.bind(payload);
        }
        query.execute(conn).await?;
        Ok(())
    }

    /// Announces an event of a change already stored (a conversation's new state, a typing
    /// indicator). Cluster mode only; a failure is logged, the change stands.
    pub async fn announce(&self, event: Event) {
        if self.announcing().is_none() {
            return;
        }
        let announced = match self.writer.acquire().await {
            Ok(mut conn) => self.announce_in(&mut conn, [event]).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = announced {
            tracing::warn!(error = ?e, "could not announce a change to the other replicas");
        }
    }

    /// Locks the rows of conversations `ids` in id order, so that two replicas' batches that
    /// share conversations wait for each other instead of deadlocking.
    pub(super) async fn lock_conversations(
        &self,
        conn: &mut AnyConnection,
        ids: &[String],
    ) -> Result<(), StoreError> {
        if self.backend != Backend::Postgres || ids.len() < 2 {
            return Ok(());
        }
        let list = numbered(1, ids.len()).collect::<Vec<_>>().join(", ");
        let mut query = sqlx::query(AssertSqlSafe(format!(
            "SELECT id FROM conversations WHERE id IN ({list}) ORDER BY id FOR UPDATE"
        )));
        for id in ids {
            query = query.bind(id.as_str());
        }
        query.fetch_all(conn).await?;
        Ok(())
    }

    /// Locks an agent's row until the transaction ends, so that claims and transfers to that
    /// agent, from any replica, count their conversations one after the other. (SQLite has
    /// one writer at a time already.)
    pub(super) async fn lock_agent(
        &self,
        conn: &mut AnyConnection,
        agent: AgentId,
    ) -> Result<(), StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        sqlx::query("SELECT id FROM agents WHERE id = $1 FOR UPDATE")
            .bind(agent.to_string())
            .fetch_optional(conn)
            .await?;
        Ok(())
    }

    /// Conversations changed since `since_ms`, each with the first `seq` stored since then
    /// (none if only its state changed): what a replica that stopped listening may have
    /// missed.
    pub async fn changed_since(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(Conversation, Option<i64>)>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS}, (SELECT MIN(m.seq) FROM messages m \
             WHERE m.conversation_id = conversations.id AND m.created_at >= $1) AS first_new_seq \
             FROM conversations WHERE updated_at >= $1"
        )))
        .bind(since_ms)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| Ok((conversation(row)?, row.try_get("first_new_seq")?)))
            .collect()
    }
}
