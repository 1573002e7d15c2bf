//! What replicas tell each other, and how it is written: one JSON object per notification,
//! `{"from": replica, "event": {…}}`, always under the 8000-byte limit of a PostgreSQL NOTIFY
//! payload. A message travels with its body when it fits, so receivers need no database read;
//! a larger one travels as its `seq` alone and receivers read it from the database. Pure.

use std::fmt;

use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{AgentId, AuthorRole, ConversationId, Message};
use crate::protocol::ConversationEvent;

/// The LISTEN/NOTIFY channel every replica of one database shares.
pub const CHANNEL: &str = "switchboard";

/// Longest payload sent: PostgreSQL refuses 8000 bytes or more.
pub const MAX_PAYLOAD: usize = 7999;

/// Names one running replica, so it can skip what it published itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaId(String);

impl ReplicaId {
    /// A fresh random id: process ids and host names repeat across restarts and hosts.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string()[..16].to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// How every payload this replica publishes begins.
    fn prefix(&self) -> String {
        format!(r#"{{"from":"{}","#, self.0)
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One thing a replica stored or relayed that other replicas' sockets must see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A stored message, with the conversation's owner when it was stored (to route it on the
    /// agent feed). `body` is absent when it would not fit in a payload.
    Message {
        conversation_id: ConversationId,
        seq: i64,
        owner: Option<AgentId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<Body>,
    },
    /// A conversation was created or changed; receivers read its current row.
    Conversation {
        conversation_id: ConversationId,
        event: ConversationEvent,
    },
    /// An ephemeral frame (typing, read), already serialised for the sockets.
    Relay {
        conversation_id: ConversationId,
        owner: Option<AgentId>,
        frame: String,
    },
    /// The bot handed a conversation to the queue; receivers read the summary (too large for
    /// a payload) and give it to their agent feeds.
    Handoff { conversation_id: ConversationId },
}

/// The parts of a stored message that its `seq` and conversation do not say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Body {
    author: AuthorRole,
    author_id: Option<String>,
    text: String,
    client_id: Option<String>,
    sent_at_ms: i64,
}

impl Event {
    pub fn message(message: &Message, owner: Option<AgentId>) -> Self {
        Event::Message {
            conversation_id: message.conversation_id,
            seq: message.seq,
            owner,
            body: Some(Body {
                author: message.author,
                author_id: message.author_id.clone(),
                text: message.text.clone(),
                client_id: message.client_id.clone(),
                sent_at_ms: message.sent_at.timestamp_millis(),
            }),
        }
    }
}

impl Body {
    /// The message this body belongs to, as the storing replica had it.
    pub fn into_message(self, conversation_id: ConversationId, seq: i64) -> Option<Message> {
        Some(Message {
            conversation_id,
            seq,
            author: self.author,
            author_id: self.author_id,
            text: self.text,
            client_id: self.client_id,
            analysis: None,
            sent_at: Utc.timestamp_millis_opt(self.sent_at_ms).single()?,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    from: &'a str,
    event: Event,
}

/// The payload announcing `event` from `replica`, within `MAX_PAYLOAD`: a message too large
/// to travel whole travels without its body. `None` if even that does not fit (an ephemeral
/// frame too large to relay).
pub fn encode(replica: &ReplicaId, event: Event) -> Option<String> {
    let payload = |event: Event| {
        serde_json::to_string(&Envelope {
            from: replica.as_str(),
            event,
        })
        .expect("events hold only serialisable fields")
    };
    let whole = payload(event.clone());
    if whole.len() <= MAX_PAYLOAD {
        return Some(whole);
    }
    match event {
        Event::Message {
            conversation_id,
            seq,
            owner,
            body: Some(_),
        } => Some(payload(Event::Message {
            conversation_id,
            seq,
            owner,
            body: None,
        })),
        _ => None,
    }
}

/// Reads a payload; `None` for one this replica published itself or one it cannot read.
pub fn decode(own: &ReplicaId, payload: &str) -> Option<Event> {
    if payload.starts_with(&own.prefix()) {
        return None;
    }
    match serde_json::from_str::<Envelope<'_>>(payload) {
        Ok(envelope) => Some(envelope.event),
        Err(e) => {
            tracing::warn!(error = %e, "unreadable cluster notification ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> Message {
        Message {
            conversation_id: ConversationId::new(),
            seq: 7,
            author: AuthorRole::Visitor,
            author_id: Some("v".into()),
            text: text.into(),
            client_id: Some("c-1".into()),
            analysis: None,
            sent_at: Utc
                .timestamp_millis_opt(1_700_000_000_123)
                .single()
                .expect("valid time"),
        }
    }

    #[test]
    fn a_message_round_trips_with_its_body() {
        let (a, b) = (ReplicaId::random(), ReplicaId::random());
        let owner = Some(AgentId::new());
        let original = message("où est mon chauffeur ? \"quoted\"");
        let payload = encode(&a, Event::message(&original, owner)).expect("small events fit");
        let Some(Event::Message {
            seq,
            owner: got_owner,
            body: Some(body),
            conversation_id,
        }) = decode(&b, &payload)
        else {
            panic!("a message event with its body: {payload}");
        };
        assert_eq!(got_owner, owner);
        assert_eq!(body.into_message(conversation_id, seq), Some(original));
    }

    #[test]
    fn a_replica_skips_its_own_payloads() {
        let a = ReplicaId::random();
        let payload = encode(&a, Event::message(&message("hi"), None)).expect("fits");
        assert_eq!(decode(&a, &payload), None);
    }

    #[test]
    fn a_message_too_large_for_a_payload_travels_as_its_seq() {
        let (a, b) = (ReplicaId::random(), ReplicaId::random());
        let escaped = "\u{1}".repeat(4000);
        let payload = encode(&a, Event::message(&message(&escaped), None)).expect("seq fits");
        assert!(payload.len() <= MAX_PAYLOAD);
        assert!(matches!(
            decode(&b, &payload),
            Some(Event::Message {
                seq: 7,
                body: None,
                ..
            })
        ));
        let relay = Event::Relay {
            conversation_id: ConversationId::new(),
            owner: None,
            frame: "x".repeat(MAX_PAYLOAD),
        };
        assert_eq!(encode(&a, relay), None);
    }

    #[test]
    fn garbage_is_ignored() {
        assert_eq!(decode(&ReplicaId::random(), "{not json"), None);
    }
}
