//! The building blocks of the U-Net: time embedding, residual block, self-attention,
//! down- and up-sampling.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Dropout, DropoutConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use crate::kernels::{conv2d, group_norm, group_norm_silu, upsample_conv3x3};

/// A 3×3 convolution that keeps the spatial size.
pub fn conv3x3(channels_in: usize, channels_out: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([channels_in, channels_out], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

/// Sinusoidal embedding of integer timesteps (Vaswani et al. 2017, as in Ho et al.):
/// `[sin(t·f_0), …, sin(t·f_{h−1}), cos(t·f_0), …]` with f_i = 10000^(−i/h), h = dim/2.
/// Computed on the CPU: the timesteps are known there and it costs nothing.
///
/// # Shapes
///   - output: [timesteps.len(), dim]
pub fn timestep_embedding(timesteps: &[usize], dim: usize, device: &Device) -> Tensor<2> {
    let half = dim / 2;
    let mut values = vec![0f32; timesteps.len() * dim];
    for (row, &t) in values.chunks_mut(dim).zip(timesteps) {
        for i in 0..half {
            let freq = (-(10000f64.ln()) * i as f64 / half as f64).exp();
            let angle = t as f64 * freq;
            row[i] = angle.sin() as f32;
            row[half + i] = angle.cos() as f32;
        }
    }
    Tensor::from_data(TensorData::new(values, [timesteps.len(), dim]), device)
}

/// GroupNorm → SiLU → conv → (+ embedding) → GroupNorm → SiLU → dropout → conv, plus a skip
/// (1×1 conv when the channel count changes). The embedding (time + label) enters as a
/// per-channel bias after the first convolution.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    embedding_projection: Linear,
    norm2: GroupNorm,
    dropout: Dropout,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResidualBlock {
    pub fn new(
        channels_in: usize,
        channels_out: usize,
        embedding_dim: usize,
        groups: usize,
        dropout: f64,
        device: &Device,
    ) -> Self {
        Self {
            norm1: GroupNormConfig::new(groups, channels_in).init(device),
            conv1: conv3x3(channels_in, channels_out, device),
            embedding_projection: LinearConfig::new(embedding_dim, channels_out).init(device),
            norm2: GroupNormConfig::new(groups, channels_out).init(device),
            dropout: DropoutConfig::new(dropout).init(),
            conv2: conv3x3(channels_out, channels_out, device),
            skip: (channels_in != channels_out)
                .then(|| Conv2dConfig::new([channels_in, channels_out], [1, 1]).init(device)),
        }
    }

    /// # Shapes
    ///   - x: [batch, channels_in, height, width]
    ///   - embedding: [batch, embedding_dim] (already passed through SiLU)
    ///   - output: [batch, channels_out, height, width]
    pub fn forward(&self, x: Tensor<4>, embedding: Tensor<2>) -> Tensor<4> {
        let h = conv2d(&self.conv1, group_norm_silu(&self.norm1, x.clone()));
        let bias = self
            .embedding_projection
            .forward(embedding)
            .unsqueeze_dims::<4>(&[2, 3]); // [B, C, 1, 1]
        let h = h + bias;
        let h = conv2d(
            &self.conv2,
            self.dropout.forward(group_norm_silu(&self.norm2, h)),
        );
        let skip = match &self.skip {
            Some(conv) => conv2d(conv, x),
            None => x,
        };
        h + skip
    }
}

/// Multi-head self-attention over the pixels of a feature map, with a residual connection.
#[derive(Module, Debug)]
pub struct AttentionBlock {
    norm: GroupNorm,
    qkv: Linear,
    out: Linear,
    #[module(skip)]
    heads: usize,
}

impl AttentionBlock {
    pub fn new(channels: usize, heads: usize, groups: usize, device: &Device) -> Self {
        assert!(
            channels.is_multiple_of(heads),
            "attention: {channels} channels do not split into {heads} heads"
        );
        Self {
            norm: GroupNormConfig::new(groups, channels).init(device),
            qkv: LinearConfig::new(channels, 3 * channels).init(device),
            out: LinearConfig::new(channels, channels).init(device),
            heads,
        }
    }

    /// # Shapes
    ///   - x, output: [batch, channels, height, width]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, channels, height, width] = x.dims();
        let tokens = height * width;
        let head_dim = channels / self.heads;
        let h = group_norm(&self.norm, x.clone())
            .reshape([batch, channels, tokens])
            .swap_dims(1, 2); // [B, N, C]
        let qkv = self.qkv.forward(h); // [B, N, 3C]
        let split = |i: usize| {
            qkv.clone()
                .narrow(2, i * channels, channels)
                .reshape([batch, tokens, self.heads, head_dim])
                .swap_dims(1, 2) // [B, heads, N, d]
        };
        let (q, k, v) = (split(0), split(1), split(2));
        let scores = q.matmul(k.swap_dims(2, 3)) / (head_dim as f32).sqrt(); // [B, heads, N, N]
        let attended = softmax(scores, 3).matmul(v); // [B, heads, N, d]
        let attended = attended.swap_dims(1, 2).reshape([batch, tokens, channels]);
        let out = self
            .out
            .forward(attended)
            .swap_dims(1, 2)
            .reshape([batch, channels, height, width]);
        x + out
    }
}

/// Halves the resolution with a stride-2 3×3 convolution.
#[derive(Module, Debug)]
pub struct Downsample {
    conv: Conv2d,
}

impl Downsample {
    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([channels, channels], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
        }
    }

    /// [B, C, H, W] → [B, C, ⌈H/2⌉, ⌈W/2⌉]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(&self.conv, x)
    }
}

/// Doubles the resolution: nearest-neighbour upsampling, then a 3×3 convolution (Ho et al.).
#[derive(Module, Debug)]
pub struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            conv: conv3x3(channels, channels, device),
        }
    }

    /// [B, C, H, W] → [B, C, 2H, 2W]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        upsample_conv3x3(&self.conv, x)
    }
}
