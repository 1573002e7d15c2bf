//! Extractors that name the role a handler needs: `AuthAgent` for any agent, `Admin` for
//! admins. The token is looked up by its hash; a missing or unknown token is a 401.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};

use super::error::ApiError;
use crate::auth::hash_api_token;
use crate::domain::Agent;
use crate::startup::AppState;

/// The agent calling the API.
pub struct AuthAgent(pub Agent);

/// An admin calling the API.
pub struct Admin(pub Agent);

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .then(|| token.trim().to_string())
}

impl FromRequest for AuthAgent {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let (Some(token), Some(state)) = (token, state) else {
                return Err(ApiError::Unauthorized);
            };
            match state
                .chat
                .store()
                .agent_by_token(&hash_api_token(&token))
                .await?
            {
                Some(agent) => Ok(AuthAgent(agent)),
                None => Err(ApiError::Unauthorized),
            }
        })
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let agent = AuthAgent::from_request(req, payload);
        Box::pin(async move {
            let AuthAgent(agent) = agent.await?;
            if agent.is_admin() {
                Ok(Admin(agent))
            } else {
                Err(ApiError::Forbidden("this needs an admin token"))
            }
        })
    }
}
