//! Group commit for messages. Appends from every connection queue up for one task, which
//! stores whatever has gathered (up to [`MAX_BATCH`]) in one transaction and one round trip to
//! the database: an UPDATE gives each conversation its next `seq`, an INSERT stores the
//! messages under them, both reading the batch from JSON arrays so that their SQL is the same
//! whatever the batch's size.
//! Callers (see `chat.rs`) keep at most one append per conversation in flight, so a batch
//! names each conversation once; a batch that cannot go through whole (a resend
//! hitting the unique client id, a lock conflict) falls back to one transaction per message.
//! In cluster mode the batch also locks its conversations in id order first (replicas'
//! batches then never deadlock) and announces its messages before it commits.

use std::collections::{HashMap, HashSet};

use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use super::messages::{Appended, NewMessage};
use super::{Backend, Store, StoreError, from_ms, now_ms, parse_opt_col};
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

/// The writer's SQL, by backend: one round trip to the database per batch. The first statement
/// gives each conversation its next `seq` and returns it; the second stores the messages under
/// those numbers. Their text never changes with the batch's size: the conversations and the
/// messages travel as JSON arrays, so every batch reuses the prepared statements instead of
/// parsing new SQL and binding hundreds of parameters. Parameters: `$1` the time, `$2` the
/// conversations' ids, `$3` those of them whose message is the visitor's (a resolved
/// conversation takes no visitor message), `$4` the messages as `[conversation, author,
/// author id, text, client id, analysis]` arrays.
///
/// SQLite runs the two statements of one string in one call; the INSERT reads the numbers the
/// UPDATE wrote, from the conversations it bumped (the same condition, on the same rows).
const SQLITE: &str = "UPDATE conversations SET last_seq = last_seq + 1, updated_at = $1 \
     WHERE id IN (SELECT value FROM json_each($2)) \
     AND NOT (state = 'resolved' AND id IN (SELECT value FROM json_each($3))) \
     RETURNING id, last_seq, assignee_id; \
     INSERT INTO messages (conversation_id, seq, author, author_id, text, client_id, analysis, created_at) \
     SELECT c.id, c.last_seq, m.value ->> 1, m.value ->> 2, m.value ->> 3, m.value ->> 4, m.value ->> 5, $1 \
     FROM json_each($4) AS m JOIN conversations AS c ON c.id = m.value ->> 0 \
     WHERE NOT (c.state = 'resolved' AND m.value ->> 1 = 'visitor')";

/// PostgreSQL takes one statement per call, so the INSERT reads the UPDATE's rows in a
/// data-modifying CTE.
const POSTGRES: &str = "WITH bumped AS (\
     UPDATE conversations SET last_seq = last_seq + 1, updated_at = $1 \
     WHERE id IN (SELECT json_array_elements_text($2::json)) \
     AND NOT (state = 'resolved' AND id IN (SELECT json_array_elements_text($3::json))) \
     RETURNING id, last_seq, assignee_id), \
     stored AS (\
     INSERT INTO messages (conversation_id, seq, author, author_id, text, client_id, analysis, created_at) \
     SELECT b.id, b.last_seq, m ->> 1, m ->> 2, m ->> 3, m ->> 4, m ->> 5, $1 \
     FROM json_array_elements($4::json) AS m JOIN bumped AS b ON b.id = m ->> 0) \
     SELECT id, last_seq, assignee_id FROM bumped";

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
        let sql = match self.backend {
            Backend::Sqlite => SQLITE,
            Backend::Postgres => POSTGRES,
        };
        let messages: Vec<serde_json::Value> = batch
            .iter()
            .zip(&ids)
            .map(|(new, id)| {
                serde_json::json!([
                    id,
                    new.author.as_str(),
                    new.author_id,
                    new.text,
                    new.client_id.as_ref().map(|c| c.as_str()),
                    new.analysis.as_ref().map(|a| a.to_string()),
                ])
            })
            .collect();
        let now = now_ms();
        let append = sqlx::query(sql)
            .bind(now)
            .bind(serde_json::to_string(&ids).expect("a list of ids is JSON"))
            .bind(serde_json::to_string(&from_visitor).expect("a list of ids is JSON"))
            .bind(serde_json::Value::Array(messages).to_string());

        let mut tx = self.writer.begin().await?;
        self.lock_conversations(&mut tx, &ids).await?;
        let mut bumped: HashMap<String, (i64, Option<AgentId>)> = HashMap::new();
        for row in append.fetch_all(&mut *tx).await? {
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
