//! The lexical half of retrieval: a tantivy index of the passages, searched with BM25 over
//! English-stemmed title and text. Queries are visitor text, not query syntax: they are
//! tokenised with the index's own analyser and every term is an optional clause, so quotes,
//! colons or a stray `AND` in a message can never make a search fail.

use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, INDEXED, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term, doc};

use super::Passage;
use crate::ai::AiError;

/// Matches in a title count this much more than matches in the text.
const TITLE_BOOST: f32 = 2.0;
/// Memory the writer may buffer before flushing a segment (tantivy's minimum is 15 MB).
const WRITER_HEAP: usize = 20_000_000;

pub(super) struct Bm25 {
    reader: IndexReader,
    analyzer: TextAnalyzer,
    title: Field,
    text: Field,
    position: Field,
}

fn index_error(e: tantivy::TantivyError) -> AiError {
    AiError::Index(Box::new(e))
}

impl Bm25 {
    /// Indexes `passages` in RAM, or in `dir` (replacing what is there) when given.
    pub(super) fn build(passages: &[Passage], dir: Option<&Path>) -> Result<Self, AiError> {
        let mut schema = Schema::builder();
        let stemmed = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("en_stem")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let title = schema.add_text_field("title", stemmed.clone());
        let text = schema.add_text_field("text", stemmed);
        let position = schema.add_u64_field("position", INDEXED | STORED);
        let schema = schema.build();
        let index = match dir {
            None => Index::create_in_ram(schema),
            Some(dir) => {
                if dir.exists() {
                    std::fs::remove_dir_all(dir).map_err(|source| AiError::ModelIo {
                        path: dir.to_owned(),
                        source,
                    })?;
                }
                std::fs::create_dir_all(dir).map_err(|source| AiError::ModelIo {
                    path: dir.to_owned(),
                    source,
                })?;
                Index::create_in_dir(dir, schema).map_err(index_error)?
            }
        };
        let mut writer: IndexWriter = index
            .writer_with_num_threads(1, WRITER_HEAP)
            .map_err(index_error)?;
        for (i, p) in passages.iter().enumerate() {
            writer
                .add_document(doc!(
                    title => p.title.as_str(),
                    text => p.text.as_str(),
                    position => i as u64,
                ))
                .map_err(index_error)?;
        }
        writer.commit().map_err(index_error)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(index_error)?;
        let analyzer = index.tokenizer_for_field(text).map_err(index_error)?;
        Ok(Self {
            reader,
            analyzer,
            title,
            text,
            position,
        })
    }

    /// The best `limit` passages for `query` as `(position, BM25 score)`, best first.
    pub(super) fn search(&self, query: &str, limit: usize) -> Result<Vec<(usize, f32)>, AiError> {
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
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(words.len() * 2);
        for word in &words {
            let in_title = TermQuery::new(
                Term::from_field_text(self.title, word),
                IndexRecordOption::WithFreqs,
            );
            let in_text = TermQuery::new(
                Term::from_field_text(self.text, word),
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
                let position = doc
                    .get_first(self.position)
                    .and_then(|v| v.as_u64())
                    .ok_or_else(|| AiError::InvalidInput("index entry without position".into()))?;
                Ok((position as usize, score))
            })
            .collect()
    }
}
