//! From an analysis to the bot's words. Three outcomes: an answer (the intent's own answer, or
//! the best passage quoted, always with its source) when the engine is confident; a clarifying
//! question naming the two candidates when the top two intents are close; otherwise a fallback
//! that says it did not understand and how to reach a person.

use serde::{Deserialize, Serialize};

use super::{Analysis, Knowledge};

/// Thresholds of the responder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponderConfig {
    /// Intent confidence from which the bot answers from the intent.
    pub answer_confidence: f32,
    /// The top two intents closer than this (both at least `clarify_floor`) make the bot ask.
    pub clarify_margin: f32,
    pub clarify_floor: f32,
    /// Cosine similarity from which the best passage answers by itself.
    pub passage_similarity: f32,
    /// Longest quote from a passage, in characters; it is cut at a sentence end.
    pub max_quote_chars: usize,
}

impl Default for ResponderConfig {
    fn default() -> Self {
        Self {
            answer_confidence: 0.6,
            clarify_margin: 0.2,
            clarify_floor: 0.2,
            passage_similarity: 0.6,
            max_quote_chars: 360,
        }
    }
}

/// What the responder knows of the conversation besides the message.
#[derive(Clone, Debug, Default)]
pub struct ConversationContext {
    /// Fallback replies in a row just before this message.
    pub consecutive_fallbacks: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    Answer,
    Clarify,
    Fallback,
}

/// An article offered with a reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub title: String,
    pub link: String,
}

/// The bot's reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub kind: ReplyKind,
    pub text: String,
    /// The intent the reply answers (for a clarifying question, the likelier one).
    pub intent: Option<String>,
    pub confidence: f32,
    pub sources: Vec<Source>,
}

pub(super) fn respond(
    config: &ResponderConfig,
    knowledge: &Knowledge,
    analysis: &Analysis,
    context: &ConversationContext,
) -> Reply {
    let guess = &analysis.intent;
    if !guess.out_of_scope
        && guess.confidence >= config.answer_confidence
        && let Some(reply) = from_intent(config, knowledge, analysis, &guess.name, guess.confidence)
    {
        return reply;
    }
    if let Some((other, p)) = &guess.runner_up {
        let close = guess.confidence - p <= config.clarify_margin;
        if close && *p >= config.clarify_floor && guess.confidence >= config.clarify_floor {
            return Reply {
                kind: ReplyKind::Clarify,
                text: format!(
                    "Just to be sure I help with the right thing: is this about {} or {}?",
                    topic(knowledge, &guess.name),
                    topic(knowledge, other)
                ),
                intent: Some(guess.name.clone()),
                confidence: guess.confidence,
                sources: Vec::new(),
            };
        }
    }
    if let Some(best) = analysis.passages.first()
        && best.dense >= config.passage_similarity
        && let Some(link) = &best.link
    {
        return Reply {
            kind: ReplyKind::Answer,
            text: quote(&best.text, config.max_quote_chars),
            intent: None,
            confidence: best.dense,
            sources: vec![Source {
                title: best.title.clone(),
                link: link.clone(),
            }],
        };
    }
    let text = if context.consecutive_fallbacks == 0 {
        "Sorry, I'm not sure I understood. Could you say it another way? You can also ask for a person at any time."
    } else {
        "I'm still not finding the right answer, sorry. Let me get a person to help you."
    };
    Reply {
        kind: ReplyKind::Fallback,
        text: text.to_owned(),
        intent: None,
        confidence: guess.confidence,
        sources: Vec::new(),
    }
}

/// Replies an agent could send, best first: the answers of the two likeliest intents and the
/// best passage, whatever the confidence (the agent judges), without repeats.
pub(super) fn suggest(
    config: &ResponderConfig,
    knowledge: &Knowledge,
    analysis: &Analysis,
) -> Vec<Reply> {
    let guess = &analysis.intent;
    let mut candidates: Vec<(&str, f32)> = vec![(&guess.name, guess.confidence)];
    if let Some((name, p)) = &guess.runner_up {
        candidates.push((name, *p));
    }
    let mut replies: Vec<Reply> = candidates
        .into_iter()
        .filter_map(|(name, p)| from_intent(config, knowledge, analysis, name, p))
        .collect();
    if let Some(best) = analysis.passages.first()
        && let Some(link) = &best.link
    {
        replies.push(Reply {
            kind: ReplyKind::Answer,
            text: quote(&best.text, config.max_quote_chars),
            intent: None,
            confidence: best.dense.max(0.0),
            sources: vec![Source {
                title: best.title.clone(),
                link: link.clone(),
            }],
        });
    }
    let mut unique: Vec<Reply> = Vec::with_capacity(replies.len());
    for reply in replies {
        if !unique.iter().any(|r| r.text == reply.text) {
            unique.push(reply);
        }
    }
    unique
}

/// The intent's own answer, or the best passage of its article.
fn from_intent(
    config: &ResponderConfig,
    knowledge: &Knowledge,
    analysis: &Analysis,
    name: &str,
    confidence: f32,
) -> Option<Reply> {
    let intent = knowledge.intents.get(name)?;
    let source = intent.article.as_ref().and_then(|id| {
        let (title, link) = knowledge.articles.get(id)?;
        Some(Source {
            title: title.clone(),
            link: link.clone(),
        })
    });
    let text = match (&intent.answer, &intent.article) {
        (Some(answer), _) => answer.clone(),
        (None, Some(article)) => {
            let prefix = format!("{article}#");
            match analysis.passages.iter().find(|p| p.id.starts_with(&prefix)) {
                Some(passage) => quote(&passage.text, config.max_quote_chars),
                None => format!(
                    "This guide should help: {}.",
                    source
                        .as_ref()
                        .map_or(article.as_str(), |s| s.title.as_str())
                ),
            }
        }
        (None, None) => return None,
    };
    Some(Reply {
        kind: ReplyKind::Answer,
        text,
        intent: Some(name.to_owned()),
        confidence,
        sources: source.into_iter().collect(),
    })
}

/// How a clarifying question names an intent: its article's title, else its description.
fn topic(knowledge: &Knowledge, intent: &str) -> String {
    let Some(found) = knowledge.intents.get(intent) else {
        return intent.replace('_', " ");
    };
    if let Some((title, _)) = found
        .article
        .as_ref()
        .and_then(|a| knowledge.articles.get(a))
    {
        return format!("\u{201c}{title}\u{201d}");
    }
    found
        .description
        .as_deref()
        .map(|d| d.trim_end_matches('.').to_lowercase())
        .unwrap_or_else(|| intent.replace('_', " "))
}

/// The passage's first sentences, up to `max` characters, cut at a sentence end where there
/// is one.
fn quote(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let cut: String = text.chars().take(max).collect();
    match cut.rfind(['.', '!', '?']) {
        Some(end) if end > max / 3 => cut[..=end].to_owned(),
        _ => format!("{}\u{2026}", cut.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_end_at_a_sentence_when_they_must_be_cut() {
        assert_eq!(quote("Short enough.", 50), "Short enough.");
        let long = "First sentence is here. Second one runs on and on and on.";
        assert_eq!(quote(long, 40), "First sentence is here.");
        assert_eq!(
            quote("no sentence end in this long text", 10),
            "no sentenc\u{2026}"
        );
    }
}
