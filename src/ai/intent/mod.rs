//! Intent classification with out-of-scope detection: a small candle-nn network over the
//! sentence embedding, trained in seconds on a deployment's own examples. A text is out of
//! scope when the head predicts the explicit out-of-scope label (if the training data has one)
//! or when its scope score falls below a threshold chosen on validation data. The scope score
//! is the best label's probability, times, when the head keeps its in-scope training
//! embeddings ("anchors"), the cosine of the nearest one: a text far from every example of
//! every intent is out of scope even when the softmax is sure of its best guess.

mod data;
mod eval;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{Linear, Module, Optimizer, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use self::data::every_fifth_of_each_label;
pub use self::data::{LabelledText, data_hash, read_labelled_csv};
pub use self::eval::{Metrics, calibrate, choose_threshold, evaluate};
use super::{AiError, EMBEDDING_DIM, Embedder, Embedding};

/// The label the datasets (and the knowledge base) use for "none of the intents".
pub const OUT_OF_SCOPE: &str = "oos";

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
    /// The softmax probability of the best label, whether or not it was accepted.
    pub confidence: f32,
}

/// How the head scores one text, before any threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    /// Index of the best label in [`HeadInfo::labels`].
    pub best: usize,
    /// Its softmax probability (calibrated by the temperature).
    pub confidence: f32,
    /// What the out-of-scope threshold is compared with: `confidence` times the cosine of the
    /// nearest anchor, or `confidence` alone for a head without anchors.
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
    /// How many in-scope training embeddings the head keeps for its scope score (0: none).
    #[serde(default)]
    pub anchors: usize,
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
    /// In-scope training embeddings, one unit-length row each (see [`Score::scope`]).
    anchors: Option<Tensor>,
}

/// The name of the anchors in the head's safetensors file.
const ANCHORS: &str = "anchors";

fn network(varmap: &VarMap, hidden: usize, labels: usize) -> Result<(Linear, Linear), AiError> {
    let vb = VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu);
    let first = candle_nn::linear(EMBEDDING_DIM, hidden, vb.pp("hidden")).map_err(candle)?;
    let second = candle_nn::linear(hidden, labels, vb.pp("output")).map_err(candle)?;
    Ok((first, second))
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
        let (hidden, output) = network(&varmap, options.hidden, labels.len())?;
        let mut rng = SplitMix(options.seed);
        let (h, c) = (options.hidden, labels.len());
        rng.init(
            &mut varmap,
            "hidden.weight",
            &[h, EMBEDDING_DIM],
            EMBEDDING_DIM,
        )?;
        rng.init(&mut varmap, "hidden.bias", &[h], EMBEDDING_DIM)?;
        rng.init(&mut varmap, "output.weight", &[c, h], h)?;
        rng.init(&mut varmap, "output.bias", &[c], h)?;
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
            anchors: 0,
        };
        Ok(Self {
            info,
            varmap,
            hidden,
            output,
            anchors: None,
        })
    }

    /// Keeps the in-scope examples' embeddings as anchors for the scope score. Worth it where
    /// out-of-scope texts must be told apart (the threshold is then chosen with them);
    /// a head that never refuses, such as sentiment's, has no use for them.
    pub fn keep_anchors(&mut self, examples: &[(Embedding, String)]) -> Result<(), AiError> {
        let in_scope: Vec<&Embedding> = examples
            .iter()
            .filter(|(_, l)| l != OUT_OF_SCOPE)
            .map(|(e, _)| e)
            .collect();
        self.info.anchors = in_scope.len();
        self.anchors = if in_scope.is_empty() {
            None
        } else {
            Some(rows(&in_scope)?)
        };
        Ok(())
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

    /// The softmax over the labels at the head's temperature, one row per embedding.
    fn softmax(&self, embeddings: &[&Embedding]) -> Result<Tensor, AiError> {
        let logits =
            (self.logits(embeddings)? / f64::from(self.info.temperature)).map_err(candle)?;
        candle_nn::ops::softmax(&logits, D::Minus1).map_err(candle)
    }

    /// Raw logits, one row per embedding (for calibration).
    pub(crate) fn raw_logits(&self, embeddings: &[&Embedding]) -> Result<Vec<Vec<f32>>, AiError> {
        if embeddings.is_empty() {
            return Ok(Vec::new());
        }
        self.logits(embeddings)?.to_vec2().map_err(candle)
    }

    /// Every label's probability for each embedding, in the order of [`HeadInfo::labels`].
    pub fn probabilities(&self, embeddings: &[&Embedding]) -> Result<Vec<Vec<f32>>, AiError> {
        if embeddings.is_empty() {
            return Ok(Vec::new());
        }
        self.softmax(embeddings)?.to_vec2().map_err(candle)
    }

    /// Each embedding's best label, probability and scope score, before any threshold.
    pub fn scores(&self, embeddings: &[&Embedding]) -> Result<Vec<Score>, AiError> {
        if embeddings.is_empty() {
            return Ok(Vec::new());
        }
        let probs = self.softmax(embeddings)?;
        let best = probs.argmax(D::Minus1).and_then(|b| b.to_vec1::<u32>());
        let top = probs.max(D::Minus1).and_then(|p| p.to_vec1::<f32>());
        let (best, top) = (best.map_err(candle)?, top.map_err(candle)?);
        let nearest = match &self.anchors {
            Some(anchors) => {
                let cosines = rows(embeddings)?
                    .matmul(&anchors.t().map_err(candle)?)
                    .map_err(candle)?;
                cosines
                    .max(D::Minus1)
                    .and_then(|c| c.to_vec1::<f32>())
                    .map_err(candle)?
            }
            None => vec![1.0; embeddings.len()],
        };
        Ok(best
            .into_iter()
            .zip(top)
            .zip(nearest)
            .map(|((best, confidence), cosine)| Score {
                best: best as usize,
                confidence,
                scope: confidence * cosine.max(0.0),
            })
            .collect())
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

    /// Writes `NAME.safetensors` (the weights and any anchors) and `NAME.json` (labels,
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
        if let Some(anchors) = &self.anchors {
            tensors.insert(ANCHORS.to_owned(), anchors.clone());
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
        let anchors = if info.anchors > 0 {
            let mut tensors =
                candle_core::safetensors::load(&weights, &Device::Cpu).map_err(candle)?;
            let anchors = tensors
                .remove(ANCHORS)
                .filter(|a| a.dims() == [info.anchors, EMBEDDING_DIM])
                .ok_or_else(|| AiError::InvalidModel {
                    path: weights.clone(),
                    reason: format!(
                        "{} anchors of {EMBEDDING_DIM} values are missing",
                        info.anchors
                    ),
                })?;
            Some(anchors)
        } else {
            None
        };
        Ok(Self {
            info,
            varmap,
            hidden,
            output,
            anchors,
        })
    }
}

/// How a head trained by [`train_calibrated`] was calibrated.
#[derive(Clone, Debug, Serialize)]
pub struct Calibration {
    pub temperature: f32,
    /// Held-out figures of the probe head before temperature scaling, and after.
    pub before: Metrics,
    pub after: Metrics,
}

/// Trains a head whose confidences are calibrated, with no separate validation data: a probe
/// head trained on four examples in five fits the temperature on the fifth (every fifth
/// example of each intent, so the split does not depend on the order of the intents), then
/// the head is trained on everything and given that temperature.
pub fn train_calibrated(
    examples: &[(Embedding, String)],
    hash: String,
    options: TrainOptions,
) -> Result<(IntentHead, Calibration), AiError> {
    let (fit, held) = every_fifth_of_each_label(examples);
    let mut probe = IntentHead::train(&fit, hash.clone(), options.clone())?;
    let before = evaluate(&probe, &held)?;
    let temperature = calibrate(&mut probe, &held)?;
    let after = evaluate(&probe, &held)?;
    let mut head = IntentHead::train(examples, hash, options)?;
    head.set_temperature(temperature);
    head.set_threshold(0.0, Some(after.clone()));
    Ok((
        head,
        Calibration {
            temperature,
            before,
            after,
        },
    ))
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

/// splitmix64: a seeded generator for initial weights, dropout masks and example order, so a
/// retrain on the same data gives the same head (candle cannot seed its CPU generator).
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Fisher–Yates.
    fn shuffle(&mut self, items: &mut [usize]) {
        for i in (1..items.len()).rev() {
            items.swap(i, (self.next_u64() % (i as u64 + 1)) as usize);
        }
    }

    /// PyTorch's default `nn.Linear` initialisation: uniform in `±1/√fan_in`.
    fn init(
        &mut self,
        varmap: &mut VarMap,
        name: &str,
        shape: &[usize],
        fan_in: usize,
    ) -> Result<(), AiError> {
        let bound = 1.0 / (fan_in as f32).sqrt();
        let len = shape.iter().product();
        let values: Vec<f32> = (0..len)
            .map(|_| (2.0 * self.unit() - 1.0) * bound)
            .collect();
        let tensor = Tensor::from_vec(values, shape, &Device::Cpu).map_err(candle)?;
        varmap.set_one(name, tensor).map_err(candle)
    }

    /// Inverted dropout with a mask drawn from this generator.
    fn dropout(&mut self, h: &Tensor, p: f32) -> Result<Tensor, AiError> {
        if p <= 0.0 {
            return Ok(h.clone());
        }
        let keep = 1.0 / (1.0 - p);
        let mask: Vec<f32> = (0..h.elem_count())
            .map(|_| if self.unit() >= p { keep } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, h.shape(), &Device::Cpu).map_err(candle)?;
        (h * mask).map_err(candle)
    }
}
