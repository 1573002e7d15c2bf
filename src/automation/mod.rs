//! Automation around conversations: the escalation rules in force, and (with the AI engine)
//! the bot's answers, handoff to humans and routing.

mod desk;
mod routing;
mod rulebook;

pub use desk::Desk;
pub use routing::{assign_queued, candidates};
pub use rulebook::{RuleBook, RuleBookError};
