//! The analytics summary (admins only): figures over the conversations created in a window,
//! each defined in docs/console-api.md.

use actix_web::{get, web};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Admin;
use super::error::{ApiError, ErrorBody};
use crate::analytics::{self, Summary};
use crate::startup::AppState;

/// The window when the query names no `from`.
const DEFAULT_DAYS: i64 = 7;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    /// Start of the window, inclusive (RFC 3339); default `to` minus 7 days.
    from: Option<DateTime<Utc>>,
    /// End of the window, exclusive (RFC 3339); default now.
    to: Option<DateTime<Utc>>,
}

/// Figures over the conversations created in `[from, to)`.
#[utoipa::path(
    params(SummaryQuery),
    responses((status = 200, body = Summary), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = []))
)]
#[get("/analytics/summary")]
pub async fn summary(
    _admin: Admin,
    query: web::Query<SummaryQuery>,
    state: web::Data<AppState>,
) -> Result<web::Json<Summary>, ApiError> {
    let to = query.to.unwrap_or_else(Utc::now);
    let from = query.from.unwrap_or(to - TimeDelta::days(DEFAULT_DAYS));
    if from >= to {
        return Err(ApiError::Invalid("from must be before to".into()));
    }
    Ok(web::Json(
        analytics::summary(state.chat.store(), from, to).await?,
    ))
}
