//! Training checkpoints: one file holding the run's config, step counter and RNG state, the
//! model, its EMA and the optimiser state. Written to a temporary file, synced, then renamed over
//! the old one, so a run killed at any moment leaves the last complete checkpoint.
//!
//! Layout: `GENDICK1`, then four length-prefixed (u64 little-endian) sections: the state as JSON,
//! the model, the EMA model and the optimiser, each as burnpack bytes.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::train::TrainConfig;
use crate::rng::NoiseRng;

const MAGIC: &[u8; 8] = b"GENDICK1";

/// Everything about a run that is not a tensor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub config: TrainConfig,
    /// Optimiser steps completed.
    pub step: u64,
    /// The RNG that draws batches' noise, timesteps and label dropout, as of `step`.
    pub rng: NoiseRng,
    /// Seconds of training so far, across resumes.
    pub elapsed_s: f64,
}

pub struct Checkpoint {
    pub state: TrainState,
    pub model: Vec<u8>,
    pub ema: Vec<u8>,
    pub optimizer: Vec<u8>,
}

#[derive(Debug)]
pub enum CheckpointError {
    Missing(PathBuf),
    Io(PathBuf, std::io::Error),
    /// Writing failed (a full disk, say); the file at the path, if any, is untouched.
    Write(PathBuf, std::io::Error),
    Corrupt(PathBuf, String),
}

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(p) => write!(
                f,
                "no checkpoint at {} (train first, or pass --checkpoint)",
                p.display()
            ),
            Self::Io(p, e) => write!(f, "cannot read checkpoint {}: {e}", p.display()),
            Self::Write(p, e) => write!(
                f,
                "cannot write checkpoint {}: {e} (the previous checkpoint there, if any, is kept: free some space and resume)",
                p.display()
            ),
            Self::Corrupt(p, m) => write!(
                f,
                "checkpoint {} is corrupted or truncated: {m}",
                p.display()
            ),
        }
    }
}

impl std::error::Error for CheckpointError {}

impl Checkpoint {
    /// Writes atomically: a temporary file beside `path`, fsync, rename.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let io = |e| CheckpointError::Write(path.to_path_buf(), e);
        let state =
            serde_json::to_vec_pretty(&self.state).map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = path.with_extension("tmp");
        {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
            file.write_all(MAGIC).map_err(io)?;
            for section in [&state, &self.model, &self.ema, &self.optimizer] {
                file.write_all(&(section.len() as u64).to_le_bytes())
                    .map_err(io)?;
                file.write_all(section).map_err(io)?;
            }
            let file = file.into_inner().map_err(|e| io(e.into_error()))?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }

    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        if !path.exists() {
            return Err(CheckpointError::Missing(path.to_path_buf()));
        }
        let bytes = std::fs::read(path).map_err(|e| CheckpointError::Io(path.to_path_buf(), e))?;
        let corrupt = |m: &str| CheckpointError::Corrupt(path.to_path_buf(), m.to_string());
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt("not a GENDI checkpoint"));
        }
        let mut rest = &bytes[MAGIC.len()..];
        let mut sections = Vec::new();
        for name in ["state", "model", "EMA", "optimizer"] {
            if rest.len() < 8 {
                return Err(corrupt(&format!("it ends before the {name} section")));
            }
            let len = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")) as usize;
            rest = &rest[8..];
            if rest.len() < len {
                return Err(corrupt(&format!("the {name} section is cut short")));
            }
            sections.push(rest[..len].to_vec());
            rest = &rest[len..];
        }
        if !rest.is_empty() {
            return Err(corrupt("trailing bytes after the last section"));
        }
        let optimizer = sections.pop().expect("4 sections");
        let ema = sections.pop().expect("4 sections");
        let model = sections.pop().expect("4 sections");
        let state: TrainState =
            serde_json::from_slice(&sections[0]).map_err(|e| corrupt(&format!("state: {e}")))?;
        // A checkpoint from elsewhere is as untrusted as a manifest: its config is checked before
        // anything is built from it.
        state.config.model.validate().map_err(|e| corrupt(&e))?;
        state.config.schedule.validate().map_err(|e| corrupt(&e))?;
        Ok(Self {
            state,
            model,
            ema,
            optimizer,
        })
    }
}
