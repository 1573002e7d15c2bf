//! Fine-tuning the encoder on a deployment's intents, offline: every weight of MiniLM and an
//! intent head on its normalised mean-pooled embedding are trained together with candle's
//! autograd, and the tuned encoder is written as a model folder the fast [`Embedder`] loads
//! like the shipped one. Its embeddings separate the intents far better than the frozen
//! encoder's (BANKING77 and CLINC150 in docs/ai-quality.md), at minutes of training instead of
//! seconds. The head trained with it is written into the folder too ([`JOINT_HEAD`]): it is
//! the head to serve over that encoder for those examples; for other examples a head is
//! trained over the tuned embeddings as usual ([`super::train_calibrated`]).
//!
//! [`Embedder`]: crate::ai::Embedder

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::{Linear, Module, Optimizer, VarMap};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{HeadInfo, IntentHead, LabelledText, TrainOptions, data_hash};
use crate::ai::retrieval::QueryTuneReport;
use crate::ai::training::{
    Dropout, SplitMix, Tunable, adamw, candle, read_report, run_epochs, tuning_bytes,
};
use crate::ai::{AiError, Embedding, hex};

/// How to fine-tune. The defaults are the recipe of the PyTorch runs in docs/ai-quality.md.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TuneOptions {
    pub epochs: usize,
    pub batch_size: usize,
    /// AdamW's step size for the encoder's weights, decayed linearly to zero over the run.
    pub encoder_learning_rate: f64,
    /// The same for the head's, which start from random.
    pub head_learning_rate: f64,
    pub weight_decay: f64,
    /// BERT's dropout on attention probabilities and on each block's output while training.
    pub dropout: f32,
    /// Seed of the head's initial weights, the example order and the dropout masks.
    pub seed: u64,
    /// Train the word embeddings too, as PyTorch's fine-tuning does: 11.7 million of the
    /// encoder's 22.7 million weights, so each step costs more.
    #[serde(default)]
    pub word_embeddings: bool,
}

impl Default for TuneOptions {
    fn default() -> Self {
        Self {
            epochs: 5,
            batch_size: 32,
            encoder_learning_rate: 5e-5,
            head_learning_rate: 1e-3,
            weight_decay: 1e-2,
            dropout: 0.1,
            seed: 7,
            word_embeddings: false,
        }
    }
}

/// What a fine-tuning run did, stored as `tuning.json` in the tuned model's folder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TuneReport {
    /// The folder of the encoder it started from.
    pub base: PathBuf,
    /// [`data_hash`] of the examples it was tuned on.
    pub data_hash: String,
    pub examples: usize,
    pub labels: usize,
    pub options: TuneOptions,
    /// Mean training loss (cross-entropy) of each epoch.
    pub epoch_losses: Vec<f64>,
    pub seconds: f64,
}

/// The name ([`IntentHead::save`]) of the head trained with the encoder, in the tuned folder.
pub const JOINT_HEAD: &str = "intents";

/// Fine-tunes the encoder in `base` (a model folder: `config.json`, `tokenizer.json`,
/// `model.safetensors`) on `examples` and writes the tuned encoder to `out` as a model folder
/// of the same kind, plus [`crate::ai::TUNING_FILE`]. `progress` hears each epoch's number
/// and mean loss.
pub fn fine_tune(
    base: &Path,
    examples: &[LabelledText],
    options: &TuneOptions,
    out: &Path,
    progress: impl FnMut(usize, f64),
) -> Result<TuneReport, AiError> {
    let start = Instant::now();
    let mut labels: Vec<&str> = examples.iter().map(|e| e.label.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    if labels.len() < 2 {
        return Err(AiError::TrainingData(
            "need examples of at least two labels".into(),
        ));
    }
    let tunable = Tunable::load(base, options.word_embeddings)?;
    let tokens = tunable.token_ids(examples.iter().map(|e| e.text.as_str()))?;
    let targets: Vec<u32> = examples
        .iter()
        .map(|e| {
            labels
                .binary_search(&e.label.as_str())
                .map_or(0, |i| i as u32)
        })
        .collect();
    let mut rng = SplitMix(options.seed);
    let mut head_vars = VarMap::new();
    let head = Head::new(&mut head_vars, &mut rng, labels.len())?;
    let mut encoder_opt = tunable.optimiser(options.encoder_learning_rate, options.weight_decay)?;
    let mut head_opt = adamw(
        head_vars.all_vars(),
        options.head_learning_rate,
        options.weight_decay,
    )?;
    let step = |chunk: &[usize], ahead: f64, rng: &mut SplitMix| -> Result<f64, AiError> {
        encoder_opt.set_learning_rate(options.encoder_learning_rate * ahead);
        head_opt.set_learning_rate(options.head_learning_rate * ahead);
        let mut dropout = Dropout {
            rng,
            p: options.dropout,
        };
        let pooled = tunable.embed(&tokens, chunk, &mut dropout)?;
        let logits = head.forward(&pooled, &mut dropout)?;
        let y: Vec<u32> = chunk.iter().map(|&i| targets[i]).collect();
        let y = Tensor::new(y.as_slice(), &Device::Cpu).map_err(candle)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y).map_err(candle)?;
        let grads = loss.backward().map_err(candle)?;
        encoder_opt.step(&grads).map_err(candle)?;
        head_opt.step(&grads).map_err(candle)?;
        Ok(f64::from(loss.to_scalar::<f32>().map_err(candle)?))
    };
    let epoch_losses = run_epochs(
        &tokens,
        options.epochs,
        options.batch_size,
        &mut rng,
        step,
        progress,
    )?;
    let report = TuneReport {
        base: base.to_path_buf(),
        data_hash: data_hash(examples),
        examples: examples.len(),
        labels: labels.len(),
        options: options.clone(),
        epoch_losses,
        seconds: start.elapsed().as_secs_f64(),
    };
    let tuning = tuning_bytes(&report, out)?;
    let info = HeadInfo {
        labels: labels.into_iter().map(str::to_owned).collect(),
        threshold: 0.0,
        data_hash: tuned_data_hash(&report.data_hash, &hex(&Sha256::digest(&tuning))),
        options: TrainOptions {
            hidden: Head::HIDDEN,
            epochs: options.epochs,
            batch_size: options.batch_size,
            learning_rate: options.head_learning_rate,
            weight_decay: options.weight_decay,
            dropout: options.dropout,
            seed: options.seed,
        },
        validation: None,
        temperature: 1.0,
        neighbours: 0,
        neighbour_weight: 0.0,
    };
    let joint = IntentHead {
        info,
        varmap: head_vars,
        hidden: head.hidden,
        output: head.output,
        neighbours: None,
    };
    tunable.write(&tuning, |dir| joint.save(dir, JOINT_HEAD), out)?;
    Ok(report)
}

/// What identifies a tuned encoder: the SHA-256 of its [`crate::ai::TUNING_FILE`], which
/// differs between any two fine-tuning runs. Fails when `dir` holds no tuning report.
pub fn tuned_encoder_id(dir: &Path) -> Result<String, AiError> {
    let (_, bytes) = read_intent_tuning(dir)?;
    Ok(hex(&Sha256::digest(&bytes)))
}

/// The data hash of a head over a tuned encoder: the examples' [`data_hash`] and the encoder's
/// [`tuned_encoder_id`], so a head trained over another encoder never passes for it.
pub fn tuned_data_hash(data_hash: &str, encoder_id: &str) -> String {
    format!("{data_hash}+{encoder_id}")
}

/// The head trained with the encoder in the tuned folder `dir`, without neighbours, at
/// temperature 1. Its data hash is the [`tuned_data_hash`] of the examples it was tuned on.
pub fn read_joint_head(dir: &Path) -> Result<IntentHead, AiError> {
    IntentHead::load(dir, JOINT_HEAD)
}

/// The head to serve over the tuned encoder in `dir` for the examples whose
/// [`tuned_data_hash`] is `hash`: the head trained with the encoder, keeping `embedded` (those
/// examples, embedded by that encoder) as neighbours, when the encoder was tuned on exactly
/// those examples; `None` when it was tuned on others.
pub fn joint_head_for(
    dir: &Path,
    hash: &str,
    embedded: &[(Embedding, String)],
) -> Result<Option<IntentHead>, AiError> {
    let mut head = read_joint_head(dir)?;
    if head.info().data_hash != hash {
        return Ok(None);
    }
    head.keep_neighbours(embedded)?;
    Ok(Some(head))
}

/// Reads the [`TuneReport`] of a tuned model folder.
pub fn read_tuning(dir: &Path) -> Result<TuneReport, AiError> {
    Ok(read_intent_tuning(dir)?.0)
}

/// The [`TuneReport`] of a tuned folder with its bytes; a query encoder's folder is refused
/// saying so.
fn read_intent_tuning(dir: &Path) -> Result<(TuneReport, Vec<u8>), AiError> {
    read_report::<TuneReport, QueryTuneReport>(
        dir,
        "a query encoder (tuned by `train retrieval` or `eval retrieval --tune-queries`), not an \
         intent encoder (tuned by `train intents --fine-tune`)",
    )
}

/// The head trained with the encoder: the intent head's network (a hidden layer of 512 with
/// GELU over the embedding scaled to unit variance), written as an [`IntentHead`] at the end.
struct Head {
    hidden: Linear,
    output: Linear,
}

impl Head {
    const HIDDEN: usize = 512;

    fn new(varmap: &mut VarMap, rng: &mut SplitMix, labels: usize) -> Result<Self, AiError> {
        let (hidden, output) = super::initialised_network(varmap, rng, Self::HIDDEN, labels)?;
        Ok(Self { hidden, output })
    }

    fn forward(&self, pooled: &Tensor, dropout: &mut Dropout) -> Result<Tensor, AiError> {
        let h = (pooled * super::INPUT_SCALE)
            .and_then(|x| self.hidden.forward(&x))
            .and_then(|x| x.gelu_erf())
            .map_err(candle)?;
        let h = dropout.apply(&h)?;
        self.output.forward(&h).map_err(candle)
    }
}
