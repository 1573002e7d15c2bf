//! Hybrid retrieval over knowledge-base passages: BM25 (tantivy) and dense (MiniLM cosine),
//! fused. Naive reciprocal-rank fusion loses to dense retrieval on paraphrased FAQ queries
//! (docs/ai-quality.md), because it throws the scores away and lets a weak lexical match
//! outvote a strong semantic one. The default fusion is convex instead: the cosine plus a small
//! weight of the BM25 score normalised by the query's best BM25 score, which keeps dense
//! retrieval's order unless the words settle a near tie. [`tune_queries`] fine-tunes a query
//! encoder offline against the passages' fixed embeddings (`train retrieval`, `eval retrieval
//! --tune-queries`), which the engine embeds questions with when one is configured.

mod bm25;
mod eval;
mod tune;

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use self::bm25::IndexSync;
pub use self::eval::{
    FusionComparison, Judged, RankingMetrics, compare_fusions, embed_corpus, is_tuning_query,
    read_corpus, read_queries, score_rankings, training_queries, tuning_queries,
};
pub use self::tune::{
    QueryTuneOptions, QueryTuneReport, TrainingQuery, read_query_tuning, tune_queries,
};
use super::{AiError, EMBEDDING_DIM, Embedding};

/// BM25 candidates considered per query; dense scores are computed for every passage.
const BM25_CANDIDATES: usize = 100;

/// One retrievable unit: an article's section, or a FAQ answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    pub id: String,
    /// The article title (and section heading), shown as the answer's source.
    pub title: String,
    pub text: String,
    /// Where the visitor can read the whole article.
    pub link: Option<String>,
}

impl Passage {
    /// The text whose embedding stands for the passage: title first, since paraphrased
    /// questions mostly match the title.
    pub fn embedding_text(&self) -> String {
        format!("{}\n{}", self.title, self.text)
    }

    /// Names the passage's embedding: a hash of the model and [`Self::embedding_text`], so
    /// an embedding is reused exactly while both are the same.
    pub fn embedding_key(&self) -> String {
        hex_digest(&[EMBEDDING_MODEL.as_bytes(), self.embedding_text().as_bytes()])
    }
}

/// The model whose embeddings the stored vectors are; part of their key.
const EMBEDDING_MODEL: &str = "all-MiniLM-L6-v2";

/// The first 128 bits of the SHA-256 of the parts (separated), in hex.
fn hex_digest(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
        hasher.update([0x1e]);
    }
    crate::ai::hex(&hasher.finalize()[..16])
}

/// How the two rankings are combined.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Fusion {
    Dense,
    Bm25,
    /// Reciprocal-rank fusion, `1/(k + rank)` summed over both rankings.
    Rrf {
        k: f32,
    },
    /// `dense_weight · cosine + (1 − dense_weight) · bm25 / best bm25`.
    Convex {
        dense_weight: f32,
    },
}

impl Default for Fusion {
    /// The weight chosen on StackFAQ's tuning queries (docs/ai-quality.md).
    fn default() -> Self {
        Fusion::Convex { dense_weight: 0.85 }
    }
}

/// A retrieved passage with its scores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// Index of the passage in the retriever.
    pub passage: usize,
    /// The fused score that ranked it.
    pub score: f32,
    /// Cosine similarity of query and passage.
    pub dense: f32,
    /// Raw BM25 score (0 when not among the lexical candidates).
    pub bm25: f32,
}

/// Passages, their embeddings and their BM25 index.
pub struct Retriever {
    passages: Vec<Passage>,
    /// Passage id → position, to read the index's hits back.
    positions: HashMap<String, usize>,
    /// Row-major `passages.len() × EMBEDDING_DIM`.
    vectors: Vec<f32>,
    bm25: bm25::Bm25,
    fusion: Fusion,
}

impl Retriever {
    /// Indexes `passages` (with their embeddings, in the same order; ids unique) in RAM, or
    /// on disk under `index_dir`, where only what changed since the last build is written.
    pub fn build(
        passages: Vec<Passage>,
        embeddings: &[Embedding],
        fusion: Fusion,
        index_dir: Option<&Path>,
    ) -> Result<Self, AiError> {
        if passages.len() != embeddings.len() {
            return Err(AiError::InvalidInput(format!(
                "{} passages but {} embeddings",
                passages.len(),
                embeddings.len()
            )));
        }
        let mut positions = HashMap::with_capacity(passages.len());
        for (i, p) in passages.iter().enumerate() {
            if positions.insert(p.id.clone(), i).is_some() {
                return Err(AiError::InvalidInput(format!("passage id {} twice", p.id)));
            }
        }
        let vectors = embeddings
            .iter()
            .flat_map(|e| e.as_slice())
            .copied()
            .collect();
        let bm25 = bm25::Bm25::build(&passages, index_dir)?;
        Ok(Self {
            passages,
            positions,
            vectors,
            bm25,
            fusion,
        })
    }

    pub fn passage(&self, index: usize) -> &Passage {
        &self.passages[index]
    }

    /// The embedding of the passage at `index`, as it was handed to [`Self::build`].
    pub fn embedding(&self, index: usize) -> Option<Embedding> {
        let row = self
            .vectors
            .get(index * EMBEDDING_DIM..(index + 1) * EMBEDDING_DIM)?;
        Embedding::from_stored(row.to_vec())
    }

    /// What building the lexical index wrote.
    pub fn index_sync(&self) -> IndexSync {
        self.bm25.sync()
    }

    pub fn len(&self) -> usize {
        self.passages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.passages.is_empty()
    }

    pub fn fusion(&self) -> Fusion {
        self.fusion
    }

    /// The best `k` passages for a query under this retriever's fusion.
    pub fn search(
        &self,
        query: &str,
        embedding: &Embedding,
        k: usize,
    ) -> Result<Vec<Hit>, AiError> {
        self.search_with(self.fusion, query, embedding, k)
    }

    /// The best `k` passages under a given fusion (the evaluation compares them).
    pub fn search_with(
        &self,
        fusion: Fusion,
        query: &str,
        embedding: &Embedding,
        k: usize,
    ) -> Result<Vec<Hit>, AiError> {
        let q = embedding.as_slice();
        let mut hits: Vec<Hit> = self
            .vectors
            .chunks_exact(EMBEDDING_DIM)
            .enumerate()
            .map(|(passage, v)| Hit {
                passage,
                score: 0.0,
                dense: v.iter().zip(q).map(|(a, b)| a * b).sum(),
                bm25: 0.0,
            })
            .collect();
        let lexical: Vec<(usize, f32)> = if fusion == Fusion::Dense {
            Vec::new()
        } else {
            self.bm25
                .search(query, BM25_CANDIDATES)?
                .into_iter()
                .filter_map(|(id, score)| Some((*self.positions.get(&id)?, score)))
                .collect()
        };
        for &(passage, score) in &lexical {
            hits[passage].bm25 = score;
        }
        match fusion {
            Fusion::Dense => hits.iter_mut().for_each(|h| h.score = h.dense),
            Fusion::Bm25 => hits.iter_mut().for_each(|h| h.score = h.bm25),
            Fusion::Convex { dense_weight } => {
                let best = lexical.first().map_or(0.0, |&(_, s)| s);
                for h in &mut hits {
                    let lexical = if best > 0.0 { h.bm25 / best } else { 0.0 };
                    h.score = dense_weight * h.dense + (1.0 - dense_weight) * lexical;
                }
            }
            Fusion::Rrf { k: rrf_k } => {
                let mut by_dense: Vec<usize> = (0..hits.len()).collect();
                by_dense.sort_by(|&a, &b| hits[b].dense.total_cmp(&hits[a].dense));
                for (rank, &i) in by_dense.iter().enumerate() {
                    hits[i].score = 1.0 / (rrf_k + rank as f32 + 1.0);
                }
                for (rank, &(i, _)) in lexical.iter().enumerate() {
                    hits[i].score += 1.0 / (rrf_k + rank as f32 + 1.0);
                }
            }
        }
        if fusion == Fusion::Bm25 {
            hits.retain(|h| h.bm25 > 0.0);
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.passage.cmp(&b.passage)));
        hits.truncate(k);
        Ok(hits)
    }
}
