//! 3×3, stride-1, padding-1 convolutions by Winograd's minimal filtering F(2×2, 3×3) (Lavin &
//! Gray 2016): each 2×2 output tile comes from a 4×4 input tile with 16 multiplications per
//! channel pair instead of 36. In matrix form, for an input tile d, a kernel g and one output
//! tile y:
//!
//!   V = Bᵀ d B,  U = G g Gᵀ,  M = Σ_c U ⊙ V,  y = Aᵀ M A,
//!
//! and the sum over input channels of the 16 element-wise products is 16 GEMMs,
//! `M[ξ] = U[ξ] · V[ξ]` with U[ξ] `[C_out, C_in]` and V[ξ] `[C_in, tiles]`, one per position ξ
//! of the 4×4 transformed tile. A group of images shares each GEMM, as in `conv.rs`.

use super::conv::{Conv2dShape, GEMM_COLUMNS};
use super::matmul::{MatRef, gemm};
use super::parallel;

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

/// Whether [`conv2d_forward`](super::conv::conv2d_forward) should come here: a shape this module
/// computes, with enough tiles in the batch (up to one group's worth). Decided on the batch, not
/// on the groups the threads get, so that any number of threads takes the same path and gives
/// the same bits.
pub(super) fn applies(shape: &Conv2dShape) -> bool {
    let tiles = shape.height.div_ceil(2) * shape.width.div_ceil(2);
    let images = GEMM_COLUMNS.div_ceil(tiles.max(1)).min(shape.batch);
    computes(shape) && images * tiles >= MIN_TILES
}

/// `y = conv(x, weight) + bias` for a shape this module [`computes`].
///
/// # Shapes
///   - x: [batch, channels_in, height, width]
///   - weight: [channels_out, channels_in, 3, 3]
///   - bias: [channels_out]
///   - output: [batch, channels_out, height, width]
pub fn conv3x3_forward(shape: &Conv2dShape, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
    assert!(
        computes(shape),
        "winograd: not a 3×3 stride-1 padding-1 convolution"
    );
    let (cin, cout) = (shape.channels_in, shape.channels_out);
    let (height, width) = (shape.height, shape.width);
    let pixels = height * width;
    assert_eq!(x.len(), shape.batch * cin * pixels, "winograd: input size");
    assert_eq!(weight.len(), cout * cin * 9, "winograd: weight size");
    assert_eq!(bias.len(), cout, "winograd: bias size");
    let planes = Planes::new(height, width);
    let tiles = planes.tiles();
    let u = transformed_weights(weight, cout, cin);
    let group = shape.images_per_gemm(tiles);
    let threads = shape.gemm_threads();
    let out_len = cout * pixels;
    let mut output = vec![0f32; shape.batch * out_len];
    let scratch = || {
        let columns = group * tiles;
        (
            parallel::Scratch::new(XI * cin * columns),
            parallel::Scratch::new(XI * cout * columns),
            planes.clone(),
        )
    };
    parallel::for_each_chunk(
        &mut output,
        group * out_len,
        scratch,
        |(v, m, planes), g, out| {
            let images = out.len() / out_len;
            let columns = images * tiles;
            let first = g * group;
            let x = &x[first * cin * pixels..(first + images) * cin * pixels];
            let v = &mut v[..XI * cin * columns];
            let m = &mut m[..XI * cout * columns];
            for (i, image) in x.chunks(cin * pixels).enumerate() {
                planes.transform_input(image, cin, v, columns, i * tiles);
            }
            for xi in 0..XI {
                gemm(
                    &mut m[xi * cout * columns..(xi + 1) * cout * columns],
                    false,
                    MatRef::row_major(&u[xi * cout * cin..(xi + 1) * cout * cin], cout, cin),
                    MatRef::row_major(
                        &v[xi * cin * columns..(xi + 1) * cin * columns],
                        cin,
                        columns,
                    ),
                    threads,
                );
            }
            for (i, image) in out.chunks_mut(out_len).enumerate() {
                planes.transform_output(m, cout, columns, i * tiles, bias, image);
            }
        },
    );
    output
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

/// One image plane's tiling, and the small buffers the transforms work in: made once per piece
/// of work and reused for every plane of every image in it.
#[derive(Clone)]
struct Planes {
    height: usize,
    width: usize,
    /// Tile rows, and tiles per row.
    down: usize,
    across: usize,
    /// A plane with a zero border: one row and column before the image, enough after it for the
    /// last tiles. Only the interior is ever written, so the border stays zero.
    padded: Vec<f32>,
    /// A row of tiles half transformed: the four input rows after Bᵀ along them, or the two
    /// output rows after Aᵀ down M's columns ([row][position][tile]).
    half: Vec<f32>,
    /// One output row of a tile row, two pixels a tile, before it is cut to the image's width.
    line: Vec<f32>,
}

impl Planes {
    fn new(height: usize, width: usize) -> Self {
        let (down, across) = (height.div_ceil(2), width.div_ceil(2));
        Self {
            height,
            width,
            down,
            across,
            padded: vec![0.0; (2 * down + 2) * (2 * across + 2)],
            half: vec![0.0; 16 * across],
            line: vec![0.0; 2 * across],
        }
    }

    fn tiles(&self) -> usize {
        self.down * self.across
    }

    /// V = Bᵀ d B of every 4×4 input tile of one image (tile (i, j) starts at row 2i − 1,
    /// column 2j − 1; zeros outside the image), into `v` laid out `[16][C_in][columns]`, this
    /// image's tiles from column `first`. Each plane is copied into the zero-bordered one
    /// first, so that the inner loops run along a row of tiles without bounds checks, and
    /// vectorise.
    fn transform_input(
        &mut self,
        image: &[f32],
        cin: usize,
        v: &mut [f32],
        columns: usize,
        first: usize,
    ) {
        let (width, across) = (self.width, self.across);
        let padded_width = 2 * across + 2;
        for (c, plane) in image.chunks_exact(self.height * width).enumerate() {
            for (y, line) in plane.chunks_exact(width).enumerate() {
                let start = (y + 1) * padded_width + 1;
                self.padded[start..start + width].copy_from_slice(line);
            }
            for ti in 0..self.down {
                // Bᵀ along each of the tile row's four input rows.
                for r in 0..4 {
                    let line = &self.padded[(2 * ti + r) * padded_width..][..padded_width];
                    let (d0, rest) = self.half[r * 4 * across..][..4 * across].split_at_mut(across);
                    let (d1, rest) = rest.split_at_mut(across);
                    let (d2, d3) = rest.split_at_mut(across);
                    for tj in 0..across {
                        let d = &line[2 * tj..2 * tj + 4];
                        let [a, b, c, e] = bt([d[0], d[1], d[2], d[3]]);
                        (d0[tj], d1[tj], d2[tj], d3[tj]) = (a, b, c, e);
                    }
                }
                // Bᵀ down each column of the four rows: position (r, k) of V.
                let column = first + ti * across;
                for k in 0..4 {
                    let row = |r: usize| &self.half[(r * 4 + k) * across..][..across];
                    let (h0, h1, h2, h3) = (row(0), row(1), row(2), row(3));
                    let (out0, out1, out2, out3) = {
                        let at_r = |r: usize| ((r * 4 + k) * cin + c) * columns + column;
                        let (a, b, c2, d) = (at_r(0), at_r(1), at_r(2), at_r(3));
                        // Four disjoint runs of `across` values, in increasing order.
                        let (_, rest) = v.split_at_mut(a);
                        let (o0, rest) = rest.split_at_mut(b - a);
                        let (o1, rest) = rest.split_at_mut(c2 - b);
                        let (o2, rest) = rest.split_at_mut(d - c2);
                        (
                            &mut o0[..across],
                            &mut o1[..across],
                            &mut o2[..across],
                            &mut rest[..across],
                        )
                    };
                    for tj in 0..across {
                        out0[tj] = h0[tj] - h2[tj];
                        out1[tj] = h1[tj] + h2[tj];
                        out2[tj] = h2[tj] - h1[tj];
                        out3[tj] = h1[tj] - h3[tj];
                    }
                }
            }
        }
    }

    /// y = Aᵀ M A + bias for every tile of one image, from `m` laid out `[16][C_out][columns]`
    /// (this image's tiles from column `first`), written where the tile lies inside the image.
    fn transform_output(
        &mut self,
        m: &[f32],
        cout: usize,
        columns: usize,
        first: usize,
        bias: &[f32],
        image: &mut [f32],
    ) {
        let (height, width, across) = (self.height, self.width, self.across);
        for (o, plane) in image.chunks_exact_mut(height * width).enumerate() {
            for ti in 0..self.down {
                let column = first + ti * across;
                // Aᵀ down each column of M: the tile row's two output rows.
                let (top, bottom) = self.half[..8 * across].split_at_mut(4 * across);
                for k in 0..4 {
                    let at_xi =
                        |r: usize| &m[((r * 4 + k) * cout + o) * columns + column..][..across];
                    let (m0, m1, m2, m3) = (at_xi(0), at_xi(1), at_xi(2), at_xi(3));
                    let top = &mut top[k * across..][..across];
                    let bottom = &mut bottom[k * across..][..across];
                    for tj in 0..across {
                        top[tj] = m0[tj] + m1[tj] + m2[tj];
                        bottom[tj] = m1[tj] - m2[tj] - m3[tj];
                    }
                }
                // Aᵀ along each of the two rows, plus the bias.
                for r in 0..2 {
                    let y = 2 * ti + r;
                    if y >= height {
                        break;
                    }
                    let c = |k: usize| &self.half[(r * 4 + k) * across..][..across];
                    let (c0, c1, c2, c3) = (c(0), c(1), c(2), c(3));
                    for tj in 0..across {
                        self.line[2 * tj] = c0[tj] + c1[tj] + c2[tj] + bias[o];
                        self.line[2 * tj + 1] = c1[tj] - c2[tj] - c3[tj] + bias[o];
                    }
                    plane[y * width..(y + 1) * width].copy_from_slice(&self.line[..width]);
                }
            }
        }
    }
}
