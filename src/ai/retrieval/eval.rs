//! Ranking quality on a labelled set: corpus and queries in the JSON-lines layout of
//! `../shared/datasets/stackfaq`, scored with MRR@10, Recall@1/5 and nDCG@10.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Fusion, Passage, Retriever, TrainingQuery};
use crate::ai::{AiError, Embedder, Embedding};

/// Dense weights tried for convex fusion on the tuning queries.
const DENSE_WEIGHTS: [f32; 9] = [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98];
/// Constant of reciprocal-rank fusion, as usually published.
const RRF_K: f32 = 60.0;

#[derive(Deserialize)]
struct CorpusLine {
    id: String,
    #[serde(default)]
    title: String,
    text: String,
}

/// A query with the ids of every passage that answers it.
#[derive(Clone, Debug, Deserialize)]
pub struct Judged {
    pub id: String,
    pub text: String,
    pub relevant: Vec<String>,
}

fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, AiError> {
    let text = std::fs::read_to_string(path).map_err(|source| AiError::ModelIo {
        path: path.to_owned(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .map_err(|e| AiError::TrainingData(format!("{}:{}: {e}", path.display(), n + 1)))
        })
        .collect()
}

/// `{"id","title","text"}` per line.
pub fn read_corpus(path: &Path) -> Result<Vec<Passage>, AiError> {
    Ok(read_lines::<CorpusLine>(path)?
        .into_iter()
        .map(|l| Passage {
            id: l.id,
            title: l.title,
            text: l.text,
            link: None,
        })
        .collect())
}

/// `{"id","text","relevant":[ids]}` per line.
pub fn read_queries(path: &Path) -> Result<Vec<Judged>, AiError> {
    read_lines(path)
}

/// Means over the queries.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RankingMetrics {
    pub queries: usize,
    pub mrr_at_10: f64,
    pub recall_at_1: f64,
    pub recall_at_5: f64,
    pub ndcg_at_10: f64,
}

/// Scores ranked passage ids (best first, at least 10 where there are) against the judgements.
/// Recall@k is the share of queries with a relevant passage in the top k.
pub fn score_rankings(rankings: &[(Vec<String>, &Judged)]) -> RankingMetrics {
    let mut m = RankingMetrics {
        queries: rankings.len(),
        ..Default::default()
    };
    if rankings.is_empty() {
        return m;
    }
    for (ranked, judged) in rankings {
        let relevant: HashSet<&str> = judged.relevant.iter().map(String::as_str).collect();
        let hit_at: Vec<bool> = ranked
            .iter()
            .take(10)
            .map(|id| relevant.contains(id.as_str()))
            .collect();
        if let Some(first) = hit_at.iter().position(|&h| h) {
            m.mrr_at_10 += 1.0 / (first as f64 + 1.0);
            m.recall_at_1 += f64::from(u8::from(first < 1));
            m.recall_at_5 += f64::from(u8::from(first < 5));
        }
        let dcg: f64 = hit_at
            .iter()
            .enumerate()
            .filter(|(_, h)| **h)
            .map(|(i, _)| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        let ideal: f64 = (0..relevant.len().min(10))
            .map(|i| 1.0 / (i as f64 + 2.0).log2())
            .sum();
        if ideal > 0.0 {
            m.ndcg_at_10 += dcg / ideal;
        }
    }
    let n = rankings.len() as f64;
    m.mrr_at_10 /= n;
    m.recall_at_1 /= n;
    m.recall_at_5 /= n;
    m.ndcg_at_10 /= n;
    m
}

/// Whether the query at `position` in the file is a tuning query: two of every five are. The
/// convex fusion's weight is chosen on them, and a query encoder is tuned on them; the others
/// are held out.
pub fn is_tuning_query(position: usize) -> bool {
    position % 5 < 2
}

/// The tuning queries ([`is_tuning_query`]) with the positions in `corpus` of the passages
/// that answer them, to tune a query encoder on. Fails on a query naming a passage the corpus
/// does not hold.
pub fn tuning_queries(
    corpus: &[Passage],
    queries: &[Judged],
) -> Result<Vec<TrainingQuery>, AiError> {
    let tuning = queries
        .iter()
        .enumerate()
        .filter(|(i, _)| is_tuning_query(*i))
        .map(|(_, q)| q);
    training_queries(corpus, tuning)
}

/// `queries` with the positions in `corpus` of the passages that answer them, to tune a
/// query encoder on. Fails on a query naming a passage the corpus does not hold.
pub fn training_queries<'a>(
    corpus: &[Passage],
    queries: impl IntoIterator<Item = &'a Judged>,
) -> Result<Vec<TrainingQuery>, AiError> {
    let positions: HashMap<&str, usize> = corpus
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    queries
        .into_iter()
        .map(|q| {
            let relevant = q
                .relevant
                .iter()
                .map(|id| {
                    positions.get(id.as_str()).copied().ok_or_else(|| {
                        AiError::TrainingData(format!(
                            "query {} names passage {id}, which the corpus does not hold",
                            q.id
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(TrainingQuery {
                text: q.text.clone(),
                relevant,
            })
        })
        .collect()
}

/// Every fusion's figures on the held-out queries, with the convex weight chosen on the
/// tuning queries ([`is_tuning_query`]).
#[derive(Clone, Debug, Serialize)]
pub struct FusionComparison {
    pub passages: usize,
    pub tuning_queries: usize,
    /// The weight with the best MRR@10 on the tuning queries; of weights tied there, the
    /// largest, the nearest to dense retrieval alone: a tie says the tuning queries cannot
    /// tell the weights apart (as when a query encoder was tuned on them and ranks them all
    /// first), and then the ranking changes least.
    pub chosen_dense_weight: f32,
    /// Convex fusion's MRR@10 on the tuning queries, per weight tried.
    pub tuning: Vec<(f32, f64)>,
    /// `(fusion, figures on the held-out queries)`.
    pub held_out: Vec<(String, RankingMetrics)>,
    /// The same on every query, for comparison with figures published on the whole set.
    pub all: Vec<(String, RankingMetrics)>,
}

/// Embeds the corpus' [`Passage::embedding_text`]s, as [`compare_fusions`] takes them.
pub fn embed_corpus(embedder: &Embedder, corpus: &[Passage]) -> Result<Vec<Embedding>, AiError> {
    let texts: Vec<String> = corpus.iter().map(Passage::embedding_text).collect();
    embedder.embed_all(&texts)
}

/// Compares dense, BM25, reciprocal-rank and convex fusion over `corpus` (`vectors` its
/// [`embed_corpus`]), the queries embedded with `questions` (the encoder that embedded the
/// corpus, or a query encoder tuned for it).
pub fn compare_fusions(
    corpus: Vec<Passage>,
    vectors: &[Embedding],
    questions: &Embedder,
    queries: &[Judged],
) -> Result<FusionComparison, AiError> {
    let passage_count = corpus.len();
    let retriever = Retriever::build(corpus, vectors, Fusion::default(), None)?;
    let texts: Vec<&str> = queries.iter().map(|q| q.text.as_str()).collect();
    let asked = questions.embed_all(&texts)?;
    let run = |fusion: Fusion, pick: &dyn Fn(usize) -> bool| -> Result<RankingMetrics, AiError> {
        let mut rankings = Vec::new();
        for (i, (q, e)) in queries.iter().zip(&asked).enumerate() {
            if !pick(i) {
                continue;
            }
            let ranked = retriever
                .search_with(fusion, &q.text, e, 10)?
                .into_iter()
                .map(|h| retriever.passage(h.passage).id.clone())
                .collect();
            rankings.push((ranked, q));
        }
        Ok(score_rankings(&rankings))
    };
    let tune = |i: usize| is_tuning_query(i);
    let hold = |i: usize| !is_tuning_query(i);
    let mut tuning = Vec::new();
    for w in DENSE_WEIGHTS {
        let m = run(Fusion::Convex { dense_weight: w }, &tune)?;
        tuning.push((w, m.mrr_at_10));
    }
    let chosen = tuning
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1).then(a.0.total_cmp(&b.0)))
        .map_or(1.0, |t| t.0);
    let fusions = [
        ("dense".to_owned(), Fusion::Dense),
        ("bm25".to_owned(), Fusion::Bm25),
        (format!("rrf k={RRF_K}"), Fusion::Rrf { k: RRF_K }),
        (
            format!("convex w={chosen}"),
            Fusion::Convex {
                dense_weight: chosen,
            },
        ),
    ];
    let mut held_out = Vec::new();
    let mut all = Vec::new();
    for (name, fusion) in fusions {
        held_out.push((name.clone(), run(fusion, &hold)?));
        all.push((name, run(fusion, &|_| true)?));
    }
    Ok(FusionComparison {
        passages: passage_count,
        tuning_queries: (0..queries.len()).filter(|&i| tune(i)).count(),
        chosen_dense_weight: chosen,
        tuning,
        held_out,
        all,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(relevant: &[&str]) -> Judged {
        Judged {
            id: "q".into(),
            text: "q".into(),
            relevant: relevant.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn metrics_follow_their_definitions() {
        let a = judged(&["x"]);
        let b = judged(&["y", "z"]);
        let c = judged(&["w"]);
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let m = score_rankings(&[
            (ids(&["x", "p"]), &a),
            (ids(&["p", "q", "y", "z"]), &b),
            (ids(&["p"]), &c),
        ]);
        assert_eq!(m.queries, 3);
        assert!((m.mrr_at_10 - (1.0 + 1.0 / 3.0) / 3.0).abs() < 1e-9);
        assert!((m.recall_at_1 - 1.0 / 3.0).abs() < 1e-9);
        assert!((m.recall_at_5 - 2.0 / 3.0).abs() < 1e-9);
        let dcg_b = 1.0 / 4f64.log2() + 1.0 / 5f64.log2();
        let ideal_b = 1.0 + 1.0 / 3f64.log2();
        assert!((m.ndcg_at_10 - (1.0 + dcg_b / ideal_b) / 3.0).abs() < 1e-9);
    }
}
