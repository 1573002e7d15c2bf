//! The lexical half of retrieval: a tantivy index of the passages, searched with BM25 over
//! English-stemmed title and text. Queries are visitor text, not query syntax: they are
//! tokenised with the index's own analyser and every term is an optional clause, so quotes,
//! colons or a stray `AND` in a message can never make a search fail.
//!
//! On disk the index outlives the process and is brought up to date at each build: every
//! entry holds its passage's id and a hash of its title and text, so only passages added,
//! changed or removed since are indexed or deleted. An index that cannot be read, or was
//! written with another schema, is rebuilt; one that cannot be written (a read-only folder,
//! another process holding its lock) gives way to an index in RAM, like the cache: the
//! server searches either way.

use std::collections::HashMap;
use std::path::Path;

use tantivy::collector::{DocSetCollector, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term, doc};

use super::Passage;
use crate::ai::AiError;

/// Matches in a title count this much more than matches in the text.
const TITLE_BOOST: f32 = 2.0;
/// Memory the writer may buffer before flushing a segment (tantivy's minimum is 15 MB).
const WRITER_HEAP: usize = 20_000_000;

/// What a build did to the index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexSync {
    /// Passages (re)indexed: new, or changed since the index was written.
    pub indexed: usize,
    /// Entries deleted: passages changed or gone.
    pub deleted: usize,
    /// The index on disk was unreadable or of another schema, and was written anew.
    pub rebuilt: bool,
    /// The index is in RAM (asked for, or because the folder could not be written).
    pub in_ram: bool,
}

pub(super) struct Bm25 {
    reader: IndexReader,
    analyzer: TextAnalyzer,
    fields: Fields,
    sync: IndexSync,
}

#[derive(Clone, Copy)]
struct Fields {
    title: Field,
    text: Field,
    /// The passage's id, indexed whole so that its entry can be deleted by it.
    id: Field,
    /// [`content_key`] of the passage when it was indexed.
    key: Field,
}

fn schema() -> (Schema, Fields) {
    let mut schema = Schema::builder();
    let stemmed = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("en_stem")
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        title: schema.add_text_field("title", stemmed.clone()),
        text: schema.add_text_field("text", stemmed),
        id: schema.add_text_field("passage_id", STRING | STORED),
        key: schema.add_text_field("content_key", STRING | STORED),
    };
    (schema.build(), fields)
}

/// What the index holds of a passage: an entry is replaced exactly when this changes.
fn content_key(passage: &Passage) -> String {
    super::hex_digest(&[passage.title.as_bytes(), passage.text.as_bytes()])
}

fn index_error(e: tantivy::TantivyError) -> AiError {
    AiError::Index(Box::new(e))
}

fn io_error(dir: &Path) -> impl FnOnce(std::io::Error) -> AiError {
    let path = dir.to_owned();
    move |source| AiError::IndexIo { path, source }
}

impl Bm25 {
    /// Indexes `passages` in RAM, or brings the index in `dir` up to date with them.
    pub(super) fn build(passages: &[Passage], dir: Option<&Path>) -> Result<Self, AiError> {
        let Some(dir) = dir else {
            return Self::in_ram(passages);
        };
        match Self::on_disk(passages, dir) {
            Ok(bm25) => Ok(bm25),
            Err(e) => {
                tracing::warn!(error = ?e, dir = %dir.display(), "cannot keep the search index on disk; it is built in RAM, again at the next start");
                Self::in_ram(passages)
            }
        }
    }

    fn in_ram(passages: &[Passage]) -> Result<Self, AiError> {
        let (schema, fields) = schema();
        let index = Index::create_in_ram(schema);
        let sync = write(&index, fields, passages, &HashMap::new())?;
        Self::open(
            &index,
            fields,
            IndexSync {
                in_ram: true,
                ..sync
            },
        )
    }

    fn on_disk(passages: &[Passage], dir: &Path) -> Result<Self, AiError> {
        let (schema, fields) = schema();
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let existing = match Index::open_in_dir(dir) {
            Ok(index) if index.schema() == schema => Some(index),
            Ok(_) => {
                tracing::warn!(dir = %dir.display(), "the search index on disk has another schema; rebuilding it");
                None
            }
            Err(e @ tantivy::TantivyError::OpenDirectoryError(_)) => return Err(index_error(e)),
            Err(e) => {
                if is_empty(dir)? {
                    tracing::info!(dir = %dir.display(), "creating the search index");
                } else {
                    tracing::warn!(error = ?e, dir = %dir.display(), "the search index on disk is unreadable; rebuilding it");
                }
                None
            }
        };
        let (index, rebuilt) = match existing {
            Some(index) => (index, false),
            None => {
                let rebuilt = !is_empty(dir)?;
                clear(dir)?;
                (
                    Index::create_in_dir(dir, schema).map_err(index_error)?,
                    rebuilt,
                )
            }
        };
        let indexed = entries(&index, fields)?;
        let sync = write(&index, fields, passages, &indexed)?;
        Self::open(&index, fields, IndexSync { rebuilt, ..sync })
    }

    fn open(index: &Index, fields: Fields, sync: IndexSync) -> Result<Self, AiError> {
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(index_error)?;
        let analyzer = index
            .tokenizer_for_field(fields.text)
            .map_err(index_error)?;
        Ok(Self {
            reader,
            analyzer,
            fields,
            sync,
        })
    }

    /// What the build did to the index.
    pub(super) fn sync(&self) -> IndexSync {
        self.sync
    }

    /// The best `limit` passages for `query` as `(passage id, BM25 score)`, best first.
    pub(super) fn search(&self, query: &str, limit: usize) -> Result<Vec<(String, f32)>, AiError> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(query);
        let mut words = Vec::new();
        while let Some(token) = stream.next() {
            if !words.contains(&token.text) {
                words.push(token.text.clone());
            }
        }
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let Fields {
            title, text, id, ..
        } = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(words.len() * 2);
        for word in &words {
            let in_title = TermQuery::new(
                Term::from_field_text(title, word),
                IndexRecordOption::WithFreqs,
            );
            let in_text = TermQuery::new(
                Term::from_field_text(text, word),
                IndexRecordOption::WithFreqs,
            );
            clauses.push((
                Occur::Should,
                Box::new(BoostQuery::new(Box::new(in_title), TITLE_BOOST)),
            ));
            clauses.push((Occur::Should, Box::new(in_text)));
        }
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&BooleanQuery::new(clauses), &TopDocs::with_limit(limit))
            .map_err(index_error)?;
        top.into_iter()
            .map(|(score, address)| {
                let doc: TantivyDocument = searcher.doc(address).map_err(index_error)?;
                let passage = doc.get_first(id).and_then(|v| v.as_str()).ok_or_else(|| {
                    AiError::InvalidInput("index entry without passage id".into())
                })?;
                Ok((passage.to_owned(), score))
            })
            .collect()
    }
}

/// Passage id → content key of every entry in the index; an id entered twice (which a
/// build never leaves) maps to an empty key, so that it is replaced.
fn entries(index: &Index, fields: Fields) -> Result<HashMap<String, String>, AiError> {
    let reader = index.reader().map_err(index_error)?;
    let searcher = reader.searcher();
    let mut entries = HashMap::new();
    for address in searcher
        .search(&AllQuery, &DocSetCollector)
        .map_err(index_error)?
    {
        let doc: TantivyDocument = searcher.doc(address).map_err(index_error)?;
        let text = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let (Some(id), key) = (text(fields.id), text(fields.key).unwrap_or_default()) else {
            continue;
        };
        let twice = entries.contains_key(&id);
        entries.insert(id, if twice { String::new() } else { key });
    }
    Ok(entries)
}

/// Deletes the entries of passages changed or gone, adds those of passages new or changed,
/// and commits if anything changed. An entry without an id cannot be matched by any passage;
/// a build never writes one.
fn write(
    index: &Index,
    fields: Fields,
    passages: &[Passage],
    indexed: &HashMap<String, String>,
) -> Result<IndexSync, AiError> {
    let wanted: HashMap<&str, String> = passages
        .iter()
        .map(|p| (p.id.as_str(), content_key(p)))
        .collect();
    let mut sync = IndexSync::default();
    let mut writer: IndexWriter = index
        .writer_with_num_threads(1, WRITER_HEAP)
        .map_err(index_error)?;
    for (id, key) in indexed {
        if wanted.get(id.as_str()) != Some(key) {
            writer.delete_term(Term::from_field_text(fields.id, id));
            sync.deleted += 1;
        }
    }
    // Deletions only touch entries added before them, so a changed passage's new entry stays.
    for p in passages {
        let key = &wanted[p.id.as_str()];
        if indexed.get(&p.id) == Some(key) {
            continue;
        }
        writer
            .add_document(doc!(
                fields.title => p.title.as_str(),
                fields.text => p.text.as_str(),
                fields.id => p.id.as_str(),
                fields.key => key.as_str(),
            ))
            .map_err(index_error)?;
        sync.indexed += 1;
    }
    if sync.indexed + sync.deleted > 0 {
        writer.commit().map_err(index_error)?;
    }
    Ok(sync)
}

fn is_empty(dir: &Path) -> Result<bool, AiError> {
    Ok(std::fs::read_dir(dir)
        .map_err(io_error(dir))?
        .next()
        .is_none())
}

/// Empties `dir` for a new index, but only if what is there looks like an index (it has
/// tantivy's `meta.json` or `.managed.json`): a folder of something else is left alone and
/// the index goes to RAM.
fn clear(dir: &Path) -> Result<(), AiError> {
    if is_empty(dir)? {
        return Ok(());
    }
    if !dir.join("meta.json").exists() && !dir.join(".managed.json").exists() {
        return Err(AiError::InvalidInput(format!(
            "{} holds files that are not a search index; not touching them",
            dir.display()
        )));
    }
    std::fs::remove_dir_all(dir).map_err(io_error(dir))?;
    std::fs::create_dir_all(dir).map_err(io_error(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(id: &str, title: &str, text: &str) -> Passage {
        Passage {
            id: id.into(),
            title: title.into(),
            text: text.into(),
            link: None,
        }
    }

    fn corpus() -> Vec<Passage> {
        vec![
            passage("refund#0", "Refunds", "Ask for a refund within 30 days."),
            passage(
                "lost#0",
                "Lost items",
                "Report a lost umbrella from the trip page.",
            ),
            passage(
                "fares#0",
                "Fares",
                "Surge pricing raises fares at busy hours.",
            ),
        ]
    }

    fn ids(bm25: &Bm25, query: &str) -> Vec<String> {
        bm25.search(query, 10)
            .expect("searches")
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    #[test]
    fn the_index_on_disk_writes_only_what_changed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("index");
        let first = Bm25::build(&corpus(), Some(&path)).expect("builds");
        assert_eq!(
            first.sync(),
            IndexSync {
                indexed: 3,
                ..IndexSync::default()
            }
        );
        drop(first);
        let same = Bm25::build(&corpus(), Some(&path)).expect("builds");
        assert_eq!(same.sync(), IndexSync::default(), "nothing changed");
        drop(same);

        let mut changed = corpus();
        changed[1].text = "Report a lost wallet from the trip page.".into();
        changed.pop();
        changed.push(passage("payouts#0", "Payouts", "Drivers are paid weekly."));
        let bm25 = Bm25::build(&changed, Some(&path)).expect("builds");
        assert_eq!(
            bm25.sync(),
            IndexSync {
                indexed: 2,
                deleted: 2,
                ..IndexSync::default()
            },
            "the changed and the new passage indexed, the changed and the removed one deleted"
        );
        assert_eq!(ids(&bm25, "wallet"), ["lost#0"]);
        assert!(ids(&bm25, "umbrella").is_empty(), "the old text is gone");
        assert!(
            ids(&bm25, "surge").is_empty(),
            "the removed passage is gone"
        );
        assert_eq!(ids(&bm25, "paid weekly"), ["payouts#0"]);
        assert_eq!(ids(&bm25, "refund"), ["refund#0"], "untouched entries stay");
    }

    #[test]
    fn an_unreadable_index_or_one_of_another_schema_is_rebuilt() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("index");
        drop(Bm25::build(&corpus(), Some(&path)).expect("builds"));
        std::fs::write(path.join("meta.json"), "not an index").expect("writes");
        let rebuilt = Bm25::build(&corpus(), Some(&path)).expect("builds");
        assert_eq!(
            rebuilt.sync(),
            IndexSync {
                indexed: 3,
                rebuilt: true,
                ..IndexSync::default()
            }
        );
        assert_eq!(ids(&rebuilt, "refund"), ["refund#0"]);
        drop(rebuilt);

        let other = tempfile::tempdir().expect("temp dir");
        let mut schema = Schema::builder();
        schema.add_u64_field("position", STORED);
        Index::create_in_dir(other.path(), schema.build()).expect("creates");
        let bm25 = Bm25::build(&corpus(), Some(other.path())).expect("builds");
        assert!(
            bm25.sync().rebuilt && !bm25.sync().in_ram,
            "{:?}",
            bm25.sync()
        );
        assert_eq!(ids(&bm25, "umbrella"), ["lost#0"]);
    }

    #[test]
    fn a_folder_that_cannot_hold_the_index_gives_way_to_ram() {
        let blocker = tempfile::NamedTempFile::new().expect("a temporary file");
        // No folder can be made under a regular file, whoever the process runs as.
        let bm25 = Bm25::build(&corpus(), Some(&blocker.path().join("index"))).expect("builds");
        assert!(bm25.sync().in_ram);
        assert_eq!(ids(&bm25, "refund"), ["refund#0"]);

        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("notes.txt"), "mine").expect("writes");
        let bm25 = Bm25::build(&corpus(), Some(dir.path())).expect("builds");
        assert!(
            bm25.sync().in_ram,
            "a folder of something else is not emptied"
        );
        assert!(dir.path().join("notes.txt").exists());
    }
}
