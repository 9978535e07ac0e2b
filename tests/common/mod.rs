//! Helpers shared by the integration tests.
#![allow(dead_code)]

use burn::tensor::{Device, Tensor, TensorData};

pub fn device() -> Device {
    Device::flex()
}

pub fn filled(value: f32, shape: [usize; 4]) -> Tensor<4> {
    let count = shape.iter().product();
    Tensor::from_data(TensorData::new(vec![value; count], shape), &device())
}

pub fn values(tensor: Tensor<4>) -> Vec<f32> {
    tensor.into_data().try_to_vec::<f32>().expect("f32 tensor")
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A fresh directory for one test's files, `gendi-{name}-XXXXXX` in the system's temp
/// directory, removed with everything in it when the guard drops: when the test ends, passed or
/// failed (a failing test says in its message what went wrong; the files would only pile up).
pub fn scratch_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("gendi-{name}-"))
        .tempdir()
        .expect("a scratch directory in the system's temp directory")
}

/// A path `leaf` that does not exist yet, inside a fresh [`scratch_dir`] named after `name`: for
/// what creates its own directory (a training run, exported weights). Keep the guard: dropping it
/// removes both.
pub fn unmade_dir(name: &str, leaf: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let scratch = scratch_dir(name);
    let dir = scratch.path().join(leaf);
    (scratch, dir)
}

/// The MNIST directory the tests read: `$GENDI_DATA` or `data/mnist`. Fails with the fix if absent.
pub fn mnist_dir() -> std::path::PathBuf {
    let dir = gendi::data::default_data_dir();
    assert!(
        dir.join("train-images-idx3-ubyte").exists(),
        "MNIST is not in {}: run `cargo run --release -- data` (or ./build.sh setup) first",
        dir.display()
    );
    dir
}

/// The shipped `www/weights/manifest.json`, as text.
pub fn shipped_manifest() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/www/weights/manifest.json"
    ))
    .expect("the shipped manifest is in www/weights/")
}
