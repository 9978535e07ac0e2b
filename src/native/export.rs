//! Checkpoint → `www/weights/`: the burnpack bytes and their manifest, written so that a reader
//! never sees a manifest that does not match the weights beside it.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;

use super::checkpoint::Checkpoint;
use super::params;
use crate::model::UNet;
use crate::weights::{self, MANIFEST_FILE, Manifest, StoredDType, WeightsError};

#[derive(Debug)]
pub enum ExportError {
    Checkpoint(super::checkpoint::CheckpointError),
    Weights(WeightsError),
    Io(PathBuf, std::io::Error),
    NoCheckpoint,
    /// Checkpoints of different models or schedules, which cannot be averaged.
    Mismatch {
        step: u64,
        latest: u64,
    },
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Checkpoint(e) => write!(f, "{e}"),
            Self::Weights(e) => write!(f, "{e}"),
            Self::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Self::NoCheckpoint => write!(f, "no checkpoint to export"),
            Self::Mismatch { step, latest } => write!(
                f,
                "the checkpoint of step {step} has another model or schedule than that of step \
                 {latest}: only checkpoints of one run can be averaged"
            ),
        }
    }
}

impl std::error::Error for ExportError {}

/// Writes the EMA (or raw) weights of `checkpoints`, stored as `dtype`, and their manifest into
/// `out_dir`. Several checkpoints of one run (e.g. copies kept every few thousand steps) are
/// averaged parameter by parameter, a longer average than the EMA alone; the manifest names the
/// latest step among them.
pub fn export(
    checkpoints: &[Checkpoint],
    out_dir: &Path,
    ema: bool,
    dtype: StoredDType,
) -> Result<Manifest, ExportError> {
    let latest = checkpoints
        .iter()
        .max_by_key(|c| c.state.step)
        .ok_or(ExportError::NoCheckpoint)?;
    let config = &latest.state.config;
    if let Some(other) = checkpoints.iter().find(|c| {
        c.state.config.model != config.model || c.state.config.schedule != config.schedule
    }) {
        return Err(ExportError::Mismatch {
            step: other.state.step,
            latest: latest.state.step,
        });
    }
    // Load each once: checks the bytes fit the config.
    let models = checkpoints
        .iter()
        .map(|checkpoint| {
            let trained = if ema {
                &checkpoint.ema
            } else {
                &checkpoint.model
            };
            weights::model_from_bytes(&config.model, trained, &Device::flex())
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(ExportError::Weights)?;
    let model = params::mean(models).expect("at least one checkpoint");
    let bytes = weights::model_to_bytes_as(&model, dtype).map_err(ExportError::Weights)?;
    let manifest = weights::manifest_for(
        &config.model,
        config.schedule,
        model.num_params(),
        latest.state.step,
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
