//! The dense layers on Intel's AMX tiles (Sapphire Rapids and later). One instruction,
//! `tdpbf16ps`, multiplies a tile of 16 rows × 16 bf16 pairs of inputs by 16 pairs × 16
//! columns of weights into 16 × 16 f32 accumulators: 8,192 products, where an AVX-512 bf16
//! instruction makes 32. The operands are those of the AVX-512 bf16 kernel, so the results
//! equal it up to the order of additions: the panels hold the same pairs along `k` (padded with
//! zeros to whole tiles), and a panel's 16 pair-rows × 16 columns are a weight tile as the
//! instruction reads it (rows 128 bytes apart). The inputs are rounded to bf16 row by row,
//! padded to whole tiles with zeros. Rust has no stable AMX intrinsics, so the few
//! instructions are inline assembly; the compiler never uses the tile registers itself, so they
//! keep their values from one `asm!` to the next.

use std::arch::asm;
use std::ops::Range;
use std::sync::OnceLock;

use super::avx512bf16::round_row;
use super::{Epilogue, NR, Out, even, finish, tiles};

/// Rows of a tile.
const ROWS: usize = 16;
/// bf16 pairs in a tile's row: 64 bytes, the most a tile row holds.
const PAIRS: usize = 16;
/// Output rows per pass over a panel: two row tiles share every weight tile loaded.
const BLOCK_ROWS: usize = 2 * ROWS;

/// Whether the CPU has AMX tiles with bf16 products and Linux lets this process use them; asked
/// once (the grant is per process).
pub(crate) fn available() -> bool {
    static GRANTED: OnceLock<bool> = OnceLock::new();
    *GRANTED.get_or_init(|| {
        // CPUID leaf 7: EDX bit 22 is AMX-BF16, bit 24 AMX-TILE.
        let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
        edx & (1 << 22) != 0 && edx & (1 << 24) != 0 && granted()
    })
}

/// Linux gives a process the tiles' 8 KB of register state only on request:
/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, refused by kernels before 5.16.
#[cfg(target_os = "linux")]
fn granted() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: the call only changes which register state the kernel saves for this process.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn granted() -> bool {
    false
}

/// bf16 pairs per row of the padded inputs and panels of a layer with `k` inputs.
pub(super) fn pairs(k: usize) -> usize {
    (even(k) / 2).next_multiple_of(PAIRS)
}

/// `x` (`m × k` f32) rounded to bf16 pairs, row-major, `pairs(k)` per row, with the rows
/// padded to a whole number of tiles; the padding is zero.
///
/// # Safety
/// AVX-512F and AVX512_BF16 are available; `x` holds `m × k` floats.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn round_rows(x: &[f32], m: usize, k: usize) -> Vec<u32> {
    let pairs = pairs(k);
    let mut rounded = vec![0u32; m.next_multiple_of(ROWS) * pairs];
    for (src, dst) in x.chunks_exact(k).zip(rounded.chunks_exact_mut(pairs)) {
        // SAFETY: the caller's contract; `dst` holds `pairs(k) >= even(k) / 2` pairs.
        unsafe { round_row(src, dst) };
    }
    rounded
}

/// The shape every tile register here has: 16 rows of 64 bytes, for `ldtilecfg`.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

const CONFIG: TileConfig = {
    let mut bytes_per_row = [0u16; 16];
    let mut rows = [0u8; 16];
    let mut t = 0;
    while t < 8 {
        bytes_per_row[t] = (PAIRS * 4) as u16;
        rows[t] = ROWS as u8;
        t += 1;
    }
    TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        bytes_per_row,
        rows,
    }
};

/// Writes `out`'s columns of `panels` (`m` rows, `n = bias.len()` columns) with `epilogue`
/// applied, as `Linear::panels` does for the other kernels.
///
/// # Safety
/// [`available`] returned true (so the CPU has AVX-512F, AVX512_BF16 and the tiles, and the
/// tiles are granted); `x` comes from [`round_rows`]`(_, m, k)`, `packed` from
/// `pack_bf16_pairs` with [`pairs`]`(k)`; `out` points to `m × n` floats, and no other thread
/// touches the columns of `panels`.
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn panels(
    packed: &[u32],
    x: &[u32],
    m: usize,
    k: usize,
    bias: &[f32],
    out: Out,
    panels: Range<usize>,
    epilogue: Epilogue,
) {
    let (pairs, n) = (pairs(k), bias.len());
    let mut tile = [0.0f32; BLOCK_ROWS * NR];
    // SAFETY: the tiles are granted (caller); every tile register used below has this shape.
    unsafe { asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly)) };
    for (panel, row, rows) in tiles(panels, m, BLOCK_ROWS) {
        // SAFETY: row < m, whose tile (and, when `rows > ROWS`, the next one) lies inside
        // `x`'s padded rows; the panel lies inside `packed`; `tile` holds `BLOCK_ROWS × NR`
        // floats.
        unsafe {
            let a = x.as_ptr().add(row * pairs);
            let b = packed.as_ptr().add(panel * pairs * NR);
            if rows > ROWS {
                multiply::<2>(a, b, pairs, tile.as_mut_ptr());
            } else {
                multiply::<1>(a, b, pairs, tile.as_mut_ptr());
            }
        }
        let col = panel * NR;
        for (r, sums) in tile.chunks_exact(NR).take(rows).enumerate() {
            let at = (row + r) * n + col;
            // SAFETY: row + r < m and col + NR <= n: inside `out`, in this thread's columns
            // (caller).
            let dst = unsafe { std::slice::from_raw_parts_mut(out.0.add(at), NR) };
            for ((d, &s), &b) in dst.iter_mut().zip(sums).zip(&bias[col..col + NR]) {
                *d = s + b;
            }
            finish(dst, epilogue, at);
        }
    }
    // SAFETY: gives the tile state back, so the kernel need not save it on a context switch.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// Stores accumulator tiles `tmm$lo` (columns 0–15) and `tmm$hi` (16–31) as 16 rows of `c`,
/// `NR` floats apart.
macro_rules! store_tiles {
    ($lo:literal, $hi:literal, $c:expr) => {
        asm!(
            concat!("tilestored [{lo} + {stride}*1], tmm", $lo),
            concat!("tilestored [{hi} + {stride}*1], tmm", $hi),
            lo = in(reg) $c,
            hi = in(reg) $c.add(NR / 2),
            stride = in(reg) NR * 4,
            options(nostack),
        )
    };
}

/// `c = a · b` for `T` row tiles (`T × 16` rows of `c`, `NR` columns, row-major): `a` is
/// rows of `pairs` bf16 pairs, `b` a panel of `pairs × NR` pairs. Accumulates in tmm0–tmm3,
/// reads `a` through tmm4–tmm5 and `b` through tmm6–tmm7.
///
/// # Safety
/// The tiles are configured as [`CONFIG`]; `a` holds `T × 16` rows of `pairs` pairs, `b` a
/// panel of `pairs × NR`, `c` `T × 16 × NR` writable floats; `pairs` is a multiple of 16.
#[inline(always)]
unsafe fn multiply<const T: usize>(a: *const u32, b: *const u32, pairs: usize, c: *mut f32) {
    let (a_stride, panel_stride) = (pairs * 4, NR * 4);
    // SAFETY: every load and store is inside the buffers of the caller's contract.
    unsafe {
        asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
        if T == 2 {
            asm!("tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
        }
        for q in (0..pairs).step_by(PAIRS) {
            let (a, b) = (a.add(q), b.add(q * NR));
            asm!(
                "tileloadd tmm4, [{a} + {a_stride}*1]",
                "tileloadd tmm6, [{b_lo} + {panel_stride}*1]",
                "tileloadd tmm7, [{b_hi} + {panel_stride}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                a = in(reg) a,
                b_lo = in(reg) b,
                b_hi = in(reg) b.add(NR / 2),
                a_stride = in(reg) a_stride,
                panel_stride = in(reg) panel_stride,
                options(nostack, readonly),
            );
            if T == 2 {
                asm!(
                    "tileloadd tmm5, [{a} + {a_stride}*1]",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a = in(reg) a.add(ROWS * pairs),
                    a_stride = in(reg) a_stride,
                    options(nostack, readonly),
                );
            }
        }
        store_tiles!(0, 1, c);
        if T == 2 {
            store_tiles!(2, 3, c.add(ROWS * NR));
        }
    }
}
