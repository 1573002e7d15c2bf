//! Group commit for messages. Appends from every connection queue up for one task, which
//! stores whatever has gathered (up to [`MAX_BATCH`]) in one transaction of two statements:
//! one UPDATE gives each conversation its next `seq`, one multi-row INSERT stores the
//! messages. Callers (see `chat.rs`) keep at most one append per conversation in flight, so
//! a batch names each conversation once; a batch that cannot go through whole (a resend
//! hitting the unique client id, a lock conflict) falls back to one transaction per message.
//! In cluster mode the batch also locks its conversations in id order first (replicas'
//! batches then never deadlock) and announces its messages before it commits.

use std::collections::{HashMap, HashSet};

use sqlx::{AssertSqlSafe, Row};
use tokio::sync::{mpsc, oneshot};

use super::messages::{Appended, NewMessage};
use super::{Store, StoreError, from_ms, now_ms, parse_opt_col};
use crate::cluster::Event;
use crate::domain::{AgentId, AuthorRole};

/// Most messages stored in one transaction.
pub(super) const MAX_BATCH: usize = 256;
/// Appends waiting for the writer before callers wait to enqueue.
pub(super) const QUEUE: usize = 4096;

pub(super) struct AppendRequest {
    pub new: NewMessage,
    pub reply: oneshot::Sender<Result<Appended, StoreError>>,
}

/// Runs the writer until every sender is gone.
pub(super) fn spawn(store: Store, mut rx: mpsc::Receiver<AppendRequest>) {
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            let news: Vec<&NewMessage> = batch.iter().map(|r| &r.new).collect();
            match store.insert_batch(&news).await {
                Ok(results) => {
                    for (request, result) in batch.into_iter().zip(results) {
                        let _ = request.reply.send(result);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = ?e, size = batch.len(), "batch append fell back to single appends");
                    for request in batch {
                        let result = store.append_one(&request.new).await;
                        let _ = request.reply.send(result);
                    }
                }
            }
        }
    });
}

fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Stores a batch in one transaction, or fails whole (nothing stored).
    async fn insert_batch(
        &self,
        batch: &[&NewMessage],
    ) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
        let ids: Vec<String> = batch
            .iter()
            .map(|n| n.conversation_id.to_string())
            .collect();
        if ids.iter().collect::<HashSet<_>>().len() != ids.len() {
            return Err(StoreError::Conflict("a batch names a conversation twice"));
        }
        let from_visitor: Vec<&String> = batch
            .iter()
            .zip(&ids)
            .filter(|(n, _)| n.author == AuthorRole::Visitor)
            .map(|(_, id)| id)
            .collect();
        let now = now_ms();
        let mut sql = format!(
            "UPDATE conversations SET last_seq = last_seq + 1, updated_at = $1 WHERE id IN ({})",
            placeholders(2, ids.len())
        );
        if !from_visitor.is_empty() {
            sql.push_str(&format!(
                " AND NOT (state = 'resolved' AND id IN ({}))",
                placeholders(2 + ids.len(), from_visitor.len())
            ));
        }
        sql.push_str(" RETURNING id, last_seq, assignee_id");
        let mut update = sqlx::query(AssertSqlSafe(sql)).bind(now);
        for id in ids.iter().chain(from_visitor.iter().copied()) {
            update = update.bind(id.as_str());
        }

        let mut tx = self.writer.begin().await?;
        self.lock_conversations(&mut tx, &ids).await?;
        let mut bumped: HashMap<String, (i64, Option<AgentId>)> = HashMap::new();
        for row in update.fetch_all(&mut *tx).await? {
            let id: String = row.try_get("id")?;
            bumped.insert(
                id,
                (
                    row.try_get("last_seq")?,
                    parse_opt_col(&row, "assignee_id")?,
                ),
            );
        }
        let stored: Vec<(usize, i64)> = ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| bumped.get(id).map(|(seq, _)| (i, *seq)))
            .collect();
        if !stored.is_empty() {
            let rows = (0..stored.len())
                .map(|k| format!("({})", placeholders(1 + k * 8, 8)))
                .collect::<Vec<_>>()
                .join(", ");
            let mut insert = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO messages (conversation_id, seq, author, author_id, text, client_id, analysis, created_at) VALUES {rows}"
            )));
            for (i, seq) in &stored {
                let new = batch[*i];
                insert = insert
                    .bind(ids[*i].as_str())
                    .bind(*seq)
                    .bind(new.author.as_str())
                    .bind(new.author_id.clone())
                    .bind(new.text.as_str())
                    .bind(new.client_id.as_ref().map(|c| c.as_str().to_string()))
                    .bind(new.analysis.as_ref().map(|a| a.to_string()))
                    .bind(now);
            }
            insert.execute(&mut *tx).await?;
        }
        let sent_at = from_ms(now)?;
        let announced = stored.iter().map(|&(i, seq)| {
            let owner = bumped.get(&ids[i]).and_then(|(_, owner)| *owner);
            Event::message(&batch[i].stored(seq, sent_at), owner)
        });
        self.announce_in(&mut tx, announced).await?;
        tx.commit().await?;

        let mut results = Vec::with_capacity(batch.len());
        for (new, id) in batch.iter().zip(&ids) {
            results.push(match bumped.get(id) {
                Some((seq, owner)) => Ok(Appended::New {
                    message: new.stored(*seq, sent_at),
                    owner: *owner,
                }),
                None => Err(self.why_not_bumped(new.conversation_id).await),
            });
        }
        Ok(results)
    }
}
