//! The conversation service: every change to a conversation is stored first and then fanned
//! out through the hub, in `seq` order. Both the WebSocket loops and the REST handlers go
//! through here, so a message reaches the same sockets whichever way it arrived. In cluster
//! mode the store announces each change to the other replicas, which deliver it to their
//! own sockets through the `…_here` methods.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};

use crate::cluster::Event;
use crate::domain::{
    AgentId, AuthorRole, Conversation, ConversationId, ConversationState, Message, VisitorId,
};
use crate::hub::{Audience, ConnId, HubHandle, Outbound, Room};
use crate::metrics::Metrics;
use crate::protocol::{ConversationEvent, MessageFrame, ServerFrame};
use crate::store::{Appended, Escalation, NewMessage, Store, StoreError};

/// Stripes of the conversation service's ordering locks.
const LOCK_STRIPES: usize = 1024;

/// Per-conversation locks, striped so their number stays fixed however many conversations
/// there are (two conversations may share a stripe, and then wait for each other).
#[derive(Clone, Debug)]
pub(crate) struct ConversationLocks(Arc<[Mutex<()>]>);

impl ConversationLocks {
    pub(crate) fn new(stripes: usize) -> Self {
        Self((0..stripes.max(1)).map(|_| Mutex::new(())).collect())
    }

    pub(crate) async fn lock(&self, id: ConversationId) -> MutexGuard<'_, ()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut hasher);
        self.0[hasher.finish() as usize % self.0.len()].lock().await
    }
}

#[derive(Clone, Debug)]
pub struct Chat {
    store: Store,
    hub: HubHandle,
    metrics: Metrics,
    /// Serialise store-then-publish per conversation, so sockets see `seq` in order.
    locks: ConversationLocks,
}

impl Chat {
    pub fn new(store: Store, hub: HubHandle, metrics: Metrics) -> Self {
        Self {
            store,
            hub,
            metrics,
            locks: ConversationLocks::new(LOCK_STRIPES),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn hub(&self) -> &HubHandle {
        &self.hub
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
        let order = self.locks.lock(new.conversation_id).await;
        let appended = self.post_locked(new, sender).await?;
        drop(order);
        if let Appended::New { message, .. } = &appended
            && message.author == AuthorRole::Agent
        {
            self.time_first_reply(message).await;
        }
        Ok(appended)
    }

    /// Posts the bot's reply only if the conversation is still with the bot, checked under the
    /// same lock every change of state takes: once a conversation is queued or has an agent,
    /// a reply that was being prepared is dropped (`None`), never shown.
    pub async fn post_from_bot(&self, new: NewMessage) -> Result<Option<Appended>, StoreError> {
        let _order = self.locks.lock(new.conversation_id).await;
        let conversation = self.store.conversation(new.conversation_id).await?;
        if conversation.state != ConversationState::Bot {
            return Ok(None);
        }
        self.post_locked(new, None).await.map(Some)
    }

    /// Shows or hides the bot's typing indicator in a conversation.
    pub async fn bot_typing(&self, id: ConversationId, on: bool) {
        let frame = ServerFrame::Typing {
            conversation_id: id,
            author: AuthorRole::Bot,
            on,
        }
        .to_json();
        self.fan_out(id, Outbound::new(None, frame.clone()), None, None);
        self.store
            .announce(Event::Relay {
                conversation_id: id,
                owner: None,
                frame,
            })
            .await;
    }

    async fn post_locked(
        &self,
        new: NewMessage,
        sender: Option<ConnId>,
    ) -> Result<Appended, StoreError> {
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
            self.deliver(message, *owner, sender);
        }
        Ok(appended)
    }

    /// Observes the time from escalation when `message` is the first agent message since.
    async fn time_first_reply(&self, message: &Message) {
        let sent = message.sent_at.timestamp_millis();
        match self
            .store
            .escalated_before_first_reply(message.conversation_id, message.seq, sent)
            .await
        {
            Ok(Some(escalated)) => self
                .metrics
                .escalation_to_agent
                .observe(seconds(sent - escalated)),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = ?e, "escalation-to-agent time not recorded"),
        }
    }

    fn deliver(&self, message: &Message, owner: Option<AgentId>, sender: Option<ConnId>) {
        let frame = ServerFrame::Message(MessageFrame::from(message));
        let out = Outbound::stored(message.conversation_id, message.seq, frame.to_json());
        self.fan_out(message.conversation_id, out, owner, sender);
    }

    /// Delivers a message another replica stored to this replica's sockets.
    pub(crate) fn deliver_here(&self, message: &Message, owner: Option<AgentId>) {
        self.deliver(message, owner, None);
    }

    /// Tells this replica's sockets that messages `from..=to` of a conversation are stored,
    /// for those that lack them to read them from the database.
    pub(crate) fn catch_up_here(
        &self,
        id: ConversationId,
        from: i64,
        to: i64,
        owner: Option<AgentId>,
    ) {
        self.fan_out(id, Outbound::catch_up(id, from, to), owner, None);
    }

    /// Sends a conversation's frame to its sockets and to the agents who may see it, except
    /// the socket it came from.
    fn fan_out(
        &self,
        id: ConversationId,
        out: Outbound,
        owner: Option<AgentId>,
        sender: Option<ConnId>,
    ) {
        self.hub.publish(
            Room::Conversation(id),
            out.clone(),
            Audience::Everyone,
            sender,
        );
        self.hub
            .publish(Room::AgentFeed, out, Audience::OwnerOf(owner), sender);
    }

    pub async fn claim(
        &self,
        id: ConversationId,
        agent: AgentId,
    ) -> Result<Conversation, StoreError> {
        let claim = async {
            let queued_since = self.store.queued_since(id).await?;
            let claimed = self.store.claim_conversation(id, agent).await?;
            if let Some(queued) = queued_since {
                let assigned = claimed.updated_at.timestamp_millis();
                self.metrics.queue_wait.observe(seconds(assigned - queued));
            }
            Ok::<_, StoreError>(claimed)
        };
        self.change(id, claim).await
    }

    /// Applies one stored change to a conversation under its ordering lock, then tells its
    /// sockets and the agents.
    async fn change(
        &self,
        id: ConversationId,
        stored: impl Future<Output = Result<Conversation, StoreError>>,
    ) -> Result<Conversation, StoreError> {
        let _order = self.locks.lock(id).await;
        let conversation = stored.await?;
        self.announce(&conversation, ConversationEvent::Updated)
            .await;
        Ok(conversation)
    }

    /// Adds tags and raises the priority of a conversation (rule actions short of escalation).
    pub async fn annotate(
        &self,
        id: ConversationId,
        tags: &[String],
        priority: Option<i64>,
    ) -> Result<Conversation, StoreError> {
        self.change(id, self.store.annotate_conversation(id, tags, priority))
            .await
    }

    /// Hands a conversation from the bot to the queue and gives the agents its summary.
    pub async fn escalate(
        &self,
        id: ConversationId,
        escalation: &Escalation,
    ) -> Result<Conversation, StoreError> {
        let conversation = self
            .change(id, self.store.escalate_conversation(id, escalation))
            .await?;
        self.handoff_here(id, &escalation.handoff);
        self.store
            .announce(Event::Handoff {
                conversation_id: id,
            })
            .await;
        Ok(conversation)
    }

    /// Gives this replica's agent feeds a conversation's handoff summary.
    pub(crate) fn handoff_here(&self, id: ConversationId, summary: &serde_json::Value) {
        let frame = ServerFrame::Handoff {
            conversation_id: id,
            summary,
        };
        self.hub.publish(
            Room::AgentFeed,
            Outbound::new(None, frame.to_json()),
            Audience::Everyone,
            None,
        );
    }

    /// Records the escalation rules that fired on a visitor message, and counts each firing.
    pub async fn record_firings(
        &self,
        id: ConversationId,
        message_seq: Option<i64>,
        firings: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.store.record_firings(id, message_seq, firings).await?;
        for (rule, _) in firings {
            self.metrics.escalated(rule);
        }
        Ok(())
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
        self.announce_here(conversation, event);
        self.store
            .announce(Event::Conversation {
                conversation_id: conversation.id,
                event,
            })
            .await;
    }

    /// Tells this replica's sockets about a conversation's change.
    pub(crate) fn announce_here(&self, conversation: &Conversation, event: ConversationEvent) {
        let state = ServerFrame::State {
            conversation_id: conversation.id,
            state: conversation.state,
        };
        self.hub.publish(
            Room::Conversation(conversation.id),
            Outbound::new(None, state.to_json()),
            Audience::Everyone,
            None,
        );
        let feed = ServerFrame::Conversation {
            event,
            conversation,
        };
        self.hub.publish(
            Room::AgentFeed,
            Outbound::new(None, feed.to_json()),
            Audience::Everyone,
            None,
        );
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
        );
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
    pub(crate) fn relay_here(&self, id: ConversationId, owner: Option<AgentId>, frame: String) {
        self.fan_out(id, Outbound::new(None, frame), owner, None);
    }
}

/// Milliseconds as the seconds metrics record; a negative span (clock skew between replicas)
/// counts as zero.
fn seconds(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}
