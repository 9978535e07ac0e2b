//! burn-flex runs [`KernelBackend`] through this module's kernels: tensors in, slices to the
//! kernels, tensors out. Shapes or dtypes the kernels do not cover (f16, groups, dilation) go to
//! burn's own ops.

use burn::backend::TensorMetadata;
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::ops::{ConvOptions, ModuleOps};
use burn::tensor::{DType, TensorData};

use super::conv::{Conv2dShape, conv2d_backward, conv2d_forward, conv2d_forward_keeping};
use super::norm::{GroupNormShape, group_norm_backward, group_norm_forward};
use super::upsample::{deinterleave, interleave};
use super::{GroupNormOptions, KeptTiles, KernelBackend, composite, gendi_kernels_enabled};

impl KernelBackend for Flex {
    fn conv2d_with_bias(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(shape) = kernel_shape(&x, &weight, &options) else {
            return Flex::conv2d(x, weight, Some(bias), options);
        };
        let output = conv2d_forward(&shape, &f32s(&x), &f32s(&weight), &f32s(&bias));
        conv_output(&shape, output)
    }

    fn conv2d_with_bias_keeping(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        options: ConvOptions<2>,
    ) -> (FlexTensor, Option<KeptTiles>) {
        let Some(shape) = kernel_shape(&x, &weight, &options) else {
            return (Flex::conv2d(x, weight, Some(bias), options), None);
        };
        let (output, kept) =
            conv2d_forward_keeping(&shape, &f32s(&x), &f32s(&weight), &f32s(&bias));
        (conv_output(&shape, output), kept)
    }

    fn conv2d_with_bias_backward(
        x: FlexTensor,
        weight: FlexTensor,
        output_grad: FlexTensor,
        kept: Option<KeptTiles>,
        options: ConvOptions<2>,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let Some(shape) = kernel_shape(&x, &weight, &options) else {
            return composite::conv2d_backward::<Flex>(x, weight, output_grad, options);
        };
        let x_shape = x.shape().to_vec();
        let weight_shape = weight.shape().to_vec();
        let (x, weight, dy) = (f32s(&x), f32s(&weight), f32s(&output_grad));
        let grads = conv2d_backward(&shape, &x, &weight, &dy, kept.as_ref());
        (
            tensor(grads.x, x_shape),
            tensor(grads.weight, weight_shape),
            tensor(grads.bias, vec![shape.channels_out]),
        )
    }

    fn interleave_phases(
        p00: FlexTensor,
        p01: FlexTensor,
        p10: FlexTensor,
        p11: FlexTensor,
    ) -> FlexTensor {
        let phases = [p00, p01, p10, p11];
        let shape = phases[0].shape().to_vec();
        let same = phases
            .iter()
            .all(|p| p.dtype() == DType::F32 && p.shape().to_vec() == shape);
        if !gendi_kernels_enabled() || !same || shape.len() != 4 {
            return composite::interleave_phases::<Flex>(phases);
        }
        let (height, width) = (shape[2], shape[3]);
        let values = phases.each_ref().map(f32s);
        let image = interleave(values.each_ref().map(|v| &v[..]), height, width);
        tensor(image, vec![shape[0], shape[1], 2 * height, 2 * width])
    }

    fn deinterleave_phases(image: FlexTensor) -> (FlexTensor, FlexTensor, FlexTensor, FlexTensor) {
        let shape = image.shape().to_vec();
        let even = shape.len() == 4 && shape[2].is_multiple_of(2) && shape[3].is_multiple_of(2);
        if !gendi_kernels_enabled() || image.dtype() != DType::F32 || !even {
            let [a, b, c, d] = composite::deinterleave_phases::<Flex>(image);
            return (a, b, c, d);
        }
        let (height, width) = (shape[2] / 2, shape[3] / 2);
        let phase_shape = vec![shape[0], shape[1], height, width];
        let [a, b, c, d] =
            deinterleave(&f32s(&image), height, width).map(|v| tensor(v, phase_shape.clone()));
        (a, b, c, d)
    }

    fn group_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        options: GroupNormOptions,
    ) -> FlexTensor {
        let Some(shape) = norm_shape(&x, &gamma, &beta, &options) else {
            return composite::group_norm::<Flex>(x, gamma, beta, &options);
        };
        let x_shape = x.shape().to_vec();
        let output = group_norm_forward(&shape, &f32s(&x), &f32s(&gamma), &f32s(&beta));
        tensor(output, x_shape)
    }

    fn group_norm_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        output_grad: FlexTensor,
        options: GroupNormOptions,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let Some(shape) = norm_shape(&x, &gamma, &beta, &options) else {
            return composite::group_norm_backward::<Flex>(x, gamma, beta, output_grad, &options);
        };
        let x_shape = x.shape().to_vec();
        let grads = group_norm_backward(
            &shape,
            &f32s(&x),
            &f32s(&gamma),
            &f32s(&beta),
            &f32s(&output_grad),
        );
        (
            tensor(grads.x, x_shape),
            tensor(grads.gamma, vec![shape.channels]),
            tensor(grads.beta, vec![shape.channels]),
        )
    }
}

/// The kernels' view of a GroupNorm, if they cover it: f32, `[batch, channels, ...]`.
fn norm_shape(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    options: &GroupNormOptions,
) -> Option<GroupNormShape> {
    let f32s = [x, gamma, beta].iter().all(|t| t.dtype() == DType::F32);
    let dims = x.shape().to_vec();
    if !gendi_kernels_enabled() || !f32s || dims.len() < 3 {
        return None;
    }
    let channels = dims[1];
    let covered = options.groups > 0
        && channels.is_multiple_of(options.groups)
        && gamma.shape().to_vec() == [channels]
        && beta.shape().to_vec() == [channels];
    covered.then(|| GroupNormShape {
        batch: dims[0],
        channels,
        pixels: dims[2..].iter().product(),
        groups: options.groups,
        epsilon: options.epsilon as f32,
        silu: options.silu,
    })
}

/// The kernels' view of a convolution, if they cover it: f32, no groups, no dilation.
fn kernel_shape(
    x: &FlexTensor,
    weight: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<Conv2dShape> {
    let covered = gendi_kernels_enabled()
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && options.groups == 1
        && options.dilation == [1, 1];
    if !covered {
        return None;
    }
    let [batch, channels_in, height, width]: [usize; 4] = x.shape().as_slice().try_into().ok()?;
    let [channels_out, weight_in, kernel_h, kernel_w]: [usize; 4] =
        weight.shape().as_slice().try_into().ok()?;
    (weight_in == channels_in).then_some(Conv2dShape {
        batch,
        channels_in,
        height,
        width,
        channels_out,
        kernel: [kernel_h, kernel_w],
        stride: options.stride,
        padding: options.padding,
    })
}

/// The tensor's f32 values, in a contiguous copy only when it is strided (one copy, kept for the
/// kernel's whole call).
fn f32s(tensor: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(slice) => slice.into(),
        None => tensor
            .to_contiguous()
            .into_data()
            .try_into_vec::<f32>()
            .expect("an f32 tensor")
            .into(),
    }
}

/// A convolution's output values as its `[batch, channels_out, out_h, out_w]` tensor.
fn conv_output(shape: &Conv2dShape, values: Vec<f32>) -> FlexTensor {
    let [out_h, out_w] = shape.out_size();
    tensor(values, vec![shape.batch, shape.channels_out, out_h, out_w])
}

fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}
