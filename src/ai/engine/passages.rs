//! The knowledge base as retrievable passages, and their embeddings: those stored already
//! (by [`Passage::embedding_key`]) are reused, only the others are computed, so a change to
//! one article embeds only its passages.

use std::collections::{HashMap, HashSet};

use super::article_link;
use crate::ai::retrieval::{Judged, Passage};
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

/// Every example of each intent that names an article, as a question that the article's
/// passages (in `passages`, from [`passages`]) answer: what a query encoder for the knowledge
/// base is tuned and measured on (`train retrieval`, `eval retrieval --kb`). Intents whose
/// article has no passage are left out.
pub fn passage_questions(kb: &KnowledgeBase, passages: &[Passage]) -> Vec<Judged> {
    let mut questions = Vec::new();
    for intent in &kb.intents {
        let Some(article) = &intent.article else {
            continue;
        };
        let prefix = format!("{article}#");
        let relevant: Vec<String> = passages
            .iter()
            .filter(|p| p.id.starts_with(&prefix))
            .map(|p| p.id.clone())
            .collect();
        if relevant.is_empty() {
            continue;
        }
        questions.extend(intent.examples.iter().enumerate().map(|(i, text)| Judged {
            id: format!("{}-{i}", intent.name),
            text: text.clone(),
            relevant: relevant.clone(),
        }));
    }
    questions
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

/// `(key, text)` of each passage whose embedding is not in `known`, each distinct key once:
/// what has to be embedded.
pub(super) fn missing(
    passages: &[Passage],
    known: &HashMap<String, Embedding>,
) -> Vec<(String, String)> {
    let mut seen = HashSet::new();
    passages
        .iter()
        .map(|p| (p.embedding_key(), p))
        .filter(|(key, _)| !known.contains_key(key) && seen.insert(key.clone()))
        .map(|(key, p)| (key, p.embedding_text()))
        .collect()
}

/// Pairs the [`missing`] passages' keys with the embeddings computed for their texts.
pub(super) fn computed(
    missing: Vec<(String, String)>,
    embeddings: Vec<Embedding>,
) -> Result<FreshEmbeddings, AiError> {
    if embeddings.len() != missing.len() {
        return Err(AiError::InvalidInput(format!(
            "{} texts but {} embeddings",
            missing.len(),
            embeddings.len()
        )));
    }
    Ok(missing
        .into_iter()
        .map(|(key, _)| key)
        .zip(embeddings)
        .collect())
}

/// The embeddings of `passages`, in their order, from those `known` before and those `fresh`.
pub(super) fn assemble(
    passages: &[Passage],
    known: &HashMap<String, Embedding>,
    fresh: &FreshEmbeddings,
) -> Result<Vec<Embedding>, AiError> {
    let new: HashMap<&str, &Embedding> = fresh.iter().map(|(k, e)| (k.as_str(), e)).collect();
    passages
        .iter()
        .map(|p| {
            let key = p.embedding_key();
            known
                .get(&key)
                .or_else(|| new.get(key.as_str()).copied())
                .cloned()
                .ok_or_else(|| AiError::InvalidInput(format!("no embedding for passage {key}")))
        })
        .collect()
}
