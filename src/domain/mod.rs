//! The product's vocabulary as types that cannot hold an invalid value: ids, states, roles,
//! message text and client ids. Pure: no I/O, no framework.

mod feedback;
mod ids;
mod text;

pub use feedback::{AnswerRating, CsatScore, FeedbackKind};
pub use ids::{AgentId, ConversationId, VisitorId};
pub use text::{ClientId, MessageText, TextError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Declares a closed set of lowercase string values stored as TEXT and sent over the wire.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Where a conversation stands: the bot answers in `bot`; a human owns it once `assigned`.
    ConversationState { Bot => "bot", Queued => "queued", Assigned => "assigned", Resolved => "resolved" }
);

string_enum!(
    /// Who wrote a message.
    AuthorRole { Visitor => "visitor", Bot => "bot", Agent => "agent", System => "system" }
);

string_enum!(
    /// What an API token may do: admins manage agents and see every conversation.
    AgentRole { Agent => "agent", Admin => "admin" }
);

string_enum!(
    /// Whether an agent takes conversations now.
    AgentStatus { Online => "online", Away => "away", Offline => "offline" }
);

/// A website visitor, known only by the signed token their widget keeps.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Visitor {
    pub id: VisitorId,
    pub created_at: DateTime<Utc>,
}

/// One support conversation between a visitor and the bot or an agent.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Conversation {
    pub id: ConversationId,
    pub visitor_id: VisitorId,
    pub state: ConversationState,
    pub priority: i64,
    pub assignee_id: Option<AgentId>,
    /// The agent skill the conversation waits for, once escalated.
    pub skill: Option<String>,
    pub tags: Vec<String>,
    /// Sequence number of the newest message.
    pub last_seq: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A stored message; `seq` is strictly increasing within its conversation.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Message {
    pub conversation_id: ConversationId,
    pub seq: i64,
    pub author: AuthorRole,
    /// The agent's id for agent messages; the visitor's id for visitor messages.
    pub author_id: Option<String>,
    pub text: String,
    pub client_id: Option<String>,
    /// The AI analysis of this message, once it has one.
    #[schema(value_type = Option<Object>)]
    pub analysis: Option<serde_json::Value>,
    pub sent_at: DateTime<Utc>,
}

/// A human who works conversations in the agent console.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Agent {
    pub id: AgentId,
    pub name: String,
    pub email: String,
    pub role: AgentRole,
    pub skills: Vec<String>,
    pub max_concurrent: i64,
    pub status: AgentStatus,
    pub created_at: DateTime<Utc>,
}

impl Agent {
    pub fn is_admin(&self) -> bool {
        self.role == AgentRole::Admin
    }

    /// Whether this agent may read and act on `conversation`: admins see everything, agents
    /// see the unassigned ones and their own.
    pub fn may_see(&self, conversation: &Conversation) -> bool {
        self.is_admin() || conversation.assignee_id.is_none_or(|a| a == self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_enums_round_trip() {
        for s in ConversationState::ALL {
            assert_eq!(ConversationState::parse(s.as_str()), Some(*s));
        }
        for r in AuthorRole::ALL {
            assert_eq!(AuthorRole::parse(r.as_str()), Some(*r));
        }
        assert_eq!(AgentStatus::parse("busy"), None);
        assert_eq!(
            serde_json::to_string(&ConversationState::Assigned).expect("plain enum serialises"),
            "\"assigned\""
        );
    }
}
