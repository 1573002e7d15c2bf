//! Fine-tuning the encoder on a deployment's intents, offline: every weight of MiniLM and an
//! intent head on its normalised mean-pooled embedding are trained together with candle's
//! autograd, and the tuned encoder is written as a model folder the fast [`Embedder`] loads
//! like the shipped one. Its embeddings separate the intents far better than the frozen
//! encoder's (BANKING77 and CLINC150 in docs/ai-quality.md), at minutes of training instead of
//! seconds. The head trained with it is written into the folder too ([`JOINT_HEAD`]): it is
//! the head to serve over that encoder for those examples; for other examples a head is
//! trained over the tuned embeddings as usual ([`super::train_calibrated`]).
//!
//! The forward pass here is BERT's, written with candle tensors so it can be differentiated:
//! the fast encoder in `ai::bert` computes the same function without a graph.
//!
//! [`Embedder`]: crate::ai::Embedder

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{Linear, Module, Optimizer, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{HeadInfo, IntentHead, LabelledText, SplitMix, TrainOptions, candle, data_hash};
use crate::ai::tokenize::WordPiece;
use crate::ai::{AiError, EMBEDDING_DIM, Embedding, hex, staging_path};

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

/// The file a tuned folder holds beside the model's own three.
pub const TUNING_FILE: &str = "tuning.json";

/// The name ([`IntentHead::save`]) of the head trained with the encoder, in the tuned folder.
pub const JOINT_HEAD: &str = "intents";

/// The files a model folder holds; the tuned one copies the first two from its base.
const CONFIG: &str = "config.json";
const TOKENIZER: &str = "tokenizer.json";
const WEIGHTS: &str = "model.safetensors";

/// The word embeddings stay as they are: 30,522 rows of which a batch touches a few dozen, yet
/// AdamW would rewrite all 11.7 million values at every step.
const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";

/// Fine-tunes the encoder in `base` (a model folder: `config.json`, `tokenizer.json`,
/// `model.safetensors`) on `examples` and writes the tuned encoder to `out` as a model folder
/// of the same kind, plus [`TUNING_FILE`]. `progress` hears each epoch's number and mean loss.
pub fn fine_tune(
    base: &Path,
    examples: &[LabelledText],
    options: &TuneOptions,
    out: &Path,
    mut progress: impl FnMut(usize, f64),
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
    let tokenizer = WordPiece::load(&base.join(TOKENIZER))?;
    let tokens: Vec<Vec<u32>> = examples
        .iter()
        .map(|e| tokenizer.ids(&e.text))
        .collect::<Result<_, _>>()?;
    let targets: Vec<u32> = examples
        .iter()
        .map(|e| {
            labels
                .binary_search(&e.label.as_str())
                .map_or(0, |i| i as u32)
        })
        .collect();
    let config = read_config(base)?;
    let weights = base.join(WEIGHTS);
    let varmap = load_variables(&weights)?;
    let mut rng = SplitMix(options.seed);
    let mut head_vars = VarMap::new();
    let head = Head::new(&mut head_vars, &mut rng, labels.len())?;
    let encoder = Encoder::new(&varmap, &config, &weights)?;
    let steps_per_epoch = examples.len().div_ceil(options.batch_size.max(1));
    let total_steps = (steps_per_epoch * options.epochs).max(1);
    let adamw = |vars: Vec<Var>, lr: f64| {
        let params = candle_nn::ParamsAdamW {
            lr,
            weight_decay: options.weight_decay,
            ..Default::default()
        };
        candle_nn::AdamW::new(vars, params).map_err(candle)
    };
    let mut encoder_opt = adamw(trainable(&varmap)?, options.encoder_learning_rate)?;
    let mut head_opt = adamw(head_vars.all_vars(), options.head_learning_rate)?;
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut epoch_losses = Vec::with_capacity(options.epochs);
    let mut step = 0;
    for epoch in 0..options.epochs {
        let mut loss_sum = 0.0;
        for chunk in batches(&mut order, &tokens, options.batch_size.max(1), &mut rng) {
            let remaining = 1.0 - step as f64 / total_steps as f64;
            encoder_opt.set_learning_rate(options.encoder_learning_rate * remaining);
            head_opt.set_learning_rate(options.head_learning_rate * remaining);
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| tokens[i].as_slice()).collect();
            let mut dropout = Dropout {
                rng: &mut rng,
                p: options.dropout,
            };
            let pooled = encoder.embed(&batch, &mut dropout)?;
            let logits = head.forward(&pooled, &mut dropout)?;
            let y: Vec<u32> = chunk.iter().map(|&i| targets[i]).collect();
            let y = Tensor::new(y.as_slice(), &Device::Cpu).map_err(candle)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y).map_err(candle)?;
            loss_sum += f64::from(loss.to_scalar::<f32>().map_err(candle)?) * chunk.len() as f64;
            let grads = loss.backward().map_err(candle)?;
            encoder_opt.step(&grads).map_err(candle)?;
            head_opt.step(&grads).map_err(candle)?;
            step += 1;
        }
        let mean = loss_sum / examples.len() as f64;
        progress(epoch + 1, mean);
        epoch_losses.push(mean);
    }
    let report = TuneReport {
        base: base.to_path_buf(),
        data_hash: data_hash(examples),
        examples: examples.len(),
        labels: labels.len(),
        options: options.clone(),
        epoch_losses,
        seconds: start.elapsed().as_secs_f64(),
    };
    let tuning = serde_json::to_vec_pretty(&report).map_err(|e| AiError::InvalidModel {
        path: out.join(TUNING_FILE),
        reason: e.to_string(),
    })?;
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
    write_model(base, &varmap, &tuning, &joint, out)?;
    Ok(report)
}

/// What identifies a tuned encoder: the SHA-256 of its [`TUNING_FILE`], which differs between
/// any two fine-tuning runs. Fails when `dir` holds no tuning report.
pub fn tuned_encoder_id(dir: &Path) -> Result<String, AiError> {
    let path = dir.join(TUNING_FILE);
    let bytes = std::fs::read(&path).map_err(|source| AiError::ModelIo {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice::<TuneReport>(&bytes).map_err(|e| AiError::InvalidModel {
        path,
        reason: e.to_string(),
    })?;
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

/// The tensors of a safetensors file, widened to f32, as the variables of a [`VarMap`] under
/// their own names.
fn load_variables(weights: &Path) -> Result<VarMap, AiError> {
    let loaded = candle_core::safetensors::load(weights, &Device::Cpu).map_err(|source| {
        AiError::Weights {
            path: weights.to_path_buf(),
            source,
        }
    })?;
    let varmap = VarMap::new();
    {
        let mut vars = varmap.data().lock().map_err(|_| poisoned())?;
        for (name, tensor) in loaded {
            let var = tensor
                .to_dtype(DType::F32)
                .and_then(|t| Var::from_tensor(&t))
                .map_err(candle)?;
            vars.insert(name, var);
        }
    }
    Ok(varmap)
}

/// The encoder's variables the optimiser updates: all but [`WORD_EMBEDDINGS`].
fn trainable(varmap: &VarMap) -> Result<Vec<Var>, AiError> {
    let vars = varmap.data().lock().map_err(|_| poisoned())?;
    Ok(vars
        .iter()
        .filter(|(name, _)| name.as_str() != WORD_EMBEDDINGS)
        .map(|(_, var)| var.clone())
        .collect())
}

/// One epoch's batches: the examples ordered by token count, those of equal count in a new
/// random order, cut into batches, and the batches shuffled. A batch then pads nothing, and
/// the long tail of lengths (BANKING77 texts run to 79 words, their median is 10) costs only its own
/// tokens: with random batches, one long text pads 31 short ones to its length.
fn batches(
    order: &mut [usize],
    tokens: &[Vec<u32>],
    size: usize,
    rng: &mut SplitMix,
) -> Vec<Vec<usize>> {
    rng.shuffle(order);
    order.sort_by_key(|&i| tokens[i].len());
    let batches: Vec<Vec<usize>> = order.chunks(size).map(<[usize]>::to_vec).collect();
    let mut shuffled: Vec<usize> = (0..batches.len()).collect();
    rng.shuffle(&mut shuffled);
    shuffled.into_iter().map(|i| batches[i].clone()).collect()
}

/// Reads the [`TuneReport`] of a tuned model folder.
pub fn read_tuning(dir: &Path) -> Result<TuneReport, AiError> {
    read_json(&dir.join(TUNING_FILE))
}

/// A JSON file of a model folder.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, AiError> {
    let text = std::fs::read_to_string(path).map_err(|source| AiError::ModelIo {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| AiError::InvalidModel {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes the tuned weights (f32, under the base's names) with the base's config and
/// tokenizer, the tuning report and the joint head to a fresh folder beside `out`, then
/// renames it into place.
fn write_model(
    base: &Path,
    varmap: &VarMap,
    tuning: &[u8],
    joint: &IntentHead,
    out: &Path,
) -> Result<(), AiError> {
    let staging = staging_path(out);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AiError::ModelIo { path, source }
    };
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    for file in [CONFIG, TOKENIZER] {
        std::fs::copy(base.join(file), staging.join(file)).map_err(io(&base.join(file)))?;
    }
    varmap.save(staging.join(WEIGHTS)).map_err(candle)?;
    std::fs::write(staging.join(TUNING_FILE), tuning).map_err(io(&staging))?;
    joint.save(&staging, JOINT_HEAD)?;
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(io(out))?;
    }
    std::fs::rename(&staging, out).map_err(io(out))
}

fn poisoned() -> AiError {
    AiError::TrainingData("a training thread panicked".into())
}

/// The fields of `config.json` the differentiable forward pass needs.
#[derive(Deserialize)]
struct Config {
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    vocab_size: usize,
    max_position_embeddings: usize,
    layer_norm_eps: f64,
}

fn read_config(dir: &Path) -> Result<Config, AiError> {
    read_json(&dir.join(CONFIG))
}

/// Inverted dropout with masks from the run's seeded generator, so a run can be repeated.
struct Dropout<'a> {
    rng: &'a mut SplitMix,
    p: f32,
}

impl Dropout<'_> {
    fn apply(&mut self, x: &Tensor) -> Result<Tensor, AiError> {
        self.rng.dropout(x, self.p)
    }
}

struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Norm {
    fn new(vb: &VarBuilder, eps: f64) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get(EMBEDDING_DIM, "weight")?,
            bias: vb.get(EMBEDDING_DIM, "bias")?,
            eps,
        })
    }

    /// Layer normalisation from differentiable operations (candle's fused one has no
    /// backward pass).
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm_slow(x, &self.weight, &self.bias, self.eps as f32)
    }
}

struct Block {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

/// MiniLM's encoder over the variables of a [`VarMap`] holding the base model's tensors under
/// their own names, so gradients reach every one of them.
struct Encoder {
    words: Tensor,
    positions: Tensor,
    token_type: Tensor,
    embed_norm: Norm,
    blocks: Vec<Block>,
    heads: usize,
}

impl Encoder {
    fn new(varmap: &VarMap, config: &Config, path: &Path) -> Result<Self, AiError> {
        let vb = VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu);
        let (h, inner, eps) = (
            EMBEDDING_DIM,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        let block = |l: usize| -> candle_core::Result<Block> {
            let b = vb.pp(format!("encoder.layer.{l}"));
            let attention = b.pp("attention");
            Ok(Block {
                query: candle_nn::linear(h, h, attention.pp("self.query"))?,
                key: candle_nn::linear(h, h, attention.pp("self.key"))?,
                value: candle_nn::linear(h, h, attention.pp("self.value"))?,
                attn_out: candle_nn::linear(h, h, attention.pp("output.dense"))?,
                attn_norm: Norm::new(&attention.pp("output.LayerNorm"), eps)?,
                up: candle_nn::linear(h, inner, b.pp("intermediate.dense"))?,
                down: candle_nn::linear(inner, h, b.pp("output.dense"))?,
                out_norm: Norm::new(&b.pp("output.LayerNorm"), eps)?,
            })
        };
        let build = || -> candle_core::Result<Self> {
            let e = vb.pp("embeddings");
            Ok(Self {
                words: e
                    .get((config.vocab_size, h), "word_embeddings.weight")?
                    .detach(),
                positions: e.get(
                    (config.max_position_embeddings, h),
                    "position_embeddings.weight",
                )?,
                token_type: e
                    .get((2, h), "token_type_embeddings.weight")?
                    .narrow(0, 0, 1)?,
                embed_norm: Norm::new(&e.pp("LayerNorm"), eps)?,
                blocks: (0..config.num_hidden_layers)
                    .map(block)
                    .collect::<candle_core::Result<_>>()?,
                heads: config.num_attention_heads,
            })
        };
        build().map_err(|e| AiError::InvalidModel {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// The normalised mean-pooled embeddings of a batch of token id lists (`texts × 384`),
    /// padded to the longest and masked, as sentence-transformers computes them.
    fn embed(&self, texts: &[&[u32]], dropout: &mut Dropout) -> Result<Tensor, AiError> {
        let (b, t, h) = (
            texts.len(),
            texts.iter().map(|x| x.len()).max().unwrap_or(1),
            EMBEDDING_DIM,
        );
        let mut ids = vec![0u32; b * t];
        let mut mask = vec![0f32; b * t];
        for (i, text) in texts.iter().enumerate() {
            ids[i * t..i * t + text.len()].copy_from_slice(text);
            mask[i * t..i * t + text.len()].fill(1.0);
        }
        let dev = &Device::Cpu;
        let ids = Tensor::from_vec(ids, b * t, dev).map_err(candle)?;
        let mask_rows = Tensor::from_vec(mask.clone(), (b * t, 1), dev).map_err(candle)?;
        let bias: Vec<f32> = mask.iter().map(|m| (m - 1.0) * 1e4).collect();
        let bias = Tensor::from_vec(bias, (b, 1, 1, t), dev).map_err(candle)?;
        let positions = self.positions.narrow(0, 0, t).map_err(candle)?;
        let x = self
            .words
            .index_select(&ids, 0)
            .and_then(|x| x.reshape((b, t, h)))
            .and_then(|x| x.broadcast_add(&positions))
            .and_then(|x| x.broadcast_add(&self.token_type))
            .and_then(|x| x.reshape((b * t, h)))
            .and_then(|x| self.embed_norm.forward(&x))
            .map_err(candle)?;
        let mut x = dropout.apply(&x)?;
        for block in &self.blocks {
            x = self.block(block, &x, &bias, (b, t), dropout)?;
        }
        let summed = x
            .broadcast_mul(&mask_rows)
            .and_then(|x| x.reshape((b, t, h)))
            .and_then(|x| x.sum(1))
            .map_err(candle)?;
        let counts = Tensor::from_vec(
            texts.iter().map(|x| x.len().max(1) as f32).collect(),
            (b, 1),
            dev,
        )
        .map_err(candle)?;
        let mean = summed.broadcast_div(&counts).map_err(candle)?;
        let norm = mean
            .sqr()
            .and_then(|s| s.sum_keepdim(1))
            .and_then(|s| s.sqrt())
            .and_then(|s| s.clamp(1e-12, f64::MAX))
            .map_err(candle)?;
        mean.broadcast_div(&norm).map_err(candle)
    }

    fn block(
        &self,
        block: &Block,
        x: &Tensor,
        bias: &Tensor,
        (b, t): (usize, usize),
        dropout: &mut Dropout,
    ) -> Result<Tensor, AiError> {
        let (h, heads) = (EMBEDDING_DIM, self.heads);
        let d = h / heads;
        let split = |l: &Linear| {
            l.forward(x)
                .and_then(|y| y.reshape((b, t, heads, d)))
                .and_then(|y| y.transpose(1, 2))
                .and_then(|y| y.contiguous())
        };
        let q = split(&block.query).map_err(candle)?;
        let k = split(&block.key).map_err(candle)?;
        let v = split(&block.value).map_err(candle)?;
        let scores = k
            .t()
            .and_then(|kt| q.matmul(&kt))
            .and_then(|s| s / (d as f64).sqrt())
            .and_then(|s| s.broadcast_add(bias))
            .and_then(|s| softmax(&s))
            .map_err(candle)?;
        let probs = dropout.apply(&scores)?;
        let context = probs
            .matmul(&v)
            .and_then(|c| c.transpose(1, 2))
            .and_then(|c| c.reshape((b * t, h)))
            .and_then(|c| block.attn_out.forward(&c))
            .map_err(candle)?;
        let context = dropout.apply(&context)?;
        let x = (context + x)
            .and_then(|y| block.attn_norm.forward(&y))
            .map_err(candle)?;
        let up = block
            .up
            .forward(&x)
            .and_then(|u| u.gelu_erf())
            .and_then(|u| block.down.forward(&u))
            .map_err(candle)?;
        let up = dropout.apply(&up)?;
        (up + x)
            .and_then(|y| block.out_norm.forward(&y))
            .map_err(candle)
    }
}

/// Softmax over the last dimension, the maximum taken out of the graph (it only shifts).
fn softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let num = x.broadcast_sub(&max)?.exp()?;
    let den = num.sum_keepdim(D::Minus1)?;
    num.broadcast_div(&den)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::{Embedder, EmbedderOptions};

    #[test]
    fn an_epochs_batches_hold_every_example_once_each_of_one_length() {
        let tokens: Vec<Vec<u32>> = (0..100).map(|i| vec![0; 2 + i % 7]).collect();
        let mut order: Vec<usize> = (0..100).collect();
        let mut rng = SplitMix(3);
        let first = batches(&mut order, &tokens, 8, &mut rng);
        let mut seen: Vec<usize> = first.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        let mixed = first
            .iter()
            .filter(|b| b.iter().any(|&i| tokens[i].len() != tokens[b[0]].len()))
            .count();
        assert!(
            mixed <= 6,
            "at most one batch per change of length mixes lengths: {mixed}"
        );
        let second = batches(&mut order, &tokens, 8, &mut rng);
        assert_ne!(first, second, "each epoch batches differently");
    }

    /// The graph-building forward pass computes the function the fast encoder computes, for
    /// texts of different lengths padded into one batch.
    #[test]
    fn the_differentiable_encoder_embeds_as_the_fast_one_does() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(Embedder::DEFAULT_DIR);
        let texts = [
            "Where is my refund?",
            "my driver took a much longer route than the app showed and I was charged twice",
            "ok",
        ];
        let fast = Embedder::load(&dir, EmbedderOptions { threads: 2 }).expect("model");
        let want = fast.embed_batch(&texts).expect("embeds");
        let tokenizer = WordPiece::load(&dir.join(TOKENIZER)).expect("tokenizer");
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| tokenizer.ids(t).expect("ids"))
            .collect();
        let varmap = load_variables(&dir.join(WEIGHTS)).expect("weights");
        let config = read_config(&dir).expect("config");
        let encoder = Encoder::new(&varmap, &config, &dir).expect("encoder");
        let mut rng = SplitMix(1);
        let mut no_dropout = Dropout {
            rng: &mut rng,
            p: 0.0,
        };
        let batch: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let got = encoder.embed(&batch, &mut no_dropout).expect("forward");
        let got: Vec<Vec<f32>> = got.to_vec2().expect("rows");
        for (g, w) in got.iter().zip(&want) {
            let cosine: f32 = g.iter().zip(w.as_slice()).map(|(a, b)| a * b).sum();
            assert!(cosine > 0.999, "cosine {cosine}");
        }
    }
}
