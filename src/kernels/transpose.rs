//! Batched 2-D transpose (`shaders/transpose.wgsl`): `[batch, rows, cols]` →
//! `[batch, cols, rows]`, e.g. NCHW feature maps to token-major for attention and back.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::{KernelCall, expect_shape, prepare, same_dtype, to_u32};
use crate::tensor::{DType, Tensor};

const SHADER: ShaderSource = ShaderSource {
    name: "transpose.wgsl",
    body: include_str!("../../shaders/transpose.wgsl"),
    library: &[],
};
const TILE: u32 = 16;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    _pad: [u32; 2],
}

fn key(dtype: DType) -> PipelineKey {
    PipelineKey::new(SHADER, "transpose", dtype, &[("TILE", TILE)])
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    DType::ALL.iter().map(|&d| key(d)).collect()
}

/// `out[b] = x[b]ᵀ` for `x` `[batch, rows, cols]` and `out` `[batch, cols, rows]`.
pub fn transpose<'a>(gpu: &Gpu, x: &'a Tensor, out: &'a Tensor) -> Result<KernelCall<'a>> {
    let op = "transpose";
    let dtype = same_dtype(op, &[x, out])?;
    let &[batch, rows, cols] = x.shape() else {
        return Err(Error::shape(
            op,
            format!("x is {:?}; expected [batch, rows, cols]", x.shape()),
        ));
    };
    expect_shape(op, "output", out, &[batch, cols, rows])?;
    let params = Params {
        rows: to_u32(op, "rows", rows)?,
        cols: to_u32(op, "cols", cols)?,
        _pad: [0; 2],
    };
    let limit = gpu.limits().max_compute_workgroups_per_dimension;
    let grid = [
        params.cols.div_ceil(TILE),
        params.rows.div_ceil(TILE),
        to_u32(op, "batch", batch)?,
    ];
    if grid.iter().any(|&g| g > limit) {
        return Err(Error::TooManyWorkgroups {
            what: format!("transpose of {rows}x{cols} x {batch}"),
            groups: u64::from(*grid.iter().max().expect("three")),
            limit,
        });
    }
    prepare(gpu, &key(dtype), &params, &[(1, x), (2, out)], grid)
}

/// f64 reference of [`transpose`].
pub fn reference(x: &[f64], batch: usize, rows: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for b in 0..batch {
        for r in 0..rows {
            for c in 0..cols {
                out[(b * cols + c) * rows + r] = x[(b * rows + r) * cols + c];
            }
        }
    }
    out
}
