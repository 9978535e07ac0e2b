//! The shipped weight format: the U-Net's parameters as burnpack bytes (burn's own format) and a
//! `manifest.json` that says what they are. The page and the CLI both load through
//! [`load_model`], which checks everything before it builds the network.

use burn::module::{Module, ModuleMapper, Param};
use burn::store::{BurnpackStore, ModuleRecord, ModuleStore};
use burn::tensor::quantization::{QuantMode, QuantScheme, QuantValue, QuantizedBytes, ScaleDtype};
use burn::tensor::{Bytes, DType, Device, FloatDType, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{UNet, UNetConfig};
use crate::schedule::ScheduleConfig;

/// Bumped whenever the manifest or the parameter layout changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const WEIGHTS_FILE: &str = "gendi.bpk";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub model: UNetConfig,
    pub schedule: ScheduleConfig,
    pub parameters: usize,
    /// Optimiser steps the weights were trained for.
    pub training_steps: u64,
    /// Whether these are the exponential moving average of the trained weights.
    pub ema: bool,
    pub weights: WeightsFile,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsFile {
    /// Path relative to the manifest.
    pub file: String,
    pub bytes: usize,
    pub sha256: String,
    /// How the parameters are stored; they are computed with in f32 either way.
    #[serde(default)]
    pub dtype: StoredDType,
}

/// The precision of the stored parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredDType {
    #[default]
    F32,
    /// Half precision: half the download, outputs within ~1e-3 of the f32 weights.
    F16,
    /// 8-bit integers with one f32 scale per block of a row (a whole row, one output channel's
    /// kernel, when GENDI writes them), symmetric, in burn's quantized format (Q8F, per-block
    /// scales); vectors, embeddings and the full-resolution layers in f16. About half the f16
    /// download.
    Int8,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WeightsError {
    Manifest(String),
    UnsupportedVersion(u32),
    UnsupportedModel(String),
    Length {
        expected: usize,
        actual: usize,
    },
    Checksum {
        expected: String,
        actual: String,
    },
    /// The bytes are not burnpack, or do not fit the network the manifest describes.
    Record(String),
    ParameterCount {
        manifest: usize,
        model: usize,
    },
    /// Autoguidance weights of another noise schedule or image shape (see [`check_guide`]).
    Guide,
}

impl std::fmt::Display for WeightsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Manifest(m) => write!(f, "the weights' manifest is not valid: {m}"),
            Self::UnsupportedVersion(v) => write!(
                f,
                "the weights are format version {v}, this build of GENDI reads version {FORMAT_VERSION}: re-export them with this build"
            ),
            Self::UnsupportedModel(m) => write!(
                f,
                "the manifest describes a model this build cannot run: {m}"
            ),
            Self::Length { expected, actual } => write!(
                f,
                "the weights file is {actual} bytes, the manifest says {expected}: it is truncated or from another export"
            ),
            Self::Checksum { expected, actual } => write!(
                f,
                "the weights file is corrupted: SHA-256 {actual}, the manifest says {expected}"
            ),
            Self::Record(m) => write!(f, "the weights do not fit the model in the manifest: {m}"),
            Self::ParameterCount { manifest, model } => write!(
                f,
                "the manifest says {manifest} parameters, the model it describes has {model}"
            ),
            Self::Guide => write!(
                f,
                "these weights cannot guide this model: their noise schedule, objective or image \
                 size differs; a guide is a worse model of the same images and noise (an earlier \
                 step of its run, or a smaller network)"
            ),
        }
    }
}

impl std::error::Error for WeightsError {}

/// Whether the weights of `guide` can guide a model of this network and noise schedule in
/// autoguidance ([`crate::pipeline::Autoguide`]): a guide predicts the same quantity for the same
/// noisy images (the schedule, its objective included, and the image shape), and is otherwise
/// any worse model of them: an earlier step of the same run, or a smaller network trained for
/// less time, which Karras et al. (2024) found the better guide. (Loaded manifests are all
/// 28×28×1, [`parse_manifest`] sees to that; the image check is for manifests built otherwise.)
pub fn check_guide(
    model: &UNetConfig,
    schedule: &ScheduleConfig,
    guide: &Manifest,
) -> Result<(), WeightsError> {
    let same_images = guide.model.image_size == model.image_size
        && guide.model.image_channels == model.image_channels;
    if guide.schedule != *schedule || !same_images {
        return Err(WeightsError::Guide);
    }
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    lowercase_hex(&Sha256::digest(bytes))
}

/// Bytes as two lowercase hex digits each, as manifests write digests.
pub fn lowercase_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a manifest and checks that this build can use it.
pub fn parse_manifest(json: &str) -> Result<Manifest, WeightsError> {
    // Read the version first, so an old or new manifest gets a version error, not a field error.
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| WeightsError::Manifest(e.to_string()))?;
    let version = value
        .get("format_version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| WeightsError::Manifest("no format_version".into()))?;
    if version != FORMAT_VERSION as u64 {
        return Err(WeightsError::UnsupportedVersion(version as u32));
    }
    let manifest: Manifest =
        serde_json::from_value(value).map_err(|e| WeightsError::Manifest(e.to_string()))?;
    manifest
        .model
        .validate()
        .map_err(WeightsError::UnsupportedModel)?;
    if manifest.model.image_size != crate::data::IMAGE_SIDE || manifest.model.image_channels != 1 {
        return Err(WeightsError::UnsupportedModel(format!(
            "{}×{}×{} images; GENDI draws 28×28×1 MNIST digits",
            manifest.model.image_channels, manifest.model.image_size, manifest.model.image_size
        )));
    }
    manifest
        .schedule
        .validate()
        .map_err(WeightsError::UnsupportedModel)?;
    // validate() bounded the count, so it exists; compare before anything is built or fetched.
    let model = manifest.model.parameter_count().unwrap_or(usize::MAX);
    if model != manifest.parameters {
        return Err(WeightsError::ParameterCount {
            manifest: manifest.parameters,
            model,
        });
    }
    // Bounded before anyone downloads it: 4 bytes a parameter at most, plus burnpack's header.
    let most = model.saturating_mul(4).saturating_add(1 << 20);
    if manifest.weights.bytes > most {
        return Err(WeightsError::Manifest(format!(
            "weights.bytes is {}, allowed at most {most} for {model} parameters",
            manifest.weights.bytes
        )));
    }
    Ok(manifest)
}

/// Checks the byte length and SHA-256 of `bytes` against the manifest.
pub fn verify_weights(manifest: &Manifest, bytes: &[u8]) -> Result<(), WeightsError> {
    verify_with_digest(manifest, bytes, sha256_hex(bytes))
}

/// [`verify_weights`] given the SHA-256 of `bytes` (lowercase hex), computed elsewhere.
fn verify_with_digest(
    manifest: &Manifest,
    bytes: &[u8],
    sha256: String,
) -> Result<(), WeightsError> {
    if bytes.len() != manifest.weights.bytes {
        return Err(WeightsError::Length {
            expected: manifest.weights.bytes,
            actual: bytes.len(),
        });
    }
    if sha256 != manifest.weights.sha256 {
        return Err(WeightsError::Checksum {
            expected: manifest.weights.sha256.clone(),
            actual: sha256,
        });
    }
    Ok(())
}

/// Verifies `bytes` against the manifest, builds the network it describes on `device` and
/// loads the parameters into it.
pub fn load_model(
    manifest: &Manifest,
    bytes: &[u8],
    device: &Device,
) -> Result<UNet, WeightsError> {
    load_model_with_digest(manifest, bytes, sha256_hex(bytes), device)
}

/// [`load_model`] given the SHA-256 of `bytes` (lowercase hex), computed elsewhere: the page
/// has the browser's own (WebCrypto), which takes a few milliseconds where GENDI's took ~40.
pub fn load_model_with_digest(
    manifest: &Manifest,
    bytes: &[u8],
    sha256: String,
    device: &Device,
) -> Result<UNet, WeightsError> {
    verify_with_digest(manifest, bytes, sha256)?;
    let model = model_from_bytes(&manifest.model, bytes, device)?;
    let count = model.num_params();
    if count != manifest.parameters {
        return Err(WeightsError::ParameterCount {
            manifest: manifest.parameters,
            model: count,
        });
    }
    Ok(model)
}

/// Builds the network of `config` and loads burnpack `bytes` into it, with no manifest checks.
/// The parameters load on the CPU as stored, are widened to the network's f32 there (8-bit ones
/// dequantized), then move to `device` (tracked for gradients if it is an autodiff device).
/// Loaded as stored, the network's initial parameters are never drawn: asking burn to cast to
/// the module's dtype instead reads each initial parameter first, and drawing them took most of
/// the page's load time in wasm.
pub fn model_from_bytes(
    config: &UNetConfig,
    bytes: &[u8],
    device: &Device,
) -> Result<UNet, WeightsError> {
    check_stored_dtypes(bytes)?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| WeightsError::Record(e.to_string()))?;
    let model = config
        .init(&Device::flex())
        .try_load_record(record)
        .map_err(|e| WeightsError::Record(e.to_string()))?
        .map(&mut Widen)
        .to_device(device);
    // Moved onto an autodiff device (training resumed from a checkpoint), the parameters are
    // tracked again, as a network built there would have them.
    Ok(if device.is_autodiff() {
        model.map(&mut Track)
    } else {
        model
    })
}

/// Every parameter tracked for gradients.
struct Track;

impl ModuleMapper for Track {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|tensor| tensor.autodiff().require_grad())
    }
}

/// Refuses every storage type but f32, f16 and GENDI's 8-bit scheme before burn sees the
/// tensors (it panics on some), and any tensor whose byte length does not fit its shape.
fn check_stored_dtypes(bytes: &[u8]) -> Result<(), WeightsError> {
    let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes.to_vec())));
    let tensors = store
        .get_all_tensors()
        .map_err(|e| WeightsError::Record(e.to_string()))?;
    for (name, tensor) in tensors {
        let values: usize = tensor.shape.iter().product();
        let expected = match tensor.dtype {
            DType::F32 => values * 4,
            DType::F16 => values * 2,
            DType::QFloat(scheme) if is_int8_scheme(&scheme, &tensor.shape) => {
                // Four 8-bit values per u32, then one f32 scale per block.
                let blocks: usize = scheme
                    .block_size()
                    .map_or(1, |block| block.num_blocks(&tensor.shape).iter().product());
                values.div_ceil(4) * 4 + blocks * 4
            }
            other => {
                return Err(WeightsError::Record(format!(
                    "{name} is stored as {other:?}; GENDI reads f32, f16 and 8-bit weights \
                     (Q8F, symmetric, f32 scales per block of a row)"
                )));
            }
        };
        if tensor.byte_len() != expected {
            return Err(WeightsError::Record(format!(
                "{name} holds {} bytes, its shape {:?} and type {:?} take {expected}",
                tensor.byte_len(),
                tensor.shape.as_slice(),
                tensor.dtype
            )));
        }
    }
    Ok(())
}

/// GENDI's 8-bit scheme for a parameter of `shape`: Q8F, symmetric, f32 scales per block of
/// the trailing dimensions, blocks that tile the shape exactly.
fn is_int8_scheme(scheme: &QuantScheme, shape: &[usize]) -> bool {
    let Some(block) = scheme.block_size() else {
        return false;
    };
    let block = block.as_slice();
    scheme.value == QuantValue::Q8F
        && scheme.mode == QuantMode::Symmetric
        && scheme.scale_dtype() == ScaleDtype::F32
        && scheme.tensor_scale().is_none()
        && !block.is_empty()
        && block.len() < shape.len()
        && block
            .iter()
            .zip(&shape[shape.len() - block.len()..])
            .all(|(&b, &d)| b > 0 && d % b as usize == 0)
}

/// The block of one 8-bit scale for a parameter of shape `dims` (rank ≥ 2): a whole row (the
/// trailing dimensions), each dimension cut to its largest divisor that fits burn's u8 block
/// sizes.
fn int8_block(dims: &[usize]) -> Vec<u8> {
    dims[1..]
        .iter()
        .map(|&d| (1..=d.min(255)).rev().find(|b| d % b == 0).unwrap_or(1) as u8)
        .collect()
}

/// Stores matrices and kernels as GENDI's 8-bit scheme, except where 8 bits cost the most
/// quality for the least size, which stays f16:
/// - vectors (biases, norms);
/// - the modules at full resolution ([`UNet::full_resolution_modules`], 7% of the parameters
///   of the shipped model): rounded alone, the last block's skip convolution (2,048 values)
///   moved sampled digits 0.040 RMS, against 0.049–0.059 for every layer rounded at once;
/// - embedding tables, whose rows go into the network as they are.
struct Quantize {
    full_resolution: Vec<String>,
    /// The module path down to the parameter being mapped, and each module's type.
    path: Vec<(String, String)>,
}

impl Quantize {
    fn for_model(model: &UNet) -> Self {
        Self {
            full_resolution: model.full_resolution_modules(),
            path: Vec::new(),
        }
    }

    fn keeps_f16(&self, dims: &[usize]) -> bool {
        let path = self
            .path
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(".");
        dims.len() < 2
            || self
                .path
                .iter()
                .any(|(_, kind)| kind.ends_with(":Embedding"))
            || self
                .full_resolution
                .iter()
                .any(|module| path == *module || path.starts_with(&format!("{module}.")))
    }
}

impl ModuleMapper for Quantize {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|tensor| {
            let dims = tensor.dims();
            if self.keeps_f16(&dims) {
                return tensor.cast(FloatDType::F16);
            }
            let scheme = QuantScheme::default()
                .with_value(QuantValue::Q8F)
                .with_mode(QuantMode::Symmetric)
                .per_block(int8_block(&dims), ScaleDtype::F32);
            tensor.quantize_dynamic(&scheme)
        })
    }
}

/// Every parameter back to f32: dequantized where it is 8-bit, widened where it is f16.
struct Widen;

impl ModuleMapper for Widen {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|tensor| match tensor.dtype() {
            DType::QFloat(scheme) => match block_run(&scheme, &tensor.dims()) {
                Some(run) => dequantized(tensor, run),
                None => tensor.dequantize(),
            },
            _ => tensor.cast(FloatDType::F32),
        })
    }
}

/// The length of one block of an 8-bit `scheme` over `shape` when every block is one run of
/// consecutive values (its extent equals the shape's in every dimension but its first), as
/// GENDI's blocks are.
fn block_run(scheme: &QuantScheme, shape: &[usize]) -> Option<usize> {
    let block = scheme.block_size()?;
    let block = block.as_slice();
    let trailing = &shape[shape.len().checked_sub(block.len())?..];
    let runs = block[1..]
        .iter()
        .zip(&trailing[1..])
        .all(|(&b, &d)| b as usize == d);
    runs.then(|| block.iter().map(|&b| b as usize).product())
}

/// An 8-bit tensor whose blocks are runs of `run` values, widened to f32: each value times its
/// block's scale, in one pass. burn's general `dequantize` finds every value's block by a
/// division per dimension, which took most of the page's load time for 8-bit weights in wasm.
fn dequantized<const D: usize>(tensor: Tensor<D>, run: usize) -> Tensor<D> {
    let device = tensor.device();
    let (bytes, shape, dtype) = tensor.into_data().into_parts();
    let DType::QFloat(scheme) = dtype else {
        unreachable!("called on 8-bit tensors only")
    };
    let (values, scales) = QuantizedBytes {
        bytes,
        scheme,
        shape: shape.clone(),
    }
    .into_vec_i8();
    let widened: Vec<f32> = values
        .chunks(run)
        .zip(&scales.block)
        .flat_map(|(block, &scale)| {
            let scale = scale * scales.global.unwrap_or(1.0);
            block.iter().map(move |&q| q as f32 * scale)
        })
        .collect();
    Tensor::from_data(TensorData::new(widened, shape), &device)
}

/// The parameters of `model` as burnpack bytes, in f32.
pub fn model_to_bytes(model: &UNet) -> Result<Vec<u8>, WeightsError> {
    model_to_bytes_as(model, StoredDType::F32)
}

/// The parameters of `model` as burnpack bytes in the given precision.
pub fn model_to_bytes_as(model: &UNet, dtype: StoredDType) -> Result<Vec<u8>, WeightsError> {
    let model = match dtype {
        StoredDType::F32 => model.clone(),
        StoredDType::F16 => model.clone().map(&mut CastParams(FloatDType::F16)),
        StoredDType::Int8 => model.clone().map(&mut Quantize::for_model(model)),
    };
    let bytes = model
        .into_record()
        .into_bytes()
        .map_err(|e| WeightsError::Record(e.to_string()))?;
    Ok(bytes.to_vec())
}

/// The model as it computes after a trip through `dtype` storage (f16 rounding, back in f32).
pub fn rounded_to(model: &UNet, dtype: StoredDType) -> UNet {
    match dtype {
        StoredDType::F32 => model.clone(),
        StoredDType::F16 => model
            .clone()
            .map(&mut CastParams(FloatDType::F16))
            .map(&mut CastParams(FloatDType::F32)),
        StoredDType::Int8 => model
            .clone()
            .map(&mut Quantize::for_model(model))
            .map(&mut Widen),
    }
}

/// Casts every float parameter.
struct CastParams(FloatDType);

impl ModuleMapper for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dtype = self.0;
        param.map(|tensor| tensor.cast(dtype))
    }
}

/// The manifest for `weights`, the burnpack bytes (stored as `dtype`) of a model built from `model`.
pub fn manifest_for(
    model: &UNetConfig,
    schedule: ScheduleConfig,
    parameters: usize,
    training_steps: u64,
    ema: bool,
    weights: &[u8],
    dtype: StoredDType,
) -> Manifest {
    Manifest {
        format_version: FORMAT_VERSION,
        model: model.clone(),
        schedule,
        parameters,
        training_steps,
        ema,
        weights: WeightsFile {
            file: WEIGHTS_FILE.into(),
            bytes: weights.len(),
            sha256: sha256_hex(weights),
            dtype,
        },
    }
}
