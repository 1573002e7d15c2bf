//! The conversation service: every change to a conversation is stored first and then fanned
//! out through the hub, in `seq` order. Both the WebSocket loops and the REST handlers go
//! through here, so a message reaches the same sockets whichever way it arrived. In cluster
//! mode the store announces each change to the other replicas, which deliver it to their
//! own sockets through the `…_here` methods.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};

use crate::cluster::Event;
use crate::domain::{AgentId, Conversation, ConversationId, Message, VisitorId};
use crate::hub::{Audience, ConnId, HubHandle, Outbound, Room};
use crate::metrics::Metrics;
use crate::protocol::{ConversationEvent, MessageFrame, ServerFrame};
use crate::store::{Appended, Escalation, NewMessage, Store, StoreError};

/// Per-conversation ordering locks, striped so their number stays fixed.
const LOCK_STRIPES: usize = 1024;

#[derive(Clone, Debug)]
pub struct Chat {
    store: Store,
    hub: HubHandle,
    metrics: Metrics,
    locks: Arc<[Mutex<()>]>,
}

impl Chat {
    pub fn new(store: Store, hub: HubHandle, metrics: Metrics) -> Self {
        Self {
            store,
            hub,
            metrics,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn hub(&self) -> &HubHandle {
        &self.hub
    }

    /// Serialises store-then-publish per conversation, so sockets see `seq` in order.
    async fn lock(&self, id: ConversationId) -> MutexGuard<'_, ()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut hasher);
        self.locks[hasher.finish() as usize % self.locks.len()]
            .lock()
            .await
    }

    /// Opens a conversation for a visitor and announces it to the agents.
    pub async fn start_conversation(&self, visitor: VisitorId) -> Result<Conversation, StoreError> {
        let conversation = self.store.create_conversation(visitor).await?;
        self.announce(&conversation, ConversationEvent::Created)
            .await;
        Ok(conversation)
    }

    /// Stores a message and delivers it to the conversation's sockets (except `sender`, which
    /// gets an ack instead) and to the agents who may see it. A resend is stored once.
    pub async fn post(
        &self,
        new: NewMessage,
        sender: Option<ConnId>,
    ) -> Result<Appended, StoreError> {
        let _order = self.lock(new.conversation_id).await;
        let appended = match self.store.append_message(&new).await {
            Err(StoreError::Resolved) => {
                let reopened = self.store.reopen_for_visitor(new.conversation_id).await?;
                self.announce(&reopened, ConversationEvent::Updated).await;
                self.store.append_message(&new).await?
            }
            other => other?,
        };
        if let Appended::New { message, owner } = &appended {
            self.metrics
                .messages
                .with_label_values(&[message.author.as_str()])
                .inc();
            self.deliver(message, *owner, sender).await;
        }
        Ok(appended)
    }

    async fn deliver(&self, message: &Message, owner: Option<AgentId>, sender: Option<ConnId>) {
        let frame = ServerFrame::Message(MessageFrame::from(message));
        let out = Outbound::stored(message.conversation_id, message.seq, frame.to_json());
        self.fan_out(message.conversation_id, out, owner, sender)
            .await;
    }

    /// Delivers a message another replica stored to this replica's sockets.
    pub(crate) async fn deliver_here(&self, message: &Message, owner: Option<AgentId>) {
        self.deliver(message, owner, None).await;
    }

    /// Tells this replica's sockets that messages `from..=to` of a conversation are stored,
    /// for those that lack them to read them from the database.
    pub(crate) async fn catch_up_here(
        &self,
        id: ConversationId,
        from: i64,
        to: i64,
        owner: Option<AgentId>,
    ) {
        self.fan_out(id, Outbound::catch_up(id, from, to), owner, None)
            .await;
    }

    /// Sends a conversation's frame to its sockets and to the agents who may see it, except
    /// the socket it came from.
    async fn fan_out(
        &self,
        id: ConversationId,
        out: Outbound,
        owner: Option<AgentId>,
        sender: Option<ConnId>,
    ) {
        self.hub
            .publish(
                Room::Conversation(id),
                out.clone(),
                Audience::Everyone,
                sender,
            )
            .await;
        self.hub
            .publish(Room::AgentFeed, out, Audience::OwnerOf(owner), sender)
            .await;
    }

    pub async fn claim(
        &self,
        id: ConversationId,
        agent: AgentId,
    ) -> Result<Conversation, StoreError> {
        self.change(id, self.store.claim_conversation(id, agent))
            .await
    }

    /// Applies one stored change to a conversation under its ordering lock, then tells its
    /// sockets and the agents.
    async fn change(
        &self,
        id: ConversationId,
        stored: impl Future<Output = Result<Conversation, StoreError>>,
    ) -> Result<Conversation, StoreError> {
        let _order = self.lock(id).await;
        let conversation = stored.await?;
        self.announce(&conversation, ConversationEvent::Updated)
            .await;
        Ok(conversation)
    }

    /// Hands a conversation from the bot to the queue.
    pub async fn escalate(
        &self,
        id: ConversationId,
        escalation: &Escalation,
    ) -> Result<Conversation, StoreError> {
        self.change(id, self.store.escalate_conversation(id, escalation))
            .await
    }

    pub async fn transfer_to_agent(
        &self,
        id: ConversationId,
        to: AgentId,
    ) -> Result<Conversation, StoreError> {
        self.change(id, self.store.transfer_to_agent(id, to)).await
    }

    pub async fn transfer_to_skill(
        &self,
        id: ConversationId,
        skill: &str,
    ) -> Result<Conversation, StoreError> {
        self.change(id, self.store.transfer_to_skill(id, skill))
            .await
    }

    pub async fn hand_back_to_bot(&self, id: ConversationId) -> Result<Conversation, StoreError> {
        self.change(id, self.store.hand_back_to_bot(id)).await
    }

    /// Puts back in the queue everything an agent who went offline held.
    pub async fn requeue_agent(&self, agent: AgentId) -> Result<Vec<Conversation>, StoreError> {
        let requeued = self.store.requeue_agent(agent).await?;
        for conversation in &requeued {
            self.announce(conversation, ConversationEvent::Updated)
                .await;
        }
        Ok(requeued)
    }

    pub async fn resolve(&self, id: ConversationId) -> Result<Conversation, StoreError> {
        self.change(id, self.store.resolve_conversation(id)).await
    }

    pub async fn reopen(
        &self,
        id: ConversationId,
        agent: AgentId,
    ) -> Result<Conversation, StoreError> {
        self.change(id, self.store.reopen_conversation(id, agent))
            .await
    }

    /// Tells the visitor's tabs the new state, and every agent what changed: agents need to
    /// know when a conversation they could take is taken.
    async fn announce(&self, conversation: &Conversation, event: ConversationEvent) {
        self.announce_here(conversation, event).await;
        self.store
            .announce(Event::Conversation {
                conversation_id: conversation.id,
                event,
            })
            .await;
    }

    /// Tells this replica's sockets about a conversation's change.
    pub(crate) async fn announce_here(
        &self,
        conversation: &Conversation,
        event: ConversationEvent,
    ) {
        let state = ServerFrame::State {
            conversation_id: conversation.id,
            state: conversation.state,
        };
        self.hub
            .publish(
                Room::Conversation(conversation.id),
                Outbound::new(None, state.to_json()),
                Audience::Everyone,
                None,
            )
            .await;
        let feed = ServerFrame::Conversation {
            event,
            conversation,
        };
        self.hub
            .publish(
                Room::AgentFeed,
                Outbound::new(None, feed.to_json()),
                Audience::Everyone,
                None,
            )
            .await;
    }

    /// Relays an ephemeral frame (typing, read) to the conversation's other sockets and its
    /// agents. Nothing is stored.
    pub async fn relay(
        &self,
        id: ConversationId,
        frame: &ServerFrame<'_>,
        sender: ConnId,
    ) -> Result<(), StoreError> {
        let conversation = self.store.conversation(id).await?;
        let text = frame.to_json();
        self.fan_out(
            id,
            Outbound::new(None, text.clone()),
            conversation.assignee_id,
            Some(sender),
        )
        .await;
        self.store
            .announce(Event::Relay {
                conversation_id: id,
                owner: conversation.assignee_id,
                frame: text,
            })
            .await;
        Ok(())
    }

    /// Relays an ephemeral frame from another replica to this replica's sockets.
    pub(crate) async fn relay_here(
        &self,
        id: ConversationId,
        owner: Option<AgentId>,
        frame: String,
    ) {
        self.fan_out(id, Outbound::new(None, frame), owner, None)
            .await;
    }
}
