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
    /// Checks that the numbers fit together, so that `init` cannot panic on a bad manifest.
    pub fn validate(&self) -> Result<(), String> {
        let levels = self.channel_mults.len();
        if levels == 0 || self.base_channels == 0 || self.blocks_per_level == 0 {
            return Err(
                "channel_mults, base_channels and blocks_per_level must be non-zero".into(),
            );
        }
        if self.image_size == 0 || self.image_channels == 0 || self.embedding_dim < 2 {
            return Err("image_size, image_channels and embedding_dim must be set".into());
        }
        if self.image_size % (1 << (levels - 1)) != 0 {
            return Err(format!(
                "image_size {} does not halve {} times",
                self.image_size,
                levels - 1
            ));
        }
        for &mult in &self.channel_mults {
            let channels = self.base_channels * mult;
            if mult == 0 || self.groups == 0 || channels % self.groups != 0 {
                return Err(format!(
                    "{channels} channels do not split into {} groups",
                    self.groups
                ));
            }
            if self.attention_heads == 0 || channels % self.attention_heads != 0 {
                return Err(format!(
                    "{channels} channels do not split into {} heads",
                    self.attention_heads
                ));
            }
        }
        if let Some(level) = self.attention_levels.iter().find(|&&l| l >= levels) {
            return Err(format!(
                "attention level {level} does not exist ({levels} levels)"
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        Ok(())
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
}
