//! A paged KV cache's kernels: keys and values of many sequences in fixed-size blocks of one
//! pool, written row by row to the places the host chose (`shaders/paged_kv_write.wgsl`) and
//! read through per-sequence block tables by attention (`shaders/paged_attention.wgsl`).
//!
//! Layouts: the pools are `[pool_rows, n_kv_heads, head_dim]` with `pool_rows = blocks ·
//! block_size`; a sequence's block table is a run of `table` (u32 block ids), and its key `j`
//! sits at pool row `table[first + j / block_size] · block_size + j % block_size`. Query rows
//! (`[rows, n_heads, head_dim]`) each name their table run and position in `row_info`
//! (`[rows, 2]` u32: `first`, `position`), so one call serves decode rows of many sequences
//! and the rows of a prompt chunk alike. Which blocks belong to whom is the host's business
//! (the models' block allocator); the kernels never read past the table or the pool.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::attention::{Scores, max_grid};
use crate::kernels::{KernelCall, prepare, same_dtype, to_u32};
use crate::tensor::{DType, Tensor};

const ATTENTION: ShaderSource = ShaderSource {
    name: "paged_attention.wgsl",
    body: include_str!("../../shaders/paged_attention.wgsl"),
    library: &[super::SOFTCAP, super::WORKGROUP_SUM],
};
const WRITE: ShaderSource = ShaderSource {
    name: "paged_kv_write.wgsl",
    body: include_str!("../../shaders/paged_kv_write.wgsl"),
    library: &[],
};
/// Invocations per attention workgroup (keys per tile).
const ATTENTION_WG: u32 = 64;
/// Output dimensions one attention invocation holds (the shader's `OUT_PER_LANE`).
const OUT_PER_LANE: usize = 4;
/// The largest head size the attention kernel takes.
pub const MAX_HEAD_DIM: usize = ATTENTION_WG as usize * OUT_PER_LANE;
const WRITE_WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttentionParams {
    n_heads: u32,
    n_kv_heads: u32,
    block_size: u32,
    pool_rows: u32,
    table_len: u32,
    window: u32,
    scale: f32,
    softcap: f32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct WriteParams {
    len: u32,
    row: u32,
    pool_rows: u32,
    _pad: u32,
}

fn attention_key(dtype: DType, head_dim: u32) -> PipelineKey {
    let overrides = [("HEAD_DIM", head_dim), ("WG", ATTENTION_WG)];
    PipelineKey::new(ATTENTION, "paged_attention", dtype, &overrides)
}

fn write_key(dtype: DType) -> PipelineKey {
    PipelineKey::new(WRITE, "write_rows", dtype, &[("WG", WRITE_WG)])
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    let mut keys = Vec::new();
    for dtype in DType::ALL {
        keys.push(write_key(dtype));
        for d in super::attention::COMMON_HEAD_DIMS {
            keys.push(attention_key(dtype, d as u32));
        }
    }
    keys
}

fn require_u32(op: &'static str, what: &str, t: &Tensor) -> Result<()> {
    if t.dtype() != DType::U32 {
        return Err(Error::DType {
            op,
            detail: format!("{what} must be u32, not {}", t.dtype()),
        });
    }
    Ok(())
}

/// `[rows, heads, head_dim]` of a 3-D tensor (or `[1, rows, heads, head_dim]`).
fn rows_heads_dim(op: &'static str, what: &str, t: &Tensor) -> Result<[usize; 3]> {
    match *t.shape() {
        [r, h, d] | [1, r, h, d] => Ok([r, h, d]),
        _ => Err(Error::shape(
            op,
            format!(
                "{what} is {:?}; expected [rows, heads, head_dim]",
                t.shape()
            ),
        )),
    }
}

/// `pool[slots[r]] = new[r]` for each row of `new` (`[rows, n_kv_heads, head_dim]`) into
/// `pool` (`[pool_rows, n_kv_heads, head_dim]`); `slots`: `[rows]` u32. A slot past the pool
/// is skipped (the host never asks for one).
pub fn write_rows<'a>(
    gpu: &Gpu,
    new: &'a Tensor,
    slots: &'a Tensor,
    pool: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "paged kv write";
    let dtype = same_dtype(op, &[new, pool])?;
    require_u32(op, "slots", slots)?;
    let [rows, heads, dim] = rows_heads_dim(op, "the new rows", new)?;
    let [pool_rows, pool_heads, pool_dim] = rows_heads_dim(op, "the pool", pool)?;
    if (heads, dim) != (pool_heads, pool_dim) || slots.len() != rows {
        return Err(Error::shape(
            op,
            format!(
                "new rows {:?} with {} slots do not fit the pool {:?}",
                new.shape(),
                slots.len(),
                pool.shape()
            ),
        ));
    }
    let params = WriteParams {
        len: to_u32(op, "length", new.len())?,
        row: to_u32(op, "row", heads * dim)?,
        pool_rows: to_u32(op, "pool rows", pool_rows)?,
        _pad: 0,
    };
    let grid = gpu.grid(op, new.len().div_ceil(WRITE_WG as usize) as u64)?;
    prepare(
        gpu,
        &write_key(dtype),
        &params,
        &[(1, new), (2, slots), (3, pool)],
        grid,
    )
}

/// The problem a paged-attention call solves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagedDims {
    pub rows: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub pool_rows: usize,
    pub block_size: usize,
}

/// Attention of each query row of `q` (`[rows, n_heads, head_dim]`) over its own sequence's
/// keys in the pools `k`, `v` (`[pool_rows, n_kv_heads, head_dim]`), found through `row_info`
/// (`[rows, 2]` u32: table start, position) and `table` (u32 block ids), with `scores`'
/// scale, soft-cap and window; causal (a row sees keys up to its own position).
#[allow(clippy::too_many_arguments)]
pub fn attention<'a>(
    gpu: &Gpu,
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    row_info: &'a Tensor,
    table: &'a Tensor,
    block_size: usize,
    scores: impl Into<Scores>,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "paged attention";
    let scores = scores.into();
    let dtype = same_dtype(op, &[q, k, v, out])?;
    require_u32(op, "row_info", row_info)?;
    require_u32(op, "the block table", table)?;
    let [rows, n_heads, head_dim] = rows_heads_dim(op, "q", q)?;
    let [pool_rows, n_kv_heads, kd] = rows_heads_dim(op, "k", k)?;
    if v.shape() != k.shape() || out.len() != q.len() || kd != head_dim {
        return Err(Error::shape(
            op,
            format!(
                "q {:?}, k {:?}, v {:?}, out {:?} disagree",
                q.shape(),
                k.shape(),
                v.shape(),
                out.shape()
            ),
        ));
    }
    if n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
        return Err(Error::shape(
            op,
            format!("{n_heads} query heads cannot share {n_kv_heads} kv heads"),
        ));
    }
    if head_dim == 0 || head_dim > MAX_HEAD_DIM {
        return Err(Error::shape(
            op,
            format!("head_dim {head_dim} is outside 1 ..= {MAX_HEAD_DIM}"),
        ));
    }
    if row_info.len() != 2 * rows {
        return Err(Error::shape(
            op,
            format!("row_info {:?} is not [{rows}, 2]", row_info.shape()),
        ));
    }
    if block_size == 0 || !pool_rows.is_multiple_of(block_size) {
        return Err(Error::shape(
            op,
            format!("a pool of {pool_rows} rows is not made of blocks of {block_size}"),
        ));
    }
    let params = AttentionParams {
        n_heads: to_u32(op, "n_heads", n_heads)?,
        n_kv_heads: to_u32(op, "n_kv_heads", n_kv_heads)?,
        block_size: to_u32(op, "block_size", block_size)?,
        pool_rows: to_u32(op, "pool rows", pool_rows)?,
        table_len: to_u32(op, "table length", table.len())?,
        window: scores.window(op)?,
        scale: scores.scale,
        softcap: scores.cap(op)?,
    };
    to_u32(op, "pool elements", k.len())?;
    let grid = max_grid(gpu, op, &[n_heads, rows, 1])?;
    prepare(
        gpu,
        &attention_key(dtype, to_u32(op, "head_dim", head_dim)?),
        &params,
        &[(1, q), (2, k), (3, v), (4, row_info), (5, table), (6, out)],
        [grid[0], grid[1], grid[2]],
    )
}

/// f64 reference of [`attention`]: `row_info` as (table start, position) pairs.
#[allow(clippy::too_many_arguments)]
pub fn reference(
    d: &PagedDims,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    row_info: &[(usize, usize)],
    table: &[usize],
    scale: f64,
    softcap: Option<f64>,
    window: Option<usize>,
) -> Vec<f64> {
    let (hd, group) = (d.head_dim, d.n_heads / d.n_kv_heads);
    let mut out = vec![0.0; q.len()];
    for (r, &(first, position)) in row_info.iter().enumerate() {
        let from = window.map_or(0, |w| (position + 1).saturating_sub(w));
        let pool_row = |j: usize| table[first + j / d.block_size] * d.block_size + j % d.block_size;
        for h in 0..d.n_heads {
            let q_row = (r * d.n_heads + h) * hd;
            let rows: Vec<usize> = (from..=position)
                .map(|j| (pool_row(j) * d.n_kv_heads + h / group) * hd)
                .collect();
            let query = &q[q_row..q_row + hd];
            let attended = super::attention::reference_row(query, k, v, &rows, scale, softcap);
            out[q_row..q_row + hd].copy_from_slice(&attended);
        }
    }
    out
}
