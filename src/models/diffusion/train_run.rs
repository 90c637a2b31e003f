//! A whole DDPM training run of the UNet, as `tessera train-ddpm` drives it: the digits data
//! (or any images in a safetensors file), a fresh UNet (the digits architecture, or a given
//! config) or given starting weights, AdamW on a warm-up + cosine schedule with clipping, an
//! exponential moving average of the weights, a loss log, checkpoints in the diffusers layout
//! (loadable by `tessera sample` and diffusers) and resumption with the optimizer's state.

use std::path::{Path, PathBuf};

use super::config::UNetConfig;
use super::scheduler::SchedulerConfig;
use super::train::{DdpmBatches, UNetTrainer};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::{Checkpoint, ConfigJson};
use crate::kernels::training::AdamW;
use crate::models::train::{
    self, Average, HostTensor, LossLog, Optimizer, Schedule, io_error, read_json, read_state,
    write_json,
};

/// The bundled digits (scikit-learn's 8×8 images, values 0..16).
const DIGITS: &[u8] = include_bytes!("../../../assets/data/digits.safetensors");
/// The sampler written next to a trained model: DDIM on the squaredcos_cap_v2 schedule of
/// 1000 steps (what the bundled digits model uses).
const SCHEDULER: &str = include_str!("../../../assets/models/digits-unet/scheduler_config.json");

/// What `train-ddpm` was asked for.
#[derive(Clone, Debug)]
pub struct DdpmRunOptions {
    /// `digits` (the bundled data) or a safetensors file with f16/f32 "images"
    /// `[N, H, W]` or `[N, C, H, W]` in [-1, 1].
    pub data: String,
    /// Where the model, its scheduler config, the optimizer state and the loss log go.
    pub out: PathBuf,
    /// Start from this diffusers model directory (its config and weights).
    pub init: Option<PathBuf>,
    /// Continue the run saved in `out` up to `steps`.
    pub resume: bool,
    /// The digits' size: 8 (as they are) or 16 (bilinear 2× as tools/train_digits.py).
    pub size: usize,
    pub steps: u64,
    pub stop_at: Option<u64>,
    pub batch: usize,
    pub lr: f32,
    pub warmup: u64,
    pub weight_decay: f32,
    pub clip_norm: Option<f32>,
    /// The decay of the weights' moving average, which is what the saved model holds (None:
    /// the weights themselves).
    pub ema: Option<f32>,
    pub seed: u64,
    pub save_every: u64,
    /// Afterwards, time each kernel of one training step's passes.
    pub profile: bool,
}

/// One step's figures, for progress displays.
#[derive(Clone, Copy, Debug)]
pub struct DdpmProgress {
    pub step: u64,
    pub steps: u64,
    pub loss: f64,
    pub lr: f32,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct DdpmRunSummary {
    pub start_step: u64,
    pub steps: u64,
    pub parameters: usize,
    pub scratch_bytes: u64,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    pub seconds: f64,
    /// Each kernel's time over one step's passes, when asked for.
    pub profile: Option<Vec<crate::graph::KernelTime>>,
}

#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct RunState {
    step: u64,
    batch: usize,
    seed: u64,
    size: usize,
}

/// The digits architecture (as assets/models/digits-unet) at `size` × `size`.
fn digits_config(size: usize) -> serde_json::Value {
    serde_json::json!({
        "_class_name": "UNet2DModel",
        "act_fn": "silu",
        "add_attention": true,
        "attention_head_dim": 32,
        "block_out_channels": [32, 64],
        "center_input_sample": false,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
        "downsample_padding": 1,
        "flip_sin_to_cos": true,
        "freq_shift": 0,
        "in_channels": 1,
        "layers_per_block": 1,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-05,
        "norm_num_groups": 8,
        "out_channels": 1,
        "resnet_time_scale_shift": "default",
        "sample_size": size,
        "time_embedding_type": "positional",
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D"]
    })
}

/// The digits at `size` (8, or 16 by bilinear 2× upsampling with PyTorch's
/// `align_corners=False`), scaled to [-1, 1]: `[N, 1, size, size]` flattened.
pub fn digits(size: usize) -> Result<Vec<f32>> {
    let file = safetensors::SafeTensors::deserialize(DIGITS)
        .map_err(|e| Error::Invalid(format!("the bundled digits: {e}")))?;
    let images = file
        .tensor("images")
        .map_err(|e| Error::Invalid(format!("the bundled digits: {e}")))?;
    let values: Vec<f32> = images
        .data()
        .chunks_exact(2)
        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32() / 16.0)
        .collect();
    let out = match size {
        8 => values,
        16 => values.chunks(64).flat_map(upsample_bilinear_8).collect(),
        other => {
            return Err(Error::Invalid(format!(
                "the digits come at 8x8 or 16x16, not {other}x{other}"
            )));
        }
    };
    Ok(out.iter().map(|v| v.clamp(0.0, 1.0) * 2.0 - 1.0).collect())
}

/// An 8×8 image at 16×16, as `F.interpolate(scale_factor=2, mode="bilinear",
/// align_corners=False)`.
fn upsample_bilinear_8(image: &[f32]) -> Vec<f32> {
    let source = |i: usize| -> (usize, usize, f32) {
        let s = ((i as f32 + 0.5) / 2.0 - 0.5).max(0.0);
        let lo = (s.floor() as usize).min(7);
        ((lo), (lo + 1).min(7), s - lo as f32)
    };
    let mut out = Vec::with_capacity(256);
    for y in 0..16 {
        let (y0, y1, fy) = source(y);
        for x in 0..16 {
            let (x0, x1, fx) = source(x);
            let at = |r: usize, c: usize| image[r * 8 + c];
            let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
            let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// Images from a safetensors file: f16/f32 "images", `[N, H, W]` or `[N, C, H, W]`.
fn read_images(path: &Path, config: &UNetConfig) -> Result<Vec<f32>> {
    let checkpoint = Checkpoint::open_files(&path.display().to_string(), &[path.to_path_buf()])?;
    let shape = checkpoint
        .shape("images")
        .ok_or_else(|| Error::Checkpoint {
            path: path.display().to_string(),
            detail: "no tensor \"images\"".to_string(),
        })?
        .to_vec();
    let (h, w) = config.sample_size;
    let want = match shape.len() {
        3 => vec![shape[0], h, w],
        _ => vec![shape[0], config.in_channels, h, w],
    };
    checkpoint.read_f32("images", &want)
}

/// Runs training as `options` say, calling `on_step` after every step.
pub fn run(
    gpu: &Gpu,
    options: &DdpmRunOptions,
    mut on_step: impl FnMut(&DdpmProgress),
) -> Result<DdpmRunSummary> {
    let out = &options.out;
    let source: Option<&Path> = if options.resume {
        Some(out)
    } else {
        options.init.as_deref()
    };
    let config_json = match source {
        Some(dir) => read_json(&dir.join("config.json"))?,
        None => digits_config(options.size),
    };
    let config = UNetConfig::from_json(&ConfigJson::parse(
        &out.join("config.json").display().to_string(),
        &config_json.to_string(),
    )?)?;
    let mut state = if options.resume {
        read_state::<RunState>(&out.join("trainer_state.json"))?
    } else {
        RunState {
            step: 0,
            batch: options.batch,
            seed: options.seed,
            size: options.size,
        }
    };
    let images = if options.data == "digits" {
        digits(state.size)?
    } else {
        read_images(Path::new(&options.data), &config)?
    };
    crate::error::require_finite(&images, || format!("the images of {}", options.data))?;
    let (h, w) = config.sample_size;
    let image_len = config.in_channels * h * w;
    if images.len() % image_len != 0 || images.len() / image_len == 0 {
        return Err(Error::Invalid(format!(
            "the data's images are not {}x{h}x{w}, the model's input",
            config.in_channels
        )));
    }
    let scheduler_text = match source {
        Some(dir) if dir.join("scheduler_config.json").is_file() => crate::io::files::read_text(
            &dir.join("scheduler_config.json"),
            "scheduler config",
            crate::io::files::MAX_JSON_BYTES,
        )?,
        _ => SCHEDULER.to_string(),
    };
    let scheduler = SchedulerConfig::from_json(&ConfigJson::parse(
        "scheduler_config.json",
        &scheduler_text,
    )?)?;
    let mut batches = DdpmBatches::new(images, image_len, &scheduler.betas, state.seed)?;
    batches.skip(state.step, state.batch);

    let checkpoint = match source {
        Some(dir) if options.resume && dir.join("training.safetensors").is_file() => {
            Checkpoint::open_named(dir, "training")?
        }
        Some(dir) => Checkpoint::open_named(dir, "diffusion_pytorch_model")?,
        None => super::train::initial_weights(state.seed),
    };
    let adamw = AdamW {
        lr: options.lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: options.weight_decay,
    };
    let optimizer = Optimizer::new(adamw, options.clip_norm);
    let mut trainer = UNetTrainer::new(gpu, config, &checkpoint, state.batch, optimizer)?;
    let ema = match options.ema {
        None => None,
        Some(decay) if options.resume => {
            let saved = Checkpoint::open_named(out, "diffusion_pytorch_model")?;
            let values = trainer
                .weights()?
                .into_iter()
                .map(|t| {
                    let values = saved.read_f32(&t.name, &t.shape)?;
                    Ok(HostTensor { values, ..t })
                })
                .collect::<Result<Vec<_>>>()?;
            Some(Average::new(
                gpu,
                decay,
                trainer.parameters(),
                Some(&values),
            )?)
        }
        Some(decay) => Some(Average::new(gpu, decay, trainer.parameters(), None)?),
    };
    if options.resume {
        trainer.load_moments(out)?;
        trainer.optimizer.steps = state.step;
    }
    std::fs::create_dir_all(out).map_err(io_error(out))?;
    let mut log = LossLog::open(out, state.step == 0)?;
    let schedule = Schedule {
        peak: options.lr,
        warmup: options.warmup,
        total: options.steps,
        floor: 0.1,
    };
    let save = |trainer: &UNetTrainer, ema: &Option<Average>, state: &RunState| {
        trainer.save_weights(out, true)?;
        if let Some(ema) = ema {
            // The model is the average; the weights being trained go beside it.
            std::fs::rename(
                out.join("diffusion_pytorch_model.safetensors"),
                out.join("training.safetensors"),
            )
            .map_err(io_error(out))?;
            train::write_safetensors(
                &out.join("diffusion_pytorch_model.safetensors"),
                &ema.read(trainer.parameters())?,
                crate::tensor::DType::F32,
                None,
            )?;
        }
        write_json(&out.join("config.json"), &config_json)?;
        train::write_atomically(
            &out.join("scheduler_config.json"),
            scheduler_text.as_bytes(),
        )?;
        write_json(&out.join("trainer_state.json"), state)
    };

    let started = std::time::Instant::now();
    let start_step = state.step;
    let (mut first_loss, mut last_loss) = (None, None);
    let stop = options.stop_at.unwrap_or(options.steps).min(options.steps);
    while state.step < stop {
        let step = state.step + 1;
        let batch = batches.next_batch(state.batch);
        let lr = schedule.rate(step);
        let (loss, update) = trainer.step(&batch.x_t, &batch.timesteps, &batch.noise, lr)?;
        crate::error::require_finite(&[loss as f32], || {
            format!("the training loss at step {step}")
        })?;
        if let Some(average) = &ema {
            average.update(gpu, trainer.parameters())?;
        }
        state.step = step;
        first_loss.get_or_insert(loss);
        last_loss = Some(loss);
        log.write(step, loss, &update)?;
        on_step(&DdpmProgress {
            step,
            steps: options.steps,
            loss,
            lr,
        });
        if options.save_every > 0 && step % options.save_every == 0 && step < stop {
            save(&trainer, &ema, &state)?;
        }
    }
    save(&trainer, &ema, &state)?;
    let profile = options.profile.then(|| trainer.profile(3)).transpose()?;
    Ok(DdpmRunSummary {
        start_step,
        steps: state.step,
        parameters: trainer.parameters().iter().map(|p| p.value.len()).sum(),
        scratch_bytes: trainer.scratch_bytes(),
        first_loss,
        last_loss,
        seconds: started.elapsed().as_secs_f64(),
        profile,
    })
}
