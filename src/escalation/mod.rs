//! Escalation rules: data that decides when the bot hands a conversation to a human.
//!
//! Rules are written as YAML or JSON ([`RuleSpec`](crate::escalation::RuleSpec)), parsed into a
//! checked form ([`Rule`](crate::escalation::Rule)) that cannot hold a bad threshold, an empty set
//! or a regex that does not compile, and evaluated against the [`Facts`](crate::escalation::Facts)
//! known about a visitor's latest message. Evaluation is pure: the same rules and facts always give
//! the same firings, each with the reason it fired.

mod eval;
mod rule;
#[cfg(test)]
mod tests;

pub use eval::{Facts, Firing, evaluate, trend_slope};
pub use rule::{Action, Condition, Rule, RuleError, RuleSpec, parse_rule, parse_rules_yaml};
