//! Checkpoint → `www/weights/`: the burnpack bytes and their manifest, written so that a reader
//! never sees a manifest that does not match the weights beside it.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;

use super::checkpoint::Checkpoint;
use crate::model::UNet;
use crate::weights::{self, MANIFEST_FILE, Manifest, StoredDType, WeightsError};

#[derive(Debug)]
pub enum ExportError {
    Checkpoint(super::checkpoint::CheckpointError),
    Weights(WeightsError),
    Io(PathBuf, std::io::Error),
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Checkpoint(e) => write!(f, "{e}"),
            Self::Weights(e) => write!(f, "{e}"),
            Self::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for ExportError {}

/// Writes the EMA (or raw) weights of `checkpoint`, stored as `dtype`, and their manifest into
/// `out_dir`.
pub fn export(
    checkpoint: &Checkpoint,
    out_dir: &Path,
    ema: bool,
    dtype: StoredDType,
) -> Result<Manifest, ExportError> {
    let config = &checkpoint.state.config;
    let trained = if ema {
        &checkpoint.ema
    } else {
        &checkpoint.model
    };
    // Load once: checks the bytes fit the config and counts the parameters.
    let model = weights::model_from_bytes(&config.model, trained, &Device::flex())
        .map_err(ExportError::Weights)?;
    let bytes = weights::model_to_bytes_as(&model, dtype).map_err(ExportError::Weights)?;
    let manifest = weights::manifest_for(
        &config.model,
        config.schedule,
        model.num_params(),
        checkpoint.state.step,
        ema,
        &bytes,
        dtype,
    );
    write_weights(&manifest, &bytes, out_dir)?;
    Ok(manifest)
}

/// Stores the exported weights in `dir` again as `dtype` into `out_dir` (which may be `dir`),
/// with the same model, schedule and training steps.
pub fn reexport(dir: &Path, out_dir: &Path, dtype: StoredDType) -> Result<Manifest, ExportError> {
    let (manifest, model) = load_exported(dir, &Device::flex())?;
    let bytes = weights::model_to_bytes_as(&model, dtype).map_err(ExportError::Weights)?;
    let manifest = weights::manifest_for(
        &manifest.model,
        manifest.schedule,
        manifest.parameters,
        manifest.training_steps,
        manifest.ema,
        &bytes,
        dtype,
    );
    write_weights(&manifest, &bytes, out_dir)?;
    Ok(manifest)
}

/// Writes `bytes` and `manifest` into `out_dir`, each through a temporary file and a rename.
pub fn write_weights(manifest: &Manifest, bytes: &[u8], out_dir: &Path) -> Result<(), ExportError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| ExportError::Io(p, e)
    };
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let json = serde_json::to_string_pretty(manifest).expect("a manifest serialises");
    for (name, content) in [
        (manifest.weights.file.as_str(), bytes),
        (MANIFEST_FILE, json.as_bytes()),
    ] {
        let path = out_dir.join(name);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, content).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
    }
    Ok(())
}

/// Reads `manifest.json` and the weights beside it, checks them, and builds the model.
pub fn load_exported(dir: &Path, device: &Device) -> Result<(Manifest, UNet), ExportError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let json = std::fs::read_to_string(&manifest_path)
        .map_err(|e| ExportError::Io(manifest_path.clone(), e))?;
    let manifest = weights::parse_manifest(&json).map_err(ExportError::Weights)?;
    let weights_path = dir.join(&manifest.weights.file);
    let bytes = std::fs::read(&weights_path).map_err(|e| ExportError::Io(weights_path, e))?;
    let model = weights::load_model(&manifest, &bytes, device).map_err(ExportError::Weights)?;
    Ok((manifest, model))
}
