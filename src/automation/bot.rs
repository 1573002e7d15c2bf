//! Bot mode: every visitor message is analysed and the analysis stored on it; while the
//! conversation is with the bot, the escalation rules are applied and, unless one hands the
//! conversation to a human, the bot answers. Messages of one conversation are handled one at
//! a time, in order; different conversations in parallel.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::ai::{AiError, Analysis, ConversationContext, Engine, Reply, ReplyKind};
use crate::chat::{Chat, ConversationLocks};
use crate::domain::{AuthorRole, ConversationId, ConversationState, Message, MessageText};
use crate::escalation::{Action, Facts, Firing, evaluate, trend_slope};
use crate::metrics::Metrics;
use crate::store::{Escalation, NewMessage, StoreError};

use super::desk::Desk;

/// Ordering locks, striped so their number stays fixed.
const LOCK_STRIPES: usize = 256;
/// Messages of the conversation read to build the rules' facts and the handoff summary.
const HISTORY: u32 = 200;
/// Messages quoted in a handoff summary.
const SUMMARY_MESSAGES: usize = 8;
/// Recent assignments whose waiting times give the expected wait.
const WAIT_SAMPLE: i64 = 50;
/// The trend reported in a handoff summary spans this many visitor messages.
const SUMMARY_TREND: usize = 3;

const BUSY: &str = "Sorry, I'm answering a lot of people right now. Please send that again in a moment, or ask for a person.";

/// The bot and everything it needs. Cheap to clone.
#[derive(Clone)]
pub struct Bot {
    engine: Arc<Engine>,
    chat: Chat,
    desk: Desk,
    metrics: Metrics,
    locks: ConversationLocks,
}

impl Bot {
    pub fn new(engine: Arc<Engine>, chat: Chat, desk: Desk, metrics: Metrics) -> Self {
        Self {
            engine,
            chat,
            desk,
            metrics,
            locks: ConversationLocks::new(LOCK_STRIPES),
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Takes a visitor message that was just stored; the work happens in the background.
    pub fn heard(&self, message: Message) {
        let bot = self.clone();
        tokio::spawn(async move {
            let (id, seq) = (message.conversation_id, message.seq);
            if let Err(e) = bot.handle(message).await {
                tracing::error!(error = ?e, conversation = %id, seq, "the bot could not handle a message");
            }
        });
    }

    async fn handle(&self, message: Message) -> Result<(), StoreError> {
        let id = message.conversation_id;
        let _order = self.locks.lock(id).await;
        let with_bot = self.chat.store().conversation(id).await?.state == ConversationState::Bot;
        if with_bot {
            self.chat.bot_typing(id, true).await;
        }
        let result = self.answer(&message, with_bot).await;
        if with_bot {
            self.chat.bot_typing(id, false).await;
        }
        result
    }

    async fn answer(&self, message: &Message, with_bot: bool) -> Result<(), StoreError> {
        let id = message.conversation_id;
        let started = std::time::Instant::now();
        let analysis = match self.engine.analyze(&message.text).await {
            Ok(analysis) => analysis,
            Err(AiError::Overloaded) => {
                self.metrics.ai_overloads.inc();
                if with_bot {
                    self.post_reply(id, busy_reply()).await?;
                }
                return Ok(());
            }
            Err(e) => {
                tracing::error!(error = ?e, "analysis failed");
                return Ok(());
            }
        };
        self.metrics
            .ai_stage_duration
            .with_label_values(&["analyze"])
            .observe(started.elapsed().as_secs_f64());
        self.observe(&analysis);
        let stored = serde_json::to_value(&analysis).expect("an analysis serialises");
        self.chat
            .store()
            .set_analysis(id, message.seq, &stored)
            .await?;
        if !with_bot {
            return Ok(());
        }

        let history = self.chat.store().recent_messages(id, HISTORY).await?;
        let fallbacks_before = consecutive_fallbacks(&history, message.seq);
        let started = std::time::Instant::now();
        let reply = self.engine.respond(
            &analysis,
            &ConversationContext {
                consecutive_fallbacks: fallbacks_before,
            },
        );
        self.metrics
            .ai_stage_duration
            .with_label_values(&["respond"])
            .observe(started.elapsed().as_secs_f64());
        let mut scores: Vec<f32> = history
            .iter()
            .filter(|m| m.author == AuthorRole::Visitor && m.seq < message.seq)
            .filter_map(sentiment_of)
            .collect();
        scores.push(analysis.sentiment.score);
        let fallbacks = fallbacks_before + u32::from(reply.kind == ReplyKind::Fallback);
        let firings = self
            .fire_rules(message, &analysis, &history, &scores, fallbacks)
            .await;
        if !firings.is_empty() {
            let recorded: Vec<(String, String)> = firings
                .iter()
                .map(|f| (f.rule.clone(), f.reason.clone()))
                .collect();
            self.chat
                .record_firings(id, Some(message.seq), &recorded)
                .await?;
        }
        let escalation = plan(&firings, &analysis, &self.engine);
        let mut system_messages = Vec::new();
        let (mut tags, mut priority) = (Vec::new(), None);
        for action in firings.iter().flat_map(|f| &f.actions) {
            match action {
                Action::Tag { tag } => tags.push(tag.clone()),
                Action::SetPriority { priority: p } => {
                    priority = Some(priority.unwrap_or(0).max(i64::from(*p)));
                }
                Action::SystemMessage { text } => system_messages.push(text.clone()),
                Action::Escalate { .. } => {}
            }
        }
        match escalation {
            Some((priority_at, skill)) => {
                let summary = handoff_summary(&firings, &analysis, &history, &scores);
                let escalation = Escalation {
                    priority: priority_at.max(priority.unwrap_or(0)),
                    skill,
                    tags,
                    handoff: summary,
                };
                match self.chat.escalate(id, &escalation).await {
                    Ok(_) => {}
                    Err(StoreError::Conflict(_)) => return Ok(()),
                    Err(e) => return Err(e),
                }
                for text in system_messages {
                    self.post_system(id, &text).await?;
                }
                let notice = self.queue_notice(id).await?;
                self.post_system(id, &notice).await?;
                self.desk.route().await?;
            }
            None => {
                if !tags.is_empty() || priority.is_some() {
                    self.chat.annotate(id, &tags, priority).await?;
                }
                for text in system_messages {
                    self.post_system(id, &text).await?;
                }
                self.post_reply(id, reply).await?;
            }
        }
        Ok(())
    }

    fn observe(&self, analysis: &Analysis) {
        let t = &analysis.timings;
        for (stage, ms) in [
            ("embed", t.embed_ms),
            ("intent", t.intent_ms),
            ("sentiment", t.sentiment_ms),
            ("entities", t.entities_ms),
            ("retrieval", t.retrieval_ms),
        ] {
            self.metrics
                .ai_stage_duration
                .with_label_values(&[stage])
                .observe(ms / 1e3);
        }
        self.metrics
            .embed_batch_size
            .observe(analysis.timings.embed_batch as f64);
        let intent = analysis.intent().unwrap_or(crate::ai::intent::OUT_OF_SCOPE);
        self.metrics.intents.with_label_values(&[intent]).inc();
    }

    /// The rules in force applied to this message. An intent the knowledge base marks as one
    /// for a human escalates even when no rule says so.
    async fn fire_rules(
        &self,
        message: &Message,
        analysis: &Analysis,
        history: &[Message],
        sentiment_history: &[f32],
        consecutive_fallbacks: u32,
    ) -> Vec<Firing> {
        let rules = match self.desk.rules().current().await {
            Ok(rules) => rules,
            Err(e) => {
                tracing::error!(error = ?e, "cannot read the escalation rules; none applied");
                Arc::new(Vec::new())
            }
        };
        let mut kinds: Vec<String> = Vec::new();
        for entity in &analysis.entities {
            let kind = serde_json::to_value(entity.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            if let Some(tag) = &entity.tag {
                kinds.push(format!("{tag}_id"));
            }
            kinds.push(kind);
        }
        let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
        let facts = Facts {
            text: &message.text,
            intent: analysis.intent(),
            confidence: analysis.intent.confidence,
            out_of_scope: analysis.intent.out_of_scope,
            sentiment: analysis.sentiment.score,
            sentiment_history,
            consecutive_fallbacks,
            entity_kinds: &kinds,
            visitor_attributes: None,
            message_count: history
                .iter()
                .filter(|m| m.author == AuthorRole::Visitor && m.seq <= message.seq)
                .count() as u32,
            waiting_secs: 0,
        };
        let mut firings = evaluate(&rules, &facts);
        if let Some(intent) = analysis.intent()
            && self.engine.intent_escalates(intent)
            && !firings.iter().any(escalates)
        {
            firings.push(Firing {
                rule: "intent-escalates".into(),
                reason: format!(
                    "intent {intent} ({:.2}) is marked for a human in the knowledge base",
                    analysis.intent.confidence
                ),
                actions: vec![Action::Escalate {
                    priority: 1,
                    skill: self.engine.intent_skill(intent),
                }],
            });
        }
        firings
    }

    /// Tells the visitor where they stand in the queue.
    async fn queue_notice(&self, id: ConversationId) -> Result<String, StoreError> {
        let store = self.chat.store();
        let position = store.queue_position(id).await?;
        if store.online_agent_loads().await?.is_empty() {
            return Ok(format!(
                "No agent is online right now. You're number {position} in the queue and we'll answer here as soon as someone is back."
            ));
        }
        let wait = match store.recent_median_wait_ms(WAIT_SAMPLE).await? {
            Some(ms) if ms >= 60_000 => format!("about {} minutes", (ms + 30_000) / 60_000),
            Some(_) => "less than a minute".to_owned(),
            None => "a few minutes".to_owned(),
        };
        Ok(format!(
            "I'm passing you to a member of our team. You're number {position} in the queue; the expected wait is {wait}."
        ))
    }

    async fn post_system(&self, id: ConversationId, text: &str) -> Result<(), StoreError> {
        let new = NewMessage {
            conversation_id: id,
            author: AuthorRole::System,
            author_id: None,
            text: bot_text(text),
            client_id: None,
            analysis: None,
        };
        self.chat.post(new, None).await.map(|_| ())
    }

    /// Posts a reply unless the conversation left the bot meanwhile.
    async fn post_reply(&self, id: ConversationId, reply: Reply) -> Result<(), StoreError> {
        let kind = match reply.kind {
            ReplyKind::Answer => "answer",
            ReplyKind::Clarify => "clarify",
            ReplyKind::Fallback if reply.text == BUSY => "busy",
            ReplyKind::Fallback => "fallback",
        };
        let new = NewMessage {
            conversation_id: id,
            author: AuthorRole::Bot,
            author_id: None,
            text: bot_text(&reply.text),
            client_id: None,
            analysis: Some(json!({ "reply": reply })),
        };
        if self.chat.post_from_bot(new).await?.is_some() {
            self.metrics.bot_replies.with_label_values(&[kind]).inc();
        }
        Ok(())
    }
}

fn busy_reply() -> Reply {
    Reply {
        kind: ReplyKind::Fallback,
        text: BUSY.to_owned(),
        intent: None,
        confidence: 0.0,
        sources: Vec::new(),
    }
}

/// Texts the bot writes are short and non-empty; one too long for the limit is cut.
fn bot_text(text: &str) -> MessageText {
    MessageText::parse(text.to_owned(), usize::MAX).expect("the bot never writes an empty message")
}

fn escalates(firing: &Firing) -> bool {
    firing
        .actions
        .iter()
        .any(|a| matches!(a, Action::Escalate { .. }))
}

/// The highest priority and the first skill any escalating firing asks for; without a skill
/// from the rules, the intent's own skill.
fn plan(firings: &[Firing], analysis: &Analysis, engine: &Engine) -> Option<(i64, Option<String>)> {
    let mut planned: Option<(i64, Option<String>)> = None;
    for action in firings.iter().flat_map(|f| &f.actions) {
        if let Action::Escalate { priority, skill } = action {
            let (p, s) = planned.get_or_insert((0, None));
            *p = (*p).max(i64::from(*priority));
            if s.is_none() {
                s.clone_from(skill);
            }
        }
    }
    if let Some((_, skill @ None)) = &mut planned {
        *skill = analysis.intent().and_then(|i| engine.intent_skill(i));
    }
    planned
}

fn sentiment_of(message: &Message) -> Option<f32> {
    let score = message.analysis.as_ref()?.get("sentiment")?.get("score")?;
    score.as_f64().map(|s| s as f32)
}

/// Bot replies that were fallbacks, in a row, before `seq`.
fn consecutive_fallbacks(history: &[Message], seq: i64) -> u32 {
    let mut n = 0;
    for m in history.iter().rev().filter(|m| m.seq < seq) {
        match m.author {
            AuthorRole::Bot => {
                let kind = m
                    .analysis
                    .as_ref()
                    .and_then(|a| a.get("reply")?.get("kind")?.as_str().map(str::to_owned));
                if kind.as_deref() == Some("fallback") {
                    n += 1;
                } else {
                    break;
                }
            }
            AuthorRole::Visitor => {}
            _ => break,
        }
    }
    n
}

/// What the agent who takes the conversation reads first; `scores` are the sentiments of the
/// visitor's messages, this one last.
fn handoff_summary(
    firings: &[Firing],
    analysis: &Analysis,
    history: &[Message],
    scores: &[f32],
) -> Value {
    let offered: Vec<&Value> = history
        .iter()
        .filter(|m| m.author == AuthorRole::Bot)
        .filter_map(|m| {
            m.analysis
                .as_ref()?
                .get("reply")?
                .get("sources")?
                .as_array()
        })
        .flatten()
        .fold(Vec::new(), |mut seen, s| {
            if !seen.contains(&s) {
                seen.push(s);
            }
            seen
        });
    let last: Vec<Value> = history
        .iter()
        .rev()
        .take(SUMMARY_MESSAGES)
        .rev()
        .map(|m| json!({ "seq": m.seq, "author": m.author, "text": m.text }))
        .collect();
    let first = firings.iter().find(|f| escalates(f)).or(firings.first());
    json!({
        "rule": first.map(|f| f.rule.as_str()),
        "reason": first.map(|f| f.reason.as_str()),
        "firings": firings.iter().map(|f| json!({ "rule": f.rule, "reason": f.reason })).collect::<Vec<_>>(),
        "intent": {
            "name": analysis.intent.name,
            "confidence": analysis.intent.confidence,
            "out_of_scope": analysis.intent.out_of_scope,
        },
        "sentiment": {
            "score": analysis.sentiment.score,
            "label": analysis.sentiment.label,
            "history": scores,
            "trend": trend_slope(scores, SUMMARY_TREND.min(scores.len())),
        },
        "entities": analysis.entities,
        "last_messages": last,
        "articles_offered": offered,
    })
}
