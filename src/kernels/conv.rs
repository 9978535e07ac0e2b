//! 2-D convolution on f32 NCHW slices: the forward, and the input, weight and bias gradients in
//! one pass over the batch. Each image is unrolled (im2col) into a `[C_in·k_h·k_w, H_out·W_out]`
//! matrix held in a per-thread buffer, then one GEMM does the work; images are spread over the
//! threads. 1×1 stride-1 convolutions skip the unrolling: the image already is that matrix.

use super::matmul::{MatRef, Threads, gemm};
use super::parallel;

/// The geometry of a convolution: NCHW input, `[C_out, C_in, k_h, k_w]` weights, no groups, no
/// dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub batch: usize,
    pub channels_in: usize,
    pub height: usize,
    pub width: usize,
    pub channels_out: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// (before, after) along height, then along width.
    pub padding: [(usize, usize); 2],
}

impl Conv2dShape {
    /// Output height and width; panics on a kernel larger than the padded input or a zero stride.
    pub fn out_size(&self) -> [usize; 2] {
        let axis = |size: usize, (before, after): (usize, usize), kernel: usize, stride: usize| {
            let padded = size + before + after;
            assert!(
                stride > 0 && kernel > 0 && padded >= kernel,
                "conv2d: kernel {kernel} over {padded} padded pixels with stride {stride}"
            );
            (padded - kernel) / stride + 1
        };
        [
            axis(self.height, self.padding[0], self.kernel[0], self.stride[0]),
            axis(self.width, self.padding[1], self.kernel[1], self.stride[1]),
        ]
    }

    fn in_len(&self) -> usize {
        self.channels_in * self.height * self.width
    }

    fn out_pixels(&self) -> usize {
        let [h, w] = self.out_size();
        h * w
    }

    fn out_len(&self) -> usize {
        self.channels_out * self.out_pixels()
    }

    /// Rows of the unrolled image: one per (input channel, kernel row, kernel column).
    fn col_rows(&self) -> usize {
        self.channels_in * self.kernel[0] * self.kernel[1]
    }

    pub fn weight_len(&self) -> usize {
        self.channels_out * self.col_rows()
    }

    /// A 1×1, stride-1, unpadded convolution is a plain matrix product per image.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [(0, 0), (0, 0)]
    }

    /// Spread the images over the threads, or, with fewer images than threads, each GEMM.
    fn gemm_threads(&self) -> Threads {
        if self.batch >= parallel::threads() {
            Threads::One
        } else {
            Threads::All
        }
    }
}

/// `y = conv(x, weight) + bias`.
///
/// # Shapes
///   - x: [batch, channels_in, height, width]
///   - weight: [channels_out, channels_in, kernel_h, kernel_w]
///   - bias: [channels_out]
///   - output: [batch, channels_out, out_h, out_w]
pub fn conv2d_forward(shape: &Conv2dShape, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), shape.batch * shape.in_len(), "conv2d: input size");
    assert_eq!(weight.len(), shape.weight_len(), "conv2d: weight size");
    assert_eq!(bias.len(), shape.channels_out, "conv2d: bias size");
    let (rows, pixels) = (shape.col_rows(), shape.out_pixels());
    let threads = shape.gemm_threads();
    let mut output = vec![0f32; shape.batch * shape.out_len()];
    let scratch = || {
        if shape.is_pointwise() {
            Vec::new()
        } else {
            vec![0f32; rows * pixels]
        }
    };
    parallel::for_each_chunk(&mut output, shape.out_len(), scratch, |col, b, out| {
        let image = &x[b * shape.in_len()..(b + 1) * shape.in_len()];
        let col: &[f32] = if shape.is_pointwise() {
            image
        } else {
            im2col(shape, image, col);
            col
        };
        for (row, &value) in out.chunks_mut(pixels).zip(bias) {
            row.fill(value);
        }
        gemm(
            out,
            true,
            MatRef::row_major(weight, shape.channels_out, rows),
            MatRef::row_major(col, rows, pixels),
            threads,
        );
    });
    output
}

/// The three gradients of a convolution.
pub struct Conv2dGrads {
    /// [batch, channels_in, height, width]
    pub x: Vec<f32>,
    /// [channels_out, channels_in, kernel_h, kernel_w]
    pub weight: Vec<f32>,
    /// [channels_out]
    pub bias: Vec<f32>,
}

/// Gradients of [`conv2d_forward`] given the output's gradient `dy`:
/// dW = Σ_b dY_b · col(X_b)ᵀ (per-thread partial sums), dX_b = col2im(Wᵀ · dY_b), db = Σ dY.
pub fn conv2d_backward(shape: &Conv2dShape, x: &[f32], weight: &[f32], dy: &[f32]) -> Conv2dGrads {
    assert_eq!(x.len(), shape.batch * shape.in_len(), "conv2d: input size");
    assert_eq!(weight.len(), shape.weight_len(), "conv2d: weight size");
    assert_eq!(
        dy.len(),
        shape.batch * shape.out_len(),
        "conv2d: gradient size"
    );
    let (rows, pixels, cout) = (shape.col_rows(), shape.out_pixels(), shape.channels_out);
    let threads = shape.gemm_threads();
    let pointwise = shape.is_pointwise();

    struct Partial {
        weight: Vec<f32>,
        bias: Vec<f32>,
        col: Vec<f32>,
        dcol: Vec<f32>,
    }
    let init = || {
        let buffer = if pointwise {
            Vec::new()
        } else {
            vec![0f32; rows * pixels]
        };
        Partial {
            weight: vec![0f32; shape.weight_len()],
            bias: vec![0f32; cout],
            col: buffer.clone(),
            dcol: buffer,
        }
    };
    let mut dx = vec![0f32; shape.batch * shape.in_len()];
    let sums = parallel::fold_chunks(
        &mut dx,
        shape.in_len(),
        init,
        |partial, b, dx_b| {
            let image = &x[b * shape.in_len()..(b + 1) * shape.in_len()];
            let dy_b = &dy[b * shape.out_len()..(b + 1) * shape.out_len()];
            let col: &[f32] = if pointwise {
                image
            } else {
                im2col(shape, image, &mut partial.col);
                &partial.col
            };
            // dW += dY_b · col_bᵀ: [C_out, pixels] · [pixels, rows]
            gemm(
                &mut partial.weight,
                true,
                MatRef::row_major(dy_b, cout, pixels),
                MatRef::transposed(col, pixels, rows),
                threads,
            );
            for (sum, row) in partial.bias.iter_mut().zip(dy_b.chunks(pixels)) {
                *sum += row.iter().sum::<f32>();
            }
            // dcol = Wᵀ · dY_b: [rows, C_out] · [C_out, pixels], then folded back onto the image.
            let dcol: &mut [f32] = if pointwise { dx_b } else { &mut partial.dcol };
            gemm(
                dcol,
                false,
                MatRef::transposed(weight, rows, cout),
                MatRef::row_major(dy_b, cout, pixels),
                threads,
            );
            if !pointwise {
                col2im(shape, &partial.dcol, dx_b);
            }
        },
        |mut a, b| {
            add_into(&mut a.weight, &b.weight);
            add_into(&mut a.bias, &b.bias);
            a
        },
    );
    Conv2dGrads {
        x: dx,
        weight: sums.weight,
        bias: sums.bias,
    }
}

fn add_into(sum: &mut [f32], other: &[f32]) {
    for (s, o) in sum.iter_mut().zip(other) {
        *s += o;
    }
}

/// For each output column `ox` of one kernel tap, the input column it reads, if inside.
/// Returns the range of `ox` whose input is inside the image (stride 1 makes it contiguous).
fn inside_columns(shape: &Conv2dShape, kx: usize, out_w: usize) -> std::ops::Range<usize> {
    let (pad, stride, width) = (shape.padding[1].0, shape.stride[1], shape.width);
    // ix = ox·stride + kx − pad must lie in [0, width).
    let first = pad.saturating_sub(kx).div_ceil(stride);
    let end = if width + pad > kx {
        (width + pad - kx).div_ceil(stride)
    } else {
        0
    };
    first.min(out_w)..end.min(out_w).max(first.min(out_w))
}

/// Unrolls one image `[C_in, H, W]` into `col`, `[C_in·k_h·k_w, H_out·W_out]` row-major.
fn im2col(shape: &Conv2dShape, image: &[f32], col: &mut [f32]) {
    let [out_h, out_w] = shape.out_size();
    let (height, width) = (shape.height, shape.width);
    let [kernel_h, kernel_w] = shape.kernel;
    let [stride_h, stride_w] = shape.stride;
    let pad_top = shape.padding[0].0;
    let mut rows = col.chunks_mut(out_h * out_w);
    for channel in image.chunks(height * width) {
        for ky in 0..kernel_h {
            for kx in 0..kernel_w {
                let row = rows.next().expect("one row per channel and tap");
                let inside = inside_columns(shape, kx, out_w);
                for (oy, out) in row.chunks_mut(out_w).enumerate() {
                    let iy = (oy * stride_h + ky).wrapping_sub(pad_top);
                    if iy >= height || inside.is_empty() {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &channel[iy * width..(iy + 1) * width];
                    out[..inside.start].fill(0.0);
                    out[inside.end..].fill(0.0);
                    let ix0 = inside.start * stride_w + kx - shape.padding[1].0;
                    if stride_w == 1 {
                        out[inside.clone()].copy_from_slice(&src[ix0..ix0 + inside.len()]);
                    } else {
                        for (o, ix) in out[inside.clone()]
                            .iter_mut()
                            .zip((ix0..).step_by(stride_w))
                        {
                            *o = src[ix];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each entry of `col` onto the pixel it was read from.
/// `image` is overwritten.
fn col2im(shape: &Conv2dShape, col: &[f32], image: &mut [f32]) {
    let [out_h, out_w] = shape.out_size();
    let (height, width) = (shape.height, shape.width);
    let [kernel_h, kernel_w] = shape.kernel;
    let [stride_h, stride_w] = shape.stride;
    let pad_top = shape.padding[0].0;
    image.fill(0.0);
    let mut rows = col.chunks(out_h * out_w);
    for channel in image.chunks_mut(height * width) {
        for ky in 0..kernel_h {
            for kx in 0..kernel_w {
                let row = rows.next().expect("one row per channel and tap");
                let inside = inside_columns(shape, kx, out_w);
                for (oy, grad) in row.chunks(out_w).enumerate() {
                    let iy = (oy * stride_h + ky).wrapping_sub(pad_top);
                    if iy >= height || inside.is_empty() {
                        continue;
                    }
                    let dst = &mut channel[iy * width..(iy + 1) * width];
                    let ix0 = inside.start * stride_w + kx - shape.padding[1].0;
                    if stride_w == 1 {
                        add_into(&mut dst[ix0..ix0 + inside.len()], &grad[inside.clone()]);
                    } else {
                        for (g, ix) in grad[inside.clone()].iter().zip((ix0..).step_by(stride_w)) {
                            dst[ix] += g;
                        }
                    }
                }
            }
        }
    }
}
