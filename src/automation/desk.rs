//! The support desk: what happens around a conversation besides storing its messages. Routes
//! queued conversations to agents, re-queues an agent's conversations when they leave, and
//! keeps the escalation rules in force.

use crate::chat::Chat;
use crate::domain::{Agent, AgentId, AgentStatus, Conversation, ConversationId};
use crate::store::StoreError;

use super::routing::{assign, assign_queued};
use super::rulebook::RuleBook;

/// How many queued conversations one routing pass looks at.
const ROUTING_BATCH: i64 = 100;

#[derive(Clone, Debug)]
pub struct Desk {
    chat: Chat,
    rules: RuleBook,
}

impl Desk {
    pub fn new(chat: Chat, rules: RuleBook) -> Self {
        Self { chat, rules }
    }

    pub fn rules(&self) -> &RuleBook {
        &self.rules
    }

    /// Assigns what waits in the queue to the agents free for it.
    pub async fn route(&self) -> Result<Vec<Conversation>, StoreError> {
        assign_queued(&self.chat, ROUTING_BATCH).await
    }

    /// Gives a waiting conversation to one agent, as an admin decided.
    pub async fn assign(
        &self,
        id: ConversationId,
        agent: AgentId,
    ) -> Result<Conversation, StoreError> {
        assign(&self.chat, id, agent).await
    }

    /// Records an agent's availability. Going offline puts the agent's conversations back in
    /// the queue for others (away keeps them: a short break); then the queue is routed.
    pub async fn set_agent_status(
        &self,
        agent: AgentId,
        status: AgentStatus,
    ) -> Result<Agent, StoreError> {
        let updated = self.chat.store().set_agent_status(agent, status).await?;
        if status == AgentStatus::Offline {
            self.chat.requeue_agent(agent).await?;
        }
        self.route().await?;
        Ok(updated)
    }
}
