//! RMSNorm and LayerNorm over the last axis (`shaders/norm.wgsl`).

use crate::error::Result;
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::{KernelCall, expect_shape, last_dim, prepare, same_dtype, to_u32};
use crate::tensor::{DType, Tensor};

const SHADER: ShaderSource = ShaderSource {
    name: "norm.wgsl",
    body: include_str!("../../shaders/norm.wgsl"),
    library: &[super::WORKGROUP_SUM],
};
/// Invocations per row; a power of two (the shader reduces in a tree).
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

fn key(entry: &'static str, dtype: DType) -> PipelineKey {
    PipelineKey::new(SHADER, entry, dtype, &[("WG", WG)])
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    DType::ALL
        .iter()
        .flat_map(|&d| [key("rms_norm", d), key("layer_norm", d)])
        .collect()
}

fn params(op: &'static str, x: &Tensor, weight: &Tensor, out: &Tensor, eps: f32) -> Result<Params> {
    let cols = last_dim(op, x)?;
    expect_shape(op, "weight", weight, &[cols])?;
    expect_shape(op, "output", out, x.shape())?;
    Ok(Params {
        rows: to_u32(op, "rows", x.len() / cols)?,
        cols: to_u32(op, "row length", cols)?,
        eps,
        _pad: 0,
    })
}

/// `out = x / sqrt(mean(x²) + eps) * weight` per row. `x`, `out`: `[..., dim]`; `weight`: `[dim]`.
pub fn rms_norm<'a>(
    gpu: &Gpu,
    x: &'a Tensor,
    weight: &'a Tensor,
    eps: f32,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let name = "rms_norm";
    let dtype = same_dtype(name, &[x, weight, out])?;
    let p = params(name, x, weight, out, eps)?;
    let grid = gpu.grid(name, u64::from(p.rows))?;
    prepare(
        gpu,
        &key(name, dtype),
        &p,
        &[(1, x), (2, weight), (4, out)],
        grid,
    )
}

/// `out = (x - mean) / sqrt(var + eps) * weight + bias` per row. `x`, `out`: `[..., dim]`;
/// `weight`, `bias`: `[dim]`.
pub fn layer_norm<'a>(
    gpu: &Gpu,
    x: &'a Tensor,
    weight: &'a Tensor,
    bias: &'a Tensor,
    eps: f32,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let name = "layer_norm";
    let dtype = same_dtype(name, &[x, weight, bias, out])?;
    let p = params(name, x, weight, out, eps)?;
    expect_shape(name, "bias", bias, weight.shape())?;
    let grid = gpu.grid(name, u64::from(p.rows))?;
    let tensors = [(1, x), (2, weight), (3, bias), (4, out)];
    prepare(gpu, &key(name, dtype), &p, &tensors, grid)
}

/// f64 reference of [`rms_norm`] over rows of length `weight.len()`.
pub fn reference_rms_norm(x: &[f64], weight: &[f64], eps: f64) -> Vec<f64> {
    x.chunks(weight.len())
        .flat_map(|row| {
            let mean_sq = row.iter().map(|v| v * v).sum::<f64>() / row.len() as f64;
            let inv = 1.0 / (mean_sq + eps).sqrt();
            row.iter().zip(weight).map(move |(v, w)| v * inv * w)
        })
        .collect()
}

/// f64 reference of [`layer_norm`] over rows of length `weight.len()`.
pub fn reference_layer_norm(x: &[f64], weight: &[f64], bias: &[f64], eps: f64) -> Vec<f64> {
    x.chunks(weight.len())
        .flat_map(|row| {
            let n = row.len() as f64;
            let mean = row.iter().sum::<f64>() / n;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            let inv = 1.0 / (var + eps).sqrt();
            row.iter()
                .zip(weight.iter().zip(bias))
                .map(move |(v, (w, b))| (v - mean) * inv * w + b)
        })
        .collect()
}
