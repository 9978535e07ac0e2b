//! The evaluation statistics against closed forms.

use gendi::native::eval::{
    FeatureStats, frechet_distance, histogram, kl_from_uniform, mean_and_standard_error,
    symmetric_eigen,
};

fn stats(mean: Vec<f64>, cov: Vec<f64>) -> FeatureStats {
    FeatureStats {
        dim: mean.len(),
        mean,
        cov,
    }
}

#[test]
fn frechet_distance_of_a_distribution_to_itself_is_zero() {
    let a = stats(
        vec![0.5, -1.0, 2.0],
        vec![2.0, 0.3, 0.1, 0.3, 1.0, -0.2, 0.1, -0.2, 0.5],
    );
    assert!(frechet_distance(&a, &a).abs() < 1e-9);
}

#[test]
fn frechet_distance_matches_the_closed_form_for_diagonal_covariances() {
    // Diagonal: Σ_i (μ1−μ2)² + σ1² + σ2² − 2σ1σ2 = Σ_i (μ1−μ2)² + (σ1 − σ2)².
    let a = stats(vec![0.0, 1.0], vec![4.0, 0.0, 0.0, 1.0]);
    let b = stats(vec![1.0, 1.0], vec![1.0, 0.0, 0.0, 9.0]);
    let expected = 1.0 + (2.0f64 - 1.0).powi(2) + (1.0f64 - 3.0).powi(2);
    assert!((frechet_distance(&a, &b) - expected).abs() < 1e-9);
}

#[test]
fn jacobi_eigenvectors_reconstruct_the_matrix() {
    let m = vec![4.0, 1.0, 0.5, 1.0, 3.0, -0.25, 0.5, -0.25, 1.0];
    let (values, vectors) = symmetric_eigen(&m, 3);
    for i in 0..3 {
        for j in 0..3 {
            let r: f64 = (0..3)
                .map(|k| vectors[i * 3 + k] * values[k] * vectors[j * 3 + k])
                .sum();
            assert!((r - m[i * 3 + j]).abs() < 1e-10);
        }
    }
    assert!(
        (values.iter().sum::<f64>() - 8.0).abs() < 1e-10,
        "trace is preserved"
    );
}

#[test]
fn sample_covariance_is_unbiased() {
    let features = vec![1.0, 2.0, 3.0, 4.0, 5.0, 7.0];
    let s = FeatureStats::new(&features, 2);
    assert!((s.mean[0] - 3.0).abs() < 1e-12 && (s.mean[1] - 13.0 / 3.0).abs() < 1e-12);
    assert!((s.cov[0] - 4.0).abs() < 1e-12); // var(1, 3, 5) with n − 1
}

#[test]
fn kl_from_uniform_is_zero_when_balanced_and_log10_when_collapsed() {
    assert!(kl_from_uniform(&[7; 10]).abs() < 1e-12);
    let collapsed = histogram(&[3; 50]);
    assert!((kl_from_uniform(&collapsed) - 10f64.ln()).abs() < 1e-12);
}

#[test]
fn standard_error_is_the_sample_deviation_over_root_n() {
    // 0.9, 0.7, 0.5, 0.3: mean 0.6, sample variance 0.2 / 3, so s.e. = √(0.2 / 3 / 4).
    let (mean, se) = mean_and_standard_error(&[0.9, 0.7, 0.5, 0.3]);
    assert!((mean - 0.6).abs() < 1e-12);
    assert!((se - (0.2f64 / 12.0).sqrt()).abs() < 1e-12);
    assert_eq!(mean_and_standard_error(&[0.8]), (0.8, 0.0));
}
