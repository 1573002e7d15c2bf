//! Admin changes to the knowledge base's articles and intents: checked, stored (the database is the
//! source of truth), then applied to the running engine, which re-embeds and re-indexes only the
//! passages that changed and retrains the intent head only when the examples changed, so the next
//! visitor message is understood and answered with them. Every replica also follows the stored
//! knowledge base's revision ([`follow`](crate::knowledge::follow)), so a change made through
//! another replica or by `switchboard kb import` reaches it within seconds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::ai::{AiError, Embedding, Engine, KnowledgeUpdate};
use crate::escalation::Rule;
use crate::kb::{Article, Intent, KnowledgeBase, example_key};
use crate::store::{KbImport, Store, StoreError};

/// Longest article id or intent name: ids appear in links and passage ids.
const MAX_ID: usize = 100;
/// Most examples one intent may have.
const MAX_EXAMPLES: usize = 1_000;
/// Longest example, in characters: longer text is past what the embedder reads (256 tokens).
const MAX_EXAMPLE_CHARS: usize = 1_000;
/// The intent head tells intents apart: it needs two at least.
const MIN_INTENTS: usize = 2;
/// How often a replica checks the stored knowledge base's revision.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    /// The change breaks the knowledge base's rules; every problem is named.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("storage failed")]
    Store(#[from] StoreError),
    /// The change is stored, but the running engine could not take it (e.g. overloaded).
    #[error("the AI engine could not take the change")]
    Engine(#[source] AiError),
}

/// Whether `id` may name an article or an intent.
fn id_problem(what: &str, id: &str) -> Option<String> {
    let fine = !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    (!fine).then(|| {
        format!("{what} `{id}` must be 1 to {MAX_ID} lowercase letters, digits, `-` or `_`")
    })
}

/// An article as an admin writes it; the id comes from the path.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArticleInput {
    pub title: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Intents the article serves; each must exist.
    #[serde(default)]
    pub intents: Vec<String>,
    #[serde(default = "english")]
    pub locale: String,
    /// Markdown: an optional `# Title` line, then at least two `##` sections.
    pub body: String,
}

fn english() -> String {
    "en".into()
}

/// Checks and stores the article `id` (new or replacing), then applies it to `engine`.
/// Returns it and whether it is new.
pub async fn put_article(
    store: &Store,
    engine: Option<&Arc<Engine>>,
    id: &str,
    input: ArticleInput,
) -> Result<(Article, bool), KnowledgeError> {
    let article = Article {
        id: id.to_owned(),
        title: input.title.trim().to_owned(),
        tags: input.tags,
        intents: input.intents,
        locale: input.locale,
        body: input.body,
    };
    let mut problems: Vec<String> = id_problem("article id", id).into_iter().collect();
    if article.title.is_empty() {
        problems.push("the title is empty".into());
    }
    let intents = store.intent_names().await?;
    problems.extend(article.problems(|name| intents.contains(name)));
    if !problems.is_empty() {
        return Err(KnowledgeError::Invalid(problems));
    }
    let created = store.put_article(&article).await?;
    if let Some(engine) = engine {
        sync(store, engine).await?;
    }
    Ok((article, created))
}

/// Removes the article `id` from the database and from `engine`.
pub async fn delete_article(
    store: &Store,
    engine: Option<&Arc<Engine>>,
    id: &str,
) -> Result<(), KnowledgeError> {
    store.delete_article(id).await?;
    if let Some(engine) = engine {
        sync(store, engine).await?;
    }
    Ok(())
}

/// An intent as an admin writes it; the name comes from the path.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntentInput {
    #[serde(default)]
    pub description: Option<String>,
    /// What visitors say when they mean this intent: the classifier learns from them.
    pub examples: Vec<String>,
    /// A direct reply for when the intent is recognised with confidence.
    #[serde(default)]
    pub answer: Option<String>,
    /// Id of the article offered as the source; it must exist.
    #[serde(default)]
    pub article: Option<String>,
    /// Hand the conversation to a human as soon as the intent is recognised.
    #[serde(default)]
    pub escalate: bool,
    /// The agent skill that handles the conversation when it is escalated.
    #[serde(default)]
    pub skill: Option<String>,
}

/// Checks and stores the intent `name` (new or replacing), then applies it to `engine`, which
/// retrains its intent head when the examples changed. Returns it and whether it is new.
pub async fn put_intent(
    store: &Store,
    engine: Option<&Arc<Engine>>,
    name: &str,
    input: IntentInput,
) -> Result<(Intent, bool), KnowledgeError> {
    let intent = Intent {
        name: name.to_owned(),
        description: input.description,
        examples: input.examples.iter().map(|e| e.trim().to_owned()).collect(),
        answer: input.answer,
        article: input.article,
        escalate: input.escalate,
        skill: input.skill,
    };
    let mut problems: Vec<String> = id_problem("intent name", name).into_iter().collect();
    if intent.examples.len() > MAX_EXAMPLES {
        problems.push(format!("at most {MAX_EXAMPLES} examples"));
    }
    if intent
        .examples
        .iter()
        .any(|e| e.chars().count() > MAX_EXAMPLE_CHARS)
    {
        problems.push(format!(
            "an example is longer than {MAX_EXAMPLE_CHARS} characters"
        ));
    }
    let articles: HashSet<String> = store.articles().await?.into_iter().map(|a| a.id).collect();
    problems.extend(intent.problems(|id| articles.contains(id)));
    let others = store.intents().await?;
    let mut owners: std::collections::HashMap<String, &str> = others
        .iter()
        .filter(|i| i.name != name)
        .flat_map(|i| i.examples.iter().map(|e| (example_key(e), i.name.as_str())))
        .collect();
    for example in &intent.examples {
        if let Some(owner) = owners.insert(example_key(example), name) {
            let owner = if owner == name { "this intent" } else { owner };
            problems.push(format!(
                "example \"{example}\" is already an example of `{owner}`"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(KnowledgeError::Invalid(problems));
    }
    let created = store.put_intent(&intent).await?;
    if let Some(engine) = engine {
        sync(store, engine).await?;
    }
    Ok((intent, created))
}

/// The problem with removing intent `name` while escalation `rules` test for it, if they do.
fn rules_testing(rules: &[Rule], name: &str) -> Option<String> {
    let testing: Vec<String> = rules
        .iter()
        .filter(|r| r.names_intent(name))
        .map(|r| format!("`{}`", r.name()))
        .collect();
    (!testing.is_empty()).then(|| {
        format!(
            "escalation rules {} test for intent `{name}`: change them first",
            testing.join(", ")
        )
    })
}

/// Makes the stored knowledge base equal to `kb` (see [`Store::import_knowledge`]). Refused,
/// with nothing changed, when it would remove an intent that escalation `rules` test for: the
/// rule would silently never fire again.
pub async fn import(
    store: &Store,
    kb: &KnowledgeBase,
    rules: &[Rule],
    progress: impl FnMut(usize, usize),
) -> Result<KbImport, KnowledgeError> {
    let problems: Vec<String> = store
        .intent_names()
        .await?
        .iter()
        .filter(|name| kb.intent(name).is_none())
        .filter_map(|removed| rules_testing(rules, removed))
        .collect();
    if !problems.is_empty() {
        return Err(KnowledgeError::Invalid(problems));
    }
    Ok(store.import_knowledge(kb, progress).await?)
}

/// Removes the intent `name` from the database and from `engine`. Refused while articles list
/// it or escalation `rules` test for it (the rule would silently never fire again), or when it
/// is one of the last two.
pub async fn delete_intent(
    store: &Store,
    engine: Option<&Arc<Engine>>,
    rules: &[Rule],
    name: &str,
) -> Result<(), KnowledgeError> {
    let intents = store.intents().await?;
    if !intents.iter().any(|i| i.name == name) {
        return Err(StoreError::NotFound("intent").into());
    }
    let mut problems = Vec::new();
    if intents.len() <= MIN_INTENTS {
        problems.push(format!(
            "the bot needs at least {MIN_INTENTS} intents to tell apart"
        ));
    }
    let listing: Vec<String> = store
        .articles()
        .await?
        .into_iter()
        .filter(|a| a.intents.iter().any(|i| i == name))
        .map(|a| format!("`{}`", a.id))
        .collect();
    if !listing.is_empty() {
        problems.push(format!(
            "articles {} list intent `{name}`: take it out of them first",
            listing.join(", ")
        ));
    }
    problems.extend(rules_testing(rules, name));
    if !problems.is_empty() {
        return Err(KnowledgeError::Invalid(problems));
    }
    store.delete_intent(name).await?;
    if let Some(engine) = engine {
        sync(store, engine).await?;
    }
    Ok(())
}

/// Brings `engine` up to the stored knowledge base, then stores the passage embeddings it
/// computed and drops those of passages that are gone. `None` when it was up to date already.
pub async fn sync(
    store: &Store,
    engine: &Arc<Engine>,
) -> Result<Option<KnowledgeUpdate>, KnowledgeError> {
    let turn = engine.update_turn().await;
    let Some(kb) = store.knowledge().await? else {
        return Ok(None);
    };
    let Some(update) = engine
        .apply_knowledge(&turn, &kb)
        .await
        .map_err(KnowledgeError::Engine)?
    else {
        return Ok(None);
    };
    drop(turn);
    tracing::info!(
        embedded = update.embedded.len(),
        indexed = update.index.indexed,
        deleted = update.index.deleted,
        retrained = update.retrained,
        "the engine took the knowledge-base change"
    );
    store_embeddings(
        store,
        update.embedded.clone(),
        update.keys.iter().cloned().collect(),
    )
    .await;
    Ok(Some(update))
}

/// Keeps `engine` up to date with the stored knowledge base for as long as the server runs:
/// every [`FOLLOW_EVERY`] it reads the revision, and applies the knowledge base when the
/// revision moved (and at the first check, for a change made while the engine loaded). A
/// change this replica made itself was applied already and costs nothing more; a failed one
/// is tried again at the next check. Stops when the store is closed.
pub async fn follow(store: Store, engine: Arc<Engine>) {
    let mut applied = None;
    let mut every = tokio::time::interval(FOLLOW_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if store.is_closed() {
            return;
        }
        let revision = match store.knowledge_revision().await {
            Ok(revision) => revision,
            Err(e) => {
                tracing::warn!(error = ?e, "cannot read the knowledge base's revision");
                continue;
            }
        };
        if applied == Some(revision) {
            continue;
        }
        match sync(&store, &engine).await {
            Ok(_) => applied = Some(revision),
            Err(e) => {
                tracing::warn!(error = ?e, revision, "cannot apply the knowledge base's change; trying again");
            }
        }
    }
}

/// Stores `fresh` passage embeddings and drops those whose key is not in `keep`. Like the
/// cache, stored embeddings only save time: a failure is logged, and costs the next start
/// the embedding, never the caller its change.
pub(crate) async fn store_embeddings(
    store: &Store,
    fresh: Vec<(String, Embedding)>,
    keep: HashSet<String>,
) {
    let fresh: Vec<(String, Vec<f32>)> = fresh
        .into_iter()
        .map(|(key, e)| (key, e.as_slice().to_vec()))
        .collect();
    if let Err(e) = store.keep_passage_embeddings(&fresh, &keep).await {
        tracing::warn!(error = ?e, "could not store passage embeddings; they are computed again at the next start");
    }
}
