//! The knowledge base in the database, its source of truth once imported: articles, intents
//! and coaching cards, replaced by `switchboard kb import` in one transaction (added, changed
//! and removed entries counted), or changed one entry at a time over the admin API. Every
//! change also raises the knowledge base's revision in the same transaction, which each
//! replica watches to bring its engine up to date.

use std::collections::HashSet;

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Store, StoreError, json_col, now_ms};
use crate::kb::{Article, CoachingCard, Intent, KnowledgeBase};

/// What an import changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct KbImport {
    pub articles_added: usize,
    pub articles_updated: usize,
    pub articles_removed: usize,
    pub intents_added: usize,
    pub intents_updated: usize,
    pub intents_removed: usize,
    pub cards_added: usize,
    pub cards_updated: usize,
    pub cards_removed: usize,
    pub unchanged: usize,
}

fn hash_of<T: serde::Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).expect("knowledge-base entries serialise");
    Sha256::digest(json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("lists of strings serialise")
}

impl Store {
    /// Makes the stored knowledge base equal to `kb`, calling `progress(done, total)` after
    /// each entry. All or nothing.
    pub async fn import_knowledge(
        &self,
        kb: &KnowledgeBase,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<KbImport, StoreError> {
        let total = kb.articles.len() + kb.intents.len() + kb.cards.len();
        let now = now_ms();
        let mut report = KbImport::default();
        let mut tx = self.writer.begin().await?;

        let stored_intents: Vec<(String, String)> =
            sqlx::query_as("SELECT name, examples FROM intents")
                .fetch_all(&mut *tx)
                .await?;
        for (name, _) in &stored_intents {
            if kb.intent(name).is_none() {
                sqlx::query("DELETE FROM intents WHERE name = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                report.intents_removed += 1;
            }
        }
        let articles = sync_by_hash(
            &mut tx,
            "knowledge_articles",
            &kb.articles,
            |a| &a.id,
            async |conn, article, hash| upsert_article(conn, article, hash, now).await,
            |done| progress(done, total),
        )
        .await?;
        report.articles_added = articles.added;
        report.articles_updated = articles.updated;
        report.articles_removed = articles.removed;
        report.unchanged += articles.unchanged;

        let current = intent_rows(&mut tx).await?;
        for (done, intent) in kb.intents.iter().enumerate() {
            match current.iter().find(|i| i.name == intent.name) {
                Some(old) if old == intent => report.unchanged += 1,
                found => {
                    upsert_intent(&mut tx, intent, now).await?;
                    if found.is_some() {
                        report.intents_updated += 1;
                    } else {
                        report.intents_added += 1;
                    }
                }
            }
            progress(kb.articles.len() + done + 1, total);
        }
        let before = kb.articles.len() + kb.intents.len();
        let cards = sync_by_hash(
            &mut tx,
            "coaching_cards",
            &kb.cards,
            |c| &c.id,
            async |conn, card, hash| upsert_card(conn, card, hash, now).await,
            |done| progress(before + done, total),
        )
        .await?;
        report.cards_added = cards.added;
        report.cards_updated = cards.updated;
        report.cards_removed = cards.removed;
        report.unchanged += cards.unchanged;
        let total_entries = kb.articles.len() + kb.intents.len() + kb.cards.len();
        if report.unchanged < total_entries
            || report.articles_removed + report.intents_removed + report.cards_removed > 0
        {
            bump_revision(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(report)
    }

    /// The knowledge base's revision: raised by every change, 0 before the first.
    pub async fn knowledge_revision(&self) -> Result<i64, StoreError> {
        let value: Option<String> =
            sqlx::query_scalar("SELECT value FROM server_settings WHERE key = $1")
                .bind(REVISION_KEY)
                .fetch_optional(&self.reader)
                .await?;
        value.map_or(Ok(0), |v| {
            v.parse()
                .map_err(|_| StoreError::Corrupt(format!("knowledge revision `{v}`")))
        })
    }

    /// The stored knowledge base (articles and cards by id, intents by name), or
    /// `None` when nothing was ever imported.
    pub async fn knowledge(&self) -> Result<Option<KnowledgeBase>, StoreError> {
        let articles = self.articles().await?;
        let mut conn = self.reader.acquire().await?;
        let intents = intent_rows(&mut conn).await?;
        let cards = card_rows(&mut conn).await?;
        if articles.is_empty() && intents.is_empty() && cards.is_empty() {
            return Ok(None);
        }
        Ok(Some(KnowledgeBase {
            articles,
            intents,
            cards,
        }))
    }
}

/// The `server_settings` key of the knowledge base's revision.
const REVISION_KEY: &str = "knowledge_revision";

/// Raises the knowledge base's revision, inside the transaction that changes it.
async fn bump_revision(conn: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO server_settings (key, value) VALUES ($1, '1') \
         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(server_settings.value AS BIGINT) + 1 AS TEXT)",
    )
    .bind(REVISION_KEY)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn intent_rows(conn: &mut sqlx::AnyConnection) -> Result<Vec<Intent>, StoreError> {
    let rows = sqlx::query(
        "SELECT name, description, examples, answer, article_id, escalate, skill FROM intents ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Intent {
                name: row.try_get("name")?,
                description: row.try_get("description")?,
                examples: json_col(row, "examples")?,
                answer: row.try_get("answer")?,
                article: row.try_get("article_id")?,
                escalate: row.try_get::<i64, _>("escalate")? != 0,
                skill: row.try_get("skill")?,
            })
        })
        .collect()
}

async fn upsert_intent(
    conn: &mut sqlx::AnyConnection,
    intent: &Intent,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO intents (name, description, examples, answer, article_id, escalate, skill, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (name) DO UPDATE SET description = $2, examples = $3, answer = $4, \
         article_id = $5, escalate = $6, skill = $7, updated_at = $8",
    )
    .bind(&intent.name)
    .bind(intent.description.clone())
    .bind(to_json(&intent.examples))
    .bind(intent.answer.clone())
    .bind(intent.article.clone())
    .bind(i64::from(intent.escalate))
    .bind(intent.skill.clone())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What [`sync_by_hash`] did to one table.
struct Synced {
    added: usize,
    updated: usize,
    removed: usize,
    unchanged: usize,
}

/// Makes `table` (keyed by `id`, with a `content_hash` column) hold exactly `entries`: removes
/// rows no longer among them, and writes new and changed ones (by [`hash_of`]) with `upsert`,
/// calling `progress(done)` after each entry.
async fn sync_by_hash<T: serde::Serialize>(
    conn: &mut sqlx::AnyConnection,
    table: &'static str,
    entries: &[T],
    id: impl Fn(&T) -> &str,
    upsert: impl AsyncFn(&mut sqlx::AnyConnection, &T, &str) -> Result<(), StoreError>,
    mut progress: impl FnMut(usize),
) -> Result<Synced, StoreError> {
    let mut synced = Synced {
        added: 0,
        updated: 0,
        removed: 0,
        unchanged: 0,
    };
    let stored: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, content_hash FROM {table}"
    )))
    .fetch_all(&mut *conn)
    .await?;
    for (stored_id, _) in &stored {
        if !entries.iter().any(|e| id(e) == stored_id) {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE id = $1"
            )))
            .bind(stored_id)
            .execute(&mut *conn)
            .await?;
            synced.removed += 1;
        }
    }
    for (done, entry) in entries.iter().enumerate() {
        let hash = hash_of(entry);
        match stored.iter().find(|(stored_id, _)| stored_id == id(entry)) {
            Some((_, old)) if *old == hash => synced.unchanged += 1,
            found => {
                upsert(&mut *conn, entry, &hash).await?;
                if found.is_some() {
                    synced.updated += 1;
                } else {
                    synced.added += 1;
                }
            }
        }
        progress(done + 1);
    }
    Ok(synced)
}

async fn upsert_card(
    conn: &mut sqlx::AnyConnection,
    card: &CoachingCard,
    hash: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO coaching_cards (id, title, topics, when_to_use, prompt, tips, content_hash, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (id) DO UPDATE SET title = $2, topics = $3, when_to_use = $4, \
         prompt = $5, tips = $6, content_hash = $7, updated_at = $8",
    )
    .bind(&card.id)
    .bind(&card.title)
    .bind(to_json(&card.topics))
    .bind(&card.when)
    .bind(&card.prompt)
    .bind(to_json(&card.tips))
    .bind(hash)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The stored coaching cards, by id.
async fn card_rows(conn: &mut sqlx::AnyConnection) -> Result<Vec<CoachingCard>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, title, topics, when_to_use, prompt, tips FROM coaching_cards ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(CoachingCard {
                id: row.try_get("id")?,
                title: row.try_get("title")?,
                topics: json_col(row, "topics")?,
                when: row.try_get("when_to_use")?,
                prompt: row.try_get("prompt")?,
                tips: json_col(row, "tips")?,
            })
        })
        .collect()
}

const ARTICLE_COLUMNS: &str =
    "SELECT id, title, body, tags, intents, locale FROM knowledge_articles";

fn article_row(row: &sqlx::any::AnyRow) -> Result<Article, StoreError> {
    Ok(Article {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        body: row.try_get("body")?,
        tags: json_col(row, "tags")?,
        intents: json_col(row, "intents")?,
        locale: row.try_get("locale")?,
    })
}

async fn upsert_article(
    conn: &mut sqlx::AnyConnection,
    article: &Article,
    hash: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO knowledge_articles (id, title, body, tags, intents, locale, content_hash, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (id) DO UPDATE SET title = $2, body = $3, tags = $4, intents = $5, \
         locale = $6, content_hash = $7, updated_at = $8",
    )
    .bind(&article.id)
    .bind(&article.title)
    .bind(&article.body)
    .bind(to_json(&article.tags))
    .bind(to_json(&article.intents))
    .bind(&article.locale)
    .bind(hash)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// Every stored article, by id.
    pub async fn articles(&self) -> Result<Vec<Article>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ARTICLE_COLUMNS} ORDER BY id"
        )))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(article_row).collect()
    }

    pub async fn article(&self, id: &str) -> Result<Article, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ARTICLE_COLUMNS} WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?
        .ok_or(StoreError::NotFound("article"))?;
        article_row(&row)
    }

    /// Stores `article` under its id, replacing what was there; true when it is new.
    pub async fn put_article(&self, article: &Article) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let existed: Option<(String,)> =
            sqlx::query_as("SELECT id FROM knowledge_articles WHERE id = $1")
                .bind(&article.id)
                .fetch_optional(&mut *tx)
                .await?;
        upsert_article(&mut tx, article, &hash_of(article), now_ms()).await?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(existed.is_none())
    }

    /// Removes an article; intents that linked to it keep their examples and lose the link.
    pub async fn delete_article(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query("DELETE FROM knowledge_articles WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("article"));
        }
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every stored intent, by name.
    pub async fn intents(&self) -> Result<Vec<Intent>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        intent_rows(&mut conn).await
    }

    /// The stored intents' names, without their examples.
    pub async fn intent_names(&self) -> Result<HashSet<String>, StoreError> {
        let names: Vec<(String,)> = sqlx::query_as("SELECT name FROM intents")
            .fetch_all(&self.reader)
            .await?;
        Ok(names.into_iter().map(|(name,)| name).collect())
    }

    /// Stores `intent` under its name, replacing what was there; true when it is new.
    pub async fn put_intent(&self, intent: &Intent) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let existed: Option<(String,)> = sqlx::query_as("SELECT name FROM intents WHERE name = $1")
            .bind(&intent.name)
            .fetch_optional(&mut *tx)
            .await?;
        upsert_intent(&mut tx, intent, now_ms()).await?;
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(existed.is_none())
    }

    pub async fn delete_intent(&self, name: &str) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query("DELETE FROM intents WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("intent"));
        }
        bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
