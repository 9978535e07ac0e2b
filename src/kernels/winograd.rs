//! 3×3, stride-1, padding-1 convolutions by Winograd's minimal filtering F(2×2, 3×3) (Lavin &
//! Gray 2016): each 2×2 output tile comes from a 4×4 input tile with 16 multiplications per
//! channel pair instead of 36. In matrix form, for an input tile d, a kernel g and one output
//! tile y:
//!
//!   V = Bᵀ d B,  U = G g Gᵀ,  M = Σ_c U ⊙ V,  y = Aᵀ M A,
//!
//! and the sum over input channels of the 16 element-wise products is 16 GEMMs,
//! `M[ξ] = U[ξ] · V[ξ]` with U[ξ] `[C_out, C_in]` and V[ξ] `[C_in, tiles]`, one per position ξ
//! of the 4×4 transformed tile. A group of images shares each GEMM, as in `conv.rs`. The
//! backward ([`conv3x3_backward`]) reuses the same transforms and GEMMs.

use super::conv::{Conv2dGrads, Conv2dShape, GEMM_COLUMNS, add_into};
use super::matmul::{MatRef, Threads, gemm};
use super::{parallel, simd};

/// Positions of a transformed 4×4 tile.
const XI: usize = 16;

/// Tiles (images × 2×2 output tiles) below which the 16 GEMMs are too thin to pay for the
/// transforms. Measured natively (`gendi bench`, 7 alternated rounds): with every 3×3 stride-1
/// convolution on this path, batch 16 sampled in 84–96 ms a step against 85–106 ms for im2col,
/// but batch 1, whose 14×14 and 7×7 levels make 49 and 16 tiles, was 5–10% slower.
const MIN_TILES: usize = 256;

/// Whether `shape` is a convolution this module computes: 3×3, stride 1, padding 1.
pub fn computes(shape: &Conv2dShape) -> bool {
    shape.kernel == [3, 3] && shape.stride == [1, 1] && shape.padding == [(1, 1), (1, 1)]
}

/// Whether [`conv2d_forward`](super::conv::conv2d_forward) and
/// [`conv2d_backward`](super::conv::conv2d_backward) should come here: Winograd is on for this
/// thread ([`use_winograd`](super::use_winograd)), and `shape` is one this module computes, with
/// enough tiles in the batch (up to one group's worth). Decided on the batch, not on the groups
/// the threads get, so that any number of threads takes the same path and gives the same bits.
pub(super) fn applies(shape: &Conv2dShape) -> bool {
    let tiles = shape.height.div_ceil(2) * shape.width.div_ceil(2);
    let images = GEMM_COLUMNS.div_ceil(tiles.max(1)).min(shape.batch);
    super::winograd_enabled() && computes(shape) && images * tiles >= MIN_TILES
}

/// `y = conv(x, weight) + bias` for a shape this module [`computes`].
///
/// # Shapes
///   - x: [batch, channels_in, height, width]
///   - weight: [channels_out, channels_in, 3, 3]
///   - bias: [channels_out]
///   - output: [batch, channels_out, height, width]
pub fn conv3x3_forward(shape: &Conv2dShape, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let plan = Plan::new(shape);
    assert_eq!(x.len(), plan.in_len * shape.batch, "winograd: input size");
    assert_eq!(weight.len(), plan.weight_len(), "winograd: weight size");
    assert_eq!(bias.len(), shape.channels_out, "winograd: bias size");
    let u = transformed_weights(weight, shape.channels_out, shape.channels_in);
    let mut output = parallel::zeroed(shape.batch * plan.out_len);
    parallel::for_each_chunk(
        &mut output,
        plan.group * plan.out_len,
        || plan.scratch(),
        |scratch, g, out| {
            let images = out.len() / plan.out_len;
            let x = plan.group_of(x, plan.in_len, g, images);
            plan.convolve(
                scratch,
                &u,
                [shape.channels_in, shape.channels_out],
                x,
                bias,
                out,
            );
        },
    );
    output
}

/// The gradients of [`conv3x3_forward`] given the output's gradient `dy`.
///
/// - dX is itself a 3×3 stride-1 padding-1 convolution, of dY with the kernel flipped and its
///   channel axes swapped, so it runs through the same 16 GEMMs.
/// - dW comes from the adjoint of the forward's last steps: with V the transformed input tiles
///   and dM = A dY Aᵀ the transformed gradient tiles (a 2×2 tile of dY to 4×4),
///   dU[ξ] = Σ_tiles dM[ξ] · V[ξ]ᵀ (16 GEMMs whose inner dimension is the tiles), and
///   dW = Gᵀ dU G for every channel pair.
pub fn conv3x3_backward(shape: &Conv2dShape, x: &[f32], weight: &[f32], dy: &[f32]) -> Conv2dGrads {
    let plan = Plan::new(shape);
    let (cin, cout) = (shape.channels_in, shape.channels_out);
    assert_eq!(x.len(), plan.in_len * shape.batch, "winograd: input size");
    assert_eq!(weight.len(), plan.weight_len(), "winograd: weight size");
    assert_eq!(
        dy.len(),
        plan.out_len * shape.batch,
        "winograd: gradient size"
    );
    let u_flipped = transformed_weights(&flipped(weight, cout, cin), cin, cout);
    let no_bias = vec![0f32; cin];
    let pixels = shape.height * shape.width;

    struct Partial {
        du: Vec<f32>,
        bias: Vec<f32>,
        scratch: Scratch,
    }
    let mut dx = parallel::zeroed(shape.batch * plan.in_len);
    let sums = parallel::fold_chunks(
        &mut dx,
        plan.group * plan.in_len,
        || Partial {
            du: vec![0f32; XI * cout * cin],
            bias: vec![0f32; cout],
            scratch: plan.scratch(),
        },
        |partial, g, dx_group| {
            let images = dx_group.len() / plan.in_len;
            let x = plan.group_of(x, plan.in_len, g, images);
            let dy = plan.group_of(dy, plan.out_len, g, images);
            let scratch = &mut partial.scratch;
            plan.convolve(scratch, &u_flipped, [cout, cin], dy, &no_bias, dx_group);
            for image in dy.chunks_exact(plan.out_len) {
                for (sum, plane) in partial.bias.iter_mut().zip(image.chunks_exact(pixels)) {
                    *sum += plane.iter().sum::<f32>();
                }
            }
            let columns = plan.columns(x, cin);
            let v = &mut scratch.v[..XI * cin * columns];
            let dm = &mut scratch.m[..XI * cout * columns];
            scratch.planes.transform_input(x, cin, v, columns);
            scratch.planes.transform_gradient(dy, cout, dm, columns);
            for (du, dm, v) in by_position(&mut partial.du, dm, v) {
                let (dm, vt) = (
                    MatRef::row_major(dm, cout, columns),
                    MatRef::transposed(v, columns, cin),
                );
                gemm(du, true, dm, vt, plan.threads);
            }
        },
        |mut a, b| {
            add_into(&mut a.du, &b.du);
            add_into(&mut a.bias, &b.bias);
            a
        },
    );
    Conv2dGrads {
        x: dx,
        weight: untransformed_gradient(&sums.du, cout, cin),
        bias: sums.bias,
    }
}

/// How one convolution's batch is cut into groups of images that share the 16 GEMMs.
struct Plan {
    planes: Planes,
    tiles: usize,
    group: usize,
    threads: Threads,
    in_len: usize,
    out_len: usize,
    channels: [usize; 2],
}

/// One piece of work's buffers: transformed tiles `[16][channels][columns]` of the GEMMs'
/// right-hand side and of their product, and the plane buffers.
struct Scratch {
    v: parallel::Scratch,
    m: parallel::Scratch,
    planes: Planes,
}

impl Plan {
    fn new(shape: &Conv2dShape) -> Self {
        assert!(
            computes(shape),
            "winograd: not a 3×3 stride-1 padding-1 convolution"
        );
        let planes = Planes::new(shape.height, shape.width);
        let tiles = planes.tiles();
        let pixels = shape.height * shape.width;
        Self {
            tiles,
            group: shape.images_per_gemm(tiles),
            threads: shape.gemm_threads(),
            in_len: shape.channels_in * pixels,
            out_len: shape.channels_out * pixels,
            channels: [shape.channels_in, shape.channels_out],
            planes,
        }
    }

    fn weight_len(&self) -> usize {
        self.channels[0] * self.channels[1] * 9
    }

    /// Buffers for a group, large enough for either direction (dX swaps the channel counts).
    fn scratch(&self) -> Scratch {
        let widest = self.channels[0].max(self.channels[1]);
        let len = XI * widest * self.group * self.tiles;
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
    /// `[16][C_out][C_in]` and `[C_in, C_out] = channels`.
    fn convolve(
        &self,
        scratch: &mut Scratch,
        u: &[f32],
        [cin, cout]: [usize; 2],
        x: &[f32],
        bias: &[f32],
        out: &mut [f32],
    ) {
        let columns = self.columns(x, cin);
        let v = &mut scratch.v[..XI * cin * columns];
        let m = &mut scratch.m[..XI * cout * columns];
        scratch.planes.transform_input(x, cin, v, columns);
        for (m, u, v) in by_position(m, u, v) {
            let (u, v) = (
                MatRef::row_major(u, cout, cin),
                MatRef::row_major(v, cin, columns),
            );
            gemm(m, false, u, v, self.threads);
        }
        scratch.planes.transform_output(m, cout, columns, bias, out);
    }
}

/// The kernel of dX = conv(dY, ·): `[C_in, C_out, 3, 3]`, each 3×3 kernel turned by 180°.
fn flipped(weight: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let mut out = vec![0f32; weight.len()];
    for (pair, g) in weight.chunks_exact(9).enumerate() {
        let (o, c) = (pair / cin, pair % cin);
        let dst = &mut out[(c * cout + o) * 9..][..9];
        for (d, s) in dst.iter_mut().zip(g.iter().rev()) {
            *d = *s;
        }
    }
    out
}

/// dW = Gᵀ dU G for every channel pair, from dU laid out `[16][C_out][C_in]`, to
/// `[C_out, C_in, 3, 3]`. Gᵀ applied to four values: [a0 + ½(a1 + a2), ½(a1 − a2),
/// ½(a1 + a2) + a3].
fn untransformed_gradient(du: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let gt = |a: [f32; 4]| {
        let (sum, difference) = (0.5 * (a[1] + a[2]), 0.5 * (a[1] - a[2]));
        [a[0] + sum, difference, sum + a[3]]
    };
    let mut weight = vec![0f32; cout * cin * 9];
    for (pair, g) in weight.chunks_exact_mut(9).enumerate() {
        let at = |r: usize, k: usize| du[(r * 4 + k) * cout * cin + pair];
        // Gᵀ dU: 3 × 4, one column of dU at a time.
        let columns: [[f32; 3]; 4] =
            std::array::from_fn(|k| gt([at(0, k), at(1, k), at(2, k), at(3, k)]));
        for i in 0..3 {
            // (Gᵀ dU) G: row i times G.
            let row = gt([columns[0][i], columns[1][i], columns[2][i], columns[3][i]]);
            g[i * 3..i * 3 + 3].copy_from_slice(&row);
        }
    }
    weight
}

/// U = G g Gᵀ for every (output, input) channel pair, laid out `[16][C_out][C_in]`, with
/// G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]].
fn transformed_weights(weight: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let mut u = vec![0f32; XI * cout * cin];
    let g_times = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    for (pair, g) in weight.chunks_exact(9).enumerate() {
        // G g: 4 × 3, one column of g at a time.
        let columns: [[f32; 4]; 3] = std::array::from_fn(|j| g_times(g[j], g[3 + j], g[6 + j]));
        for r in 0..4 {
            // (G g) Gᵀ: row r of G g times Gᵀ.
            let row = g_times(columns[0][r], columns[1][r], columns[2][r]);
            for (c, value) in row.into_iter().enumerate() {
                u[(r * 4 + c) * cout * cin + pair] = value;
            }
        }
    }
    u
}

/// Bᵀ applied to four values: Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]
/// (the output transform's Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]] is written out where it is used).
#[inline(always)]
fn bt(d: [f32; 4]) -> [f32; 4] {
    [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]
}

/// A = [[1, 0], [1, 1], [1, −1], [0, −1]] applied to the middle two of four values: a 2×2
/// gradient tile's pixels, which sit where an input tile's second and third values do.
#[inline(always)]
fn a_of_middle(d: [f32; 4]) -> [f32; 4] {
    [d[1], d[1] + d[2], d[1] - d[2], -d[2]]
}

/// One image plane's tiling, and the buffers the transforms work in: made once per piece of
/// work and reused for every plane of every image in it.
///
/// A tile row's loops would run over 14, 7 or 4 tiles, shorter than one AVX-512 vector, so the
/// transforms run over whole planes instead. Each plane is first spread over a zero-bordered
/// grid of `down + 1` rows of `across` tiles per padded row parity, one grid per tile column
/// offset: with padded pixel (p, q) (the image's (p − 1, q − 1)), the grids of parity p mod 2
/// hold at (p / 2, j) the four columns 2j, 2j + 1, 2j + 2, 2j + 3 a tile row reads. Every
/// transform step is then an element-wise loop over a grid or over the plane's tiles, and
/// compiled for the CPU's widest vectors.
#[derive(Clone)]
struct Planes {
    height: usize,
    width: usize,
    /// Tile rows, and tiles per row.
    down: usize,
    across: usize,
    /// `[row parity][column offset 0..4][grid]`. Only cells inside the image are ever written,
    /// so the rest stays zero.
    quarters: Vec<f32>,
    /// A plane half transformed, `[position along the row][row parity][grid]`.
    half: Vec<f32>,
    /// The output transform's result before it goes into the image: `[tile row][column][tile]`.
    pixels: Vec<f32>,
}

impl Planes {
    fn new(height: usize, width: usize) -> Self {
        let (down, across) = (height.div_ceil(2), width.div_ceil(2));
        let grid = (down + 1) * across;
        Self {
            height,
            width,
            down,
            across,
            quarters: vec![0.0; 8 * grid],
            half: vec![0.0; 8 * grid],
            pixels: vec![0.0; 4 * down * across],
        }
    }

    fn tiles(&self) -> usize {
        self.down * self.across
    }

    fn grid(&self) -> usize {
        (self.down + 1) * self.across
    }

    /// Row parity `parity`'s four grids: padded columns 2j, 2j + 1, 2j + 2, 2j + 3 at j.
    #[inline(always)]
    fn quarters(&mut self, parity: usize) -> [&mut [f32]; 4] {
        let grid = self.grid();
        let starts = [0, 1, 2, 3].map(|k| (parity * 4 + k) * grid);
        four_runs(&mut self.quarters, starts, grid)
    }

    /// Spreads one `[H, W]` plane over the grids.
    #[inline(always)]
    fn spread(&mut self, plane: &[f32]) {
        let (width, across) = (self.width, self.across);
        for (y, line) in plane.chunks_exact(width).enumerate() {
            let padded_row = y + 1;
            let row = padded_row / 2 * across;
            let [first, second, third, fourth] = self
                .quarters(padded_row % 2)
                .map(|grid| &mut grid[row..][..across]);
            // x = 2j and 2j + 1: padded columns 2j + 1 and 2j + 2, the second and third of
            // tile j (the third stays zero past an odd width).
            let (pairs, last) = line.as_chunks::<2>();
            for ((s, t), pair) in second.iter_mut().zip(third.iter_mut()).zip(pairs) {
                *s = pair[0];
                *t = pair[1];
            }
            if let [value] = last {
                second[pairs.len()] = *value;
            }
            // The same columns are the fourth of tile j − 1 and the first of tile j + 1.
            fourth[..across - 1].copy_from_slice(&second[1..]);
            first[1..].copy_from_slice(&third[..across - 1]);
        }
    }

    /// `half`'s grid for position `k` along the row and row parity `parity`.
    #[inline(always)]
    fn half(&self, k: usize, parity: usize) -> &[f32] {
        let grid = self.grid();
        &self.half[(k * 2 + parity) * grid..][..grid]
    }

    /// V = Bᵀ d B of every 4×4 input tile of a group's images `[C_in, H, W]` each (tile (i, j)
    /// starts at row 2i − 1, column 2j − 1; zeros outside the image), into `v` laid out
    /// `[16][C_in][columns]`, image n's tiles from column n·tiles.
    fn transform_input(&mut self, images: &[f32], cin: usize, v: &mut [f32], columns: usize) {
        self.transform(images, cin, v, columns, bt);
    }

    /// dM = A dY Aᵀ of every 2×2 tile of a group's output gradients `[C_out, H, W]` each (zeros
    /// outside the image), into `dm` laid out like [`transform_input`](Self::transform_input)'s
    /// V: the adjoint of [`transform_output`](Self::transform_output)'s Aᵀ M A. Tile (i, j)'s
    /// pixels are padded rows and columns 2i + 1, 2i + 2 and 2j + 1, 2j + 2, the middle two of
    /// the four an input tile reads, so it is the input transform with A on those two.
    fn transform_gradient(&mut self, images: &[f32], cout: usize, dm: &mut [f32], columns: usize) {
        self.transform(images, cout, dm, columns, a_of_middle);
    }

    /// `one_d` along every tile's rows, then down its columns, each reading a tile's four
    /// padded rows or columns 2i .. 2i + 3.
    fn transform(
        &mut self,
        images: &[f32],
        channels: usize,
        out: &mut [f32],
        columns: usize,
        one_d: impl Fn([f32; 4]) -> [f32; 4],
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
        columns: usize,
        one_d: impl Fn([f32; 4]) -> [f32; 4],
    ) {
        let (across, tiles, grid) = (self.across, self.tiles(), self.grid());
        let planes = images.chunks_exact(self.height * self.width);
        for (index, plane) in planes.enumerate() {
            let (image, c) = (index / channels, index % channels);
            self.spread(plane);
            // Along every padded row: half[k][parity] at (row, j).
            for parity in 0..2 {
                let quarter = |k: usize| &self.quarters[(parity * 4 + k) * grid..][..grid];
                let (d0, d1, d2, d3) = (quarter(0), quarter(1), quarter(2), quarter(3));
                let starts = [0, 1, 2, 3].map(|k| (k * 2 + parity) * grid);
                let [h0, h1, h2, h3] = four_runs(&mut self.half, starts, grid);
                for g in 0..grid {
                    [h0[g], h1[g], h2[g], h3[g]] = one_d([d0[g], d1[g], d2[g], d3[g]]);
                }
            }
            // Down the columns: tile (i, j)'s rows 2i .. 2i + 3 are parities 0, 1, 0, 1 at grid
            // rows i, i, i + 1, i + 1. Position (r, k) of the result.
            for k in 0..4 {
                let (even, odd) = (self.half(k, 0), self.half(k, 1));
                let (h0, h1) = (&even[..tiles], &odd[..tiles]);
                let (h2, h3) = (&even[across..][..tiles], &odd[across..][..tiles]);
                let at = |r: usize| ((r * 4 + k) * channels + c) * columns + image * tiles;
                let [out0, out1, out2, out3] = four_runs(out, [0, 1, 2, 3].map(at), tiles);
                for t in 0..tiles {
                    [out0[t], out1[t], out2[t], out3[t]] = one_d([h0[t], h1[t], h2[t], h3[t]]);
                }
            }
        }
    }

    /// y = Aᵀ M A + bias for every tile of a group's images `[C_out, H, W]` each, from `m` laid
    /// out `[16][C_out][columns]` (image n's tiles from column n·tiles), written where the tile
    /// lies inside the image.
    fn transform_output(
        &mut self,
        m: &[f32],
        cout: usize,
        columns: usize,
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
        columns: usize,
        bias: &[f32],
        images: &mut [f32],
    ) {
        let (height, width, across, tiles) = (self.height, self.width, self.across, self.tiles());
        for (index, plane) in images.chunks_exact_mut(height * width).enumerate() {
            let (first, o) = (index / cout * tiles, index % cout);
            // Aᵀ down M's columns: each tile's two output rows, half[k][row] over the tiles.
            for k in 0..4 {
                let at_xi = |r: usize| &m[((r * 4 + k) * cout + o) * columns + first..][..tiles];
                let (m0, m1, m2, m3) = (at_xi(0), at_xi(1), at_xi(2), at_xi(3));
                let grid = self.grid();
                let (top, bottom) = self.half[k * 2 * grid..][..2 * grid].split_at_mut(grid);
                for t in 0..tiles {
                    top[t] = m0[t] + m1[t] + m2[t];
                    bottom[t] = m1[t] - m2[t] - m3[t];
                }
            }
            // Aᵀ along each row, plus the bias: each tile's pixels (r, 0) and (r, 1).
            let (b, grid) = (bias[o], self.grid());
            for r in 0..2 {
                let c = |k: usize| &self.half[(k * 2 + r) * grid..][..tiles];
                let (c0, c1, c2, c3) = (c(0), c(1), c(2), c(3));
                let (left, right) = self.pixels[2 * r * tiles..][..2 * tiles].split_at_mut(tiles);
                for t in 0..tiles {
                    left[t] = c0[t] + c1[t] + c2[t] + b;
                    right[t] = c1[t] - c2[t] - c3[t] + b;
                }
            }
            // Into the image, where the tiles lie inside it.
            for (y, line) in plane.chunks_exact_mut(width).enumerate() {
                let (ti, r) = (y / 2, y % 2);
                let pixels = &self.pixels[2 * r * tiles..][..2 * tiles];
                let (left, right) = pixels.split_at(tiles);
                let (left, right) = (
                    &left[ti * across..][..across],
                    &right[ti * across..][..across],
                );
                let (pairs, last) = line.as_chunks_mut::<2>();
                for (pair, (&l, &r)) in pairs.iter_mut().zip(left.iter().zip(right)) {
                    *pair = [l, r];
                }
                if let [value] = last {
                    *value = left[across - 1];
                }
            }
        }
    }
}

/// The 16 GEMMs' operands: the blocks of `out`, `a` and `b` for each position ξ, all three
/// laid out `[16][…]`.
fn by_position<'a>(
    out: &'a mut [f32],
    a: &'a [f32],
    b: &'a [f32],
) -> impl Iterator<Item = (&'a mut [f32], &'a [f32], &'a [f32])> {
    let blocks = |data: &'a [f32]| data.chunks_exact(data.len() / XI);
    let out_len = out.len() / XI;
    out.chunks_exact_mut(out_len)
        .zip(blocks(a).zip(blocks(b)))
        .map(|(out, (a, b))| (out, a, b))
}

/// Four disjoint runs of `len` values of `data`, starting at `starts` (increasing).
#[inline(always)]
fn four_runs(data: &mut [f32], starts: [usize; 4], len: usize) -> [&mut [f32]; 4] {
    let (_, rest) = data.split_at_mut(starts[0]);
    let (a, rest) = rest.split_at_mut(starts[1] - starts[0]);
    let (b, rest) = rest.split_at_mut(starts[2] - starts[1]);
    let (c, d) = rest.split_at_mut(starts[3] - starts[2]);
    [&mut a[..len], &mut b[..len], &mut c[..len], &mut d[..len]]
}
