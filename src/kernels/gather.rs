//! Row gather (`shaders/gather.wgsl`): embedding lookup by token id, also over a table split
//! into parts that each fit one storage binding.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::{KernelCall, prepare, same_dtype, to_u32};
use crate::tensor::{DType, Tensor};

const SHADER: ShaderSource = ShaderSource {
    name: "gather.wgsl",
    body: include_str!("../../shaders/gather.wgsl"),
    library: &[],
};
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    width: u32,
    row_start: u32,
    table_rows: u32,
}

fn key(dtype: DType) -> PipelineKey {
    PipelineKey::new(SHADER, "gather", dtype, &[("WG", WG)])
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    DType::ALL.iter().map(|&d| key(d)).collect()
}

/// `out[r] = table[ids[r] - row_start]` for the ids that fall in this part of the table,
/// `row_start .. row_start + table.rows`. `ids`: `[n]` u32; `table`: `[rows, width]`;
/// `out`: `[n, width]` (any shape of that many elements).
pub fn gather<'a>(
    gpu: &Gpu,
    ids: &'a Tensor,
    table: &'a Tensor,
    row_start: usize,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "gather";
    let dtype = same_dtype(op, &[table, out])?;
    if ids.dtype() != DType::U32 {
        return Err(Error::DType {
            op,
            detail: format!("ids must be u32, not {}", ids.dtype()),
        });
    }
    let &[rows, width] = table.shape() else {
        return Err(Error::shape(
            op,
            format!("the table is {table:?}, not [rows, width]"),
        ));
    };
    let n = ids.len();
    if out.len() != n * width {
        return Err(Error::shape(
            op,
            format!(
                "{n} ids of rows of {width} need {} outputs, {out:?} has {}",
                n * width,
                out.len()
            ),
        ));
    }
    let params = Params {
        n: to_u32(op, "ids", n)?,
        width: to_u32(op, "width", width)?,
        row_start: to_u32(op, "row_start", row_start)?,
        table_rows: to_u32(op, "rows", rows)?,
    };
    to_u32(op, "output length", n * width)?;
    let grid = gpu.grid(op, (n * width).div_ceil(WG as usize) as u64)?;
    prepare(
        gpu,
        &key(dtype),
        &params,
        &[(1, ids), (2, table), (3, out)],
        grid,
    )
}

/// f64 reference of [`gather`] over a whole table (`[rows, width]`, flattened).
pub fn reference(ids: &[usize], table: &[f64], width: usize) -> Vec<f64> {
    ids.iter()
        .flat_map(|&id| table[id * width..(id + 1) * width].iter().copied())
        .collect()
}
