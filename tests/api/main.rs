//! Integration tests: the real server, real sockets, real SQLite and PostgreSQL.

mod helpers;

mod agent_api;
mod analytics;
mod articles;
mod bad_input;
mod bot;
mod cluster;
mod drain;
mod feedback;
mod intents;
mod knowledge;
mod ops;
mod privacy;
mod realtime;
mod resume;
mod routing;
mod rules;
mod store;
