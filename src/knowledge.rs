//! Admin changes to the knowledge base's articles: checked, stored (the database is the source
//! of truth), then applied to the running engine, which re-embeds and re-indexes only that
//! article, so the next visitor question can be answered from it. Other replicas take the
//! change at their next start.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;

use crate::ai::{AiError, Embedding, Engine};
use crate::kb::Article;
use crate::store::{Store, StoreError};

/// Longest article id: ids appear in links and passage ids.
const MAX_ID: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ArticleError {
    /// The article breaks the knowledge base's rules; every problem is named.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("storage failed")]
    Store(#[from] StoreError),
    /// The article is stored, but the running engine could not take it (e.g. overloaded).
    #[error("the AI engine could not take the change")]
    Engine(#[source] AiError),
}

/// An article as an admin writes it; the id comes from the path.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArticleInput {
    pub title: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Intents the article serves; each must exist.
    #[serde(default)]
    pub intents: Vec<String>,
    #[serde(default = "english")]
    pub locale: String,
    /// Markdown: an optional `# Title` line, then at least two `##` sections.
    pub body: String,
}

fn english() -> String {
    "en".into()
}

/// Checks and stores the article `id` (new or replacing), then applies it to `engine`.
/// Returns it and whether it is new.
pub async fn put_article(
    store: &Store,
    engine: Option<&Arc<Engine>>,
    id: &str,
    input: ArticleInput,
) -> Result<(Article, bool), ArticleError> {
    let article = Article {
        id: id.to_owned(),
        title: input.title.trim().to_owned(),
        tags: input.tags,
        intents: input.intents,
        locale: input.locale,
        body: input.body,
    };
    let mut problems = Vec::new();
    if id.is_empty()
        || id.len() > MAX_ID
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        problems.push(format!(
            "article id `{id}` must be 1 to {MAX_ID} lowercase letters, digits, `-` or `_`"
        ));
    }
    if article.title.is_empty() {
        problems.push("the title is empty".into());
    }
    let intents: HashSet<String> = store
        .knowledge()
        .await?
        .map(|kb| kb.intents.into_iter().map(|i| i.name).collect())
        .unwrap_or_default();
    problems.extend(article.problems(|name| intents.contains(name)));
    if !problems.is_empty() {
        return Err(ArticleError::Invalid(problems));
    }
    let created = store.put_article(&article).await?;
    if let Some(engine) = engine {
        apply(store, engine, id, Some(&article)).await?;
    }
    Ok((article, created))
}

/// Removes the article `id` from the database and from `engine`.
pub async fn delete_article(
    store: &Store,
    engine: Option<&Arc<Engine>>,
    id: &str,
) -> Result<(), ArticleError> {
    store.delete_article(id).await?;
    if let Some(engine) = engine {
        apply(store, engine, id, None).await?;
    }
    Ok(())
}

async fn apply(
    store: &Store,
    engine: &Arc<Engine>,
    id: &str,
    article: Option<&Article>,
) -> Result<(), ArticleError> {
    let update = engine
        .apply_article(id, article)
        .await
        .map_err(ArticleError::Engine)?;
    tracing::info!(
        article = id,
        embedded = update.embedded.len(),
        indexed = update.index.indexed,
        deleted = update.index.deleted,
        "the engine took the article change"
    );
    store_embeddings(store, update.embedded, update.keys.into_iter().collect()).await;
    Ok(())
}

/// Stores `fresh` passage embeddings and drops those whose key is not in `keep`. Like the
/// cache, stored embeddings only save time: a failure is logged, and costs the next start
/// the embedding, never the caller its change.
pub(crate) async fn store_embeddings(
    store: &Store,
    fresh: Vec<(String, Embedding)>,
    keep: HashSet<String>,
) {
    let fresh: Vec<(String, Vec<f32>)> = fresh
        .into_iter()
        .map(|(key, e)| (key, e.as_slice().to_vec()))
        .collect();
    if let Err(e) = store.keep_passage_embeddings(&fresh, &keep).await {
        tracing::warn!(error = ?e, "could not store passage embeddings; they are computed again at the next start");
    }
}
