//! The kernels training needs beyond the forward ones: the cross-entropy loss with its
//! gradient (`shaders/loss.wgsl`), RMSNorm's input and weight gradients
//! (`shaders/norm_backward.wgsl`), SwiGLU's gradients (`shaders/activation_backward.wgsl`) and
//! one fused AdamW step (`shaders/optimizer.wgsl`). Each has an f64 reference.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::{KernelCall, expect_shape, last_dim, prepare, same_dtype, to_u32};
use crate::tensor::{DType, Tensor};

const LOSS: ShaderSource = ShaderSource {
    name: "loss.wgsl",
    body: include_str!("../../shaders/loss.wgsl"),
    library: &[super::WORKGROUP_SUM],
};
const NORM_BACKWARD: ShaderSource = ShaderSource {
    name: "norm_backward.wgsl",
    body: include_str!("../../shaders/norm_backward.wgsl"),
    library: &[super::WORKGROUP_SUM],
};
const ACTIVATION_BACKWARD: ShaderSource = ShaderSource {
    name: "activation_backward.wgsl",
    body: include_str!("../../shaders/activation_backward.wgsl"),
    library: &[super::GELU],
};
const EMBEDDING_BACKWARD: ShaderSource = ShaderSource {
    name: "embedding_backward.wgsl",
    body: include_str!("../../shaders/embedding_backward.wgsl"),
    library: &[],
};
const OPTIMIZER: ShaderSource = ShaderSource {
    name: "optimizer.wgsl",
    body: include_str!("../../shaders/optimizer.wgsl"),
    library: &[super::WORKGROUP_SUM],
};
const WG: u32 = 256;

fn key(shader: ShaderSource, entry: &'static str, dtype: DType) -> PipelineKey {
    PipelineKey::new(shader, entry, dtype, &[("WG", WG)])
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    let mut keys = Vec::new();
    for dtype in DType::ALL {
        keys.push(key(LOSS, "cross_entropy", dtype));
        keys.push(key(NORM_BACKWARD, "rms_norm_backward", dtype));
        keys.push(key(NORM_BACKWARD, "rms_norm_backward_weight", dtype));
        keys.push(key(ACTIVATION_BACKWARD, "swiglu_backward", dtype));
        keys.push(key(OPTIMIZER, "adamw", dtype));
        keys.push(key(OPTIMIZER, "adamw_copy", dtype));
        keys.push(key(OPTIMIZER, "ema_update", dtype));
        keys.push(key(OPTIMIZER, "sum_of_squares", dtype));
        keys.push(key(LOSS, "mse", dtype));
        keys.push(key(ACTIVATION_BACKWARD, "silu_backward", dtype));
        keys.push(key(EMBEDDING_BACKWARD, "embedding_backward", dtype));
        keys.push(gelu_key(dtype, false));
        keys.push(gelu_key(dtype, true));
        keys.push(key(ACTIVATION_BACKWARD, "geglu_backward", dtype));
        keys.push(key(NORM_BACKWARD, "layer_norm_backward", dtype));
        keys.push(key(NORM_BACKWARD, "layer_norm_backward_affine", dtype));
        keys.push(key(NORM_BACKWARD, "softmax_backward", dtype));
    }
    keys.extend(attention_backward_keys());
    keys
}

fn gelu_key(dtype: DType, tanh: bool) -> PipelineKey {
    let overrides = [("WG", WG), ("GELU_TANH", u32::from(tanh))];
    PipelineKey::new(ACTIVATION_BACKWARD, "gelu_backward", dtype, &overrides)
}

fn require(op: &'static str, what: &str, t: &Tensor, dtype: DType) -> Result<()> {
    if t.dtype() != dtype {
        return Err(Error::DType {
            op,
            detail: format!("{what} must be {dtype}, not {}", t.dtype()),
        });
    }
    Ok(())
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LossParams {
    rows: u32,
    vocab: u32,
    scale: f32,
    _pad: u32,
}

/// The checks and parameters both losses share: `x` `[rows, cols]`, the per-row `loss`
/// (`[rows]` f32), the gradient shaped as `x`, a finite gradient scale.
fn loss_params(
    op: &'static str,
    x: &Tensor,
    loss: &Tensor,
    grad: &Tensor,
    scale: f32,
) -> Result<LossParams> {
    require(op, "the loss", loss, DType::F32)?;
    let cols = last_dim(op, x)?;
    let rows = x.len() / cols.max(1);
    expect_shape(op, "the loss", loss, &[rows])?;
    expect_shape(op, "the gradient", grad, x.shape())?;
    if !scale.is_finite() {
        return Err(Error::shape(
            op,
            format!("the gradient scale {scale} is not finite"),
        ));
    }
    Ok(LossParams {
        rows: to_u32(op, "rows", rows)?,
        vocab: to_u32(op, "row length", cols)?,
        scale,
        _pad: 0,
    })
}

/// Per row of `logits` (`[rows, vocab]`) against `targets` (`[rows]` u32): the loss
/// `logsumexp - logit[target]` into `loss` (`[rows]` f32) and `scale · (softmax - onehot)`
/// into `dlogits`. A target ≥ vocab (an ignored position) gives 0 loss and 0 gradient.
pub fn cross_entropy<'a>(
    gpu: &Gpu,
    logits: &'a Tensor,
    targets: &'a Tensor,
    scale: f32,
    loss: &'a Tensor,
    dlogits: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "cross entropy";
    let dtype = same_dtype(op, &[logits, dlogits])?;
    require(op, "targets", targets, DType::U32)?;
    let params = loss_params(op, logits, loss, dlogits, scale)?;
    expect_shape(op, "targets", targets, &[params.rows as usize])?;
    let grid = gpu.grid(op, u64::from(params.rows))?;
    let tensors = [(1, logits), (2, targets), (3, loss), (4, dlogits)];
    prepare(
        gpu,
        &key(LOSS, "cross_entropy", dtype),
        &params,
        &tensors,
        grid,
    )
}

/// f64 reference of [`cross_entropy`]: (per-row losses, gradients).
pub fn reference_cross_entropy(
    logits: &[f64],
    targets: &[usize],
    scale: f64,
) -> (Vec<f64>, Vec<f64>) {
    let vocab = logits.len() / targets.len().max(1);
    let mut losses = Vec::new();
    let mut grads = Vec::new();
    for (row, &t) in logits.chunks(vocab).zip(targets) {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = row.iter().map(|x| (x - max).exp()).sum();
        let counted = t < vocab;
        losses.push(if counted {
            total.ln() + max - row[t]
        } else {
            0.0
        });
        grads.extend(row.iter().enumerate().map(|(j, x)| {
            if counted {
                scale * ((x - max).exp() / total - f64::from(u8::from(j == t)))
            } else {
                0.0
            }
        }));
    }
    (losses, grads)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NormParams {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

fn norm_params(op: &'static str, x: &Tensor, eps: f32) -> Result<(NormParams, usize)> {
    let cols = last_dim(op, x)?;
    let rows = x.len() / cols.max(1);
    Ok((
        NormParams {
            rows: to_u32(op, "rows", rows)?,
            cols: to_u32(op, "row length", cols)?,
            eps,
            _pad: 0,
        },
        rows,
    ))
}

/// RMSNorm's input gradient: `dx` from `x`, `weight` (`[dim]`) and `dy` (all `[.., dim]`),
/// and each row's inverse RMS into `inv_rms` (`[rows]` f32) for
/// [`rms_norm_backward_weight`].
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_backward<'a>(
    gpu: &Gpu,
    x: &'a Tensor,
    weight: &'a Tensor,
    dy: &'a Tensor,
    eps: f32,
    dx: &'a Tensor,
    inv_rms: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "rms_norm backward";
    let dtype = same_dtype(op, &[x, weight, dy, dx])?;
    require(op, "inv_rms", inv_rms, DType::F32)?;
    let (params, rows) = norm_params(op, x, eps)?;
    expect_shape(op, "weight", weight, &[params.cols as usize])?;
    expect_shape(op, "dy", dy, x.shape())?;
    expect_shape(op, "dx", dx, x.shape())?;
    expect_shape(op, "inv_rms", inv_rms, &[rows])?;
    let grid = gpu.grid(op, rows as u64)?;
    let tensors = [(1, x), (2, weight), (3, dy), (4, dx), (5, inv_rms)];
    prepare(
        gpu,
        &key(NORM_BACKWARD, "rms_norm_backward", dtype),
        &params,
        &tensors,
        grid,
    )
}

/// RMSNorm's weight gradient `dw` (`[dim]`): `Σ_rows dy · x · inv_rms`, with `inv_rms` as
/// [`rms_norm_backward`] wrote it.
pub fn rms_norm_backward_weight<'a>(
    gpu: &Gpu,
    x: &'a Tensor,
    dy: &'a Tensor,
    inv_rms: &'a Tensor,
    dw: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "rms_norm weight backward";
    let dtype = same_dtype(op, &[x, dy, dw])?;
    require(op, "inv_rms", inv_rms, DType::F32)?;
    let (params, rows) = norm_params(op, x, 0.0)?;
    expect_shape(op, "dy", dy, x.shape())?;
    expect_shape(op, "dw", dw, &[params.cols as usize])?;
    expect_shape(op, "inv_rms", inv_rms, &[rows])?;
    let grid = gpu.grid(op, (params.cols as usize).div_ceil(WG as usize) as u64)?;
    let tensors = [(1, x), (3, dy), (6, inv_rms), (7, dw)];
    let key = key(NORM_BACKWARD, "rms_norm_backward_weight", dtype);
    prepare(gpu, &key, &params, &tensors, grid)
}

/// f64 reference of RMSNorm's gradients: (dx, dw).
pub fn reference_rms_norm_backward(
    x: &[f64],
    weight: &[f64],
    dy: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>) {
    let n = weight.len();
    let mut dx = Vec::with_capacity(x.len());
    let mut dw = vec![0.0; n];
    for (row, drow) in x.chunks(n).zip(dy.chunks(n)) {
        let r = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / n as f64 + eps).sqrt();
        let dot: f64 = (0..n).map(|j| drow[j] * weight[j] * row[j]).sum();
        let c = dot * r * r * r / n as f64;
        for j in 0..n {
            dx.push(r * weight[j] * drow[j] - row[j] * c);
            dw[j] += drow[j] * row[j] * r;
        }
    }
    (dx, dw)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LenParams {
    len: u32,
    _pad: [u32; 3],
}

/// SwiGLU's gradients: for `y = silu(gate) · up`, `dgate` and `dup` from `dy` (all one shape).
pub fn swiglu_backward<'a>(
    gpu: &Gpu,
    gate: &'a Tensor,
    up: &'a Tensor,
    dy: &'a Tensor,
    dgate: &'a Tensor,
    dup: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let entry = ("swiglu backward", "swiglu_backward");
    gated_backward(gpu, entry, [gate, up, dy], [dgate, dup])
}

/// The gradients of a gated unit `y = act(gate) · up` on the `(op, entry)` kernel of
/// activation_backward.wgsl: one invocation per element, all five tensors one shape.
fn gated_backward<'a>(
    gpu: &Gpu,
    (op, entry): (&'static str, &'static str),
    [gate, up, dy]: [&'a Tensor; 3],
    [dgate, dup]: [&'a Tensor; 2],
) -> Result<KernelCall<'a>> {
    let dtype = same_dtype(op, &[gate, up, dy, dgate, dup])?;
    for (what, t) in [("up", up), ("dy", dy), ("dgate", dgate), ("dup", dup)] {
        expect_shape(op, what, t, gate.shape())?;
    }
    let params = LenParams {
        len: to_u32(op, "length", gate.len())?,
        _pad: [0; 3],
    };
    let grid = gpu.grid(op, gate.len().div_ceil(WG as usize) as u64)?;
    let tensors = [(1, gate), (2, up), (3, dy), (4, dgate), (5, dup)];
    let key = key(ACTIVATION_BACKWARD, entry, dtype);
    prepare(gpu, &key, &params, &tensors, grid)
}

/// f64 reference of [`swiglu_backward`]: (dgate, dup).
pub fn reference_swiglu_backward(gate: &[f64], up: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut dgate = Vec::with_capacity(gate.len());
    let mut dup = Vec::with_capacity(gate.len());
    for ((&g, &u), &d) in gate.iter().zip(up).zip(dy) {
        let s = 1.0 / (1.0 + (-g).exp());
        dgate.push(d * u * s * (1.0 + g * (1.0 - s)));
        dup.push(d * g * s);
    }
    (dgate, dup)
}

/// AdamW's settings (PyTorch's defaults apart from the learning rate).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AdamParams {
    len: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    c1: f32,
    c2: f32,
    grad_scale: f32,
    _pad: [u32; 3],
}

impl AdamW {
    /// Bias corrections `1 - β1^t`, `1 - β2^t` of step `t` (from 1), in f64.
    fn corrections(&self, step: u64) -> (f64, f64) {
        let t = step.min(i32::MAX as u64) as i32;
        (
            1.0 - f64::from(self.beta1).powi(t),
            1.0 - f64::from(self.beta2).powi(t),
        )
    }
}

/// One AdamW step `step` (from 1) on `param`, `m`, `v` (f32, one shape) in place, with
/// `grad · grad_scale` (`grad` f32 or f16).
#[allow(clippy::too_many_arguments)]
pub fn adamw<'a>(
    gpu: &Gpu,
    settings: &AdamW,
    step: u64,
    grad: &'a Tensor,
    grad_scale: f32,
    param: &'a Tensor,
    m: &'a Tensor,
    v: &'a Tensor,
) -> Result<KernelCall<'a>> {
    adamw_with_copy(gpu, settings, step, grad, grad_scale, [param, m, v], None)
}

/// [`adamw`] that also writes the updated parameter into `copy` (the gradient's type and
/// shape): the f16 weights of a mixed-precision pass, refreshed in the same kernel.
pub fn adamw_with_copy<'a>(
    gpu: &Gpu,
    settings: &AdamW,
    step: u64,
    grad: &'a Tensor,
    grad_scale: f32,
    [param, m, v]: [&'a Tensor; 3],
    copy: Option<&'a Tensor>,
) -> Result<KernelCall<'a>> {
    let op = "adamw";
    for (what, t) in [("the parameter", param), ("m", m), ("v", v)] {
        require(op, what, t, DType::F32)?;
        expect_shape(op, what, t, grad.shape())?;
    }
    if let Some(copy) = copy {
        require(op, "the parameter's copy", copy, grad.dtype())?;
        expect_shape(op, "the parameter's copy", copy, grad.shape())?;
    }
    if step == 0 {
        return Err(Error::shape(op, "steps count from 1"));
    }
    let (c1, c2) = settings.corrections(step);
    let params = AdamParams {
        len: to_u32(op, "length", grad.len())?,
        lr: settings.lr,
        beta1: settings.beta1,
        beta2: settings.beta2,
        eps: settings.eps,
        weight_decay: settings.weight_decay,
        c1: c1 as f32,
        c2: c2 as f32,
        grad_scale,
        _pad: [0; 3],
    };
    let grid = gpu.grid(op, grad.len().div_ceil(WG as usize) as u64)?;
    match copy {
        None => {
            let tensors = [(1, grad), (2, param), (3, m), (4, v)];
            prepare(
                gpu,
                &key(OPTIMIZER, "adamw", grad.dtype()),
                &params,
                &tensors,
                grid,
            )
        }
        Some(copy) => {
            let tensors = [(1, grad), (2, param), (3, m), (4, v), (6, copy)];
            let key = key(OPTIMIZER, "adamw_copy", grad.dtype());
            prepare(gpu, &key, &params, &tensors, grid)
        }
    }
}

/// The moving average of a weight: `average = decay · average + (1 - decay) · param` (both
/// f32, one shape), in place.
pub fn ema_update<'a>(
    gpu: &Gpu,
    decay: f32,
    param: &'a Tensor,
    average: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "ema";
    require(op, "the parameter", param, DType::F32)?;
    require(op, "the average", average, DType::F32)?;
    expect_shape(op, "the average", average, param.shape())?;
    if !(0.0..=1.0).contains(&decay) {
        return Err(Error::shape(
            op,
            format!("a decay of {decay} is outside 0 ..= 1"),
        ));
    }
    let params = AdamParams {
        len: to_u32(op, "length", param.len())?,
        lr: decay,
        beta1: 0.0,
        beta2: 0.0,
        eps: 0.0,
        weight_decay: 0.0,
        c1: 1.0,
        c2: 1.0,
        grad_scale: 1.0,
        _pad: [0; 3],
    };
    let grid = gpu.grid(op, param.len().div_ceil(WG as usize) as u64)?;
    let key = key(OPTIMIZER, "ema_update", DType::F32);
    prepare(gpu, &key, &params, &[(2, param), (7, average)], grid)
}

/// f64 reference of [`ema_update`].
pub fn reference_ema(decay: f64, param: &[f64], average: &[f64]) -> Vec<f64> {
    param
        .iter()
        .zip(average)
        .map(|(p, a)| decay * a + (1.0 - decay) * p)
        .collect()
}

/// f64 reference of [`adamw`]: the new (param, m, v).
#[allow(clippy::too_many_arguments)]
pub fn reference_adamw(
    settings: &AdamW,
    step: u64,
    grad: &[f64],
    grad_scale: f64,
    param: &[f64],
    m: &[f64],
    v: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (c1, c2) = settings.corrections(step);
    let (b1, b2) = (f64::from(settings.beta1), f64::from(settings.beta2));
    let (lr, wd, eps) = (
        f64::from(settings.lr),
        f64::from(settings.weight_decay),
        f64::from(settings.eps),
    );
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..grad.len() {
        let g = grad[i] * grad_scale;
        let m1 = b1 * m[i] + (1.0 - b1) * g;
        let v1 = b2 * v[i] + (1.0 - b2) * g * g;
        let update = (m1 / c1) / ((v1 / c2).sqrt() + eps);
        out.0.push(param[i] * (1.0 - lr * wd) - lr * update);
        out.1.push(m1);
        out.2.push(v1);
    }
    out
}

/// A Linear layer's input gradient: for `y = x · wᵀ (+ b)` (`w` `[N, K]`), `dx = dy · w`
/// (`dy` `[M, N]`, `dx` `[M, K]`): the matmul with `w` read as `[K, N]`-major.
pub fn linear_grad_input<'a>(
    gpu: &Gpu,
    dy: &'a Tensor,
    w: &'a Tensor,
    dx: &'a Tensor,
) -> Result<KernelCall<'a>> {
    super::matmul::matmul(gpu, dy, w, super::matmul::BLayout::KN, None, dx)
}

/// A Linear layer's weight gradient `dw = dyᵀ · x` (`[N, K]`), through `dy_t` (`[N, M]`,
/// scratch the caller owns) so that the product reads both operands row-major.
pub fn linear_grad_weight<'a>(
    gpu: &Gpu,
    dy: &'a Tensor,
    x: &'a Tensor,
    dy_t: &'a Tensor,
    dw: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "linear weight gradient";
    let &[m, n] = dy.shape() else {
        return Err(Error::shape(
            op,
            format!("dy is {dy:?}, not [rows, outputs]"),
        ));
    };
    expect_shape(op, "dy_t", dy_t, &[n, m])?;
    // The transpose kernel takes a batch axis: views of one.
    let (dy3, dy_t3) = (dy.reshape(&[1, m, n])?, dy_t.reshape(&[1, n, m])?);
    let transpose = super::transpose::transpose(gpu, &dy3, &dy_t3)?;
    let first: KernelCall<'a> = transpose.detach().owning([dy3, dy_t3]);
    let product = super::matmul::matmul(gpu, dy_t, x, super::matmul::BLayout::KN, None, dw)?;
    Ok(first.then(product))
}

/// A Linear layer's bias gradient `db = Σ_rows dy` (`[N]`, or `[1, N]`), as `ones · dy` with
/// `ones` a `[1, M]` row of ones the caller owns.
pub fn linear_grad_bias<'a>(
    gpu: &Gpu,
    dy: &'a Tensor,
    ones: &'a Tensor,
    db: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "linear bias gradient";
    let n = last_dim(op, dy)?;
    if db.len() != n {
        return Err(Error::shape(
            op,
            format!("db {db:?} does not hold {n} values"),
        ));
    }
    let db = db.reshape(&[1, n])?;
    let call = super::matmul::matmul(gpu, ones, dy, super::matmul::BLayout::KN, None, &db)?;
    Ok(call.detach().owning([db]))
}

/// f64 reference of a Linear layer's gradients (`x` `[M, K]`, `w` `[N, K]`, `dy` `[M, N]`):
/// (dx, dw, db).
pub fn reference_linear_backward(
    x: &[f64],
    w: &[f64],
    dy: &[f64],
    [m, n, k]: [usize; 3],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; m * k];
    let mut dw = vec![0.0; n * k];
    let mut db = vec![0.0; n];
    for r in 0..m {
        for o in 0..n {
            let g = dy[r * n + o];
            db[o] += g;
            for i in 0..k {
                dx[r * k + i] += g * w[o * k + i];
                dw[o * k + i] += g * x[r * k + i];
            }
        }
    }
    (dx, dw, db)
}

/// The batch's positions grouped by token id, for [`embedding_backward`]: `order` lists the
/// positions of id 0, then of id 1, ... (each in position order), and `offsets[v] ..
/// offsets[v + 1]` is id v's run. `Err` for an id outside the vocabulary.
pub fn group_by_id(ids: &[u32], vocab: usize) -> Result<(Vec<u32>, Vec<u32>)> {
    let op = "embedding gradient";
    to_u32(op, "positions", ids.len())?;
    let mut offsets = vec![0u32; vocab + 1];
    for &id in ids {
        let v = id as usize;
        if v >= vocab {
            return Err(Error::shape(
                op,
                format!("token id {id} is outside the vocabulary of {vocab}"),
            ));
        }
        offsets[v + 1] += 1;
    }
    for v in 0..vocab {
        offsets[v + 1] += offsets[v];
    }
    let mut next = offsets.clone();
    let mut order = vec![0u32; ids.len()];
    for (i, &id) in ids.iter().enumerate() {
        let slot = &mut next[id as usize];
        order[*slot as usize] = i as u32;
        *slot += 1;
    }
    Ok((order, offsets))
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct EmbeddingParams {
    vocab: u32,
    width: u32,
    positions: u32,
    _pad: u32,
}

/// The embedding table's gradient `d_table` (`[vocab, width]`) from the output gradient
/// `d_out` (`[positions, width]`) and the positions grouped by id ([`group_by_id`]: `order`
/// `[positions]`, `offsets` `[vocab + 1]`, u32): each row sums its positions in order, with
/// no atomics, so no update is lost and every run gives the same bits.
pub fn embedding_backward<'a>(
    gpu: &Gpu,
    d_out: &'a Tensor,
    order: &'a Tensor,
    offsets: &'a Tensor,
    d_table: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "embedding gradient";
    let dtype = same_dtype(op, &[d_out, d_table])?;
    require(op, "order", order, DType::U32)?;
    require(op, "offsets", offsets, DType::U32)?;
    let &[vocab, width] = d_table.shape() else {
        return Err(Error::shape(
            op,
            format!("d_table is {d_table:?}, not [vocab, width]"),
        ));
    };
    let positions = order.len();
    expect_shape(op, "d_out", d_out, &[positions, width])?;
    expect_shape(op, "offsets", offsets, &[vocab + 1])?;
    let params = EmbeddingParams {
        vocab: to_u32(op, "vocab", vocab)?,
        width: to_u32(op, "width", width)?,
        positions: to_u32(op, "positions", positions)?,
        _pad: 0,
    };
    to_u32(op, "table elements", vocab * width)?;
    let grid = gpu.grid(op, (vocab * width).div_ceil(WG as usize) as u64)?;
    let tensors = [(1, d_out), (2, order), (3, offsets), (4, d_table)];
    let key = key(EMBEDDING_BACKWARD, "embedding_backward", dtype);
    prepare(gpu, &key, &params, &tensors, grid)
}

/// f64 reference of the embedding gradient: `d_table[ids[i]] += d_out[i]`.
pub fn reference_embedding_backward(d_out: &[f64], ids: &[u32], vocab: usize) -> Vec<f64> {
    let width = d_out.len() / ids.len().max(1);
    let mut table = vec![0.0; vocab * width];
    for (row, &id) in d_out.chunks(width.max(1)).zip(ids) {
        for (j, g) in row.iter().enumerate() {
            table[id as usize * width + j] += g;
        }
    }
    table
}

/// SiLU's gradient: `dx = dy · silu'(x)` (one shape).
pub fn silu_backward<'a>(
    gpu: &Gpu,
    x: &'a Tensor,
    dy: &'a Tensor,
    dx: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "silu backward";
    let dtype = same_dtype(op, &[x, dy, dx])?;
    expect_shape(op, "dy", dy, x.shape())?;
    expect_shape(op, "dx", dx, x.shape())?;
    let params = LenParams {
        len: to_u32(op, "length", x.len())?,
        _pad: [0; 3],
    };
    let grid = gpu.grid(op, x.len().div_ceil(WG as usize) as u64)?;
    let key = key(ACTIVATION_BACKWARD, "silu_backward", dtype);
    prepare(gpu, &key, &params, &[(1, x), (3, dy), (4, dx)], grid)
}

/// f64 reference of [`silu_backward`].
pub fn reference_silu_backward(x: &[f64], dy: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(dy)
        .map(|(&g, &d)| {
            let s = 1.0 / (1.0 + (-g).exp());
            d * s * (1.0 + g * (1.0 - s))
        })
        .collect()
}

/// GELU's gradient: `dx = dy · gelu'(x)` (one shape), the exact (erf) GELU or, with `tanh`,
/// the tanh approximation.
pub fn gelu_backward<'a>(
    gpu: &Gpu,
    x: &'a Tensor,
    dy: &'a Tensor,
    tanh: bool,
    dx: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "gelu backward";
    let dtype = same_dtype(op, &[x, dy, dx])?;
    expect_shape(op, "dy", dy, x.shape())?;
    expect_shape(op, "dx", dx, x.shape())?;
    let params = LenParams {
        len: to_u32(op, "length", x.len())?,
        _pad: [0; 3],
    };
    let grid = gpu.grid(op, x.len().div_ceil(WG as usize) as u64)?;
    prepare(
        gpu,
        &gelu_key(dtype, tanh),
        &params,
        &[(1, x), (3, dy), (4, dx)],
        grid,
    )
}

/// GeGLU's gradients: for `y = gelu_tanh(gate) · up` (the matmul's `GeluTanhMul` epilogue),
/// `dgate` and `dup` from `dy` (all one shape).
pub fn geglu_backward<'a>(
    gpu: &Gpu,
    gate: &'a Tensor,
    up: &'a Tensor,
    dy: &'a Tensor,
    dgate: &'a Tensor,
    dup: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let entry = ("geglu backward", "geglu_backward");
    gated_backward(gpu, entry, [gate, up, dy], [dgate, dup])
}

/// f64 GELU derivative: the exact one or the tanh approximation's.
fn reference_gelu_grad(x: f64, tanh: bool) -> f64 {
    if tanh {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        let u = c * (x + 0.044715 * x * x * x);
        let t = u.tanh();
        0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * x * x)
    } else {
        let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
        cdf + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
    }
}

/// f64 reference of [`gelu_backward`].
pub fn reference_gelu_backward(x: &[f64], dy: &[f64], tanh: bool) -> Vec<f64> {
    x.iter()
        .zip(dy)
        .map(|(&v, &d)| d * reference_gelu_grad(v, tanh))
        .collect()
}

/// f64 reference of [`geglu_backward`]: (dgate, dup).
pub fn reference_geglu_backward(gate: &[f64], up: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let gelu = super::elementwise::reference_unary(super::elementwise::Unary::GeluTanh, gate);
    let dgate = (0..gate.len())
        .map(|i| dy[i] * up[i] * reference_gelu_grad(gate[i], true))
        .collect();
    let dup = (0..gate.len()).map(|i| dy[i] * gelu[i]).collect();
    (dgate, dup)
}

/// LayerNorm's gradients (`y = (x - mean) · r · w + b` per row of `[.., dim]`): `dx`, and
/// `dw`, `db` (`[dim]`), through `stats` (`[rows, 2]` f32 scratch: each row's mean and r).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward<'a>(
    gpu: &Gpu,
    x: &'a Tensor,
    weight: &'a Tensor,
    dy: &'a Tensor,
    eps: f32,
    stats: &'a Tensor,
    [dx, dw, db]: [&'a Tensor; 3],
) -> Result<KernelCall<'a>> {
    let op = "layer_norm backward";
    let dtype = same_dtype(op, &[x, weight, dy, dx, dw, db])?;
    require(op, "stats", stats, DType::F32)?;
    let (params, rows) = norm_params(op, x, eps)?;
    let cols = params.cols as usize;
    expect_shape(op, "weight", weight, &[cols])?;
    expect_shape(op, "dy", dy, x.shape())?;
    expect_shape(op, "dx", dx, x.shape())?;
    expect_shape(op, "dw", dw, &[cols])?;
    expect_shape(op, "db", db, &[cols])?;
    expect_shape(op, "stats", stats, &[rows, 2])?;
    let grid = gpu.grid(op, rows as u64)?;
    let first = prepare(
        gpu,
        &key(NORM_BACKWARD, "layer_norm_backward", dtype),
        &params,
        &[(1, x), (2, weight), (3, dy), (4, dx), (8, stats)],
        grid,
    )?;
    let grid = gpu.grid(op, cols.div_ceil(WG as usize) as u64)?;
    let second = prepare(
        gpu,
        &key(NORM_BACKWARD, "layer_norm_backward_affine", dtype),
        &params,
        &[(1, x), (3, dy), (7, dw), (9, stats), (10, db)],
        grid,
    )?;
    Ok(first.then(second))
}

/// f64 reference of [`layer_norm_backward`]: (dx, dw, db).
pub fn reference_layer_norm_backward(
    x: &[f64],
    weight: &[f64],
    dy: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = weight.len();
    let mut dx = Vec::with_capacity(x.len());
    let (mut dw, mut db) = (vec![0.0; n], vec![0.0; n]);
    for (row, drow) in x.chunks(n).zip(dy.chunks(n)) {
        let mean = row.iter().sum::<f64>() / n as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
        let r = 1.0 / (var + eps).sqrt();
        let xhat: Vec<f64> = row.iter().map(|v| (v - mean) * r).collect();
        let g: Vec<f64> = (0..n).map(|j| drow[j] * weight[j]).collect();
        let mean_g = g.iter().sum::<f64>() / n as f64;
        let mean_gx = (0..n).map(|j| g[j] * xhat[j]).sum::<f64>() / n as f64;
        for j in 0..n {
            dx.push(r * (g[j] - mean_g - xhat[j] * mean_gx));
            dw[j] += drow[j] * xhat[j];
            db[j] += drow[j];
        }
    }
    (dx, dw, db)
}

/// Softmax's gradient per row: `dx = y · (dy - Σ dy · y)` from the forward output `y` and
/// `dy` (all `[.., cols]`).
pub fn softmax_backward<'a>(
    gpu: &Gpu,
    y: &'a Tensor,
    dy: &'a Tensor,
    dx: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "softmax backward";
    let dtype = same_dtype(op, &[y, dy, dx])?;
    let (params, rows) = norm_params(op, y, 0.0)?;
    expect_shape(op, "dy", dy, y.shape())?;
    expect_shape(op, "dx", dx, y.shape())?;
    let grid = gpu.grid(op, rows as u64)?;
    let key = key(NORM_BACKWARD, "softmax_backward", dtype);
    prepare(gpu, &key, &params, &[(1, y), (3, dy), (4, dx)], grid)
}

/// f64 reference of [`softmax_backward`] over rows of `cols`.
pub fn reference_softmax_backward(y: &[f64], dy: &[f64], cols: usize) -> Vec<f64> {
    y.chunks(cols)
        .zip(dy.chunks(cols))
        .flat_map(|(yr, dr)| {
            let dot: f64 = yr.iter().zip(dr).map(|(a, b)| a * b).sum();
            yr.iter()
                .zip(dr)
                .map(move |(a, d)| a * (d - dot))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The squared error per row of `pred` against `target` (`[rows, cols]`): `Σ (pred -
/// target)²` into `loss` (`[rows]` f32) and `scale · 2 · (pred - target)` into `grad`.
pub fn mse<'a>(
    gpu: &Gpu,
    pred: &'a Tensor,
    target: &'a Tensor,
    scale: f32,
    loss: &'a Tensor,
    grad: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "mse";
    let dtype = same_dtype(op, &[pred, target, grad])?;
    expect_shape(op, "target", target, pred.shape())?;
    let params = loss_params(op, pred, loss, grad, scale)?;
    let grid = gpu.grid(op, u64::from(params.rows))?;
    let tensors = [(1, pred), (3, loss), (4, grad), (5, target)];
    prepare(gpu, &key(LOSS, "mse", dtype), &params, &tensors, grid)
}

/// f64 reference of [`mse`]: (per-row sums of squares, gradient).
pub fn reference_mse(
    pred: &[f64],
    target: &[f64],
    cols: usize,
    scale: f64,
) -> (Vec<f64>, Vec<f64>) {
    let diff: Vec<f64> = pred.iter().zip(target).map(|(p, t)| p - t).collect();
    let loss = diff
        .chunks(cols)
        .map(|r| r.iter().map(|d| d * d).sum())
        .collect();
    (loss, diff.iter().map(|d| scale * 2.0 * d).collect())
}

/// Elements one `sum_of_squares` workgroup adds (the shader's ITEMS · WG).
pub const SQUARES_PER_GROUP: usize = 8 * WG as usize;

/// The partial sums [`sum_of_squares`] writes for `len` elements.
pub fn sum_of_squares_groups(len: usize) -> usize {
    len.div_ceil(SQUARES_PER_GROUP)
}

/// Partial sums of `grad²` (`partials`: `[sum_of_squares_groups(len)]` f32), for the global
/// gradient norm and the loss-scale overflow check (a non-finite element makes its partial
/// non-finite). The caller adds the partials (in f64).
pub fn sum_of_squares<'a>(
    gpu: &Gpu,
    grad: &'a Tensor,
    partials: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "sum of squares";
    require(op, "the partial sums", partials, DType::F32)?;
    let groups = sum_of_squares_groups(grad.len());
    expect_shape(op, "the partial sums", partials, &[groups])?;
    let params = AdamParams {
        len: to_u32(op, "length", grad.len())?,
        lr: 0.0,
        beta1: 0.0,
        beta2: 0.0,
        eps: 0.0,
        weight_decay: 0.0,
        c1: 1.0,
        c2: 1.0,
        grad_scale: 1.0,
        _pad: [0; 3],
    };
    let grid = gpu.grid(op, groups as u64)?;
    let key = key(OPTIMIZER, "sum_of_squares", grad.dtype());
    prepare(gpu, &key, &params, &[(1, grad), (5, partials)], grid)
}

const ATTENTION_BACKWARD: ShaderSource = ShaderSource {
    name: "attention_backward.wgsl",
    body: include_str!("../../shaders/attention_backward.wgsl"),
    library: &[super::WORKGROUP_SUM],
};
/// Each invocation of the attention backward owns this many output dimensions (the shader's
/// OUT_PER_LANE).
const ATTENTION_BACKWARD_OUT_PER_LANE: u32 = 4;
/// The largest head size the attention backward takes: OUT_PER_LANE · the widest workgroup.
pub const ATTENTION_BACKWARD_MAX_HEAD_DIM: usize = 4 * 64;

/// Invocations per attention-backward workgroup (keys or queries per tile): the fewest that
/// cover `head_dim`, 32 or 64 (fewer invocations meet at each barrier, which is what a CPU
/// adapter pays for).
fn attention_backward_wg(head_dim: u32) -> u32 {
    if head_dim <= 32 * ATTENTION_BACKWARD_OUT_PER_LANE {
        32
    } else {
        64
    }
}

fn attention_backward_key(entry: &'static str, dtype: DType, head_dim: u32) -> PipelineKey {
    let overrides = [
        ("HEAD_DIM", head_dim),
        ("WG", attention_backward_wg(head_dim)),
    ];
    PipelineKey::new(ATTENTION_BACKWARD, entry, dtype, &overrides)
}

pub(crate) fn attention_backward_keys() -> Vec<PipelineKey> {
    let mut keys = Vec::new();
    for dtype in DType::ALL {
        for d in super::attention::COMMON_HEAD_DIMS {
            for entry in ["attention_backward_q", "attention_backward_kv"] {
                keys.push(attention_backward_key(entry, dtype, d as u32));
            }
        }
    }
    keys
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttentionBackwardParams {
    q_len: u32,
    kv_len: u32,
    n_heads: u32,
    n_kv_heads: u32,
    causal: u32,
    scale: f32,
    _pad: [u32; 2],
}

/// The gradients of attention (`out = softmax(scale · q kᵀ) v`, causal or not, grouped-query
/// heads) with respect to q, k and v, recomputing the scores instead of storing them: `out`
/// is the forward's output, `dout` its gradient, `stats` (`[batch, n_heads, q_len, 2]` f32)
/// scratch for each query's log-sum-exp and `dout · out`. Layouts as
/// [`super::attention`]'s (`q`, `out`, `dout`, `dq` `[batch, q_len, n_heads, head_dim]`;
/// `k`, `v`, `dk`, `dv` `[batch, kv_len, n_kv_heads, head_dim]`, every key used); under the
/// causal mask query `i` sees keys up to `kv_len - q_len + i`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<'a>(
    gpu: &Gpu,
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    out: &'a Tensor,
    dout: &'a Tensor,
    causal: bool,
    scale: f32,
    stats: &'a Tensor,
    [dq, dk, dv]: [&'a Tensor; 3],
) -> Result<KernelCall<'a>> {
    let op = "attention backward";
    let dtype = same_dtype(op, &[q, k, v, out, dout, dq, dk, dv])?;
    require(op, "stats", stats, DType::F32)?;
    let d = super::attention::dims(q, k, v, k.shape().get(1).copied().unwrap_or(0), out)?;
    if d.kv_capacity != d.kv_len || d.q_len > d.kv_len {
        return Err(Error::shape(
            op,
            format!(
                "{} queries against {} keys: every key is used, queries are the last positions",
                d.q_len, d.kv_len
            ),
        ));
    }
    for (what, t, like) in [
        ("dout", dout, q),
        ("dq", dq, q),
        ("dk", dk, k),
        ("dv", dv, k),
    ] {
        expect_shape(op, what, t, like.shape())?;
    }
    expect_shape(op, "stats", stats, &[d.batch, d.n_heads, d.q_len, 2])?;
    if d.head_dim == 0 || d.head_dim > ATTENTION_BACKWARD_MAX_HEAD_DIM {
        return Err(Error::shape(
            op,
            format!(
                "head_dim {} is outside 1 ..= {ATTENTION_BACKWARD_MAX_HEAD_DIM}",
                d.head_dim
            ),
        ));
    }
    if !scale.is_finite() {
        return Err(Error::shape(op, format!("the scale {scale} is not finite")));
    }
    let params = AttentionBackwardParams {
        q_len: to_u32(op, "q_len", d.q_len)?,
        kv_len: to_u32(op, "kv_len", d.kv_len)?,
        n_heads: to_u32(op, "n_heads", d.n_heads)?,
        n_kv_heads: to_u32(op, "n_kv_heads", d.n_kv_heads)?,
        causal: u32::from(causal),
        scale,
        _pad: [0; 2],
    };
    let head_dim = to_u32(op, "head_dim", d.head_dim)?;
    let grid_q = super::attention::max_grid(gpu, op, &[d.q_len, d.n_heads, d.batch])?;
    let grid_kv = super::attention::max_grid(gpu, op, &[d.kv_len, d.n_kv_heads, d.batch])?;
    let first = prepare(
        gpu,
        &attention_backward_key("attention_backward_q", dtype, head_dim),
        &params,
        &[
            (1, q),
            (2, k),
            (3, v),
            (4, out),
            (5, dout),
            (6, stats),
            (7, dq),
        ],
        [grid_q[0], grid_q[1], grid_q[2]],
    )?;
    let second = prepare(
        gpu,
        &attention_backward_key("attention_backward_kv", dtype, head_dim),
        &params,
        &[
            (1, q),
            (2, k),
            (3, v),
            (5, dout),
            (8, stats),
            (9, dk),
            (10, dv),
        ],
        [grid_kv[0], grid_kv[1], grid_kv[2]],
    )?;
    Ok(first.then(second))
}

/// f64 reference of [`attention_backward`] (all keys used): (dq, dk, dv). As in the kernel
/// (and FlashAttention-2), `D_i = dout_i · out_i` is taken from the forward output given.
#[allow(clippy::too_many_arguments)]
pub fn reference_attention_backward(
    d: &super::attention::AttentionDims,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    out: &[f64],
    dout: &[f64],
    causal: bool,
    scale: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (hd, group) = (d.head_dim, d.n_heads / d.n_kv_heads);
    let past = d.kv_len - d.q_len;
    let mut dq = vec![0.0; q.len()];
    let mut dk = vec![0.0; k.len()];
    let mut dv = vec![0.0; v.len()];
    let qi = |b: usize, i: usize, h: usize| ((b * d.q_len + i) * d.n_heads + h) * hd;
    let kj = |b: usize, j: usize, h: usize| ((b * d.kv_len + j) * d.n_kv_heads + h) * hd;
    let dot = |a: &[f64], x: usize, b: &[f64], y: usize| {
        (0..hd).map(|e| a[x + e] * b[y + e]).sum::<f64>()
    };
    for b in 0..d.batch {
        for h in 0..d.n_heads {
            let hk = h / group;
            for i in 0..d.q_len {
                let keys = if causal { past + i + 1 } else { d.kv_len };
                let s: Vec<f64> = (0..keys)
                    .map(|j| scale * dot(q, qi(b, i, h), k, kj(b, j, hk)))
                    .collect();
                let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
                let total: f64 = e.iter().sum();
                let pr: Vec<f64> = e.iter().map(|x| x / total).collect();
                let dp: Vec<f64> = (0..keys)
                    .map(|j| dot(dout, qi(b, i, h), v, kj(b, j, hk)))
                    .collect();
                let delta = dot(dout, qi(b, i, h), out, qi(b, i, h));
                for j in 0..keys {
                    let ds = pr[j] * (dp[j] - delta);
                    for x in 0..hd {
                        dq[qi(b, i, h) + x] += scale * ds * k[kj(b, j, hk) + x];
                        dk[kj(b, j, hk) + x] += scale * ds * q[qi(b, i, h) + x];
                        dv[kj(b, j, hk) + x] += pr[j] * dout[qi(b, i, h) + x];
                    }
                }
            }
        }
    }
    (dq, dk, dv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_grouped_by_id_in_order_and_a_foreign_id_is_refused() {
        let (order, offsets) = group_by_id(&[2, 0, 2, 2, 0], 4).unwrap();
        assert_eq!(offsets, [0, 2, 2, 5, 5]);
        assert_eq!(order, [1, 4, 0, 2, 3]);
        let err = group_by_id(&[1, 4], 4).unwrap_err().to_string();
        assert!(err.contains("token id 4"), "{err}");
    }
}
