//! The analytics summary of a window of conversations: states, AI containment, escalations by
//! rule, response times, CSAT, answer ratings, intents and sentiment. The store supplies raw
//! per-conversation facts; the arithmetic here is pure. Every figure is defined in
//! `docs/console-api.md` ("Analytics"), and this module follows those definitions word for word.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::ConversationState;
use crate::store::{ConversationFacts, FeedbackTotals, RuleFirings, Store, StoreError};

/// The summary of the conversations created in `[from, to)`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Summary {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub conversations: ConversationCounts,
    pub containment: Containment,
    pub escalations: Escalations,
    pub first_response: FirstResponse,
    /// From escalation to the first agent message at or after it.
    pub escalation_to_agent: Durations,
    pub csat: Csat,
    pub answers: AnswerRatings,
    pub intents: Intents,
    pub sentiment: Sentiment,
}

/// Conversations of the window by their state now.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, ToSchema)]
pub struct ConversationCounts {
    pub total: u64,
    pub bot: u64,
    pub queued: u64,
    pub assigned: u64,
    pub resolved: u64,
}

/// Resolved conversations the bot handled alone.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Containment {
    pub resolved: u64,
    /// Resolved, never escalated, and without a single agent message.
    pub contained: u64,
    /// `contained / resolved`; null when nothing was resolved.
    pub rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Escalations {
    /// Conversations escalated at least once.
    pub conversations: u64,
    /// `conversations / conversations.total`; null when there are no conversations.
    pub rate: Option<f64>,
    /// Rules that fired on the window's conversations, by rule name.
    pub by_rule: Vec<RuleRate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RuleRate {
    pub rule: String,
    /// Times the rule fired.
    pub firings: u64,
    /// Conversations it fired on at least once.
    pub conversations: u64,
    /// `conversations / conversations.total`.
    pub rate: f64,
}

/// From a conversation's first visitor message to the first reply after it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct FirstResponse {
    /// The first bot or agent message.
    pub any: Durations,
    /// The first bot message.
    pub bot: Durations,
    /// The first agent message.
    pub agent: Durations,
}

/// A set of durations, one per conversation that has one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Durations {
    pub count: u64,
    /// Null when `count` is 0.
    pub mean_seconds: Option<f64>,
    /// The middle value, or the mean of the two middle values; null when `count` is 0.
    pub median_seconds: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Csat {
    pub count: u64,
    /// Mean score (1 to 5); null when `count` is 0.
    pub average: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct AnswerRatings {
    pub up: u64,
    pub down: u64,
    /// `up / (up + down)`; null when no answer was rated.
    pub up_share: Option<f64>,
}

/// Intents of analysed visitor messages.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Intents {
    /// Messages counted below: `out_of_scope` plus the sum of `by_name`.
    pub analysed: u64,
    pub out_of_scope: u64,
    /// Most frequent first, then by name.
    pub by_name: Vec<IntentCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct IntentCount {
    pub name: String,
    pub messages: u64,
}

/// Sentiment of analysed visitor messages.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Sentiment {
    /// Messages with a sentiment label: `negative + neutral + positive`.
    pub analysed: u64,
    pub negative: u64,
    pub neutral: u64,
    pub positive: u64,
    /// Mean `sentiment.score` of the labelled messages that have a numeric score.
    pub mean_score: Option<f64>,
}

/// Reads the summary of the conversations created in `[from, to)` from the store.
pub async fn summary(
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Summary, StoreError> {
    let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
    let facts = store.analytics_conversations(from_ms, to_ms).await?;
    let firings = store.analytics_firings(from_ms, to_ms).await?;
    let feedback = store.analytics_feedback(from_ms, to_ms).await?;
    let mut analyses = Analyses::default();
    store
        .analytics_analyses(from_ms, to_ms, |raw| analyses.add(raw))
        .await?;
    Ok(compute(from, to, &facts, &firings, feedback, analyses))
}

fn compute(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    facts: &[ConversationFacts],
    firings: &[RuleFirings],
    feedback: FeedbackTotals,
    analyses: Analyses,
) -> Summary {
    let mut counts = ConversationCounts::default();
    let (mut contained, mut escalated) = (0, 0);
    let (mut any, mut bot, mut agent, mut handoff) = (vec![], vec![], vec![], vec![]);
    for c in facts {
        counts.total += 1;
        *match c.state {
            ConversationState::Bot => &mut counts.bot,
            ConversationState::Queued => &mut counts.queued,
            ConversationState::Assigned => &mut counts.assigned,
            ConversationState::Resolved => &mut counts.resolved,
        } += 1;
        if c.state == ConversationState::Resolved
            && c.escalated_at.is_none()
            && c.agent_messages == 0
        {
            contained += 1;
        }
        if let Some(escalated_at) = c.escalated_at {
            escalated += 1;
            if let Some(reply) = c.first_agent_after_escalation_at {
                handoff.push(reply - escalated_at);
            }
        }
        if let Some(asked) = c.first_visitor_at {
            let first_reply = match (c.first_bot_after_visitor_at, c.first_agent_after_visitor_at) {
                (Some(b), Some(a)) => Some(b.min(a)),
                (b, a) => b.or(a),
            };
            any.extend(first_reply.map(|at| at - asked));
            bot.extend(c.first_bot_after_visitor_at.map(|at| at - asked));
            agent.extend(c.first_agent_after_visitor_at.map(|at| at - asked));
        }
    }
    let total = counts.total;
    Summary {
        from,
        to,
        conversations: counts,
        containment: Containment {
            resolved: counts.resolved,
            contained,
            rate: ratio(contained, counts.resolved),
        },
        escalations: Escalations {
            conversations: escalated,
            rate: ratio(escalated, total),
            by_rule: firings
                .iter()
                .map(|f| {
                    let conversations = count(f.conversations);
                    RuleRate {
                        rule: f.rule.clone(),
                        firings: count(f.firings),
                        conversations,
                        rate: ratio(conversations, total).unwrap_or(0.0),
                    }
                })
                .collect(),
        },
        first_response: FirstResponse {
            any: Durations::of(any),
            bot: Durations::of(bot),
            agent: Durations::of(agent),
        },
        escalation_to_agent: Durations::of(handoff),
        csat: Csat {
            count: count(feedback.csat_count),
            average: (feedback.csat_count > 0)
                .then(|| feedback.csat_sum as f64 / feedback.csat_count as f64),
        },
        answers: AnswerRatings {
            up: count(feedback.answers_up),
            down: count(feedback.answers_down),
            up_share: ratio(
                count(feedback.answers_up),
                count(feedback.answers_up + feedback.answers_down),
            ),
        },
        intents: analyses.intents(),
        sentiment: analyses.sentiment(),
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// SQL counts are never negative.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Durations {
    /// Summarises durations given in milliseconds.
    fn of(mut ms: Vec<i64>) -> Self {
        ms.sort_unstable();
        let n = ms.len();
        let seconds = |v: f64| v / 1000.0;
        let median = match n {
            0 => None,
            _ if n % 2 == 1 => Some(ms[n / 2] as f64),
            _ => Some((ms[n / 2 - 1] as f64 + ms[n / 2] as f64) / 2.0),
        };
        Self {
            count: n as u64,
            mean_seconds: (n > 0).then(|| seconds(ms.iter().sum::<i64>() as f64 / n as f64)),
            median_seconds: median.map(seconds),
        }
    }
}

/// Intents and sentiment gathered from analysis JSON, read defensively: a message counts only
/// for the parts of its analysis that have the expected shape.
#[derive(Debug, Default)]
struct Analyses {
    intents: HashMap<String, u64>,
    out_of_scope: u64,
    labels: [u64; 3],
    score_sum: f64,
    scored: u64,
}

const LABELS: [&str; 3] = ["negative", "neutral", "positive"];

impl Analyses {
    fn add(&mut self, raw: &str) {
        let Ok(analysis) = serde_json::from_str::<Value>(raw) else {
            return;
        };
        let intent = &analysis["intent"];
        if intent["out_of_scope"] == Value::Bool(true) {
            self.out_of_scope += 1;
        } else if let Some(name) = intent["name"].as_str().filter(|n| !n.is_empty()) {
            *self.intents.entry(name.to_owned()).or_default() += 1;
        }
        let sentiment = &analysis["sentiment"];
        let label = sentiment["label"].as_str();
        if let Some(i) = LABELS.iter().position(|l| Some(*l) == label) {
            self.labels[i] += 1;
            if let Some(score) = sentiment["score"].as_f64().filter(|s| s.is_finite()) {
                self.score_sum += score;
                self.scored += 1;
            }
        }
    }

    fn intents(&self) -> Intents {
        let mut by_name: Vec<IntentCount> = self
            .intents
            .iter()
            .map(|(name, &messages)| IntentCount {
                name: name.clone(),
                messages,
            })
            .collect();
        by_name.sort_by(|a, b| b.messages.cmp(&a.messages).then(a.name.cmp(&b.name)));
        Intents {
            analysed: self.out_of_scope + by_name.iter().map(|i| i.messages).sum::<u64>(),
            out_of_scope: self.out_of_scope,
            by_name,
        }
    }

    fn sentiment(&self) -> Sentiment {
        let [negative, neutral, positive] = self.labels;
        Sentiment {
            analysed: negative + neutral + positive,
            negative,
            neutral,
            positive,
            mean_score: (self.scored > 0).then(|| self.score_sum / self.scored as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_a_mean_and_a_median_in_seconds() {
        assert_eq!(
            Durations::of(vec![]),
            Durations {
                count: 0,
                mean_seconds: None,
                median_seconds: None
            }
        );
        let odd = Durations::of(vec![9000, 1000, 2000]);
        assert_eq!(
            (odd.count, odd.mean_seconds, odd.median_seconds),
            (3, Some(4.0), Some(2.0))
        );
        let even = Durations::of(vec![4000, 1000, 2000, 9000]);
        assert_eq!(even.median_seconds, Some(3.0));
        assert_eq!(even.mean_seconds, Some(4.0));
    }

    #[test]
    fn analyses_are_read_defensively() {
        let mut a = Analyses::default();
        for raw in [
            r#"{"intent":{"name":"refund","confidence":0.9,"out_of_scope":false},"sentiment":{"label":"negative","score":-0.5}}"#,
            r#"{"intent":{"name":"refund"},"sentiment":{"label":"positive","score":1}}"#,
            r#"{"intent":{"name":"fare","out_of_scope":true},"sentiment":{"label":"neutral"}}"#,
            r#"{"intent":{"name":"","out_of_scope":"yes"},"sentiment":{"label":"angry","score":-1}}"#,
            r#"{"intent":"refund","sentiment":[1]}"#,
            r#"{"intent":{"name":"account"}}"#,
            "not json",
            "null",
        ] {
            a.add(raw);
        }
        let intents = a.intents();
        assert_eq!(intents.out_of_scope, 1);
        assert_eq!(
            intents.by_name,
            [
                IntentCount {
                    name: "refund".into(),
                    messages: 2
                },
                IntentCount {
                    name: "account".into(),
                    messages: 1
                },
            ]
        );
        assert_eq!(intents.analysed, 4);
        let sentiment = a.sentiment();
        assert_eq!(
            (
                sentiment.analysed,
                sentiment.negative,
                sentiment.neutral,
                sentiment.positive
            ),
            (3, 1, 1, 1)
        );
        assert_eq!(sentiment.mean_score, Some(0.25));
    }

    fn facts(state: ConversationState) -> ConversationFacts {
        ConversationFacts {
            state,
            escalated_at: None,
            agent_messages: 0,
            first_visitor_at: None,
            first_bot_after_visitor_at: None,
            first_agent_after_visitor_at: None,
            first_agent_after_escalation_at: None,
        }
    }

    #[test]
    fn containment_needs_resolution_without_escalation_or_agent() {
        let mut escalated = facts(ConversationState::Resolved);
        escalated.escalated_at = Some(10);
        let mut agent_spoke = facts(ConversationState::Resolved);
        agent_spoke.agent_messages = 1;
        let all = [
            facts(ConversationState::Resolved),
            escalated,
            agent_spoke,
            facts(ConversationState::Bot),
        ];
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        let s = compute(
            epoch,
            epoch,
            &all,
            &[],
            FeedbackTotals::default(),
            Analyses::default(),
        );
        assert_eq!((s.containment.resolved, s.containment.contained), (3, 1));
        assert_eq!(s.containment.rate, Some(1.0 / 3.0));
        assert_eq!(s.escalations.rate, Some(0.25));
        assert_eq!(s.csat.average, None);
        assert_eq!(s.answers.up_share, None);
    }

    #[test]
    fn first_response_takes_the_earlier_of_bot_and_agent() {
        let mut c = facts(ConversationState::Assigned);
        c.first_visitor_at = Some(1_000);
        c.first_bot_after_visitor_at = Some(3_000);
        c.first_agent_after_visitor_at = Some(2_000);
        let mut silent = facts(ConversationState::Bot);
        silent.first_visitor_at = Some(5_000);
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        let s = compute(
            epoch,
            epoch,
            &[c, silent],
            &[],
            FeedbackTotals::default(),
            Analyses::default(),
        );
        assert_eq!(s.first_response.any.mean_seconds, Some(1.0));
        assert_eq!(s.first_response.bot.mean_seconds, Some(2.0));
        assert_eq!(s.first_response.agent.count, 1);
    }
}
