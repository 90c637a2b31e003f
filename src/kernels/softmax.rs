//! Softmax over the last axis (`shaders/softmax.wgsl`), numerically stable for any row length.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::{KernelCall, last_dim, prepare, same_dtype, to_u32};
use crate::tensor::{DType, Tensor};

const SHADER: ShaderSource = ShaderSource {
    name: "softmax.wgsl",
    body: include_str!("../../shaders/softmax.wgsl"),
    library: &[],
};
/// Invocations per row; a power of two (the shader reduces in a tree).
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    _pad: [u32; 2],
}

fn key(dtype: DType) -> PipelineKey {
    PipelineKey::new(SHADER, "softmax", dtype, &[("WG", WG)])
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    DType::ALL.iter().map(|&d| key(d)).collect()
}

/// `out = softmax(x)` over the last axis. `x`: `[..., cols]`, `out`: the same shape.
pub fn softmax<'a>(gpu: &Gpu, x: &'a Tensor, out: &'a Tensor) -> Result<KernelCall<'a>> {
    let name = "softmax";
    let dtype = same_dtype(name, &[x, out])?;
    if x.shape() != out.shape() {
        return Err(Error::shape(
            name,
            format!("input {:?} vs output {:?}", x.shape(), out.shape()),
        ));
    }
    let cols = last_dim(name, x)?;
    let rows = x.len() / cols;
    let params = Params {
        rows: to_u32(name, "rows", rows)?,
        cols: to_u32(name, "row length", cols)?,
        _pad: [0; 2],
    };
    let grid = gpu.grid(name, rows as u64)?;
    prepare(gpu, &key(dtype), &params, &[(1, x), (2, out)], grid)
}

/// f64 reference of [`softmax`] over rows of length `cols`.
pub fn reference(x: &[f64], cols: usize) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|row| {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = row.iter().map(|&v| (v - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            exps.into_iter().map(move |e| e / sum)
        })
        .collect()
}
