//! The agent console's live feed: after a hello with an API token, conversation events,
//! messages and typing for what this agent may see; the agent may send typing and read frames.

use std::collections::HashMap;

use tokio::sync::mpsc;

use governor::DefaultDirectRateLimiter;

use super::socket::{
    EPHEMERAL_RATE_FACTOR, Ending, Handler, Socket, await_hello, limiter, pump, refuse,
};
use crate::auth::hash_api_token;
use crate::domain::{Agent, AuthorRole, ConversationId};
use crate::hub::{ConnId, Outbound, Room, Viewer};
use crate::protocol::{
    AgentFrame, ErrorCode, FrameError, MessageFrame, PROTOCOL_VERSION, ServerFrame, close,
    parse_frame,
};
use crate::startup::AppState;
use crate::store::StoreError;

/// Messages read from the database per page when the feed catches up.
const CATCH_UP_PAGE: u32 = 500;

pub async fn run(state: AppState, mut socket: Socket) {
    let _open = state.metrics.connection("agent");
    let ending = serve(&state, &mut socket).await;
    socket.finish(ending, &state.metrics).await;
}

async fn serve(state: &AppState, socket: &mut Socket) -> Ending {
    let settings = &state.settings.websocket;
    let hello = |frame| match frame {
        AgentFrame::Hello { protocol, token } => Some((protocol, token)),
        _ => None,
    };
    let token = match await_hello(socket, settings, AgentFrame::TYPES, hello).await {
        Ok(token) => token,
        Err(ending) => return ending,
    };
    let agent = match Box::pin(state.chat.store().agent_by_token(&hash_api_token(&token))).await {
        Ok(Some(agent)) => agent,
        Ok(None) => {
            let e = FrameError::new(ErrorCode::Unauthorized, "the API token is not valid");
            return refuse(
                socket,
                e,
                close::UNAUTHORIZED,
                "unauthorized",
                "invalid token",
            )
            .await;
        }
        Err(e) => {
            tracing::error!(error = ?e, "agent hello failed");
            let e = FrameError::new(
                ErrorCode::Internal,
                "the server could not check the token; try again",
            );
            return refuse(socket, e, 1011, "internal", "internal error").await;
        }
    };

    let hub = state.chat.hub();
    let conn = hub.next_conn_id();
    let (tx, mut rx) = mpsc::channel(settings.outbound_queue);
    hub.join(
        conn,
        Room::AgentFeed,
        Viewer::Agent {
            id: agent.id,
            admin: agent.is_admin(),
        },
        tx,
    );
    let welcome = ServerFrame::AgentWelcome {
        protocol: PROTOCOL_VERSION,
        agent_id: agent.id,
        role: agent.role,
    };
    let ending = match socket.frame(&welcome).await {
        Ok(()) => {
            pump(
                socket,
                &mut rx,
                &mut Console {
                    state,
                    conn,
                    agent,
                    limiter: limiter(settings, EPHEMERAL_RATE_FACTOR),
                    delivered: HashMap::new(),
                },
                settings,
                state.drain.subscribe(),
            )
            .await
        }
        Err(ending) => ending,
    };
    hub.leave_all(conn);
    ending
}

struct Console<'a> {
    state: &'a AppState,
    conn: ConnId,
    agent: Agent,
    limiter: DefaultDirectRateLimiter,
    /// Per conversation seen on this feed, the highest `seq` sent, every one since the first
    /// included.
    delivered: HashMap<ConversationId, i64>,
}

impl Console<'_> {
    /// Sends the messages of `id` stored after what this feed has, from the database. The
    /// feed is live only, so if the database fails the console catches up over REST.
    async fn catch_up(&mut self, socket: &mut Socket, id: ConversationId) -> Result<(), Ending> {
        loop {
            let after = self.delivered.get(&id).copied().unwrap_or(0);
            let page = match self
                .state
                .chat
                .store()
                .messages_after(id, after, CATCH_UP_PAGE)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = ?e, "agent feed catch-up failed");
                    return Ok(());
                }
            };
            for message in &page {
                socket
                    .frame(&ServerFrame::Message(MessageFrame::from(message)))
                    .await?;
                self.delivered.insert(id, message.seq);
            }
            if page.len() < CATCH_UP_PAGE as usize {
                return Ok(());
            }
        }
    }

    async fn relay(
        &mut self,
        socket: &mut Socket,
        id: ConversationId,
        frame: ServerFrame<'_>,
    ) -> Result<(), Ending> {
        if self.limiter.check().is_err() {
            let e = FrameError::new(ErrorCode::RateLimited, "too many typing or read frames");
            return socket.error(&e, None).await;
        }
        let store = self.state.chat.store();
        let outcome = match store.conversation(id).await {
            Ok(c) if !self.agent.may_see(&c) => Err(FrameError::new(
                ErrorCode::Forbidden,
                "this conversation belongs to another agent",
            )),
            Ok(_) => self
                .state
                .chat
                .relay(id, &frame, self.conn)
                .await
                .map_err(|e| {
                    tracing::warn!(error = ?e, "relay failed");
                    FrameError::new(
                        ErrorCode::Internal,
                        "the server could not relay that; try again",
                    )
                }),
            Err(StoreError::NotFound(_)) => {
                Err(FrameError::new(ErrorCode::NotFound, "no such conversation"))
            }
            Err(e) => {
                tracing::warn!(error = ?e, "conversation lookup failed");
                Err(FrameError::new(
                    ErrorCode::Internal,
                    "the server could not relay that; try again",
                ))
            }
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(e) => socket.error(&e, None).await,
        }
    }
}

impl Handler for Console<'_> {
    async fn on_text(&mut self, socket: &mut Socket, text: &str) -> Result<(), Ending> {
        match parse_frame::<AgentFrame>(text, AgentFrame::TYPES) {
            Err(e) => socket.error(&e, None).await,
            Ok(AgentFrame::Hello { .. }) => {
                let e = FrameError::new(
                    ErrorCode::InvalidFrame,
                    "hello was already received on this connection",
                );
                socket.error(&e, None).await
            }
            Ok(AgentFrame::Typing {
                conversation_id,
                on,
            }) => {
                let frame = ServerFrame::Typing {
                    conversation_id,
                    author: AuthorRole::Agent,
                    on,
                };
                self.relay(socket, conversation_id, frame).await
            }
            Ok(AgentFrame::Read {
                conversation_id,
                seq,
            }) => {
                let frame = ServerFrame::Read {
                    conversation_id,
                    author: AuthorRole::Agent,
                    seq,
                };
                self.relay(socket, conversation_id, frame).await
            }
        }
    }

    async fn deliver(&mut self, socket: &mut Socket, out: Outbound) -> Result<(), Ending> {
        let (Some(id), Some(seq)) = (out.conversation(), out.seq()) else {
            return socket.send(out.text()).await;
        };
        let notice = out.catch_up_from();
        let last = *self
            .delivered
            .entry(id)
            .or_insert(notice.unwrap_or(seq) - 1);
        if seq <= last {
            return Ok(());
        }
        if notice.is_some() || seq > last + 1 {
            // Stored before this frame but not (yet) here: from another replica, or while
            // this replica was not listening.
            self.catch_up(socket, id).await?;
        }
        if notice.is_some() || self.delivered.get(&id).is_some_and(|d| seq <= *d) {
            return Ok(());
        }
        self.delivered.insert(id, seq);
        socket.send(out.text()).await
    }
}
