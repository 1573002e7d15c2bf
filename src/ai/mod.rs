//! The local AI engine. Everything runs on this server's CPU from files under `models/`:
//! nothing is downloaded and no text leaves the machine.
//!
//! - [`Embedder`](crate::ai::Embedder) turns text into all-MiniLM-L6-v2 sentence embeddings,
//!   equal to sentence-transformers' (mean pooling, L2 normalisation, truncation at 256
//!   tokens), with its own BERT forward pass tuned for small batches on a few cores.
//! - [`EmbedHandle`](crate::ai::EmbedHandle) puts a micro-batching worker thread in front of
//!   it, so concurrent conversations share forward passes and CPU work never runs on the async
//!   runtime.
//! - [`intent`](crate::ai::intent) trains, evaluates, saves and loads a small classifier over
//!   the embeddings, with out-of-scope detection.
//! - [`sentiment`](crate::ai::sentiment) scores a message negative / neutral / positive (a head
//!   over the embedding, VADER's score beside it) and follows a conversation's trend.
//! - [`entities`](crate::ai::entities) finds ids, emails, phones, amounts, dates, URLs and known
//!   names in a message.
//! - [`retrieval`](crate::ai::retrieval) finds knowledge-base passages with BM25 and
//!   embeddings, fused.
//! - [`Engine`](crate::ai::Engine) puts them together for the conversations: `analyze` a
//!   visitor's message, `respond` to it (answer with sources, clarifying question, or
//!   fallback).

mod bert;
mod embedder;
mod engine;
pub mod entities;
mod error;
pub mod intent;
pub mod retrieval;
pub mod sentiment;
mod tokenize;
mod training;
mod worker;

pub use embedder::{EMBEDDING_DIM, Embedder, EmbedderOptions, Embedding};
pub use engine::{
    Analysis, ConversationContext, Engine, EngineConfig, IntentGuess, KnowledgeUpdate, LoadStats,
    Reply, ReplyKind, ResponderConfig, RetrievedPassage, Source, StageTimings, StoredEmbeddings,
    SuggestedArticle, Suggestions, UpdateTurn, article_link, passage_questions, passages,
};
pub use error::AiError;
pub use training::TUNING_FILE;
pub use worker::{EmbedHandle, WorkerConfig};

/// Bytes (a digest) as lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A name beside `path` that no other process uses, to write into before renaming into place.
fn staging_path(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    path.with_file_name(name)
}
