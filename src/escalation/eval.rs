use serde::Serialize;

use super::rule::{Action, Condition, Rule};

/// What is known when a visitor's message has been analysed: the input of every rule.
#[derive(Clone, Debug, Default)]
pub struct Facts<'a> {
    pub text: &'a str,
    pub intent: Option<&'a str>,
    pub confidence: f32,
    pub out_of_scope: bool,
    /// Sentiment of this message, -1 (negative) to 1 (positive).
    pub sentiment: f32,
    /// Sentiment of the conversation's visitor messages, oldest first, this one last.
    pub sentiment_history: &'a [f32],
    /// Bot replies in a row, up to this message, that were fallbacks.
    pub consecutive_fallbacks: u32,
    /// Kinds of the entities found in this message (`email`, `order_id`, …).
    pub entity_kinds: &'a [&'a str],
    pub visitor_attributes: Option<&'a serde_json::Map<String, serde_json::Value>>,
    /// Visitor messages in the conversation, this one included.
    pub message_count: u32,
    /// Seconds since the visitor's first unanswered message.
    pub waiting_secs: u64,
}

/// A rule that fired: which, why, and what it asks for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Firing {
    pub rule: String,
    pub reason: String,
    pub actions: Vec<Action>,
}

/// The enabled rules that match, in the order given.
pub fn evaluate(rules: &[Rule], facts: &Facts<'_>) -> Vec<Firing> {
    rules
        .iter()
        .filter(|r| r.spec.enabled)
        .filter_map(|rule| {
            explain(&rule.condition, facts).map(|reason| Firing {
                rule: rule.name().to_owned(),
                reason,
                actions: rule.actions.clone(),
            })
        })
        .collect()
}

/// Least-squares slope of the last `n` scores per message; `None` with fewer than `n`.
pub fn trend_slope(history: &[f32], n: usize) -> Option<f32> {
    if n < 2 || history.len() < n {
        return None;
    }
    let ys = &history[history.len() - n..];
    let mean_x = (n as f32 - 1.0) / 2.0;
    let mean_y = ys.iter().sum::<f32>() / n as f32;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, y) in ys.iter().enumerate() {
        let dx = i as f32 - mean_x;
        num += dx * (y - mean_y);
        den += dx * dx;
    }
    Some(num / den)
}

/// `Some(reason)` when the condition holds.
fn explain(condition: &Condition, f: &Facts<'_>) -> Option<String> {
    match condition {
        Condition::All(items) => items
            .iter()
            .map(|c| explain(c, f))
            .collect::<Option<Vec<_>>>()
            .map(|reasons| reasons.join(" and ")),
        Condition::Any(items) => {
            let reasons: Vec<String> = items.iter().filter_map(|c| explain(c, f)).collect();
            (!reasons.is_empty()).then(|| reasons.join(" or "))
        }
        Condition::Not(inner) => explain(inner, f)
            .is_none()
            .then(|| format!("not ({})", describe(inner))),
        Condition::IntentIn(names) => f
            .intent
            .filter(|i| names.iter().any(|n| n == i))
            .map(|i| format!("intent `{i}` ({:.2})", f.confidence)),
        Condition::ConfidenceBelow(x) => {
            (f.confidence < *x).then(|| format!("intent confidence {:.2} below {x}", f.confidence))
        }
        Condition::OutOfScope(b) => {
            (f.out_of_scope == *b).then(|| if *b { "out of scope" } else { "in scope" }.to_owned())
        }
        Condition::SentimentBelow(x) => {
            (f.sentiment < *x).then(|| format!("sentiment {:.2} below {x}", f.sentiment))
        }
        Condition::SentimentTrendBelow { slope, over_last } => {
            trend_slope(f.sentiment_history, *over_last)
                .filter(|s| s < slope)
                .map(|s| format!("sentiment falling {s:.2} per message over the last {over_last}"))
        }
        Condition::ConsecutiveFallbacksAtLeast(n) => (f.consecutive_fallbacks >= *n)
            .then(|| format!("{} fallbacks in a row", f.consecutive_fallbacks)),
        Condition::Keywords(words) => {
            let text = f.text.to_lowercase();
            words
                .iter()
                .find(|w| contains_phrase(&text, w))
                .map(|w| format!("keyword \"{w}\""))
        }
        Condition::Regex(re) => re
            .find(f.text)
            .map(|m| format!("text matches /{}/ at \"{}\"", re.as_str(), m.as_str())),
        Condition::EntityPresent(kind) => f
            .entity_kinds
            .contains(&kind.as_str())
            .then(|| format!("{kind} mentioned")),
        Condition::VisitorAttribute { key, equals } => f
            .visitor_attributes
            .and_then(|a| a.get(key))
            .filter(|v| *v == equals)
            .map(|v| format!("visitor {key} = {v}")),
        Condition::MessageCountAtLeast(n) => {
            (f.message_count >= *n).then(|| format!("{} visitor messages", f.message_count))
        }
        Condition::WaitingLongerThanSecs(s) => {
            (f.waiting_secs > *s).then(|| format!("waiting {} s (limit {s} s)", f.waiting_secs))
        }
    }
}

/// A condition in words, for the reason of a `not`.
fn describe(condition: &Condition) -> String {
    match condition {
        Condition::All(items) => items.iter().map(describe).collect::<Vec<_>>().join(" and "),
        Condition::Any(items) => items.iter().map(describe).collect::<Vec<_>>().join(" or "),
        Condition::Not(inner) => format!("not ({})", describe(inner)),
        Condition::IntentIn(names) => format!("intent in [{}]", names.join(", ")),
        Condition::ConfidenceBelow(x) => format!("confidence below {x}"),
        Condition::OutOfScope(b) => if *b { "out of scope" } else { "in scope" }.to_owned(),
        Condition::SentimentBelow(x) => format!("sentiment below {x}"),
        Condition::SentimentTrendBelow { slope, over_last } => {
            format!("sentiment trend below {slope} over {over_last}")
        }
        Condition::ConsecutiveFallbacksAtLeast(n) => format!("{n}+ fallbacks in a row"),
        Condition::Keywords(words) => format!("keywords [{}]", words.join(", ")),
        Condition::Regex(re) => format!("/{}/", re.as_str()),
        Condition::EntityPresent(kind) => format!("{kind} mentioned"),
        Condition::VisitorAttribute { key, equals } => format!("visitor {key} = {equals}"),
        Condition::MessageCountAtLeast(n) => format!("{n}+ visitor messages"),
        Condition::WaitingLongerThanSecs(s) => format!("waiting over {s} s"),
    }
}

/// Whether `phrase` occurs in `text` on word boundaries (both already lower-cased).
fn contains_phrase(text: &str, phrase: &str) -> bool {
    text.match_indices(phrase).any(|(start, _)| {
        let end = start + phrase.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}
