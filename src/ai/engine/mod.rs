//! The engine the conversations use: one `analyze` per visitor message (embedding, intent
//! with out-of-scope, sentiment, entities, retrieval hits) and one `respond` that turns an
//! analysis into the bot's reply. Built at start from the models and the knowledge base, and
//! brought up to date with it while running (`live.rs`). What is derived from the knowledge
//! base is kept: the intent head cached on disk under a hash of its input, the passages'
//! embeddings handed in and out by key (the caller stores them in the database), so a restart
//! on unchanged content trains and embeds nothing.

mod cache;
mod live;
mod passages;
mod responder;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

pub use self::live::{KnowledgeUpdate, UpdateTurn};
pub use self::passages::{FreshEmbeddings, StoredEmbeddings, passage_questions, passages};
pub use self::responder::{ConversationContext, Reply, ReplyKind, ResponderConfig, Source};
use super::entities::{Entity, EntityConfig, EntityExtractor, Gazetteer};
use super::intent::{
    Calibration, IntentHead, LabelledText, TrainOptions, data_hash, embed_examples, joint_head_for,
    train_calibrated, tuned_data_hash, tuned_encoder_id,
};
use super::retrieval::{Fusion, IndexSync, Retriever, read_query_tuning};
use super::sentiment::{Sentiment, SentimentScore};
use super::{AiError, EmbedHandle, Embedder, EmbedderOptions, Embedding, WorkerConfig, hex};
use crate::kb::{Intent, KnowledgeBase};

/// Passages returned with an analysis.
const HITS: usize = 5;

/// Where the engine's files are and how much it may take on.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// `minilm/` and `sentiment/` live here.
    pub models_dir: PathBuf,
    /// Where the trained intent head is kept (passage embeddings are in the database).
    pub cache_dir: PathBuf,
    /// The folder of the search index, updated in place at each load; `None`: in RAM.
    pub index_dir: Option<PathBuf>,
    /// Analyses running or waiting for the embedder at once; one more is refused with
    /// [`AiError::Overloaded`].
    pub max_in_flight: usize,
    /// Intent confidence below which a message is out of scope.
    pub intent_threshold: f32,
    pub responder: ResponderConfig,
    pub fusion: Fusion,
    pub worker: WorkerConfig,
    /// Threads of the embedder's own pool (0: one per CPU).
    pub threads: usize,
    /// An encoder fine-tuned on the intents (`switchboard train intents --fine-tune DIR`):
    /// the intent head runs over its embeddings, at one more encoder pass per message, and is
    /// the head trained with it when the intents are those it was tuned on; sentiment and
    /// retrieval keep the shipped encoder's. `None`: the shipped one for all.
    pub intent_encoder: Option<PathBuf>,
    /// A query encoder tuned for the knowledge base (`switchboard train retrieval`): dense
    /// retrieval embeds the message with it, at one more encoder pass per message, against
    /// the passages' embeddings by the shipped encoder. `None`: the shipped one.
    pub query_encoder: Option<PathBuf>,
}

/// The intent the head chose for a message.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IntentGuess {
    /// The best intent, even when it was not accepted.
    pub name: String,
    pub confidence: f32,
    /// True when the confidence is under the threshold (or the best label is out of scope).
    pub out_of_scope: bool,
    /// The second-best intent and its probability, for clarifying questions.
    pub runner_up: Option<(String, f32)>,
}

/// A knowledge-base passage found for a message.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RetrievedPassage {
    pub id: String,
    pub title: String,
    pub link: Option<String>,
    pub text: String,
    pub score: f32,
    pub dense: f32,
}

/// Milliseconds per stage of one analysis.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageTimings {
    pub embed_ms: f64,
    /// Texts embedded in the same forward pass as this one.
    pub embed_batch: usize,
    pub intent_ms: f64,
    pub sentiment_ms: f64,
    pub entities_ms: f64,
    pub retrieval_ms: f64,
}

/// Everything the engine understood of one message.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Analysis {
    pub intent: IntentGuess,
    pub sentiment: SentimentScore,
    pub entities: Vec<Entity>,
    pub passages: Vec<RetrievedPassage>,
    #[serde(skip)]
    pub timings: StageTimings,
}

impl Analysis {
    /// The accepted intent, `None` when out of scope.
    pub fn intent(&self) -> Option<&str> {
        (!self.intent.out_of_scope).then_some(self.intent.name.as_str())
    }
}

/// An article worth showing an agent, with its retrieval score.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SuggestedArticle {
    pub title: String,
    pub link: String,
    pub score: f32,
}

/// What agent assist offers for a visitor's message.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Suggestions {
    /// Replies the agent could send, best first.
    pub replies: Vec<Reply>,
    /// Articles on the topic, best first.
    pub articles: Vec<SuggestedArticle>,
}

/// The loaded engine. Share it behind an `Arc`.
pub struct Engine {
    embed: EmbedHandle,
    /// The fine-tuned encoder the intent head uses, when one is configured.
    intent_encoder: Option<IntentEncoder>,
    /// The query encoder retrieval embeds messages with, when one is configured.
    query_encoder: Option<EmbedHandle>,
    threshold: f32,
    sentiment: Sentiment,
    /// What is derived from the knowledge base: swapped whole when it changes (`live.rs`), so
    /// an analysis holds one version from start to end, and the lock only guards the swap.
    content: RwLock<Arc<Content>>,
    /// Knowledge-base changes are applied one at a time, each on the version the last one left.
    updating: tokio::sync::Mutex<()>,
    fusion: Fusion,
    index_dir: Option<PathBuf>,
    cache_dir: PathBuf,
    permits: Arc<Semaphore>,
    responder: ResponderConfig,
    stats: LoadStats,
}

/// `text` embedded by `encoder`, when there is one.
async fn embed_with(
    encoder: Option<&EmbedHandle>,
    text: &str,
) -> Result<Option<Embedding>, AiError> {
    match encoder {
        Some(embed) => embed.embed(text).await.map(Some),
        None => Ok(None),
    }
}

/// A fine-tuned encoder for intents, its folder and what identifies it in the head's data hash.
struct IntentEncoder {
    embed: EmbedHandle,
    dir: PathBuf,
    /// Its [`tuned_encoder_id`].
    id: String,
}

/// What a head must have been trained on: the examples' [`data_hash`], or their
/// [`tuned_data_hash`] when they are embedded with a fine-tuned encoder of this id.
fn intent_hash(labelled: &[LabelledText], encoder: Option<&str>) -> String {
    let hash = data_hash(labelled);
    match encoder {
        Some(id) => tuned_data_hash(&hash, id),
        None => hash,
    }
}

/// What a load found and had to compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadStats {
    pub passages: usize,
    /// Passages embedded by this load, their embedding not being stored yet.
    pub embedded: usize,
}

/// Everything the engine derives from one version of the knowledge base.
struct Content {
    /// [`fingerprint`] of the articles and intents it was derived from.
    fingerprint: String,
    intents: Arc<IntentHead>,
    /// Embeddings of the intents' examples by text, where known (not when the head came from
    /// the cache): retraining embeds only the examples missing here.
    examples: Arc<HashMap<String, Embedding>>,
    /// Patterns, plus the articles' tags as the `topic` gazetteer.
    entities: EntityExtractor,
    retriever: Retriever,
    knowledge: Knowledge,
}

/// What the responder needs of the knowledge base.
struct Knowledge {
    intents: HashMap<String, Intent>,
    /// Article id → (title, link).
    articles: HashMap<String, (String, String)>,
}

impl Knowledge {
    fn of(kb: &KnowledgeBase) -> Self {
        Self {
            intents: kb
                .intents
                .iter()
                .map(|i| (i.name.clone(), i.clone()))
                .collect(),
            articles: kb
                .articles
                .iter()
                .map(|a| (a.id.clone(), (a.title.clone(), article_link(&a.id))))
                .collect(),
        }
    }
}

/// The knowledge base in a canonical order (articles by id, intents by name), so the same
/// content read from a folder or from the database trains and fingerprints the same.
fn canonical(kb: &KnowledgeBase) -> KnowledgeBase {
    let mut kb = KnowledgeBase {
        articles: kb.articles.clone(),
        intents: kb.intents.clone(),
        cards: Vec::new(),
    };
    kb.articles.sort_by(|a, b| a.id.cmp(&b.id));
    kb.intents.sort_by(|a, b| a.name.cmp(&b.name));
    kb
}

/// A hash of what the engine uses of a canonical knowledge base: its articles and intents.
fn fingerprint(kb: &KnowledgeBase) -> String {
    let json =
        serde_json::to_vec(&(&kb.articles, &kb.intents)).expect("articles and intents serialise");
    hex(&Sha256::digest(json))
}

/// The intent head's training data: every example with its intent's name.
fn labelled_examples(kb: &KnowledgeBase) -> Vec<LabelledText> {
    kb.intent_examples()
        .into_iter()
        .map(|(text, label)| LabelledText { text, label })
        .collect()
}

/// The entity extractor for a knowledge base: the default patterns, and the articles' tags as
/// the `topic` gazetteer.
fn entity_extractor(kb: &KnowledgeBase) -> Result<EntityExtractor, AiError> {
    EntityExtractor::new(&EntityConfig {
        gazetteers: vec![Gazetteer {
            name: "topic".into(),
            entries: kb
                .articles
                .iter()
                .flat_map(|a| a.tags.iter().cloned())
                .collect(),
        }],
        ..EntityConfig::default()
    })
}

/// The intent head for embedded examples, cached under `cache_dir`: the head fine-tuned with
/// the intent encoder in `tuned` when that encoder was tuned on exactly these examples (it
/// keeps them as neighbours and the temperature of 1 it was trained at, there being no
/// examples it has not seen to calibrate on), else a head trained on them and calibrated on a
/// held-out fifth.
fn head_for(
    cache_dir: &Path,
    tuned: Option<&Path>,
    embedded: &[(Embedding, String)],
    hash: String,
) -> Result<IntentHead, AiError> {
    let started = Instant::now();
    let joint = match tuned {
        Some(dir) => joint_head_for(dir, &hash, embedded)?,
        None => None,
    };
    let head = match joint {
        Some(head) => {
            tracing::info!(
                intents = head.info().labels.len(),
                examples = embedded.len(),
                "took the intent head fine-tuned with the intent encoder"
            );
            head
        }
        None => {
            let (head, calibration): (IntentHead, Calibration) =
                train_calibrated(embedded, hash, TrainOptions::default())?;
            tracing::info!(
                intents = head.info().labels.len(),
                examples = embedded.len(),
                secs = started.elapsed().as_secs_f64(),
                temperature = calibration.temperature,
                neighbour_weight = calibration.neighbour_weight,
                held_out_accuracy = calibration.after.accuracy,
                ece_before = calibration.before.ece,
                ece_after = calibration.after.ece,
                "trained the intent head on the knowledge base"
            );
            head
        }
    };
    cache::keep("intent head", cache::save_head(cache_dir, &head));
    Ok(head)
}

/// The link an answer gives for an article.
pub fn article_link(id: &str) -> String {
    format!("/help/{id}")
}

impl Engine {
    /// Loads the models, then trains (or loads from the cache) the intent head and embeds the
    /// passages of `kb` whose embedding is not in `stored`. Returns the engine and the
    /// embeddings it computed (by key), for the caller to store. Blocks for as long as that
    /// takes: call it before serving.
    pub fn load(
        config: &EngineConfig,
        kb: &KnowledgeBase,
        stored: &StoredEmbeddings,
    ) -> Result<(Self, FreshEmbeddings), AiError> {
        let options = if config.threads == 0 {
            EmbedderOptions::default()
        } else {
            EmbedderOptions {
                threads: config.threads,
            }
        };
        let embedder = Embedder::load(config.models_dir.join("minilm"), options.clone())?;
        let tuned = match &config.intent_encoder {
            Some(dir) => {
                let id = tuned_encoder_id(dir)?;
                Some((Embedder::load(dir, options.clone())?, id, dir))
            }
            None => None,
        };
        let query_encoder = match &config.query_encoder {
            Some(dir) => {
                let tuning = read_query_tuning(dir)?;
                tracing::info!(
                    dir = %dir.display(),
                    questions = tuning.queries,
                    "retrieval embeds questions with the query encoder"
                );
                Some(Embedder::load(dir, options)?)
            }
            None => None,
        };
        let sentiment = Sentiment::load(config.models_dir.join("sentiment"))?;
        let kb = canonical(kb);

        let labelled = labelled_examples(&kb);
        let hash = intent_hash(&labelled, tuned.as_ref().map(|(_, id, _)| id.as_str()));
        let (intents, examples) = match cache::load_head(&config.cache_dir, &hash) {
            Some(head) => (head, HashMap::new()),
            None => {
                let intent_embedder = tuned.as_ref().map_or(&embedder, |(e, _, _)| e);
                let embedded = embed_examples(intent_embedder, &labelled)?;
                let tuned_dir = tuned.as_ref().map(|(_, _, dir)| dir.as_path());
                let head = head_for(&config.cache_dir, tuned_dir, &embedded, hash)?;
                let examples = labelled
                    .into_iter()
                    .zip(embedded)
                    .map(|(example, (embedding, _))| (example.text, embedding))
                    .collect();
                (head, examples)
            }
        };

        let passages = passages(&kb);
        let missing = passages::missing(&passages, stored);
        let texts: Vec<String> = missing.iter().map(|(_, text)| text.clone()).collect();
        let fresh = passages::computed(missing, embedder.embed_all(&texts)?)?;
        let embeddings = passages::assemble(&passages, stored, &fresh)?;
        let stats = LoadStats {
            passages: passages.len(),
            embedded: fresh.len(),
        };
        let retriever = Retriever::build(
            passages,
            &embeddings,
            config.fusion,
            config.index_dir.as_deref(),
        )?;

        let content = Content {
            fingerprint: fingerprint(&kb),
            intents: Arc::new(intents),
            examples: Arc::new(examples),
            entities: entity_extractor(&kb)?,
            retriever,
            knowledge: Knowledge::of(&kb),
        };
        let intent_encoder = match tuned {
            Some((embedder, id, dir)) => Some(IntentEncoder {
                embed: EmbedHandle::spawn(embedder, config.worker.clone())?,
                dir: dir.clone(),
                id,
            }),
            None => None,
        };
        let query_encoder = match query_encoder {
            Some(embedder) => Some(EmbedHandle::spawn(embedder, config.worker.clone())?),
            None => None,
        };
        let engine = Self {
            embed: EmbedHandle::spawn(embedder, config.worker.clone())?,
            intent_encoder,
            query_encoder,
            threshold: config.intent_threshold,
            sentiment,
            content: RwLock::new(Arc::new(content)),
            updating: tokio::sync::Mutex::new(()),
            fusion: config.fusion,
            index_dir: config.index_dir.clone(),
            cache_dir: config.cache_dir.clone(),
            permits: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            responder: config.responder.clone(),
            stats,
        };
        Ok((engine, fresh))
    }

    /// The hash a head for `labelled` is cached under with this engine's intent encoder.
    fn intent_hash(&self, labelled: &[LabelledText]) -> String {
        intent_hash(
            labelled,
            self.intent_encoder.as_ref().map(|e| e.id.as_str()),
        )
    }

    /// The folder of the fine-tuned intent encoder, when one is configured.
    fn tuned_dir(&self) -> Option<&Path> {
        self.intent_encoder.as_ref().map(|e| e.dir.as_path())
    }

    /// The worker intents are embedded with.
    fn intent_embed(&self) -> &EmbedHandle {
        self.intent_encoder
            .as_ref()
            .map_or(&self.embed, |e| &e.embed)
    }

    /// How many passages the load found and how many it embedded.
    pub fn load_stats(&self) -> LoadStats {
        self.stats
    }

    /// What the last build of the search index (at load, or for a change) wrote.
    pub fn index_sync(&self) -> IndexSync {
        self.content().retriever.index_sync()
    }

    /// The current version of what is derived from the knowledge base. A poisoned lock still
    /// holds a whole version: the only write is one pointer assignment.
    fn content(&self) -> Arc<Content> {
        match self.content.read() {
            Ok(content) => Arc::clone(&content),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Analyses one visitor message. Fails at once with [`AiError::Overloaded`] when
    /// `max_in_flight` analyses are already under way.
    pub async fn analyze(self: &Arc<Self>, text: &str) -> Result<Analysis, AiError> {
        let _permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| AiError::Overloaded)?;
        let started = Instant::now();
        let ((embedding, batch), for_intent, for_query) = tokio::try_join!(
            self.embed.embed_in_batch(text),
            embed_with(self.intent_encoder.as_ref().map(|e| &e.embed), text),
            embed_with(self.query_encoder.as_ref(), text),
        )?;
        let embed_ms = ms(started);
        let engine = Arc::clone(self);
        let text = text.to_owned();
        let mut analysis = tokio::task::spawn_blocking(move || {
            engine.understand(
                &text,
                &embedding,
                for_intent.as_ref().unwrap_or(&embedding),
                for_query.as_ref().unwrap_or(&embedding),
            )
        })
        .await
        .map_err(|e| AiError::Threads(Box::new(e)))??;
        analysis.timings.embed_ms = embed_ms;
        analysis.timings.embed_batch = batch;
        Ok(analysis)
    }

    /// The CPU part after the embedding: heads, patterns and search, each well under a
    /// millisecond. `for_intent` and `for_query` are the embeddings of the intent and the
    /// query encoder (the same one unless fine-tuned encoders are configured).
    fn understand(
        &self,
        text: &str,
        embedding: &Embedding,
        for_intent: &Embedding,
        for_query: &Embedding,
    ) -> Result<Analysis, AiError> {
        let mut timings = StageTimings::default();
        let content = self.content();
        let t = Instant::now();
        let probabilities = content
            .intents
            .probabilities(&[for_intent])?
            .pop()
            .unwrap_or_default();
        let labels = &content.intents.info().labels;
        let mut ranked: Vec<(usize, f32)> = probabilities.into_iter().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let (best, confidence) = ranked.first().copied().unwrap_or((0, 0.0));
        let name = labels.get(best).cloned().unwrap_or_default();
        let intent = IntentGuess {
            out_of_scope: confidence < self.threshold || name == super::intent::OUT_OF_SCOPE,
            name,
            confidence,
            runner_up: ranked.get(1).map(|&(i, p)| (labels[i].clone(), p)),
        };
        timings.intent_ms = ms(t);

        let t = Instant::now();
        let sentiment = self.sentiment.analyze(text, embedding)?;
        timings.sentiment_ms = ms(t);

        let t = Instant::now();
        let entities = content
            .entities
            .extract(text, chrono::Utc::now().naive_utc());
        timings.entities_ms = ms(t);

        let t = Instant::now();
        let passages = content
            .retriever
            .search(text, for_query, HITS)?
            .into_iter()
            .map(|hit| {
                let p = content.retriever.passage(hit.passage);
                RetrievedPassage {
                    id: p.id.clone(),
                    title: p.title.clone(),
                    link: p.link.clone(),
                    text: p.text.clone(),
                    score: hit.score,
                    dense: hit.dense,
                }
            })
            .collect();
        timings.retrieval_ms = ms(t);
        Ok(Analysis {
            intent,
            sentiment,
            entities,
            passages,
            timings,
        })
    }

    /// The bot's reply to an analysed message.
    pub fn respond(&self, analysis: &Analysis, context: &ConversationContext) -> Reply {
        responder::respond(
            &self.responder,
            &self.content().knowledge,
            analysis,
            context,
        )
    }

    /// Replies and articles for an agent answering this message (agent assist).
    pub fn suggest(&self, analysis: &Analysis) -> Suggestions {
        let content = self.content();
        let mut articles: Vec<SuggestedArticle> = Vec::new();
        for p in &analysis.passages {
            let article = p.id.split('#').next().unwrap_or(&p.id);
            let Some((title, link)) = content.knowledge.articles.get(article) else {
                continue;
            };
            if articles.iter().any(|a| &a.link == link) {
                continue;
            }
            articles.push(SuggestedArticle {
                title: title.clone(),
                link: link.clone(),
                score: p.score,
            });
        }
        Suggestions {
            replies: responder::suggest(&self.responder, &content.knowledge, analysis),
            articles,
        }
    }

    /// Skill that handles an intent, from the knowledge base.
    pub fn intent_skill(&self, intent: &str) -> Option<String> {
        self.content().knowledge.intents.get(intent)?.skill.clone()
    }

    /// Whether the knowledge base marks an intent as one a human must handle.
    pub fn intent_escalates(&self, intent: &str) -> bool {
        self.content()
            .knowledge
            .intents
            .get(intent)
            .is_some_and(|i| i.escalate)
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}
