//! WordPiece tokenisation, configured as sentence-transformers runs it for this model.

use std::ops::Range;
use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams};

use super::AiError;

/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2, special tokens included.
pub(crate) const MAX_TOKENS: usize = 256;

/// Several texts' token ids laid end to end, without padding: the encoder runs its dense layers
/// over every real token as one matrix and attends within each text's own range, so no work is
/// spent on padding at all (the limit of "pad per batch to the longest").
#[derive(Debug, Default)]
pub(crate) struct TokenBatch {
    pub(crate) ids: Vec<u32>,
    /// `offsets[i]..offsets[i + 1]` are the tokens of text `i`.
    pub(crate) offsets: Vec<usize>,
}

impl TokenBatch {
    pub(crate) fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub(crate) fn range(&self, text: usize) -> Range<usize> {
        self.offsets[text]..self.offsets[text + 1]
    }

    pub(crate) fn longest(&self) -> usize {
        (0..self.len())
            .map(|i| self.range(i).len())
            .max()
            .unwrap_or(0)
    }
}

/// The model's tokenizer with its shipped fixed padding (to 128 tokens, 8× the work for a
/// typical support message) turned off and truncation set to [`MAX_TOKENS`].
pub(crate) struct WordPiece {
    inner: Tokenizer,
}

impl WordPiece {
    pub(crate) fn load(path: &Path) -> Result<Self, AiError> {
        let bytes = std::fs::read(path).map_err(|source| AiError::ModelIo {
            path: path.to_path_buf(),
            source,
        })?;
        let mut inner = Tokenizer::from_bytes(bytes).map_err(AiError::Tokenizer)?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(AiError::Tokenizer)?;
        Ok(Self { inner })
    }

    /// Largest id plus one: the encoder checks its embedding table covers it.
    pub(crate) fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub(crate) fn ids(&self, text: &str) -> Result<Vec<u32>, AiError> {
        let encoding = self
            .inner
            .encode_fast(text, true)
            .map_err(AiError::Tokenizer)?;
        Ok(encoding.get_ids().to_vec())
    }

    pub(crate) fn batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<TokenBatch, AiError> {
        let mut batch = TokenBatch {
            ids: Vec::with_capacity(texts.len() * 24),
            offsets: Vec::with_capacity(texts.len() + 1),
        };
        batch.offsets.push(0);
        for text in texts {
            let encoding = self
                .inner
                .encode_fast(text.as_ref(), true)
                .map_err(AiError::Tokenizer)?;
            batch.ids.extend_from_slice(encoding.get_ids());
            batch.offsets.push(batch.ids.len());
        }
        Ok(batch)
    }
}
