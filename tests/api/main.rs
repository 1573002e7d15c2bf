//! Integration tests: the real server, real sockets, real SQLite and PostgreSQL.

mod helpers;

mod agent_api;
mod bad_input;
mod cluster;
mod drain;
mod ops;
mod privacy;
mod realtime;
mod resume;
mod routing;
mod rules;
mod store;
