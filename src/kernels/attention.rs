//! Attention without a materialised score matrix: tiled flash attention for prefill
//! (`shaders/flash_attention.wgsl`) and split-KV decode attention (`shaders/decode_attention.wgsl`).
//!
//! Layouts: `q` and `out` are `[batch, q_len, n_heads, head_dim]`; `k` and `v` are
//! `[batch, kv_capacity, n_kv_heads, head_dim]`. The queries are the tokens at positions
//! `past .. past + q_len`, and keys `0 .. kv_len` with `kv_len = past + q_len` are used (a
//! preallocated KV cache, see [`super::kv_cache`], or plain tensors with
//! `kv_capacity == kv_len`); under a causal mask query `i` sees keys `0 ..= past + i`.
//! `past` is a [`Position`]: fixed, or read per run from a step buffer. `n_kv_heads` divides
//! `n_heads`; query head `h` reads kv head `h / (n_heads / n_kv_heads)`.

use crate::error::{Error, Result};
use crate::gpu::{CoopFacts, Gpu, PipelineKey, ShaderSource, Tunable};
use crate::kernels::{
    CoopRequest, KernelCall, Position, SOFTCAP, STEP, WORKGROUP_SUM, coop_choice, expect_shape,
    prepare, prepare_at, same_dtype, to_u32,
};
use crate::tensor::{DType, Tensor};

/// The parameters both flash kernels take (`FlashParams`).
const FLASH_PARAMS: &str = include_str!("../../shaders/lib/flash_params.wgsl");

const FLASH: ShaderSource = ShaderSource {
    name: "flash_attention.wgsl",
    body: include_str!("../../shaders/flash_attention.wgsl"),
    library: &[FLASH_PARAMS, SOFTCAP, STEP],
};
const FLASH_COOP: ShaderSource = ShaderSource {
    name: "flash_attention_coop.wgsl",
    body: include_str!("../../shaders/flash_attention_coop.wgsl"),
    library: &[FLASH_PARAMS, SOFTCAP, STEP],
};
const DECODE: ShaderSource = ShaderSource {
    name: "decode_attention.wgsl",
    body: include_str!("../../shaders/decode_attention.wgsl"),
    library: &[STEP, SOFTCAP, WORKGROUP_SUM],
};

/// Which kernel computes prefill attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlashPath {
    /// The cooperative-matrix kernel where the adapter has it, f16 runs, and `tessera tune`
    /// measured it faster; else the scalar one.
    Auto,
    /// `shaders/flash_attention.wgsl`: f32 arithmetic on workgroup tiles.
    Scalar,
    /// `shaders/flash_attention_coop.wgsl`: QKᵀ and PV on cooperative matrices (f16 only).
    Coop,
}

const WG: u32 = 256;
/// Output values each flash-attention invocation holds (the shader's `MAX_OUT`).
const MAX_OUT: u32 = 8;
/// Keys per decode split (the decode shader's `WG`).
const DECODE_SPLIT: u32 = 256;
/// Workgroup memory the default tiles are chosen to fit (most adapters have at least this).
const DEFAULT_WORKGROUP_BYTES: u32 = 32 << 10;
/// Head sizes whose shader variants the validation test compiles.
pub const COMMON_HEAD_DIMS: [usize; 6] = [32, 64, 80, 96, 128, 256];

/// The problem an attention call solves, after shape checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionDims {
    pub batch: usize,
    pub q_len: usize,
    pub kv_len: usize,
    pub kv_capacity: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl AttentionDims {
    /// `4·B·H·Sq·Skv·D` (QKᵀ and PV), halved under a causal mask.
    pub fn flops(&self, causal: bool) -> f64 {
        let full = 4.0
            * super::product_f64(&[
                self.batch,
                self.n_heads,
                self.q_len,
                self.kv_len,
                self.head_dim,
            ]);
        if causal { full / 2.0 } else { full }
    }
}

/// How q·k becomes an attention logit, and which keys a query sees: times `scale`, then,
/// with a cap c, c·tanh(s / c) (Gemma 2's attention-logit soft-capping); with a `window` of
/// W positions, the query at position q sees only keys q - W + 1 ..= q (sliding-window
/// layers). An `f32` converts to an uncapped, unwindowed scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scores {
    pub scale: f32,
    pub softcap: Option<f32>,
    pub window: Option<usize>,
}

impl From<f32> for Scores {
    fn from(scale: f32) -> Self {
        Scores {
            scale,
            softcap: None,
            window: None,
        }
    }
}

impl Scores {
    /// The shaders' `window` (0 = none).
    pub(crate) fn window(&self, op: &'static str) -> Result<u32> {
        match self.window {
            None => Ok(0),
            Some(0) => Err(Error::shape(op, "a sliding window of 0 positions")),
            Some(w) => to_u32(op, "sliding window", w),
        }
    }

    /// The shaders' `softcap` (0 = none), checked finite and positive.
    pub(crate) fn cap(&self, op: &'static str) -> Result<f32> {
        match self.softcap {
            None => Ok(0.0),
            Some(c) if c.is_finite() && c > 0.0 => Ok(c),
            Some(c) => Err(Error::shape(
                op,
                format!("a logit soft-cap must be finite and positive, not {c}"),
            )),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FlashParams {
    q_len: u32,
    n_heads: u32,
    n_kv_heads: u32,
    kv_capacity: u32,
    causal: u32,
    scale: f32,
    softcap: f32,
    window: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DecodeParams {
    n_heads: u32,
    n_kv_heads: u32,
    kv_capacity: u32,
    n_splits: u32,
    scale: f32,
    softcap: f32,
    window: u32,
    _pad: u32,
}

/// Query rows and keys per flash-attention block for `head_dim`, the largest that fit
/// `workgroup_bytes` of workgroup memory and the registers of 256 invocations.
fn flash_tiles(head_dim: u32, workgroup_bytes: u32) -> Option<(u32, u32)> {
    let (mut bq, mut bk) = match head_dim {
        0..=64 => (32, 32),
        65..=128 => (16, 32),
        _ => (8, 16),
    };
    let bytes =
        |bq: u32, bk: u32| 4 * (bq * (head_dim + 1) + bk * (head_dim + 1) + bq * bk + 3 * bq);
    while bq * head_dim > MAX_OUT * WG || bytes(bq, bk) > workgroup_bytes {
        if bk > 8 {
            bk /= 2;
        } else if bq > 1 {
            bq /= 2;
        } else {
            return None;
        }
    }
    Some((bq, bk))
}

/// Workgroup bytes of `flash_attention_coop.wgsl` with `nsg` subgroups of fragment size `f`.
fn coop_flash_bytes(f: u32, head_dim: u32, nsg: u32) -> u32 {
    let q = nsg * f * head_dim * 2;
    let kv = 2 * f * head_dim * 2;
    let scores = nsg * f * f * (4 + 2);
    let out = nsg * f * head_dim * 4;
    let rows = 3 * nsg * f * 4;
    q + kv + scores + out + rows
}

/// Subgroups per workgroup of the cooperative flash kernel: the most (4, 2 or 1) whose tiles
/// fit `memory` bytes and `invocations`.
fn coop_flash_subgroups(
    coop: CoopFacts,
    head_dim: u32,
    memory: u32,
    invocations: u32,
) -> Option<u32> {
    [4, 2, 1].into_iter().find(|&nsg| {
        coop_flash_bytes(coop.fragment, head_dim, nsg) <= memory
            && nsg * coop.subgroup <= invocations
    })
}

fn coop_flash_key(head_dim: u32, nsg: u32, coop: CoopFacts) -> PipelineKey {
    let overrides = [
        ("HEAD_DIM", head_dim),
        ("NSG", nsg),
        ("WG", nsg * coop.subgroup),
    ];
    PipelineKey::new(FLASH_COOP, "flash_attention_coop", DType::F16, &overrides)
        .with_coop_fragment(coop.fragment)
}

fn flash_key(dtype: DType, head_dim: u32, bq: u32, bk: u32) -> PipelineKey {
    let overrides = [("HEAD_DIM", head_dim), ("BQ", bq), ("BK", bk), ("WG", WG)];
    PipelineKey::new(FLASH, "flash_attention", dtype, &overrides)
}

fn decode_key(entry: &'static str, dtype: DType, head_dim: u32) -> PipelineKey {
    let overrides = [("HEAD_DIM", head_dim), ("WG", DECODE_SPLIT)];
    PipelineKey::new(DECODE, entry, dtype, &overrides)
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    let mut keys = Vec::new();
    for dtype in DType::ALL {
        for d in COMMON_HEAD_DIMS.map(|d| d as u32) {
            let (bq, bk) = flash_tiles(d, DEFAULT_WORKGROUP_BYTES).expect("common sizes fit");
            keys.push(flash_key(dtype, d, bq, bk));
            keys.push(decode_key("decode_partial", dtype, d));
            keys.push(decode_key("decode_combine", dtype, d));
        }
    }
    for (fragment, subgroup) in [(8, 8), (16, 32)] {
        let coop = CoopFacts { fragment, subgroup };
        for d in COMMON_HEAD_DIMS.map(|d| d as u32) {
            if d % fragment == 0
                && let Some(nsg) = coop_flash_subgroups(coop, d, DEFAULT_WORKGROUP_BYTES, 1024)
            {
                keys.push(coop_flash_key(d, nsg, coop));
            }
        }
    }
    keys
}

/// Checks the operands' shapes and works out the problem size, `kv_len` being the most keys
/// the call will attend to.
pub fn dims(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    kv_len: usize,
    out: &Tensor,
) -> Result<AttentionDims> {
    let op = "attention";
    let [batch, q_len, n_heads, head_dim] = rank4(op, "q", q)?;
    let [kb, kv_capacity, n_kv_heads, kd] = rank4(op, "k", k)?;
    expect_shape(op, "v", v, k.shape())?;
    expect_shape(op, "output", out, q.shape())?;
    if kb != batch || kd != head_dim {
        return Err(Error::shape(
            op,
            format!(
                "q {:?} and k {:?} differ in batch or head_dim",
                q.shape(),
                k.shape()
            ),
        ));
    }
    if n_heads % n_kv_heads != 0 {
        return Err(Error::shape(
            op,
            format!("{n_kv_heads} kv heads do not divide {n_heads} query heads"),
        ));
    }
    if kv_len == 0 || kv_len > kv_capacity || q_len > kv_len {
        return Err(Error::shape(
            op,
            format!(
                "kv_len {kv_len} must be at least q_len {q_len} and at most the k/v \
                 capacity {kv_capacity}"
            ),
        ));
    }
    Ok(AttentionDims {
        batch,
        q_len,
        kv_len,
        kv_capacity,
        n_heads,
        n_kv_heads,
        head_dim,
    })
}

fn rank4(op: &'static str, what: &str, t: &Tensor) -> Result<[usize; 4]> {
    <[usize; 4]>::try_from(t.shape()).map_err(|_| {
        Error::shape(
            op,
            format!(
                "{what} is {:?}; expected [batch, seq, heads, head_dim]",
                t.shape()
            ),
        )
    })
}

pub(crate) fn max_grid(gpu: &Gpu, what: &str, counts: &[usize]) -> Result<Vec<u32>> {
    let limit = gpu.limits().max_compute_workgroups_per_dimension;
    counts
        .iter()
        .map(|&n| match u32::try_from(n) {
            Ok(n) if n <= limit => Ok(n),
            _ => Err(Error::TooManyWorkgroups {
                what: what.to_string(),
                groups: n as u64,
                limit,
            }),
        })
        .collect()
}

/// Attention with the kernel chosen by shape: split-KV decode for one query per sequence,
/// flash attention otherwise.
#[allow(clippy::too_many_arguments)]
pub fn attention<'a>(
    gpu: &Gpu,
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    past: Position<'a>,
    causal: bool,
    scores: impl Into<Scores>,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let scores = scores.into();
    if q.shape().get(1) == Some(&1) {
        // A single query is the last position: the causal mask hides nothing from it.
        decode_attention(gpu, q, k, v, past, scores, out)
    } else {
        flash_attention(gpu, q, k, v, past, causal, scores, out)
    }
}

/// Tiled flash attention (any `q_len`), `softmax(scores(q·kᵀ) + mask)·v`.
#[allow(clippy::too_many_arguments)]
pub fn flash_attention<'a>(
    gpu: &Gpu,
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    past: Position<'a>,
    causal: bool,
    scores: impl Into<Scores>,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    flash_attention_with(gpu, q, k, v, past, causal, scores, out, FlashPath::Auto)
}

/// [`flash_attention`] on the kernel `path` names.
#[allow(clippy::too_many_arguments)]
pub fn flash_attention_with<'a>(
    gpu: &Gpu,
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    past: Position<'a>,
    causal: bool,
    scores: impl Into<Scores>,
    out: &'a Tensor,
    path: FlashPath,
) -> Result<KernelCall<'a>> {
    let op = "flash attention";
    let scores = scores.into();
    let dtype = same_dtype(op, &[q, k, v, out])?;
    let q_len = q.shape().get(1).copied().unwrap_or(0);
    let d = dims(q, k, v, past.max() + q_len, out)?;
    let head_dim = to_u32(op, "head_dim", d.head_dim)?;
    let request = match path {
        FlashPath::Scalar => CoopRequest::Never,
        FlashPath::Coop => CoopRequest::Always,
        FlashPath::Auto => CoopRequest::IfTuned(Tunable::FlashAttentionF16),
    };
    let coop = coop_choice(gpu, op, dtype, request, || coop_flash_facts(gpu, head_dim))?;
    let params = FlashParams {
        q_len: to_u32(op, "q_len", d.q_len)?,
        n_heads: to_u32(op, "n_heads", d.n_heads)?,
        n_kv_heads: to_u32(op, "n_kv_heads", d.n_kv_heads)?,
        kv_capacity: to_u32(op, "kv_capacity", d.kv_capacity)?,
        causal: u32::from(causal),
        scale: scores.scale,
        softcap: scores.cap(op)?,
        window: scores.window(op)?,
    };
    // Query rows per workgroup, and the variant.
    let (rows, key) = match coop {
        Some((coop, nsg)) => (nsg * coop.fragment, coop_flash_key(head_dim, nsg, coop)),
        None => {
            let memory = gpu.limits().max_compute_workgroup_storage_size;
            let (bq, bk) = flash_tiles(head_dim, memory).ok_or_else(|| Error::TooLarge {
                what: format!("flash attention tiles for head_dim {head_dim}"),
                bytes: 4 * 2 * (u64::from(head_dim) + 1),
                limit_name: "max_compute_workgroup_storage_size",
                limit: u64::from(memory),
            })?;
            (bq, flash_key(dtype, head_dim, bq, bk))
        }
    };
    let grid = max_grid(
        gpu,
        op,
        &[d.q_len.div_ceil(rows as usize), d.n_heads, d.batch],
    )?;
    let tensors = [(1, q), (2, k), (3, v), (4, out)];
    prepare_at(
        gpu,
        &key,
        &params,
        &tensors,
        &past,
        [grid[0], grid[1], grid[2]],
    )
}

/// The adapter's cooperative matrices and the subgroups per workgroup for `head_dim`, or
/// why the cooperative flash kernel cannot run here.
fn coop_flash_facts(gpu: &Gpu, head_dim: u32) -> Result<(CoopFacts, u32)> {
    let missing = |feature: &'static str| Error::MissingFeature {
        what: format!("cooperative-matrix flash attention (head_dim {head_dim})"),
        feature,
        adapter: gpu.report().name.clone(),
    };
    let coop = gpu.cooperative_f16().map_err(missing)?;
    if !head_dim.is_multiple_of(coop.fragment) {
        return Err(missing(
            "a head_dim that is a multiple of the fragment size",
        ));
    }
    let limits = gpu.limits();
    let invocations = limits
        .max_compute_invocations_per_workgroup
        .min(limits.max_compute_workgroup_size_x);
    let nsg = coop_flash_subgroups(
        coop,
        head_dim,
        limits.max_compute_workgroup_storage_size,
        invocations,
    )
    .ok_or_else(|| missing("workgroup memory for one subgroup's tiles"))?;
    Ok((coop, nsg))
}

/// Split-KV decode attention for one query per sequence (`q`: `[batch, 1, n_heads, head_dim]`)
/// against keys `0 ..= past`. Each split of 256 keys is reduced by its own workgroup, then the
/// splits are combined; the grid covers the largest `past` the call may run at.
pub fn decode_attention<'a>(
    gpu: &Gpu,
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    past: Position<'a>,
    scores: impl Into<Scores>,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "decode attention";
    let scores = scores.into();
    let dtype = same_dtype(op, &[q, k, v, out])?;
    let d = dims(q, k, v, past.max() + 1, out)?;
    if d.q_len != 1 {
        return Err(Error::shape(
            op,
            format!("needs one query per sequence, not {}", d.q_len),
        ));
    }
    let head_dim = to_u32(op, "head_dim", d.head_dim)?;
    let n_splits = d.kv_len.div_ceil(DECODE_SPLIT as usize);
    let params = DecodeParams {
        n_heads: to_u32(op, "n_heads", d.n_heads)?,
        n_kv_heads: to_u32(op, "n_kv_heads", d.n_kv_heads)?,
        kv_capacity: to_u32(op, "kv_capacity", d.kv_capacity)?,
        n_splits: to_u32(op, "splits", n_splits)?,
        scale: scores.scale,
        softcap: scores.cap(op)?,
        window: scores.window(op)?,
        _pad: 0,
    };
    let partial_o = Tensor::empty(gpu, &[d.batch, d.n_heads, n_splits, d.head_dim], DType::F32)?;
    let partial_ml = Tensor::empty(gpu, &[d.batch, d.n_heads, n_splits, 2], DType::F32)?;
    let grid = max_grid(gpu, op, &[n_splits, d.n_heads, d.batch])?;
    let partial = prepare_at(
        gpu,
        &decode_key("decode_partial", dtype, head_dim),
        &params,
        &[(1, q), (2, k), (3, v), (4, &partial_o), (5, &partial_ml)],
        &past,
        [grid[0], grid[1], grid[2]],
    )?;
    // The combine step reads only the partial results: it has no step binding.
    let combine = prepare(
        gpu,
        &decode_key("decode_combine", dtype, head_dim),
        &params,
        &[(6, &partial_o), (7, &partial_ml), (8, out)],
        [grid[1], grid[2], 1],
    )?;
    Ok(partial.then(combine).owning([partial_o, partial_ml]))
}

/// f64 reference: `softmax(cap(q·kᵀ·scale) + mask)·v` per batch and query head (cap(s) =
/// c·tanh(s / c) with a `softcap` c, else s), in the layouts of the module documentation
/// (`k`, `v` with `d.kv_capacity` positions per batch); with a sliding `window`, query i
/// sees keys from its position - window + 1.
#[allow(clippy::too_many_arguments)]
pub fn reference(
    d: &AttentionDims,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    causal: bool,
    scale: f64,
    softcap: Option<f64>,
    window: Option<usize>,
) -> Vec<f64> {
    let (hd, group) = (d.head_dim, d.n_heads / d.n_kv_heads);
    let past = d.kv_len - d.q_len;
    let mut out = vec![0.0; q.len()];
    let kv_row = |b: usize, j: usize, kh: usize| ((b * d.kv_capacity + j) * d.n_kv_heads + kh) * hd;
    for b in 0..d.batch {
        for i in 0..d.q_len {
            for h in 0..d.n_heads {
                let q_row = ((b * d.q_len + i) * d.n_heads + h) * hd;
                let kh = h / group;
                let visible = if causal { past + i + 1 } else { d.kv_len };
                // A sliding window hides the keys before query position - window + 1.
                let from = window.map_or(0, |w| (past + i + 1).saturating_sub(w));
                let rows: Vec<usize> = (from..visible).map(|j| kv_row(b, j, kh)).collect();
                let query = &q[q_row..q_row + hd];
                let attended = reference_row(query, k, v, &rows, scale, softcap);
                out[q_row..q_row + hd].copy_from_slice(&attended);
            }
        }
    }
    out
}

/// f64 attention of one query row (`head_dim` values) over the keys and values starting at
/// `rows` (element offsets into `k` and `v`): softmax of the scaled, soft-capped dot products,
/// times the values. Shared by the references of every attention kernel.
pub(crate) fn reference_row(
    query: &[f64],
    k: &[f64],
    v: &[f64],
    rows: &[usize],
    scale: f64,
    softcap: Option<f64>,
) -> Vec<f64> {
    let cap = |s: f64| softcap.map_or(s, |c| c * (s / c).tanh());
    let hd = query.len();
    let scores: Vec<f64> = rows
        .iter()
        .map(|&r| cap((0..hd).map(|x| query[x] * k[r + x]).sum::<f64>() * scale))
        .collect();
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    (0..hd)
        .map(|x| {
            let acc: f64 = weights.iter().zip(rows).map(|(w, &r)| w * v[r + x]).sum();
            acc / total
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_fit_the_memory_and_register_budget() {
        for d in 1..=512 {
            for memory in [16 << 10, 32 << 10, 48 << 10] {
                if let Some((bq, bk)) = flash_tiles(d, memory) {
                    let bytes = 4 * (bq * (d + 1) + bk * (d + 1) + bq * bk + 3 * bq);
                    assert!(bytes <= memory, "d={d} memory={memory}");
                    assert!(bq * d <= MAX_OUT * WG, "d={d}");
                    assert!(bq >= 1 && bk >= 8);
                }
            }
            assert!(
                flash_tiles(d, 32 << 10).is_some(),
                "head_dim {d} must fit 32 KiB"
            );
        }
    }
}
