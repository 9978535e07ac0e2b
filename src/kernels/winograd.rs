//! 3×3, stride-1, padding-1 convolutions by Winograd's minimal filtering F(m×m, 3×3) (Lavin &
//! Gray 2016): each m×m output tile comes from an n×n input tile, n = m + 2, with n²
//! multiplications per channel pair instead of 9m². In matrix form, for an input tile d, a
//! kernel g and one output tile y:
//!
//!   V = Bᵀ d B,  U = G g Gᵀ,  M = Σ_c U ⊙ V,  y = Aᵀ M A,
//!
//! and the sum over input channels of the n² element-wise products is n² GEMMs,
//! `M[ξ] = U[ξ] · V[ξ]` with U[ξ] `[C_out, C_in]` and V[ξ] `[C_in, tiles]`, one per position ξ
//! of the transformed tile. A group of images shares each GEMM, as in `conv.rs`. The backward
//! ([`conv3x3_backward`]) reuses the same transforms and GEMMs.
//!
//! Two tilings (`winograd/tilings.rs`): F(4×4, 3×3), whose 6×6 input tiles make 36 GEMMs of
//! 2.25 transformed values per output pixel, and F(2×2, 3×3), whose 4×4 tiles make 16 GEMMs of
//! 4 values per pixel but with four times the columns. F(4×4) does fewer multiply-adds and
//! moves less memory wherever its GEMMs stay wide enough; see [`Tiling::for_shape`].

mod tilings;
mod weight_cache;

use super::conv::{Conv2dGrads, Conv2dShape, GEMM_COLUMNS, add_into};
use super::matmul::{MatRef, Threads, gemm};
use super::{parallel, simd};
use tilings::{F2, F4, Transforms};

/// Which of the two tilings a convolution runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tiling {
    /// F(2×2, 3×3).
    F2x2,
    /// F(4×4, 3×3).
    F4x4,
}

/// GEMM columns (a group's tiles, counted over the batch up to one group) below which a tiling
/// does not pay for its transforms.
///
/// Natively, measured with F(2×2) only (`gendi bench`, 7 alternated rounds): batch 16 sampled in
/// 84–96 ms a step against 85–106 ms for im2col, but batch 1, whose 14×14 and 7×7 levels make
/// 49 and 16 tiles, was 5–10% slower. F(4×4)'s 36 GEMMs are thinner still: at batch 16 its
/// 7×7 level makes 64 columns, and ran 10–20% slower there than F(2×2)'s 256.
///
/// In wasm (SIMD128: 4 lanes, and the `gemm` crate's smaller kernels) the GEMMs cost more next
/// to the transforms, and Winograd pays at any size: `pkg-cpu/` in node, one thread, two runs,
/// 21.0–21.6 ms a step at batch 1 against 24.6–26.4 with the native threshold, and 207–214 ms at
/// batch 16 against 226–233.
const MIN_COLUMNS: usize = if cfg!(target_family = "wasm") { 0 } else { 256 };

/// The columns F(4×4) needs even where [`MIN_COLUMNS`] asks for none (wasm): fewer than the 12
/// rows of `gemm`'s SIMD128 kernel, and its GEMMs run on the 4-row edge kernel alone, each call
/// a tiny product with its own packing. At batch 1 the 7×7 level has 4 tiles per image; with
/// F(2×2) there (16), `pkg-cpu/` in node ran a step in 19.4–20.1 ms against 21.0–22.5 (median of
/// 57 steps, three alternated runs; best steps 18.5–18.7 against 20.5–21.0), and batch 16, which
/// keeps F(4×4) (32 columns a GEMM at 7×7), in the same time. F(2×2) at every level was slower.
const MIN_F4X4_COLUMNS: usize = 16;

/// F(4×4) only where it transforms at most this fraction of F(2×2)'s values: 0.5625 where the
/// side is a multiple of 4 or is 7, but 0.73 at 14×14, whose last tiles are half empty. There,
/// at batch 64, its backward took 10.3–10.4 ms against 7.8–9.2 for F(2×2) (64 → 64 channels,
/// two alternated rounds), the forward about the same.
const MAX_F4X4_VALUES: f64 = 0.6;

impl Tiling {
    /// F(4×4) where its GEMMs have [`MIN_COLUMNS`] and [`MIN_F4X4_COLUMNS`] and it saves enough
    /// ([`MAX_F4X4_VALUES`]), else F(2×2) where its GEMMs have [`MIN_COLUMNS`], else none
    /// (im2col). Decided on the batch, not on the groups the threads get, so that any number of
    /// threads takes the same path and gives the same bits.
    pub fn for_shape(shape: &Conv2dShape) -> Option<Self> {
        let values = |tiling: Self| (tiling.tiles(shape) * tiling.positions()) as f64;
        let wide = |tiling: Self, min_columns: usize| {
            let tiles = tiling.tiles(shape);
            GEMM_COLUMNS.div_ceil(tiles.max(1)).min(shape.batch) * tiles >= min_columns
        };
        if wide(Self::F4x4, MIN_COLUMNS.max(MIN_F4X4_COLUMNS))
            && values(Self::F4x4) <= MAX_F4X4_VALUES * values(Self::F2x2)
        {
            Some(Self::F4x4)
        } else if wide(Self::F2x2, MIN_COLUMNS) {
            Some(Self::F2x2)
        } else {
            None
        }
    }

    /// Tiles of one image of `shape`.
    fn tiles(self, shape: &Conv2dShape) -> usize {
        shape.height.div_ceil(self.side()) * shape.width.div_ceil(self.side())
    }

    /// Positions of a transformed tile: the GEMMs per convolution.
    fn positions(self) -> usize {
        (self.side() + 2).pow(2)
    }

    /// Side of an output tile.
    fn side(self) -> usize {
        match self {
            Self::F2x2 => 2,
            Self::F4x4 => 4,
        }
    }
}

/// The `[C_in, H, W] → [C_out, H, W]` convolution of `batch` images that this module computes:
/// 3×3, stride 1, padding 1.
pub fn conv3x3_shape(
    batch: usize,
    [channels_in, channels_out]: [usize; 2],
    [height, width]: [usize; 2],
) -> Conv2dShape {
    Conv2dShape {
        batch,
        channels_in,
        height,
        width,
        channels_out,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [(1, 1), (1, 1)],
    }
}

/// Whether `shape` is a convolution this module computes: 3×3, stride 1, padding 1.
pub fn computes(shape: &Conv2dShape) -> bool {
    shape.kernel == [3, 3] && shape.stride == [1, 1] && shape.padding == [(1, 1), (1, 1)]
}

/// The tiling [`conv2d_forward`](super::conv::conv2d_forward) and
/// [`conv2d_backward`](super::conv::conv2d_backward) should run `shape` with, if any: Winograd is
/// on for this thread ([`use_winograd`](super::use_winograd)), `shape` is one this module
/// computes, and [`Tiling::for_shape`] has one for it.
pub(super) fn tiling(shape: &Conv2dShape) -> Option<Tiling> {
    if super::winograd_enabled() && computes(shape) {
        Tiling::for_shape(shape)
    } else {
        None
    }
}

/// `y = conv(x, weight) + bias` for a shape this module [`computes`].
///
/// # Shapes
///   - x: [batch, channels_in, height, width]
///   - weight: [channels_out, channels_in, 3, 3]
///   - bias: [channels_out]
///   - output: [batch, channels_out, height, width]
pub fn conv3x3_forward(
    shape: &Conv2dShape,
    tiling: Tiling,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
) -> Vec<f32> {
    forward_keeping(shape, tiling, x, weight, bias, false).0
}

/// [`conv3x3_forward`], keeping the transformed input tiles V for the backward
/// ([`conv3x3_backward`] then reads them instead of transforming the input again).
pub fn conv3x3_forward_keeping(
    shape: &Conv2dShape,
    tiling: Tiling,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
) -> (Vec<f32>, KeptTiles) {
    let (output, kept) = forward_keeping(shape, tiling, x, weight, bias, true);
    (
        output,
        kept.expect("the forward keeps its tiles when asked"),
    )
}

fn forward_keeping(
    shape: &Conv2dShape,
    tiling: Tiling,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    keep: bool,
) -> (Vec<f32>, Option<KeptTiles>) {
    let (output, values) = match tiling {
        Tiling::F2x2 => forward::<2, 4, F2>(shape, x, weight, bias, keep),
        Tiling::F4x4 => forward::<4, 6, F4>(shape, x, weight, bias, keep),
    };
    let kept = values.map(|values| {
        KeptTiles(std::sync::Arc::new(Kept {
            shape: *shape,
            tiling,
            values,
        }))
    });
    (output, kept)
}

/// Buffers for [`KeptTiles`]: a training step holds one per Winograd convolution from its
/// forward to its backward (the U-Net has a few dozen), and takes them back at the next step.
static KEPT: parallel::Pool = parallel::Pool::new(64);

/// The transformed input tiles V of one [`conv3x3_forward_keeping`], group after group, each
/// laid out `[n²][C_in][stride]` as its GEMMs read them: what the weight gradient's GEMMs need
/// from the input. Kept by autodiff between the forward and the backward of a training step,
/// they spare the backward one of its three transforms, at 2.25–3× the input's memory.
#[derive(Clone)]
pub struct KeptTiles(std::sync::Arc<Kept>);

struct Kept {
    shape: Conv2dShape,
    tiling: Tiling,
    values: parallel::Scratch,
}

impl std::fmt::Debug for KeptTiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeptTiles({:?}, {} values for {:?})",
            self.0.tiling,
            self.0.values.len(),
            self.0.shape
        )
    }
}

impl KeptTiles {
    /// The tiles, if they are those of this convolution in this tiling.
    fn of(&self, shape: &Conv2dShape, tiling: Tiling) -> Option<&[f32]> {
        (self.0.shape == *shape && self.0.tiling == tiling).then_some(&self.0.values)
    }
}

/// The gradients of [`conv3x3_forward`] given the output's gradient `dy`: the forward's steps
/// undone in reverse order, from the one transform of dY, dM = A dY Aᵀ (an m×m tile of dY to
/// n×n, the adjoint of y = Aᵀ M A):
///
/// - dW: with V the transformed input tiles (those [`conv3x3_forward_keeping`] kept, if given,
///   else transformed again from x), dU[ξ] = Σ_tiles dM[ξ] · V[ξ]ᵀ (GEMMs whose inner dimension
///   is the tiles), and dW = Gᵀ dU G for every channel pair;
/// - dX: dV[ξ] = U[ξ]ᵀ · dM[ξ], the forward's GEMMs transposed, then B dV Bᵀ for every tile,
///   summed where tiles overlap (the adjoint of V = Bᵀ d B).
pub fn conv3x3_backward(
    shape: &Conv2dShape,
    tiling: Tiling,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    kept: Option<&KeptTiles>,
) -> Conv2dGrads {
    let kept = kept.and_then(|kept| kept.of(shape, tiling));
    match tiling {
        Tiling::F2x2 => backward::<2, 4, F2>(shape, x, weight, dy, kept),
        Tiling::F4x4 => backward::<4, 6, F4>(shape, x, weight, dy, kept),
    }
}

fn forward<const M: usize, const N: usize, T: Transforms<M, N>>(
    shape: &Conv2dShape,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    keep: bool,
) -> (Vec<f32>, Option<parallel::Scratch>) {
    let plan = Plan::<M, N, T>::new(shape);
    assert_eq!(x.len(), plan.in_len * shape.batch, "winograd: input size");
    assert_eq!(weight.len(), plan.weight_len(), "winograd: weight size");
    assert_eq!(bias.len(), shape.channels_out, "winograd: bias size");
    let (cout, cin) = (shape.channels_out, shape.channels_in);
    let u = weight_cache::transformed(weight, M, |w| transformed_weights::<M, N, T>(w, cout, cin));
    let mut output = parallel::zeroed(shape.batch * plan.out_len);
    // The input transform writes every tile before anything reads it; the rows' padding past
    // the tiles (see `padded_columns`) is never read.
    let groups = shape.batch.div_ceil(plan.group);
    let mut kept =
        keep.then(|| parallel::Scratch::from_pool(&KEPT, groups * plan.group_tiles_len(cin)));
    parallel::for_each_chunk_with(
        &mut output,
        plan.group * plan.out_len,
        kept.as_deref_mut().unwrap_or_default(),
        plan.group_tiles_len(cin),
        || plan.scratch(),
        |scratch, g, out, tiles| {
            let images = out.len() / plan.out_len;
            let x = plan.group_of(x, plan.in_len, g, images);
            let tiles = (!tiles.is_empty()).then_some(tiles);
            plan.convolve(scratch, &u, [cin, cout], x, bias, out, tiles);
        },
    );
    (output, kept)
}

fn backward<const M: usize, const N: usize, T: Transforms<M, N>>(
    shape: &Conv2dShape,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    kept: Option<&[f32]>,
) -> Conv2dGrads {
    let plan = Plan::<M, N, T>::new(shape);
    let (cin, cout) = (shape.channels_in, shape.channels_out);
    assert_eq!(x.len(), plan.in_len * shape.batch, "winograd: input size");
    assert_eq!(weight.len(), plan.weight_len(), "winograd: weight size");
    assert_eq!(
        dy.len(),
        plan.out_len * shape.batch,
        "winograd: gradient size"
    );
    let u = weight_cache::transformed(weight, M, |w| transformed_weights::<M, N, T>(w, cout, cin));
    let pixels = shape.height * shape.width;

    struct Partial<S> {
        du: Vec<f32>,
        bias: Vec<f32>,
        scratch: S,
    }
    let mut dx = parallel::zeroed(shape.batch * plan.in_len);
    let sums = parallel::fold_chunks(
        &mut dx,
        plan.group * plan.in_len,
        || Partial {
            du: vec![0f32; N * N * cout * cin],
            bias: vec![0f32; cout],
            scratch: plan.scratch(),
        },
        |partial, g, dx_group| {
            let images = dx_group.len() / plan.in_len;
            let x = plan.group_of(x, plan.in_len, g, images);
            let dy = plan.group_of(dy, plan.out_len, g, images);
            let scratch = &mut partial.scratch;
            for image in dy.chunks_exact(plan.out_len) {
                for (sum, plane) in partial.bias.iter_mut().zip(image.chunks_exact(pixels)) {
                    *sum += simd::sum(plane);
                }
            }
            let columns = plan.columns(x, cin);
            let stride = padded_columns(columns);
            let dm = &mut scratch.m[..N * N * cout * columns];
            scratch.planes.transform_gradient(dy, cout, dm, columns);
            // dU[ξ] += dM[ξ] · V[ξ]ᵀ, V laid out as the forward's GEMMs read it.
            let v: &[f32] = match kept {
                Some(tiles) => &tiles[g * plan.group_tiles_len(cin)..][..N * N * cin * stride],
                None => {
                    let v = &mut scratch.v[..N * N * cin * stride];
                    scratch.planes.transform_input(x, cin, v, [columns, stride]);
                    v
                }
            };
            for (du, dm, v) in by_position(N * N, &mut partial.du, dm, v) {
                gemm(
                    du,
                    true,
                    MatRef::row_major(dm, cout, columns),
                    MatRef::row_major_strided(v, cin, columns, stride).t(),
                    plan.threads,
                );
            }
            // dV[ξ] = U[ξ]ᵀ · dM[ξ], then dX from dV by the input transform's adjoint.
            let dv = &mut scratch.v[..N * N * cin * columns];
            for (dv, u, dm) in by_position(N * N, dv, &u, dm) {
                let (ut, dm) = (
                    MatRef::transposed(u, cin, cout),
                    MatRef::row_major(dm, cout, columns),
                );
                gemm(dv, false, ut, dm, plan.threads);
            }
            scratch
                .planes
                .transform_input_adjoint(dv, cin, columns, dx_group);
        },
        |mut a, b| {
            add_into(&mut a.du, &b.du);
            add_into(&mut a.bias, &b.bias);
            a
        },
    );
    Conv2dGrads {
        x: dx,
        weight: untransformed_gradient::<M, N, T>(&sums.du, cout, cin),
        bias: sums.bias,
    }
}

/// How one convolution's batch is cut into groups of images that share the GEMMs.
struct Plan<const M: usize, const N: usize, T> {
    planes: Planes<M, N, T>,
    tiles: usize,
    group: usize,
    threads: Threads,
    in_len: usize,
    out_len: usize,
    channels: [usize; 2],
}

/// One piece of work's buffers: transformed tiles `[n²][channels][columns]` of the GEMMs'
/// right-hand side and of their product, and the plane buffers.
struct Scratch<const M: usize, const N: usize, T> {
    v: parallel::Scratch,
    m: parallel::Scratch,
    planes: Planes<M, N, T>,
}

impl<const M: usize, const N: usize, T: Transforms<M, N>> Plan<M, N, T> {
    fn new(shape: &Conv2dShape) -> Self {
        assert!(
            computes(shape),
            "winograd: not a 3×3 stride-1 padding-1 convolution"
        );
        let planes = Planes::new(shape.height, shape.width);
        let tiles = planes.tiles();
        let pixels = shape.height * shape.width;
        let group = shape.images_per_gemm(tiles);
        Self {
            tiles,
            group,
            threads: shape.gemm_threads(group),
            in_len: shape.channels_in * pixels,
            out_len: shape.channels_out * pixels,
            channels: [shape.channels_in, shape.channels_out],
            planes,
        }
    }

    fn weight_len(&self) -> usize {
        self.channels[0] * self.channels[1] * 9
    }

    /// Transformed values of a whole group's images of `channels` planes each, laid out
    /// `[n²][channels][stride]` (see [`padded_columns`]).
    fn group_tiles_len(&self, channels: usize) -> usize {
        N * N * channels * padded_columns(self.group * self.tiles)
    }

    /// Buffers for a group, large enough for either direction (dX swaps the channel counts).
    fn scratch(&self) -> Scratch<M, N, T> {
        let widest = self.channels[0].max(self.channels[1]);
        let len = N * N * widest * padded_columns(self.group * self.tiles);
        Scratch {
            v: parallel::Scratch::new(len),
            m: parallel::Scratch::new(len),
            planes: self.planes.clone(),
        }
    }

    /// Group `g`'s images of `data`, `images` of `image_len` values each.
    fn group_of<'a>(
        &self,
        data: &'a [f32],
        image_len: usize,
        g: usize,
        images: usize,
    ) -> &'a [f32] {
        let first = g * self.group;
        &data[first * image_len..(first + images) * image_len]
    }

    /// The GEMMs' columns for a group of images `x` of `channels` planes each: their tiles.
    fn columns(&self, x: &[f32], channels: usize) -> usize {
        x.len() / (channels * self.planes.height * self.planes.width) * self.tiles
    }

    /// `out = conv(x, g) + bias` for a group of images, with `u` = G g Gᵀ laid out
    /// `[n²][C_out][C_in]` and `[C_in, C_out] = channels`; the transformed input goes to `tiles`
    /// when given (to keep), else to the scratch.
    #[allow(clippy::too_many_arguments)]
    fn convolve(
        &self,
        scratch: &mut Scratch<M, N, T>,
        u: &[f32],
        [cin, cout]: [usize; 2],
        x: &[f32],
        bias: &[f32],
        out: &mut [f32],
        tiles: Option<&mut [f32]>,
    ) {
        let columns = self.columns(x, cin);
        let stride = padded_columns(columns);
        let v = &mut tiles.unwrap_or(&mut scratch.v)[..N * N * cin * stride];
        let m = &mut scratch.m[..N * N * cout * stride];
        scratch.planes.transform_input(x, cin, v, [columns, stride]);
        for (m, u, v) in by_position(N * N, m, u, v) {
            let (u, v) = (
                MatRef::row_major(u, cout, cin),
                MatRef::row_major(v, cin, stride),
            );
            gemm(m, false, u, v, self.threads);
        }
        scratch
            .planes
            .transform_output(m, cout, [columns, stride], bias, out);
    }
}

/// The row length of V and M for `columns` tiles: rounded up to whole vectors of `gemm`'s
/// kernels, which then read V where it is instead of packing it first (the 28×28 level's GEMMs,
/// 49 tiles an image, were all packed: about 6% of a batch-1 step in wasm). The padding's values
/// are whatever the buffer held: a column of M depends on the same column of V alone, nothing
/// reads M's padding, and the weight gradient reads V's first `columns` only.
fn padded_columns(columns: usize) -> usize {
    columns.next_multiple_of(super::matmul::gemm_lanes())
}

/// U = G g Gᵀ for every (output, input) channel pair, laid out `[n²][C_out][C_in]`.
fn transformed_weights<const M: usize, const N: usize, T: Transforms<M, N>>(
    weight: &[f32],
    cout: usize,
    cin: usize,
) -> Vec<f32> {
    let pairs = cout * cin;
    on_both_axes(&transposed(weight, pairs, 9), pairs, T::g)
}

/// dW = Gᵀ dU G for every channel pair, from dU laid out `[n²][C_out][C_in]`, to
/// `[C_out, C_in, 3, 3]`.
fn untransformed_gradient<const M: usize, const N: usize, T: Transforms<M, N>>(
    du: &[f32],
    cout: usize,
    cin: usize,
) -> Vec<f32> {
    let pairs = cout * cin;
    transposed(&on_both_axes(du, pairs, T::gt), 9, pairs)
}

/// `f` down every column of each pair's A×A block, then along every row of the result: for
/// blocks X laid out `[row][column][pairs]`, F X Fᵀ laid out `[B][B][pairs]`, with F the B×A
/// matrix `f` applies. Vectorised over the pairs.
fn on_both_axes<const A: usize, const B: usize>(
    x: &[f32],
    pairs: usize,
    f: impl Fn([f32; A]) -> [f32; B],
) -> Vec<f32> {
    // F X, `[column j][row r][pairs]`.
    let mut fx = vec![0f32; A * B * pairs];
    let mut out = vec![0f32; B * B * pairs];
    simd::vectorized(
        #[inline(always)]
        || {
            for j in 0..A {
                let inputs = std::array::from_fn(|i| &x[(i * A + j) * pairs..][..pairs]);
                let starts = std::array::from_fn(|r| (j * B + r) * pairs);
                map_lanes(inputs, runs(&mut fx, starts, pairs), &f);
            }
            for r in 0..B {
                let inputs = std::array::from_fn(|j| &fx[(j * B + r) * pairs..][..pairs]);
                let starts = std::array::from_fn(|c| (r * B + c) * pairs);
                map_lanes(inputs, runs(&mut out, starts, pairs), &f);
            }
        },
    );
    out
}

/// `data` `[rows][cols]` as `[cols][rows]`: one pass per column, reading with stride `cols`
/// and writing in order (for the weights' 9 taps, that reads each cache line 9 times but in
/// order, where writing 9 interleaved runs was 3× slower).
fn transposed(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for (c, column) in out.chunks_exact_mut(rows).enumerate() {
        for (value, row) in column.iter_mut().zip(data.chunks_exact(cols)) {
            *value = row[c];
        }
    }
    out
}

/// A group's tiling, and the buffers the transforms work in: made once per piece of work and
/// reused for every channel of every group in it.
///
/// An image's tile rows would be 2 to 14 tiles long, shorter than one AVX-512 vector, so the
/// transforms run over one channel of the whole group at a time, with the GEMMs' columns in the
/// order (tile row i, image n, tile column j). Each plane is first spread over a zero-bordered
/// grid of `down + 1` rows of `images × across` tiles per padded row residue mod M, one grid
/// per tile column offset: with padded pixel (p, q) (the image's (p − 1, q − 1)), the grids of
/// residue p mod M hold at (p / M, n, j) the n columns Mj .. Mj + n − 1 a tile row reads. Every
/// transform step is then an element-wise loop over a grid or over the group's tiles, and
/// compiled for the CPU's widest vectors.
struct Planes<const M: usize, const N: usize, T> {
    height: usize,
    width: usize,
    /// Tile rows, and tiles per row, of one image.
    down: usize,
    across: usize,
    /// Images the buffers are laid out for.
    images: usize,
    /// `[row residue 0..M][column offset 0..N][grid]`. Cells outside an image are only ever
    /// written with zeros, so they stay zero (until the layout changes with the image count).
    spread: Vec<f32>,
    /// The spread's input: one image row of every image, each padded to `M × across` values.
    /// Only the first `width` of each are ever written, so the padding stays zero.
    rows_in: Vec<f32>,
    /// The output transform's image row of every image, laid out like `rows_in`, with the
    /// tiles' overhang past the image in the padding.
    rows_out: Vec<f32>,
    /// A channel half transformed, `[position along the row][row residue or output row][grid]`.
    half: Vec<f32>,
    /// The output transform's result before it goes into the images: `[tile row][column][tile]`.
    pixels: Vec<f32>,
    /// The input transform's adjoint: what a tile's last two rows give the next tile row's
    /// first two, `[2][tile]`.
    overlap: Vec<f32>,
    /// The input transform's adjoint: the gradient of `spread`, laid out like it (which keeps
    /// its zeros for the transforms).
    spread_adjoint: Vec<f32>,
    transforms: std::marker::PhantomData<fn() -> T>,
}

impl<const M: usize, const N: usize, T: Transforms<M, N>> Clone for Planes<M, N, T> {
    fn clone(&self) -> Self {
        Self::new(self.height, self.width)
    }
}

impl<const M: usize, const N: usize, T: Transforms<M, N>> Planes<M, N, T> {
    fn new(height: usize, width: usize) -> Self {
        Self {
            transforms: std::marker::PhantomData,
            height,
            width,
            down: height.div_ceil(M),
            across: width.div_ceil(M),
            images: 0,
            spread: Vec::new(),
            rows_in: Vec::new(),
            rows_out: Vec::new(),
            half: Vec::new(),
            pixels: Vec::new(),
            overlap: Vec::new(),
            spread_adjoint: Vec::new(),
        }
    }

    /// Tiles of one image.
    fn tiles(&self) -> usize {
        self.down * self.across
    }

    /// Cells of one grid: `down + 1` rows of `images × across`.
    fn grid(&self) -> usize {
        (self.down + 1) * self.images * self.across
    }

    /// Lays the buffers out for `images` images, zeroing the grids if that changes the layout.
    fn lay_out(&mut self, images: usize) {
        if images != self.images {
            self.images = images;
            let grid = self.grid();
            self.spread = vec![0.0; M * N * grid];
            self.rows_in = vec![0.0; images * M * self.across];
            self.rows_out = vec![0.0; images * M * self.across];
            self.half = vec![0.0; N * M * grid];
            self.pixels = vec![0.0; M * M * images * self.tiles()];
            self.overlap = vec![0.0; (N - M) * images * self.tiles()];
            self.spread_adjoint = vec![0.0; M * N * grid];
        }
    }

    /// Spreads channel `c` of every image `[C, H, W]` in `images` over the grids, one image
    /// row at a time: the row of each image is copied into `rows_in` (each padded with zeros to
    /// `M × across` values), whose stride-M phases are then offsets 1 to M of the row's tiles,
    /// for all images in one loop. Offsets 0 and M + 1 are offsets M and 1 of the neighbouring
    /// tiles: whole-grid copies shifted by one cell, then zeroed at each image's edge.
    #[inline(always)]
    fn spread(&mut self, images: &[f32], channels: usize, c: usize) {
        let (height, width, across, grid) = (self.height, self.width, self.across, self.grid());
        let (row_len, padded_width) = (self.images * across, M * across);
        let pixels = height * width;
        for y in 0..height {
            for n in 0..self.images {
                copy_short(
                    &mut self.rows_in[n * padded_width..][..width],
                    &images[(n * channels + c) * pixels + y * width..][..width],
                );
            }
            let padded_row = y + 1;
            let (residue, row) = (padded_row % M, padded_row / M * row_len);
            let starts = std::array::from_fn(|k| (residue * N + 1 + k) * grid + row);
            deinterleave::<M>(&self.rows_in, runs(&mut self.spread, starts, row_len));
        }
        for residue in 0..M {
            let offset = |k: usize| (residue * N + k) * grid;
            let (first, last) = (offset(0), offset(N - 1));
            self.spread
                .copy_within(offset(M)..offset(M) + grid - 1, first + 1);
            self.spread
                .copy_within(offset(1) + 1..offset(1) + grid, last);
            self.spread[last + grid - 1] = 0.0;
            for tile in (0..grid).step_by(across) {
                self.spread[first + tile] = 0.0;
                self.spread[last + tile + across - 1] = 0.0;
            }
        }
    }

    /// V = Bᵀ d B of every n×n input tile of a group's images `[C_in, H, W]` each (tile (i, j)
    /// starts at row Mi − 1, column Mj − 1; zeros outside the image), into `v` laid out
    /// `[n²][C_in][stride]`: `columns` tiles in the order (i, n, j), then `stride − columns`
    /// values left as they were.
    fn transform_input(
        &mut self,
        images: &[f32],
        cin: usize,
        v: &mut [f32],
        [columns, stride]: [usize; 2],
    ) {
        self.transform(images, cin, v, [columns, stride], T::bt);
    }

    /// dM = A dY Aᵀ of every m×m tile of a group's output gradients `[C_out, H, W]` each (zeros
    /// outside the image), into `dm` laid out like [`transform_input`](Self::transform_input)'s
    /// V: the adjoint of [`transform_output`](Self::transform_output)'s Aᵀ M A. Tile (i, j)'s
    /// pixels are padded rows Mi + 1 .. Mi + M and columns Mj + 1 .. Mj + M, the middle m of
    /// the n an input tile reads, so it is the input transform with A on those.
    fn transform_gradient(&mut self, images: &[f32], cout: usize, dm: &mut [f32], columns: usize) {
        self.transform(images, cout, dm, [columns, columns], T::a_of_middle);
    }

    /// `one_d` along every tile's rows, then down its columns, each reading a tile's n
    /// padded rows or columns Mi .. Mi + n − 1.
    fn transform(
        &mut self,
        images: &[f32],
        channels: usize,
        out: &mut [f32],
        columns: [usize; 2],
        one_d: impl Fn([f32; N]) -> [f32; N],
    ) {
        simd::vectorized(
            #[inline(always)]
            || self.transform_tiles(images, channels, out, columns, one_d),
        )
    }

    #[inline(always)]
    fn transform_tiles(
        &mut self,
        images: &[f32],
        channels: usize,
        out: &mut [f32],
        [columns, stride]: [usize; 2],
        one_d: impl Fn([f32; N]) -> [f32; N],
    ) {
        let pixels = self.height * self.width;
        self.lay_out(images.len() / (channels * pixels));
        let (grid, row_len) = (self.grid(), self.images * self.across);
        for c in 0..channels {
            self.spread(images, channels, c);
            // Along every padded row: half[k][residue] at (row, n, j).
            for residue in 0..M {
                let inputs =
                    std::array::from_fn(|k| &self.spread[(residue * N + k) * grid..][..grid]);
                let starts = std::array::from_fn(|k| (k * M + residue) * grid);
                map_lanes(inputs, runs(&mut self.half, starts, grid), &one_d);
            }
            // Down the columns: tile (i, n, j)'s row Mi + s is residue s mod M at grid row
            // i + s / M. Position (r, k) of the result.
            for k in 0..N {
                let inputs = std::array::from_fn(|s| {
                    &self.half[(k * M + s % M) * grid + s / M * row_len..][..columns]
                });
                let at = |r: usize| ((r * N + k) * channels + c) * stride;
                map_lanes(inputs, runs(out, std::array::from_fn(at), columns), &one_d);
            }
        }
    }

    /// The adjoint of [`transform_input`](Self::transform_input): from dV laid out like V, dX
    /// of a group's images `[C_in, H, W]` each, every pixel written: the sum of B dV Bᵀ over the
    /// (overlapping) tiles that read it. Each step of [`transform_tiles`](Self::transform_tiles)
    /// and [`spread`](Self::spread) is undone in reverse order, with B in place of Bᵀ and sums
    /// where the forward copied one value to several places.
    fn transform_input_adjoint(
        &mut self,
        dv: &[f32],
        cin: usize,
        columns: usize,
        images: &mut [f32],
    ) {
        simd::vectorized(
            #[inline(always)]
            || self.input_tiles_adjoint(dv, cin, columns, images),
        )
    }

    #[inline(always)]
    fn input_tiles_adjoint(&mut self, dv: &[f32], cin: usize, columns: usize, images: &mut [f32]) {
        let pixels = self.height * self.width;
        self.lay_out(images.len() / (cin * pixels));
        let (grid, row_len) = (self.grid(), self.images * self.across);
        for c in 0..cin {
            // Up the columns: B down each tile's positions (r, k) gives its rows Mi + s, which
            // are residue s mod M at grid row i + s / M: the first M rows at grid row i, the
            // last two (the next tile row's first two) added at grid row i + 1.
            for k in 0..N {
                let inputs =
                    std::array::from_fn(|r| &dv[((r * N + k) * cin + c) * columns..][..columns]);
                {
                    let starts = std::array::from_fn(|s| (k * M + s) * grid);
                    let mut rows = runs::<M>(&mut self.half, starts, columns).into_iter();
                    let mut next = runs::<2>(&mut self.overlap, [0, columns], columns).into_iter();
                    let outputs = std::array::from_fn(|s| {
                        if s < M { rows.next() } else { next.next() }.expect("M + 2 = N runs")
                    });
                    map_lanes(inputs, outputs, T::b);
                }
                for residue in 0..M {
                    let row = (k * M + residue) * grid;
                    self.half[row + columns..row + grid].fill(0.0);
                    if residue < N - M {
                        let below = &mut self.half[row + row_len..][..columns];
                        add_into(below, &self.overlap[residue * columns..][..columns]);
                    }
                }
            }
            // Back along every padded row: B across each residue's N column offsets.
            for residue in 0..M {
                let inputs =
                    std::array::from_fn(|k| &self.half[(k * M + residue) * grid..][..grid]);
                let starts = std::array::from_fn(|k| (residue * N + k) * grid);
                map_lanes(inputs, runs(&mut self.spread_adjoint, starts, grid), T::b);
            }
            self.gather(images, cin, c);
        }
    }

    /// The adjoint of [`spread`](Self::spread) for channel `c`, on `spread_adjoint`: offsets 0
    /// and M + 1 (copies of the neighbouring tiles' offsets M and 1) are added back where they
    /// came from, except the cells `spread` zeroed; then each image row takes its pixels from
    /// offsets 1 to M.
    #[inline(always)]
    fn gather(&mut self, images: &mut [f32], channels: usize, c: usize) {
        let (height, width, across, grid) = (self.height, self.width, self.across, self.grid());
        let (row_len, padded_width) = (self.images * across, M * across);
        let pixels = height * width;
        for residue in 0..M {
            let offset = |k: usize| (residue * N + k) * grid;
            let (first, last) = (offset(0), offset(N - 1));
            for tile in (0..grid).step_by(across) {
                self.spread_adjoint[first + tile] = 0.0;
                self.spread_adjoint[last + tile + across - 1] = 0.0;
            }
            add_within(&mut self.spread_adjoint, first + 1, offset(M), grid - 1);
            add_within(&mut self.spread_adjoint, last, offset(1) + 1, grid - 1);
        }
        for y in 0..height {
            let padded_row = y + 1;
            let (residue, row) = (padded_row % M, padded_row / M * row_len);
            let phases = std::array::from_fn(|k| {
                &self.spread_adjoint[(residue * N + 1 + k) * grid + row..][..row_len]
            });
            interleave::<M>(phases, &mut self.rows_out);
            for n in 0..self.images {
                copy_short(
                    &mut images[(n * channels + c) * pixels + y * width..][..width],
                    &self.rows_out[n * padded_width..][..width],
                );
            }
        }
    }

    /// y = Aᵀ M A + bias for every tile of a group's images `[C_out, H, W]` each, from `m` laid
    /// out `[n²][C_out][stride]` (the first `columns` of each row, in the order (i, n, j)),
    /// written where the tile lies inside the image.
    fn transform_output(
        &mut self,
        m: &[f32],
        cout: usize,
        columns: [usize; 2],
        bias: &[f32],
        images: &mut [f32],
    ) {
        simd::vectorized(
            #[inline(always)]
            || self.output_tiles(m, cout, columns, bias, images),
        )
    }

    #[inline(always)]
    fn output_tiles(
        &mut self,
        m: &[f32],
        cout: usize,
        [columns, stride]: [usize; 2],
        bias: &[f32],
        images: &mut [f32],
    ) {
        let (height, width) = (self.height, self.width);
        self.lay_out(images.len() / (cout * height * width));
        let (across, grid) = (self.across, self.grid());
        let row_len = self.images * across;
        for o in 0..cout {
            // Aᵀ down M's columns: each tile's m output rows, half[k][row] over the tiles.
            for k in 0..N {
                let inputs =
                    std::array::from_fn(|r| &m[((r * N + k) * cout + o) * stride..][..columns]);
                let starts = std::array::from_fn(|row| (k * M + row) * grid);
                map_lanes(inputs, runs(&mut self.half, starts, columns), |x| {
                    T::at(x, 0.0)
                });
            }
            // Aᵀ along each row, plus the bias: each tile's pixels (row, 0 .. m − 1).
            let b = bias[o];
            for row in 0..M {
                let inputs = std::array::from_fn(|k| &self.half[(k * M + row) * grid..][..columns]);
                let starts = std::array::from_fn(|column| (row * M + column) * columns);
                map_lanes(inputs, runs(&mut self.pixels, starts, columns), |x| {
                    T::at(x, b)
                });
            }
            // Into the images, one image row at a time: the tiles' M pixel columns of the row,
            // for all images, interleaved into `rows_out`, then each image's first `width` values.
            let padded_width = M * across;
            for y in 0..height {
                let tiles = y % M * M * columns + y / M * row_len;
                let pixel_columns =
                    std::array::from_fn(|k| &self.pixels[tiles + k * columns..][..row_len]);
                interleave::<M>(pixel_columns, &mut self.rows_out);
                for n in 0..self.images {
                    let plane = (n * cout + o) * height * width;
                    copy_short(
                        &mut images[plane + y * width..][..width],
                        &self.rows_out[n * padded_width..][..width],
                    );
                }
            }
        }
    }
}

/// `outputs[·][t] = f(inputs[·][t])` for every t, in blocks of 16 lanes copied in and out of
/// local arrays: the outputs cannot alias the inputs there, so every block compiles to vector
/// instructions whatever `I` and `O` are (over the slices themselves, LLVM would need more
/// run-time alias checks than it allows and leave the loop scalar).
#[inline(always)]
fn map_lanes<const I: usize, const O: usize>(
    inputs: [&[f32]; I],
    mut outputs: [&mut [f32]; O],
    f: impl Fn([f32; I]) -> [f32; O],
) {
    const LANES: usize = 16;
    let block = |x: &[[f32; LANES]; I]| {
        let mut y = [[0f32; LANES]; O];
        for lane in 0..LANES {
            let result = f(std::array::from_fn(|k| x[k][lane]));
            for (o, value) in result.into_iter().enumerate() {
                y[o][lane] = value;
            }
        }
        y
    };
    let len = outputs[0].len();
    let full = len / LANES * LANES;
    for start in (0..full).step_by(LANES) {
        let x = std::array::from_fn(|k| *inputs[k][start..].first_chunk::<LANES>().unwrap());
        let y = block(&x);
        for (output, y) in outputs.iter_mut().zip(&y) {
            output[start..][..LANES].copy_from_slice(y);
        }
    }
    if full < len {
        let rest = len - full;
        let mut x = [[0f32; LANES]; I];
        for (x, input) in x.iter_mut().zip(&inputs) {
            x[..rest].copy_from_slice(&input[full..len]);
        }
        let y = block(&x);
        for (output, y) in outputs.iter_mut().zip(&y) {
            output[full..].copy_from_slice(&y[..rest]);
        }
    }
}

/// `outputs[k][t] = input[R·t + k]`: the R phases of `input`, in blocks of 16 copied through a
/// local array so that each block compiles to vector shuffles.
#[inline(always)]
fn deinterleave<const R: usize>(input: &[f32], mut outputs: [&mut [f32]; R]) {
    const LANES: usize = 16;
    let len = outputs[0].len();
    assert_eq!(input.len(), R * len, "deinterleave: lengths");
    let (blocks, _) = input.as_chunks::<R>();
    let full = len / LANES * LANES;
    for start in (0..full).step_by(LANES) {
        let x: &[[f32; R]; LANES] = blocks[start..].first_chunk().unwrap();
        for (k, output) in outputs.iter_mut().enumerate() {
            let y: [f32; LANES] = std::array::from_fn(|l| x[l][k]);
            output[start..][..LANES].copy_from_slice(&y);
        }
    }
    for t in full..len {
        for (k, output) in outputs.iter_mut().enumerate() {
            output[t] = blocks[t][k];
        }
    }
}

/// `output[R·t + k] = inputs[k][t]`: the inverse of [`deinterleave`].
#[inline(always)]
fn interleave<const R: usize>(inputs: [&[f32]; R], output: &mut [f32]) {
    const LANES: usize = 16;
    let len = inputs[0].len();
    assert_eq!(output.len(), R * len, "interleave: lengths");
    let (blocks, _) = output.as_chunks_mut::<R>();
    let full = len / LANES * LANES;
    for start in (0..full).step_by(LANES) {
        let x: [&[f32; LANES]; R] =
            std::array::from_fn(|k| inputs[k][start..].first_chunk().unwrap());
        let y: &mut [[f32; R]; LANES] = blocks[start..].first_chunk_mut().unwrap();
        *y = std::array::from_fn(|l| std::array::from_fn(|k| x[k][l]));
    }
    for t in full..len {
        blocks[t] = std::array::from_fn(|k| inputs[k][t]);
    }
}

/// `destination = source` for an image row: in fixed blocks of 8, which compile to vector
/// moves, where `copy_from_slice` of a length known only at run time calls `memmove`, whose
/// call costs as much as a 28-value row.
#[inline(always)]
fn copy_short(destination: &mut [f32], source: &[f32]) {
    assert_eq!(
        destination.len(),
        source.len(),
        "copy_short: lengths differ"
    );
    let (blocks, rest) = destination.as_chunks_mut::<8>();
    let (source_blocks, source_rest) = source.as_chunks::<8>();
    for (block, source) in blocks.iter_mut().zip(source_blocks) {
        *block = *source;
    }
    for (value, source) in rest.iter_mut().zip(source_rest) {
        *value = *source;
    }
}

/// The GEMMs' operands: the blocks of `out`, `a` and `b` for each of the `positions` ξ, all
/// three laid out `[positions][…]`.
fn by_position<'a>(
    positions: usize,
    out: &'a mut [f32],
    a: &'a [f32],
    b: &'a [f32],
) -> impl Iterator<Item = (&'a mut [f32], &'a [f32], &'a [f32])> {
    let blocks = move |data: &'a [f32]| data.chunks_exact(data.len() / positions);
    let out_len = out.len() / positions;
    out.chunks_exact_mut(out_len)
        .zip(blocks(a).zip(blocks(b)))
        .map(|(out, (a, b))| (out, a, b))
}

/// `data[to..to + len] += data[from..from + len]`, for two runs that do not overlap.
#[inline(always)]
fn add_within(data: &mut [f32], from: usize, to: usize, len: usize) {
    if from < to {
        assert!(from + len <= to, "add_within: overlapping runs");
        let (source, destination) = data.split_at_mut(to);
        add_into(&mut destination[..len], &source[from..][..len]);
    } else {
        assert!(to + len <= from, "add_within: overlapping runs");
        let (destination, source) = data.split_at_mut(from);
        add_into(&mut destination[to..][..len], &source[..len]);
    }
}

/// `R` disjoint runs of `len` values of `data`, starting at `starts` (increasing, at least
/// `len` apart).
#[inline(always)]
fn runs<const R: usize>(data: &mut [f32], starts: [usize; R], len: usize) -> [&mut [f32]; R] {
    let mut rest = data;
    let mut consumed = 0;
    let mut out: [&mut [f32]; R] = std::array::from_fn(|_| Default::default());
    for (run, start) in out.iter_mut().zip(starts) {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(start - consumed);
        (*run, rest) = tail.split_at_mut(len);
        consumed = start + len;
    }
    out
}
