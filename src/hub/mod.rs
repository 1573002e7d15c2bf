//! The hub: one task that owns every room (a conversation, the agents' feed, later a coaching
//! session) and fans frames out to the sockets in it. Sockets talk to it through a cloneable
//! [`HubHandle`]; each socket has a bounded outbound queue, and a socket whose queue is full is
//! evicted (its task then closes it as a slow consumer) instead of growing memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::IntCounter;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::domain::{AgentId, ConversationId};

/// Identifies one socket for the hub.
pub type ConnId = u64;

/// Commands the hub can hold before senders wait.
const COMMAND_QUEUE: usize = 16 * 1024;

/// A fan-out group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Room {
    /// The visitor's widget tabs of one conversation.
    Conversation(ConversationId),
    /// Every connected agent console.
    AgentFeed,
}

/// One frame on its way to sockets, serialised once for all of them. `seq` is set for
/// persisted events so a socket can skip what its replay already sent. A pointer wide, so
/// each socket's queue stays small.
#[derive(Debug, Clone)]
pub struct Outbound(Arc<Frame>);

#[derive(Debug)]
struct Frame {
    seq: Option<i64>,
    /// The conversation a persisted event belongs to, for sockets that see several.
    conversation: Option<ConversationId>,
    /// For a catch-up marker (no text): the first `seq` a socket may lack.
    catch_up_from: Option<i64>,
    text: Utf8Bytes,
}

impl Outbound {
    pub fn new(seq: Option<i64>, text: impl Into<Utf8Bytes>) -> Self {
        Self(Arc::new(Frame {
            seq,
            conversation: None,
            catch_up_from: None,
            text: text.into(),
        }))
    }

    /// A stored message of `conversation`.
    pub fn stored(conversation: ConversationId, seq: i64, text: impl Into<Utf8Bytes>) -> Self {
        Self(Arc::new(Frame {
            seq: Some(seq),
            conversation: Some(conversation),
            catch_up_from: None,
            text: text.into(),
        }))
    }

    /// Not a frame but a notice: messages `from..=to` of `conversation` are stored and were
    /// not delivered live (too large to announce, or announced while this replica was not
    /// listening). A socket that lacks any of them reads them from the database.
    pub fn catch_up(conversation: ConversationId, from: i64, to: i64) -> Self {
        Self(Arc::new(Frame {
            seq: Some(to),
            conversation: Some(conversation),
            catch_up_from: Some(from),
            text: Utf8Bytes::default(),
        }))
    }

    pub fn seq(&self) -> Option<i64> {
        self.0.seq
    }

    pub fn conversation(&self) -> Option<ConversationId> {
        self.0.conversation
    }

    /// `Some(first seq)` for a catch-up notice, which has no text to send.
    pub fn catch_up_from(&self) -> Option<i64> {
        self.0.catch_up_from
    }

    pub fn text(&self) -> Utf8Bytes {
        self.0.text.clone()
    }
}

/// Who is behind a socket, for filtering the agent feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    Visitor,
    Agent { id: AgentId, admin: bool },
}

/// Who in a room should get a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Everyone,
    /// A conversation's event in the agent feed: its owner and admins, or every agent while
    /// it has no owner.
    OwnerOf(Option<AgentId>),
}

impl Audience {
    fn admits(self, viewer: Viewer) -> bool {
        match (self, viewer) {
            (Audience::Everyone, _) => true,
            (Audience::OwnerOf(_), Viewer::Visitor) => false,
            (Audience::OwnerOf(None), Viewer::Agent { .. }) => true,
            (Audience::OwnerOf(Some(owner)), Viewer::Agent { id, admin }) => admin || id == owner,
        }
    }
}

enum Command {
    Join {
        conn: ConnId,
        room: Room,
        viewer: Viewer,
        tx: mpsc::Sender<Outbound>,
    },
    LeaveAll {
        conn: ConnId,
    },
    Publish {
        room: Room,
        out: Outbound,
        audience: Audience,
        except: Option<ConnId>,
    },
    Count {
        room: Room,
        reply: oneshot::Sender<usize>,
    },
}

struct Member {
    viewer: Viewer,
    tx: mpsc::Sender<Outbound>,
}

#[derive(Default)]
struct Hub {
    rooms: HashMap<Room, HashMap<ConnId, Member>>,
    memberships: HashMap<ConnId, Vec<Room>>,
}

impl Hub {
    fn join(&mut self, conn: ConnId, room: Room, viewer: Viewer, tx: mpsc::Sender<Outbound>) {
        self.rooms
            .entry(room)
            .or_default()
            .insert(conn, Member { viewer, tx });
        let rooms = self.memberships.entry(conn).or_default();
        if !rooms.contains(&room) {
            rooms.push(room);
        }
    }

    fn leave_all(&mut self, conn: ConnId) {
        for room in self.memberships.remove(&conn).unwrap_or_default() {
            if let Some(members) = self.rooms.get_mut(&room) {
                members.remove(&conn);
                if members.is_empty() {
                    self.rooms.remove(&room);
                }
            }
        }
    }

    /// Delivers to every admitted member; returns the members that must be evicted.
    fn publish(
        &self,
        room: Room,
        out: &Outbound,
        audience: Audience,
        except: Option<ConnId>,
    ) -> Vec<ConnId> {
        let Some(members) = self.rooms.get(&room) else {
            return Vec::new();
        };
        let mut evict = Vec::new();
        for (conn, member) in members {
            if Some(*conn) == except || !audience.admits(member.viewer) {
                continue;
            }
            if member.tx.try_send(out.clone()).is_err() {
                evict.push(*conn);
            }
        }
        evict
    }
}

/// The cloneable way in to the hub task.
#[derive(Clone, Debug)]
pub struct HubHandle {
    tx: mpsc::Sender<Command>,
    next_conn: Arc<AtomicU64>,
}

impl HubHandle {
    /// Starts the hub task on the current Tokio runtime. `evictions` counts slow consumers.
    pub fn spawn(evictions: IntCounter) -> Self {
        let (tx, mut rx) = mpsc::channel(COMMAND_QUEUE);
        tokio::spawn(async move {
            let mut hub = Hub::default();
            while let Some(command) = rx.recv().await {
                match command {
                    Command::Join {
                        conn,
                        room,
                        viewer,
                        tx,
                    } => hub.join(conn, room, viewer, tx),
                    Command::LeaveAll { conn } => hub.leave_all(conn),
                    Command::Publish {
                        room,
                        out,
                        audience,
                        except,
                    } => {
                        for conn in hub.publish(room, &out, audience, except) {
                            evictions.inc();
                            hub.leave_all(conn);
                        }
                    }
                    Command::Count { room, reply } => {
                        let _ = reply.send(hub.rooms.get(&room).map_or(0, HashMap::len));
                    }
                }
            }
        });
        Self {
            tx,
            next_conn: Arc::new(AtomicU64::new(1)),
        }
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a socket to a room. The socket's task keeps only the receiving end: when the hub
    /// drops every sender (eviction), the receiver ends, which the task reads as "too slow".
    pub async fn join(&self, conn: ConnId, room: Room, viewer: Viewer, tx: mpsc::Sender<Outbound>) {
        self.send(Command::Join {
            conn,
            room,
            viewer,
            tx,
        })
        .await;
    }

    pub async fn leave_all(&self, conn: ConnId) {
        self.send(Command::LeaveAll { conn }).await;
    }

    pub async fn publish(
        &self,
        room: Room,
        out: Outbound,
        audience: Audience,
        except: Option<ConnId>,
    ) {
        self.send(Command::Publish {
            room,
            out,
            audience,
            except,
        })
        .await;
    }

    /// How many sockets are in a room (for tests and diagnostics).
    pub async fn members(&self, room: Room) -> usize {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Count { room, reply }).await;
        rx.await.unwrap_or(0)
    }

    async fn send(&self, command: Command) {
        if self.tx.send(command).await.is_err() {
            tracing::error!("hub task has stopped; frame dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(seq: i64) -> Outbound {
        Outbound::new(Some(seq), format!("{seq}"))
    }

    #[tokio::test]
    async fn fan_out_skips_the_sender_and_respects_audience() {
        let hub = HubHandle::spawn(IntCounter::new("t", "t").expect("valid metric"));
        let room = Room::Conversation(ConversationId::new());
        let (a_tx, mut a) = mpsc::channel(4);
        let (b_tx, mut b) = mpsc::channel(4);
        hub.join(1, room, Viewer::Visitor, a_tx).await;
        hub.join(2, room, Viewer::Visitor, b_tx).await;
        hub.publish(room, out(1), Audience::Everyone, Some(1)).await;
        assert_eq!(b.recv().await.and_then(|o| o.seq()), Some(1));
        assert!(a.try_recv().is_err());

        let owner = AgentId::new();
        let (own_tx, mut own) = mpsc::channel(4);
        let (other_tx, mut other) = mpsc::channel(4);
        hub.join(
            3,
            Room::AgentFeed,
            Viewer::Agent {
                id: owner,
                admin: false,
            },
            own_tx,
        )
        .await;
        hub.join(
            4,
            Room::AgentFeed,
            Viewer::Agent {
                id: AgentId::new(),
                admin: false,
            },
            other_tx,
        )
        .await;
        hub.publish(
            Room::AgentFeed,
            out(2),
            Audience::OwnerOf(Some(owner)),
            None,
        )
        .await;
        assert_eq!(own.recv().await.and_then(|o| o.seq()), Some(2));
        assert_eq!(hub.members(Room::AgentFeed).await, 2);
        assert!(other.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_queue_evicts_only_that_member() {
        let evictions = IntCounter::new("t", "t").expect("valid metric");
        let hub = HubHandle::spawn(evictions.clone());
        let room = Room::Conversation(ConversationId::new());
        let (slow_tx, mut slow) = mpsc::channel(1);
        let (fast_tx, mut fast) = mpsc::channel(8);
        hub.join(1, room, Viewer::Visitor, slow_tx).await;
        hub.join(2, room, Viewer::Visitor, fast_tx).await;
        for seq in 1..=3 {
            hub.publish(room, out(seq), Audience::Everyone, None).await;
        }
        assert_eq!(hub.members(room).await, 1);
        assert_eq!(evictions.get(), 1);
        assert_eq!(slow.recv().await.and_then(|o| o.seq()), Some(1));
        assert!(slow.recv().await.is_none(), "evicted member's queue ends");
        for seq in 1..=3 {
            assert_eq!(fast.recv().await.and_then(|o| o.seq()), Some(seq));
        }
    }
}
