//! Fine-tuning a query encoder for dense retrieval, offline: MiniLM is trained so that a
//! question's embedding lands nearest the embeddings of the passages that answer it, while
//! the passages keep the embeddings the shipped encoder gave them (the index is not rebuilt,
//! and a passage costs no more than before). Only questions go through the tuned encoder,
//! and questions are short, so a step costs a fraction of a second.
//!
//! The loss of a question is a softmax over every passage of the corpus, its cosines scaled
//! by [`QueryTuneOptions::scale`], and the target the set of passages that answer it: minus
//! the log of their summed probability. Every other passage is a negative, not only the
//! batch's, and a question with many answering passages is not pushed toward one of them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{D, Device, Tensor};
use candle_nn::Optimizer;
use serde::{Deserialize, Serialize};

use crate::ai::intent::TuneReport;
use crate::ai::training::{
    Dropout, SplitMix, Tunable, candle, read_report, run_epochs, tuning_bytes,
};
use crate::ai::{AiError, EMBEDDING_DIM, Embedding};

/// How to fine-tune a query encoder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueryTuneOptions {
    pub epochs: usize,
    pub batch_size: usize,
    /// AdamW's step size, decayed linearly to zero over the run.
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// BERT's dropout while training.
    pub dropout: f32,
    /// What the cosines are multiplied by before the softmax (sentence-transformers' 20).
    pub scale: f64,
    /// Seed of the question order and the dropout masks.
    pub seed: u64,
}

impl Default for QueryTuneOptions {
    fn default() -> Self {
        Self {
            epochs: 8,
            batch_size: 32,
            learning_rate: 2e-5,
            weight_decay: 1e-2,
            dropout: 0.1,
            scale: 20.0,
            seed: 7,
        }
    }
}

/// A training question and the passages (their positions in the corpus) that answer it.
#[derive(Clone, Debug)]
pub struct TrainingQuery {
    pub text: String,
    pub relevant: Vec<usize>,
}

/// What a query-encoder tuning run did, stored as [`crate::ai::TUNING_FILE`] in its folder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueryTuneReport {
    /// The folder of the encoder it started from (which embedded the passages).
    pub base: PathBuf,
    pub passages: usize,
    pub queries: usize,
    pub options: QueryTuneOptions,
    /// Mean training loss of each epoch.
    pub epoch_losses: Vec<f64>,
    pub seconds: f64,
}

/// Reads the [`QueryTuneReport`] of a query encoder's folder; a folder that holds none (an
/// intent encoder's, or the shipped model's) is refused with what it is instead.
pub fn read_query_tuning(dir: &Path) -> Result<QueryTuneReport, AiError> {
    let (report, _) = read_report::<QueryTuneReport, TuneReport>(
        dir,
        "an intent encoder (tuned by `train intents --fine-tune`), not a query encoder (tuned \
         by `train retrieval`)",
    )?;
    Ok(report)
}

/// Fine-tunes the encoder in `base` (a model folder) as a query encoder for `passages` (their
/// embeddings by that encoder) on `queries`, and writes it to `out` as a model folder the
/// [`crate::ai::Embedder`] loads. `progress` hears each epoch's number and mean loss.
pub fn tune_queries(
    base: &Path,
    passages: &[Embedding],
    queries: &[TrainingQuery],
    options: &QueryTuneOptions,
    out: &Path,
    progress: impl FnMut(usize, f64),
) -> Result<QueryTuneReport, AiError> {
    let start = Instant::now();
    if queries.is_empty() {
        return Err(AiError::TrainingData("no training questions".into()));
    }
    if let Some(q) = queries
        .iter()
        .find(|q| q.relevant.is_empty() || q.relevant.iter().any(|&r| r >= passages.len()))
    {
        return Err(AiError::TrainingData(format!(
            "question {:?} names no passage of the corpus, or one outside it",
            q.text
        )));
    }
    let tunable = Tunable::load(base, false)?;
    let tokens = tunable.token_ids(queries.iter().map(|q| q.text.as_str()))?;
    let flat: Vec<f32> = passages
        .iter()
        .flat_map(|e| e.as_slice())
        .copied()
        .collect();
    let corpus = Tensor::from_vec(flat, (passages.len(), EMBEDDING_DIM), &Device::Cpu)
        .and_then(|p| p.t())
        .and_then(|p| p.contiguous())
        .map_err(candle)?;
    let mut optimiser = tunable.optimiser(options.learning_rate, options.weight_decay)?;
    let step = |chunk: &[usize], ahead: f64, rng: &mut SplitMix| -> Result<f64, AiError> {
        optimiser.set_learning_rate(options.learning_rate * ahead);
        let mut dropout = Dropout {
            rng,
            p: options.dropout,
        };
        let asked = tunable.embed(&tokens, chunk, &mut dropout)?;
        let logits = asked
            .matmul(&corpus)
            .and_then(|l| l * options.scale)
            .map_err(candle)?;
        let answering = answering_bias(chunk, queries, passages.len())?;
        let loss = log_sum_exp(&logits)
            .and_then(|all| {
                let answered = log_sum_exp(&logits.broadcast_add(&answering)?)?;
                (all - answered)?.mean_all()
            })
            .map_err(candle)?;
        optimiser
            .step(&loss.backward().map_err(candle)?)
            .map_err(candle)?;
        Ok(f64::from(loss.to_scalar::<f32>().map_err(candle)?))
    };
    let epoch_losses = run_epochs(
        &tokens,
        options.epochs,
        options.batch_size,
        &mut SplitMix(options.seed),
        step,
        progress,
    )?;
    let report = QueryTuneReport {
        base: base.to_path_buf(),
        passages: passages.len(),
        queries: queries.len(),
        options: options.clone(),
        epoch_losses,
        seconds: start.elapsed().as_secs_f64(),
    };
    let tuning = tuning_bytes(&report, out)?;
    tunable.write(&tuning, |_| Ok(()), out)?;
    Ok(report)
}

/// `batch × passages`: 0 where the passage answers the batch's question, a large negative
/// number elsewhere, so adding it to the logits leaves only the answering passages.
fn answering_bias(
    chunk: &[usize],
    queries: &[TrainingQuery],
    passages: usize,
) -> Result<Tensor, AiError> {
    let mut bias = vec![-1e4f32; chunk.len() * passages];
    for (row, &q) in chunk.iter().enumerate() {
        for &p in &queries[q].relevant {
            bias[row * passages + p] = 0.0;
        }
    }
    Tensor::from_vec(bias, (chunk.len(), passages), &Device::Cpu).map_err(candle)
}

/// `log Σ exp` over the last dimension, the maximum taken out of the graph (it only shifts).
fn log_sum_exp(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    x.broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        .add(&max)?
        .squeeze(D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_is_stable_and_exact() {
        let x = Tensor::new(&[[1000f32, 1000.0], [0.0, (3f32).ln()]], &Device::Cpu).unwrap();
        let got: Vec<f32> = log_sum_exp(&x).unwrap().to_vec1().unwrap();
        assert!((got[0] - (1000.0 + 2f32.ln())).abs() < 1e-3, "{got:?}");
        assert!((got[1] - 4f32.ln()).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn only_the_answering_passages_are_left_open() {
        let queries = vec![
            TrainingQuery {
                text: "a".into(),
                relevant: vec![0, 2],
            },
            TrainingQuery {
                text: "b".into(),
                relevant: vec![1],
            },
        ];
        let bias: Vec<Vec<f32>> = answering_bias(&[1, 0], &queries, 3)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(bias, vec![vec![-1e4, 0.0, -1e4], vec![0.0, -1e4, 0.0]]);
    }
}
