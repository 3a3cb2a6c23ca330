//! Resumable training checkpoints.
//!
//! A run directory holds one folder per checkpoint, `step-00001000/`, with
//! `params.safetensors` (the trained variables), `ema.safetensors` (their
//! moving average), `optimizer.safetensors` (AdamW moments) and
//! `state.json`. The file `latest` names the newest complete folder; it is
//! replaced by an atomic rename only after the folder is fully written, so
//! a run killed mid-save resumes from the previous checkpoint.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::optim::{AdamW, Ema};

/// Errors while saving or loading a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file could not be read or written.
    #[error("checkpoint file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Tensors could not be saved or loaded.
    #[error("checkpoint tensors in {path}: {source}")]
    Tensors {
        /// The file.
        path: PathBuf,
        /// candle's error.
        source: candle_core::Error,
    },
    /// `state.json` is malformed.
    #[error("checkpoint state {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// Progress of a run, saved next to its tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// "vae" or "diffusion".
    pub stage: String,
    /// Optimisation steps done.
    pub step: usize,
    /// The run's seed.
    pub seed: u64,
    /// Recent loss values, for the training curve.
    pub losses: Vec<(usize, f64)>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<(), CheckpointError> {
    candle_core::safetensors::save(tensors, path).map_err(|source| CheckpointError::Tensors {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads a safetensors file into named tensors.
pub fn load_tensors(
    path: &Path,
    device: &Device,
) -> Result<HashMap<String, Tensor>, CheckpointError> {
    candle_core::safetensors::load(path, device).map_err(|source| CheckpointError::Tensors {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a checkpoint of `adam`'s variables, moments and `ema` into
/// `run_dir` and points `latest` at it.
pub fn save(
    run_dir: &Path,
    state: &RunState,
    adam: &AdamW,
    ema: &Ema,
) -> Result<PathBuf, CheckpointError> {
    let folder = run_dir.join(format!("step-{:08}", state.step));
    fs::create_dir_all(&folder).map_err(io_err(&folder))?;
    let params: HashMap<String, Tensor> = adam
        .vars()
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
        .collect();
    save_tensors(&params, &folder.join("params.safetensors"))?;
    save_tensors(&ema.tensors(), &folder.join("ema.safetensors"))?;
    save_tensors(&adam.state(), &folder.join("optimizer.safetensors"))?;
    let state_path = folder.join("state.json");
    let json = serde_json::to_vec_pretty(state).map_err(|source| CheckpointError::State {
        path: state_path.clone(),
        source,
    })?;
    fs::write(&state_path, json).map_err(io_err(&state_path))?;

    let latest = run_dir.join("latest");
    let staging = run_dir.join("latest.tmp");
    let name = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    fs::write(&staging, name).map_err(io_err(&staging))?;
    fs::rename(&staging, &latest).map_err(io_err(&latest))?;
    Ok(folder)
}

/// The newest complete checkpoint folder of a run, if any.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>, CheckpointError> {
    let latest = run_dir.join("latest");
    match fs::read_to_string(&latest) {
        Ok(name) => Ok(Some(run_dir.join(name.trim()))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CheckpointError::Io {
            path: latest,
            source,
        }),
    }
}

/// Restores variables, moments and the average from `folder`; returns the
/// saved run state.
pub fn restore(
    folder: &Path,
    adam: &mut AdamW,
    ema: &mut Ema,
    device: &Device,
) -> Result<RunState, CheckpointError> {
    let state_path = folder.join("state.json");
    let bytes = fs::read(&state_path).map_err(io_err(&state_path))?;
    let state: RunState =
        serde_json::from_slice(&bytes).map_err(|source| CheckpointError::State {
            path: state_path.clone(),
            source,
        })?;
    let tensor_err = |path: PathBuf| move |source| CheckpointError::Tensors { path, source };
    let params_path = folder.join("params.safetensors");
    let params = load_tensors(&params_path, device)?;
    for (name, var) in adam.vars() {
        let Some(value) = params.get(name) else {
            return Err(CheckpointError::Tensors {
                path: params_path,
                source: candle_core::Error::Msg(format!("no tensor named {name}")),
            });
        };
        var.set(value).map_err(tensor_err(params_path.clone()))?;
    }
    let optimizer_path = folder.join("optimizer.safetensors");
    let moments = load_tensors(&optimizer_path, device)?;
    adam.load_state(&moments, state.step)
        .map_err(tensor_err(optimizer_path))?;
    let ema_path = folder.join("ema.safetensors");
    let averages = load_tensors(&ema_path, device)?;
    ema.load(&averages).map_err(tensor_err(ema_path))?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Var};

    #[test]
    fn save_and_restore_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let x = Var::from_tensor(&Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap()).unwrap();
        let mut adam = AdamW::new(vec![("x".into(), x.clone())], 0.0).unwrap();
        let mut ema = Ema::new(adam.vars(), 0.9).unwrap();
        let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
        adam.step(&loss.backward().unwrap(), 0.1).unwrap();
        ema.update(adam.vars(), 0).unwrap();
        let state = RunState {
            stage: "vae".into(),
            step: 1,
            seed: 9,
            losses: vec![(1, 5.0)],
        };
        save(dir.path(), &state, &adam, &ema).unwrap();
        let saved = x.as_tensor().to_vec1::<f32>().unwrap();

        let y = Var::zeros(2, DType::F32, &Device::Cpu).unwrap();
        let mut adam2 = AdamW::new(vec![("x".into(), y.clone())], 0.0).unwrap();
        let mut ema2 = Ema::new(adam2.vars(), 0.9).unwrap();
        let folder = latest(dir.path()).unwrap().expect("latest checkpoint");
        let restored = restore(&folder, &mut adam2, &mut ema2, &Device::Cpu).unwrap();
        assert_eq!(restored, state);
        assert_eq!(y.as_tensor().to_vec1::<f32>().unwrap(), saved);
        assert_eq!(adam2.steps_done(), 1);
    }

    #[test]
    fn no_checkpoint_yet() {
        let dir = tempfile::tempdir().unwrap();
        assert!(latest(dir.path()).unwrap().is_none());
    }
}
