//! Element-wise and row-wise kernels of the encoder. They are written branch-free over slices
//! and inlined into callers compiled with AVX-512 or without, so one source is vectorised for
//! either target.

use std::f32::consts::{FRAC_1_SQRT_2, LOG2_E};

/// `e^x` to about 1 ulp for the inputs the encoder feeds it (softmax logits after the max is
/// subtracted, `-z²` in erf): range reduction to `2^n · e^r` and Cephes' `expf` polynomial,
/// with no branch or libm call so loops over it vectorise.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // Keeps 2^n a normal float: n ranges over -126..=127.
    let x = x.clamp(-87.0, 88.0);
    // Adding and subtracting 1.5 · 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let n = (x * LOG2_E + ROUND) - ROUND;
    // ln 2 split in two so `n · ln 2` is exact enough.
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `erf(x)` with absolute error below 2e-7 (Abramowitz & Stegun 7.1.26).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// BERT's activation, `x · Φ(x)` in its exact (erf) form, in place.
#[inline(always)]
pub(crate) fn gelu(xs: &mut [f32]) {
    for x in xs {
        *x = 0.5 * *x * (1.0 + erf(*x * FRAC_1_SQRT_2));
    }
}

/// `xs += ys`, element-wise.
#[inline(always)]
pub(crate) fn add(xs: &mut [f32], ys: &[f32]) {
    for (x, y) in xs.iter_mut().zip(ys) {
        *x += y;
    }
}

/// Sums with 16 independent lanes, so the compiler may vectorise (a single running sum is a
/// serial chain it must keep in order).
#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = xs.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (l, x) in lanes.iter_mut().zip(chunk) {
            *l += x;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Layer normalisation of each row of `gamma.len()` floats, in place.
#[inline(always)]
pub(crate) fn layer_norm(rows: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let h = gamma.len();
    for row in rows.chunks_exact_mut(h) {
        let mean = sum(row) / h as f32;
        row.iter_mut().for_each(|x| *x -= mean);
        let mut squares = [0.0f32; 16];
        for chunk in row.chunks_exact(16) {
            for (s, x) in squares.iter_mut().zip(chunk) {
                *s += x * x;
            }
        }
        let tail: f32 = row.chunks_exact(16).remainder().iter().map(|x| x * x).sum();
        let var = (squares.iter().sum::<f32>() + tail) / h as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((x, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *x = *x * inv * g + b;
        }
    }
}

/// Softmax of one row, in place.
#[inline(always)]
pub(crate) fn softmax(xs: &mut [f32]) {
    let max = xs.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    xs.iter_mut().for_each(|x| *x = exp(*x - max));
    let inv = 1.0 / sum(xs);
    xs.iter_mut().for_each(|x| *x *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erf_reference(x: f64) -> f64 {
        let a = x.abs();
        let erf = if a <= 3.0 {
            // Maclaurin series: its terms stay small enough here for full f64 precision.
            let (mut term, mut total, mut n) = (a, a, 0.0f64);
            while term.abs() > 1e-17 {
                n += 1.0;
                term *= -a * a / n;
                total += term / (2.0 * n + 1.0);
            }
            total * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // Continued fraction of erfc, evaluated backwards.
            let f = (1..=80).rev().fold(a, |f, n| a + n as f64 / 2.0 / f);
            1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / f
        };
        erf.copysign(x)
    }

    #[test]
    fn exp_is_within_two_ulp_over_the_range_used() {
        for i in -8700..=0 {
            let x = i as f32 / 100.0;
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            assert!(
                ((got - want) / want).abs() < 2.5e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn gelu_matches_the_erf_form() {
        let xs: Vec<f32> = (-600..=600).map(|i| i as f32 / 100.0).collect();
        let mut got = xs.clone();
        gelu(&mut got);
        for (x, g) in xs.iter().zip(got) {
            let x = *x as f64;
            let want = 0.5 * x * (1.0 + erf_reference(x / std::f64::consts::SQRT_2));
            assert!(
                (g as f64 - want).abs() < 1e-6,
                "gelu({x}) = {g}, want {want}"
            );
        }
    }

    #[test]
    fn layer_norm_gives_zero_mean_unit_variance_before_the_affine_part() {
        let mut row: Vec<f32> = (0..40).map(|i| (i * i) as f32 * 0.1 - 3.0).collect();
        layer_norm(&mut row, &[1.0; 40], &[0.0; 40], 1e-12);
        let mean = row.iter().sum::<f32>() / 40.0;
        let var = row.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / 40.0;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
            "{mean} {var}"
        );
        let mut scaled = vec![1.0f32, 3.0];
        layer_norm(&mut scaled, &[2.0, 2.0], &[0.5, 0.5], 0.0);
        assert_eq!(scaled, vec![-1.5, 2.5]);
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut xs = vec![1.0f32, 2.0, 3.0, -50.0, 0.5];
        softmax(&mut xs);
        assert!((xs.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let want =
            1.0 / (1.0 + (-1.0f32).exp() + (-2.0f32).exp() + (-53.0f32).exp() + (-2.5f32).exp());
        assert!((xs[2] - want).abs() < 1e-6, "{} vs {want}", xs[2]);
        assert!(xs[3] < 1e-20 && xs[3] > 0.0);
    }
}
