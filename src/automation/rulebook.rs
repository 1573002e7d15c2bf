//! The escalation rules in force: stored in the database, checked before they are saved, and
//! held in memory, checked, for the message path. Another replica's edit is picked up within
//! [`REFRESH`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::RwLock;

use crate::escalation::{Rule, RuleError, RuleSpec, parse_rule, parse_rules_yaml};
use crate::store::{Store, StoreError, StoredRule};

/// How long a replica trusts its copy of the rules.
pub const REFRESH: Duration = Duration::from_secs(5);

/// The rules that ship with Switchboard, seeded into an empty database.
const DEFAULT_RULES: &str = include_str!("../../knowledge-base/escalation-rules.yaml");

#[derive(Debug, thiserror::Error)]
pub enum RuleBookError {
    #[error(transparent)]
    Invalid(#[from] RuleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone, Debug)]
pub struct RuleBook {
    store: Store,
    cache: Arc<RwLock<(Instant, Arc<Vec<Rule>>)>>,
}

impl RuleBook {
    /// Loads the stored rules, seeding the defaults when there are none yet.
    pub async fn load(store: Store) -> Result<Self, RuleBookError> {
        if store.rules().await?.is_empty() {
            for rule in parse_rules_yaml(DEFAULT_RULES)? {
                let definition = serde_json::to_value(&rule.spec).map_err(corrupt)?;
                store
                    .insert_rule(&rule.spec.name, &definition, rule.spec.enabled)
                    .await?;
            }
        }
        let rules = stored(&store).await?;
        Ok(Self {
            store,
            cache: Arc::new(RwLock::new((Instant::now(), Arc::new(rules)))),
        })
    }

    /// The rules in evaluation order, refreshed from the database when the copy is stale.
    pub async fn current(&self) -> Result<Arc<Vec<Rule>>, RuleBookError> {
        {
            let cache = self.cache.read().await;
            if cache.0.elapsed() < REFRESH {
                return Ok(cache.1.clone());
            }
        }
        self.reload().await
    }

    async fn reload(&self) -> Result<Arc<Vec<Rule>>, RuleBookError> {
        let rules = Arc::new(stored(&self.store).await?);
        *self.cache.write().await = (Instant::now(), rules.clone());
        Ok(rules)
    }

    /// Checks and stores a new rule (JSON as the admin sent it).
    pub async fn create(&self, json: &[u8]) -> Result<StoredRule, RuleBookError> {
        let rule = parse_rule(json)?;
        self.check_intents(&rule).await?;
        let stored = self
            .store
            .insert_rule(&rule.spec.name, &spec_json(&rule.spec)?, rule.spec.enabled)
            .await?;
        self.reload().await?;
        Ok(stored)
    }

    pub async fn replace(&self, id: &str, json: &[u8]) -> Result<StoredRule, RuleBookError> {
        let rule = parse_rule(json)?;
        self.check_intents(&rule).await?;
        let stored = self
            .store
            .update_rule(
                id,
                &rule.spec.name,
                &spec_json(&rule.spec)?,
                rule.spec.enabled,
            )
            .await?;
        self.reload().await?;
        Ok(stored)
    }

    /// A rule may test only for intents the stored knowledge base has (any, while it has none).
    async fn check_intents(&self, rule: &Rule) -> Result<(), RuleBookError> {
        let intents = self.store.intent_names().await?;
        if !intents.is_empty() {
            rule.check_intents(|name| intents.contains(name))?;
        }
        Ok(())
    }

    pub async fn delete(&self, id: &str) -> Result<(), RuleBookError> {
        self.store.delete_rule(id).await?;
        self.reload().await?;
        Ok(())
    }
}

fn spec_json(spec: &RuleSpec) -> Result<serde_json::Value, RuleBookError> {
    serde_json::to_value(spec).map_err(corrupt)
}

fn corrupt(e: serde_json::Error) -> RuleBookError {
    RuleBookError::Store(StoreError::Corrupt(format!("rule does not serialise: {e}")))
}

/// The stored rules in evaluation order, as they are (no defaults seeded): for tools such as
/// `kb import` that only read them.
pub async fn stored(store: &Store) -> Result<Vec<Rule>, RuleBookError> {
    checked(&store.rules().await?)
}

/// Stored rules were checked when saved; one that no longer parses (a newer binary's rule
/// read by an older one) is reported rather than skipped.
fn checked(stored: &[StoredRule]) -> Result<Vec<Rule>, RuleBookError> {
    stored
        .iter()
        .map(|s| {
            let json = serde_json::to_vec(&s.definition).map_err(corrupt)?;
            parse_rule(&json).map_err(|e| {
                RuleBookError::Store(StoreError::Corrupt(format!(
                    "stored rule `{}`: {e}",
                    s.name
                )))
            })
        })
        .collect()
}
