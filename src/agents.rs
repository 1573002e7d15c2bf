//! Agent accounts: creation with its first API token, shared by the CLI and the admin API.

use crate::auth::{generate_api_token, hash_api_token};
use crate::domain::{Agent, AgentRole};
use crate::store::{NewAgent, Store, StoreError};

/// The most conversations one agent may be given at once.
pub const MAX_CONCURRENT_LIMIT: i64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum AgentInputError {
    #[error("name must not be empty")]
    EmptyName,
    #[error("email {0:?} is not an email address")]
    BadEmail(String),
    #[error("max_concurrent must be between 0 and {MAX_CONCURRENT_LIMIT}")]
    BadCapacity,
    #[error("skill {0:?} must be lowercase letters, digits, - or _")]
    BadSkill(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks the input, stores the agent and returns it with its API token, which exists in
/// clear only in this return value.
pub async fn create_agent(
    store: &Store,
    name: &str,
    email: &str,
    role: AgentRole,
    skills: &[String],
    max_concurrent: i64,
) -> Result<(Agent, String), AgentInputError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AgentInputError::EmptyName);
    }
    let email = email.trim().to_lowercase();
    let valid_email = email.split_once('@').is_some_and(|(user, domain)| {
        !user.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace)
    });
    if !valid_email {
        return Err(AgentInputError::BadEmail(email));
    }
    if !(0..=MAX_CONCURRENT_LIMIT).contains(&max_concurrent) {
        return Err(AgentInputError::BadCapacity);
    }
    let mut normalised = Vec::new();
    for skill in skills
        .iter()
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
    {
        if !skill
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(AgentInputError::BadSkill(skill));
        }
        if !normalised.contains(&skill) {
            normalised.push(skill);
        }
    }
    let token = generate_api_token();
    let new = NewAgent {
        name: name.to_string(),
        email,
        role,
        skills: normalised,
        max_concurrent,
    };
    let agent = store.create_agent(&new, &hash_api_token(&token)).await?;
    Ok((agent, token))
}
