use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Store, StoreError, enum_col, from_ms, json_col, now_ms, parse_col};
use crate::domain::{Agent, AgentId, AgentRole, AgentStatus};

const COLUMNS: &str = "id, name, email, role, skills, max_concurrent, status, created_at";

/// What it takes to create an agent.
#[derive(Debug, Clone)]
pub struct NewAgent {
    pub name: String,
    pub email: String,
    pub role: AgentRole,
    pub skills: Vec<String>,
    pub max_concurrent: i64,
}

fn agent(row: &AnyRow) -> Result<Agent, StoreError> {
    Ok(Agent {
        id: parse_col(row, "id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        role: enum_col(row, "role", AgentRole::parse)?,
        skills: json_col(row, "skills")?,
        max_concurrent: row.try_get("max_concurrent")?,
        status: enum_col(row, "status", AgentStatus::parse)?,
        created_at: from_ms(row.try_get("created_at")?)?,
    })
}

fn qualified_columns() -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("a.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Creates an agent together with its first API token (given here already hashed).
    pub async fn create_agent(
        &self,
        new: &NewAgent,
        token_hash: &str,
    ) -> Result<Agent, StoreError> {
        let now = now_ms();
        let id = AgentId::new();
        let skills = serde_json::to_string(&new.skills)
            .map_err(|e| StoreError::Corrupt(format!("skills: {e}")))?;
        let mut tx = self.writer.begin().await?;
        let inserted = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO agents (id, name, email, role, skills, max_concurrent, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
        )))
        .bind(id.to_string())
        .bind(&new.name)
        .bind(&new.email)
        .bind(new.role.as_str())
        .bind(skills)
        .bind(new.max_concurrent)
        .bind(now)
        .fetch_one(&mut *tx)
        .await;
        let row = match inserted {
            Ok(row) => row,
            Err(e) if StoreError::is_unique_violation(&e) => {
                return Err(StoreError::Conflict(
                    "an agent with this email already exists",
                ));
            }
            Err(e) => return Err(e.into()),
        };
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, agent_id, created_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash)
        .bind(id.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let created = agent(&row)?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn agents(&self) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents ORDER BY created_at, id"
        )))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(agent).collect()
    }

    pub async fn agent(&self, id: AgentId) -> Result<Agent, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await?
        .ok_or(StoreError::NotFound("agent"))?;
        agent(&row)
    }

    /// The agent holding the token whose hash is `token_hash`, if any.
    pub async fn agent_by_token(&self, token_hash: &str) -> Result<Option<Agent>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM agents a JOIN api_tokens t ON t.agent_id = a.id WHERE t.token_hash = $1",
            qualified_columns()
        )))
        .bind(token_hash)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(agent).transpose()
    }

    pub async fn set_agent_status(
        &self,
        id: AgentId,
        status: AgentStatus,
    ) -> Result<Agent, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE agents SET status = $1, status_changed_at = $2 WHERE id = $3 RETURNING {COLUMNS}"
        )))
        .bind(status.as_str())
        .bind(now_ms())
        .bind(id.to_string())
        .fetch_optional(&self.writer)
        .await?
        .ok_or(StoreError::NotFound("agent"))?;
        agent(&row)
    }
}
