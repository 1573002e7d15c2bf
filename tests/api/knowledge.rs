//! The knowledge base in the database: `kb import` adds, changes and removes entries to match
//! a folder, reports what it did, and what is stored reads back as imported.

use std::process::Command;

use switchboard::kb::KnowledgeBase;
use switchboard::store::KbImport;

use switchboard::ai::retrieval::IndexSync;
use switchboard::automation::RuleBook;
use switchboard::knowledge::{self, KnowledgeError};
use switchboard::startup::load_engine;
use switchboard::store::Store;

use crate::helpers::{Backend, TestDatabase, spawn_app, test_settings};
use crate::on_both_backends;

on_both_backends!(
    importing_matches_the_folder_and_reports_changes,
    the_cli_imports_a_folder,
    a_changed_article_re_embeds_only_its_passages,
    an_import_keeps_the_intents_rules_test_for,
);

fn shipped() -> KnowledgeBase {
    KnowledgeBase::read(concat!(env!("CARGO_MANIFEST_DIR"), "/knowledge-base"))
        .expect("the shipped knowledge base reads")
}

fn by_name(mut kb: KnowledgeBase) -> KnowledgeBase {
    kb.intents.sort_by(|a, b| a.name.cmp(&b.name));
    kb.articles.sort_by(|a, b| a.id.cmp(&b.id));
    kb.cards.sort_by(|a, b| a.id.cmp(&b.id));
    kb
}

async fn importing_matches_the_folder_and_reports_changes(backend: Backend) {
    let app = spawn_app(backend).await;
    let store = app.state.chat.store();
    assert_eq!(store.knowledge().await.expect("reads"), None);
    let revision = async || store.knowledge_revision().await.expect("a revision");
    assert_eq!(revision().await, 0, "nothing imported yet");

    let kb = shipped();
    let mut seen = Vec::new();
    let first = store
        .import_knowledge(&kb, |done, total| seen.push((done, total)))
        .await
        .expect("imports");
    let total = kb.articles.len() + kb.intents.len() + kb.cards.len();
    assert!(
        !kb.cards.is_empty(),
        "the shipped folder has coaching cards"
    );
    assert_eq!(
        first,
        KbImport {
            articles_added: kb.articles.len(),
            intents_added: kb.intents.len(),
            cards_added: kb.cards.len(),
            ..KbImport::default()
        }
    );
    assert_eq!(
        seen.last(),
        Some(&(total, total)),
        "progress reaches the end"
    );
    let stored = store.knowledge().await.expect("reads").expect("imported");
    assert_eq!(by_name(stored), by_name(kb.clone()));
    assert_eq!(revision().await, 1, "the import raised the revision");

    let again = store
        .import_knowledge(&kb, |_, _| {})
        .await
        .expect("imports");
    assert_eq!(
        again,
        KbImport {
            unchanged: total,
            ..KbImport::default()
        },
        "an unchanged folder changes nothing"
    );
    assert_eq!(revision().await, 1, "nor the revision");

    let mut edited = kb.clone();
    edited.articles[0].title.push_str(" (updated)");
    let dropped = edited.intents.remove(0).name;
    edited.intents[0]
        .examples
        .push("a brand new way to say it".into());
    edited.cards[0].tips.push("Thank them for staying.".into());
    let card_gone = edited.cards.pop().expect("cards").id;
    let changed = store
        .import_knowledge(&edited, |_, _| {})
        .await
        .expect("imports");
    assert_eq!(
        changed,
        KbImport {
            articles_updated: 1,
            intents_updated: 1,
            intents_removed: 1,
            cards_updated: 1,
            cards_removed: 1,
            unchanged: total - 5,
            ..KbImport::default()
        }
    );
    let stored = store.knowledge().await.expect("reads").expect("imported");
    assert!(stored.intent(&dropped).is_none());
    assert!(stored.cards.iter().all(|c| c.id != card_gone));
    assert_eq!(by_name(stored), by_name(edited));
    assert_eq!(revision().await, 2);
}

async fn the_cli_imports_a_folder(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "kb",
            "import",
            concat!(env!("CARGO_MANIFEST_DIR"), "/knowledge-base"),
        ])
        .env("DATABASE_URL", &db.url)
        .env("SWITCHBOARD_LOG__LEVEL", "warn")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let kb = shipped();
    assert!(
        stdout.contains(&format!("articles: {} added", kb.articles.len()))
            && stdout.contains(&format!("intents: {} added", kb.intents.len()))
            && stdout.contains(&format!("coaching cards: {} added", kb.cards.len()))
            && stdout.contains("knowledge base revision 1: running servers apply it"),
        "{stdout}"
    );

    let missing = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["kb", "import", "/nonexistent/knowledge-base"])
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("the binary runs");
    assert!(!missing.status.success(), "a missing folder is an error");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

/// `kb import` (`knowledge::import`) will not remove an intent an escalation rule tests for:
/// refused whole, naming every rule and intent, and nothing changes; removing an intent no
/// rule names goes through.
async fn an_import_keeps_the_intents_rules_test_for(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let store = Store::connect(&db.url, 4).await.expect("connect");
    store.migrate().await.expect("migrate");
    let kb = shipped();
    store
        .import_knowledge(&kb, |_, _| {})
        .await
        .expect("imports");
    let rules = RuleBook::load(store.clone())
        .await
        .expect("default rules")
        .current()
        .await
        .expect("rules");
    let revision = store.knowledge_revision().await.expect("a revision");

    let mut without = kb.clone();
    without
        .intents
        .retain(|i| i.name != "human_agent" && i.name != "account_hacked");
    let refused = knowledge::import(&store, &without, &rules, |_, _| {}).await;
    let Err(KnowledgeError::Invalid(problems)) = refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`visitor-asks-for-human`") && p.contains("`human_agent`")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`account-hacked`") && p.contains("`account_hacked`")),
        "{problems:?}"
    );
    let stored = store.intents().await.expect("intents");
    assert_eq!(stored.len(), kb.intents.len(), "nothing was removed");
    assert_eq!(
        store.knowledge_revision().await.expect("a revision"),
        revision,
        "nor the revision raised"
    );

    let unnamed = kb
        .intents
        .iter()
        .map(|i| i.name.clone())
        .find(|name| !rules.iter().any(|r| r.names_intent(name)))
        .expect("an intent no rule tests for");
    let mut smaller = kb.clone();
    smaller.intents.retain(|i| i.name != unnamed);
    let report = knowledge::import(&store, &smaller, &rules, |_, _| {})
        .await
        .expect("imports");
    assert_eq!(report.intents_removed, 1);
    assert!(
        store
            .intents()
            .await
            .expect("intents")
            .iter()
            .all(|i| i.name != unnamed)
    );
}

/// Passage embeddings live in the database by the hash of their text, and the search index
/// on disk: a restart embeds and indexes nothing, a changed article only its own passages, and
/// a removed one leaves no rows or entries behind.
async fn a_changed_article_re_embeds_only_its_passages(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let index = tempfile::tempdir().expect("a folder for the index");
    let mut settings = test_settings(&db.url);
    settings.ai.enabled = true;
    settings.ai.index_dir = index.path().join("index");
    let first = load_engine(&settings).await.expect("the engine loads");
    let all = first.load_stats();
    assert!(all.passages > 40, "{all:?}");
    assert_eq!(
        all.embedded, all.passages,
        "a fresh database embeds everything"
    );
    assert_eq!(
        first.index_sync(),
        IndexSync {
            indexed: all.passages,
            ..IndexSync::default()
        }
    );
    drop(first);

    let again = load_engine(&settings).await.expect("the engine loads");
    assert_eq!(
        again.load_stats().embedded,
        0,
        "nothing changed, nothing embedded"
    );
    assert_eq!(again.index_sync(), IndexSync::default(), "nor indexed");
    drop(again);

    let store = Store::connect(&db.url, 1).await.expect("connects");
    let mut kb = store.knowledge().await.expect("reads").expect("seeded");
    assert_eq!(
        by_name(kb.clone()).cards,
        by_name(shipped()).cards,
        "the first start seeded the coaching cards too"
    );
    kb.articles[0].title.push_str(" (revised)");
    let revised = kb.articles[0].sections().len();
    let gone = kb.articles.pop().expect("articles");
    let removed = gone.sections().len();
    for intent in &mut kb.intents {
        if intent.article.as_deref() == Some(gone.id.as_str()) {
            intent.article = None;
        }
    }
    store
        .import_knowledge(&kb, |_, _| {})
        .await
        .expect("imports");

    let changed = load_engine(&settings).await.expect("the engine loads");
    assert_eq!(
        changed.load_stats(),
        switchboard::ai::LoadStats {
            passages: all.passages - removed,
            embedded: revised,
        },
        "only the revised article's passages are embedded"
    );
    assert_eq!(
        changed.index_sync(),
        IndexSync {
            indexed: revised,
            deleted: revised + removed,
            ..IndexSync::default()
        },
        "and indexed"
    );
    let answer = changed
        .analyze(&kb.articles[0].title)
        .await
        .expect("analysed");
    assert!(
        answer.passages[0].title.contains("(revised)"),
        "the index on disk serves the revised article: {:?}",
        answer.passages[0]
    );
    let rows = store.passage_embeddings().await.expect("reads");
    assert_eq!(
        rows.len(),
        all.passages - removed,
        "the removed article's rows are gone"
    );
    store.close().await;
}
