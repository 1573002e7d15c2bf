//! Dense layers, `y = x·Wᵀ + b`, over every token of a batch as one matrix.
//!
//! The weights are packed once at load into panels of [`NR`] output columns (`k × NR`,
//! contiguous), so the inner loop streams one panel from cache while a tile of rows × [`NR`]
//! accumulators stays in registers. Threads split the output columns: each reads only its half
//! of the weights, which is what bounds batch-1 latency. On x86-64 with AVX-512 the panels keep
//! the weights' f16 bits (as shipped) and the tile kernel widens them to f32 in registers: the
//! arithmetic is f32 on exactly the same values, with half the memory traffic, and the 21 MB of
//! weights fit the L3 cache where 42 MB of f32 did not. With AVX2 and FMA but no AVX-512, a
//! 256-bit kernel runs on f32 panels, two rows at a time. Elsewhere a portable kernel of the
//! same shape runs on f32 panels and lets the compiler vectorise.

use std::ops::Range;

use super::Isa;
use super::ops;
use super::pool::Pool;

/// Output columns per packed panel: two 16-lane AVX-512 vectors.
pub(crate) const NR: usize = 32;
/// Rows per register tile: 2 × MR accumulators plus two panel vectors fit the 32 registers.
const MR: usize = 12;
/// Panels a thread keeps hot while it walks down all row tiles.
const PANELS_PER_BLOCK: usize = 4;

/// What to do with `x·Wᵀ + b` before it is stored.
#[derive(Clone, Copy)]
pub(crate) enum Epilogue<'a> {
    /// Store as is.
    Bias,
    /// Apply GELU (the erf form BERT was trained with).
    Gelu,
    /// Add a residual of the output's shape.
    Residual(&'a [f32]),
}

pub(crate) struct Linear {
    k: usize,
    n: usize,
    panels: Panels,
    bias: Vec<f32>,
}

/// The packed weights, in the format of the kernel chosen at load.
enum Panels {
    F32(Vec<f32>),
    /// f32 panels for the AVX2 + FMA kernel.
    #[cfg(target_arch = "x86_64")]
    F32Avx2(Vec<f32>),
    /// IEEE half-precision bit patterns.
    #[cfg(target_arch = "x86_64")]
    F16(Vec<u16>),
}

/// Panels of `NR` columns, `k × NR` each, from a row-major `n × k` matrix.
fn pack<T: Copy + Default>(
    weight: &[f32],
    n: usize,
    k: usize,
    convert: impl Fn(f32) -> T,
) -> Vec<T> {
    let mut packed = vec![T::default(); n * k];
    for (panel, dst) in packed.chunks_exact_mut(k * NR).enumerate() {
        for p in 0..k {
            for j in 0..NR {
                dst[p * NR + j] = convert(weight[(panel * NR + j) * k + p]);
            }
        }
    }
    packed
}

/// The output pointer shared by threads that write disjoint column ranges.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: threads given an `Out` write only the columns of their own panel range (see
// `Linear::forward`), so no element is written by two threads or read while written.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Linear {
    /// `weight` is `n × k`, row-major (as PyTorch stores `nn.Linear`); `n` must be a multiple
    /// of [`NR`], which the loader checks for every layer. With [`Isa::Avx512`] the weights
    /// are stored as f16, so they must be f16 values widened to f32, as the shipped model is.
    pub(crate) fn new(isa: Isa, weight: &[f32], bias: Vec<f32>, n: usize, k: usize) -> Self {
        debug_assert!(n.is_multiple_of(NR) && weight.len() == n * k && bias.len() == n);
        let panels = match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Panels::F16(pack(weight, n, k, |w| half::f16::from_f32(w).to_bits())),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Panels::F32Avx2(pack(weight, n, k, |w| w)),
            Isa::Portable => Panels::F32(pack(weight, n, k, |w| w)),
        };
        Self { k, n, panels, bias }
    }

    pub(crate) fn out_features(&self) -> usize {
        self.n
    }

    /// Writes `m × n` outputs for `m × k` inputs into `out`.
    pub(crate) fn forward(
        &self,
        pool: &Pool,
        x: &[f32],
        m: usize,
        out: &mut [f32],
        epilogue: Epilogue,
    ) {
        assert_eq!(x.len(), m * self.k, "input shape");
        assert_eq!(out.len(), m * self.n, "output shape");
        if let Epilogue::Residual(r) = epilogue {
            assert_eq!(r.len(), out.len(), "residual shape");
        }
        let out = Out(out.as_mut_ptr());
        pool.split(self.n / NR, &|panels| {
            // SAFETY: shapes were checked above; each thread gets a disjoint panel range, so
            // it writes only its own columns of `out`.
            unsafe { self.panels(x, m, out, panels, epilogue) }
        });
    }

    /// # Safety
    /// `x` is `m × k`, `out` points to `m × n` floats, and no other thread touches the columns
    /// of `panels`.
    unsafe fn panels(
        &self,
        x: &[f32],
        m: usize,
        out: Out,
        panels: Range<usize>,
        epilogue: Epilogue,
    ) {
        match &self.panels {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: f16 panels are only built for `Isa::Avx512`, chosen after detecting
            // AVX-512F at run time.
            Panels::F16(packed) => unsafe {
                self.panels_avx512(packed, x, m, out, panels, epilogue)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 panels are only built for `Isa::Avx2`, chosen after detecting AVX2
            // and FMA at run time.
            Panels::F32Avx2(packed) => unsafe {
                self.panels_avx2(packed, x, m, out, panels, epilogue)
            },
            Panels::F32(packed) => unsafe {
                self.panels_with(packed, x, m, out, panels, epilogue, tile_portable)
            },
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn panels_avx512(
        &self,
        packed: &[u16],
        x: &[f32],
        m: usize,
        out: Out,
        panels: Range<usize>,
        epilogue: Epilogue,
    ) {
        // SAFETY: forwarded from the caller's contract; the target feature is enabled here.
        unsafe { self.panels_with(packed, x, m, out, panels, epilogue, avx512::tile) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn panels_avx2(
        &self,
        packed: &[f32],
        x: &[f32],
        m: usize,
        out: Out,
        panels: Range<usize>,
        epilogue: Epilogue,
    ) {
        // SAFETY: forwarded from the caller's contract; the target features are enabled here.
        unsafe { self.panels_with(packed, x, m, out, panels, epilogue, avx2::tile) }
    }

    /// The blocked loop shared by the kernels; inlined so the epilogue is vectorised with the
    /// caller's target features.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn panels_with<T>(
        &self,
        packed: &[T],
        x: &[f32],
        m: usize,
        out: Out,
        panels: Range<usize>,
        epilogue: Epilogue,
        tile: unsafe fn(usize, *const f32, *const T, usize, *const f32, *mut f32, usize),
    ) {
        let (k, n) = (self.k, self.n);
        let mut block = panels.start;
        while block < panels.end {
            let block_end = (block + PANELS_PER_BLOCK).min(panels.end);
            let mut row = 0;
            while row < m {
                let rows = MR.min(m - row);
                for panel in block..block_end {
                    let col = panel * NR;
                    // SAFETY: row < m and col + NR <= n, so every pointer stays inside `x`,
                    // the packed panel, the bias and `out` (checked shapes, caller contract).
                    unsafe {
                        let c = out.0.add(row * n + col);
                        tile(
                            rows,
                            x.as_ptr().add(row * k),
                            packed.as_ptr().add(panel * k * NR),
                            k,
                            self.bias.as_ptr().add(col),
                            c,
                            n,
                        );
                        for r in 0..rows {
                            let dst = std::slice::from_raw_parts_mut(c.add(r * n), NR);
                            match epilogue {
                                Epilogue::Bias => {}
                                Epilogue::Gelu => ops::gelu(dst),
                                Epilogue::Residual(res) => {
                                    let at = (row + r) * n + col;
                                    ops::add(dst, &res[at..at + NR]);
                                }
                            }
                        }
                    }
                }
                row += rows;
            }
            block = block_end;
        }
    }
}

/// `c[rows × NR] = a[rows × k] · b[k × NR] + bias` for `rows <= MR`, in plain Rust.
///
/// # Safety
/// `a` holds `rows × k` floats, `b` `k × NR` floats, `bias` `NR` floats, and `c` `rows` rows
/// of `NR` writable floats `ldc` apart.
unsafe fn tile_portable(
    rows: usize,
    a: *const f32,
    b: *const f32,
    k: usize,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
) {
    let mut acc = [[0.0f32; NR]; MR];
    for p in 0..k {
        // SAFETY: p < k and r < rows, inside the buffers the caller vouched for.
        let b_row = unsafe { &*(b.add(p * NR) as *const [f32; NR]) };
        for (r, acc_row) in acc.iter_mut().enumerate().take(rows) {
            let av = unsafe { *a.add(r * k + p) };
            for (acc, &bv) in acc_row.iter_mut().zip(b_row) {
                *acc += av * bv;
            }
        }
    }
    // SAFETY: as above.
    let bias = unsafe { &*(bias as *const [f32; NR]) };
    for (r, acc_row) in acc.iter().enumerate().take(rows) {
        let dst = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), NR) };
        for ((d, &v), &b) in dst.iter_mut().zip(acc_row).zip(bias) {
            *d = v + b;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{MR, NR};

    /// The AVX-512 twin of `tile_portable`, same contract except that `b` holds f16 bits;
    /// `rows` picks a kernel whose accumulators are all registers.
    pub(super) unsafe fn tile(
        rows: usize,
        a: *const f32,
        b: *const u16,
        k: usize,
        bias: *const f32,
        c: *mut f32,
        ldc: usize,
    ) {
        macro_rules! dispatch {
            ($($r:literal)*) => {
                match rows {
                    // SAFETY: the caller's contract, and AVX-512F was detected before
                    // `Isa::Avx512` (the only way here) was chosen.
                    $($r => unsafe { tile_rows::<$r>(a, b, k, bias, c, ldc) },)*
                    _ => unreachable!("row tiles hold 1..=MR rows"),
                }
            };
        }
        const _: () = assert!(MR == 12);
        dispatch!(1 2 3 4 5 6 7 8 9 10 11 12)
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn tile_rows<const R: usize>(
        a: *const f32,
        b: *const u16,
        k: usize,
        bias: *const f32,
        c: *mut f32,
        ldc: usize,
    ) {
        // SAFETY: every access is inside the buffers of the caller's contract.
        unsafe {
            let mut lo = [_mm512_setzero_ps(); R];
            let mut hi = [_mm512_setzero_ps(); R];
            for p in 0..k {
                let b_lo = _mm512_cvtph_ps(_mm256_loadu_si256(b.add(p * NR).cast()));
                let b_hi = _mm512_cvtph_ps(_mm256_loadu_si256(b.add(p * NR + 16).cast()));
                for r in 0..R {
                    let av = _mm512_set1_ps(*a.add(r * k + p));
                    lo[r] = _mm512_fmadd_ps(av, b_lo, lo[r]);
                    hi[r] = _mm512_fmadd_ps(av, b_hi, hi[r]);
                }
            }
            let bias_lo = _mm512_loadu_ps(bias);
            let bias_hi = _mm512_loadu_ps(bias.add(16));
            for r in 0..R {
                _mm512_storeu_ps(c.add(r * ldc), _mm512_add_ps(lo[r], bias_lo));
                _mm512_storeu_ps(c.add(r * ldc + 16), _mm512_add_ps(hi[r], bias_hi));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::NR;

    /// The AVX2 + FMA twin of `tile_portable`, same contract. Sixteen 256-bit registers hold
    /// two rows of `NR` accumulators plus one panel row, so the tile goes two rows at a time.
    pub(super) unsafe fn tile(
        rows: usize,
        a: *const f32,
        b: *const f32,
        k: usize,
        bias: *const f32,
        c: *mut f32,
        ldc: usize,
    ) {
        let mut r = 0;
        while r < rows {
            // SAFETY: rows r.. of `a` and `c` are inside the caller's buffers, and AVX2 and
            // FMA were detected before `Isa::Avx2` (the only way here) was chosen.
            unsafe {
                let (a, c) = (a.add(r * k), c.add(r * ldc));
                if rows - r >= 2 {
                    tile_rows::<2>(a, b, k, bias, c, ldc);
                } else {
                    tile_rows::<1>(a, b, k, bias, c, ldc);
                }
            }
            r += 2;
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_rows<const R: usize>(
        a: *const f32,
        b: *const f32,
        k: usize,
        bias: *const f32,
        c: *mut f32,
        ldc: usize,
    ) {
        const V: usize = NR / 8;
        const _: () = assert!(V == 4);
        // SAFETY: every access is inside the buffers of the caller's contract.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); V]; R];
            for p in 0..k {
                let panel = b.add(p * NR);
                let bv: [__m256; V] = [
                    _mm256_loadu_ps(panel),
                    _mm256_loadu_ps(panel.add(8)),
                    _mm256_loadu_ps(panel.add(16)),
                    _mm256_loadu_ps(panel.add(24)),
                ];
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let av = _mm256_set1_ps(*a.add(r * k + p));
                    for (acc, b) in acc_row.iter_mut().zip(&bv) {
                        *acc = _mm256_fmadd_ps(av, *b, *acc);
                    }
                }
            }
            for (r, acc_row) in acc.iter().enumerate() {
                for (v, acc) in acc_row.iter().enumerate() {
                    let sum = _mm256_add_ps(*acc, _mm256_loadu_ps(bias.add(v * 8)));
                    _mm256_storeu_ps(c.add(r * ldc + v * 8), sum);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1] without a random-number dependency; multiples of
    /// 1/1024, so f16 holds them exactly, as it holds the model's weights.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| {
                let x = (i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503)) % 2049;
                x as f32 / 1024.0 - 1.0
            })
            .collect()
    }

    fn naive(x: &[f32], w: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                let dot: f64 = (0..k)
                    .map(|p| x[r * k + p] as f64 * w[c * k + p] as f64)
                    .sum();
                out[r * n + c] = dot as f32 + b[c];
            }
        }
        out
    }

    fn isas() -> Vec<Isa> {
        let mut isas = vec![Isa::Portable];
        if Isa::detect() != Isa::Portable {
            isas.push(Isa::detect());
        }
        isas
    }

    #[test]
    fn both_kernels_compute_x_times_w_transposed_plus_bias() {
        let (n, k) = (3 * NR, 37);
        let w = values(n * k, 1);
        let b = values(n, 2);
        for threads in [1, 2] {
            let pool = Pool::new(threads).expect("pool builds");
            for m in [1, 5, MR, MR + 1, 3 * MR + 7] {
                let x = values(m * k, m as u32);
                let want = naive(&x, &w, &b, m, n, k);
                for isa in isas() {
                    let linear = Linear::new(isa, &w, b.clone(), n, k);
                    let mut out = vec![f32::NAN; m * n];
                    pool.install(|| linear.forward(&pool, &x, m, &mut out, Epilogue::Bias));
                    for (g, w) in out.iter().zip(&want) {
                        assert!((g - w).abs() < 1e-4, "{isa:?} m={m}: {g} vs {w}");
                    }
                }
            }
        }
    }

    #[test]
    fn epilogues_apply_gelu_and_add_the_residual() {
        let (m, n, k) = (7, NR, 16);
        let (w, b, x) = (values(n * k, 3), values(n, 4), values(m * k, 5));
        let residual = values(m * n, 6);
        let plain = naive(&x, &w, &b, m, n, k);
        let pool = Pool::new(2).expect("pool builds");
        for isa in isas() {
            let linear = Linear::new(isa, &w, b.clone(), n, k);
            let mut gelu = vec![0.0f32; m * n];
            pool.install(|| linear.forward(&pool, &x, m, &mut gelu, Epilogue::Gelu));
            let mut added = vec![0.0f32; m * n];
            let epilogue = Epilogue::Residual(&residual);
            pool.install(|| linear.forward(&pool, &x, m, &mut added, epilogue));
            for i in 0..m * n {
                let mut want = [plain[i]];
                ops::gelu(&mut want);
                assert!((gelu[i] - want[0]).abs() < 1e-5, "{isa:?} gelu");
                assert!(
                    (added[i] - plain[i] - residual[i]).abs() < 1e-5,
                    "{isa:?} residual"
                );
            }
        }
    }
}
