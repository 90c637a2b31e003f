//! A diffusion sampler's per-step update (`shaders/scheduler_step.wgsl`), in place on the
//! batch: `prev = a_x0·clip(x0) + a_sample·x + a_eps·eps + noise_scale·z` with
//! `x0 = k_sample·x + k_model·m` and `eps = e_sample·x + e_model·m` (x the sample, m the model
//! output, z noise). The [`StepCoefficients`] (which a scheduler works out per step) are
//! rewritten in a [`ParamsBuffer`] each step while the prepared call is reused.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::{KernelCall, ParamsBuffer, prepare_with_uniform, same_dtype, to_u32};
use crate::tensor::{DType, Tensor};

/// One step's update (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCoefficients {
    pub k_sample: f64,
    pub k_model: f64,
    /// Clip `x0` to `±range` when set.
    pub clip: Option<f64>,
    pub a_x0: f64,
    pub a_sample: f64,
    pub a_eps: f64,
    pub e_sample: f64,
    pub e_model: f64,
    pub noise_scale: f64,
}

impl StepCoefficients {
    /// The update in f64, elementwise (the reference the GPU kernel is checked against).
    pub fn apply(&self, sample: &[f64], model: &[f64], noise: &[f64]) -> Vec<f64> {
        sample
            .iter()
            .zip(model)
            .zip(noise)
            .map(|((&x, &m), &z)| {
                let mut x0 = self.k_sample * x + self.k_model * m;
                if let Some(r) = self.clip {
                    x0 = x0.clamp(-r, r);
                }
                let eps = self.e_sample * x + self.e_model * m;
                self.a_x0 * x0 + self.a_sample * x + self.a_eps * eps + self.noise_scale * z
            })
            .collect()
    }
}

const SHADER: ShaderSource = ShaderSource {
    name: "scheduler_step.wgsl",
    body: include_str!("../../shaders/scheduler_step.wgsl"),
    library: &[],
};
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepParams {
    k_sample: f32,
    k_model: f32,
    a_x0: f32,
    a_sample: f32,
    a_eps: f32,
    e_sample: f32,
    e_model: f32,
    noise_scale: f32,
    clip_range: f32,
    clip: u32,
    len: u32,
    _pad: u32,
}

fn key(dtype: DType) -> PipelineKey {
    PipelineKey::new(SHADER, "scheduler_step", dtype, &[("WG", WG)])
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    DType::ALL.iter().map(|&d| key(d)).collect()
}

/// The rewritable coefficients of a sampler step over `len` elements.
pub struct StepUniform {
    params: ParamsBuffer<StepParams>,
    len: u32,
}

impl StepUniform {
    pub fn new(gpu: &Gpu, len: usize) -> Result<StepUniform> {
        let len = to_u32("scheduler step", "length", len)?;
        let initial = StepParams {
            len,
            ..StepParams::default()
        };
        Ok(StepUniform {
            params: ParamsBuffer::new(gpu, "scheduler step", &initial)?,
            len,
        })
    }

    /// Sets the coefficients the next run applies.
    pub fn set(&self, gpu: &Gpu, c: &StepCoefficients) -> Result<()> {
        let params = StepParams {
            k_sample: c.k_sample as f32,
            k_model: c.k_model as f32,
            a_x0: c.a_x0 as f32,
            a_sample: c.a_sample as f32,
            a_eps: c.a_eps as f32,
            e_sample: c.e_sample as f32,
            e_model: c.e_model as f32,
            noise_scale: c.noise_scale as f32,
            clip_range: c.clip.unwrap_or(0.0) as f32,
            clip: u32::from(c.clip.is_some()),
            len: self.len,
            _pad: 0,
        };
        self.params.set(gpu, &params)
    }
}

/// `sample <- update(sample, model_output, noise)` with the coefficients in `uniform`.
pub fn scheduler_step<'a>(
    gpu: &Gpu,
    sample: &'a Tensor,
    model_output: &'a Tensor,
    noise: &'a Tensor,
    uniform: &'a StepUniform,
) -> Result<KernelCall<'a>> {
    let op = "scheduler step";
    let dtype = same_dtype(op, &[sample, model_output, noise])?;
    if model_output.shape() != sample.shape() || noise.shape() != sample.shape() {
        return Err(Error::shape(
            op,
            format!("sample {sample:?}, model output {model_output:?} and noise {noise:?} differ"),
        ));
    }
    if sample.len() != uniform.len as usize {
        return Err(Error::shape(
            op,
            format!(
                "the coefficients were made for {} elements, not {}",
                uniform.len,
                sample.len()
            ),
        ));
    }
    let grid = gpu.grid(op, u64::from(uniform.len.div_ceil(WG)))?;
    let tensors = [(1, sample), (2, model_output), (3, noise)];
    prepare_with_uniform(
        gpu,
        &key(dtype),
        uniform.params.buffer(),
        &tensors,
        None,
        grid,
    )
}
