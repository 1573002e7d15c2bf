//! Knowledge-base passage embeddings, stored so that a restart, or a change to one article,
//! embeds only the passages whose text changed. Rows are keyed by a hash the engine gives
//! (of the model and the passage's text); the store only keeps bytes.

use std::collections::HashSet;

use super::{Store, StoreError, now_ms};

impl Store {
    /// Every stored embedding as `(text hash, values)`. A row whose bytes are not whole `f32`s
    /// is left out, so it is computed again.
    pub async fn passage_embeddings(&self) -> Result<Vec<(String, Vec<f32>)>, StoreError> {
        let rows: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT text_hash, vector FROM passage_embeddings")
                .fetch_all(&self.reader)
                .await?;
        Ok(rows
            .into_iter()
            .filter(|(_, bytes)| bytes.len() % 4 == 0)
            .map(|(hash, bytes)| {
                let values = bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                (hash, values)
            })
            .collect())
    }

    /// Stores `fresh` embeddings and removes those whose hash is not in `keep` (passages that
    /// no longer exist), in one transaction. A hash stored already is left as it is.
    pub async fn keep_passage_embeddings(
        &self,
        fresh: &[(String, Vec<f32>)],
        keep: &HashSet<String>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        let stored: Vec<(String,)> = sqlx::query_as("SELECT text_hash FROM passage_embeddings")
            .fetch_all(&mut *tx)
            .await?;
        for (hash,) in stored.iter().filter(|(hash,)| !keep.contains(hash)) {
            sqlx::query("DELETE FROM passage_embeddings WHERE text_hash = $1")
                .bind(hash)
                .execute(&mut *tx)
                .await?;
        }
        for (hash, values) in fresh {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            sqlx::query(
                "INSERT INTO passage_embeddings (text_hash, vector, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (text_hash) DO NOTHING",
            )
            .bind(hash)
            .bind(bytes)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
