//! The U-Net ε_θ(x_t, t, y) and its config.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::kernels::{conv2d, group_norm_silu};

use super::blocks::{
    AttentionBlock, Downsample, ResidualBlock, Upsample, conv3x3, timestep_embedding,
};

/// Bounds on a U-Net config from outside (a manifest, a checkpoint), checked before anything is
/// allocated. Far above GENDI's own model (2.0M parameters), far below what would exhaust a
/// browser tab's or a laptop's memory.
pub mod limits {
    /// Parameters, counted from the config: 50M f32 parameters are 200 MB.
    pub const MAX_PARAMETERS: usize = 50_000_000;
    pub const MAX_IMAGE_SIZE: usize = 256;
    pub const MAX_IMAGE_CHANNELS: usize = 4;
    /// Channels of any level (base_channels × mult).
    pub const MAX_CHANNELS: usize = 2048;
    pub const MAX_LEVELS: usize = 6;
    pub const MAX_BLOCKS_PER_LEVEL: usize = 8;
    pub const MAX_EMBEDDING_DIM: usize = 4096;
    pub const MAX_CLASSES: usize = 1000;
}

fn within(field: &str, value: usize, min: usize, max: usize) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!("model.{field} is {value}, allowed {min} to {max}"))
    }
}

/// The U-Net's architecture. Saved in every checkpoint and in the weights' manifest, so the
/// exact network can be rebuilt from either alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    /// Side of the square input images (MNIST: 28).
    pub image_size: usize,
    /// Channels of the input images (MNIST: 1).
    pub image_channels: usize,
    /// Channels at full resolution; level l has `base_channels * channel_mults[l]`.
    pub base_channels: usize,
    /// One entry per resolution level; every level but the last halves the resolution.
    pub channel_mults: Vec<usize>,
    /// Residual blocks per level on the way down, and again on the way up.
    pub blocks_per_level: usize,
    /// Levels (0 = full resolution) whose residual blocks are each followed by self-attention.
    /// The middle of the network, at the lowest resolution, always has one.
    pub attention_levels: Vec<usize>,
    pub attention_heads: usize,
    /// GroupNorm groups; must divide every channel count.
    pub groups: usize,
    pub dropout: f64,
    /// Width of the time (and label) embedding after its MLP.
    pub embedding_dim: usize,
    /// Digit classes; the label embedding has one more row, the "no label" used for
    /// unconditional samples and classifier-free guidance. 0 makes an unconditional model.
    pub num_classes: usize,
}

impl Default for UNetConfig {
    /// 28 → 14 → 7 with 32/64/96 channels, two residual blocks per level each way, attention in
    /// the 7×7 middle: about the size of the reference report's model.
    fn default() -> Self {
        Self {
            image_size: 28,
            image_channels: 1,
            base_channels: 32,
            channel_mults: vec![1, 2, 3],
            blocks_per_level: 2,
            attention_levels: vec![],
            attention_heads: 4,
            groups: 8,
            // The model is small and trains for few epochs: it underfits before it overfits.
            dropout: 0.0,
            embedding_dim: 128,
            num_classes: crate::data::DIGITS,
        }
    }
}

impl UNetConfig {
    /// A two-level network with 8 and 16 channels, one block a level: too small to draw good
    /// digits, quick to build thousands of times in tests and fuzzing.
    pub fn tiny() -> Self {
        Self {
            base_channels: 8,
            channel_mults: vec![1, 2],
            blocks_per_level: 1,
            embedding_dim: 16,
            groups: 4,
            attention_heads: 2,
            ..Self::default()
        }
    }

    /// Checks that the numbers fit together and stay within [`limits`], so that `init` cannot
    /// panic or exhaust memory on a config from outside. Each refusal names the field, the value
    /// and the allowed range.
    pub fn validate(&self) -> Result<(), String> {
        use limits::*;
        within("image_size", self.image_size, 1, MAX_IMAGE_SIZE)?;
        within("image_channels", self.image_channels, 1, MAX_IMAGE_CHANNELS)?;
        within("base_channels", self.base_channels, 1, MAX_CHANNELS)?;
        within(
            "channel_mults.len()",
            self.channel_mults.len(),
            1,
            MAX_LEVELS,
        )?;
        within(
            "blocks_per_level",
            self.blocks_per_level,
            1,
            MAX_BLOCKS_PER_LEVEL,
        )?;
        within("embedding_dim", self.embedding_dim, 2, MAX_EMBEDDING_DIM)?;
        within("num_classes", self.num_classes, 0, MAX_CLASSES)?;
        let levels = self.channel_mults.len();
        if !self.image_size.is_multiple_of(1 << (levels - 1)) {
            return Err(format!(
                "model.image_size {} does not halve {} times (one per level but the last)",
                self.image_size,
                levels - 1
            ));
        }
        for &mult in &self.channel_mults {
            within(
                "channel_mults[]",
                mult,
                1,
                MAX_CHANNELS / self.base_channels,
            )?;
        }
        for &mult in &self.channel_mults {
            let channels = self.base_channels * mult;
            if self.groups == 0 || !channels.is_multiple_of(self.groups) {
                return Err(format!(
                    "model.groups is {}: it must divide every level's channels ({channels} here)",
                    self.groups
                ));
            }
            if self.attention_heads == 0 || !channels.is_multiple_of(self.attention_heads) {
                return Err(format!(
                    "model.attention_heads is {}: it must divide every level's channels ({channels} here)",
                    self.attention_heads
                ));
            }
        }
        if let Some(level) = self.attention_levels.iter().find(|&&l| l >= levels) {
            return Err(format!(
                "model.attention_levels has {level}, allowed 0 to {} ({levels} levels)",
                levels - 1
            ));
        }
        if self.attention_levels.len() > levels {
            return Err(format!(
                "model.attention_levels has {} entries, allowed at most {levels}",
                self.attention_levels.len()
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "model.dropout is {}, allowed 0 to 1 (excluded)",
                self.dropout
            ));
        }
        match self.parameter_count() {
            Some(count) if count <= MAX_PARAMETERS => Ok(()),
            _ => Err(format!(
                "the model has more than {MAX_PARAMETERS} parameters, this build's limit"
            )),
        }
    }

    /// The number of parameters `init` would create, computed from the config alone with checked
    /// arithmetic (`None` on overflow), so that a manifest's count can be checked, and a model
    /// too large refused, before anything is allocated. Mirrors `init` layer by layer.
    pub fn parameter_count(&self) -> Option<usize> {
        let add = |a: usize, b: usize| a.checked_add(b);
        let mul = |a: usize, b: usize| a.checked_mul(b);
        let emb = self.embedding_dim;
        let conv = |cin: usize, cout: usize, k: usize| add(mul(mul(cin, cout)?, k * k)?, cout);
        let linear = |cin: usize, cout: usize| add(mul(cin, cout)?, cout);
        let norm = |c: usize| mul(c, 2);
        let residual = |cin: usize, cout: usize| {
            let mut total = add(norm(cin)?, conv(cin, cout, 3)?)?;
            total = add(total, linear(emb, cout)?)?;
            total = add(total, norm(cout)?)?;
            total = add(total, conv(cout, cout, 3)?)?;
            if cin != cout {
                total = add(total, conv(cin, cout, 1)?)?;
            }
            Some(total)
        };
        let attention = |c: usize| add(add(norm(c)?, linear(c, mul(3, c)?)?)?, linear(c, c)?);
        let channels = |level: usize| mul(self.base_channels, self.channel_mults[level]);
        let levels = self.channel_mults.len();
        let attention_blocks = |level: usize| -> Option<usize> {
            if self.attention_levels.contains(&level) {
                mul(self.blocks_per_level, attention(channels(level)?)?)
            } else {
                Some(0)
            }
        };

        let mut total = add(linear(self.base_channels, emb)?, linear(emb, emb)?)?;
        if self.num_classes > 0 {
            total = add(total, mul(self.num_classes + 1, emb)?)?;
        }
        total = add(total, conv(self.image_channels, self.base_channels, 3)?)?;
        let mut current = self.base_channels;
        let mut skips = Vec::new();
        for level in 0..levels {
            for _ in 0..self.blocks_per_level {
                total = add(total, residual(current, channels(level)?)?)?;
                current = channels(level)?;
                skips.push(current);
            }
            total = add(total, attention_blocks(level)?)?;
            if level + 1 < levels {
                total = add(total, conv(current, current, 3)?)?;
            }
        }
        total = add(total, mul(2, residual(current, current)?)?)?;
        total = add(total, attention(current)?)?;
        for level in (0..levels).rev() {
            for _ in 0..self.blocks_per_level {
                let skip = skips.pop()?;
                total = add(total, residual(add(current, skip)?, channels(level)?)?)?;
                current = channels(level)?;
            }
            total = add(total, attention_blocks(level)?)?;
            if level > 0 {
                total = add(total, conv(current, current, 3)?)?;
            }
        }
        total = add(total, norm(self.base_channels)?)?;
        add(total, conv(self.base_channels, self.image_channels, 3)?)
    }

    /// Builds a freshly initialised network. Call [`validate`](Self::validate) first on a config
    /// from outside.
    pub fn init(&self, device: &Device) -> UNet {
        let channels = |level: usize| self.base_channels * self.channel_mults[level];
        let levels = self.channel_mults.len();
        let emb = self.embedding_dim;
        let block =
            |cin, cout| ResidualBlock::new(cin, cout, emb, self.groups, self.dropout, device);
        let attention = |level: usize| -> Vec<AttentionBlock> {
            if self.attention_levels.contains(&level) {
                (0..self.blocks_per_level)
                    .map(|_| {
                        AttentionBlock::new(
                            channels(level),
                            self.attention_heads,
                            self.groups,
                            device,
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            }
        };

        let mut current = self.base_channels;
        let mut skip_channels = Vec::new();
        let mut down = Vec::new();
        for level in 0..levels {
            let mut blocks = Vec::new();
            for _ in 0..self.blocks_per_level {
                blocks.push(block(current, channels(level)));
                current = channels(level);
                skip_channels.push(current);
            }
            let downsample = (level + 1 < levels).then(|| Downsample::new(current, device));
            down.push(DownLevel {
                blocks,
                attentions: attention(level),
                downsample,
            });
        }

        let middle = MiddleBlock {
            block1: block(current, current),
            attention: AttentionBlock::new(current, self.attention_heads, self.groups, device),
            block2: block(current, current),
        };

        let mut up = Vec::new();
        for level in (0..levels).rev() {
            let mut blocks = Vec::new();
            for _ in 0..self.blocks_per_level {
                let skip = skip_channels.pop().expect("one skip per down block");
                blocks.push(block(current + skip, channels(level)));
                current = channels(level);
            }
            let upsample = (level > 0).then(|| Upsample::new(current, device));
            up.push(UpLevel {
                blocks,
                attentions: attention(level),
                upsample,
            });
        }

        UNet {
            time_mlp1: LinearConfig::new(self.base_channels, emb).init(device),
            time_mlp2: LinearConfig::new(emb, emb).init(device),
            label_embedding: (self.num_classes > 0)
                .then(|| EmbeddingConfig::new(self.num_classes + 1, emb).init(device)),
            conv_in: conv3x3(self.image_channels, self.base_channels, device),
            down,
            middle,
            up,
            norm_out: GroupNormConfig::new(self.groups, self.base_channels).init(device),
            conv_out: conv3x3(self.base_channels, self.image_channels, device),
            time_features: self.base_channels,
            num_classes: self.num_classes,
        }
    }
}

#[derive(Module, Debug)]
pub struct DownLevel {
    blocks: Vec<ResidualBlock>,
    /// Empty, or one per block.
    attentions: Vec<AttentionBlock>,
    downsample: Option<Downsample>,
}

#[derive(Module, Debug)]
pub struct MiddleBlock {
    block1: ResidualBlock,
    attention: AttentionBlock,
    block2: ResidualBlock,
}

#[derive(Module, Debug)]
pub struct UpLevel {
    blocks: Vec<ResidualBlock>,
    attentions: Vec<AttentionBlock>,
    upsample: Option<Upsample>,
}

#[derive(Module, Debug)]
pub struct UNet {
    time_mlp1: Linear,
    time_mlp2: Linear,
    label_embedding: Option<Embedding>,
    conv_in: Conv2d,
    down: Vec<DownLevel>,
    middle: MiddleBlock,
    up: Vec<UpLevel>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    #[module(skip)]
    time_features: usize,
    #[module(skip)]
    num_classes: usize,
}

impl UNet {
    /// Predicts the noise ε in x_t.
    ///
    /// `labels[i]` is the digit sample i is conditioned on, `None` for no label (unconditional).
    /// An unconditional model ignores the labels.
    ///
    /// # Shapes
    ///   - x: [batch, image_channels, image_size, image_size]
    ///   - timesteps, labels: batch entries each
    ///   - output: like x
    pub fn forward(
        &self,
        x: Tensor<4>,
        timesteps: &[usize],
        labels: &[Option<usize>],
    ) -> Tensor<4> {
        let device = x.device();
        let embedding = self.embed(timesteps, labels, &device); // [B, emb], after SiLU

        let mut h = conv2d(&self.conv_in, x);
        let mut skips = Vec::new();
        for level in &self.down {
            for (i, block) in level.blocks.iter().enumerate() {
                h = block.forward(h, embedding.clone());
                if let Some(attention) = level.attentions.get(i) {
                    h = attention.forward(h);
                }
                skips.push(h.clone());
            }
            if let Some(downsample) = &level.downsample {
                h = downsample.forward(h);
            }
        }

        h = self.middle.block1.forward(h, embedding.clone());
        h = self.middle.attention.forward(h);
        h = self.middle.block2.forward(h, embedding.clone());

        for level in &self.up {
            for (i, block) in level.blocks.iter().enumerate() {
                let skip = skips.pop().expect("one skip per down block");
                h = block.forward(Tensor::cat(vec![h, skip], 1), embedding.clone());
                if let Some(attention) = level.attentions.get(i) {
                    h = attention.forward(h);
                }
            }
            if let Some(upsample) = &level.upsample {
                h = upsample.forward(h);
            }
        }

        conv2d(&self.conv_out, group_norm_silu(&self.norm_out, h))
    }

    /// SiLU(MLP(sinusoid(t)) + label embedding), shared by every residual block.
    fn embed(&self, timesteps: &[usize], labels: &[Option<usize>], device: &Device) -> Tensor<2> {
        let batch = timesteps.len();
        let time = timestep_embedding(timesteps, self.time_features, device);
        let mut embedding = self.time_mlp2.forward(silu(self.time_mlp1.forward(time)));
        if let Some(table) = &self.label_embedding {
            assert_eq!(
                labels.len(),
                batch,
                "the U-Net needs one label (or None) per sample"
            );
            let indices: Vec<i64> = labels
                .iter()
                .map(|label| match label {
                    Some(digit) if *digit < self.num_classes => *digit as i64,
                    Some(digit) => panic!(
                        "label {digit} is not one of the {} classes",
                        self.num_classes
                    ),
                    None => self.num_classes as i64,
                })
                .collect();
            let indices = Tensor::<2, Int>::from_data(TensorData::new(indices, [batch, 1]), device);
            let dim = embedding.dims()[1];
            embedding = embedding + table.forward(indices).reshape([batch, dim]);
        }
        silu(embedding)
    }

    /// The index of the "no label" row of the label embedding.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The modules that work at the image's full resolution, as their parameters' paths begin
    /// (`down.0.blocks.0.conv1.weight`): the first and last convolutions, the first level down
    /// and the last level up.
    pub fn full_resolution_modules(&self) -> Vec<String> {
        let last_up = self.up.len().saturating_sub(1);
        [
            "conv_in",
            "down.0",
            &format!("up.{last_up}"),
            "norm_out",
            "conv_out",
        ]
        .map(String::from)
        .to_vec()
    }
}
