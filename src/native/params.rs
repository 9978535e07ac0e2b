//! A model's parameters as a whole: read flat, and blended with another model's one by one. The
//! EMA of training and the averaging of checkpoints in `export` are both blends.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

use crate::model::UNet;

/// `into ← keep · into + (1 − keep) · other`, parameter by parameter (same architecture).
pub fn blend(into: UNet, other: &UNet, keep: f32) -> UNet {
    let mut flat = FlatParams::default();
    other.visit(&mut flat);
    into.map(&mut Blend {
        other: flat.0.into_iter(),
        keep,
    })
}

/// The parameter-wise mean of `models` (same architecture); `None` for no models.
pub fn mean(models: impl IntoIterator<Item = UNet>) -> Option<UNet> {
    let mut models = models.into_iter();
    let first = models.next()?;
    // A running mean: after k models, m_k = m_{k−1} · (k − 1)/k + x_k / k.
    Some(models.zip(2..).fold(first, |mean, (model, k)| {
        blend(mean, &model, (k - 1) as f32 / k as f32)
    }))
}

/// The float parameters of a module, flattened, in visiting order.
#[derive(Default)]
struct FlatParams(Vec<Tensor<1>>);

impl ModuleVisitor for FlatParams {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let count = value.shape().num_elements();
        self.0.push(value.reshape([count]));
    }
}

struct Blend<I: Iterator<Item = Tensor<1>>> {
    other: I,
    keep: f32,
}

impl<I: Iterator<Item = Tensor<1>>> ModuleMapper for Blend<I> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let other = self
            .other
            .next()
            .expect("blended models have the same parameters");
        let keep = self.keep;
        param.map(|value| {
            let dims = value.dims();
            value * keep + other.reshape(dims) * (1.0 - keep)
        })
    }
}
