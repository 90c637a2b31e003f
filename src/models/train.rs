//! What training any model shares: trained tensors with their gradients and AdamW state,
//! the optimizer step (global-norm clipping, then one fused AdamW call per tensor, skipped
//! when a gradient is not finite), the learning-rate schedule, dynamic loss scaling, and
//! the checkpoint files for the weights and the optimizer state.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::training::{self, AdamW};
use crate::kernels::{KernelCall, run_all};
use crate::rng::Rng;
use crate::tensor::{DType, Tensor};

/// One trained tensor: its f32 value (the master weight), its copy in the passes' element
/// type when that is not f32, the gradient the backward pass leaves (in the passes' type),
/// AdamW's first and second moments.
pub struct Parameter {
    /// The checkpoint name (`model.layers.0.mlp.up_proj.weight`).
    pub name: String,
    pub value: Tensor,
    /// The weight the passes read when they run in f16, refreshed by each optimizer step.
    pub pass: Option<Tensor>,
    pub grad: Tensor,
    m: Tensor,
    v: Tensor,
}

impl Parameter {
    /// A parameter holding `data` (f32, `shape`), with zero moments, for passes in `dtype`.
    pub fn new(
        gpu: &Gpu,
        name: &str,
        shape: &[usize],
        data: &[f32],
        dtype: DType,
    ) -> Result<Parameter> {
        let len: usize = shape.iter().product();
        if data.len() != len {
            return Err(Error::shape(
                "parameter",
                format!("{name}: {} values for {shape:?}", data.len()),
            ));
        }
        let pass = match dtype {
            DType::F32 => None,
            _ => Some(Tensor::from_f32(gpu, shape, data, dtype)?),
        };
        let value = Tensor::from_f32(gpu, shape, data, DType::F32)?;
        Parameter::around(gpu, name, value, pass)
    }

    /// A parameter whose value is `value` (an f32 tensor already on the device, shared).
    pub fn from_tensor(gpu: &Gpu, name: &str, value: &Tensor) -> Result<Parameter> {
        if value.dtype() != DType::F32 {
            return Err(Error::DType {
                op: "parameter",
                detail: format!("{name} must be f32 to be trained, not {}", value.dtype()),
            });
        }
        Parameter::around(gpu, name, value.share(), None)
    }

    /// `value` (f32) and its pass copy with a zero gradient (in the pass copy's type) and
    /// zero moments.
    fn around(gpu: &Gpu, name: &str, value: Tensor, pass: Option<Tensor>) -> Result<Parameter> {
        let shape = value.shape().to_vec();
        let zeros = vec![0.0f32; value.len()];
        let grad_dtype = pass.as_ref().map_or(DType::F32, Tensor::dtype);
        Ok(Parameter {
            name: name.to_string(),
            grad: Tensor::from_f32(gpu, &shape, &zeros, grad_dtype)?,
            m: Tensor::from_f32(gpu, &shape, &zeros, DType::F32)?,
            v: Tensor::from_f32(gpu, &shape, &zeros, DType::F32)?,
            value,
            pass,
        })
    }

    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    /// The weight the forward and backward passes read.
    pub fn pass_value(&self) -> &Tensor {
        self.pass.as_ref().unwrap_or(&self.value)
    }
}

/// A named f32 tensor in host memory: a weight read from or written to a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Values drawn from N(0, std²) (Box-Muller on [`Rng`]), the initialisation transformers
/// and diffusers give Linear and Embedding weights.
pub fn normal(rng: &mut Rng, len: usize, std: f64) -> Vec<f32> {
    (0..len)
        .map(|_| {
            let u1 = rng.uniform(f64::MIN_POSITIVE, 1.0);
            let u2 = rng.uniform(0.0, 1.0);
            (std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect()
}

/// Linear warm-up to the peak rate, then a cosine decay to `floor · peak` at `total` steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub peak: f32,
    pub warmup: u64,
    pub total: u64,
    pub floor: f32,
}

impl Schedule {
    /// The learning rate of step `step` (from 1).
    pub fn rate(&self, step: u64) -> f32 {
        let peak = f64::from(self.peak);
        if step <= self.warmup {
            return (peak * step as f64 / self.warmup.max(1) as f64) as f32;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let progress = ((step - self.warmup) as f64 / span as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        let floor = f64::from(self.floor);
        (peak * (floor + (1.0 - floor) * cosine)) as f32
    }
}

/// What one optimizer step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Update {
    /// The global L2 norm of the (unscaled) gradients before clipping; not finite when the
    /// step was skipped.
    pub grad_norm: f64,
    /// A gradient held an infinity or NaN: no parameter changed.
    pub skipped: bool,
    pub lr: f32,
}

/// AdamW over a model's parameters with clipping by global norm.
#[derive(Debug)]
pub struct Optimizer {
    pub settings: AdamW,
    /// Clip the global gradient norm to this (PyTorch's `clip_grad_norm_`), if set.
    pub clip_norm: Option<f32>,
    /// Steps taken (the next one is `steps + 1`).
    pub steps: u64,
    /// The partial sums of squares of every gradient, in one buffer read back at once, and
    /// each parameter's view of it; made on the first step.
    squares: Option<(Tensor, Vec<Tensor>)>,
}

/// One buffer for every parameter's partial sums of squares: `(buffer, views)`, each view
/// starting at a storage-binding-aligned element.
fn squares_buffer(gpu: &Gpu, params: &[Parameter]) -> Result<(Tensor, Vec<Tensor>)> {
    let align = (gpu.limits().min_storage_buffer_offset_alignment as usize / 4).max(1);
    let mut at = Vec::with_capacity(params.len());
    let mut total = 0usize;
    for p in params {
        at.push(total);
        total += training::sum_of_squares_groups(p.value.len()).div_ceil(align) * align;
    }
    let all = Tensor::from_f32(gpu, &[total.max(1)], &vec![0.0; total.max(1)], DType::F32)?;
    let views = params
        .iter()
        .zip(at)
        .map(|(p, first)| all.view(first, &[training::sum_of_squares_groups(p.value.len())]))
        .collect::<Result<Vec<_>>>()?;
    Ok((all, views))
}

impl Optimizer {
    pub fn new(settings: AdamW, clip_norm: Option<f32>) -> Optimizer {
        Optimizer {
            settings,
            clip_norm,
            steps: 0,
            squares: None,
        }
    }

    /// The global norm of the gradients in `params`, which hold `loss_scale` times the true
    /// gradients; infinite when any element is not finite.
    pub fn grad_norm(&mut self, gpu: &Gpu, params: &[Parameter], loss_scale: f32) -> Result<f64> {
        if self
            .squares
            .as_ref()
            .is_none_or(|(_, views)| views.len() != params.len())
        {
            self.squares = Some(squares_buffer(gpu, params)?);
        }
        let (all, views) = self.squares.as_ref().expect("made above");
        let calls = params
            .iter()
            .zip(views)
            .map(|(p, view)| training::sum_of_squares(gpu, &p.grad, view))
            .collect::<Result<Vec<_>>>()?;
        run_all(gpu, &calls.iter().collect::<Vec<_>>())?;
        // The padding between views stays 0 (nothing writes it).
        let mut total = 0.0f64;
        for s in all.to_f32()? {
            if !s.is_finite() {
                return Ok(f64::INFINITY);
            }
            total += f64::from(s);
        }
        Ok(total.sqrt() / f64::from(loss_scale))
    }

    /// One step at learning rate `lr` on gradients scaled by `loss_scale`: skipped (nothing
    /// changes, the step count included) when a gradient is not finite.
    pub fn step(
        &mut self,
        gpu: &Gpu,
        params: &[Parameter],
        lr: f32,
        loss_scale: f32,
    ) -> Result<Update> {
        let grad_norm = self.grad_norm(gpu, params, loss_scale)?;
        if !grad_norm.is_finite() {
            return Ok(Update {
                grad_norm,
                skipped: true,
                lr,
            });
        }
        let clip = match self.clip_norm {
            Some(max) => (f64::from(max) / (grad_norm + 1e-6)).min(1.0),
            None => 1.0,
        };
        let settings = AdamW {
            lr,
            ..self.settings
        };
        let step = self.steps + 1;
        let grad_scale = (clip / f64::from(loss_scale)) as f32;
        let calls: Vec<KernelCall<'_>> = params
            .iter()
            .map(|p| {
                let state = [&p.value, &p.m, &p.v];
                let copy = p.pass.as_ref();
                training::adamw_with_copy(gpu, &settings, step, &p.grad, grad_scale, state, copy)
            })
            .collect::<Result<_>>()?;
        run_all(gpu, &calls.iter().collect::<Vec<_>>())?;
        self.steps = step;
        Ok(Update {
            grad_norm,
            skipped: false,
            lr,
        })
    }
}

/// The exponential moving average of the weights (what a diffusion model is saved as),
/// updated on the device after each step.
pub struct Average {
    pub decay: f32,
    tensors: Vec<Tensor>,
}

impl Average {
    /// An average starting at `values` (or at the parameters' values), one per parameter.
    pub fn new(
        gpu: &Gpu,
        decay: f32,
        params: &[Parameter],
        values: Option<&[HostTensor]>,
    ) -> Result<Average> {
        let tensors = params
            .iter()
            .enumerate()
            .map(|(i, p)| match values {
                Some(values) => {
                    let v = values
                        .get(i)
                        .filter(|v| v.name == p.name)
                        .ok_or_else(|| Error::Invalid(format!("no average for {}", p.name)))?;
                    Tensor::from_f32(gpu, p.shape(), &v.values, DType::F32)
                }
                None => {
                    let t = Tensor::empty(gpu, p.shape(), DType::F32)?;
                    crate::kernels::copy::copy(gpu, &p.value, &t)?.run(gpu)?;
                    Ok(t)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Average { decay, tensors })
    }

    /// `average = decay · average + (1 - decay) · value` for every parameter.
    pub fn update(&self, gpu: &Gpu, params: &[Parameter]) -> Result<()> {
        let calls = params
            .iter()
            .zip(&self.tensors)
            .map(|(p, a)| training::ema_update(gpu, self.decay, &p.value, a))
            .collect::<Result<Vec<_>>>()?;
        run_all(gpu, &calls.iter().collect::<Vec<_>>())
    }

    /// The averages under the parameters' names.
    pub fn read(&self, params: &[Parameter]) -> Result<Vec<HostTensor>> {
        params
            .iter()
            .zip(&self.tensors)
            .map(|(p, a)| {
                Ok(HostTensor {
                    name: p.name.clone(),
                    shape: p.shape().to_vec(),
                    values: a.to_f32()?,
                })
            })
            .collect()
    }
}

/// Dynamic loss scaling for f16 passes: the loss is multiplied by `scale` before the
/// backward pass; a step whose gradients overflow is skipped and halves the scale, and
/// `growth_interval` good steps in a row double it (PyTorch's `GradScaler` rules).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossScaler {
    pub scale: f32,
    pub growth_interval: u32,
    good_steps: u32,
}

impl LossScaler {
    pub fn new(scale: f32, growth_interval: u32) -> LossScaler {
        LossScaler {
            scale,
            growth_interval,
            good_steps: 0,
        }
    }

    /// Takes the outcome of a step into account.
    pub fn update(&mut self, skipped: bool) {
        if skipped {
            self.scale = (self.scale * 0.5).max(f32::MIN_POSITIVE);
            self.good_steps = 0;
        } else {
            self.good_steps += 1;
            if self.good_steps >= self.growth_interval {
                self.scale = (self.scale * 2.0).min(f32::MAX / 2.0);
                self.good_steps = 0;
            }
        }
    }
}

/// The parameters' values.
pub fn read_values(params: &[Parameter]) -> Result<Vec<HostTensor>> {
    params
        .iter()
        .map(|p| {
            Ok(HostTensor {
                name: p.name.clone(),
                shape: p.shape().to_vec(),
                values: p.value.to_f32()?,
            })
        })
        .collect()
}

/// Writes `tensors` as one safetensors file, in `dtype` (f32
/// or f16), through a temporary file renamed into place so a crash leaves the old file.
pub fn write_safetensors(
    path: &Path,
    tensors: &[HostTensor],
    dtype: DType,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let (stored, bytes): (safetensors::Dtype, Vec<Vec<u8>>) = match dtype {
        DType::F32 => (
            safetensors::Dtype::F32,
            tensors
                .iter()
                .map(|t| bytemuck::cast_slice(&t.values).to_vec())
                .collect(),
        ),
        DType::F16 => (
            safetensors::Dtype::F16,
            tensors
                .iter()
                .map(|t| {
                    let h: Vec<half::f16> =
                        t.values.iter().map(|&x| half::f16::from_f32(x)).collect();
                    bytemuck::cast_slice(&h).to_vec()
                })
                .collect(),
        ),
        other => {
            return Err(Error::Invalid(format!(
                "checkpoints are written in f32 or f16, not {other}"
            )));
        }
    };
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, data)| {
            safetensors::tensor::TensorView::new(stored, t.shape.clone(), data)
                .map(|view| (t.name.clone(), view))
                .map_err(|e| Error::Invalid(format!("tensor {}: {e}", t.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    let serialized = safetensors::serialize(views, metadata)
        .map_err(|e| Error::Invalid(format!("serializing {}: {e}", path.display())))?;
    write_atomically(path, &serialized)
}

/// Writes `data` to `path` through `path.tmp` and a rename.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let io = |source: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes the optimizer's moments (`{name}.exp_avg`, `{name}.exp_avg_sq`, f32) to `path`.
pub fn save_moments(path: &Path, params: &[Parameter]) -> Result<()> {
    let mut tensors = Vec::new();
    for p in params {
        for (suffix, moment) in [("exp_avg", &p.m), ("exp_avg_sq", &p.v)] {
            tensors.push(HostTensor {
                name: format!("{}.{suffix}", p.name),
                shape: p.shape().to_vec(),
                values: moment.to_f32()?,
            });
        }
    }
    write_safetensors(path, &tensors, DType::F32, None)
}

/// Reads what [`save_moments`] wrote into `params`' moments.
pub fn load_moments(path: &Path, params: &[Parameter]) -> Result<()> {
    let checkpoint = crate::io::safetensors::Checkpoint::open_files(
        &path.display().to_string(),
        &[path.to_path_buf()],
    )?;
    for p in params {
        let m = checkpoint.read_f32(&format!("{}.exp_avg", p.name), p.shape())?;
        let v = checkpoint.read_f32(&format!("{}.exp_avg_sq", p.name), p.shape())?;
        p.m.write_f32(&m)?;
        p.v.write_f32(&v)?;
    }
    Ok(())
}

/// The loss log of a training run (`loss.csv`: step, loss, learning rate, gradient norm,
/// whether the step was skipped), appended to across resumed runs.
pub struct LossLog {
    path: std::path::PathBuf,
    file: std::fs::File,
}

/// `Error::Io` for `path`.
pub fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

impl LossLog {
    /// Opens `dir/loss.csv` for appending; a fresh run (`fresh`) writes the header.
    pub fn open(dir: &Path, fresh: bool) -> Result<LossLog> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let path = dir.join("loss.csv");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        if fresh {
            use std::io::Write;
            writeln!(file, "step,loss,lr,grad_norm,skipped").map_err(io_error(&path))?;
        }
        Ok(LossLog { path, file })
    }

    pub fn write(&mut self, step: u64, loss: f64, update: &Update) -> Result<()> {
        use std::io::Write;
        writeln!(
            self.file,
            "{step},{loss:.6},{:.6e},{:.6},{}",
            update.lr,
            update.grad_norm,
            u8::from(update.skipped)
        )
        .map_err(io_error(&self.path))
    }
}

/// A JSON file's value (a config, a run's state).
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = crate::io::files::read_text(path, "JSON", crate::io::files::MAX_JSON_BYTES)?;
    serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.display().to_string(),
        detail: format!("not valid JSON: {e}"),
    })
}

/// Writes `value` to `path` as pretty JSON, through a temporary file.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    write_atomically(path, format!("{text}\n").as_bytes())
}

/// A run's saved state (`trainer_state.json`) as `T`.
pub fn read_state<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    serde_json::from_value(read_json(path)?).map_err(|e| Error::Config {
        path: path.display().to_string(),
        detail: e.to_string(),
    })
}
