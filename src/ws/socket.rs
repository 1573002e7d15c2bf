//! What every socket task shares: the socket (reads, and writes with a timeout), the hello
//! handshake, and the main loop over inbound frames, the hub queue and the heartbeat.

use std::num::NonZeroU32;
use std::time::Duration;

use actix_web::rt::net::TcpStream;
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, interval, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::config::WebSocketSettings;
use crate::hub::Outbound;
use crate::metrics::Metrics;
use crate::protocol::{ErrorCode, FrameError, PROTOCOL_VERSION, ServerFrame, close, parse_frame};

/// Typing and read receipts may come this many times faster than chat messages.
pub const EPHEMERAL_RATE_FACTOR: u32 = 4;

/// A per-socket rate limiter at `factor` times the configured chat message rate and burst.
pub fn limiter(settings: &WebSocketSettings, factor: u32) -> DefaultDirectRateLimiter {
    let nz =
        |n: u32| NonZeroU32::new(n.saturating_mul(factor).max(1)).expect("max(1) is never zero");
    RateLimiter::direct(
        Quota::per_second(nz(settings.messages_per_second)).allow_burst(nz(settings.message_burst)),
    )
}

/// How long a closing socket waits for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Why a socket task ends.
#[derive(Debug)]
pub enum Ending {
    /// The peer went away or closed; nothing more to send.
    Gone,
    /// The server closes with this code and reason.
    Close {
        code: u16,
        reason: &'static str,
        label: &'static str,
    },
}

impl Ending {
    pub fn close(code: u16, label: &'static str, reason: &'static str) -> Self {
        Ending::Close {
            code,
            reason,
            label,
        }
    }
}

/// What the client sent, as the socket loops see it.
enum Inbound {
    Text(Utf8Bytes),
    Binary,
    /// A ping (the WebSocket layer answers it) or a pong.
    Control,
    /// The client closed, or the connection went.
    Gone,
    /// A frame the protocol forbids: the socket must close.
    Fault(Ending),
}

/// A WebSocket on its TCP connection, where no write may hang for longer than the timeout.
/// It holds no buffers but the WebSocket layer's own, sized by `super::upgrade`.
pub struct Socket {
    ws: WebSocketStream<TcpStream>,
    write_timeout: Duration,
}

impl Socket {
    pub fn new(ws: WebSocketStream<TcpStream>, write_timeout: Duration) -> Self {
        Self { ws, write_timeout }
    }

    /// The next frame from the client. Cancel-safe: a frame read in part stays buffered.
    async fn recv(&mut self) -> Inbound {
        match self.ws.next().await {
            None | Some(Ok(Message::Close(_))) => Inbound::Gone,
            Some(Ok(Message::Text(text))) => Inbound::Text(text),
            Some(Ok(Message::Binary(_))) => Inbound::Binary,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Inbound::Control,
            Some(Err(e)) => match e {
                WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_) => {
                    Inbound::Gone
                }
                WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
                    Inbound::Fault(Ending::close(1009, "too_large", "frame too large"))
                }
                _ => Inbound::Fault(Ending::close(
                    1002,
                    "protocol_error",
                    "websocket protocol error",
                )),
            },
        }
    }

    async fn write(&mut self, message: Message) -> Result<(), Ending> {
        match timeout(self.write_timeout, self.ws.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_closed)) => Err(Ending::Gone),
            Err(_elapsed) => Err(Ending::close(
                close::SLOW_CONSUMER,
                "slow_consumer",
                "client is not reading",
            )),
        }
    }

    /// Sends a frame the hub serialised once for every member of a room.
    pub async fn send(&mut self, text: Utf8Bytes) -> Result<(), Ending> {
        self.write(Message::Text(text)).await
    }

    pub async fn frame(&mut self, frame: &ServerFrame<'_>) -> Result<(), Ending> {
        self.write(Message::text(frame.to_json())).await
    }

    pub async fn error(
        &mut self,
        error: &FrameError,
        client_id: Option<&str>,
    ) -> Result<(), Ending> {
        self.frame(&ServerFrame::Error {
            code: error.code,
            message: &error.message,
            client_id,
        })
        .await
    }

    async fn ping(&mut self) -> Result<(), Ending> {
        self.write(Message::Ping(Default::default()))
            .await
            .map_err(|_| Ending::Gone)
    }

    /// Sends a close frame (when the ending calls for one), counts the reason, and waits a
    /// moment for the client's answer, so the close frame is read before the TCP connection goes.
    /// When the client closed, the answer the WebSocket layer queued is sent.
    pub async fn finish(mut self, ending: Ending, metrics: &Metrics) {
        let Ending::Close {
            code,
            reason,
            label,
        } = ending
        else {
            let _ = timeout(self.write_timeout, self.ws.flush()).await;
            return;
        };
        metrics.ws_closes.with_label_values(&[label]).inc();
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from_static(reason),
        };
        if let Ok(Ok(())) = timeout(self.write_timeout, self.ws.close(Some(frame))).await {
            let _ = timeout(CLOSE_GRACE, async {
                while let Some(Ok(frame)) = self.ws.next().await {
                    if let Message::Close(_) = frame {
                        break;
                    }
                }
            })
            .await;
        }
    }
}

/// Sends an error frame, then ends with `code`: for faults after which the socket must go.
pub async fn refuse(
    socket: &mut Socket,
    error: FrameError,
    code: u16,
    label: &'static str,
    reason: &'static str,
) -> Ending {
    match socket.error(&error, None).await {
        Ok(()) => Ending::close(code, label, reason),
        Err(ending) => ending,
    }
}

/// Waits for the first frame, which must be a hello (`hello` picks its protocol version and
/// payload out of `T`) of this server's protocol version, within the hello timeout.
pub async fn await_hello<T: DeserializeOwned, H>(
    socket: &mut Socket,
    settings: &WebSocketSettings,
    types: &[&str],
    hello: fn(T) -> Option<(u32, H)>,
) -> Result<H, Ending> {
    let deadline = Instant::now() + settings.hello_timeout();
    let text = loop {
        let frame = match tokio::time::timeout_at(deadline, socket.recv()).await {
            Err(_) => {
                return Err(Ending::close(
                    close::HELLO_EXPECTED,
                    "hello_timeout",
                    "no hello frame in time",
                ));
            }
            Ok(frame) => frame,
        };
        match frame {
            Inbound::Gone => return Err(Ending::Gone),
            Inbound::Fault(ending) => return Err(ending),
            Inbound::Control => {}
            Inbound::Binary => break None,
            Inbound::Text(text) => break Some(text),
        }
    };
    let not_hello = |message: String| FrameError::new(ErrorCode::InvalidFrame, message);
    let parsed = match text {
        None => Err(not_hello(
            "binary frames are not supported; the first frame must be a hello".into(),
        )),
        Some(text) => parse_frame::<T>(&text, types).and_then(|frame| {
            hello(frame).ok_or_else(|| not_hello("the first frame must be a hello".into()))
        }),
    };
    match parsed {
        Err(e) => Err(refuse(
            socket,
            e,
            close::HELLO_EXPECTED,
            "hello_expected",
            "hello expected",
        )
        .await),
        Ok((protocol, _)) if protocol != PROTOCOL_VERSION => {
            let e = FrameError::new(
                ErrorCode::ProtocolVersion,
                format!(
                    "protocol {protocol} is not supported; this server speaks {PROTOCOL_VERSION}"
                ),
            );
            Err(refuse(
                socket,
                e,
                close::PROTOCOL_VERSION,
                "protocol_version",
                "unsupported protocol version",
            )
            .await)
        }
        Ok((_, payload)) => Ok(payload),
    }
}

/// What a role does with the frames of its socket.
pub trait Handler {
    /// Handles one text frame from the client.
    async fn on_text(&mut self, socket: &mut Socket, text: &str) -> Result<(), Ending>;
    /// Sends a frame from the hub unless the socket already has it (e.g. from a replay),
    /// first reading from the database any stored message before it that the socket lacks.
    async fn deliver(&mut self, socket: &mut Socket, out: Outbound) -> Result<(), Ending>;
}

/// Runs a socket after its handshake until it ends, however it ends.
pub async fn pump<H: Handler>(
    socket: &mut Socket,
    rx: &mut mpsc::Receiver<Outbound>,
    handler: &mut H,
    settings: &WebSocketSettings,
    mut drain: watch::Receiver<bool>,
) -> Ending {
    let mut heartbeat = interval(settings.heartbeat_interval());
    heartbeat.tick().await;
    let mut last_heard = Instant::now();
    loop {
        let step = tokio::select! {
            frame = socket.recv() => {
                last_heard = Instant::now();
                match frame {
                    Inbound::Gone => Err(Ending::Gone),
                    Inbound::Fault(ending) => Err(ending),
                    Inbound::Text(text) => {
                        // Every write is boxed: an idle socket's task then keeps none of their
                        // state (see docs/benchmarks.md).
                        Box::pin(handler.on_text(socket, &text)).await
                    }
                    Inbound::Binary => {
                        let e = FrameError::new(ErrorCode::InvalidFrame, "binary frames are not supported; send JSON text frames");
                        Box::pin(socket.error(&e, None)).await
                    }
                    Inbound::Control => Ok(()),
                }
            }
            out = rx.recv() => match out {
                Some(out) => Box::pin(handler.deliver(socket, out)).await,
                None => Err(Ending::close(close::SLOW_CONSUMER, "slow_consumer", "too slow to keep up")),
            },
            _ = drain.wait_for(|draining| *draining) => {
                Err(Ending::close(1001, "going_away", "server is shutting down; reconnect"))
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > settings.client_timeout() {
                    Err(Ending::close(close::HEARTBEAT_TIMEOUT, "heartbeat_timeout", "no heartbeat"))
                } else {
                    Box::pin(socket.ping()).await
                }
            }
        };
        if let Err(ending) = step {
            return ending;
        }
    }
}
