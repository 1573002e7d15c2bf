//! Article changes applied to the running engine, without a restart: the changed article's
//! passages are embedded (only those whose text is new) and the retriever is rebuilt from the
//! current one with the other passages' embeddings as they are; on disk the search index then
//! writes only that article's entries. The CPU work runs on a blocking thread, and searches
//! keep using the previous version until the new one is swapped in.

use std::collections::HashMap;
use std::sync::Arc;

use super::passages::{FreshEmbeddings, article_passages};
use super::{Corpus, Engine, article_link};
use crate::ai::retrieval::{IndexSync, Passage, Retriever};
use crate::ai::{AiError, Embedding};
use crate::kb::Article;

/// What applying an article change computed, for the caller to store.
pub struct ArticleUpdate {
    /// Embeddings of the article's new passage texts, by [`Passage::embedding_key`].
    pub embedded: FreshEmbeddings,
    /// The keys of every passage the engine now has: stored embeddings of others are stale.
    pub keys: Vec<String>,
    /// What the search index wrote.
    pub index: IndexSync,
}

impl Engine {
    /// Puts `article` in place of the article `id` (or removes it, `None`) in the running
    /// engine. Changes are applied one at a time; a failure leaves the engine as it was.
    pub async fn apply_article(
        self: &Arc<Self>,
        id: &str,
        article: Option<&Article>,
    ) -> Result<ArticleUpdate, AiError> {
        let _one_at_a_time = self.updating.lock().await;
        let current = self.corpus();
        let prefix = format!("{id}#");
        let mut passages: Vec<Passage> = Vec::new();
        let mut embeddings: Vec<Embedding> = Vec::new();
        let mut previous: HashMap<String, Embedding> = HashMap::new();
        for i in 0..current.retriever.len() {
            let passage = current.retriever.passage(i);
            let embedding = current.retriever.embedding(i).ok_or_else(|| {
                AiError::InvalidInput(format!("passage {} without embedding", passage.id))
            })?;
            if passage.id.starts_with(&prefix) {
                previous.insert(passage.embedding_key(), embedding);
            } else {
                passages.push(passage.clone());
                embeddings.push(embedding);
            }
        }
        let mut embedded = Vec::new();
        for passage in article.map(article_passages).unwrap_or_default() {
            let key = passage.embedding_key();
            let embedding = match previous.get(&key) {
                Some(e) => e.clone(),
                None => {
                    let e = self.embed.embed(passage.embedding_text()).await?;
                    embedded.push((key, e.clone()));
                    e
                }
            };
            passages.push(passage);
            embeddings.push(embedding);
        }
        let keys = passages.iter().map(Passage::embedding_key).collect();
        let mut knowledge = current.knowledge.clone();
        match article {
            Some(a) => {
                knowledge
                    .articles
                    .insert(a.id.clone(), (a.title.clone(), article_link(&a.id)));
            }
            None => {
                knowledge.articles.remove(id);
            }
        }
        let (fusion, index_dir) = (self.fusion, self.index_dir.clone());
        let retriever = tokio::task::spawn_blocking(move || {
            Retriever::build(passages, &embeddings, fusion, index_dir.as_deref())
        })
        .await
        .map_err(|e| AiError::Threads(Box::new(e)))??;
        let index = retriever.index_sync();
        let next = Arc::new(Corpus {
            retriever,
            knowledge,
        });
        match self.corpus.write() {
            Ok(mut corpus) => *corpus = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        Ok(ArticleUpdate {
            embedded,
            keys,
            index,
        })
    }
}
