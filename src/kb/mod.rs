//! The knowledge base as content: help articles, intents with example utterances, and coaching
//! cards, read from a folder in the layout of `knowledge-base/README.md`. Reading checks the
//! rules that content keeps (unique ids, intents and articles that refer to each other exist,
//! articles with sections), so a bad folder is refused with every problem named before
//! anything is imported.

mod files;

pub use files::{Article, CoachingCard, Intent, KbError, KnowledgeBase, Section, example_key};
