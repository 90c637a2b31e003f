//! The arithmetic-ceiling probe (`shaders/fma_peak.wgsl`): chains of vector FMAs in
//! registers. Its GFLOP/s is the measured compute ceiling that `tessera bench` and
//! `tools/bench_table.py` compare the compute-bound kernels with.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::{KernelCall, prepare, same_dtype, to_u32};
use crate::tensor::{DType, Tensor};

const SHADER: ShaderSource = ShaderSource {
    name: "fma_peak.wgsl",
    body: include_str!("../../shaders/fma_peak.wgsl"),
    library: &[],
};
const WG: u32 = 256;
/// Independent vec4 chains per invocation (the shader's x0..x7).
pub const CHAINS: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    iterations: u32,
    a: f32,
    b: f32,
}

fn key(dtype: DType) -> PipelineKey {
    PipelineKey::new(SHADER, "fma_peak", dtype, &[("WG", WG)])
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    DType::ALL.iter().map(|&d| key(d)).collect()
}

/// FLOPs of one [`fma_peak`] call over `len` elements.
pub fn flops(len: usize, iterations: usize) -> f64 {
    super::product_f64(&[len, iterations, CHAINS * 4 * 2])
}

/// `dst = src`, computed the long way: `iterations` rounds of `CHAINS` vec4 FMAs per element.
pub fn fma_peak<'a>(
    gpu: &Gpu,
    src: &'a Tensor,
    dst: &'a Tensor,
    iterations: usize,
) -> Result<KernelCall<'a>> {
    let name = "fma_peak";
    let dtype = same_dtype(name, &[src, dst])?;
    if src.len() != dst.len() {
        return Err(Error::shape(
            name,
            format!("source {src:?} and destination {dst:?} differ"),
        ));
    }
    let params = Params {
        len: to_u32(name, "length", src.len())?,
        iterations: to_u32(name, "iterations", iterations)?,
        a: 1.0,
        b: 0.0,
    };
    let grid = gpu.grid(name, u64::from(params.len.div_ceil(WG)))?;
    prepare(gpu, &key(dtype), &params, &[(1, src), (2, dst)], grid)
}

/// f64 reference of [`fma_peak`]: the identity.
pub fn reference(src: &[f64]) -> Vec<f64> {
    src.to_vec()
}
