//! Multi-head self-attention over packed sequences: each token attends only to the tokens of
//! its own text, so a batch needs neither padding nor a mask.

use super::Isa;
use super::ops;
use super::pool::Pool;
use crate::ai::tokenize::TokenBatch;

/// Writes the attention context (`m × h`) for the fused `m × 3h` query/key/value rows.
pub(crate) fn attention(
    isa: Isa,
    pool: &Pool,
    qkv: &[f32],
    batch: &TokenBatch,
    heads: usize,
    ctx: &mut [f32],
) {
    let m = batch.ids.len();
    let h = ctx.len() / m.max(1);
    assert_eq!(qkv.len(), 3 * ctx.len(), "fused q/k/v shape");
    // Keys transposed (`h × m`) so query-key products run along contiguous memory.
    let mut keys_t = vec![0.0f32; h * m];
    for (t, row) in qkv.chunks_exact(3 * h).enumerate() {
        for (c, &k) in row[h..2 * h].iter().enumerate() {
            keys_t[c * m + t] = k;
        }
    }
    let job = Rows {
        qkv,
        keys_t: &keys_t,
        batch,
        heads,
        h,
    };
    pool.split_rows(ctx, h, &|first, rows| match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the AVX-512 kinds are only chosen after detecting AVX-512F at run time.
        Isa::Amx | Isa::Avx512 | Isa::Avx512Bf16 => unsafe { job.run_avx512(first, rows) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2` is only chosen after detecting AVX2 and FMA at run time.
        Isa::Avx2 => unsafe { job.run_avx2(first, rows) },
        Isa::Portable => job.run(first, rows),
    });
}

struct Rows<'a> {
    qkv: &'a [f32],
    keys_t: &'a [f32],
    batch: &'a TokenBatch,
    heads: usize,
    h: usize,
}

impl Rows<'_> {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run_avx512(&self, first: usize, out: &mut [f32]) {
        self.run(first, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(&self, first: usize, out: &mut [f32]) {
        self.run(first, out)
    }

    /// Context rows for tokens `first..`, one `h`-float row each in `out`.
    #[inline(always)]
    fn run(&self, first: usize, out: &mut [f32]) {
        let (h, m) = (self.h, self.batch.ids.len());
        let hd = h / self.heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut scores = vec![0.0f32; self.batch.longest()];
        for (i, out_row) in out.chunks_exact_mut(h).enumerate() {
            let t = first + i;
            let text = self.batch.offsets.partition_point(|&o| o <= t) - 1;
            let seq = self.batch.range(text);
            let scores = &mut scores[..seq.len()];
            let q_row = &self.qkv[t * 3 * h..t * 3 * h + h];
            for head in 0..self.heads {
                scores.fill(0.0);
                for d in 0..hd {
                    let c = head * hd + d;
                    let q = q_row[c] * scale;
                    let keys = &self.keys_t[c * m + seq.start..c * m + seq.end];
                    for (s, k) in scores.iter_mut().zip(keys) {
                        *s += q * k;
                    }
                }
                ops::softmax(scores);
                let o = &mut out_row[head * hd..(head + 1) * hd];
                o.fill(0.0);
                for (j, &p) in scores.iter().enumerate() {
                    let v = (seq.start + j) * 3 * h + 2 * h + head * hd;
                    for (o, v) in o.iter_mut().zip(&self.qkv[v..v + hd]) {
                        *o += p * v;
                    }
                }
            }
        }
    }
}
