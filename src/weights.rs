//! The shipped weight format: the U-Net's parameters as burnpack bytes (burn's own format) and a
//! `manifest.json` that says what they are. The page and the CLI both load through
//! [`load_model`], which checks everything before it builds the network.

use burn::module::{Module, ModuleMapper, Param};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, FloatDType, Tensor};
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
/// Stored f16 parameters are widened to the network's f32 as they load.
pub fn model_from_bytes(
    config: &UNetConfig,
    bytes: &[u8],
    device: &Device,
) -> Result<UNet, WeightsError> {
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| WeightsError::Record(e.to_string()))?
        .cast_to_module_dtype();
    config
        .init(device)
        .try_load_record(record)
        .map_err(|e| WeightsError::Record(e.to_string()))
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
