//! Cluster mode: several replicas on one PostgreSQL database, any client on any replica. Whatever a
//! replica stores is announced to the others through a [`Backplane`](crate::cluster::Backplane);
//! each replica hands what it hears to its own hub, skipping what it published itself.
//!
//! Nothing unstored is announced: a message's notification is sent in the transaction that
//! stores it (`store/cluster.rs`), so it reaches other replicas only if, and once, it commits.
//! Delivery to sockets is gap-free and duplicate-free by `seq`: each socket skips what it
//! already sent and reads from the database what it lacks (`ws/`). When the backplane was
//! interrupted, the replica sends a catch-up notice for every conversation that changed
//! meanwhile, and its sockets read what they missed from the database.

mod event;
mod postgres;

pub use event::{CHANNEL, Event, ReplicaId, encode};
pub use postgres::PgBackplane;

use std::future::Future;

use tokio::sync::mpsc;

use crate::chat::Chat;
use crate::metrics::Metrics;
use crate::store::StoreError;

/// Signals waiting for the replica before the backplane waits.
const SIGNAL_QUEUE: usize = 16 * 1024;

/// How long start-up waits for the backplane to listen.
const FIRST_LISTEN: std::time::Duration = std::time::Duration::from_secs(10);

/// How far before the backplane's last sign of life recovery looks: covers clocks that
/// differ between replicas and transactions that commit a while after they stamp their rows.
const RECOVERY_SLACK_MS: i64 = 10_000;

/// Recovery announces this many conversations, then pauses, so that sockets (an admin's feed
/// hears of every conversation) drain their bounded queues instead of overflowing them.
const RECOVERY_CHUNK: usize = 64;
const RECOVERY_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// What a replica hears from the others.
#[derive(Debug)]
pub enum Signal {
    /// An event another replica stored or relayed.
    Event(Event),
    /// The backplane is listening (again). Events published since `since_ms` (milliseconds
    /// since the epoch, by this replica's clock) may have been missed.
    Resumed { since_ms: i64 },
}

/// How replicas hear of each other's events: LISTEN/NOTIFY ([`PgBackplane`]) today, a broker
/// (NATS, Redis streams) when message rates outgrow it. Publishing is the store's part, in the
/// storing transaction; a broker would publish after the commit instead, and its receivers
/// would rely on the same recovery by `seq` for a replica that died in between.
pub trait Backplane: Send + 'static {
    /// Delivers events from other replicas into `signals` until it closes, reconnecting on
    /// its own; every (re)connection is announced with [`Signal::Resumed`], the first one
    /// included (start-up waits for it).
    fn run(self, signals: mpsc::Sender<Signal>) -> impl Future<Output = ()> + Send;
}

/// Runs `backplane` and hands what it hears to this replica's sockets through `chat`.
/// Returns once the backplane listens (or after `FIRST_LISTEN`, and then it keeps trying),
/// so that the server serves no socket before it hears the other replicas.
pub async fn start(backplane: impl Backplane, chat: Chat, metrics: Metrics) {
    let (signals, mut rx) = mpsc::channel(SIGNAL_QUEUE);
    tokio::spawn(backplane.run(signals));
    match tokio::time::timeout(FIRST_LISTEN, rx.recv()).await {
        Ok(Some(Signal::Resumed { .. })) => metrics.cluster_resumes.inc(),
        Ok(other) => tracing::error!(?other, "the backplane did not start as it should"),
        Err(_) => tracing::warn!(
            "not yet listening to the other replicas; serving anyway, and recovering once listening"
        ),
    }
    tokio::spawn(async move {
        while let Some(signal) = rx.recv().await {
            let outcome = match signal {
                Signal::Event(event) => {
                    metrics.cluster_events.inc();
                    apply(&chat, event).await
                }
                Signal::Resumed { since_ms } => {
                    metrics.cluster_resumes.inc();
                    recover(&chat, since_ms - RECOVERY_SLACK_MS).await
                }
            };
            if let Err(e) = outcome {
                tracing::error!(error = ?e, "an event from another replica could not be delivered");
            }
        }
    });
}

async fn apply(chat: &Chat, event: Event) -> Result<(), StoreError> {
    match event {
        Event::Message {
            conversation_id,
            seq,
            owner,
            body,
        } => match body.and_then(|b| b.into_message(conversation_id, seq)) {
            Some(message) => chat.deliver_here(&message, owner),
            None => chat.catch_up_here(conversation_id, seq, seq, owner),
        },
        Event::Conversation {
            conversation_id,
            event,
        } => match chat.store().conversation(conversation_id).await {
            Ok(conversation) => chat.announce_here(&conversation, event),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        },
        Event::Relay {
            conversation_id,
            owner,
            frame,
        } => chat.relay_here(conversation_id, owner, frame),
        Event::Handoff { conversation_id } => {
            if let Some(summary) = chat.store().handoff(conversation_id).await? {
                chat.handoff_here(conversation_id, &summary);
            }
        }
    }
    Ok(())
}

/// After an interruption: every conversation changed since `since_ms` is announced again,
/// and its sockets are told which messages were stored meanwhile.
async fn recover(chat: &Chat, since_ms: i64) -> Result<(), StoreError> {
    let changed = chat.store().changed_since(since_ms).await?;
    tracing::info!(
        conversations = changed.len(),
        "recovering what other replicas stored"
    );
    for (n, (conversation, first_new_seq)) in changed.into_iter().enumerate() {
        if n > 0 && n % RECOVERY_CHUNK == 0 {
            tokio::time::sleep(RECOVERY_PAUSE).await;
        }
        chat.announce_here(&conversation, crate::protocol::ConversationEvent::Updated);
        if let Some(from) = first_new_seq {
            chat.catch_up_here(
                conversation.id,
                from,
                conversation.last_seq,
                conversation.assignee_id,
            );
        }
    }
    Ok(())
}
