//! 2-D convolution on f32 NCHW slices: the forward, and the input, weight and bias gradients in
//! one pass over the batch. Each image is unrolled (im2col) into a `[C_in·k_h·k_w, H_out·W_out]`
//! matrix held in a per-thread buffer, then one GEMM does the work; images are spread over the
//! threads. 1×1 stride-1 convolutions skip the unrolling: the image already is that matrix.
//! 3×3 stride-1 convolutions over enough tiles go to `winograd.rs` (2.25× or 4× fewer
//! multiplications), forward and backward.

use super::matmul::{MatRef, Threads, gemm};
use super::{parallel, simd, winograd};

/// Multiply-adds from which one GEMM is split over the threads.
const SPLIT_GEMM_WORK: usize = 1 << 24;

/// Groups of images a batch is cut into, at least, where it has that many images: a constant,
/// not the thread count, so that every number of threads runs the same GEMMs and gives the same
/// bits. (`gemm` blocks a product by its shape: an image's columns came out different in a GEMM
/// of 49 columns and in one of 98, for a stride-2 convolution of 64 channels at 14×14.) Two
/// keeps two threads busy, as the thread count did on these 2-core machines.
const MIN_GROUPS: usize = 2;

/// Columns (images × output pixels) one GEMM aims for.
pub(super) const GEMM_COLUMNS: usize = 784;

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

    /// Images side by side in one GEMM, each giving it `columns_per_image` columns (its output
    /// pixels here, its 2×2 or 4×4 tiles in `winograd.rs`): enough for about [`GEMM_COLUMNS`] columns,
    /// so that the 7×7 and 14×14 levels do not run GEMMs of 49 or 196 columns (mostly packing),
    /// but at least [`MIN_GROUPS`] groups where the batch allows.
    pub(super) fn images_per_gemm(&self, columns_per_image: usize) -> usize {
        let wanted = GEMM_COLUMNS.div_ceil(columns_per_image.max(1));
        wanted.min(self.batch.div_ceil(MIN_GROUPS)).max(1)
    }

    /// Spread the groups of `group` images over the threads; with fewer groups than threads,
    /// split each GEMM instead, but only a large one: below ~16M multiply-adds the split costs
    /// more than it saves (batch 1 samples faster on one thread than on two with every GEMM
    /// split). `gemm` splits a product by blocks of its output, each summed as on one thread.
    pub(super) fn gemm_threads(&self, group: usize) -> Threads {
        let work = group * self.channels_out * self.col_rows() * self.out_pixels();
        if self.batch.div_ceil(group.max(1)) >= parallel::threads() || work < SPLIT_GEMM_WORK {
            Threads::One
        } else {
            Threads::All
        }
    }
}

/// [`conv2d_forward`], keeping what its backward would otherwise compute again from `x`: a
/// Winograd convolution's transformed input tiles (see
/// [`conv3x3_forward_keeping`](winograd::conv3x3_forward_keeping)); nothing for the others.
pub fn conv2d_forward_keeping(
    shape: &Conv2dShape,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
) -> (Vec<f32>, Option<winograd::KeptTiles>) {
    match winograd::tiling(shape) {
        Some(tiling) => {
            let (output, kept) = winograd::conv3x3_forward_keeping(shape, tiling, x, weight, bias);
            (output, Some(kept))
        }
        None => (conv2d_forward(shape, x, weight, bias), None),
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
    if let Some(tiling) = winograd::tiling(shape) {
        return winograd::conv3x3_forward(shape, tiling, x, weight, bias);
    }
    let (rows, pixels, cout) = (shape.col_rows(), shape.out_pixels(), shape.channels_out);
    let group = shape.images_per_gemm(pixels);
    let threads = shape.gemm_threads(group);
    let mut output = parallel::zeroed(shape.batch * shape.out_len());
    let scratch = || Scratch::new(shape, group);
    parallel::for_each_chunk(
        &mut output,
        group * shape.out_len(),
        scratch,
        |scratch, g, out| {
            let first = g * group;
            let images = out.len() / shape.out_len();
            let columns = images * pixels;
            let x = &x[first * shape.in_len()..(first + images) * shape.in_len()];
            let (col, col_stride) = unroll(shape, x, images, &mut scratch.col);
            // One GEMM for the group: [C_out, rows] · [rows, images·pixels], bias first.
            let product = if images == 1 {
                &mut out[..]
            } else {
                &mut scratch.product[..cout * columns]
            };
            for (row, &value) in product.chunks_mut(columns).zip(bias) {
                row.fill(value);
            }
            gemm(
                product,
                true,
                MatRef::row_major(weight, cout, rows),
                MatRef::row_major_strided(col, rows, columns, col_stride),
                threads,
            );
            if images > 1 {
                from_side_by_side(&scratch.product[..cout * columns], columns, pixels, out);
            }
        },
    );
    output
}

/// Per-thread buffers for a group of images: their unrolled inputs side by side
/// (`[rows, images·pixels]`), and the GEMM's `[C_out, images·pixels]` result or operand.
struct Scratch {
    col: parallel::Scratch,
    product: parallel::Scratch,
}

impl Scratch {
    fn new(shape: &Conv2dShape, group: usize) -> Self {
        let columns = group * shape.out_pixels();
        let unrolled = group > 1 || !shape.is_pointwise();
        let col = if unrolled {
            shape.col_rows() * columns
        } else {
            0
        };
        let product = if group > 1 {
            shape.channels_out * columns
        } else {
            0
        };
        Self {
            col: parallel::Scratch::new(col),
            product: parallel::Scratch::new(product),
        }
    }
}

/// A group's inputs as one `[rows, images·pixels]` matrix (unrolled into `col`), and its row
/// stride. A single pointwise image already is that matrix.
fn unroll<'a>(
    shape: &Conv2dShape,
    x: &'a [f32],
    images: usize,
    col: &'a mut [f32],
) -> (&'a [f32], usize) {
    let pixels = shape.out_pixels();
    if images == 1 && shape.is_pointwise() {
        return (x, pixels);
    }
    let stride = images * pixels;
    for (i, image) in x.chunks(shape.in_len()).enumerate() {
        im2col(shape, image, col, stride, i * pixels);
    }
    (&col[..shape.col_rows() * stride], stride)
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

/// Gradients of [`conv2d_forward`] given the output's gradient `dy`, a group of images at a
/// time: dW = Σ dY · col(X)ᵀ (per-thread partial sums), dX = col2im(Wᵀ · dY), db = Σ dY. `kept`:
/// what [`conv2d_forward_keeping`] kept of this convolution, if anything (used when it matches
/// the path the backward takes; recomputed from `x` otherwise).
pub fn conv2d_backward(
    shape: &Conv2dShape,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    kept: Option<&winograd::KeptTiles>,
) -> Conv2dGrads {
    assert_eq!(x.len(), shape.batch * shape.in_len(), "conv2d: input size");
    assert_eq!(weight.len(), shape.weight_len(), "conv2d: weight size");
    assert_eq!(
        dy.len(),
        shape.batch * shape.out_len(),
        "conv2d: gradient size"
    );
    if let Some(tiling) = winograd::tiling(shape) {
        return winograd::conv3x3_backward(shape, tiling, x, weight, dy, kept);
    }
    let (rows, pixels, cout) = (shape.col_rows(), shape.out_pixels(), shape.channels_out);
    let group = shape.images_per_gemm(pixels);
    let threads = shape.gemm_threads(group);

    struct Partial {
        weight: Vec<f32>,
        bias: Vec<f32>,
        scratch: Scratch,
        dcol: parallel::Scratch,
    }
    let init = || {
        let scratch = Scratch::new(shape, group);
        Partial {
            weight: vec![0f32; shape.weight_len()],
            bias: vec![0f32; cout],
            dcol: parallel::Scratch::new(rows * group * pixels),
            scratch,
        }
    };
    let mut dx = parallel::zeroed(shape.batch * shape.in_len());
    let sums = parallel::fold_chunks(
        &mut dx,
        group * shape.in_len(),
        init,
        |partial, g, dx_group| {
            let first = g * group;
            let images = dx_group.len() / shape.in_len();
            let columns = images * pixels;
            let x = &x[first * shape.in_len()..(first + images) * shape.in_len()];
            let dy = &dy[first * shape.out_len()..(first + images) * shape.out_len()];
            // dY of the group as one [C_out, images·pixels] matrix.
            if images > 1 {
                let matrix = &mut partial.scratch.product[..cout * columns];
                to_side_by_side(dy, shape.out_len(), columns, pixels, matrix);
            }
            let dy_matrix: &[f32] = if images == 1 {
                dy
            } else {
                &partial.scratch.product[..cout * columns]
            };
            for (sum, row) in partial.bias.iter_mut().zip(dy_matrix.chunks(columns)) {
                *sum += simd::sum(row);
            }
            let (col, col_stride) = unroll(shape, x, images, &mut partial.scratch.col);
            // dW += dY · colᵀ: [C_out, images·pixels] · [images·pixels, rows]
            gemm(
                &mut partial.weight,
                true,
                MatRef::row_major(dy_matrix, cout, columns),
                MatRef::row_major_strided(col, rows, columns, col_stride).t(),
                threads,
            );
            // dcol = Wᵀ · dY: [rows, C_out] · [C_out, images·pixels], folded back onto the images.
            let pointwise_image = images == 1 && shape.is_pointwise();
            let dcol: &mut [f32] = if pointwise_image {
                dx_group
            } else {
                &mut partial.dcol[..rows * columns]
            };
            gemm(
                dcol,
                false,
                MatRef::transposed(weight, rows, cout),
                MatRef::row_major(dy_matrix, cout, columns),
                threads,
            );
            if !pointwise_image {
                for (i, dx_image) in dx_group.chunks_mut(shape.in_len()).enumerate() {
                    col2im(shape, &partial.dcol, columns, i * pixels, dx_image);
                }
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

/// Images `[C, pixels]` (each `image_len` long) → one `[C, columns]` matrix, image i in columns
/// `i·pixels..(i + 1)·pixels`: the layout one GEMM takes for a group of images.
fn to_side_by_side(
    images: &[f32],
    image_len: usize,
    columns: usize,
    pixels: usize,
    matrix: &mut [f32],
) {
    for (i, image) in images.chunks(image_len).enumerate() {
        for (c, src) in image.chunks(pixels).enumerate() {
            let dst = c * columns + i * pixels;
            matrix[dst..dst + pixels].copy_from_slice(src);
        }
    }
}

/// The inverse of [`to_side_by_side`]: `images` is cut into images of `matrix.len() / columns`
/// channels.
fn from_side_by_side(matrix: &[f32], columns: usize, pixels: usize, images: &mut [f32]) {
    let image_len = matrix.len() / columns * pixels;
    for (i, image) in images.chunks_mut(image_len).enumerate() {
        for (c, dst) in image.chunks_mut(pixels).enumerate() {
            let src = c * columns + i * pixels;
            dst.copy_from_slice(&matrix[src..src + pixels]);
        }
    }
}

pub(super) fn add_into(sum: &mut [f32], other: &[f32]) {
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

/// Unrolls one image `[C_in, H, W]` into columns `offset..offset + H_out·W_out` of `col`, a
/// row-major matrix with `C_in·k_h·k_w` rows of `row_stride`.
fn im2col(shape: &Conv2dShape, image: &[f32], col: &mut [f32], row_stride: usize, offset: usize) {
    let [out_h, out_w] = shape.out_size();
    let (height, width) = (shape.height, shape.width);
    let [kernel_h, kernel_w] = shape.kernel;
    let [stride_h, stride_w] = shape.stride;
    let pad_top = shape.padding[0].0;
    let mut rows = col.chunks_mut(row_stride);
    for channel in image.chunks(height * width) {
        for ky in 0..kernel_h {
            for kx in 0..kernel_w {
                let row = rows.next().expect("one row per channel and tap");
                let row = &mut row[offset..offset + out_h * out_w];
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

/// The adjoint of [`im2col`]: adds each entry of columns `offset..` of `col` onto the pixel it
/// was read from. `image` is overwritten.
fn col2im(shape: &Conv2dShape, col: &[f32], row_stride: usize, offset: usize, image: &mut [f32]) {
    let [out_h, out_w] = shape.out_size();
    let (height, width) = (shape.height, shape.width);
    let [kernel_h, kernel_w] = shape.kernel;
    let [stride_h, stride_w] = shape.stride;
    let pad_top = shape.padding[0].0;
    image.fill(0.0);
    let mut rows = col.chunks(row_stride);
    for channel in image.chunks_mut(height * width) {
        for ky in 0..kernel_h {
            for kx in 0..kernel_w {
                let row = rows.next().expect("one row per channel and tap");
                let row = &row[offset..offset + out_h * out_w];
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
