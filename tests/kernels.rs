//! The CPU kernels against burn's reference ops: the forward and each gradient, through the
//! same route training takes (autodiff over burn-flex), on random inputs of awkward shapes.

mod common;

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNormConfig, PaddingConfig2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Gradients, Tensor};
use common::max_abs_diff;
use gendi::kernels::{conv2d, group_norm, group_norm_silu, use_gendi_kernels};

/// Relative to the largest reference value: f32 sums of up to a few thousand terms in another
/// order.
const TOLERANCE: f32 = 1e-4;

struct Case {
    batch: usize,
    channels_in: usize,
    channels_out: usize,
    size: [usize; 2],
    kernel: usize,
    stride: usize,
    padding: usize,
}

fn assert_close(what: &str, actual: Tensor<4>, expected: Tensor<4>) {
    let (a, e) = (common::values(actual), common::values(expected));
    assert_slices_close(what, &a, &e);
}

fn assert_slices_close(what: &str, actual: &[f32], expected: &[f32]) {
    let scale = expected.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let diff = max_abs_diff(actual, expected);
    assert!(
        diff <= TOLERANCE * scale,
        "{what}: max |difference| {diff} against values up to {scale}"
    );
}

/// Asserts that the two outputs agree, then back-propagates the same random projection of each
/// and asserts that the gradients with respect to `x` agree. Returns both sets of gradients.
fn outputs_and_input_grads_agree(
    ours: Tensor<4>,
    reference: Tensor<4>,
    x: &Tensor<4>,
) -> (Gradients, Gradients) {
    assert_eq!(ours.dims(), reference.dims(), "output shape");
    let projection =
        Tensor::<4>::random(ours.dims(), Distribution::Normal(0.0, 1.0), &ours.device());
    let grads_ours = (ours.clone() * projection.clone()).sum().backward();
    let grads_ref = (reference.clone() * projection).sum().backward();
    assert_close("output", ours.inner(), reference.inner());
    assert_close(
        "input gradient",
        x.grad(&grads_ours).unwrap(),
        x.grad(&grads_ref).unwrap(),
    );
    (grads_ours, grads_ref)
}

/// A standard-normal input whose gradient is tracked.
fn tracked_input(shape: [usize; 4], device: &Device) -> Tensor<4> {
    Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device).require_grad()
}

/// The layer with its weight and bias tracked, and those two tensors (to read their gradients).
fn tracked(conv: &Conv2d) -> (Conv2d, Tensor<4>, Tensor<1>) {
    let weight = conv.weight.val().require_grad();
    let bias = conv.bias.as_ref().unwrap().val().require_grad();
    let layer = Conv2d {
        weight: Param::from_tensor(weight.clone()),
        bias: Some(Param::from_tensor(bias.clone())),
        ..conv.clone()
    };
    (layer, weight, bias)
}

fn layer(case: &Case, device: &Device) -> Conv2d {
    let p = case.padding;
    let mut conv = Conv2dConfig::new([case.channels_in, case.channels_out], [case.kernel; 2])
        .with_stride([case.stride; 2])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .init(device);
    // A bias far from zero, so that a dropped bias shows.
    let bias = Tensor::random(
        [case.channels_out],
        Distribution::Uniform(-1.0, 1.0),
        device,
    );
    conv.bias = Some(Param::from_tensor(bias));
    conv
}

/// Runs `case` through the kernels and through `burn::tensor::module::conv2d` on the same
/// parameters and input, and compares the output and the gradients of a random projection of it.
fn check(case: Case) {
    let device = common::device().autodiff();
    let conv = layer(&case, &device);
    let [h, w] = case.size;
    let x = tracked_input([case.batch, case.channels_in, h, w], &device);
    let (ours_layer, weight, bias) = tracked(&conv);

    let ours = conv2d(&ours_layer, x.clone());
    let p = case.padding;
    let options = ConvOptions::new([case.stride; 2], [p, p], [1, 1], 1);
    let reference =
        burn::tensor::module::conv2d(x.clone(), weight.clone(), Some(bias.clone()), options);
    let (grads_ours, grads_ref) = outputs_and_input_grads_agree(ours, reference, &x);
    assert_close(
        "weight gradient",
        weight.grad(&grads_ours).unwrap(),
        weight.grad(&grads_ref).unwrap(),
    );
    let bias_grad = |grads| {
        bias.grad(grads)
            .unwrap()
            .reshape([1, 1, 1, case.channels_out])
    };
    assert_close(
        "bias gradient",
        bias_grad(&grads_ours),
        bias_grad(&grads_ref),
    );
}

#[test]
fn conv3x3_same_size_matches_burn() {
    check(Case {
        batch: 1,
        channels_in: 32,
        channels_out: 32,
        size: [28, 28],
        kernel: 3,
        stride: 1,
        padding: 1,
    });
    check(Case {
        batch: 64,
        channels_in: 64,
        channels_out: 96,
        size: [7, 7],
        kernel: 3,
        stride: 1,
        padding: 1,
    });
}

#[test]
fn conv3x3_odd_sizes_and_channels_match_burn() {
    check(Case {
        batch: 3,
        channels_in: 5,
        channels_out: 17,
        size: [13, 11],
        kernel: 3,
        stride: 1,
        padding: 1,
    });
    check(Case {
        batch: 2,
        channels_in: 1,
        channels_out: 3,
        size: [9, 5],
        kernel: 3,
        stride: 1,
        padding: 0,
    });
    // Images narrower than one 2×2 output tile of Winograd's F(2×2, 3×3).
    check(Case {
        batch: 2,
        channels_in: 4,
        channels_out: 6,
        size: [1, 3],
        kernel: 3,
        stride: 1,
        padding: 1,
    });
}

#[test]
fn conv3x3_stride2_matches_burn() {
    check(Case {
        batch: 64,
        channels_in: 32,
        channels_out: 32,
        size: [28, 28],
        kernel: 3,
        stride: 2,
        padding: 1,
    });
    check(Case {
        batch: 5,
        channels_in: 7,
        channels_out: 9,
        size: [7, 7],
        kernel: 3,
        stride: 2,
        padding: 1,
    });
    check(Case {
        batch: 2,
        channels_in: 3,
        channels_out: 5,
        size: [10, 13],
        kernel: 3,
        stride: 2,
        padding: 2,
    });
}

#[test]
fn conv1x1_matches_burn() {
    check(Case {
        batch: 64,
        channels_in: 96,
        channels_out: 64,
        size: [14, 14],
        kernel: 1,
        stride: 1,
        padding: 0,
    });
    check(Case {
        batch: 1,
        channels_in: 3,
        channels_out: 5,
        size: [7, 9],
        kernel: 1,
        stride: 1,
        padding: 0,
    });
}

#[test]
fn kernel_larger_than_stride_with_wide_padding_matches_burn() {
    // 5×5 with padding 3: taps that fall wholly outside the image for the edge rows.
    check(Case {
        batch: 2,
        channels_in: 4,
        channels_out: 6,
        size: [6, 8],
        kernel: 5,
        stride: 1,
        padding: 3,
    });
    check(Case {
        batch: 1,
        channels_in: 2,
        channels_out: 3,
        size: [4, 4],
        kernel: 5,
        stride: 3,
        padding: 4,
    });
}

/// GroupNorm (+ SiLU) through the kernels against burn's `GroupNorm` layer and `silu`, forward
/// and the gradients of x, γ and β.
fn check_group_norm(batch: usize, channels: usize, size: [usize; 2], groups: usize, silu: bool) {
    let device = common::device().autodiff();
    let mut norm = GroupNormConfig::new(groups, channels).init(&device);
    // γ and β away from their initial 1 and 0, so that a swapped or dropped parameter shows.
    let random = || Tensor::<1>::random([channels], Distribution::Uniform(-1.5, 1.5), &device);
    norm.gamma = Some(Param::from_tensor(random().require_grad()));
    norm.beta = Some(Param::from_tensor(random().require_grad()));
    let [h, w] = size;
    let x = Tensor::<4>::random(
        [batch, channels, h, w],
        Distribution::Normal(0.5, 2.0),
        &device,
    )
    .require_grad();

    let ours = if silu {
        group_norm_silu(&norm, x.clone())
    } else {
        group_norm(&norm, x.clone())
    };
    let reference = if silu {
        burn::tensor::activation::silu(norm.forward(x.clone()))
    } else {
        norm.forward(x.clone())
    };
    let (grads_ours, grads_ref) = outputs_and_input_grads_agree(ours, reference, &x);
    for (name, param) in [("γ", &norm.gamma), ("β", &norm.beta)] {
        let param = param.as_ref().unwrap().val();
        let grad = |grads| param.grad(grads).unwrap().reshape([1, 1, 1, channels]);
        assert_close(
            &format!("{name} gradient"),
            grad(&grads_ours),
            grad(&grads_ref),
        );
    }
}

#[test]
fn group_norm_silu_matches_burn() {
    check_group_norm(1, 32, [28, 28], 8, true);
    check_group_norm(64, 96, [7, 7], 8, true);
    check_group_norm(3, 6, [5, 3], 3, true);
}

#[test]
fn group_norm_without_silu_matches_burn() {
    check_group_norm(2, 96, [7, 7], 8, false);
    check_group_norm(5, 4, [1, 9], 2, false);
}

#[test]
fn burn_ops_path_matches_burn() {
    // The same checks with the kernels switched off: the composite ops that the GPU runs.
    use_gendi_kernels(false);
    let result = std::panic::catch_unwind(|| {
        check_group_norm(3, 6, [5, 3], 3, true);
        check_group_norm(2, 8, [4, 4], 2, false);
        check(Case {
            batch: 3,
            channels_in: 5,
            channels_out: 7,
            size: [9, 8],
            kernel: 3,
            stride: 2,
            padding: 1,
        });
        check_upsample(4, 3, 5, [3, 5]);
    });
    use_gendi_kernels(true);
    result.unwrap();
}

/// Nearest ×2 upsampling then a 3×3 convolution, as four 2×2 convolutions, against burn's
/// convolution of the explicitly upsampled image: output and the x, weight and bias gradients.
fn check_upsample(batch: usize, channels_in: usize, channels_out: usize, size: [usize; 2]) {
    use gendi::kernels::upsample::upsample_nearest;
    use gendi::kernels::upsample_conv3x3;
    let device = common::device().autodiff();
    let case = Case {
        batch,
        channels_in,
        channels_out,
        size: [0, 0],
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    let conv = layer(&case, &device);
    let [h, w] = size;
    let x = tracked_input([batch, channels_in, h, w], &device);
    let (tracked, weight, bias) = tracked(&conv);
    let ours = upsample_conv3x3(&tracked, x.clone());
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let reference = burn::tensor::module::conv2d(
        upsample_nearest(x.clone()),
        weight.clone(),
        Some(bias.clone()),
        options,
    );
    assert_eq!(ours.dims(), [batch, channels_out, 2 * h, 2 * w]);
    let (grads_ours, grads_ref) = outputs_and_input_grads_agree(ours, reference, &x);
    assert_close(
        "weight gradient",
        weight.grad(&grads_ours).unwrap(),
        weight.grad(&grads_ref).unwrap(),
    );
    let bias_grad = |grads| bias.grad(grads).unwrap().reshape([1, 1, 1, channels_out]);
    assert_close(
        "bias gradient",
        bias_grad(&grads_ours),
        bias_grad(&grads_ref),
    );
}

#[test]
fn upsample_conv_as_four_phases_matches_conv_of_the_upsampled_image() {
    check_upsample(2, 96, 96, [7, 7]);
    check_upsample(16, 64, 64, [14, 14]);
    check_upsample(1, 3, 5, [5, 4]);
    check_upsample(3, 2, 7, [1, 1]);
    // Odd sizes, and a single pixel.
    check_upsample(5, 3, 5, [5, 3]);
    check_upsample(4, 2, 7, [1, 1]);
}

/// Shapes for Winograd's tilings, (batch, C_in, C_out, height, width): those `conv2d_forward`
/// sends them (many tiles, several groups of images) and those it does not (odd sizes, images
/// narrower than a tile, channel counts that are not multiples of the SIMD width).
const WINOGRAD_SHAPES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 32, 32, 28, 28),
    (9, 8, 16, 28, 28),
    (16, 64, 96, 7, 7),
    (6, 32, 64, 14, 14),
    (3, 5, 17, 13, 11),
    (2, 4, 6, 1, 3),
    (1, 1, 3, 2, 1),
];

/// The convolution of one of [`WINOGRAD_SHAPES`], and a random input and kernel for it.
fn winograd_case(
    rng: &mut gendi::rng::NoiseRng,
    (batch, channels_in, channels_out, height, width): (usize, usize, usize, usize, usize),
) -> (gendi::kernels::conv::Conv2dShape, Vec<f32>, Vec<f32>) {
    let shape = gendi::kernels::winograd::conv3x3_shape(
        batch,
        [channels_in, channels_out],
        [height, width],
    );
    let x = rng.normals(batch * channels_in * height * width);
    let weight = rng.normals(channels_out * channels_in * 9);
    (shape, x, weight)
}

/// Both tilings.
const TILINGS: [gendi::kernels::winograd::Tiling; 2] = [
    gendi::kernels::winograd::Tiling::F2x2,
    gendi::kernels::winograd::Tiling::F4x4,
];

/// Winograd's forward, in both tilings, against im2col + GEMM on the same random input.
#[test]
fn winograd_conv3x3_matches_im2col() {
    use gendi::kernels::conv::conv2d_forward;
    use gendi::kernels::winograd::conv3x3_forward;
    let mut rng = gendi::rng::NoiseRng::new(3);
    for dims in WINOGRAD_SHAPES {
        let (shape, x, weight) = winograd_case(&mut rng, dims);
        let bias = rng.normals(shape.channels_out);
        gendi::kernels::use_winograd(false);
        let expected = conv2d_forward(&shape, &x, &weight, &bias);
        gendi::kernels::use_winograd(true);
        for tiling in TILINGS {
            let actual = conv3x3_forward(&shape, tiling, &x, &weight, &bias);
            assert_slices_close(&format!("{tiling:?} {shape:?}"), &actual, &expected);
        }
    }
}

/// Winograd's three gradients, in both tilings, against im2col + GEMM's, for the same random
/// input and output gradient.
#[test]
fn winograd_conv3x3_gradients_match_im2col() {
    use gendi::kernels::conv::conv2d_backward;
    use gendi::kernels::winograd::conv3x3_backward;
    let mut rng = gendi::rng::NoiseRng::new(4);
    for dims in WINOGRAD_SHAPES {
        let (shape, x, weight) = winograd_case(&mut rng, dims);
        let dy = rng.normals(x.len() / shape.channels_in * shape.channels_out);
        gendi::kernels::use_winograd(false);
        let expected = conv2d_backward(&shape, &x, &weight, &dy, None);
        gendi::kernels::use_winograd(true);
        for tiling in TILINGS {
            let actual = conv3x3_backward(&shape, tiling, &x, &weight, &dy, None);
            let what = format!("{tiling:?} input gradient {shape:?}");
            assert_slices_close(&what, &actual.x, &expected.x);
            let what = format!("{tiling:?} weight gradient {shape:?}");
            assert_slices_close(&what, &actual.weight, &expected.weight);
            let what = format!("{tiling:?} bias gradient {shape:?}");
            assert_slices_close(&what, &actual.bias, &expected.bias);
        }
    }
}

/// The backward reads the tiles its forward kept instead of transforming the input again: the
/// same three gradients to the bit, in both tilings (several groups of images, a partial last
/// group, odd sizes). Tiles kept for another convolution are not used.
#[test]
fn winograd_backward_with_the_forwards_kept_tiles_gives_the_same_bits() {
    use gendi::kernels::winograd::{conv3x3_backward, conv3x3_forward, conv3x3_forward_keeping};
    let mut rng = gendi::rng::NoiseRng::new(5);
    let (other_shape, other_x, other_weight) = winograd_case(&mut rng, (2, 3, 4, 9, 9));
    let other_bias = rng.normals(other_shape.channels_out);
    for dims in WINOGRAD_SHAPES {
        let (shape, x, weight) = winograd_case(&mut rng, dims);
        let bias = rng.normals(shape.channels_out);
        let dy = rng.normals(x.len() / shape.channels_in * shape.channels_out);
        for tiling in TILINGS {
            let what = format!("{tiling:?} {shape:?}");
            let (output, kept) = conv3x3_forward_keeping(&shape, tiling, &x, &weight, &bias);
            assert_eq!(
                output,
                conv3x3_forward(&shape, tiling, &x, &weight, &bias),
                "{what}: forward"
            );
            let recomputed = conv3x3_backward(&shape, tiling, &x, &weight, &dy, None);
            let reused = conv3x3_backward(&shape, tiling, &x, &weight, &dy, Some(&kept));
            assert_eq!(reused.x, recomputed.x, "{what}: input gradient");
            assert_eq!(reused.weight, recomputed.weight, "{what}: weight gradient");
            assert_eq!(reused.bias, recomputed.bias, "{what}: bias gradient");
            // The other tiling's tiles, or another convolution's, are left alone.
            let other_tiling = TILINGS.into_iter().find(|&t| t != tiling).unwrap();
            let (_, wrong_tiling) =
                conv3x3_forward_keeping(&shape, other_tiling, &x, &weight, &bias);
            let (_, wrong_shape) =
                conv3x3_forward_keeping(&other_shape, tiling, &other_x, &other_weight, &other_bias);
            for wrong in [wrong_tiling, wrong_shape] {
                let ignored = conv3x3_backward(&shape, tiling, &x, &weight, &dy, Some(&wrong));
                assert_eq!(ignored.weight, recomputed.weight, "{what}: {wrong:?}");
            }
        }
    }
}

/// The kernels cut a batch into GEMM groups by the batch alone, never by the thread count, so a
/// seed gives the same bits on any number of threads (the page promises the same digits). The
/// stride-2 case at batch 2 differed when each of two threads ran one image's 49 columns and one
/// thread ran both images' 98 in one GEMM.
#[test]
fn convolutions_give_the_same_bits_on_any_number_of_threads() {
    use gendi::kernels::conv::{Conv2dShape, conv2d_forward};
    let value = |i: usize, salt: usize| ((i * salt) % 1000) as f32 / 500.0 - 1.0;
    // (channels, side, kernel, stride, padding): stride 2 (im2col), 3×3 (Winograd), 1×1.
    for (channels, side, kernel, stride, padding) in [
        (64, 14, 3, 2, 1),
        (32, 7, 3, 1, 1),
        (32, 14, 3, 1, 1),
        (64, 7, 1, 1, 0),
    ] {
        for batch in [1, 2, 3, 5] {
            let shape = Conv2dShape {
                batch,
                channels_in: channels,
                height: side,
                width: side,
                channels_out: channels,
                kernel: [kernel, kernel],
                stride: [stride, stride],
                padding: [(padding, padding), (padding, padding)],
            };
            let x: Vec<f32> = (0..batch * channels * side * side)
                .map(|i| value(i, 7919))
                .collect();
            let weight: Vec<f32> = (0..shape.weight_len())
                .map(|i| value(i, 104_729) * 0.1)
                .collect();
            let bias = vec![0.1; channels];
            let on = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| conv2d_forward(&shape, &x, &weight, &bias))
            };
            let one = on(1);
            for threads in [2, 3, 4] {
                let differing = one
                    .iter()
                    .zip(on(threads))
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                assert_eq!(
                    differing, 0,
                    "{shape:?}: {differing} values differ on {threads} threads from one"
                );
            }
        }
    }
}
