//! The diffusion UNet (diffusers' `UNet2DModel`) and its DDPM / DDIM samplers.

mod config;
mod sample;
mod scheduler;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
#[cfg(not(target_arch = "wasm32"))]
pub mod train_run;
mod unet;
mod weights;

pub use config::{BlockKind, TimeShift, UNetConfig};
pub use sample::{GaussianNoise, NoiseSource, sample_async};
#[cfg(not(target_arch = "wasm32"))]
pub use sample::{forward, sample};
pub use scheduler::{
    Prediction, Scheduler, SchedulerConfig, SchedulerKind, Spacing, StepCoefficients, VarianceType,
};
pub use unet::{UNet, UNetRun};

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where a diffusion model's parts are: the flat layout (`config.json`, weights and
/// `scheduler_config.json` in one directory) or the pipeline layout (`unet/`, `scheduler/`,
/// `model_index.json`).
pub struct ModelFiles {
    pub unet_dir: PathBuf,
    pub scheduler_config: PathBuf,
}

impl ModelFiles {
    pub fn locate(dir: &Path) -> Result<ModelFiles> {
        let pipeline = dir.join("model_index.json").is_file() || dir.join("unet").is_dir();
        let files = if pipeline {
            ModelFiles {
                unet_dir: dir.join("unet"),
                scheduler_config: dir.join("scheduler").join("scheduler_config.json"),
            }
        } else {
            ModelFiles {
                unet_dir: dir.to_path_buf(),
                scheduler_config: dir.join("scheduler_config.json"),
            }
        };
        for needed in [
            files.unet_dir.join("config.json"),
            files.scheduler_config.clone(),
        ] {
            // Anything there is read (and reported as what it is); only absence is this error.
            if !crate::io::files::exists(&needed) {
                return Err(Error::Invalid(format!(
                    "{} is not a diffusion model directory: {} is missing",
                    dir.display(),
                    needed.display()
                )));
            }
        }
        Ok(files)
    }
}
