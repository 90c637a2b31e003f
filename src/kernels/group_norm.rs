//! GroupNorm over NCHW tensors with a per-channel affine transform and an optional fused SiLU
//! (`shaders/group_norm.wgsl`).

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::{KernelCall, expect_shape, prepare, same_dtype, to_u32};
use crate::tensor::{DType, Tensor};

const SHADER: ShaderSource = ShaderSource {
    name: "group_norm.wgsl",
    body: include_str!("../../shaders/group_norm.wgsl"),
    library: &[super::WORKGROUP_SUM],
};
/// Invocations per group; a power of two (the shader reduces in a tree).
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total_groups: u32,
    groups: u32,
    group_len: u32,
    spatial: u32,
    channels_per_group: u32,
    eps: f32,
    _pad: [u32; 2],
}

fn key(dtype: DType, silu: bool) -> PipelineKey {
    PipelineKey::new(
        SHADER,
        "group_norm",
        dtype,
        &[("WG", WG), ("SILU", u32::from(silu))],
    )
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    DType::ALL
        .iter()
        .flat_map(|&d| [key(d, false), key(d, true)])
        .collect()
}

/// `out = (silu?)(group_norm(x) · weight + bias)`. `x`, `out`: `[batch, channels, ...]`;
/// `weight`, `bias`: `[channels]`; `groups` divides `channels`.
#[allow(clippy::too_many_arguments)]
pub fn group_norm<'a>(
    gpu: &Gpu,
    x: &'a Tensor,
    weight: &'a Tensor,
    bias: &'a Tensor,
    groups: usize,
    eps: f32,
    silu: bool,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "group_norm";
    let dtype = same_dtype(op, &[x, weight, bias, out])?;
    let shape = x.shape();
    if shape.len() < 2 {
        return Err(Error::shape(
            op,
            format!("x is {shape:?}; expected [batch, channels, ...]"),
        ));
    }
    let (batch, channels) = (shape[0], shape[1]);
    if groups == 0 || channels % groups != 0 {
        return Err(Error::shape(
            op,
            format!("{groups} groups do not divide {channels} channels"),
        ));
    }
    expect_shape(op, "weight", weight, &[channels])?;
    expect_shape(op, "bias", bias, &[channels])?;
    expect_shape(op, "output", out, shape)?;
    let spatial: usize = shape[2..].iter().product();
    let params = Params {
        total_groups: to_u32(op, "groups in the batch", batch * groups)?,
        groups: to_u32(op, "groups", groups)?,
        group_len: to_u32(op, "group length", channels / groups * spatial)?,
        spatial: to_u32(op, "spatial size", spatial)?,
        channels_per_group: to_u32(op, "channels per group", channels / groups)?,
        eps,
        _pad: [0; 2],
    };
    let grid = gpu.grid(op, u64::from(params.total_groups))?;
    let tensors = [(1, x), (2, weight), (3, bias), (4, out)];
    prepare(gpu, &key(dtype, silu), &params, &tensors, grid)
}

/// f64 reference of [`group_norm`] for `x` `[batch, channels, spatial]` (flattened).
pub fn reference(
    x: &[f64],
    weight: &[f64],
    bias: &[f64],
    groups: usize,
    spatial: usize,
    eps: f64,
    silu: bool,
) -> Vec<f64> {
    let channels_per_group = weight.len() / groups;
    x.chunks(channels_per_group * spatial)
        .enumerate()
        .flat_map(|(gi, group)| {
            let n = group.len() as f64;
            let mean = group.iter().sum::<f64>() / n;
            let var = group.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            let inv = 1.0 / (var + eps).sqrt();
            let first_channel = (gi % groups) * channels_per_group;
            group.iter().enumerate().map(move |(j, v)| {
                let c = first_channel + j / spatial;
                let y = (v - mean) * inv * weight[c] + bias[c];
                if silu { y / (1.0 + (-y).exp()) } else { y }
            })
        })
        .collect()
}
