//! The MNIST classifiers that `gendi eval` scores samples with: small CNNs whose 128-wide
//! penultimate layer gives the features of the Fréchet distance. [`Classifier`] is the judge
//! every report has used; [`CrossCheck`], built differently (5×5 kernels and max-pooling instead
//! of strided 3×3 ones, another seed), scores the same images again, so that a figure that holds
//! for one network's quirks only shows up. Evaluation artefacts only; the page never loads them.

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::activation::{relu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::data::{IMAGE_SIDE, Mnist};
use crate::rng::NoiseRng;

/// Width of the feature layer.
pub const FEATURES: usize = 128;

/// A digit classifier: features for the Fréchet distance and logits for the ten digits.
pub trait DigitClassifier: Module + Sized {
    /// A freshly initialised network on `device`.
    fn init(device: &Device) -> Self;

    /// # Shapes
    ///   - images: [batch, 1, 28, 28] in [−1, 1]
    ///   - output: features [batch, 128] and logits [batch, 10]
    fn forward(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<2>);

    /// Scores images given as values in [−1, 1], 784 per image.
    fn score(&self, images: &[f32], device: &Device) -> Scores {
        let count = images.len() / (IMAGE_SIDE * IMAGE_SIDE);
        let mut scores = Scores {
            features: Vec::new(),
            predictions: Vec::new(),
            confidences: Vec::new(),
        };
        for start in (0..count).step_by(250) {
            let n = (count - start).min(250);
            let chunk = images[start * 784..(start + n) * 784].to_vec();
            let x = Tensor::from_data(
                TensorData::new(chunk, [n, 1, IMAGE_SIDE, IMAGE_SIDE]),
                device,
            );
            let (features, logits) = self.forward(x);
            let probs: Vec<f32> = softmax(logits, 1).into_data().try_to_vec().expect("f32");
            let features: Vec<f32> = features.into_data().try_to_vec().expect("f32");
            scores.features.extend(features.iter().map(|&v| v as f64));
            for row in probs.chunks(10) {
                let (best, p) = row
                    .iter()
                    .enumerate()
                    .fold((0, f32::MIN), |b, (i, &p)| if p > b.1 { (i, p) } else { b });
                scores.predictions.push(best);
                scores.confidences.push(p as f64);
            }
        }
        scores
    }
}

/// Both classifiers' last layers: the feature layer (ReLU) on the flattened maps, then the logits.
fn head(hidden: &Linear, output: &Linear, maps: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
    let features = relu(hidden.forward(maps));
    let logits = output.forward(features.clone());
    (features, logits)
}

/// Three strided 3×3 convolutions, then the feature layer: `gendi eval`'s judge.
#[derive(Module, Debug)]
pub struct Classifier {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    hidden: Linear,
    output: Linear,
}

impl DigitClassifier for Classifier {
    fn init(device: &Device) -> Self {
        let conv = |i, o, stride| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        Self {
            conv1: conv(1, 32, 1),
            conv2: conv(32, 64, 2),
            conv3: conv(64, 64, 2),
            hidden: LinearConfig::new(64 * 7 * 7, FEATURES).init(device),
            output: LinearConfig::new(FEATURES, 10).init(device),
        }
    }

    fn forward(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let batch = images.dims()[0];
        let x = relu(self.conv1.forward(images));
        let x = relu(self.conv2.forward(x)); // [B, 64, 14, 14]
        let x = relu(self.conv3.forward(x)); // [B, 64, 7, 7]
        head(&self.hidden, &self.output, x.reshape([batch, 64 * 7 * 7]))
    }
}

/// Two 5×5 convolutions, each followed by 2×2 max-pooling (LeNet's layout, wider), then the
/// feature layer: the second opinion of `gendi eval --cross-check`.
#[derive(Module, Debug)]
pub struct CrossCheck {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    hidden: Linear,
    output: Linear,
}

impl DigitClassifier for CrossCheck {
    fn init(device: &Device) -> Self {
        let conv = |i, o| {
            Conv2dConfig::new([i, o], [5, 5])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
                .init(device)
        };
        Self {
            conv1: conv(1, 32),
            conv2: conv(32, 64),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            hidden: LinearConfig::new(64 * 7 * 7, FEATURES).init(device),
            output: LinearConfig::new(FEATURES, 10).init(device),
        }
    }

    fn forward(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let batch = images.dims()[0];
        let x = self.pool.forward(relu(self.conv1.forward(images))); // [B, 32, 14, 14]
        let x = self.pool.forward(relu(self.conv2.forward(x))); // [B, 64, 7, 7]
        head(&self.hidden, &self.output, x.reshape([batch, 64 * 7 * 7]))
    }
}

/// What the classifier says about a set of images.
pub struct Scores {
    /// [count × 128], row-major, f64 for the statistics.
    pub features: Vec<f64>,
    pub predictions: Vec<usize>,
    /// Max softmax probability per image.
    pub confidences: Vec<f64>,
}

/// Pixels of `data` as model-range values, all images.
pub fn images_of(data: &Mnist, indices: &[usize]) -> Vec<f32> {
    indices
        .iter()
        .flat_map(|&i| {
            data.image(i)
                .iter()
                .map(|&p| crate::data::normalize_to_neg_one_to_one(p))
        })
        .collect()
}

/// Trains the classifier on the training split with a fixed seed (AdamW, batch 128), reporting
/// progress through `on_step(step, total, loss)`.
pub fn train<M: DigitClassifier>(
    train: &Mnist,
    epochs: usize,
    seed: u64,
    device: &Device,
    mut on_step: impl FnMut(usize, usize, f32),
) -> M {
    let autodiff = device.clone().autodiff();
    autodiff.seed(seed);
    let mut model = M::init(&autodiff);
    let mut optimizer = AdamWConfig::new().with_weight_decay(1e-4).init();
    let batch = 128;
    let per_epoch = train.len() / batch;
    let total = per_epoch * epochs;
    let loss_fn = CrossEntropyLossConfig::new().init(&autodiff);
    for epoch in 0..epochs {
        let order = NoiseRng::new(seed + epoch as u64).permutation(train.len());
        for (i, indices) in order.chunks_exact(batch).enumerate() {
            let (x, labels) = train.batch(indices, &autodiff);
            let labels: Vec<i64> = labels.into_iter().map(|l| l as i64).collect();
            let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &autodiff);
            let (_, logits) = model.forward(x);
            let loss = loss_fn.forward(logits, targets);
            let value: f32 = loss.clone().into_scalar();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let step = epoch * per_epoch + i;
            // Step decay: 1e-3 for 60% of the run, 3e-4, then 1e-4 for the last 20%.
            let progress = step as f64 / total as f64;
            let lr = if progress < 0.6 {
                1e-3
            } else if progress < 0.8 {
                3e-4
            } else {
                1e-4
            };
            model = optimizer.step(lr, model, grads);
            on_step(step + 1, total, value);
        }
    }
    model.valid().to_device(device)
}

pub fn save<M: DigitClassifier>(model: &M, path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    model
        .clone()
        .into_record()
        .save(&tmp)
        .map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn load<M: DigitClassifier>(path: &Path, device: &Device) -> Result<M, String> {
    let record = ModuleRecord::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
    M::init(device)
        .try_load_record(record)
        .map_err(|e| format!("{}: {e}", path.display()))
}
