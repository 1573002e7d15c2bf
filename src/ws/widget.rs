//! The visitor's widget socket: hello (new or resumed visitor), replay of what was missed,
//! then chat messages, typing and read receipts.

use std::sync::Arc;

use governor::DefaultDirectRateLimiter;
use tokio::sync::mpsc;

use super::feedback::Rating;
use super::socket::{
    EPHEMERAL_RATE_FACTOR, Ending, Handler, Socket, await_hello, limiter, pump, refuse,
};
use crate::auth::AuthError;
use crate::domain::{AuthorRole, ClientId, Conversation, MessageText, TextError, VisitorId};
use crate::hub::{ConnId, Outbound, Room, Viewer};
use crate::protocol::{
    ErrorCode, FrameError, MessageFrame, PROTOCOL_VERSION, ServerFrame, WidgetFrame, close,
};
use crate::startup::AppState;
use crate::store::{Appended, NewMessage, StoreError};

/// Messages read from the database per page when replaying.
const REPLAY_PAGE: u32 = 500;

/// Everything a socket holds for its whole life is in this task: the state is shared (one
/// pointer), and the steps that run once (hello, identify, welcome, replay, close) are boxed,
/// so their futures are freed when done and an idle socket keeps only the main loop's state
/// (see docs/benchmarks.md, "Where an idle connection's memory goes").
pub async fn run(state: Arc<AppState>, mut socket: Socket) {
    let _open = state.metrics.connection("widget");
    let ending = serve(&state, &mut socket).await;
    Box::pin(socket.finish(ending, &state.metrics)).await;
}

async fn serve(state: &AppState, socket: &mut Socket) -> Ending {
    let settings = &state.settings.websocket;
    let hello = |frame| match frame {
        WidgetFrame::Hello {
            protocol,
            token,
            last_seq,
        } => Some((protocol, (token, last_seq))),
        _ => None,
    };
    let (token, last_seq) =
        match Box::pin(await_hello(socket, settings, WidgetFrame::TYPES, hello)).await {
            Ok(hello) => hello,
            Err(ending) => return ending,
        };
    let (visitor, conversation) = match Box::pin(identify(state, token.as_deref())).await {
        Ok(found) => found,
        Err(Identify::Unauthorized) => {
            let e = FrameError::new(
                ErrorCode::Unauthorized,
                "the visitor token is not valid; connect without one to start over",
            );
            return Box::pin(refuse(
                socket,
                e,
                close::UNAUTHORIZED,
                "unauthorized",
                "invalid token",
            ))
            .await;
        }
        Err(Identify::Store(e)) => {
            tracing::error!(error = ?e, "widget hello failed");
            return Box::pin(refuse(
                socket,
                internal(),
                1011,
                "internal",
                "internal error",
            ))
            .await;
        }
    };

    let conn = state.chat.hub().next_conn_id();
    let (tx, mut rx) = mpsc::channel(settings.outbound_queue);
    let room = Room::Conversation(conversation.id);
    state.chat.hub().join(conn, room, Viewer::Visitor, tx);
    let ending = converse(
        state,
        socket,
        &mut rx,
        conn,
        visitor,
        &conversation,
        last_seq.unwrap_or(0),
    )
    .await;
    state.chat.hub().leave_all(conn);
    ending
}

enum Identify {
    Unauthorized,
    Store(StoreError),
}

impl From<StoreError> for Identify {
    fn from(e: StoreError) -> Self {
        Identify::Store(e)
    }
}

/// A new visitor gets a new conversation; a returning one resumes their newest.
async fn identify(
    state: &AppState,
    token: Option<&str>,
) -> Result<(VisitorId, Conversation), Identify> {
    let store = state.chat.store();
    let Some(token) = token else {
        let visitor = store.create_visitor().await?;
        return Ok((visitor, state.chat.start_conversation(visitor).await?));
    };
    let visitor = state
        .visitor_tokens
        .verify(token)
        .map_err(|_: AuthError| Identify::Unauthorized)?;
    if !store.visitor_exists(visitor).await? {
        return Err(Identify::Unauthorized);
    }
    let conversation = match store.latest_conversation(visitor).await? {
        Some(c) => c,
        None => state.chat.start_conversation(visitor).await?,
    };
    Ok((visitor, conversation))
}

#[allow(clippy::too_many_arguments)]
async fn converse(
    state: &AppState,
    socket: &mut Socket,
    rx: &mut mpsc::Receiver<Outbound>,
    conn: ConnId,
    visitor: VisitorId,
    conversation: &Conversation,
    last_seq: i64,
) -> Ending {
    let token = state.visitor_tokens.issue(visitor);
    let welcome = ServerFrame::Welcome {
        protocol: PROTOCOL_VERSION,
        token: &token,
        conversation_id: conversation.id,
        state: conversation.state,
    };
    if let Err(ending) = Box::pin(socket.frame(&welcome)).await {
        return ending;
    }
    let mut handler = Widget::new(state, conn, visitor, conversation, last_seq);
    if let Err(ending) = Box::pin(handler.replay(socket)).await {
        return ending;
    }
    pump(
        socket,
        rx,
        &mut handler,
        &state.settings.websocket,
        state.drain.subscribe(),
    )
    .await
}

struct Widget<'a> {
    state: &'a AppState,
    conn: ConnId,
    visitor: VisitorId,
    conversation: crate::domain::ConversationId,
    /// The highest `seq` this socket has, every one below it included.
    last_delivered: i64,
    /// `seq`s of this socket's own messages above `last_delivered`: acknowledged, so never
    /// sent back to it.
    own: Vec<i64>,
    messages: DefaultDirectRateLimiter,
    ephemeral: DefaultDirectRateLimiter,
}

fn internal() -> FrameError {
    FrameError::new(
        ErrorCode::Internal,
        "the server could not do that; try again",
    )
}

impl<'a> Widget<'a> {
    fn new(
        state: &'a AppState,
        conn: ConnId,
        visitor: VisitorId,
        conversation: &Conversation,
        last_seq: i64,
    ) -> Self {
        let ws = &state.settings.websocket;
        Self {
            state,
            conn,
            visitor,
            conversation: conversation.id,
            last_delivered: last_seq.clamp(0, conversation.last_seq),
            own: Vec::new(),
            messages: limiter(ws, 1),
            ephemeral: limiter(ws, EPHEMERAL_RATE_FACTOR),
        }
    }

    /// Sends every stored message after `last_delivered`, oldest first, from the database.
    async fn replay(&mut self, socket: &mut Socket) -> Result<(), Ending> {
        let mut after = self.last_delivered;
        loop {
            let page = match self
                .state
                .chat
                .store()
                .messages_after(self.conversation, after, REPLAY_PAGE)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(error = ?e, "replay failed");
                    return Err(
                        refuse(socket, internal(), 1011, "internal", "replay failed").await,
                    );
                }
            };
            for message in &page {
                if !self.own.contains(&message.seq) {
                    socket
                        .frame(&ServerFrame::Message(MessageFrame::from(message)))
                        .await?;
                }
                after = message.seq;
                self.delivered(message.seq);
            }
            if page.len() < REPLAY_PAGE as usize {
                return Ok(());
            }
        }
    }

    /// Notes that the socket has everything up to `seq`, and its own messages right after.
    fn delivered(&mut self, seq: i64) {
        self.last_delivered = self.last_delivered.max(seq);
        self.own.retain(|s| *s > self.last_delivered);
        while let Some(at) = self.own.iter().position(|s| *s == self.last_delivered + 1) {
            self.own.swap_remove(at);
            self.last_delivered += 1;
        }
    }

    async fn message(
        &mut self,
        socket: &mut Socket,
        client_id: String,
        text: String,
    ) -> Result<(), Ending> {
        if self.messages.check().is_err() {
            let e = FrameError::new(
                ErrorCode::RateLimited,
                "too many messages; slow down and resend",
            );
            return socket.error(&e, Some(&client_id)).await;
        }
        let max = self.state.settings.websocket.max_text_bytes;
        let parsed = ClientId::parse(client_id.clone())
            .and_then(|c| Ok((c, MessageText::parse(text, max)?)));
        let (client, text) = match parsed {
            Ok(ok) => ok,
            Err(e) => {
                let code = if matches!(e, TextError::TooLong { .. }) {
                    ErrorCode::TooLarge
                } else {
                    ErrorCode::InvalidFrame
                };
                return socket
                    .error(&FrameError::new(code, e.to_string()), Some(&client_id))
                    .await;
            }
        };
        let new = NewMessage {
            conversation_id: self.conversation,
            author: AuthorRole::Visitor,
            author_id: Some(self.visitor.to_string()),
            text,
            client_id: Some(client),
            analysis: None,
        };
        match self.state.chat.post(new, Some(self.conn)).await {
            Ok(appended) => {
                if let (Some(bot), Appended::New { message, .. }) = (&self.state.bot, &appended) {
                    bot.heard(message.clone());
                }
                let seq = appended.message().seq;
                if seq > self.last_delivered {
                    self.own.push(seq);
                    self.delivered(self.last_delivered);
                }
                socket
                    .frame(&ServerFrame::Ack {
                        client_id: &client_id,
                        seq,
                    })
                    .await
            }
            Err(StoreError::NotFound(_)) => {
                let e = FrameError::new(ErrorCode::NotFound, "this conversation no longer exists");
                socket.error(&e, Some(&client_id)).await
            }
            Err(e) => {
                tracing::error!(error = ?e, "storing a visitor message failed");
                socket.error(&internal(), Some(&client_id)).await
            }
        }
    }

    /// Ratings count against the chat message rate: each is a write.
    async fn rate(
        &mut self,
        socket: &mut Socket,
        rating: Rating,
        comment: Option<String>,
    ) -> Result<(), Ending> {
        if self.messages.check().is_err() {
            let e = FrameError::new(ErrorCode::RateLimited, "too many frames; slow down");
            return socket.error(&e, None).await;
        }
        match super::feedback::rate(self.state, self.conversation, rating, comment).await {
            Ok(rated) => socket.frame(&rated).await,
            Err(e) => socket.error(&e, None).await,
        }
    }

    async fn relay(&mut self, socket: &mut Socket, frame: ServerFrame<'_>) -> Result<(), Ending> {
        if self.ephemeral.check().is_err() {
            let e = FrameError::new(ErrorCode::RateLimited, "too many typing or read frames");
            return socket.error(&e, None).await;
        }
        if let Err(e) = self
            .state
            .chat
            .relay(self.conversation, &frame, self.conn)
            .await
        {
            tracing::warn!(error = ?e, "relay failed");
            return socket.error(&internal(), None).await;
        }
        Ok(())
    }
}

impl Handler for Widget<'_> {
    async fn on_text(&mut self, socket: &mut Socket, text: &str) -> Result<(), Ending> {
        match crate::protocol::parse_frame::<WidgetFrame>(text, WidgetFrame::TYPES) {
            Err(e) => socket.error(&e, None).await,
            Ok(WidgetFrame::Hello { .. }) => {
                let e = FrameError::new(
                    ErrorCode::InvalidFrame,
                    "hello was already received on this connection",
                );
                socket.error(&e, None).await
            }
            Ok(WidgetFrame::Message { client_id, text }) => {
                self.message(socket, client_id, text).await
            }
            Ok(WidgetFrame::Typing { on }) => {
                let frame = ServerFrame::Typing {
                    conversation_id: self.conversation,
                    author: AuthorRole::Visitor,
                    on,
                };
                self.relay(socket, frame).await
            }
            Ok(WidgetFrame::RateAnswer {
                seq,
                rating,
                comment,
            }) => {
                self.rate(socket, Rating::Answer { seq, rating }, comment)
                    .await
            }
            Ok(WidgetFrame::RateConversation { score, comment }) => {
                self.rate(socket, Rating::Conversation(score), comment)
                    .await
            }
            Ok(WidgetFrame::Read { seq }) => {
                let frame = ServerFrame::Read {
                    conversation_id: self.conversation,
                    author: AuthorRole::Visitor,
                    seq,
                };
                self.relay(socket, frame).await
            }
        }
    }

    async fn deliver(&mut self, socket: &mut Socket, out: Outbound) -> Result<(), Ending> {
        let Some(seq) = out.seq() else {
            return socket.send(out.text()).await;
        };
        if seq <= self.last_delivered {
            return Ok(());
        }
        let notice = out.catch_up_from().is_some();
        if notice || seq > self.last_delivered + 1 {
            // Stored before this frame but not (yet) here: from another replica, or while
            // this replica was not listening.
            self.replay(socket).await?;
        }
        if notice || seq <= self.last_delivered {
            return Ok(());
        }
        self.delivered(seq);
        socket.send(out.text()).await
    }
}
