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
//! same shape runs on f32 panels and lets the compiler vectorise. Where AVX-512 has bfloat16
//! dot products (`avx512bf16`), the panels hold pairs of bf16 weights along `k`, the inputs are
//! rounded to bf16 once per layer, and one instruction multiplies two pairs per lane and adds
//! them in f32: twice the products per instruction of the f32 kernel. The embeddings then
//! stay within cosine 0.99994 of sentence-transformers' on the reference texts (the test asks
//! 0.999). The inputs are packed per tile of rows so the kernel reads them as one stream.
//! Where the CPU also has AMX tiles and Linux grants them ([`amx`]), the same bf16 operands
//! are multiplied a 16 × 32 tile at a time instead.

use std::ops::Range;

use super::Isa;
use super::ops;
use super::pool::Pool;

#[cfg(target_arch = "x86_64")]
mod amx;

#[cfg(target_arch = "x86_64")]
pub(crate) use amx::available as amx_available;

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
    /// bfloat16 pairs `(w[p][j], w[p + 1][j])` per lane, `k` padded to even with a zero.
    #[cfg(target_arch = "x86_64")]
    Bf16(Vec<u32>),
    /// The same pairs, `k` padded to whole AMX tiles ([`amx::pairs`]) with zeros.
    #[cfg(target_arch = "x86_64")]
    Amx(Vec<u32>),
}

/// `k` rounded up to a whole number of bf16 pairs.
fn even(k: usize) -> usize {
    k + k % 2
}

/// Pair `q` of a row of `k` values, as the bf16 kernel reads it: element `2q` rounded to bf16
/// in the low half, `2q + 1` in the high half, and zero past `k` (the padding of an odd `k`).
#[cfg(target_arch = "x86_64")]
fn bf16_pair(row: &[f32], q: usize) -> u32 {
    let bits = |p: usize| {
        row.get(p)
            .map_or(0, |&v| u32::from(half::bf16::from_f32(v).to_bits()))
    };
    bits(2 * q) | bits(2 * q + 1) << 16
}

/// Panels of `NR` columns of bf16 pairs, `pairs × NR` each, from a row-major `n × k` matrix;
/// `pairs` is at least `even(k) / 2`, and pairs past `k` are zero.
#[cfg(target_arch = "x86_64")]
fn pack_bf16_pairs(weight: &[f32], n: usize, k: usize, pairs: usize) -> Vec<u32> {
    let mut packed = vec![0u32; n / NR * pairs * NR];
    for (panel, dst) in packed.chunks_exact_mut(pairs * NR).enumerate() {
        for j in 0..NR {
            let row = &weight[(panel * NR + j) * k..][..k];
            for q in 0..pairs {
                dst[q * NR + j] = bf16_pair(row, q);
            }
        }
    }
    packed
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
            Isa::Amx => Panels::Amx(pack_bf16_pairs(weight, n, k, amx::pairs(k))),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Bf16 => Panels::Bf16(pack_bf16_pairs(weight, n, k, even(k) / 2)),
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
        #[cfg(target_arch = "x86_64")]
        if let Panels::Amx(packed) = &self.panels {
            // SAFETY: AMX panels are only built for `Isa::Amx`, chosen after detecting
            // AVX-512F, AVX512_BF16 and the tiles, and after Linux granted their state.
            let x = unsafe { amx::round_rows(x, m, self.k) };
            pool.split(self.n / NR, &|panels| {
                // SAFETY: as below; `x` holds the rows `round_rows` padded and `packed` the
                // panels `pack_bf16_pairs` padded, both to `amx::pairs(k)`.
                unsafe { amx::panels(packed, &x, m, self.k, &self.bias, out, panels, epilogue) }
            });
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if let Panels::Bf16(packed) = &self.panels {
            // SAFETY: bf16 panels are only built for `Isa::Avx512Bf16`, chosen after detecting
            // AVX-512F and AVX512_BF16 at run time.
            let x = unsafe { avx512bf16::round_rows(x, m, self.k) };
            pool.split(self.n / NR, &|panels| {
                // SAFETY: as below; `x` holds `m` rows of `even(k) / 2` bf16 pairs.
                unsafe { self.panels_bf16(packed, &x, m, out, panels, epilogue) }
            });
            return;
        }
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
            #[cfg(target_arch = "x86_64")]
            Panels::Bf16(_) | Panels::Amx(_) => {
                unreachable!("bf16 panels take bf16 inputs (`forward`)")
            }
            Panels::F32(packed) => unsafe {
                self.panels_with(packed, x, self.k, m, out, panels, epilogue, tile_portable)
            },
        }
    }

    /// # Safety
    /// As [`Linear::panels`], with `x` packed by `avx512bf16::round_rows`, on a CPU with
    /// AVX-512F and AVX512_BF16.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn panels_bf16(
        &self,
        packed: &[u32],
        x: &[u32],
        m: usize,
        out: Out,
        panels: Range<usize>,
        epilogue: Epilogue,
    ) {
        // SAFETY: forwarded from the caller's contract; the target features are enabled here.
        unsafe {
            self.panels_with(
                packed,
                x,
                even(self.k) / 2,
                m,
                out,
                panels,
                epilogue,
                avx512bf16::tile,
            )
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
        unsafe { self.panels_with(packed, x, self.k, m, out, panels, epilogue, avx512::tile) }
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
        unsafe { self.panels_with(packed, x, self.k, m, out, panels, epilogue, avx2::tile) }
    }

    /// The blocked loop shared by the kernels; inlined so the epilogue is vectorised with the
    /// caller's target features. A row of `x` and a column of a panel hold `k` elements: the
    /// layer's `k` floats, or for bf16 its `k` rounded up to pairs, `even(k) / 2` of them.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn panels_with<A, T>(
        &self,
        packed: &[T],
        x: &[A],
        k: usize,
        m: usize,
        out: Out,
        panels: Range<usize>,
        epilogue: Epilogue,
        tile: unsafe fn(usize, *const A, *const T, usize, *const f32, *mut f32, usize),
    ) {
        let n = self.n;
        for (panel, row, rows) in tiles(panels, m, MR) {
            let col = panel * NR;
            // SAFETY: row < m and col + NR <= n, so every pointer stays inside `x`, the packed
            // panel, the bias and `out` (checked shapes, caller contract).
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
                    finish(dst, epilogue, (row + r) * n + col);
                }
            }
        }
    }
}

/// The order in which a thread computes its `panels`: blocks of [`PANELS_PER_BLOCK`] panels,
/// and within a block each run of at most `tile_rows` of the `m` rows across all the block's
/// panels, so that the block's weights stay in cache while the rows stream past. Yields
/// `(panel, first row, rows)`.
fn tiles(
    panels: Range<usize>,
    m: usize,
    tile_rows: usize,
) -> impl Iterator<Item = (usize, usize, usize)> {
    let end = panels.end;
    panels.step_by(PANELS_PER_BLOCK).flat_map(move |block| {
        let block = block..(block + PANELS_PER_BLOCK).min(end);
        (0..m).step_by(tile_rows).flat_map(move |row| {
            block
                .clone()
                .map(move |panel| (panel, row, tile_rows.min(m - row)))
        })
    })
}

/// Applies `epilogue` to `dst`, the `NR` outputs from element `at` of the output on; inlined
/// so it is vectorised with the caller's target features.
#[inline(always)]
fn finish(dst: &mut [f32], epilogue: Epilogue, at: usize) {
    match epilogue {
        Epilogue::Bias => {}
        Epilogue::Gelu => ops::gelu(dst),
        Epilogue::Residual(res) => ops::add(dst, &res[at..at + NR]),
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

/// Defines `tile(rows, a, b, k, bias, c, ldc)` for a module whose `tile_rows::<R>` computes
/// a tile of `R` rows: it calls the one with `R = rows`, so that every accumulator of the
/// tile is a register. `$a` and `$b` are the element types of the inputs and of the panels.
#[cfg(target_arch = "x86_64")]
macro_rules! tile_by_rows {
    ($a:ty, $b:ty) => {
        /// # Safety
        /// As `tile_rows`; the CPU has the module's target features (they were detected before
        /// the `Isa` that leads here was chosen).
        pub(super) unsafe fn tile(
            rows: usize,
            a: *const $a,
            b: *const $b,
            k: usize,
            bias: *const f32,
            c: *mut f32,
            ldc: usize,
        ) {
            const _: () = assert!(MR == 12);
            // SAFETY: the caller's contract.
            unsafe {
                match rows {
                    1 => tile_rows::<1>(a, b, k, bias, c, ldc),
                    2 => tile_rows::<2>(a, b, k, bias, c, ldc),
                    3 => tile_rows::<3>(a, b, k, bias, c, ldc),
                    4 => tile_rows::<4>(a, b, k, bias, c, ldc),
                    5 => tile_rows::<5>(a, b, k, bias, c, ldc),
                    6 => tile_rows::<6>(a, b, k, bias, c, ldc),
                    7 => tile_rows::<7>(a, b, k, bias, c, ldc),
                    8 => tile_rows::<8>(a, b, k, bias, c, ldc),
                    9 => tile_rows::<9>(a, b, k, bias, c, ldc),
                    10 => tile_rows::<10>(a, b, k, bias, c, ldc),
                    11 => tile_rows::<11>(a, b, k, bias, c, ldc),
                    12 => tile_rows::<12>(a, b, k, bias, c, ldc),
                    _ => unreachable!("row tiles hold 1..=MR rows"),
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{MR, NR};

    tile_by_rows!(f32, u16);

    /// Stores `R` rows of accumulators (`lo`: columns 0–15, `hi`: 16–31) plus `bias`.
    ///
    /// # Safety
    /// `bias` holds `NR` floats and `c` `R` rows of `NR` writable floats `ldc` apart.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn store<const R: usize>(
        lo: &[__m512; R],
        hi: &[__m512; R],
        bias: *const f32,
        c: *mut f32,
        ldc: usize,
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            let bias_lo = _mm512_loadu_ps(bias);
            let bias_hi = _mm512_loadu_ps(bias.add(16));
            for r in 0..R {
                _mm512_storeu_ps(c.add(r * ldc), _mm512_add_ps(lo[r], bias_lo));
                _mm512_storeu_ps(c.add(r * ldc + 16), _mm512_add_ps(hi[r], bias_hi));
            }
        }
    }

    /// The AVX-512 twin of `tile_portable` for `R` rows, same contract except that `b` holds
    /// f16 bits.
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
            store(&lo, &hi, bias, c, ldc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512bf16 {
    use std::arch::x86_64::*;

    use super::avx512::store;
    use super::{MR, NR, bf16_pair, even};

    /// `x` (`m × k` f32) rounded to bf16 (nearest, ties to even) and packed for [`tile`]:
    /// in blocks of [`MR`] rows (the last may be shorter), each block's bf16 pairs along `k`
    /// interleaved row by row (`pair q of row r` at `q × rows + r`), so that the kernel reads
    /// one contiguous stream for all its rows. `k` is padded to even with a zero. A block of
    /// `rows` rows starts at element `first row × even(k)`, as an unpacked matrix would.
    ///
    /// # Safety
    /// AVX-512F and AVX512_BF16 are available; `x` holds `m × k` floats.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn round_rows(x: &[f32], m: usize, k: usize) -> Vec<u32> {
        let pairs = even(k) / 2;
        let mut packed = Vec::with_capacity(m * pairs);
        let mut row_pairs = vec![0u32; pairs];
        for block in x.chunks(MR * k) {
            let rows = block.len() / k;
            let start = packed.len();
            packed.resize(start + rows * pairs, 0);
            for (r, src) in block.chunks_exact(k).enumerate() {
                // SAFETY: the caller's contract.
                unsafe { round_row(src, &mut row_pairs) };
                for (q, &pair) in row_pairs.iter().enumerate() {
                    packed[start + q * rows + r] = pair;
                }
            }
        }
        packed
    }

    /// One row `src` rounded to bf16 pairs (as `bf16_pair` makes them) into the first
    /// `even(src.len()) / 2` elements of `dst`.
    ///
    /// # Safety
    /// AVX-512F and AVX512_BF16 are available; `dst` holds at least that many pairs.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn round_row(src: &[f32], dst: &mut [u32]) {
        let k = src.len();
        assert!(dst.len() >= even(k) / 2, "room for the row's pairs");
        let whole = k - k % 16;
        for at in (0..whole).step_by(16) {
            // SAFETY: `at + 16 <= k` floats are read and 8 pairs written at `at / 2`.
            unsafe {
                let v = _mm512_cvtneps_pbh(_mm512_loadu_ps(src.as_ptr().add(at)));
                _mm256_storeu_si256(
                    dst.as_mut_ptr().add(at / 2).cast(),
                    std::mem::transmute::<__m256bh, __m256i>(v),
                );
            }
        }
        for (q, pair) in dst.iter_mut().enumerate().take(even(k) / 2).skip(whole / 2) {
            *pair = bf16_pair(src, q);
        }
    }

    tile_by_rows!(u32, u32);

    /// `c[R × NR] = a · b + bias`, where `a` is one block of [`round_rows`] (`k` pairs of
    /// each of its `R` rows, interleaved) and `b` a panel of `k × NR` bf16 pairs; otherwise
    /// the contract of `tile_portable`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn tile_rows<const R: usize>(
        a: *const u32,
        b: *const u32,
        k: usize,
        bias: *const f32,
        c: *mut f32,
        ldc: usize,
    ) {
        // SAFETY: every access is inside the buffers of the caller's contract.
        unsafe {
            let mut lo = [_mm512_setzero_ps(); R];
            let mut hi = [_mm512_setzero_ps(); R];
            for q in 0..k {
                let b_lo: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(q * NR).cast()));
                let b_hi: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(b.add(q * NR + 16).cast()));
                for r in 0..R {
                    let av: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*a.add(q * R + r) as i32));
                    lo[r] = _mm512_dpbf16_ps(lo[r], av, b_lo);
                    hi[r] = _mm512_dpbf16_ps(hi[r], av, b_hi);
                }
            }
            store(&lo, &hi, bias, c, ldc);
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

    /// Every kernel this CPU can run.
    fn isas() -> Vec<Isa> {
        let mut isas = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                isas.push(Isa::Avx2);
            }
            if has!("avx512f") {
                isas.push(Isa::Avx512);
                if has!("avx512bf16") {
                    isas.push(Isa::Avx512Bf16);
                    if amx_available() {
                        isas.push(Isa::Amx);
                    }
                }
            }
        }
        isas
    }

    /// What a kernel multiplies: the bf16 ones round both operands to bf16 first (and adds
    /// exactly, in f32), the others use the values as given.
    fn operands(isa: Isa, values: &[f32]) -> Vec<f32> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Amx | Isa::Avx512Bf16 => values
                .iter()
                .map(|&v| half::bf16::from_f32(v).to_f32())
                .collect(),
            _ => values.to_vec(),
        }
    }

    #[test]
    fn both_kernels_compute_x_times_w_transposed_plus_bias() {
        let (n, k) = (3 * NR, 37);
        let w = values(n * k, 1);
        let b = values(n, 2);
        for threads in [1, 2] {
            let pool = Pool::new(threads).expect("pool builds");
            for m in [1, 5, MR, MR + 1, 20, 3 * MR + 7] {
                let x = values(m * k, m as u32);
                for isa in isas() {
                    let want = naive(&operands(isa, &x), &operands(isa, &w), &b, m, n, k);
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
        let pool = Pool::new(2).expect("pool builds");
        for isa in isas() {
            let plain = naive(&operands(isa, &x), &operands(isa, &w), &b, m, n, k);
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
