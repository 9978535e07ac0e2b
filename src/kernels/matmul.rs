//! One safe entry to `gemm` (sarah-ek's crate, the one burn-flex uses): strided f32 views,
//! shapes and bounds checked before the unsafe call.

use std::sync::atomic::{AtomicU64, Ordering};

/// A read-only strided matrix: element (i, j) lives at `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::row_major_strided(data, rows, cols, cols)
    }

    /// A `rows × cols` matrix whose rows start every `stride` values (`stride ≥ cols`).
    pub fn row_major_strided(data: &'a [f32], rows: usize, cols: usize, stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: stride,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major `cols × rows` matrix, without copying.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::row_major(data, cols, rows).t()
    }

    /// The same values read as the transpose, without copying.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn assert_in_bounds(&self, what: &str) {
        if self.rows == 0 || self.cols == 0 {
            return;
        }
        let last = (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride;
        assert!(
            last < self.data.len(),
            "gemm: {what} needs {} elements, has {}",
            last + 1,
            self.data.len()
        );
    }
}

/// Floating-point operations done by [`gemm`] since the program started: what a benchmark
/// divides by its time to say how close a training step comes to the machine's GEMM peak.
static FLOPS: AtomicU64 = AtomicU64::new(0);

pub fn gemm_flops() -> u64 {
    FLOPS.load(Ordering::Relaxed)
}

/// The GEMM rate of this machine, in GFLOP/s: square `size³` products on every thread, the best
/// of `repeats`.
pub fn measure_peak_gflops(size: usize, repeats: usize) -> f64 {
    let a: Vec<f32> = (0..size * size).map(|i| (i % 7) as f32 * 0.25).collect();
    let b: Vec<f32> = (0..size * size).map(|i| (i % 5) as f32 * 0.5).collect();
    let mut c = vec![0f32; size * size];
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let start = std::time::Instant::now();
        gemm(
            &mut c,
            false,
            MatRef::row_major(&a, size, size),
            MatRef::row_major(&b, size, size),
            Threads::All,
        );
        best = best.min(start.elapsed().as_secs_f64());
    }
    2.0 * (size as f64).powi(3) / best / 1e9
}

/// The f32 lanes of the vectors `gemm`'s kernels compute with on this CPU. A product whose
/// left-hand side (after `gemm` transposes a row-major product, the right-hand side's columns)
/// is a whole number of these, contiguous, is read in place rather than packed first, unless it
/// is used against many columns (gemm-common's `gemm_basic_generic`).
pub fn gemm_lanes() -> usize {
    // std caches what the CPU has after the first query.
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            16
        } else if std::arch::is_x86_feature_detected!("avx2") {
            8
        } else {
            4
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SIMD128 in wasm, NEON on aarch64.
        4
    }
}

/// How many threads one GEMM may use; 1 inside work that is already spread over the threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    One,
    All,
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`. `dst` is row-major
/// `lhs.rows × rhs.cols`.
pub fn gemm(dst: &mut [f32], accumulate: bool, lhs: MatRef, rhs: MatRef, threads: Threads) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    FLOPS.fetch_add(2 * (m * n * k) as u64, Ordering::Relaxed);
    assert_eq!(rhs.rows, k, "gemm: inner dimensions differ");
    assert_eq!(dst.len(), m * n, "gemm: destination is not {m}×{n}");
    lhs.assert_in_bounds("lhs");
    rhs.assert_in_bounds("rhs");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    // SAFETY: every index the call touches was checked above: dst is exactly m×n row-major,
    // lhs and rhs reach at most their last (row, col) element, which is within their slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(threads),
        );
    }
}

#[cfg(threads)]
fn parallelism(threads: Threads) -> gemm::Parallelism {
    match threads {
        Threads::One => gemm::Parallelism::None,
        Threads::All => gemm::Parallelism::Rayon(0),
    }
}

#[cfg(not(threads))]
fn parallelism(_: Threads) -> gemm::Parallelism {
    gemm::Parallelism::None
}
