//! Automation around conversations: the escalation rules in force, and (with the AI engine)
//! the bot's answers, handoff to humans and routing.

mod bot;
mod desk;
mod routing;
mod rulebook;

pub use bot::Bot;
pub use desk::Desk;
pub use routing::{assign_queued, candidates};
pub use rulebook::{RuleBook, RuleBookError, stored as stored_rules};
