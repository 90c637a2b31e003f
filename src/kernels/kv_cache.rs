//! A preallocated KV cache appended in place (`shaders/kv_cache.wgsl`).
//!
//! Keys and values live in `[batch, capacity, n_kv_heads, head_dim]` tensors sized once, from
//! the model's context; each step writes its new positions after the ones already there, and
//! the attention kernels read the first [`KvCache::len`] positions. Nothing is allocated per
//! token.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::{KernelCall, Position, prepare_at, same_dtype, to_u32};
use crate::tensor::{DType, Tensor};

const SHADER: ShaderSource = ShaderSource {
    name: "kv_cache.wgsl",
    body: include_str!("../../shaders/kv_cache.wgsl"),
    library: &[super::STEP],
};
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    new_len: u32,
    row: u32,
    capacity: u32,
}

fn key(dtype: DType) -> PipelineKey {
    PipelineKey::new(SHADER, "append", dtype, &[("WG", WG)])
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    DType::ALL.iter().map(|&d| key(d)).collect()
}

/// Keys and values of every position seen so far, for one attention layer.
pub struct KvCache {
    pub k: Tensor,
    pub v: Tensor,
    len: usize,
}

impl KvCache {
    /// An empty cache for `capacity` positions.
    pub fn new(
        gpu: &Gpu,
        batch: usize,
        capacity: usize,
        n_kv_heads: usize,
        head_dim: usize,
        dtype: DType,
    ) -> Result<KvCache> {
        let shape = [batch, capacity, n_kv_heads, head_dim];
        Ok(KvCache {
            k: Tensor::empty(gpu, &shape, dtype)?,
            v: Tensor::empty(gpu, &shape, dtype)?,
            len: 0,
        })
    }

    /// Positions filled so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.k.shape()[1]
    }

    /// The call that writes `k_new`, `v_new` (`[batch, new_len, n_kv_heads, head_dim]`) at
    /// positions `position .. position + new_len`. It does not change [`KvCache::len`]; see
    /// [`KvCache::append`] for that.
    pub fn write_call<'a>(
        &'a self,
        gpu: &Gpu,
        k_new: &'a Tensor,
        v_new: &'a Tensor,
        position: Position<'a>,
    ) -> Result<KernelCall<'a>> {
        let k = write_rows(gpu, k_new, &self.k, position)?;
        Ok(k.then(write_rows(gpu, v_new, &self.v, position)?))
    }

    /// Writes `k_new`, `v_new` after the positions already cached, runs it, and advances
    /// [`KvCache::len`].
    pub fn append(&mut self, gpu: &Gpu, k_new: &Tensor, v_new: &Tensor) -> Result<()> {
        self.write_call(gpu, k_new, v_new, Position::Fixed(self.len))?
            .run(gpu)?;
        self.len += k_new.shape()[1];
        Ok(())
    }
}

/// `cache[:, position .. position + new_len] = new`, for `new` `[batch, new_len, heads, dim]`
/// and `cache` `[batch, capacity, heads, dim]`.
pub fn write_rows<'a>(
    gpu: &Gpu,
    new: &'a Tensor,
    cache: &'a Tensor,
    position: Position<'a>,
) -> Result<KernelCall<'a>> {
    let op = "kv cache append";
    let dtype = same_dtype(op, &[new, cache])?;
    let (n, c) = (new.shape(), cache.shape());
    if n.len() != 4 || c.len() != 4 || n[0] != c[0] || n[2..] != c[2..] {
        return Err(Error::shape(
            op,
            format!(
                "new rows {n:?} do not fit the cache {c:?} ([batch, positions, heads, head_dim])"
            ),
        ));
    }
    let end = position.max() + n[1];
    if end > c[1] {
        return Err(Error::shape(
            op,
            format!("positions up to {end} exceed the cache capacity {}", c[1]),
        ));
    }
    let params = Params {
        len: to_u32(op, "length", new.len())?,
        new_len: to_u32(op, "new positions", n[1])?,
        row: to_u32(op, "row", n[2] * n[3])?,
        capacity: to_u32(op, "capacity", c[1])?,
    };
    let grid = gpu.grid(op, new.len().div_ceil(WG as usize) as u64)?;
    prepare_at(
        gpu,
        &key(dtype),
        &params,
        &[(1, new), (2, cache)],
        &position,
        grid,
    )
}
