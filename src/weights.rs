//! The shipped weight format: the U-Net's parameters as burnpack bytes (burn's own format) and a
//! `manifest.json` that says what they are. The page and the CLI both load through
//! [`load_model`], which checks everything before it builds the network.

use burn::module::{Module, ModuleMapper, Param};
use burn::store::{BurnpackStore, ModuleRecord, ModuleStore};
use burn::tensor::quantization::{QuantMode, QuantScheme, QuantValue, ScaleDtype};
use burn::tensor::{Bytes, DType, Device, FloatDType, Tensor};
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
    /// 8-bit integers with one f32 scale per row (per output channel of a convolution),
    /// symmetric, in burn's quantized format (Q8F, per-block scales); vectors (biases, norms) in
    /// f16. A quarter of the f32 download.
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
        }
    }
}

impl std::error::Error for WeightsError {}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
    if bytes.len() != manifest.weights.bytes {
        return Err(WeightsError::Length {
            expected: manifest.weights.bytes,
            actual: bytes.len(),
        });
    }
    let actual = sha256_hex(bytes);
    if actual != manifest.weights.sha256 {
        return Err(WeightsError::Checksum {
            expected: manifest.weights.sha256.clone(),
            actual,
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
    verify_weights(manifest, bytes)?;
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
/// Stored f16 parameters are widened to the network's f32 as they load; 8-bit ones are loaded
/// on the CPU, dequantized there and moved to `device`.
pub fn model_from_bytes(
    config: &UNetConfig,
    bytes: &[u8],
    device: &Device,
) -> Result<UNet, WeightsError> {
    let record_error = |e: &dyn std::fmt::Display| WeightsError::Record(e.to_string());
    let quantized = stored_quantized(bytes)?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| record_error(&e))?;
    if !quantized {
        return config
            .init(device)
            .try_load_record(record.cast_to_module_dtype())
            .map_err(|e| record_error(&e));
    }
    let model = config
        .init(&Device::flex())
        .try_load_record(record)
        .map_err(|e| record_error(&e))?
        .map(&mut Widen);
    Ok(model.to_device(device))
}

/// Whether any parameter in the burnpack `bytes` is 8-bit; refuses every storage type but f32,
/// f16 and GENDI's 8-bit scheme before burn sees the tensors (it panics on some).
fn stored_quantized(bytes: &[u8]) -> Result<bool, WeightsError> {
    let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes.to_vec())));
    let tensors = store
        .get_all_tensors()
        .map_err(|e| WeightsError::Record(e.to_string()))?;
    let mut quantized = false;
    for (name, tensor) in tensors {
        let values: usize = tensor.shape.iter().product();
        let expected = match tensor.dtype {
            DType::F32 => values * 4,
            DType::F16 => values * 2,
            DType::QFloat(scheme) if is_int8_scheme(&scheme, &tensor.shape) => {
                quantized = true;
                // Four 8-bit values per u32, then one f32 scale per block.
                let blocks: usize = scheme
                    .block_size()
                    .map_or(1, |block| block.num_blocks(&tensor.shape).iter().product());
                values.div_ceil(4) * 4 + blocks * 4
            }
            other => {
                return Err(WeightsError::Record(format!(
                    "{name} is stored as {other:?}; GENDI reads f32, f16 and 8-bit weights \
                     (Q8F, symmetric, f32 scales per row)"
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
    Ok(quantized)
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

/// Stores matrices and kernels as GENDI's 8-bit scheme; vectors, and the kernels with one image
/// channel in or out (the first and last convolutions, whose rounding reaches every feature or
/// the prediction itself, for 2 × 288 values), as f16.
struct Quantize;

impl ModuleMapper for Quantize {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|tensor| {
            let dims = tensor.dims();
            if D < 2 || (D == 4 && (dims[0] == 1 || dims[1] == 1)) {
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
            DType::QFloat(_) => tensor.dequantize(),
            _ => tensor.cast(FloatDType::F32),
        })
    }
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
        StoredDType::Int8 => model.clone().map(&mut Quantize),
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
        StoredDType::Int8 => model.clone().map(&mut Quantize).map(&mut Widen),
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
