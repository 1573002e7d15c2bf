//! Routing: which online agent gets a queued conversation. The choice is pure
//! ([`candidates`]); the assignment itself is the database's conditional claim, so two
//! replicas or two racing requests never give one conversation to two agents.

use crate::chat::Chat;
use crate::domain::{AgentId, Conversation, ConversationId};
use crate::store::{AgentLoad, StoreError};

/// Agents who may take a conversation needing `skill`, best first: free capacity and the
/// skill required; least loaded (by share of capacity), then longest idle.
pub fn candidates(loads: &[AgentLoad], skill: Option<&str>) -> Vec<AgentId> {
    let mut fit: Vec<&AgentLoad> = loads
        .iter()
        .filter(|a| a.assigned < a.max_concurrent)
        .filter(|a| skill.is_none_or(|s| a.skills.iter().any(|k| k == s)))
        .collect();
    fit.sort_by(|a, b| {
        let share = |x: &AgentLoad| x.assigned as f64 / x.max_concurrent as f64;
        share(a)
            .total_cmp(&share(b))
            .then(a.last_assigned_at.cmp(&b.last_assigned_at))
            .then(a.id.cmp(&b.id))
    });
    fit.into_iter().map(|a| a.id).collect()
}

/// Gives a waiting conversation to `agent` through the database's conditional claim, and
/// notes the assignment for the longest-idle tie-break.
pub async fn assign(
    chat: &Chat,
    id: ConversationId,
    agent: AgentId,
) -> Result<Conversation, StoreError> {
    let conversation = chat.claim(id, agent).await?;
    chat.store().touch_assignment(agent).await?;
    Ok(conversation)
}

/// Assigns queued conversations, most urgent first, to the best agents free for them.
/// Returns the assignments made. A conversation nobody can take stays queued.
pub async fn assign_queued(chat: &Chat, limit: i64) -> Result<Vec<Conversation>, StoreError> {
    let mut assigned = Vec::new();
    for waiting in chat.store().queue(limit).await? {
        let loads = chat.store().online_agent_loads().await?;
        if loads.is_empty() {
            break;
        }
        for agent in candidates(&loads, waiting.skill.as_deref()) {
            match assign(chat, waiting.id, agent).await {
                Ok(conversation) => {
                    assigned.push(conversation);
                    break;
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(assigned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(skills: &[&str], max: i64, assigned: i64, last: Option<i64>) -> AgentLoad {
        AgentLoad {
            id: AgentId::new(),
            skills: skills.iter().map(|s| s.to_string()).collect(),
            max_concurrent: max,
            assigned,
            last_assigned_at: last,
        }
    }

    #[test]
    fn skill_and_capacity_filter_then_least_loaded_then_longest_idle() {
        let full = load(&["billing"], 2, 2, None);
        let busy = load(&["billing"], 4, 2, Some(10));
        let idle_long = load(&["billing", "safety"], 4, 1, Some(5));
        let idle_short = load(&["billing"], 4, 1, Some(50));
        let other_skill = load(&["drivers"], 4, 0, None);
        let loads = [
            full.clone(),
            busy.clone(),
            idle_long.clone(),
            idle_short.clone(),
            other_skill.clone(),
        ];
        assert_eq!(
            candidates(&loads, Some("billing")),
            [idle_long.id, idle_short.id, busy.id]
        );
        assert_eq!(candidates(&loads, Some("safety")), [idle_long.id]);
        assert!(candidates(&loads, Some("legal")).is_empty());
        assert_eq!(
            candidates(&loads, None)[0],
            other_skill.id,
            "no skill needed: emptiest first"
        );
    }

    #[test]
    fn never_assigned_counts_as_idle_longest() {
        let fresh = load(&[], 3, 0, None);
        let recent = load(&[], 3, 0, Some(1));
        assert_eq!(
            candidates(&[recent.clone(), fresh.clone()], None),
            [fresh.id, recent.id]
        );
    }

    #[test]
    fn agents_with_no_capacity_are_never_candidates() {
        assert!(candidates(&[load(&[], 0, 0, None)], None).is_empty());
    }
}
