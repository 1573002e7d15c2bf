//! Switchboard: a real-time support and coaching server. A guided tour, from the wire inwards:

/// Agent accounts: creation and first API token.
pub mod agents;
/// The local AI engine: embeddings, intent, sentiment, entities, retrieval and replies, on the CPU.
pub mod ai;
/// Analytics: the summary of a window of conversations, from the store's raw figures.
pub mod analytics;
/// Visitor tokens and API token hashing.
pub mod auth;
/// Automation: the escalation rules in force, the bot, handoff and routing.
pub mod automation;
/// The conversation service: store first, then fan out in `seq` order.
pub mod chat;
/// The command line.
pub mod cli;
/// Cluster mode: replicas on one PostgreSQL database hear each other's writes.
pub mod cluster;
/// Typed configuration: defaults, file, environment.
pub mod config;
/// The product's vocabulary: ids, states, roles, validated text.
pub mod domain;
/// Graceful drain on SIGTERM.
pub mod drain;
/// Escalation rules: checked definitions and their pure evaluation.
pub mod escalation;
/// REST API, operator endpoints, error mapping.
pub mod http;
/// The rooms, and the fan-out of frames to their sockets.
pub mod hub;
/// The knowledge base as content: articles, intents, coaching cards.
pub mod kb;
/// Admin changes to articles: checked, stored, applied to the running engine.
pub mod knowledge;
/// Prometheus metrics.
pub mod metrics;
/// The WebSocket wire protocol: frames, error codes, close codes.
pub mod protocol;
/// Building and running the server.
pub mod startup;
/// Storage on SQLite or PostgreSQL.
pub mod store;
/// WebSocket endpoints and socket loops.
pub mod ws;
