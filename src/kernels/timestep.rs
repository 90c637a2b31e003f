//! The sinusoidal timestep embedding of diffusers' UNets (`shaders/timestep_embedding.wgsl`).
//! The embedding then goes through Linear → SiLU → Linear ([`super::matmul`],
//! [`super::elementwise`]) and into each ResBlock through [`super::spatial::channel_mix`].

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::{KernelCall, expect_shape, prepare, to_u32};
use crate::tensor::{DType, Tensor};

const SHADER: ShaderSource = ShaderSource {
    name: "timestep_embedding.wgsl",
    body: include_str!("../../shaders/timestep_embedding.wgsl"),
    library: &[],
};
const WG: u32 = 256;

/// diffusers' `Timesteps(num_channels, flip_sin_to_cos, downscale_freq_shift)` with
/// `max_period` 10000 and scale 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimestepConfig {
    pub dim: usize,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
}

impl TimestepConfig {
    /// `exp(-ln(10000) · i / (dim/2 - freq_shift))` for `i < dim / 2`, rounded to f32 as the
    /// GPU uses them.
    pub fn freqs(&self) -> Result<Vec<f32>> {
        let half = self.dim / 2;
        let denominator = half as f64 - self.freq_shift;
        if half == 0 || denominator == 0.0 {
            return Err(Error::Invalid(format!(
                "timestep embedding of dim {} with freq_shift {} has no frequencies",
                self.dim, self.freq_shift
            )));
        }
        Ok((0..half)
            .map(|i| (-(10_000f64.ln()) * i as f64 / denominator).exp() as f32)
            .collect())
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    pairs: u32,
    half: u32,
    dim: u32,
    flip: u32,
}

fn key(dtype: DType) -> PipelineKey {
    PipelineKey::new(SHADER, "timestep_embedding", dtype, &[("WG", WG)])
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    DType::ALL.iter().map(|&d| key(d)).collect()
}

/// The frequencies of `config` on the device (f32 `[dim / 2]`).
pub fn freqs_tensor(gpu: &Gpu, config: &TimestepConfig) -> Result<Tensor> {
    let freqs = config.freqs()?;
    Tensor::from_f32(gpu, &[freqs.len()], &freqs, DType::F32)
}

/// `out[b] = embedding(timesteps[b])`: `timesteps` f32 `[batch]`, `freqs` from
/// [`freqs_tensor`], `out` `[batch, dim]`.
pub fn timestep_embedding<'a>(
    gpu: &Gpu,
    config: &TimestepConfig,
    timesteps: &'a Tensor,
    freqs: &'a Tensor,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "timestep embedding";
    let half = config.dim / 2;
    let batch = timesteps.len();
    if timesteps.dtype() != DType::F32 || freqs.dtype() != DType::F32 {
        return Err(Error::DType {
            op,
            detail: "timesteps and frequencies are f32".into(),
        });
    }
    expect_shape(op, "timesteps", timesteps, &[batch])?;
    expect_shape(op, "frequencies", freqs, &[half])?;
    expect_shape(op, "output", out, &[batch, config.dim])?;
    let params = Params {
        pairs: to_u32(op, "pairs", batch * half)?,
        half: to_u32(op, "half", half)?,
        dim: to_u32(op, "dim", config.dim)?,
        flip: u32::from(config.flip_sin_to_cos),
    };
    let grid = gpu.grid(op, (batch * half).div_ceil(WG as usize) as u64)?;
    prepare(
        gpu,
        &key(out.dtype()),
        &params,
        &[(1, timesteps), (2, freqs), (3, out)],
        grid,
    )
}

/// f64 reference: `sin`/`cos` of the f32 angles `t · freq` (diffusers computes the angle in
/// f32), laid out as [`timestep_embedding`] writes them.
pub fn reference(config: &TimestepConfig, timesteps: &[f64], freqs: &[f32]) -> Vec<f64> {
    let half = freqs.len();
    let mut out = Vec::with_capacity(timesteps.len() * config.dim);
    for &t in timesteps {
        let angles: Vec<f64> = freqs.iter().map(|&f| f64::from(t as f32 * f)).collect();
        let sin = angles.iter().map(|a| a.sin());
        let cos = angles.iter().map(|a| a.cos());
        if config.flip_sin_to_cos {
            out.extend(cos.chain(sin));
        } else {
            out.extend(sin.chain(cos));
        }
        if config.dim % 2 == 1 {
            out.push(0.0);
        }
        debug_assert_eq!(out.len() % config.dim, 0, "{half}");
    }
    out
}
