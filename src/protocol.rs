//! The real-time wire protocol: JSON text frames tagged by `type`, version
//! [`PROTOCOL_VERSION`](crate::protocol::PROTOCOL_VERSION). Parsing turns any client text into a
//! typed frame or a stable error code; serialising is done once per event and shared by every
//! socket that receives it. Documented in `docs/protocol.md`.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::domain::{
    AgentId, AgentRole, AnswerRating, AuthorRole, Conversation, ConversationId, ConversationState,
    CsatScore, FeedbackKind, Message,
};

pub const PROTOCOL_VERSION: u32 = 1;

/// Close codes the server uses besides the standard ones (1000 normal, 1001 going away,
/// 1002 protocol error, 1009 too big, 1011 internal error).
pub mod close {
    pub const UNAUTHORIZED: u16 = 4001;
    pub const PROTOCOL_VERSION: u16 = 4002;
    pub const HELLO_EXPECTED: u16 = 4003;
    pub const HEARTBEAT_TIMEOUT: u16 = 4008;
    pub const SLOW_CONSUMER: u16 = 4009;
}

/// Stable machine-readable error codes of `error` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidJson,
    UnknownType,
    InvalidFrame,
    TooLarge,
    RateLimited,
    Unauthorized,
    NotFound,
    Forbidden,
    ProtocolVersion,
    Internal,
    /// `rate_answer` named a message that is not the bot's.
    NotAnAnswer,
    /// `rate_conversation` before the conversation was resolved.
    NotResolved,
}

/// A client frame that could not be accepted, with what to tell the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: ErrorCode,
    pub message: String,
}

impl FrameError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Frames a visitor's widget sends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WidgetFrame {
    Hello {
        protocol: u32,
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        last_seq: Option<i64>,
    },
    Message {
        client_id: String,
        text: String,
    },
    Typing {
        on: bool,
    },
    Read {
        seq: i64,
    },
    RateAnswer {
        seq: i64,
        rating: AnswerRating,
        #[serde(default)]
        comment: Option<String>,
    },
    RateConversation {
        score: CsatScore,
        #[serde(default)]
        comment: Option<String>,
    },
}

impl WidgetFrame {
    pub const TYPES: &'static [&'static str] = &[
        "hello",
        "message",
        "typing",
        "read",
        "rate_answer",
        "rate_conversation",
    ];
}

/// Frames an agent console sends on its live feed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentFrame {
    Hello {
        protocol: u32,
        token: String,
    },
    Typing {
        conversation_id: ConversationId,
        on: bool,
    },
    Read {
        conversation_id: ConversationId,
        seq: i64,
    },
}

impl AgentFrame {
    pub const TYPES: &'static [&'static str] = &["hello", "typing", "read"];
}

/// Parses one client text frame into `T`, naming what is wrong when it cannot.
pub fn parse_frame<T: DeserializeOwned>(text: &str, known_types: &[&str]) -> Result<T, FrameError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        FrameError::new(
            ErrorCode::InvalidJson,
            format!("frame is not valid JSON: {e}"),
        )
    })?;
    let Some(object) = value.as_object() else {
        return Err(FrameError::new(
            ErrorCode::InvalidFrame,
            "a frame must be a JSON object",
        ));
    };
    let Some(kind) = object
        .get("type")
        .and_then(|t| t.as_str())
        .map(str::to_owned)
    else {
        return Err(FrameError::new(
            ErrorCode::InvalidFrame,
            "a frame needs a string field \"type\"",
        ));
    };
    if !known_types.contains(&kind.as_str()) {
        return Err(FrameError::new(
            ErrorCode::UnknownType,
            format!(
                "unknown frame type {kind:?}; expected one of {}",
                known_types.join(", ")
            ),
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        FrameError::new(
            ErrorCode::InvalidFrame,
            format!("invalid {kind} frame: {e}"),
        )
    })
}

/// A stored message as every receiver sees it.
#[derive(Debug, Clone, Serialize)]
pub struct MessageFrame<'a> {
    pub conversation_id: ConversationId,
    pub seq: i64,
    pub author: AuthorRole,
    pub text: &'a str,
    pub client_id: Option<&'a str>,
    pub sent_at: DateTime<Utc>,
    /// On the bot's messages: the kind of reply, the intent, the confidence and the sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<&'a serde_json::Value>,
}

impl<'a> From<&'a Message> for MessageFrame<'a> {
    fn from(m: &'a Message) -> Self {
        Self {
            conversation_id: m.conversation_id,
            seq: m.seq,
            author: m.author,
            text: &m.text,
            client_id: m.client_id.as_deref(),
            sent_at: m.sent_at,
            reply: match m.author {
                AuthorRole::Bot => m.analysis.as_ref().and_then(|a| a.get("reply")),
                _ => None,
            },
        }
    }
}

/// Frames the server sends.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Welcome {
        protocol: u32,
        token: &'a str,
        conversation_id: ConversationId,
        state: ConversationState,
    },
    #[serde(rename = "welcome")]
    AgentWelcome {
        protocol: u32,
        agent_id: AgentId,
        role: AgentRole,
    },
    Ack {
        client_id: &'a str,
        seq: i64,
    },
    Message(MessageFrame<'a>),
    Typing {
        conversation_id: ConversationId,
        author: AuthorRole,
        on: bool,
    },
    Read {
        conversation_id: ConversationId,
        author: AuthorRole,
        seq: i64,
    },
    State {
        conversation_id: ConversationId,
        state: ConversationState,
    },
    Conversation {
        event: ConversationEvent,
        conversation: &'a Conversation,
    },
    /// To agents: a conversation was handed from the bot to the queue, and why.
    Handoff {
        conversation_id: ConversationId,
        summary: &'a serde_json::Value,
    },
    /// A rating was stored (or replaced the earlier one).
    Rated {
        kind: FeedbackKind,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<i64>,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<&'a str>,
    },
}

/// What happened to a conversation, in the agent feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationEvent {
    Created,
    Updated,
}

impl ServerFrame<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames hold only serialisable fields")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget(text: &str) -> Result<WidgetFrame, FrameError> {
        parse_frame(text, WidgetFrame::TYPES)
    }

    #[test]
    fn each_bad_input_class_has_its_code() {
        assert_eq!(
            widget("{nope").map_err(|e| e.code),
            Err(ErrorCode::InvalidJson)
        );
        assert_eq!(
            widget("[1,2]").map_err(|e| e.code),
            Err(ErrorCode::InvalidFrame)
        );
        assert_eq!(
            widget("{\"text\":\"x\"}").map_err(|e| e.code),
            Err(ErrorCode::InvalidFrame)
        );
        assert_eq!(
            widget("{\"type\":\"dance\"}").map_err(|e| e.code),
            Err(ErrorCode::UnknownType)
        );
        assert_eq!(
            widget("{\"type\":\"message\",\"text\":\"hi\"}").map_err(|e| e.code),
            Err(ErrorCode::InvalidFrame)
        );
        assert_eq!(
            widget("{\"type\":\"typing\",\"on\":true,\"extra\":1}").map_err(|e| e.code),
            Err(ErrorCode::InvalidFrame)
        );
    }

    #[test]
    fn hello_defaults() {
        assert_eq!(
            widget("{\"type\":\"hello\",\"protocol\":1}"),
            Ok(WidgetFrame::Hello {
                protocol: 1,
                token: None,
                last_seq: None
            })
        );
        assert_eq!(
            widget("{\"type\":\"hello\",\"protocol\":1,\"token\":null,\"last_seq\":7}"),
            Ok(WidgetFrame::Hello {
                protocol: 1,
                token: None,
                last_seq: Some(7)
            })
        );
    }

    #[test]
    fn rating_frames_parse_and_refuse_what_they_cannot_hold() {
        assert_eq!(
            widget(r#"{"type":"rate_answer","seq":4,"rating":"down","comment":"wrong"}"#),
            Ok(WidgetFrame::RateAnswer {
                seq: 4,
                rating: AnswerRating::Down,
                comment: Some("wrong".into())
            })
        );
        assert_eq!(
            widget(r#"{"type":"rate_conversation","score":5}"#),
            Ok(WidgetFrame::RateConversation {
                score: CsatScore::try_from(5).expect("in range"),
                comment: None
            })
        );
        for bad in [
            r#"{"type":"rate_answer","seq":4,"rating":"meh"}"#,
            r#"{"type":"rate_answer","rating":"up"}"#,
            r#"{"type":"rate_conversation","score":0}"#,
            r#"{"type":"rate_conversation","score":6}"#,
            r#"{"type":"rate_conversation","score":"5"}"#,
        ] {
            assert_eq!(
                widget(bad).map_err(|e| e.code),
                Err(ErrorCode::InvalidFrame),
                "{bad}"
            );
        }
        let rated = ServerFrame::Rated {
            kind: FeedbackKind::Answer,
            seq: Some(4),
        };
        assert_eq!(
            rated.to_json(),
            r#"{"type":"rated","kind":"answer","seq":4}"#
        );
    }

    #[test]
    fn server_frames_are_tagged() {
        let json = ServerFrame::Ack {
            client_id: "c1",
            seq: 3,
        }
        .to_json();
        assert_eq!(json, r#"{"type":"ack","client_id":"c1","seq":3}"#);
        let json = ServerFrame::Error {
            code: ErrorCode::TooLarge,
            message: "m",
            client_id: None,
        }
        .to_json();
        assert_eq!(json, r#"{"type":"error","code":"too_large","message":"m"}"#);
    }
}
