//! Intent classification with out-of-scope detection: a small candle-nn network over the
//! sentence embedding, trained in seconds on a deployment's own examples, whose probabilities
//! are mixed with a vote of the nearest training examples when the head keeps them
//! ("neighbours"; the mixing weight is chosen on held-out examples). A text is out of scope
//! when the head predicts the explicit out-of-scope label (if the training data has one) or
//! when its scope score falls below a threshold chosen on validation data. The scope score is
//! the best label's probability, times, for a head with neighbours, the cosine of the nearest
//! in-scope one: a text far from every example of every intent is out of scope even when the
//! softmax is sure of its best guess.

mod data;
mod eval;
mod tune;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, Optimizer, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use self::data::every_fifth_of_each_label;
pub use self::data::{LabelledText, data_hash, read_labelled_csv};
pub use self::eval::{Metrics, calibrate, choose_threshold, evaluate};
pub use self::tune::{
    JOINT_HEAD, TuneOptions, TuneReport, fine_tune, joint_head_for, read_joint_head, read_tuning,
    tuned_data_hash, tuned_encoder_id,
};
use super::training::SplitMix;
use super::{AiError, EMBEDDING_DIM, Embedder, Embedding};

/// The label the datasets (and the knowledge base) use for "none of the intents".
pub const OUT_OF_SCOPE: &str = "oos";

/// How many of the nearest training examples vote, and how fast a vote's weight falls with its
/// cosine's distance below the nearest one's: `exp((cosine − best) / VOTE_SCALE)`. The values of
/// the BANKING77 prototype in docs/ai-quality.md.
const VOTERS: usize = 20;
const VOTE_SCALE: f32 = 0.02;

/// The neighbour weights [`IntentHead::choose_neighbour_weight`] tries: 0, 0.1, … 1.
const NEIGHBOUR_WEIGHTS: std::ops::RangeInclusive<u8> = 0..=10;

/// Unit-length embeddings have components of about `1/√384`; scaling them to unit variance
/// lets the optimiser's default step sizes work.
const INPUT_SCALE: f64 = 19.595_917; // √384

/// How to train a head. The defaults gave the best in-scope accuracy on CLINC150's validation
/// split among the few settings tried (docs/ai-quality.md); longer training over-fits.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Width of the hidden layer.
    pub hidden: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Dropout on the hidden layer while training, against over-fitting small intent sets.
    pub dropout: f32,
    /// Seed of the example order, so a retrain on the same data gives the same head.
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            hidden: 512,
            epochs: 8,
            batch_size: 64,
            learning_rate: 1e-3,
            weight_decay: 1e-2,
            dropout: 0.2,
            seed: 7,
        }
    }
}

/// The head's prediction for one text.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The intent, or `None` when the text is out of scope.
    pub intent: Option<String>,
    /// The probability of the best label (see [`Score::confidence`]), whether or not it was
    /// accepted.
    pub confidence: f32,
}

/// How the head scores one text, before any threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    /// Index of the best label in [`HeadInfo::labels`].
    pub best: usize,
    /// Its probability: the network's softmax at the head's temperature, mixed with the
    /// neighbours' vote at the head's weight.
    pub confidence: f32,
    /// What the out-of-scope threshold is compared with: `confidence` times the cosine of the
    /// nearest in-scope neighbour, or `confidence` alone for a head without neighbours.
    pub scope: f32,
}

/// What is stored beside the weights: enough to check the head still fits its data.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeadInfo {
    pub labels: Vec<String>,
    /// Confidence below which a prediction is out of scope (0 disables the threshold).
    pub threshold: f32,
    /// [`data_hash`] of the training examples: retrain when it changes.
    pub data_hash: String,
    pub options: TrainOptions,
    /// Validation figures at the chosen threshold, when validation data was given.
    pub validation: Option<Metrics>,
    /// Softmax temperature fitted on held-out data so confidences are calibrated (1: none).
    #[serde(default = "no_temperature")]
    pub temperature: f32,
    /// How many training embeddings the head keeps for the vote and the scope score (0: none).
    #[serde(default)]
    pub neighbours: usize,
    /// The neighbours' vote's share of the probabilities (0: the network's alone).
    #[serde(default)]
    pub neighbour_weight: f32,
}

fn no_temperature() -> f32 {
    1.0
}

/// A trained intent head.
pub struct IntentHead {
    info: HeadInfo,
    varmap: VarMap,
    hidden: Linear,
    output: Linear,
    neighbours: Option<Neighbours>,
}

/// The training examples a head keeps, for the vote and the scope score.
struct Neighbours {
    /// One unit-length embedding per row.
    rows: Tensor,
    /// Each row's label, an index into [`HeadInfo::labels`].
    labels: Vec<u32>,
}

/// The names of the neighbours in the head's safetensors file.
const NEIGHBOURS: &str = "neighbours";
const NEIGHBOUR_LABELS: &str = "neighbour_labels";

/// One row of label probabilities (or logits) per embedding.
type Rows = Vec<Vec<f32>>;

/// What the probabilities are mixed from, computed once per batch of embeddings.
struct Parts {
    /// The network's logits, one row per embedding.
    logits: Rows,
    /// The neighbours' vote (rows summing to 1) and the cosine of the nearest in-scope
    /// neighbour, per embedding; `None` for a head without neighbours.
    neighbours: Option<(Rows, Vec<f32>)>,
}

fn network(varmap: &VarMap, hidden: usize, labels: usize) -> Result<(Linear, Linear), AiError> {
    let vb = VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu);
    let first = candle_nn::linear(EMBEDDING_DIM, hidden, vb.pp("hidden")).map_err(candle)?;
    let second = candle_nn::linear(hidden, labels, vb.pp("output")).map_err(candle)?;
    Ok((first, second))
}

/// [`network`] with PyTorch's default initial weights drawn from `rng`.
fn initialised_network(
    varmap: &mut VarMap,
    rng: &mut SplitMix,
    hidden: usize,
    labels: usize,
) -> Result<(Linear, Linear), AiError> {
    let layers = network(varmap, hidden, labels)?;
    let (h, c, e) = (hidden, labels, EMBEDDING_DIM);
    rng.init(varmap, "hidden.weight", &[h, e], e)?;
    rng.init(varmap, "hidden.bias", &[h], e)?;
    rng.init(varmap, "output.weight", &[c, h], h)?;
    rng.init(varmap, "output.bias", &[c], h)?;
    Ok(layers)
}

fn candle(source: candle_core::Error) -> AiError {
    AiError::Head(Box::new(source))
}

/// The embeddings as the rows of one matrix, as they are (unit length).
fn rows(embeddings: &[&Embedding]) -> Result<Tensor, AiError> {
    let flat: Vec<f32> = embeddings
        .iter()
        .flat_map(|e| e.as_slice())
        .copied()
        .collect();
    Tensor::from_vec(flat, (embeddings.len(), EMBEDDING_DIM), &Device::Cpu).map_err(candle)
}

/// The network's input: [`rows`] scaled by [`INPUT_SCALE`].
fn matrix(embeddings: &[&Embedding]) -> Result<Tensor, AiError> {
    (rows(embeddings)? * INPUT_SCALE).map_err(candle)
}

impl IntentHead {
    /// Trains on `(embedding, label)` pairs; `hash` identifies the data (see [`data_hash`]).
    pub fn train(
        examples: &[(Embedding, String)],
        hash: String,
        options: TrainOptions,
    ) -> Result<Self, AiError> {
        let mut labels: Vec<String> = examples.iter().map(|(_, l)| l.clone()).collect();
        labels.sort();
        labels.dedup();
        if labels.len() < 2 {
            return Err(AiError::TrainingData(
                "need examples of at least two labels".into(),
            ));
        }
        let targets: Vec<u32> = examples
            .iter()
            .map(|(_, l)| labels.binary_search(l).map_or(0, |i| i as u32))
            .collect();
        let mut varmap = VarMap::new();
        let mut rng = SplitMix(options.seed);
        let (hidden, output) =
            initialised_network(&mut varmap, &mut rng, options.hidden, labels.len())?;
        let params = candle_nn::ParamsAdamW {
            lr: options.learning_rate,
            weight_decay: options.weight_decay,
            ..Default::default()
        };
        let mut optimiser = candle_nn::AdamW::new(varmap.all_vars(), params).map_err(candle)?;
        let mut order: Vec<usize> = (0..examples.len()).collect();
        for _ in 0..options.epochs {
            rng.shuffle(&mut order);
            for chunk in order.chunks(options.batch_size.max(1)) {
                let batch: Vec<&Embedding> = chunk.iter().map(|&i| &examples[i].0).collect();
                let x = matrix(&batch)?;
                let y: Vec<u32> = chunk.iter().map(|&i| targets[i]).collect();
                let y = Tensor::new(y.as_slice(), &Device::Cpu).map_err(candle)?;
                let h = hidden
                    .forward(&x)
                    .and_then(|h| h.gelu_erf())
                    .map_err(candle)?;
                let h = rng.dropout(&h, options.dropout)?;
                let logits = output.forward(&h).map_err(candle)?;
                let loss = candle_nn::loss::cross_entropy(&logits, &y).map_err(candle)?;
                optimiser.backward_step(&loss).map_err(candle)?;
            }
        }
        let info = HeadInfo {
            labels,
            threshold: 0.0,
            data_hash: hash,
            options,
            validation: None,
            temperature: 1.0,
            neighbours: 0,
            neighbour_weight: 0.0,
        };
        Ok(Self {
            info,
            varmap,
            hidden,
            output,
            neighbours: None,
        })
    }

    /// Keeps the embeddings of the examples whose label the head knows, for the neighbours'
    /// vote (see [`Self::set_neighbour_weight`]) and the scope score. Worth it for intents;
    /// sentiment's head has no use for them.
    pub fn keep_neighbours(&mut self, examples: &[(Embedding, String)]) -> Result<(), AiError> {
        let (embeddings, labels): (Vec<&Embedding>, Vec<u32>) = examples
            .iter()
            .filter_map(|(e, l)| {
                let label = self.info.labels.binary_search(l).ok()?;
                Some((e, label as u32))
            })
            .unzip();
        self.info.neighbours = labels.len();
        self.neighbours = if labels.is_empty() {
            None
        } else {
            Some(Neighbours {
                rows: rows(&embeddings)?,
                labels,
            })
        };
        Ok(())
    }

    /// Sets the neighbours' vote's share of the probabilities, in `[0, 1]`.
    pub fn set_neighbour_weight(&mut self, weight: f32) {
        self.info.neighbour_weight = weight.clamp(0.0, 1.0);
    }

    /// Chooses the neighbour weight (0, 0.1, … 1) under which the held-out examples' labels are
    /// the most probable (the lowest negative log-likelihood: right labels, and confidences
    /// that can be trusted), the smallest among equals, and sets it. A head without neighbours,
    /// or without held-out examples of labels it knows, keeps the weight it has.
    pub fn choose_neighbour_weight(
        &mut self,
        held_out: &[(Embedding, String)],
    ) -> Result<f32, AiError> {
        let (parts, targets) = self.held_out_parts(held_out)?;
        if parts.neighbours.is_none() || targets.is_empty() {
            return Ok(self.info.neighbour_weight);
        }
        let temperature = self.info.temperature;
        let best = NEIGHBOUR_WEIGHTS
            .map(|step| f32::from(step) / 10.0)
            .map(|weight| (weight, nll(&parts, &targets, temperature, weight)))
            .fold((0.0, f64::INFINITY), |best, tried| {
                if tried.1 < best.1 { tried } else { best }
            });
        self.set_neighbour_weight(best.0);
        Ok(best.0)
    }

    pub fn info(&self) -> &HeadInfo {
        &self.info
    }

    /// Sets the out-of-scope threshold and the validation figures that justified it.
    pub fn set_threshold(&mut self, threshold: f32, validation: Option<Metrics>) {
        self.info.threshold = threshold;
        self.info.validation = validation;
    }

    /// Sets the softmax temperature (see [`calibrate`]).
    pub fn set_temperature(&mut self, temperature: f32) {
        self.info.temperature = temperature;
    }

    fn logits(&self, embeddings: &[&Embedding]) -> Result<Tensor, AiError> {
        let x = matrix(embeddings)?;
        let h = self.hidden.forward(&x).and_then(|h| h.gelu_erf());
        h.and_then(|h| self.output.forward(&h)).map_err(candle)
    }

    /// The held-out examples whose label the head knows: their parts, and each one's label
    /// index (for [`nll`]).
    fn held_out_parts(
        &self,
        held_out: &[(Embedding, String)],
    ) -> Result<(Parts, Vec<usize>), AiError> {
        let (refs, targets): (Vec<&Embedding>, Vec<usize>) = held_out
            .iter()
            .filter_map(|(e, l)| self.info.labels.binary_search(l).ok().map(|i| (e, i)))
            .unzip();
        Ok((self.parts(&refs)?, targets))
    }

    /// The neighbours' vote and the cosine of the nearest in-scope neighbour, per embedding.
    fn votes(
        &self,
        n: &Neighbours,
        embeddings: &[&Embedding],
    ) -> Result<(Rows, Vec<f32>), AiError> {
        let cosines: Vec<Vec<f32>> = rows(embeddings)?
            .matmul(&n.rows.t().map_err(candle)?)
            .and_then(|c| c.to_vec2())
            .map_err(candle)?;
        let oos = self
            .info
            .labels
            .binary_search_by(|l| l.as_str().cmp(OUT_OF_SCOPE));
        let in_scope = |label: u32| oos != Ok(label as usize);
        let votes = cosines
            .iter()
            .map(|c| vote(c, &n.labels, self.info.labels.len()))
            .collect();
        let nearest = cosines
            .iter()
            .map(|c| {
                c.iter()
                    .zip(&n.labels)
                    .filter(|(_, l)| in_scope(**l))
                    .map(|(c, _)| *c)
                    .fold(0.0f32, f32::max)
            })
            .collect();
        Ok((votes, nearest))
    }

    fn parts(&self, embeddings: &[&Embedding]) -> Result<Parts, AiError> {
        if embeddings.is_empty() {
            return Ok(Parts {
                logits: Vec::new(),
                neighbours: None,
            });
        }
        let logits = self.logits(embeddings)?.to_vec2().map_err(candle)?;
        let neighbours = match &self.neighbours {
            Some(n) => Some(self.votes(n, embeddings)?),
            None => None,
        };
        Ok(Parts { logits, neighbours })
    }

    /// The network's softmax at `temperature` mixed with the vote at `weight`, one row per
    /// embedding.
    fn mixed(parts: &Parts, temperature: f32, weight: f32) -> Rows {
        let votes = parts.neighbours.as_ref().map(|(v, _)| v);
        parts
            .logits
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let exp: Vec<f32> = row
                    .iter()
                    .map(|z| ((z - max) / temperature).exp())
                    .collect();
                let sum: f32 = exp.iter().sum();
                match votes {
                    Some(v) if weight > 0.0 => exp
                        .iter()
                        .zip(&v[i])
                        .map(|(e, v)| (1.0 - weight) * e / sum + weight * v)
                        .collect(),
                    _ => exp.iter().map(|e| e / sum).collect(),
                }
            })
            .collect()
    }

    fn scores_of(&self, parts: &Parts) -> Vec<Score> {
        let nearest = parts.neighbours.as_ref().map(|(_, n)| n);
        Self::mixed(parts, self.info.temperature, self.info.neighbour_weight)
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (best, confidence) = p
                    .iter()
                    .copied()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
                let cosine = nearest.map_or(1.0, |n| n[i]);
                Score {
                    best,
                    confidence,
                    scope: confidence * cosine.max(0.0),
                }
            })
            .collect()
    }

    /// Every label's probability for each embedding, in the order of [`HeadInfo::labels`].
    pub fn probabilities(&self, embeddings: &[&Embedding]) -> Result<Vec<Vec<f32>>, AiError> {
        let parts = self.parts(embeddings)?;
        Ok(Self::mixed(
            &parts,
            self.info.temperature,
            self.info.neighbour_weight,
        ))
    }

    /// Each embedding's best label, probability and scope score, before any threshold.
    pub fn scores(&self, embeddings: &[&Embedding]) -> Result<Vec<Score>, AiError> {
        let parts = self.parts(embeddings)?;
        Ok(self.scores_of(&parts))
    }

    /// Predicts each embedding's intent, or out of scope.
    pub fn predict(&self, embeddings: &[&Embedding]) -> Result<Vec<Prediction>, AiError> {
        Ok(self
            .scores(embeddings)?
            .into_iter()
            .map(|score| Prediction {
                intent: self.accept(score).map(str::to_owned),
                confidence: score.confidence,
            })
            .collect())
    }

    /// The label for a score, `None` for out of scope.
    fn accept(&self, score: Score) -> Option<&str> {
        let label = self.info.labels[score.best].as_str();
        (score.scope >= self.info.threshold && label != OUT_OF_SCOPE).then_some(label)
    }

    /// Writes `NAME.safetensors` (the weights and any neighbours) and `NAME.json` (labels,
    /// threshold, data hash, options, validation figures) into `dir`.
    pub fn save(&self, dir: &Path, name: &str) -> Result<(), AiError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| AiError::ModelIo { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut tensors: HashMap<String, Tensor> = self
            .varmap
            .data()
            .lock()
            .expect("no thread panics while holding the head's variables")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        if let Some(n) = &self.neighbours {
            let labels = Tensor::new(n.labels.as_slice(), &Device::Cpu).map_err(candle)?;
            tensors.insert(NEIGHBOURS.to_owned(), n.rows.clone());
            tensors.insert(NEIGHBOUR_LABELS.to_owned(), labels);
        }
        candle_core::safetensors::save(&tensors, dir.join(format!("{name}.safetensors")))
            .map_err(candle)?;
        let sidecar = dir.join(format!("{name}.json"));
        let json = serde_json::to_string_pretty(&self.info)
            .expect("the sidecar holds only strings, numbers and lists");
        std::fs::write(&sidecar, json).map_err(io(&sidecar))
    }

    /// Loads a head written by [`Self::save`].
    pub fn load(dir: &Path, name: &str) -> Result<Self, AiError> {
        let sidecar = dir.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&sidecar).map_err(|source| AiError::ModelIo {
            path: sidecar.clone(),
            source,
        })?;
        let info: HeadInfo = serde_json::from_str(&text).map_err(|e| AiError::InvalidModel {
            path: sidecar,
            reason: e.to_string(),
        })?;
        let weights = dir.join(format!("{name}.safetensors"));
        let mut varmap = VarMap::new();
        let (hidden, output) = network(&varmap, info.options.hidden, info.labels.len())?;
        varmap.load(&weights).map_err(candle)?;
        let neighbours = if info.neighbours > 0 {
            let mut tensors =
                candle_core::safetensors::load(&weights, &Device::Cpu).map_err(candle)?;
            let rows = tensors
                .remove(NEIGHBOURS)
                .filter(|a| a.dims() == [info.neighbours, EMBEDDING_DIM]);
            let labels = tensors
                .remove(NEIGHBOUR_LABELS)
                .and_then(|l| l.to_vec1::<u32>().ok())
                .filter(|l| {
                    l.len() == info.neighbours
                        && l.iter().all(|&i| (i as usize) < info.labels.len())
                });
            match (rows, labels) {
                (Some(rows), Some(labels)) => Some(Neighbours { rows, labels }),
                _ => {
                    return Err(AiError::InvalidModel {
                        path: weights,
                        reason: format!(
                            "{} neighbours of {EMBEDDING_DIM} values with their labels are missing",
                            info.neighbours
                        ),
                    });
                }
            }
        } else {
            None
        };
        Ok(Self {
            info,
            varmap,
            hidden,
            output,
            neighbours,
        })
    }
}

/// The negative log-likelihood of the `targets` (one label index per row of `parts`) under the
/// network's softmax at `temperature` mixed with the vote at `weight`, in f64 so that a far
/// wrong label's probability does not round to zero.
fn nll(parts: &Parts, targets: &[usize], temperature: f32, weight: f32) -> f64 {
    let (t, w) = (f64::from(temperature), f64::from(weight));
    parts
        .logits
        .iter()
        .zip(targets)
        .enumerate()
        .map(|(i, (row, &target))| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let scaled = |z: f32| f64::from(z - max) / t;
            let sum: f64 = row.iter().map(|&z| scaled(z).exp()).sum();
            let network = scaled(row[target]).exp() / sum;
            let vote = parts
                .neighbours
                .as_ref()
                .map_or(0.0, |(v, _)| f64::from(v[i][target]));
            -((1.0 - w) * network + w * vote).max(f64::MIN_POSITIVE).ln()
        })
        .sum()
}

/// The nearest [`VOTERS`] neighbours' vote over `classes` labels, from one embedding's cosines
/// to every neighbour.
fn vote(cosines: &[f32], labels: &[u32], classes: usize) -> Vec<f32> {
    let mut order: Vec<usize> = (0..cosines.len()).collect();
    let k = VOTERS.min(order.len());
    if k < order.len() {
        order.select_nth_unstable_by(k - 1, |a, b| cosines[*b].total_cmp(&cosines[*a]));
    }
    let nearest = &order[..k];
    let best = nearest
        .iter()
        .map(|&i| cosines[i])
        .fold(f32::NEG_INFINITY, f32::max);
    let mut votes = vec![0.0f32; classes];
    for &i in nearest {
        votes[labels[i] as usize] += ((cosines[i] - best) / VOTE_SCALE).exp();
    }
    let total: f32 = votes.iter().sum();
    votes.iter_mut().for_each(|v| *v /= total);
    votes
}

/// How a head was calibrated on held-out examples ([`calibrate_on`]).
#[derive(Clone, Debug, Serialize)]
pub struct Calibration {
    pub temperature: f32,
    /// The neighbours' vote's share, chosen on the same held-out examples.
    pub neighbour_weight: f32,
    /// Held-out figures of the head before temperature scaling and the neighbours' vote (the
    /// network alone), and after both.
    pub before: Metrics,
    pub after: Metrics,
}

/// Calibrates a head with neighbours on held-out examples it was not trained on: fits the
/// temperature, then the neighbour weight, then the temperature again for the mixture.
pub fn calibrate_on(
    head: &mut IntentHead,
    held_out: &[(Embedding, String)],
) -> Result<Calibration, AiError> {
    let before = evaluate(head, held_out)?;
    calibrate(head, held_out)?;
    let neighbour_weight = head.choose_neighbour_weight(held_out)?;
    let temperature = calibrate(head, held_out)?;
    let after = evaluate(head, held_out)?;
    Ok(Calibration {
        temperature,
        neighbour_weight,
        before,
        after,
    })
}

/// Trains a head whose confidences are calibrated, with no separate validation data: a probe
/// head trained on four examples in five, with those as its neighbours, is calibrated
/// ([`calibrate_on`]) on the fifth (every fifth example of each intent, so the split does not
/// depend on the order of the intents); then the head is trained on everything, keeps every
/// example as a neighbour, and is given the probe's temperature and weight.
pub fn train_calibrated(
    examples: &[(Embedding, String)],
    hash: String,
    options: TrainOptions,
) -> Result<(IntentHead, Calibration), AiError> {
    let (fit, held) = every_fifth_of_each_label(examples);
    let mut probe = IntentHead::train(&fit, hash.clone(), options.clone())?;
    probe.keep_neighbours(&fit)?;
    let calibration = calibrate_on(&mut probe, &held)?;
    let mut head = IntentHead::train(examples, hash, options)?;
    head.keep_neighbours(examples)?;
    head.set_temperature(calibration.temperature);
    head.set_neighbour_weight(calibration.neighbour_weight);
    head.set_threshold(0.0, Some(calibration.after.clone()));
    Ok((head, calibration))
}

/// Embeds labelled examples in batches, ready for [`IntentHead::train`] or [`evaluate`].
pub fn embed_examples(
    embedder: &Embedder,
    examples: &[LabelledText],
) -> Result<Vec<(Embedding, String)>, AiError> {
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(64) {
        let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
        let embeddings = embedder.embed_batch(&texts)?;
        out.extend(
            embeddings
                .into_iter()
                .zip(chunk.iter().map(|e| e.label.clone())),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_nearest_neighbours_vote_weighted_by_their_distance_to_the_best() {
        // Twenty-five neighbours: the five farthest (label 2) are not among the twenty nearest.
        let mut cosines = vec![0.5f32; 25];
        let mut labels = vec![1u32; 25];
        cosines[0] = 0.52;
        labels[0] = 0;
        for i in 20..25 {
            cosines[i] = 0.1;
            labels[i] = 2;
        }
        let votes = vote(&cosines, &labels, 3);
        let far = 19.0 * ((0.5f32 - 0.52) / VOTE_SCALE).exp();
        assert!((votes[0] - 1.0 / (1.0 + far)).abs() < 1e-6, "{votes:?}");
        assert!((votes[1] - far / (1.0 + far)).abs() < 1e-6, "{votes:?}");
        assert_eq!(votes[2], 0.0, "the farthest five do not vote");
        let close = vote(&[0.80, 0.795, 0.79], &[0, 1, 1], 2);
        assert!(
            close[1] > close[0],
            "two close neighbours outvote one a little closer"
        );
    }
}
