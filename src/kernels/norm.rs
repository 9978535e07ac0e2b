//! GroupNorm, optionally followed by SiLU, fused into one pass forward and two backward, on f32
//! NCHW slices. Images are spread over the threads; the γ and β gradients are per-thread partial
//! sums. The statistics are recomputed in the backward (two sums per group), so autodiff keeps
//! only the input.

use super::conv::add_into;
use super::parallel;
use super::simd::{self, dot, sigmoid, sum, sum_of_squares_about};

/// The geometry of a GroupNorm over NCHW data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNormShape {
    pub batch: usize,
    pub channels: usize,
    /// Height × width.
    pub pixels: usize,
    pub groups: usize,
    pub epsilon: f32,
    /// SiLU after the affine map.
    pub silu: bool,
}

impl GroupNormShape {
    fn image_len(&self) -> usize {
        self.channels * self.pixels
    }

    fn group_len(&self) -> usize {
        self.image_len() / self.groups
    }

    fn channels_per_group(&self) -> usize {
        self.channels / self.groups
    }

    fn check(&self, x: &[f32], gamma: &[f32], beta: &[f32]) {
        assert!(
            self.groups > 0 && self.channels.is_multiple_of(self.groups),
            "group norm: {} channels in {} groups",
            self.channels,
            self.groups
        );
        assert_eq!(
            x.len(),
            self.batch * self.image_len(),
            "group norm: input size"
        );
        assert_eq!(gamma.len(), self.channels, "group norm: γ size");
        assert_eq!(beta.len(), self.channels, "group norm: β size");
    }

    /// Mean and 1/σ of one group.
    fn statistics(&self, group: &[f32]) -> (f32, f32) {
        let n = group.len() as f32;
        let mean = sum(group) / n;
        let variance = sum_of_squares_about(group, mean) / n;
        (mean, 1.0 / (variance + self.epsilon).sqrt())
    }
}

/// `y = γ·(x − μ_g)/σ_g + β`, then `y·sigmoid(y)` when `shape.silu`.
///
/// # Shapes
///   - x, output: [batch, channels, pixels]
///   - gamma, beta: [channels]
pub fn group_norm_forward(
    shape: &GroupNormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
) -> Vec<f32> {
    shape.check(x, gamma, beta);
    let mut output = parallel::zeroed(x.len());
    parallel::for_each_chunk(
        &mut output,
        shape.image_len(),
        || (),
        |_, b, out| {
            let image = &x[b * shape.image_len()..(b + 1) * shape.image_len()];
            simd::vectorized(
                #[inline(always)]
                || normalize_image(shape, image, gamma, beta, out),
            )
        },
    );
    output
}

/// One image of [`group_norm_forward`], in one loop per channel (the affine map and SiLU
/// together), compiled inside [`simd::vectorized`].
#[inline(always)]
fn normalize_image(
    shape: &GroupNormShape,
    image: &[f32],
    gamma: &[f32],
    beta: &[f32],
    out: &mut [f32],
) {
    let cpg = shape.channels_per_group();
    let groups = image.chunks(shape.group_len());
    for (g, (group, out)) in groups.zip(out.chunks_mut(shape.group_len())).enumerate() {
        let (mean, rstd) = shape.statistics(group);
        let channels = group.chunks(shape.pixels).zip(out.chunks_mut(shape.pixels));
        for (c, (src, dst)) in channels.enumerate() {
            let channel = g * cpg + c;
            let scale = gamma[channel] * rstd;
            let shift = beta[channel] - mean * scale;
            if shape.silu {
                for (d, s) in dst.iter_mut().zip(src) {
                    let y = s * scale + shift;
                    *d = y * sigmoid(y);
                }
            } else {
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = s * scale + shift;
                }
            }
        }
    }
}

/// The gradients of [`group_norm_forward`].
pub struct GroupNormGrads {
    /// [batch, channels, pixels]
    pub x: Vec<f32>,
    /// [channels]
    pub gamma: Vec<f32>,
    /// [channels]
    pub beta: Vec<f32>,
}

/// With x̂ = (x − μ)/σ and z = γx̂ + β: dz = dy·s(1 + z(1 − s)) for SiLU (s = sigmoid(z)),
/// dγ = Σ dz·x̂, dβ = Σ dz, and dx = (dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))/σ over the group, dx̂ = γ·dz.
pub fn group_norm_backward(
    shape: &GroupNormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    dy: &[f32],
) -> GroupNormGrads {
    shape.check(x, gamma, beta);
    assert_eq!(dy.len(), x.len(), "group norm: gradient size");
    let init = || GradientSums {
        gamma: vec![0f32; shape.channels],
        beta: vec![0f32; shape.channels],
        xhat: vec![0f32; shape.pixels],
    };
    let mut dx = parallel::zeroed(x.len());
    let sums = parallel::fold_chunks(
        &mut dx,
        shape.image_len(),
        init,
        |sums, b, dx_b| {
            let range = b * shape.image_len()..(b + 1) * shape.image_len();
            let (image, dy_b) = (&x[range.clone()], &dy[range]);
            simd::vectorized(
                #[inline(always)]
                || image_gradient(shape, image, gamma, beta, dy_b, dx_b, sums),
            )
        },
        |mut a, b| {
            add_into(&mut a.gamma, &b.gamma);
            add_into(&mut a.beta, &b.beta);
            a
        },
    );
    GroupNormGrads {
        x: dx,
        gamma: sums.gamma,
        beta: sums.beta,
    }
}

/// A thread's running sums for [`group_norm_backward`] (γ's and β's gradients), and its x̂
/// buffer for one channel.
struct GradientSums {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    xhat: Vec<f32>,
}

/// One image of [`group_norm_backward`]: its dx, and its share of the γ and β gradients added
/// to `sums`; compiled inside [`simd::vectorized`].
#[inline(always)]
fn image_gradient(
    shape: &GroupNormShape,
    image: &[f32],
    gamma: &[f32],
    beta: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    sums: &mut GradientSums,
) {
    let (cpg, pixels, group_len) = (shape.channels_per_group(), shape.pixels, shape.group_len());
    let xhat = &mut sums.xhat;
    let groups = image.chunks(group_len).zip(dy.chunks(group_len));
    for (g, ((group, dy_g), dx_g)) in groups.zip(dx.chunks_mut(group_len)).enumerate() {
        let (mean, rstd) = shape.statistics(group);
        // Pass 1: dz into dx, the per-channel sums, and the group's two means.
        let (mut mean_dxhat, mut mean_dxhat_xhat) = (0f32, 0f32);
        let channels = group.chunks(pixels).zip(dy_g.chunks(pixels));
        for (c, ((src, dy_c), dz)) in channels.zip(dx_g.chunks_mut(pixels)).enumerate() {
            let channel = g * cpg + c;
            for (h, s) in xhat.iter_mut().zip(src) {
                *h = (s - mean) * rstd;
            }
            if shape.silu {
                for (z, h) in dz.iter_mut().zip(xhat.iter()) {
                    *z = gamma[channel] * h + beta[channel];
                }
                silu_backward_in_place(dz, dy_c);
            } else {
                dz.copy_from_slice(dy_c);
            }
            let dz_sum = sum(dz);
            let dz_xhat: f32 = dot(dz, xhat);
            sums.gamma[channel] += dz_xhat;
            sums.beta[channel] += dz_sum;
            mean_dxhat += gamma[channel] * dz_sum;
            mean_dxhat_xhat += gamma[channel] * dz_xhat;
        }
        let n = group.len() as f32;
        let (mean_dxhat, mean_dxhat_xhat) = (mean_dxhat / n, mean_dxhat_xhat / n);
        // Pass 2: dx = (γ·dz − mean(dx̂) − x̂·mean(dx̂·x̂))/σ.
        for (c, (src, d)) in group
            .chunks(pixels)
            .zip(dx_g.chunks_mut(pixels))
            .enumerate()
        {
            let g_c = gamma[g * cpg + c];
            for (d, s) in d.iter_mut().zip(src) {
                let h = (s - mean) * rstd;
                *d = (g_c * *d - mean_dxhat - h * mean_dxhat_xhat) * rstd;
            }
        }
    }
}

/// `z` holds the pre-activation on entry and d(loss)/dz on return, given dy:
/// d silu(z)/dz = s·(1 + z·(1 − s)), s = sigmoid(z).
#[inline(always)]
fn silu_backward_in_place(z: &mut [f32], dy: &[f32]) {
    for (z, d) in z.iter_mut().zip(dy) {
        let s = sigmoid(*z);
        *z = d * s * (1.0 + *z * (1.0 - s));
    }
}
