//! Switchboard: a real-time support and coaching session server with local AI.

/// The local AI engine: sentence embeddings on the CPU, batched off the async workers.
pub mod ai;
