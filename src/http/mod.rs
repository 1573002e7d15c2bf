//! The HTTP surface: the agent console REST API under `/api/v1`, operator endpoints, the
//! OpenAPI document, and request metrics by route pattern. Maps every error in one place.

mod agents;
mod analytics;
mod articles;
mod assist;
mod auth;
mod conversations;
mod error;
mod feedback;
mod intents;
mod ops;
mod privacy;
mod routing;
mod rules;

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{Error, web};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

pub use error::{ApiError, ErrorBody};

use crate::metrics::Metrics;
use crate::startup::AppState;

/// Largest JSON request body accepted.
const MAX_JSON_BODY: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard agent console API", description = "REST API of the agent console. Authenticate with `Authorization: Bearer <token>` (see `switchboard agent create`)."),
    paths(
        conversations::list, conversations::get_one, conversations::messages, conversations::post_message,
        conversations::claim, conversations::resolve, conversations::reopen,
        agents::get_me, agents::set_status, agents::list, agents::create,
        privacy::export, privacy::erase, privacy::audit,
        routing::queue, routing::assign, routing::transfer, routing::hand_back,
        rules::list, rules::get_one, rules::create, rules::replace, rules::remove,
        feedback::list, analytics::summary, assist::suggestions,
        articles::list, articles::get_one, articles::replace, articles::remove,
        intents::list, intents::get_one, intents::replace, intents::remove,
    ),
    modifiers(&BearerAuth),
    servers((url = "/api/v1"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_JSON_BODY)
            .error_handler(|e, _| ApiError::BadRequest(format!("invalid JSON body: {e}")).into()),
    )
    .app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::BadRequest(format!("invalid query: {e}")).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| ApiError::BadRequest(format!("invalid path: {e}")).into()),
    )
    .service(ops::health)
    .service(ops::ready)
    .service(ops::metrics)
    .service(ops::openapi)
    .service(
        web::scope("/api/v1")
            .service(conversations::list)
            .service(conversations::get_one)
            .service(conversations::messages)
            .service(conversations::post_message)
            .service(conversations::claim)
            .service(conversations::resolve)
            .service(conversations::reopen)
            .service(agents::get_me)
            .service(agents::set_status)
            .service(agents::list)
            .service(agents::create)
            .service(privacy::export)
            .service(privacy::erase)
            .service(privacy::audit)
            .service(routing::queue)
            .service(routing::assign)
            .service(routing::transfer)
            .service(routing::hand_back)
            .service(rules::list)
            .service(rules::get_one)
            .service(rules::create)
            .service(rules::replace)
            .service(rules::remove)
            .service(feedback::list)
            .service(analytics::summary)
            .service(assist::suggestions)
            .service(articles::list)
            .service(articles::get_one)
            .service(articles::replace)
            .service(articles::remove)
            .service(intents::list)
            .service(intents::get_one)
            .service(intents::replace)
            .service(intents::remove),
    );
}

/// Unknown routes get the same JSON error body as everything else.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound("route"))
}

/// Counts and times each request by its route pattern (never the raw path).
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let metrics = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.metrics.clone());
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let response = next.call(req).await?;
    if let Some(metrics) = metrics {
        record_request(&metrics, &route, &method, response.status(), started);
    }
    Ok(response)
}

/// Counts one answered request (a WebSocket upgrade too) and how long answering took.
pub(crate) fn record_request(
    metrics: &Metrics,
    route: &str,
    method: &Method,
    status: StatusCode,
    started: Instant,
) {
    let method = match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    };
    metrics
        .http_requests
        .with_label_values(&[route, method, status.as_str()])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[route, method])
        .observe(started.elapsed().as_secs_f64());
}
