//! Entities in a visitor message: ride, order and ticket ids (patterns configurable), emails,
//! phone numbers, money amounts, dates and times (relative ones resolved against a reference
//! time the caller passes in, never the clock), URLs, and names from caller-supplied lists
//! (gazetteers: cities, products; the knowledge base feeds them).
//!
//! Every entity carries its byte offsets into the input and a normalised value. Where
//! candidates overlap, the most specific kind wins (URL, email, id, money, date-time, date,
//! phone, time, gazetteer, in that order), then the longest, then the leftmost; the result is
//! sorted and never overlaps.

mod dates;
mod patterns;

use chrono::NaiveDateTime;
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use super::AiError;

/// What an entity is, from the most specific to the least (the order overlaps are settled in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// Value: the URL, with `http://` added to a bare `www.` and the scheme and host lowercased.
    Url,
    /// Value: the address, lowercased.
    Email,
    /// Value: uppercased, with the separator between prefix and number made one `-`
    /// (`order #5521` → `ORDER-5521`); the tag names the pattern.
    Id,
    /// Value: the amount as a plain decimal and the ISO 4217 code, `12.50 EUR`.
    Money,
    /// Value: `YYYY-MM-DDTHH:MM:SS`.
    DateTime,
    /// Value: `YYYY-MM-DD`.
    Date,
    /// Value: `+` and the digits when the country is known (written, or the configured
    /// default), the bare digits otherwise.
    Phone,
    /// A time of day without a date. Value: `HH:MM`.
    Time,
    /// Value: the list's entry as the caller spelt it; the tag names the list.
    Gazetteer,
}

/// One entity found in a text; `text == &input[start..end]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entity {
    pub kind: EntityKind,
    /// The id pattern's or the gazetteer's name.
    pub tag: Option<String>,
    pub text: String,
    pub start: usize,
    pub end: usize,
    pub value: String,
}

/// A named regular expression for ids, e.g. `ride` → `(?i)\bRIDE-[0-9]+\b`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdPattern {
    pub name: String,
    pub pattern: String,
}

/// A named list of names to find (whole words, any case).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gazetteer {
    pub name: String,
    pub entries: Vec<String>,
}

/// What the extractor looks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityConfig {
    pub id_patterns: Vec<IdPattern>,
    pub gazetteers: Vec<Gazetteer>,
    /// Country calling code for numbers written without one (`44` turns `020 7946 0958` into
    /// `+442079460958`); without it such numbers keep their bare digits.
    pub default_calling_code: Option<u16>,
    /// Whether `03/04/2026` is the 3rd of April (true) or March 4th (false).
    pub day_first: bool,
}

impl Default for EntityConfig {
    /// Ride (`RIDE-12345`, `R-12345`, `trip #123`), order, ticket and booking ids; no
    /// gazetteers; no default calling code; day first.
    fn default() -> Self {
        let id = |name: &str, pattern: &str| IdPattern {
            name: name.into(),
            pattern: pattern.into(),
        };
        Self {
            id_patterns: vec![
                id(
                    "ride",
                    r"(?i)\b(?:(?:ride|trip)(?:-|\s?#\s?)|r-)[0-9]{3,}\b",
                ),
                id("order", r"(?i)\b(?:order(?:-|\s?#?\s?)|ord-|o-)[0-9]{3,}\b"),
                id(
                    "ticket",
                    r"(?i)\b(?:ticket(?:-|\s?#?\s?)|tkt-|tk-)[0-9]{3,}\b",
                ),
                id("booking", r"(?i)\b(?:booking(?:-|\s?#?\s?)|bk-)[0-9]{3,}\b"),
            ],
            gazetteers: Vec::new(),
            default_calling_code: None,
            day_first: true,
        }
    }
}

/// The compiled extractor: build once from an [`EntityConfig`], use from any thread.
#[derive(Clone, Debug)]
pub struct EntityExtractor {
    ids: Vec<(String, Regex)>,
    gazetteers: Vec<(String, Regex, Vec<String>)>,
    default_calling_code: Option<u16>,
    day_first: bool,
}

impl EntityExtractor {
    /// Compiles the id patterns and gazetteers; a pattern that does not compile is an error
    /// naming it.
    pub fn new(config: &EntityConfig) -> Result<Self, AiError> {
        let ids = config
            .id_patterns
            .iter()
            .map(|p| {
                let regex = Regex::new(&p.pattern)
                    .map_err(|e| AiError::InvalidInput(format!("id pattern `{}`: {e}", p.name)))?;
                Ok((p.name.clone(), regex))
            })
            .collect::<Result<_, AiError>>()?;
        let gazetteers = config
            .gazetteers
            .iter()
            .filter_map(|g| gazetteer(g).transpose())
            .collect::<Result<_, AiError>>()?;
        Ok(Self {
            ids,
            gazetteers,
            default_calling_code: config.default_calling_code,
            day_first: config.day_first,
        })
    }

    /// The entities of `text`, sorted by position and not overlapping; relative dates ("two
    /// days ago", "next Monday") are resolved against `reference`, the time the message was
    /// written in the visitor's local time.
    pub fn extract(&self, text: &str, reference: NaiveDateTime) -> Vec<Entity> {
        let mut found = Vec::new();
        for (name, regex) in &self.ids {
            for m in regex.find_iter(text).filter(|m| !m.is_empty()) {
                let value = patterns::normalise_id(m.as_str());
                found.push(entity(text, EntityKind::Id, Some(name), m.range(), value));
            }
        }
        patterns::urls(text, &mut found);
        patterns::emails(text, &mut found);
        patterns::money(text, &mut found);
        patterns::phones(text, self.default_calling_code, &mut found);
        dates::dates(text, reference, self.day_first, &mut found);
        for (name, regex, entries) in &self.gazetteers {
            for m in regex.find_iter(text).filter(|m| !m.is_empty()) {
                let value = entries
                    .iter()
                    .find(|e| e.to_lowercase() == m.as_str().to_lowercase())
                    .map_or_else(|| m.as_str().to_owned(), Clone::clone);
                let kind = EntityKind::Gazetteer;
                found.push(entity(text, kind, Some(name), m.range(), value));
            }
        }
        resolve(found)
    }
}

/// One alternation of the list's entries, longest first, each bounded by word boundaries on
/// the sides where it begins or ends with a word character; `None` for a list with no entries.
fn gazetteer(g: &Gazetteer) -> Result<Option<(String, Regex, Vec<String>)>, AiError> {
    let mut entries: Vec<String> = g
        .entries
        .iter()
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() {
        return Ok(None);
    }
    entries.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    entries.dedup();
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let alternatives: Vec<String> = entries
        .iter()
        .map(|e| {
            let open = if word(e.chars().next()) { r"\b" } else { "" };
            let close = if word(e.chars().next_back()) {
                r"\b"
            } else {
                ""
            };
            format!("{open}{}{close}", regex::escape(e))
        })
        .collect();
    let regex = RegexBuilder::new(&alternatives.join("|"))
        .case_insensitive(true)
        .size_limit(64 << 20)
        .build()
        .map_err(|e| AiError::InvalidInput(format!("gazetteer `{}`: {e}", g.name)))?;
    Ok(Some((g.name.clone(), regex, entries)))
}

fn entity(
    text: &str,
    kind: EntityKind,
    tag: Option<&String>,
    range: std::ops::Range<usize>,
    value: String,
) -> Entity {
    Entity {
        kind,
        tag: tag.cloned(),
        text: text[range.clone()].to_owned(),
        start: range.start,
        end: range.end,
        value,
    }
}

/// Keeps the most specific, then longest, then leftmost of overlapping candidates; returns
/// them sorted by position.
fn resolve(mut candidates: Vec<Entity>) -> Vec<Entity> {
    candidates.sort_by(|a, b| {
        a.kind
            .cmp(&b.kind)
            .then_with(|| (b.end - b.start).cmp(&(a.end - a.start)))
            .then_with(|| a.start.cmp(&b.start))
            .then_with(|| a.tag.cmp(&b.tag))
    });
    let mut kept: Vec<Entity> = Vec::new();
    for c in candidates {
        if kept.iter().all(|k| c.end <= k.start || k.end <= c.start) {
            kept.push(c);
        }
    }
    kept.sort_by_key(|e| (e.start, e.end));
    kept
}

#[cfg(test)]
mod tests;
