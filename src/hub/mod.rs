//! The hub: every room (a conversation, the agents' feed, later a coaching session) and the sockets
//! in it, behind a cloneable [`HubHandle`](crate::hub::HubHandle). Whoever publishes fans the frame
//! out itself, on its own thread, under a read lock held only to push into queues: a frame goes
//! from the publishing task straight to each socket's task, with no task in between. Each socket
//! has a bounded outbound queue, and a socket whose queue is full is evicted (its task then closes
//! it as a slow consumer) instead of growing memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::domain::{AgentId, ConversationId};

/// Identifies one socket for the hub.
pub type ConnId = u64;

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

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("rooms", &self.rooms.len())
            .field("sockets", &self.memberships.len())
            .finish()
    }
}

/// The cloneable way in to the hub. The lock is held only while queues are pushed into (never
/// across an await), so publishers on different threads wait for each other at most that long.
#[derive(Clone, Debug)]
pub struct HubHandle {
    hub: Arc<RwLock<Hub>>,
    next_conn: Arc<AtomicU64>,
    evictions: IntCounter,
}

impl HubHandle {
    /// An empty hub. `evictions` counts slow consumers.
    pub fn new(evictions: IntCounter) -> Self {
        Self {
            hub: Arc::default(),
            next_conn: Arc::new(AtomicU64::new(1)),
            evictions,
        }
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a socket to a room. The socket's task keeps only the receiving end: when the hub
    /// drops every sender (eviction), the receiver ends, which the task reads as "too slow".
    pub fn join(&self, conn: ConnId, room: Room, viewer: Viewer, tx: mpsc::Sender<Outbound>) {
        self.write().join(conn, room, viewer, tx);
    }

    pub fn leave_all(&self, conn: ConnId) {
        self.write().leave_all(conn);
    }

    /// Pushes `out` into the queue of every admitted member of `room` but `except`, and
    /// evicts the members whose queue is full.
    pub fn publish(&self, room: Room, out: Outbound, audience: Audience, except: Option<ConnId>) {
        let evict = self.read().publish(room, &out, audience, except);
        if evict.is_empty() {
            return;
        }
        let mut hub = self.write();
        for conn in evict {
            self.evictions.inc();
            hub.leave_all(conn);
        }
    }

    /// How many sockets are in a room (for tests and diagnostics).
    pub fn members(&self, room: Room) -> usize {
        self.read().rooms.get(&room).map_or(0, HashMap::len)
    }

    /// The hub's maps stay consistent whatever panicked while holding the lock: every change
    /// is one insert or remove.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Hub> {
        self.hub.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Hub> {
        self.hub.write().unwrap_or_else(PoisonError::into_inner)
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
        let hub = HubHandle::new(IntCounter::new("t", "t").expect("valid metric"));
        let room = Room::Conversation(ConversationId::new());
        let (a_tx, mut a) = mpsc::channel(4);
        let (b_tx, mut b) = mpsc::channel(4);
        hub.join(1, room, Viewer::Visitor, a_tx);
        hub.join(2, room, Viewer::Visitor, b_tx);
        hub.publish(room, out(1), Audience::Everyone, Some(1));
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
        );
        hub.join(
            4,
            Room::AgentFeed,
            Viewer::Agent {
                id: AgentId::new(),
                admin: false,
            },
            other_tx,
        );
        hub.publish(
            Room::AgentFeed,
            out(2),
            Audience::OwnerOf(Some(owner)),
            None,
        );
        assert_eq!(own.recv().await.and_then(|o| o.seq()), Some(2));
        assert_eq!(hub.members(Room::AgentFeed), 2);
        assert!(other.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_queue_evicts_only_that_member() {
        let evictions = IntCounter::new("t", "t").expect("valid metric");
        let hub = HubHandle::new(evictions.clone());
        let room = Room::Conversation(ConversationId::new());
        let (slow_tx, mut slow) = mpsc::channel(1);
        let (fast_tx, mut fast) = mpsc::channel(8);
        hub.join(1, room, Viewer::Visitor, slow_tx);
        hub.join(2, room, Viewer::Visitor, fast_tx);
        for seq in 1..=3 {
            hub.publish(room, out(seq), Audience::Everyone, None);
        }
        assert_eq!(hub.members(room), 1);
        assert_eq!(evictions.get(), 1);
        assert_eq!(slow.recv().await.and_then(|o| o.seq()), Some(1));
        assert!(slow.recv().await.is_none(), "evicted member's queue ends");
        for seq in 1..=3 {
            assert_eq!(fast.recv().await.and_then(|o| o.seq()), Some(seq));
        }
    }

    /// Publishers on several threads at once: every member gets every frame, and each
    /// publisher's frames in the order it sent them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_publishers_lose_and_reorder_nothing() {
        const PUBLISHERS: i64 = 4;
        const EACH: i64 = 500;
        let hub = HubHandle::new(IntCounter::new("t", "t").expect("valid metric"));
        let room = Room::Conversation(ConversationId::new());
        let mut members = Vec::new();
        for conn in 1..=3 {
            let (tx, rx) = mpsc::channel((PUBLISHERS * EACH) as usize);
            hub.join(conn, room, Viewer::Visitor, tx);
            members.push(rx);
        }
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let hub = hub.clone();
                tokio::spawn(async move {
                    for i in 0..EACH {
                        hub.publish(room, out(p * EACH + i), Audience::Everyone, None);
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for p in publishers {
            p.await.expect("publisher");
        }
        for mut rx in members {
            let mut last = vec![-1; PUBLISHERS as usize];
            for _ in 0..PUBLISHERS * EACH {
                let seq = rx.recv().await.and_then(|o| o.seq()).expect("a frame");
                let p = (seq / EACH) as usize;
                assert!(
                    seq > last[p],
                    "publisher {p} out of order: {seq} after {}",
                    last[p]
                );
                last[p] = seq;
            }
            assert!(rx.try_recv().is_err(), "nothing more than was published");
        }
        assert_eq!(hub.members(room), 3);
    }
}
