use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a knowledge-base folder could not be read. `Invalid` lists every problem found, so an
/// editor can fix them all in one pass.
#[derive(Debug, thiserror::Error)]
pub enum KbError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("the knowledge base breaks its rules:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// One help article: front matter plus a Markdown body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Article {
    pub id: String,
    pub title: String,
    pub tags: Vec<String>,
    pub intents: Vec<String>,
    pub locale: String,
    /// The Markdown after the front matter, `#` title included.
    pub body: String,
}

/// A `##` section of an article: the unit that is indexed, embedded and quoted in answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// The `##` heading, or the article title for the text before the first heading.
    pub heading: String,
    pub text: String,
}

impl Article {
    /// What breaks the rules an article keeps on its own: sections enough to answer from, and
    /// intents that exist (`has_intent`). Empty when it is fine.
    pub fn problems(&self, has_intent: impl Fn(&str) -> bool) -> Vec<String> {
        let mut problems = Vec::new();
        let headings = self.body.lines().filter(|l| l.starts_with("## ")).count();
        if headings < 2 {
            problems.push(format!(
                "article `{}` has {headings} `##` sections; at least 2 are needed",
                self.id
            ));
        }
        for intent in &self.intents {
            if !has_intent(intent) {
                problems.push(format!(
                    "article `{}` lists intent `{intent}`, which does not exist",
                    self.id
                ));
            }
        }
        problems
    }

    /// The article's sections in order. Text between the `#` title and the first `##` heading
    /// (the introduction) is a section of its own under the article's title when not empty.
    pub fn sections(&self) -> Vec<Section> {
        let mut sections = Vec::new();
        let mut heading = self.title.clone();
        let mut text = String::new();
        for line in self.body.lines() {
            if let Some(h) = line.strip_prefix("## ") {
                push_section(&mut sections, &heading, &text);
                heading = h.trim().to_owned();
                text.clear();
            } else if line.starts_with("# ") && sections.is_empty() && text.trim().is_empty() {
                continue;
            } else {
                text.push_str(line);
                text.push('\n');
            }
        }
        push_section(&mut sections, &heading, &text);
        sections
    }
}

fn push_section(sections: &mut Vec<Section>, heading: &str, text: &str) {
    let text = text.trim();
    if !text.is_empty() {
        sections.push(Section {
            heading: heading.to_owned(),
            text: text.to_owned(),
        });
    }
}

/// An intent: what a visitor wants, with the utterances the classifier learns it from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub examples: Vec<String>,
    /// A direct reply for when the intent is recognised with confidence.
    #[serde(default)]
    pub answer: Option<String>,
    /// Id of the article offered as the source.
    #[serde(default)]
    pub article: Option<String>,
    /// Hand the conversation to a human as soon as the intent is recognised.
    #[serde(default)]
    pub escalate: bool,
    /// The agent skill that handles the conversation when it is escalated.
    #[serde(default)]
    pub skill: Option<String>,
}

impl Intent {
    /// What breaks the rules an intent keeps on its own: examples to learn from, none blank,
    /// and an article that exists (`has_article`). Empty when it is fine.
    pub fn problems(&self, has_article: impl Fn(&str) -> bool) -> Vec<String> {
        let mut problems = Vec::new();
        if self.examples.is_empty() {
            problems.push(format!("intent `{}` has no examples", self.name));
        }
        if self.examples.iter().any(|e| e.trim().is_empty()) {
            problems.push(format!("intent `{}` has a blank example", self.name));
        }
        if let Some(article) = &self.article
            && !has_article(article)
        {
            problems.push(format!(
                "intent `{}` names article `{article}`, which does not exist",
                self.name
            ));
        }
        problems
    }
}

/// Examples that differ only in case or surrounding spaces are the same example: one text
/// may belong to one intent only.
pub fn example_key(example: &str) -> String {
    example.trim().to_lowercase()
}

/// A prompt card offered to the coach of a live session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoachingCard {
    pub id: String,
    pub title: String,
    pub topics: Vec<String>,
    pub when: String,
    pub prompt: String,
    pub tips: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IntentsFile {
    intents: Vec<Intent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardsFile {
    cards: Vec<CoachingCard>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontMatter {
    id: String,
    title: String,
    tags: Vec<String>,
    intents: Vec<String>,
    locale: String,
}

/// A whole knowledge base, checked against the rules of `knowledge-base/README.md`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KnowledgeBase {
    /// Sorted by id.
    pub articles: Vec<Article>,
    pub intents: Vec<Intent>,
    pub cards: Vec<CoachingCard>,
}

impl KnowledgeBase {
    /// The knowledge base that ships with Switchboard, relative to the repository root.
    pub const DEFAULT_DIR: &'static str = "knowledge-base";

    /// Reads `dir/articles/*.md`, `dir/intents.yaml` and, when present, `dir/coaching-cards.yaml`.
    pub fn read(dir: impl AsRef<Path>) -> Result<Self, KbError> {
        let dir = dir.as_ref();
        let articles_dir = dir.join("articles");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&articles_dir)
            .map_err(|source| io(&articles_dir, source))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .collect();
        paths.sort();
        let mut articles = Vec::with_capacity(paths.len());
        for path in &paths {
            let text = read(path)?;
            articles.push(parse_article(&text).map_err(|message| KbError::Parse {
                path: path.clone(),
                message,
            })?);
        }
        let intents_path = dir.join("intents.yaml");
        let intents: IntentsFile = parse_yaml(&intents_path, &read(&intents_path)?)?;
        let cards_path = dir.join("coaching-cards.yaml");
        let cards = if cards_path.exists() {
            parse_yaml::<CardsFile>(&cards_path, &read(&cards_path)?)?.cards
        } else {
            Vec::new()
        };
        let kb = Self {
            articles,
            intents: intents.intents,
            cards,
        };
        let file_ids: Vec<String> = paths
            .iter()
            .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_owned))
            .collect();
        kb.check(&file_ids)?;
        Ok(kb)
    }

    /// `(text, intent name)` for every example utterance, intents by name: the classifier's
    /// training data, the same for the same content wherever it was read from.
    pub fn intent_examples(&self) -> Vec<(String, String)> {
        let mut intents: Vec<&Intent> = self.intents.iter().collect();
        intents.sort_by(|a, b| a.name.cmp(&b.name));
        intents
            .into_iter()
            .flat_map(|i| i.examples.iter().map(|e| (e.clone(), i.name.clone())))
            .collect()
    }

    pub fn intent(&self, name: &str) -> Option<&Intent> {
        self.intents.iter().find(|i| i.name == name)
    }

    fn check(&self, file_ids: &[String]) -> Result<(), KbError> {
        let mut problems = Vec::new();
        let mut article_ids = BTreeSet::new();
        for (article, file_id) in self.articles.iter().zip(file_ids) {
            if !article_ids.insert(article.id.as_str()) {
                problems.push(format!("article id `{}` is used twice", article.id));
            }
            if &article.id != file_id {
                problems.push(format!(
                    "article `{}` is in `{file_id}.md`: the file name must be the id",
                    article.id
                ));
            }
        }
        let mut intent_names = BTreeSet::new();
        let mut example_owner: BTreeMap<String, &str> = BTreeMap::new();
        for intent in &self.intents {
            if !intent_names.insert(intent.name.as_str()) {
                problems.push(format!("intent `{}` is defined twice", intent.name));
            }
            problems.extend(intent.problems(|id| article_ids.contains(id)));
            for example in &intent.examples {
                if let Some(owner) = example_owner.insert(example_key(example), &intent.name) {
                    problems.push(format!(
                        "example \"{example}\" appears under `{owner}` and `{}`",
                        intent.name
                    ));
                }
            }
        }
        for article in &self.articles {
            problems.extend(article.problems(|name| intent_names.contains(name)));
        }
        let mut card_ids = BTreeSet::new();
        for card in &self.cards {
            if !card_ids.insert(card.id.as_str()) {
                problems.push(format!("coaching card id `{}` is used twice", card.id));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(KbError::Invalid(problems))
        }
    }
}

fn parse_article(text: &str) -> Result<Article, String> {
    let rest = text
        .strip_prefix("---\n")
        .ok_or("the file must start with `---` front matter")?;
    let end = rest
        .find("\n---\n")
        .ok_or("the front matter has no closing `---`")?;
    let front: FrontMatter =
        serde_yaml_ng::from_str(&rest[..end]).map_err(|e| format!("front matter: {e}"))?;
    Ok(Article {
        id: front.id,
        title: front.title,
        tags: front.tags,
        intents: front.intents,
        locale: front.locale,
        body: rest[end + 5..].trim().to_owned(),
    })
}

fn parse_yaml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, KbError> {
    serde_yaml_ng::from_str(text).map_err(|e| KbError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn read(path: &Path) -> Result<String, KbError> {
    std::fs::read_to_string(path).map_err(|source| io(path, source))
}

fn io(path: &Path, source: std::io::Error) -> KbError {
    KbError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> KnowledgeBase {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(KnowledgeBase::DEFAULT_DIR);
        KnowledgeBase::read(dir).expect("the shipped knowledge base keeps its rules")
    }

    #[test]
    fn the_shipped_knowledge_base_is_complete() {
        let kb = shipped();
        assert!(kb.articles.len() >= 40, "{} articles", kb.articles.len());
        assert!(kb.intents.len() >= 25, "{} intents", kb.intents.len());
        assert!(kb.intents.iter().all(|i| i.examples.len() >= 15));
        let human = kb.intent("human_agent").expect("human_agent exists");
        assert!(human.escalate);
        assert!(kb.cards.len() >= 10);
        assert!(kb.articles.iter().all(|a| a.sections().len() >= 2));
    }

    #[test]
    fn sections_split_at_second_level_headings() {
        let article = parse_article(
            "---\nid: a\ntitle: Refunds\ntags: []\nintents: []\nlocale: en\n---\n# Refunds\n\nIntro line.\n\n## When\nWithin 30 days.\n\n## How\nOpen **Trips**.\n",
        )
        .expect("valid article");
        let sections = article.sections();
        let headings: Vec<&str> = sections.iter().map(|s| s.heading.as_str()).collect();
        assert_eq!(headings, ["Refunds", "When", "How"]);
        assert_eq!(sections[0].text, "Intro line.");
        assert_eq!(sections[2].text, "Open **Trips**.");
    }

    #[test]
    fn a_broken_folder_names_every_problem() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("articles")).expect("mkdir");
        std::fs::write(
            dir.path().join("articles/refunds.md"),
            "---\nid: refund\ntitle: R\ntags: []\nintents: [ghost]\nlocale: en\n---\n# R\n## One\nx\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("intents.yaml"),
            "intents:\n  - name: a\n    article: missing\n    examples: [\"hi\"]\n  - name: b\n    examples: [\"Hi \"]\n",
        )
        .expect("write");
        let err = KnowledgeBase::read(dir.path()).expect_err("rules are broken");
        let KbError::Invalid(problems) = &err else {
            panic!("expected Invalid, got {err}");
        };
        let text = problems.join("\n");
        for needle in [
            "file name must be the id",
            "1 `##` sections",
            "article `missing`",
            "under `a` and `b`",
            "intent `ghost`",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from {text}");
        }
    }

    #[test]
    fn unknown_fields_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("articles")).expect("mkdir");
        std::fs::write(
            dir.path().join("intents.yaml"),
            "intents:\n  - name: a\n    exampels: [\"hi\"]\n",
        )
        .expect("write");
        let err = KnowledgeBase::read(dir.path()).expect_err("typo in a field name");
        assert!(matches!(err, KbError::Parse { .. }));
        assert!(err.to_string().contains("intents.yaml"), "{err}");
    }
}
