//! The 1-D transforms of Winograd's two tilings F(2, 3) and F(4, 3) (Lavin & Gray 2016), each
//! written with its shared sums, as the matrices' symmetric rows allow. The 2-D transforms
//! apply them along both axes of a tile.

/// The transforms of F(m, 3), with n = m + 2 the input tile's side: Bᵀ (n × n) for input
/// tiles, G (n × 3) for kernels, Aᵀ (m × n) for output tiles, and the adjoints the backward
/// needs.
pub(super) trait Transforms<const M: usize, const N: usize> {
    /// Bᵀ along one axis of an input tile.
    fn bt(d: [f32; N]) -> [f32; N];
    /// B: the adjoint of [`bt`](Self::bt), from a transformed tile's gradient to the input
    /// tile's.
    fn b(e: [f32; N]) -> [f32; N];
    /// A (n × m) applied to the middle m of n values: a gradient tile's pixels, which sit
    /// where an input tile's second to (m + 1)-th values do. The adjoint of [`at`](Self::at).
    fn a_of_middle(d: [f32; N]) -> [f32; N];
    /// Aᵀ along one axis of a transformed tile, plus `bias`.
    fn at(m: [f32; N], bias: f32) -> [f32; M];
    /// G along one axis of a 3×3 kernel.
    fn g(g: [f32; 3]) -> [f32; N];
    /// Gᵀ: the adjoint of [`g`](Self::g).
    fn gt(a: [f32; N]) -> [f32; 3];
}

/// F(2×2, 3×3): 16 multiplications for 4 outputs, with interpolation points 0, ±1 and ∞.
///
///   Bᵀ = [[1,  0, −1,  0],    G = [[  1,   0,   0],    Aᵀ = [[1, 1,  1,  0],
///         [0,  1,  1,  0],         [1/2, 1/2, 1/2],          [0, 1, −1, −1]]
///         [0, −1,  1,  0],         [1/2, −1/2, 1/2],
///         [0,  1,  0, −1]]         [  0,   0,   1]]
pub(super) struct F2;

impl Transforms<2, 4> for F2 {
    #[inline(always)]
    fn bt(d: [f32; 4]) -> [f32; 4] {
        [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]
    }

    #[inline(always)]
    fn b(e: [f32; 4]) -> [f32; 4] {
        [e[0], e[1] - e[2] + e[3], e[1] + e[2] - e[0], -e[3]]
    }

    #[inline(always)]
    fn a_of_middle(d: [f32; 4]) -> [f32; 4] {
        [d[1], d[1] + d[2], d[1] - d[2], -d[2]]
    }

    #[inline(always)]
    fn at(m: [f32; 4], bias: f32) -> [f32; 2] {
        [m[0] + m[1] + m[2] + bias, m[1] - m[2] - m[3] + bias]
    }

    #[inline(always)]
    fn g([a, b, c]: [f32; 3]) -> [f32; 4] {
        [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c]
    }

    #[inline(always)]
    fn gt(a: [f32; 4]) -> [f32; 3] {
        let (sum, difference) = (0.5 * (a[1] + a[2]), 0.5 * (a[1] - a[2]));
        [a[0] + sum, difference, sum + a[3]]
    }
}

/// F(4×4, 3×3): 36 multiplications for 16 outputs, with interpolation points 0, ±1, ±2 and ∞.
/// Its larger constants (up to 8 and 1/24) cost a few ulps more than F(2×2).
///
///   Bᵀ = [[4,  0, −5,  0, 1, 0],    G = [[ 1/4,     0,    0],    Aᵀ = [[1, 1,  1, 1,  1, 0],
///         [0, −4, −4,  1, 1, 0],         [−1/6,  −1/6, −1/6],          [0, 1, −1, 2, −2, 0],
///         [0,  4, −4, −1, 1, 0],         [−1/6,   1/6, −1/6],          [0, 1,  1, 4,  4, 0],
///         [0, −2, −1,  2, 1, 0],         [1/24,  1/12,  1/6],          [0, 1, −1, 8, −8, 1]]
///         [0,  2, −1, −2, 1, 0],         [1/24, −1/12,  1/6],
///         [0,  4,  0, −5, 0, 1]]         [   0,     0,    1]]
pub(super) struct F4;

impl Transforms<4, 6> for F4 {
    #[inline(always)]
    fn bt(d: [f32; 6]) -> [f32; 6] {
        let (a, b) = (d[4] - 4.0 * d[2], d[3] - 4.0 * d[1]);
        let (c, e) = (d[4] - d[2], 2.0 * (d[3] - d[1]));
        [
            4.0 * d[0] - 5.0 * d[2] + d[4],
            a + b,
            a - b,
            c + e,
            c - e,
            4.0 * d[1] - 5.0 * d[3] + d[5],
        ]
    }

    #[inline(always)]
    fn b(e: [f32; 6]) -> [f32; 6] {
        let (sum, difference) = (e[1] + e[2], e[1] - e[2]);
        let (sum2, difference2) = (e[3] + e[4], 2.0 * (e[3] - e[4]));
        [
            4.0 * e[0],
            4.0 * (e[5] - difference) - difference2,
            -5.0 * e[0] - 4.0 * sum - sum2,
            difference + difference2 - 5.0 * e[5],
            e[0] + sum + sum2,
            e[5],
        ]
    }

    #[inline(always)]
    fn a_of_middle(d: [f32; 6]) -> [f32; 6] {
        let [y0, y1, y2, y3] = [d[1], d[2], d[3], d[4]];
        let (even, odd) = (y0 + y2, y1 + y3);
        let (even4, odd2) = (y0 + 4.0 * y2, 2.0 * y1 + 8.0 * y3);
        [y0, even + odd, even - odd, even4 + odd2, even4 - odd2, y3]
    }

    #[inline(always)]
    fn at(m: [f32; 6], bias: f32) -> [f32; 4] {
        let (plus1, minus1) = (m[1] + m[2], m[1] - m[2]);
        let (plus2, minus2) = (m[3] + m[4], m[3] - m[4]);
        [
            m[0] + plus1 + plus2 + bias,
            minus1 + 2.0 * minus2 + bias,
            plus1 + 4.0 * plus2 + bias,
            minus1 + 8.0 * minus2 + m[5] + bias,
        ]
    }

    #[inline(always)]
    fn g([a, b, c]: [f32; 3]) -> [f32; 6] {
        let (even, odd) = (a + c, b);
        let (even4, odd2) = (0.25 * a + c, 0.5 * b);
        [
            0.25 * a,
            -(even + odd) / 6.0,
            -(even - odd) / 6.0,
            (even4 + odd2) / 6.0,
            (even4 - odd2) / 6.0,
            c,
        ]
    }

    #[inline(always)]
    fn gt(a: [f32; 6]) -> [f32; 3] {
        let (plus, minus) = ((a[1] + a[2]) / 6.0, (a[1] - a[2]) / 6.0);
        let (plus24, minus12) = ((a[3] + a[4]) / 24.0, (a[3] - a[4]) / 12.0);
        [
            0.25 * a[0] - plus + plus24,
            -minus + minus12,
            -plus + 4.0 * plus24 + a[5],
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ⟨f(x), y⟩ = ⟨x, f*(y)⟩ for every pair of unit vectors, so `adjoint` is `f`'s transpose.
    fn assert_adjoint<const A: usize, const B: usize>(
        f: impl Fn([f32; A]) -> [f32; B],
        adjoint: impl Fn([f32; B]) -> [f32; A],
    ) {
        fn unit<const K: usize>(k: usize) -> [f32; K] {
            std::array::from_fn(|i| if i == k { 1.0 } else { 0.0 })
        }
        for i in 0..A {
            for j in 0..B {
                let (forward, back) = (f(unit(i))[j], adjoint(unit(j))[i]);
                assert_eq!(forward, back, "entry ({j}, {i})");
            }
        }
    }

    /// B, Aᵀ's adjoint (A on the middle m of n values) and Gᵀ, each against its transform.
    fn assert_adjoints<const M: usize, const N: usize, T: Transforms<M, N>>() {
        assert_adjoint(T::bt, T::b);
        assert_adjoint(
            |m| T::at(m, 0.0),
            |d: [f32; M]| {
                let mut padded = [0.0; N];
                padded[1..=M].copy_from_slice(&d);
                T::a_of_middle(padded)
            },
        );
        assert_adjoint(T::g, T::gt);
    }

    #[test]
    fn each_adjoint_is_the_transpose_of_its_transform() {
        assert_adjoints::<2, 4, F2>();
        assert_adjoints::<4, 6, F4>();
    }
}
