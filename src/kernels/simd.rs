//! Element-wise f32 loops, written once as plain branch-free loops and compiled for the best
//! instruction set the CPU has: natively through pulp's run-time dispatch (AVX2 or AVX-512
//! bodies), in the browser for SIMD128 (the wasm build's target feature).

/// Runs `body` compiled with the widest vector instructions available.
#[inline(always)]
pub(super) fn vectorized<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(not(target_family = "wasm"))]
    {
        pulp::Arch::new().dispatch(body)
    }
    #[cfg(target_family = "wasm")]
    {
        body()
    }
}

const LANES: usize = 16;

/// Σ values, in 16 interleaved partial sums (so the loop vectorises).
pub fn sum(values: &[f32]) -> f32 {
    vectorized(
        #[inline(always)]
        || {
            let mut lanes = [0f32; LANES];
            let chunks = values.chunks_exact(LANES);
            let tail: f32 = chunks.remainder().iter().sum();
            for chunk in chunks {
                for i in 0..LANES {
                    lanes[i] += chunk[i];
                }
            }
            lanes.iter().sum::<f32>() + tail
        },
    )
}

/// Σ (v − center)².
pub fn sum_of_squares_about(values: &[f32], center: f32) -> f32 {
    vectorized(
        #[inline(always)]
        || {
            let mut lanes = [0f32; LANES];
            let chunks = values.chunks_exact(LANES);
            let tail: f32 = chunks
                .remainder()
                .iter()
                .map(|v| (v - center) * (v - center))
                .sum();
            for chunk in chunks {
                for i in 0..LANES {
                    let d = chunk[i] - center;
                    lanes[i] += d * d;
                }
            }
            lanes.iter().sum::<f32>() + tail
        },
    )
}

/// Σ a·b.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot: lengths differ");
    vectorized(
        #[inline(always)]
        || {
            let mut lanes = [0f32; LANES];
            let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
            let tail: f32 = ca
                .remainder()
                .iter()
                .zip(cb.remainder())
                .map(|(x, y)| x * y)
                .sum();
            for (x, y) in ca.zip(cb) {
                for i in 0..LANES {
                    lanes[i] += x[i] * y[i];
                }
            }
            lanes.iter().sum::<f32>() + tail
        },
    )
}

/// 1 / (1 + e^(−v)); inlined, so that it vectorises in the caller's loop (inside
/// [`vectorized`]).
#[inline(always)]
pub fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + exp(-v))
}

/// e^x to about 2 ulp over the finite range (Cephes' polynomial on x − n·ln 2, then 2ⁿ built in
/// the exponent bits); saturates below e^−87 and above e^88. Branch-free, so loops vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let p = p * r * r + r + 1.0;
    // 2ⁿ from n + 127 in the low mantissa bits of n + 127 + ROUND, shifted into the exponent:
    // float arithmetic only, since `as i32` saturates and would not vectorise on x86.
    p * f32::from_bits((n + (ROUND + 127.0)).to_bits() << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_across_the_range_and_saturates_outside_it() {
        // Every 1/64 from −87 to 88, and each of those plus 10⁻³ (off the grid).
        let mut worst = 0f32;
        for i in -87 * 64..=88 * 64 {
            for x in [i as f32 / 64.0, (i as f32 / 64.0 + 1e-3).min(88.0)] {
                let (ours, reference) = (exp(x), x.exp());
                worst = worst.max(((ours - reference) / reference).abs());
            }
        }
        assert!(worst < 4.0 * f32::EPSILON, "worst relative error {worst}");
        assert_eq!(exp(-200.0), exp(-87.0));
        assert_eq!(exp(200.0), exp(88.0));
        assert!(exp(f32::NEG_INFINITY) > 0.0 && exp(f32::INFINITY).is_finite());
    }

    #[test]
    fn sigmoid_is_the_logistic_function() {
        for v in (-400..=400).map(|i| i as f32 / 8.0) {
            let (ours, reference) = (sigmoid(v), 1.0 / (1.0 + (-v).exp()));
            assert!(
                (ours - reference).abs() <= 1e-6,
                "{ours} against {reference}"
            );
        }
    }
}
