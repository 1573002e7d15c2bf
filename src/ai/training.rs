//! What the AI module's training code shares: a seeded generator, MiniLM's forward pass
//! written with candle tensors so it can be differentiated, and the model folders fine-tuning
//! writes. Fine-tuning for intents is [`super::intent::fine_tune`]; for retrieval queries,
//! [`super::retrieval::tune_queries`]. Both write a folder the fast [`super::Embedder`] loads
//! like the shipped one (the fast encoder in `ai::bert` computes the same function without a
//! graph).

use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{AdamW, Linear, Module, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::tokenize::WordPiece;
use super::{AiError, EMBEDDING_DIM, staging_path};

/// The file a tuned folder holds beside the model's own three: what the tuning did.
pub const TUNING_FILE: &str = "tuning.json";

/// splitmix64: a seeded generator for initial weights, dropout masks and example order, so a
/// retrain on the same data gives the same head (candle cannot seed its CPU generator).
pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Fisher–Yates.
    pub(crate) fn shuffle(&mut self, items: &mut [usize]) {
        for i in (1..items.len()).rev() {
            items.swap(i, (self.next_u64() % (i as u64 + 1)) as usize);
        }
    }

    /// PyTorch's default `nn.Linear` initialisation: uniform in `±1/√fan_in`.
    pub(crate) fn init(
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
    pub(crate) fn dropout(&mut self, h: &Tensor, p: f32) -> Result<Tensor, AiError> {
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

/// The files a model folder holds; the tuned one copies the first two from its base.
const CONFIG: &str = "config.json";
const TOKENIZER: &str = "tokenizer.json";
const WEIGHTS: &str = "model.safetensors";

/// The word embeddings: 30,522 rows of which a batch touches a few dozen, yet AdamW rewrites
/// all 11.7 million values at every step. They are trained only when asked.
const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";

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

/// Passes `epochs` times over the examples whose token ids are `tokens`, in [`batches`] of
/// `batch_size`. `step` trains on one batch (positions in `tokens`), given the share of the
/// run still ahead (for the learning rates' linear decay to zero) and the run's generator (for
/// dropout), and returns the batch's mean loss; `progress` hears each epoch's number and mean
/// loss. Returns the epochs' mean losses.
pub(crate) fn run_epochs(
    tokens: &[Vec<u32>],
    epochs: usize,
    batch_size: usize,
    rng: &mut SplitMix,
    mut step: impl FnMut(&[usize], f64, &mut SplitMix) -> Result<f64, AiError>,
    mut progress: impl FnMut(usize, f64),
) -> Result<Vec<f64>, AiError> {
    let size = batch_size.max(1);
    let total = (tokens.len().div_ceil(size) * epochs).max(1);
    let mut order: Vec<usize> = (0..tokens.len()).collect();
    let mut losses = Vec::with_capacity(epochs);
    let mut done = 0;
    for epoch in 0..epochs {
        let mut sum = 0.0;
        for chunk in batches(&mut order, tokens, size, rng) {
            let ahead = 1.0 - done as f64 / total as f64;
            sum += step(&chunk, ahead, rng)? * chunk.len() as f64;
            done += 1;
        }
        let mean = sum / tokens.len().max(1) as f64;
        progress(epoch + 1, mean);
        losses.push(mean);
    }
    Ok(losses)
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

/// The [`TUNING_FILE`] of the tuned folder `dir` read as `T`, with its bytes. A report of the
/// other kind of tuning (`Other`) is refused with `instead`, which says what the folder holds.
pub(crate) fn read_report<T: serde::de::DeserializeOwned, Other: serde::de::DeserializeOwned>(
    dir: &Path,
    instead: &str,
) -> Result<(T, Vec<u8>), AiError> {
    let path = dir.join(TUNING_FILE);
    let bytes = std::fs::read(&path).map_err(|source| AiError::ModelIo {
        path: path.clone(),
        source,
    })?;
    match serde_json::from_slice(&bytes) {
        Ok(report) => Ok((report, bytes)),
        Err(e) => {
            let reason = if serde_json::from_slice::<Other>(&bytes).is_ok() {
                instead.to_owned()
            } else {
                e.to_string()
            };
            Err(AiError::InvalidModel { path, reason })
        }
    }
}

/// A JSON file of a model folder.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, AiError> {
    let text = std::fs::read_to_string(path).map_err(|source| AiError::ModelIo {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| AiError::InvalidModel {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// MiniLM loaded for fine-tuning: its tokenizer, its weights as the variables of a [`VarMap`]
/// (f32, under their own names), and the forward pass over them.
pub(crate) struct Tunable {
    base: PathBuf,
    /// Whether the optimiser trains [`WORD_EMBEDDINGS`] too.
    words: bool,
    pub tokenizer: WordPiece,
    pub encoder: Encoder,
    varmap: VarMap,
}

impl Tunable {
    /// Loads the model folder `base` (`config.json`, `tokenizer.json`, `model.safetensors`);
    /// with `words`, gradients reach the word embeddings and the optimiser trains them.
    pub(crate) fn load(base: &Path, words: bool) -> Result<Self, AiError> {
        let tokenizer = WordPiece::load(&base.join(TOKENIZER))?;
        let config: Config = read_json(&base.join(CONFIG))?;
        let weights = base.join(WEIGHTS);
        let varmap = load_variables(&weights)?;
        let encoder = Encoder::new(&varmap, &config, &weights, words)?;
        Ok(Self {
            base: base.to_path_buf(),
            words,
            tokenizer,
            encoder,
            varmap,
        })
    }

    /// The token ids of each text.
    pub(crate) fn token_ids<'a>(
        &self,
        texts: impl Iterator<Item = &'a str>,
    ) -> Result<Vec<Vec<u32>>, AiError> {
        texts.map(|t| self.tokenizer.ids(t)).collect()
    }

    /// [`Encoder::embed`] of the texts at positions `chunk` of `tokens`.
    pub(crate) fn embed(
        &self,
        tokens: &[Vec<u32>],
        chunk: &[usize],
        dropout: &mut Dropout,
    ) -> Result<Tensor, AiError> {
        let batch: Vec<&[u32]> = chunk.iter().map(|&i| tokens[i].as_slice()).collect();
        self.encoder.embed(&batch, dropout)
    }

    /// AdamW over the encoder's variables, [`WORD_EMBEDDINGS`] only when they are trained.
    pub(crate) fn optimiser(
        &self,
        learning_rate: f64,
        weight_decay: f64,
    ) -> Result<AdamW, AiError> {
        let vars = self.varmap.data().lock().map_err(|_| poisoned())?;
        let trainable = vars
            .iter()
            .filter(|(name, _)| self.words || name.as_str() != WORD_EMBEDDINGS)
            .map(|(_, var)| var.clone())
            .collect();
        adamw(trainable, learning_rate, weight_decay)
    }

    /// Writes the tuned weights (f32, under the base's names) with the base's config and
    /// tokenizer and the tuning report (`tuning`, as [`TUNING_FILE`]) to a fresh folder beside
    /// `out`, lets `extra` add its own files there, then renames the folder into place.
    pub(crate) fn write(
        &self,
        tuning: &[u8],
        extra: impl FnOnce(&Path) -> Result<(), AiError>,
        out: &Path,
    ) -> Result<(), AiError> {
        let staging = staging_path(out);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| AiError::ModelIo { path, source }
        };
        std::fs::create_dir_all(&staging).map_err(io(&staging))?;
        for file in [CONFIG, TOKENIZER] {
            let from = self.base.join(file);
            std::fs::copy(&from, staging.join(file)).map_err(io(&from))?;
        }
        self.varmap.save(staging.join(WEIGHTS)).map_err(candle)?;
        std::fs::write(staging.join(TUNING_FILE), tuning).map_err(io(&staging))?;
        extra(&staging)?;
        if out.exists() {
            std::fs::remove_dir_all(out).map_err(io(out))?;
        }
        std::fs::rename(&staging, out).map_err(io(out))
    }
}

/// A tuning report as the bytes of the [`TUNING_FILE`] to be written into `out`.
pub(crate) fn tuning_bytes(report: &impl Serialize, out: &Path) -> Result<Vec<u8>, AiError> {
    serde_json::to_vec_pretty(report).map_err(|e| AiError::InvalidModel {
        path: out.join(TUNING_FILE),
        reason: e.to_string(),
    })
}

/// AdamW at `learning_rate` with decoupled `weight_decay`, PyTorch's other defaults.
pub(crate) fn adamw(
    vars: Vec<Var>,
    learning_rate: f64,
    weight_decay: f64,
) -> Result<AdamW, AiError> {
    let params = ParamsAdamW {
        lr: learning_rate,
        weight_decay,
        ..Default::default()
    };
    AdamW::new(vars, params).map_err(candle)
}

/// A candle error of training, as the engine reports it.
pub(crate) fn candle(source: candle_core::Error) -> AiError {
    AiError::Training(Box::new(source))
}

pub(crate) fn poisoned() -> AiError {
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

/// Inverted dropout with masks from the run's seeded generator, so a run can be repeated.
pub(crate) struct Dropout<'a> {
    pub rng: &'a mut SplitMix,
    pub p: f32,
}

impl Dropout<'_> {
    pub(crate) fn apply(&mut self, x: &Tensor) -> Result<Tensor, AiError> {
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
pub(crate) struct Encoder {
    words: Tensor,
    positions: Tensor,
    token_type: Tensor,
    embed_norm: Norm,
    blocks: Vec<Block>,
    heads: usize,
}

impl Encoder {
    fn new(varmap: &VarMap, config: &Config, path: &Path, words: bool) -> Result<Self, AiError> {
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
            let table = e.get((config.vocab_size, h), "word_embeddings.weight")?;
            Ok(Self {
                words: if words { table } else { table.detach() },
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
    pub(crate) fn embed(&self, texts: &[&[u32]], dropout: &mut Dropout) -> Result<Tensor, AiError> {
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

    /// Gradients reach the word embeddings, and the optimiser changes them, only when asked.
    #[test]
    fn the_word_embeddings_are_trained_only_when_asked() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(Embedder::DEFAULT_DIR);
        for words in [false, true] {
            let tunable = Tunable::load(&dir, words).expect("model");
            let ids = tunable.tokenizer.ids("refund my trip").expect("ids");
            let mut rng = SplitMix(1);
            let mut no_dropout = Dropout {
                rng: &mut rng,
                p: 0.0,
            };
            let pooled = tunable
                .encoder
                .embed(&[&ids], &mut no_dropout)
                .expect("forward");
            let grads = pooled
                .sum_all()
                .and_then(|s| s.backward())
                .expect("backward");
            let table = tunable.varmap.data().lock().expect("variables")[WORD_EMBEDDINGS].clone();
            let row = |i: u32| {
                table
                    .as_tensor()
                    .get(i as usize)
                    .and_then(|r| r.to_vec1::<f32>())
                    .expect("a row")
            };
            let before = row(ids[1]);
            let mut optimiser = tunable.optimiser(1e-3, 0.0).expect("optimiser");
            optimiser.step(&grads).expect("a step");
            assert_eq!(
                grads.get(table.as_tensor()).is_some(),
                words,
                "gradient, words {words}"
            );
            assert_eq!(
                row(ids[1]) != before,
                words,
                "the text's word changed, words {words}"
            );
        }
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
        let tunable = Tunable::load(&dir, false).expect("model");
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| tunable.tokenizer.ids(t).expect("ids"))
            .collect();
        let mut rng = SplitMix(1);
        let mut no_dropout = Dropout {
            rng: &mut rng,
            p: 0.0,
        };
        let batch: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        let got = tunable
            .encoder
            .embed(&batch, &mut no_dropout)
            .expect("forward");
        let got: Vec<Vec<f32>> = got.to_vec2().expect("rows");
        for (g, w) in got.iter().zip(&want) {
            let cosine: f32 = g.iter().zip(w.as_slice()).map(|(a, b)| a * b).sum();
            assert!(cosine > 0.999, "cosine {cosine}");
        }
    }
}
