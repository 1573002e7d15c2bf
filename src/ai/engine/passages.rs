//! The knowledge base as retrievable passages, and their embeddings: those stored already
//! (by [`Passage::embedding_key`]) are reused, only the others are computed, so a change to
//! one article embeds only its passages.

use std::collections::{HashMap, HashSet};

use super::article_link;
use crate::ai::retrieval::Passage;
use crate::ai::{AiError, Embedding};
use crate::kb::{Article, KnowledgeBase};

/// Passage embeddings known before a load, by [`Passage::embedding_key`].
pub type StoredEmbeddings = HashMap<String, Embedding>;

/// Embeddings computed for passages, by [`Passage::embedding_key`], for the caller to store.
pub type FreshEmbeddings = Vec<(String, Embedding)>;

/// The knowledge base's sections as retrievable passages, in a stable order.
pub fn passages(kb: &KnowledgeBase) -> Vec<Passage> {
    kb.articles.iter().flat_map(article_passages).collect()
}

/// One article's sections as passages; `responder` and `suggest` read the article back from
/// the id (`article#section`).
pub(super) fn article_passages(article: &Article) -> Vec<Passage> {
    article
        .sections()
        .into_iter()
        .enumerate()
        .map(|(i, section)| {
            let title = if section.heading == article.title {
                article.title.clone()
            } else {
                format!("{}: {}", article.title, section.heading)
            };
            Passage {
                id: format!("{}#{i}", article.id),
                title,
                text: section.text,
                link: Some(article_link(&article.id)),
            }
        })
        .collect()
}

/// The embeddings of `passages`, in their order: stored ones reused, the rest computed by
/// `embed` (each distinct text once). Also returns what was computed, by key, to be stored.
pub(super) fn embeddings_for(
    passages: &[Passage],
    stored: &StoredEmbeddings,
    embed: impl FnOnce(&[String]) -> Result<Vec<Embedding>, AiError>,
) -> Result<(Vec<Embedding>, FreshEmbeddings), AiError> {
    let keys: Vec<String> = passages.iter().map(Passage::embedding_key).collect();
    let mut seen = HashSet::new();
    let missing: Vec<usize> = (0..passages.len())
        .filter(|&i| !stored.contains_key(&keys[i]) && seen.insert(keys[i].as_str()))
        .collect();
    let texts: Vec<String> = missing
        .iter()
        .map(|&i| passages[i].embedding_text())
        .collect();
    let computed = embed(&texts)?;
    if computed.len() != texts.len() {
        return Err(AiError::InvalidInput(format!(
            "{} texts but {} embeddings",
            texts.len(),
            computed.len()
        )));
    }
    let fresh: FreshEmbeddings = missing
        .iter()
        .map(|&i| keys[i].clone())
        .zip(computed)
        .collect();
    let new: HashMap<&str, &Embedding> = fresh.iter().map(|(k, e)| (k.as_str(), e)).collect();
    let embeddings = keys
        .iter()
        .map(|key| {
            stored
                .get(key)
                .or_else(|| new.get(key.as_str()).copied())
                .cloned()
                .ok_or_else(|| AiError::InvalidInput(format!("no embedding for passage {key}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((embeddings, fresh))
}
