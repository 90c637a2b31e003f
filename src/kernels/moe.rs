//! Mixture-of-experts feed-forward kernels (`shaders/moe.wgsl`): routing on the GPU (the
//! router's logits to each token's top-k experts and their weights), a GEMV per (token, slot)
//! pair that reads only the chosen expert's rows of a stacked `[E·N, K]` weight, and the
//! combine step that sums each token's k expert outputs onto the residual (with Qwen2-MoE's
//! gated shared expert). No id comes back to the host: decode reads k experts' bytes a layer.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::matmul::Epilogue;
use crate::kernels::{KernelCall, expect_shape, prepare, same_dtype, to_u32};
use crate::tensor::{DType, Tensor};

const SHADER: ShaderSource = ShaderSource {
    name: "moe.wgsl",
    body: include_str!("../../shaders/moe.wgsl"),
    library: &[include_str!("../../shaders/lib/epilogue.wgsl")],
};
const WG: u32 = 256;
/// Output rows per GEMV workgroup (WG / the shader's LANES).
const GEMV_ROWS: u32 = WG / 32;
/// The most experts a token may pick (the shader's MAX_K).
pub const MAX_TOP_K: usize = 32;
/// Tokens from which a forward pass groups its pairs by expert ([`group`],
/// [`expert_matmul`]) rather than running a GEMV per pair.
pub const GROUP_FROM_TOKENS: usize = 4;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    a: u32,
    b: u32,
    c: u32,
    d: u32,
    weighted: u32,
    epilogue: u32,
    pad: [u32; 2],
}

fn key(entry: &'static str, dtype: DType) -> PipelineKey {
    PipelineKey::new(SHADER, entry, dtype, &[("WG", WG)])
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    let mut keys = Vec::new();
    for dtype in [DType::F32, DType::F16] {
        for entry in [
            "moe_route",
            "moe_gemv",
            "moe_combine",
            "moe_group",
            "moe_matmul",
        ] {
            keys.push(key(entry, dtype));
        }
    }
    keys
}

/// Each token's `top_k` experts from the router's `logits` (`[tokens, experts]`): softmax over
/// all experts, the `top_k` most probable (ties to the lower id), their probabilities
/// renormalised to sum 1 where `renormalize`. `ids`: `[tokens, top_k]` u32; `weights`:
/// `[tokens, top_k]` f32.
pub fn route<'a>(
    gpu: &Gpu,
    logits: &'a Tensor,
    top_k: usize,
    renormalize: bool,
    ids: &'a Tensor,
    weights: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "moe route";
    let &[tokens, experts] = logits.shape() else {
        return Err(Error::shape(
            op,
            format!("logits are {:?}, not [tokens, experts]", logits.shape()),
        ));
    };
    if top_k == 0 || top_k > experts || top_k > MAX_TOP_K {
        return Err(Error::shape(
            op,
            format!("top_k {top_k} must lie in 1 ..= the {experts} experts (at most {MAX_TOP_K})"),
        ));
    }
    if logits.dtype() == DType::U32 || ids.dtype() != DType::U32 || weights.dtype() != DType::F32 {
        return Err(Error::DType {
            op,
            detail: "float logits, u32 ids and f32 weights".into(),
        });
    }
    expect_shape(op, "ids", ids, &[tokens, top_k])?;
    expect_shape(op, "weights", weights, &[tokens, top_k])?;
    let params = Params {
        a: to_u32(op, "tokens", tokens)?,
        b: to_u32(op, "experts", experts)?,
        c: top_k as u32,
        d: u32::from(renormalize),
        weighted: 0,
        epilogue: 0,
        pad: [0; 2],
    };
    let grid = gpu.grid(op, (tokens as u64).div_ceil(u64::from(WG)))?;
    let tensors = [(1, logits), (7, ids), (8, weights)];
    prepare(
        gpu,
        &key("moe_route", logits.dtype()),
        &params,
        &tensors,
        grid,
    )
}

/// Checks the operands of an expert product over the (token, slot) pairs that `pairs`
/// (u32 ids or a grouping's order) counts: `experts` `[n, k]` matrices stacked in `rows`
/// rows, `x` `[pairs / x_div, k]`, `y` `[pairs, n]`, f32 `weights` `[pairs]`, the epilogue's
/// operand `[pairs, n]`. Returns n. (Shared by the dense and the packed expert kernels.)
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_expert_operands(
    op: &'static str,
    experts: usize,
    (rows, k): (usize, usize),
    pairs: &Tensor,
    x_div: usize,
    x: &Tensor,
    weights: Option<&Tensor>,
    epilogue: &Epilogue<'_>,
    y: &Tensor,
) -> Result<usize> {
    if experts == 0 || !rows.is_multiple_of(experts) {
        return Err(Error::shape(
            op,
            format!("{rows} rows are not {experts} experts' stacked [n, k] matrices"),
        ));
    }
    let n = rows / experts;
    let count = pairs.len();
    if x_div == 0 || !count.is_multiple_of(x_div) || pairs.dtype() != DType::U32 {
        return Err(Error::shape(
            op,
            format!("{count} u32 ids in groups of {x_div}"),
        ));
    }
    expect_shape(op, "x", x, &[count / x_div, k])?;
    expect_shape(op, "y", y, &[count, n])?;
    if let Some(weights) = weights
        && (weights.dtype() != DType::F32 || weights.len() != count)
    {
        return Err(Error::shape(op, format!("weights must be {count} f32")));
    }
    if let Some(other) = epilogue.tensor() {
        expect_shape(op, "epilogue operand", other, &[count, n])?;
    }
    Ok(n)
}

/// Placeholders for the optional operands a call leaves out (the shaders never read them):
/// an f32 one for absent weights, one of `dtype` for an absent epilogue operand.
pub(crate) fn spares(
    gpu: &Gpu,
    dtype: DType,
    weights: Option<&Tensor>,
    epilogue: &Epilogue<'_>,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let weights = match weights {
        None => Some(Tensor::empty(gpu, &[1], DType::F32)?),
        Some(_) => None,
    };
    let other = match epilogue.tensor() {
        None => Some(Tensor::empty(gpu, &[1], dtype)?),
        Some(_) => None,
    };
    Ok((weights, other))
}

/// Per (token, slot) pair `p`, with its expert `e = ids[p]`:
/// `y[p] = W_e · x[p / x_div]` (`W` the experts' `[n, k]` matrices stacked as `[E·n, k]`),
/// times `weights[p]` where given, then `epilogue` (its operand `[pairs, n]`). `ids`:
/// `[pairs]` u32 (any shape of that many); `x`: `[pairs / x_div, k]`; `y`: `[pairs, n]`.
#[allow(clippy::too_many_arguments)]
pub fn expert_gemv<'a>(
    gpu: &Gpu,
    w: &'a Tensor,
    experts: usize,
    ids: &'a Tensor,
    x: &'a Tensor,
    x_div: usize,
    weights: Option<&'a Tensor>,
    epilogue: Epilogue<'a>,
    y: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "moe expert gemv";
    let mut operands = vec![w, x, y];
    operands.extend(epilogue.tensor());
    let dtype = same_dtype(op, &operands)?;
    let pairs = ids.len();
    let (rows, k) = match *w.shape() {
        [rows, k] => (rows, k),
        _ => return Err(Error::shape(op, format!("the stacked weight is {w:?}"))),
    };
    let n = check_expert_operands(op, experts, (rows, k), ids, x_div, x, weights, &epilogue, y)?;
    let pairs_u32 = to_u32(op, "pairs", pairs)?;
    if pairs_u32 > gpu.limits().max_compute_workgroups_per_dimension {
        return Err(Error::TooManyWorkgroups {
            what: format!("{op} over {pairs} pairs"),
            groups: u64::from(pairs_u32),
            limit: gpu.limits().max_compute_workgroups_per_dimension,
        });
    }
    to_u32(op, "stacked weight", w.len())?;
    let params = Params {
        a: to_u32(op, "n", n)?,
        b: to_u32(op, "k", k)?,
        c: pairs_u32,
        d: to_u32(op, "x_div", x_div)?,
        weighted: u32::from(weights.is_some()),
        epilogue: epilogue.kind().code(),
        pad: [0; 2],
    };
    let (spare_f32, spare) = spares(gpu, dtype, weights, &epilogue)?;
    let weights = weights
        .or(spare_f32.as_ref())
        .expect("a spare when no weights");
    let other = epilogue
        .tensor()
        .or(spare.as_ref())
        .expect("a spare when no operand");
    let [gx, gy, _] = gpu.grid(op, u64::from(params.a.div_ceil(GEMV_ROWS)))?;
    let tensors = [(1, x), (2, w), (3, ids), (4, weights), (5, y), (6, other)];
    let call = prepare(
        gpu,
        &key("moe_gemv", dtype),
        &params,
        &tensors,
        [gx, gy, pairs_u32],
    )?;
    // Each pair reads its expert's n × k block, nothing of the other experts.
    let read = (pairs * n * k * dtype.size()) as u64;
    Ok(call
        .owning(spare_f32.into_iter().chain(spare))
        .reading(read))
}

/// The (token, slot) pairs of `ids` (`[pairs]` u32 expert ids) grouped by expert for the
/// prompt's matmuls: `offsets` (`[experts + 1]` u32: expert e's pairs are
/// `order[offsets[e] .. offsets[e + 1]]`) and `order` (`[pairs]` u32 pair indices). One
/// workgroup counts, sums and places them (an atomic cursor per expert).
pub fn group<'a>(
    gpu: &Gpu,
    ids: &'a Tensor,
    experts: usize,
    order: &'a Tensor,
    offsets: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "moe group";
    let pairs = ids.len();
    if [ids, order, offsets]
        .iter()
        .any(|t| t.dtype() != DType::U32)
    {
        return Err(Error::DType {
            op,
            detail: "ids, order and offsets are u32".into(),
        });
    }
    expect_shape(op, "order", order, &[pairs])?;
    expect_shape(op, "offsets", offsets, &[experts + 1])?;
    let counts = Tensor::empty(gpu, &[experts.max(1)], DType::U32)?;
    let params = Params {
        a: to_u32(op, "pairs", pairs)?,
        b: to_u32(op, "experts", experts)?,
        c: 0,
        d: 0,
        weighted: 0,
        epilogue: 0,
        pad: [0; 2],
    };
    let tensors = [(3, ids), (10, &counts), (11, order), (12, offsets)];
    let call = prepare(
        gpu,
        &key("moe_group", DType::F32),
        &params,
        &tensors,
        [1, 1, 1],
    )?;
    Ok(call.owning([counts]))
}

/// [`expert_gemv`] as one tiled matmul per expert over the pairs [`group`] gave it (a
/// prompt: each expert's weights read once per 64 of its pairs, not once per pair).
/// `tokens` bounds a group's rows: a token picks an expert at most once, as [`route`] picks
/// them (rows of a group past `tokens` would be left unwritten).
#[allow(clippy::too_many_arguments)]
pub fn expert_matmul<'a>(
    gpu: &Gpu,
    w: &'a Tensor,
    experts: usize,
    grouping: (&'a Tensor, &'a Tensor),
    tokens: usize,
    x: &'a Tensor,
    x_div: usize,
    weights: Option<&'a Tensor>,
    epilogue: Epilogue<'a>,
    y: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "moe expert matmul";
    let (order, offsets) = grouping;
    let mut operands = vec![w, x, y];
    operands.extend(epilogue.tensor());
    let dtype = same_dtype(op, &operands)?;
    let (rows, k) = match *w.shape() {
        [rows, k] => (rows, k),
        _ => return Err(Error::shape(op, format!("the stacked weight is {w:?}"))),
    };
    let n = check_expert_operands(
        op,
        experts,
        (rows, k),
        order,
        x_div,
        x,
        weights,
        &epilogue,
        y,
    )?;
    expect_shape(op, "offsets", offsets, &[experts + 1])?;
    to_u32(op, "stacked weight", w.len())?;
    let params = Params {
        a: to_u32(op, "n", n)?,
        b: to_u32(op, "k", k)?,
        c: to_u32(op, "tokens", tokens)?,
        d: to_u32(op, "x_div", x_div)?,
        weighted: u32::from(weights.is_some()),
        epilogue: epilogue.kind().code(),
        pad: [0; 2],
    };
    let limit = gpu.limits().max_compute_workgroups_per_dimension;
    let grid = [n.div_ceil(64), tokens.div_ceil(64).max(1), experts];
    let grid: Vec<u32> = grid
        .iter()
        .map(|&g| match u32::try_from(g) {
            Ok(g) if g <= limit => Ok(g),
            _ => Err(Error::TooManyWorkgroups {
                what: op.to_string(),
                groups: g as u64,
                limit,
            }),
        })
        .collect::<Result<_>>()?;
    let (spare_f32, spare) = spares(gpu, dtype, weights, &epilogue)?;
    let weights = weights
        .or(spare_f32.as_ref())
        .expect("a spare when no weights");
    let other = epilogue
        .tensor()
        .or(spare.as_ref())
        .expect("a spare when no operand");
    let tensors = [
        (1, x),
        (2, w),
        (4, weights),
        (5, y),
        (6, other),
        (13, order),
        (14, offsets),
    ];
    let call = prepare(
        gpu,
        &key("moe_matmul", dtype),
        &params,
        &tensors,
        [grid[0], grid[1], grid[2]],
    )?;
    Ok(call.owning(spare_f32.into_iter().chain(spare)))
}

/// `out[t] = residual[t] + Σ_j y[t·top_k + j]`, plus `sigmoid(gate[t]) · s[t]` for a gated
/// shared expert `(s, gate)` (`[tokens, width]`, `[tokens, 1]`).
pub fn combine<'a>(
    gpu: &Gpu,
    residual: &'a Tensor,
    y: &'a Tensor,
    top_k: usize,
    shared: Option<(&'a Tensor, &'a Tensor)>,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "moe combine";
    let mut operands = vec![residual, y, out];
    if let Some((s, g)) = shared {
        operands.extend([s, g]);
    }
    let dtype = same_dtype(op, &operands)?;
    let &[tokens, width] = residual.shape() else {
        return Err(Error::shape(op, "the residual is not [tokens, width]"));
    };
    expect_shape(op, "expert outputs", y, &[tokens * top_k, width])?;
    expect_shape(op, "output", out, &[tokens, width])?;
    if let Some((s, g)) = shared {
        expect_shape(op, "shared expert", s, &[tokens, width])?;
        expect_shape(op, "shared gate", g, &[tokens, 1])?;
    }
    let len = to_u32(op, "output length", tokens * width)?;
    let params = Params {
        a: len,
        b: to_u32(op, "width", width)?,
        c: to_u32(op, "top_k", top_k)?,
        d: u32::from(shared.is_some()),
        weighted: 0,
        epilogue: 0,
        pad: [0; 2],
    };
    let spare = if shared.is_none() {
        Some(Tensor::empty(gpu, &[1], dtype)?)
    } else {
        None
    };
    let (s, g) = shared.unwrap_or_else(|| {
        let spare = spare.as_ref().expect("made when no shared expert");
        (spare, spare)
    });
    let grid = gpu.grid(op, u64::from(len).div_ceil(u64::from(WG)))?;
    let tensors = [(1, residual), (2, y), (5, out), (6, s), (9, g)];
    let call = prepare(gpu, &key("moe_combine", dtype), &params, &tensors, grid)?;
    Ok(call.owning(spare))
}

/// f64 reference of [`route`]: (ids, weights) per token, row-major.
pub fn reference_route(
    logits: &[f64],
    experts: usize,
    top_k: usize,
    renormalize: bool,
) -> (Vec<usize>, Vec<f64>) {
    let mut ids = Vec::new();
    let mut weights = Vec::new();
    for row in logits.chunks(experts) {
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = row.iter().map(|l| (l - m).exp()).sum();
        let mut order: Vec<usize> = (0..experts).collect();
        // Stable: equal logits (-0 and +0 included) keep the lower id first.
        order.sort_by(|&a, &b| {
            row[b]
                .partial_cmp(&row[a])
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let chosen = &order[..top_k];
        let probs: Vec<f64> = chosen.iter().map(|&e| (row[e] - m).exp() / total).collect();
        let sum: f64 = probs.iter().sum();
        ids.extend_from_slice(chosen);
        weights.extend(probs.iter().map(|p| if renormalize { p / sum } else { *p }));
    }
    (ids, weights)
}
