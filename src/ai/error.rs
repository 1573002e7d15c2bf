//! Errors of the AI engine; `http/` and `ws/` map them to the outside.

use std::path::PathBuf;

/// Everything that can go wrong loading or running the models.
#[derive(Debug, thiserror::Error)]
pub enum AiError {
    /// A model file is missing or unreadable: the server cannot start its AI without it.
    #[error("cannot read model file {path}")]
    ModelIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A derived file (trained head, passage embeddings) could not be written to the cache.
    #[error("cannot write cache file {path}")]
    CacheIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The weights file is not valid safetensors or lacks a tensor.
    #[error("cannot load model weights from {path}")]
    Weights {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    /// The files parse but do not describe the model this engine runs.
    #[error("model files under {path} do not fit: {reason}")]
    InvalidModel { path: PathBuf, reason: String },
    /// The tokenizer file cannot be loaded or configured, or rejected a text.
    #[error("tokenizer failed")]
    Tokenizer(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The operating system refused the encoder's or the worker's threads.
    #[error("cannot start the embedding threads")]
    Threads(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Training data is unreadable or unusable (a missing column, a single label).
    #[error("bad training data: {0}")]
    TrainingData(String),
    /// The intent head failed to build, train, run, save or load.
    #[error("intent head failed")]
    Head(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Training failed inside candle (building, differentiating or saving a network).
    #[error("training failed")]
    Training(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The search index's folder could not be read or written.
    #[error("cannot use the search index folder {path}")]
    IndexIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The knowledge base's search index could not be built or searched.
    #[error("search index failed")]
    Index(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A caller passed inputs that do not fit together (e.g. texts and embeddings of
    /// different counts).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The engine is at its concurrency cap or the embedding queue is full: callers should
    /// answer "busy" (503) rather than wait.
    #[error("the AI engine is overloaded")]
    Overloaded,
    /// The worker thread is gone (it only stops when the process is shutting down).
    #[error("the embedding worker has stopped")]
    WorkerStopped,
}
