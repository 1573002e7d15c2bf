//! Sentence embeddings as sentence-transformers computes them for all-MiniLM-L6-v2: the
//! encoder's last hidden states, mean-pooled over each text's tokens, L2-normalised.

use std::path::Path;

use super::AiError;
use super::bert::{Bert, Isa, Pool};
use super::tokenize::{MAX_TOKENS, TokenBatch, WordPiece};

/// Length of every [`Embedding`]: the model's hidden size.
pub const EMBEDDING_DIM: usize = 384;

/// A unit-length sentence vector (or all zeros, for a degenerate input); being normalised, the
/// dot product of two is their cosine similarity, which is what retrieval and the heads use.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// The [`EMBEDDING_DIM`] components, for storage or a classifier's input.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// An embedding read back from storage; `None` unless it has [`EMBEDDING_DIM`] components.
    pub fn from_stored(values: Vec<f32>) -> Option<Self> {
        (values.len() == EMBEDDING_DIM).then_some(Self(values))
    }

    /// Cosine similarity in `[-1, 1]`: a dot product, since both are normalised.
    pub fn cosine(&self, other: &Embedding) -> f32 {
        self.0.iter().zip(&other.0).map(|(a, b)| a * b).sum()
    }
}

/// How the embedder uses the machine.
#[derive(Clone, Debug)]
pub struct EmbedderOptions {
    /// Threads of the encoder's own pool; one forward pass is split across all of them.
    /// Defaults to the number of CPUs, which is what minimises batch-1 latency.
    pub threads: usize,
}

impl Default for EmbedderOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// all-MiniLM-L6-v2 loaded from disk, ready to embed on this CPU. Calls block for the length of
/// a forward pass: in async code go through [`super::EmbedHandle`] instead.
pub struct Embedder {
    tokenizer: WordPiece,
    bert: Bert,
    pool: Pool,
}

impl Embedder {
    /// Where the repository keeps the model, relative to its root.
    pub const DEFAULT_DIR: &str = "models/minilm";

    /// Loads `tokenizer.json`, `config.json` and `model.safetensors` from `dir`.
    pub fn load(dir: impl AsRef<Path>, options: EmbedderOptions) -> Result<Self, AiError> {
        Self::load_with(dir.as_ref(), options, Isa::detect())
    }

    fn load_with(dir: &Path, options: EmbedderOptions, isa: Isa) -> Result<Self, AiError> {
        let tokenizer = WordPiece::load(&dir.join("tokenizer.json"))?;
        let bert = Bert::load(dir, isa)?;
        let fits = bert.hidden_size() == EMBEDDING_DIM
            && tokenizer.vocab_size() <= bert.vocab_size()
            && MAX_TOKENS <= bert.max_positions();
        if !fits {
            return Err(AiError::InvalidModel {
                path: dir.to_path_buf(),
                reason: format!(
                    "hidden size {} (want {EMBEDDING_DIM}), tokenizer vocabulary {} (model {}), \
                     {} positions (want {MAX_TOKENS})",
                    bert.hidden_size(),
                    tokenizer.vocab_size(),
                    bert.vocab_size(),
                    bert.max_positions()
                ),
            });
        }
        Ok(Self {
            tokenizer,
            bert,
            pool: Pool::new(options.threads)?,
        })
    }

    /// The token ids the model sees for `text`, `[CLS]` and `[SEP]` included, truncated to 256.
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, AiError> {
        self.tokenizer.ids(text)
    }

    /// Embeds one text.
    pub fn embed(&self, text: &str) -> Result<Embedding, AiError> {
        let mut one = self.embed_batch(&[text])?;
        Ok(one
            .pop()
            .expect("embed_batch returns one embedding per text"))
    }

    /// Embeds several texts in one forward pass, which costs far less per text than one pass
    /// each; the results equal embedding each alone.
    pub fn embed_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Embedding>, AiError> {
        let batch = self.tokenizer.batch(texts)?;
        if batch.ids.is_empty() {
            return Ok(Vec::new());
        }
        let hidden = self.pool.install(|| self.bert.forward(&self.pool, &batch));
        Ok(pool_all(&hidden, &batch))
    }

    /// Embeds any number of texts in batches of [`Self::BULK_BATCH`] (a data set, a knowledge
    /// base), so no pass pads one long text's length onto hundreds of short ones.
    pub fn embed_all<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Embedding>, AiError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(Self::BULK_BATCH) {
            out.extend(self.embed_batch(chunk)?);
        }
        Ok(out)
    }

    /// Texts per pass in [`Self::embed_all`].
    pub const BULK_BATCH: usize = 32;
}

fn pool_all(hidden: &[f32], batch: &TokenBatch) -> Vec<Embedding> {
    (0..batch.len())
        .map(|text| {
            let range = batch.range(text);
            mean_pool(&hidden[range.start * EMBEDDING_DIM..range.end * EMBEDDING_DIM])
        })
        .collect()
}

/// Mean of a text's token rows, then L2-normalised as `torch.nn.functional.normalize` does
/// (dividing by the norm, at least 1e-12).
fn mean_pool(rows: &[f32]) -> Embedding {
    let mut sum = vec![0.0f32; EMBEDDING_DIM];
    for row in rows.chunks_exact(EMBEDDING_DIM) {
        sum.iter_mut().zip(row).for_each(|(s, x)| *s += x);
    }
    let count = (rows.len() / EMBEDDING_DIM).max(1) as f32;
    sum.iter_mut().for_each(|s| *s /= count);
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    sum.iter_mut().for_each(|s| *s /= norm);
    Embedding(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(f: impl Fn(usize) -> f32) -> Vec<f32> {
        (0..EMBEDDING_DIM).map(f).collect()
    }

    #[test]
    fn mean_pool_averages_rows_then_normalises() {
        let rows: Vec<f32> = [row(|i| i as f32), row(|i| 3.0 * i as f32 + 2.0)].concat();
        let got = mean_pool(&rows);
        let mean = row(|i| 2.0 * i as f32 + 1.0);
        let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt();
        for (g, m) in got.as_slice().iter().zip(&mean) {
            assert!((g - m / norm).abs() < 1e-6);
        }
        assert!((got.cosine(&got) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn mean_pool_keeps_only_the_given_rows() {
        let one = row(|i| if i == 7 { 2.0 } else { 0.0 });
        let other = row(|i| if i == 9 { 5.0 } else { 0.0 });
        let batch = TokenBatch {
            ids: vec![0, 0, 0],
            offsets: vec![0, 1, 3],
        };
        let hidden = [one.clone(), other.clone(), other].concat();
        let pooled = pool_all(&hidden, &batch);
        assert_eq!(pooled.len(), 2);
        assert_eq!(pooled[0].as_slice()[7], 1.0);
        assert_eq!(pooled[1].as_slice()[9], 1.0);
        assert_eq!(pooled[0].cosine(&pooled[1]), 0.0);
    }

    #[test]
    fn a_zero_mean_stays_zero_instead_of_dividing_by_zero() {
        let rows = [row(|i| i as f32), row(|i| -(i as f32))].concat();
        let got = mean_pool(&rows);
        assert!(got.as_slice().iter().all(|&x| x == 0.0));
    }

    #[test]
    fn portable_kernels_agree_with_the_detected_ones() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(Embedder::DEFAULT_DIR);
        let options = EmbedderOptions { threads: 2 };
        let fast = Embedder::load_with(&dir, options.clone(), Isa::detect()).expect("model");
        let portable = Embedder::load_with(&dir, options, Isa::Portable).expect("model");
        let texts = ["Where is my refund?", "thanks, that fixed it :)", ""];
        let a = fast.embed_batch(&texts).expect("embeds");
        let b = portable.embed_batch(&texts).expect("embeds");
        // f32 kernels differ from the portable one only in the order of additions; the bf16
        // ones (AVX-512 and AMX) round every dense layer's operands to 8 significant bits.
        let bound = match Isa::detect() {
            #[cfg(target_arch = "x86_64")]
            Isa::Amx | Isa::Avx512Bf16 => 0.9999,
            _ => 0.99999,
        };
        for (x, y) in a.iter().zip(&b) {
            assert!(x.cosine(y) > bound, "{}", x.cosine(y));
        }
    }

    /// The AMX kernel multiplies exactly the AVX-512 bf16 kernel's operands, so only the order
    /// of the additions in f32 differs.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn amx_tiles_agree_with_the_avx512_bf16_kernel_where_the_cpu_has_both() {
        if Isa::detect() != Isa::Amx {
            return;
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(Embedder::DEFAULT_DIR);
        let options = EmbedderOptions { threads: 2 };
        let amx = Embedder::load_with(&dir, options.clone(), Isa::Amx).expect("model");
        let avx512 = Embedder::load_with(&dir, options, Isa::Avx512Bf16).expect("model");
        let texts: Vec<String> = (1..=40)
            .map(|n| "where is my driver ".repeat(n % 13 + 1) + &n.to_string())
            .collect();
        let a = amx.embed_batch(&texts).expect("embeds");
        let b = avx512.embed_batch(&texts).expect("embeds");
        for (x, y) in a.iter().zip(&b) {
            assert!(x.cosine(y) > 0.99999, "{}", x.cosine(y));
        }
    }
}
