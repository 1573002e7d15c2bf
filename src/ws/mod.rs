//! WebSocket endpoints: `/ws/widget` for visitors and `/ws/agent` for the agent console feed.
//! actix-http hands every upgrade request to [`upgrade`](crate::ws::upgrade) together with its TCP
//! connection; the handshake is answered there and the connection leaves actix-http, whose two 8
//! KiB buffers per connection go with it. Each socket then runs one task with a `select!` loop over
//! inbound frames, its bounded outbound queue from the hub, and a heartbeat. The only module
//! besides `http` that knows actix.

mod agent;
mod feedback;
mod socket;
mod widget;

use std::sync::Arc;
use std::time::Instant;

use actix_codec::Framed;
use actix_http::body::{BodySize, MessageBody};
use actix_http::{ConnectionType, Request, Response, h1};
use actix_web::http::StatusCode;
use actix_web::rt::net::TcpStream;
use actix_web::{HttpResponse, ResponseError, web};
use futures_util::SinkExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::http::{ApiError, record_request};
use crate::startup::AppState;
use socket::Socket;

/// The most a socket reads from its connection at a time: the read buffer an idle socket
/// keeps. A larger frame grows it for as long as the frame needs (up to the frame limit).
const READ_BUFFER: usize = 1024;

/// Upgrade requests never reach these routes (actix-http gives them to [`upgrade`]); a plain
/// request is told what the endpoint needs.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws/widget", web::get().to(upgrade_required))
        .route("/ws/agent", web::get().to(upgrade_required));
}

async fn upgrade_required() -> Result<HttpResponse, ApiError> {
    Err(ApiError::BadRequest(
        "this endpoint takes a WebSocket upgrade".into(),
    ))
}

/// Answers an upgrade request on `framed`'s connection: the WebSocket handshake for the two
/// endpoints, then the socket's task is started and owns the connection; otherwise an HTTP
/// error, after which the connection closes. Counted in the request metrics like any request
/// (status 101 for a handshake).
pub async fn upgrade(
    state: Arc<AppState>,
    req: Request,
    framed: Framed<TcpStream, h1::Codec>,
) -> actix_web::Result<()> {
    let started = Instant::now();
    let method = req.method().clone();
    let route = match req.path() {
        "/ws/widget" => "/ws/widget",
        "/ws/agent" => "/ws/agent",
        _ => "unmatched",
    };
    let metrics = state.metrics.clone();
    let status = answer(state, req, framed).await?;
    record_request(&metrics, route, &method, status, started);
    Ok(())
}

/// The handshake or the refusal; the status it answered with.
async fn answer(
    state: Arc<AppState>,
    req: Request,
    mut framed: Framed<TcpStream, h1::Codec>,
) -> actix_web::Result<StatusCode> {
    let widget = match req.path() {
        "/ws/widget" => true,
        "/ws/agent" => false,
        _ => return refuse(framed, ApiError::NotFound("endpoint")).await,
    };
    if state.drain.is_draining() {
        let e = ApiError::Unavailable("this server is shutting down; connect again");
        return refuse(framed, e).await;
    }
    let accept = match actix_http::ws::handshake(req.head()) {
        Ok(mut accept) => accept.finish().drop_body(),
        Err(e) => return refuse(framed, ApiError::BadRequest(e.to_string())).await,
    };
    framed.send((accept, BodySize::None).into()).await?;

    let settings = &state.settings.websocket;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_frame_size(Some(settings.max_frame_bytes))
        .max_message_size(Some(settings.max_frame_bytes));
    // What the client sent right behind its request (its hello, say) is in the read buffer.
    let parts = framed.into_parts();
    let ws = WebSocketStream::from_partially_read(
        parts.io,
        parts.read_buf.to_vec(),
        Role::Server,
        Some(config),
    )
    .await;
    let socket = Socket::new(ws, settings.write_timeout());
    if widget {
        actix_web::rt::spawn(widget::run(state, socket));
    } else {
        actix_web::rt::spawn(agent::run((*state).clone(), socket));
    }
    Ok(StatusCode::SWITCHING_PROTOCOLS)
}

/// Answers with `error`'s status and JSON body; returns the status.
async fn refuse(
    mut framed: Framed<TcpStream, h1::Codec>,
    error: ApiError,
) -> actix_web::Result<StatusCode> {
    let (head, body) = error.error_response().into_parts();
    let status = head.status();
    let mut head: Response<()> = head.into();
    head.head_mut().set_connection_type(ConnectionType::Close);
    let body = body.try_into_bytes().unwrap_or_default();
    let size = BodySize::Sized(body.len() as u64);
    framed.send((head, size).into()).await?;
    framed.send(h1::Message::Chunk(Some(body))).await?;
    framed.send(h1::Message::Chunk(None)).await?;
    Ok(status)
}
