//! Knowledge-base changes applied to the running engine, without a restart. Only what changed
//! is computed again: passages whose text is new are embedded, the search index writes only
//! their entries, and the intent head is retrained only when the intents' examples changed,
//! embedding only the examples it has not seen. The CPU work runs off the async workers, and
//! analyses keep using the previous version until the new one is swapped in whole.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use futures_util::future::try_join_all;
use tokio::sync::MutexGuard;

use super::passages::{self, FreshEmbeddings};
use super::{
    Content, Engine, Knowledge, cache, canonical, entity_extractor, fingerprint, head_for,
    labelled_examples,
};
use crate::ai::intent::IntentHead;
use crate::ai::retrieval::{IndexSync, Passage, Retriever};
use crate::ai::{AiError, EmbedHandle, Embedding};
use crate::kb::KnowledgeBase;

/// Texts handed to the embedding worker at once: its batch size, so a change shares the
/// worker with live messages instead of filling its queue.
const EMBED_CHUNK: usize = 32;

/// The right to change the engine's knowledge base, one holder at a time: take it before
/// reading the knowledge base to apply, so a slower change never overwrites a newer one.
pub struct UpdateTurn<'a> {
    _held: MutexGuard<'a, ()>,
}

/// What applying a knowledge-base version computed, for the caller to store and report.
pub struct KnowledgeUpdate {
    /// Embeddings of new passage texts, by [`Passage::embedding_key`].
    pub embedded: FreshEmbeddings,
    /// The keys of every passage the engine now has: stored embeddings of others are stale.
    pub keys: Vec<String>,
    /// What the search index wrote.
    pub index: IndexSync,
    /// Whether the intents' examples changed, so the head was retrained (or, for examples
    /// seen before, read back from the cache).
    pub retrained: bool,
}

/// The intent head for a version, with its examples' embeddings as far as they are known.
struct Head {
    head: Arc<IntentHead>,
    examples: Arc<HashMap<String, Embedding>>,
    /// Whether it differs from the current version's.
    changed: bool,
}

impl Engine {
    /// Waits for the turn to change the knowledge base.
    pub async fn update_turn(&self) -> UpdateTurn<'_> {
        UpdateTurn {
            _held: self.updating.lock().await,
        }
    }

    /// Makes the running engine answer from `kb`. `None` when that is what it has already. A
    /// failure leaves the engine as it was.
    pub async fn apply_knowledge(
        self: &Arc<Self>,
        _turn: &UpdateTurn<'_>,
        kb: &KnowledgeBase,
    ) -> Result<Option<KnowledgeUpdate>, AiError> {
        let kb = canonical(kb);
        let fingerprint = fingerprint(&kb);
        let current = self.content();
        if fingerprint == current.fingerprint {
            return Ok(None);
        }

        let known: HashMap<String, Embedding> = (0..current.retriever.len())
            .filter_map(|i| {
                let passage = current.retriever.passage(i);
                Some((passage.embedding_key(), current.retriever.embedding(i)?))
            })
            .collect();
        let all = passages::passages(&kb);
        let missing = passages::missing(&all, &known);
        let texts: Vec<String> = missing.iter().map(|(_, text)| text.clone()).collect();
        let embedded = passages::computed(missing, embed_all(&self.embed, &texts).await?)?;
        let embeddings = passages::assemble(&all, &known, &embedded)?;
        let keys = all.iter().map(Passage::embedding_key).collect();

        let head = self.intent_head(&current, &kb).await?;
        let entities = entity_extractor(&kb)?;
        let (fusion, index_dir) = (self.fusion, self.index_dir.clone());
        let retriever = tokio::task::spawn_blocking(move || {
            Retriever::build(all, &embeddings, fusion, index_dir.as_deref())
        })
        .await
        .map_err(|e| AiError::Threads(Box::new(e)))??;
        let index = retriever.index_sync();
        let next = Arc::new(Content {
            fingerprint,
            intents: head.head,
            examples: head.examples,
            entities,
            retriever,
            knowledge: Knowledge::of(&kb),
        });
        match self.content.write() {
            Ok(mut content) => *content = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        Ok(Some(KnowledgeUpdate {
            embedded,
            keys,
            index,
            retrained: head.changed,
        }))
    }

    /// The intent head for `kb`'s examples: the current one when they have not changed, the
    /// cached one when they were trained on before, else a new one trained on a blocking
    /// thread.
    async fn intent_head(&self, current: &Content, kb: &KnowledgeBase) -> Result<Head, AiError> {
        let labelled = labelled_examples(kb);
        let hash = self.intent_hash(&labelled);
        if hash == current.intents.info().data_hash {
            return Ok(Head {
                head: current.intents.clone(),
                examples: current.examples.clone(),
                changed: false,
            });
        }
        let mut examples: HashMap<String, Embedding> = labelled
            .iter()
            .filter_map(|e| Some((e.text.clone(), current.examples.get(&e.text)?.clone())))
            .collect();
        if let Some(head) = cache::load_head(&self.cache_dir, &hash) {
            return Ok(Head {
                head: Arc::new(head),
                examples: Arc::new(examples),
                changed: true,
            });
        }
        let mut seen = HashSet::new();
        let texts: Vec<String> = labelled
            .iter()
            .filter(|e| !examples.contains_key(&e.text) && seen.insert(e.text.as_str()))
            .map(|e| e.text.clone())
            .collect();
        let computed = embed_all(self.intent_embed(), &texts).await?;
        examples.extend(texts.into_iter().zip(computed));
        let embedded = labelled
            .into_iter()
            .map(|e| {
                let embedding = examples.get(&e.text).cloned().ok_or_else(|| {
                    AiError::InvalidInput(format!("no embedding for example {:?}", e.text))
                })?;
                Ok((embedding, e.label))
            })
            .collect::<Result<Vec<_>, AiError>>()?;
        let cache_dir = self.cache_dir.clone();
        let tuned = self.tuned_dir().map(Path::to_path_buf);
        let head = tokio::task::spawn_blocking(move || {
            head_for(&cache_dir, tuned.as_deref(), &embedded, hash)
        })
        .await
        .map_err(|e| AiError::Threads(Box::new(e)))??;
        Ok(Head {
            head: Arc::new(head),
            examples: Arc::new(examples),
            changed: true,
        })
    }
}

/// Embeds `texts` through `worker`, a batch's worth at a time.
async fn embed_all(worker: &EmbedHandle, texts: &[String]) -> Result<Vec<Embedding>, AiError> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(EMBED_CHUNK) {
        out.extend(try_join_all(chunk.iter().map(|t| worker.embed(t.clone()))).await?);
    }
    Ok(out)
}
