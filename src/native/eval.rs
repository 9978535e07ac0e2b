//! The numbers `gendi eval` reports: Fréchet distance on classifier features, the classifier's
//! confidence, the predicted-class histogram and its KL divergence from uniform.

use serde::Serialize;

use super::classifier::Scores;

/// Mean and covariance of a set of feature vectors.
pub struct FeatureStats {
    pub dim: usize,
    pub mean: Vec<f64>,
    /// dim × dim, row-major.
    pub cov: Vec<f64>,
}

impl FeatureStats {
    /// Rows of `features` are samples of length `dim`; the covariance is unbiased (n − 1).
    pub fn new(features: &[f64], dim: usize) -> Self {
        let n = features.len() / dim;
        assert!(n >= 2, "feature statistics need at least two samples");
        let mut mean = vec![0.0; dim];
        for row in features.chunks(dim) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v / n as f64;
            }
        }
        let mut cov = vec![0.0; dim * dim];
        for row in features.chunks(dim) {
            for i in 0..dim {
                let di = row[i] - mean[i];
                for j in i..dim {
                    cov[i * dim + j] += di * (row[j] - mean[j]);
                }
            }
        }
        for i in 0..dim {
            for j in i..dim {
                let v = cov[i * dim + j] / (n - 1) as f64;
                cov[i * dim + j] = v;
                cov[j * dim + i] = v;
            }
        }
        Self { dim, mean, cov }
    }
}

/// d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½) (Heusel et al. 2017), with Tr((Σ₁Σ₂)^½)
/// computed as Σ √λ of the symmetric Σ₁^½ Σ₂ Σ₁^½.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> f64 {
    let n = a.dim;
    let mean_term: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y).powi(2))
        .sum();
    let trace = |m: &[f64]| (0..n).map(|i| m[i * n + i]).sum::<f64>();
    let (values, vectors) = symmetric_eigen(&a.cov, n);
    // Σ₁^½ = V diag(√λ) Vᵀ
    let mut sqrt_a = vec![0.0; n * n];
    for k in 0..n {
        let s = values[k].max(0.0).sqrt();
        for i in 0..n {
            for j in 0..n {
                sqrt_a[i * n + j] += vectors[i * n + k] * s * vectors[j * n + k];
            }
        }
    }
    let product = matmul(&matmul(&sqrt_a, &b.cov, n), &sqrt_a, n);
    let (product_values, _) = symmetric_eigen(&product, n);
    let trace_sqrt: f64 = product_values.iter().map(|v| v.max(0.0).sqrt()).sum();
    mean_term + trace(&a.cov) + trace(&b.cov) - 2.0 * trace_sqrt
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for j in 0..n {
                out[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    out
}

/// Eigenvalues and eigenvectors (columns of the returned row-major matrix) of a symmetric
/// matrix, by cyclic Jacobi rotations.
pub fn symmetric_eigen(matrix: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = matrix.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().max(1e-300);
        if off <= 1e-22 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let apk = a[p * n + k];
                    let aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// How many predictions fall in each class.
pub fn histogram(predictions: &[usize]) -> [usize; 10] {
    let mut counts = [0; 10];
    for &p in predictions {
        counts[p.min(9)] += 1;
    }
    counts
}

/// KL(p ‖ uniform) = Σ p log(10 p), in nats; 0 for a perfectly balanced histogram.
pub fn kl_from_uniform(counts: &[usize; 10]) -> f64 {
    let total: usize = counts.iter().sum();
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total as f64;
            p * (10.0 * p).ln()
        })
        .sum()
}

/// The scores of one set of images against the test set's features.
#[derive(Debug, Serialize)]
pub struct SetReport {
    pub images: usize,
    pub frechet_distance: f64,
    pub mean_confidence: f64,
    /// Standard error of that mean (sample standard deviation / √n): how far another seed's
    /// 1000 images may move it.
    pub confidence_standard_error: f64,
    pub class_histogram: [usize; 10],
    pub class_fractions: Vec<f64>,
    pub kl_from_uniform: f64,
    /// Fraction classified as the digit asked for (per-digit generation), or as their label (real).
    pub label_accuracy: Option<f64>,
}

impl SetReport {
    pub fn new(scores: &Scores, reference: &FeatureStats, labels: Option<&[usize]>) -> Self {
        let stats = FeatureStats::new(&scores.features, reference.dim);
        let counts = histogram(&scores.predictions);
        let n = scores.predictions.len();
        let (mean_confidence, confidence_standard_error) =
            mean_and_standard_error(&scores.confidences);
        Self {
            images: n,
            frechet_distance: frechet_distance(&stats, reference),
            mean_confidence,
            confidence_standard_error,
            class_histogram: counts,
            class_fractions: counts.iter().map(|&c| c as f64 / n as f64).collect(),
            kl_from_uniform: kl_from_uniform(&counts),
            label_accuracy: labels.map(|labels| accuracy(&scores.predictions, labels)),
        }
    }
}

/// The mean of `xs` and its standard error, sd / √n with the n − 1 sample variance (0 for n < 2).
pub fn mean_and_standard_error(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n.max(1.0);
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let variance = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (variance / n).sqrt())
}

pub fn accuracy(predictions: &[usize], labels: &[usize]) -> f64 {
    let right = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    right as f64 / labels.len().max(1) as f64
}
