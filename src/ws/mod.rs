//! WebSocket endpoints: `/ws/widget` for visitors and `/ws/agent` for the agent console feed.
//! Each socket runs one task with a `select!` loop over inbound frames, its bounded outbound
//! queue from the hub, and a heartbeat. The only module besides `http` that knows actix.

mod agent;
mod feedback;
mod socket;
mod widget;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::AggregatedMessageStream;

use crate::http::ApiError;
use crate::startup::AppState;
use socket::Socket;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws/widget", web::get().to(widget_upgrade))
        .route("/ws/agent", web::get().to(agent_upgrade));
}

fn upgrade(
    req: &HttpRequest,
    body: web::Payload,
    state: &AppState,
) -> Result<(HttpResponse, Socket, AggregatedMessageStream), actix_web::Error> {
    if state.drain.is_draining() {
        return Err(ApiError::Unavailable("this server is shutting down; connect again").into());
    }
    let ws = &state.settings.websocket;
    let (response, session, stream) = actix_ws::handle(req, body)?;
    let stream = stream
        .max_frame_size(ws.max_frame_bytes)
        .aggregate_continuations()
        .max_continuation_size(ws.max_frame_bytes);
    Ok((response, Socket::new(session, ws.write_timeout()), stream))
}

async fn widget_upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, socket, stream) = upgrade(&req, body, &state)?;
    actix_web::rt::spawn(widget::run(state.into_inner(), socket, stream));
    Ok(response)
}

async fn agent_upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, socket, stream) = upgrade(&req, body, &state)?;
    actix_web::rt::spawn(agent::run(state.get_ref().clone(), socket, stream));
    Ok(response)
}
