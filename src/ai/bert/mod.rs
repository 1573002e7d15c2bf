//! The BERT encoder of all-MiniLM-L6-v2, written for this workload rather than taken from
//! candle-transformers: candle loads the weights, and the forward pass runs on plain `f32`
//! slices with (texts × tokens) flattened into one matrix per dense layer, fused query/key/value
//! weights packed once at load, GELU and residuals fused into the matrix products, and one
//! thread split per operation. That takes batch 1 from 7.7 ms (candle's `BertModel`) to well
//! under PyTorch's time on two cores; `docs/benchmarks.md` has the figures.

mod attention;
mod linear;
mod ops;
mod pool;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use self::linear::{Epilogue, Linear, NR};
pub(crate) use self::pool::Pool;
use crate::ai::AiError;
use crate::ai::tokenize::TokenBatch;

/// Which kernels the encoder runs: chosen once at load from what the CPU offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// AVX-512 with bfloat16 and Intel's AMX tiles (Sapphire Rapids and later), granted by the
    /// kernel: the dense layers multiply the bf16 operands of `Avx512Bf16` a tile at a time
    /// (attention and the rest as `Avx512`).
    #[cfg(target_arch = "x86_64")]
    Amx,
    /// AVX-512 with its bfloat16 dot products: the dense layers multiply bf16 weights and
    /// inputs, two products per lane, and add in f32 (attention and the rest as `Avx512`).
    #[cfg(target_arch = "x86_64")]
    Avx512Bf16,
    /// AVX-512F: f16 panels widened to f32 in registers, all arithmetic f32.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// AVX2 with FMA, no AVX-512: f32 panels and 256-bit kernels.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Isa {
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            if std::arch::is_x86_feature_detected!("avx512bf16") {
                if linear::amx_available() {
                    return Isa::Amx;
                }
                return Isa::Avx512Bf16;
            }
            return Isa::Avx512;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2;
        }
        Isa::Portable
    }
}

/// The fields of `config.json` the forward pass depends on.
#[derive(Deserialize)]
struct Config {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    layer_norm_eps: f32,
    vocab_size: usize,
    max_position_embeddings: usize,
    hidden_act: String,
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

pub(crate) struct Bert {
    isa: Isa,
    hidden: usize,
    heads: usize,
    eps: f32,
    vocab: usize,
    max_positions: usize,
    words: Vec<f32>,
    /// Position embeddings with the (always zero) token type's embedding already added.
    positions: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<Layer>,
}

impl Bert {
    /// Loads `config.json` and `model.safetensors` (any float type; widened to f32) from `dir`.
    pub(crate) fn load(dir: &Path, isa: Isa) -> Result<Self, AiError> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|source| AiError::ModelIo {
            path: config_path.clone(),
            source,
        })?;
        let invalid = |reason: String| AiError::InvalidModel {
            path: dir.to_path_buf(),
            reason,
        };
        let config: Config =
            serde_json::from_str(&text).map_err(|e| invalid(format!("config.json: {e}")))?;
        let h = config.hidden_size;
        if config.hidden_act != "gelu"
            || config.num_attention_heads == 0
            || !h.is_multiple_of(config.num_attention_heads)
            || !h.is_multiple_of(NR)
            || !config.intermediate_size.is_multiple_of(NR)
        {
            return Err(invalid(format!(
                "unsupported shape or activation (hidden {h}, heads {}, intermediate {}, {})",
                config.num_attention_heads, config.intermediate_size, config.hidden_act
            )));
        }
        let weights = Weights::open(&dir.join("model.safetensors"))?;
        let (v, p, i) = (
            config.vocab_size,
            config.max_position_embeddings,
            config.intermediate_size,
        );
        let mut positions = weights.get("embeddings.position_embeddings.weight", &[p, h])?;
        let token_type = weights.get("embeddings.token_type_embeddings.weight", &[2, h])?;
        for row in positions.chunks_exact_mut(h) {
            ops::add(row, &token_type[..h]);
        }
        let layers = (0..config.num_hidden_layers)
            .map(|l| {
                let name = |s: &str| format!("encoder.layer.{l}.{s}");
                let mut qkv_w = Vec::with_capacity(3 * h * h);
                let mut qkv_b = Vec::with_capacity(3 * h);
                for part in ["query", "key", "value"] {
                    qkv_w.extend(
                        weights.get(&name(&format!("attention.self.{part}.weight")), &[h, h])?,
                    );
                    qkv_b.extend(weights.get(&name(&format!("attention.self.{part}.bias")), &[h])?);
                }
                Ok(Layer {
                    qkv: Linear::new(isa, &qkv_w, qkv_b, 3 * h, h),
                    attn_out: weights.linear(isa, &name("attention.output.dense"), h, h)?,
                    attn_norm: weights.norm(&name("attention.output.LayerNorm"), h)?,
                    up: weights.linear(isa, &name("intermediate.dense"), i, h)?,
                    down: weights.linear(isa, &name("output.dense"), h, i)?,
                    out_norm: weights.norm(&name("output.LayerNorm"), h)?,
                })
            })
            .collect::<Result<_, AiError>>()?;
        Ok(Self {
            isa,
            hidden: h,
            heads: config.num_attention_heads,
            eps: config.layer_norm_eps,
            vocab: v,
            max_positions: p,
            words: weights.get("embeddings.word_embeddings.weight", &[v, h])?,
            positions,
            embed_norm: weights.norm("embeddings.LayerNorm", h)?,
            layers,
        })
    }

    pub(crate) fn hidden_size(&self) -> usize {
        self.hidden
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.vocab
    }

    pub(crate) fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// The last hidden state of every token of `batch` (`tokens × hidden`). Token ids must be
    /// below [`Self::vocab_size`] and texts no longer than [`Self::max_positions`]; the
    /// embedder guarantees both at load.
    pub(crate) fn forward(&self, pool: &Pool, batch: &TokenBatch) -> Vec<f32> {
        let (h, m) = (self.hidden, batch.ids.len());
        let mut hidden = vec![0.0f32; m * h];
        for text in 0..batch.len() {
            let range = batch.range(text);
            for (pos, t) in range.enumerate() {
                let id = batch.ids[t] as usize;
                let row = &mut hidden[t * h..(t + 1) * h];
                row.copy_from_slice(&self.words[id * h..(id + 1) * h]);
                ops::add(row, &self.positions[pos * h..(pos + 1) * h]);
            }
        }
        self.norm(pool, &mut hidden, &self.embed_norm);
        let inter = self.layers.first().map_or(0, |l| l.up.out_features());
        let mut qkv = vec![0.0f32; m * 3 * h];
        let mut ctx = vec![0.0f32; m * h];
        let mut next = vec![0.0f32; m * h];
        let mut up = vec![0.0f32; m * inter];
        for layer in &self.layers {
            layer
                .qkv
                .forward(pool, &hidden, m, &mut qkv, Epilogue::Bias);
            attention::attention(self.isa, pool, &qkv, batch, self.heads, &mut ctx);
            let residual = Epilogue::Residual(&hidden);
            layer.attn_out.forward(pool, &ctx, m, &mut next, residual);
            self.norm(pool, &mut next, &layer.attn_norm);
            std::mem::swap(&mut hidden, &mut next);
            layer.up.forward(pool, &hidden, m, &mut up, Epilogue::Gelu);
            let residual = Epilogue::Residual(&hidden);
            layer.down.forward(pool, &up, m, &mut next, residual);
            self.norm(pool, &mut next, &layer.out_norm);
            std::mem::swap(&mut hidden, &mut next);
        }
        hidden
    }

    fn norm(&self, pool: &Pool, rows: &mut [f32], norm: &Norm) {
        let (isa, eps) = (self.isa, self.eps);
        pool.split_rows(rows, self.hidden, &|_, rows| match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the AVX-512 kinds are only chosen after detecting AVX-512F at run time.
            Isa::Amx | Isa::Avx512 | Isa::Avx512Bf16 => unsafe {
                layer_norm_avx512(rows, norm, eps)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2` is only chosen after detecting AVX2 and FMA at run time.
            Isa::Avx2 => unsafe { layer_norm_avx2(rows, norm, eps) },
            Isa::Portable => ops::layer_norm(rows, &norm.gamma, &norm.beta, eps),
        });
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn layer_norm_avx512(rows: &mut [f32], norm: &Norm, eps: f32) {
    ops::layer_norm(rows, &norm.gamma, &norm.beta, eps)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn layer_norm_avx2(rows: &mut [f32], norm: &Norm, eps: f32) {
    ops::layer_norm(rows, &norm.gamma, &norm.beta, eps)
}

/// The safetensors file, read once, with shape-checked access by name.
struct Weights {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    fn open(path: &Path) -> Result<Self, AiError> {
        if !path.is_file() {
            return Err(AiError::ModelIo {
                path: path.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|source| {
            AiError::Weights {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
        })
    }

    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, AiError> {
        let tensor = self
            .tensors
            .get(name)
            .ok_or_else(|| AiError::InvalidModel {
                path: self.path.clone(),
                reason: format!("no tensor {name}"),
            })?;
        if tensor.dims() != shape {
            return Err(AiError::InvalidModel {
                path: self.path.clone(),
                reason: format!("{name} has shape {:?}, expected {shape:?}", tensor.dims()),
            });
        }
        tensor
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|source| AiError::Weights {
                path: self.path.clone(),
                source,
            })
    }

    fn linear(&self, isa: Isa, prefix: &str, n: usize, k: usize) -> Result<Linear, AiError> {
        let weight = self.get(&format!("{prefix}.weight"), &[n, k])?;
        let bias = self.get(&format!("{prefix}.bias"), &[n])?;
        Ok(Linear::new(isa, &weight, bias, n, k))
    }

    fn norm(&self, prefix: &str, h: usize) -> Result<Norm, AiError> {
        Ok(Norm {
            gamma: self.get(&format!("{prefix}.weight"), &[h])?,
            beta: self.get(&format!("{prefix}.bias"), &[h])?,
        })
    }
}
