//! Nodes both models add to their graphs: a checkpoint `Linear` layer and the elementwise
//! operations, each into a new intermediate tensor.

use super::{Graph, Id};
use crate::kernels::elementwise::{self, Binary, Unary};
use crate::kernels::matmul::{self, BLayout, Epilogue, Path};
use crate::kernels::packed::{self, PackedView, PackedWeight};
use crate::tensor::{DType, Tensor};

/// `x · weightᵀ (+ bias)`: `x` `[rows, in]`, `weight` `[out, in]` (a checkpoint `Linear`),
/// `bias` `[out]`; the result is `[rows, out]`.
pub fn linear(g: &mut Graph, x: Id, weight: &Tensor, bias: Option<&Tensor>, dtype: DType) -> Id {
    projection(g, x, None, weight, bias, None, dtype)
}

/// What [`linear_then`] does with its result, in the matmul's own store.
#[derive(Clone, Copy, Debug)]
pub enum Then {
    /// `other + linear(x)`: a residual connection.
    Add(Id),
    /// `silu(other) · linear(x)`: SwiGLU with the gate projection in `other`.
    SiluMul(Id),
    /// `gelu_tanh(other) · linear(x)`: GeGLU with the gate projection in `other`.
    GeluTanhMul(Id),
}

impl Then {
    fn other(self) -> Id {
        match self {
            Then::Add(other) | Then::SiluMul(other) | Then::GeluTanhMul(other) => other,
        }
    }

    /// The kernel's epilogue, with `other` resolved to its tensor.
    fn epilogue(self, other: &Tensor) -> Epilogue<'_> {
        match self {
            Then::Add(_) => Epilogue::Add(other),
            Then::SiluMul(_) => Epilogue::SiluMul(other),
            Then::GeluTanhMul(_) => Epilogue::GeluTanhMul(other),
        }
    }
}

/// [`linear`] followed by `then`, one kernel: `other` has the result's shape.
pub fn linear_then(
    g: &mut Graph,
    x: Id,
    weight: &Tensor,
    bias: Option<&Tensor>,
    then: Then,
    dtype: DType,
) -> Id {
    projection(g, x, None, weight, bias, Some(then), dtype)
}

/// `linear(RMSNorm(x))`, then `then`, as one GEMV: `x` is one row (`[1, in]`). The decoder's
/// norms fused into the projections after them on the decode path.
#[allow(clippy::too_many_arguments)]
pub fn norm_linear(
    g: &mut Graph,
    x: Id,
    norm_weight: &Tensor,
    eps: f32,
    weight: &Tensor,
    bias: Option<&Tensor>,
    then: Option<Then>,
    dtype: DType,
) -> Id {
    projection(g, x, Some((norm_weight, eps)), weight, bias, then, dtype)
}

/// The node behind [`linear`], [`linear_then`] and [`norm_linear`]. Operands: x, weight, out,
/// then the norm weight, `then`'s tensor and the bias where present.
fn projection(
    g: &mut Graph,
    x: Id,
    norm: Option<(&Tensor, f32)>,
    weight: &Tensor,
    bias: Option<&Tensor>,
    then: Option<Then>,
    dtype: DType,
) -> Id {
    let rows = g.shape(x)[0];
    let out = g.temp(&[rows, weight.shape()[0]], dtype);
    let w = g.external(weight);
    let mut operands = vec![x, w, out];
    let norm_at = operands.len();
    operands.extend(norm.map(|(n, _)| g.external(n)));
    let eps = norm.map(|(_, eps)| eps);
    let other_at = operands.len();
    operands.extend(then.map(Then::other));
    let bias_at = operands.len();
    operands.extend(bias.map(|b| g.external(b)));
    let has_bias = bias.is_some();
    let label = if norm.is_some() {
        "norm + linear"
    } else {
        "linear"
    };
    g.node(label, &operands, move |c| {
        let (x, w, out) = (c.tensor(0), c.tensor(1), c.tensor(2));
        let epilogue = then.map_or(Epilogue::None, |t| t.epilogue(c.tensor(other_at)));
        let bias = has_bias.then(|| c.tensor(bias_at));
        match eps {
            Some(eps) => {
                let norm_w = c.tensor(norm_at);
                matmul::norm_gemv(c.gpu, x, norm_w, eps, w, bias, epilogue, out)
            }
            None => matmul::matmul_fused(c.gpu, x, w, BLayout::NK, bias, epilogue, out, Path::Auto),
        }
    });
    out
}

/// [`linear`] (then `then`) with a packed quantized weight: the packed GEMV for a few rows
/// of `x`, the packed matmul for a prompt, with the bias and `then` fused into its store.
pub fn packed_linear(
    g: &mut Graph,
    x: Id,
    weight: &PackedWeight,
    bias: Option<&Tensor>,
    then: Option<Then>,
    dtype: DType,
) -> Id {
    let rows = g.shape(x)[0];
    let out = g.temp(&[rows, weight.rows], dtype);
    let (scales, quants) = (g.external(&weight.scales), g.external(&weight.quants));
    let mut operands = vec![x, scales, quants, out];
    let other_at = operands.len();
    operands.extend(then.map(Then::other));
    let bias_at = operands.len();
    operands.extend(bias.map(|b| g.external(b)));
    let has_bias = bias.is_some();
    let (ggml_type, n, k) = (weight.ggml_type, weight.rows, weight.cols);
    g.node("packed linear", &operands, move |c| {
        let w = PackedView {
            ggml_type,
            rows: n,
            cols: k,
            scales: c.tensor(1),
            quants: c.tensor(2),
        };
        let epilogue = then.map_or(Epilogue::None, |t| t.epilogue(c.tensor(other_at)));
        let bias = has_bias.then(|| c.tensor(bias_at));
        packed::linear(c.gpu, c.tensor(0), w, bias, epilogue, c.tensor(3))
    });
    out
}

/// `op(x)` into a tensor of `x`'s shape.
pub fn unary(g: &mut Graph, x: Id, op: Unary, dtype: DType) -> Id {
    let shape = g.shape(x).to_vec();
    let out = g.temp(&shape, dtype);
    g.node(op.name(), &[x, out], move |c| {
        elementwise::unary(c.gpu, op, c.tensor(0), c.tensor(1))
    });
    out
}

/// `op(a, b)` into a tensor of `a`'s shape (`b` repeats over `a`'s leading dimensions).
pub fn binary(g: &mut Graph, a: Id, b: Id, op: Binary, dtype: DType) -> Id {
    let shape = g.shape(a).to_vec();
    let out = g.temp(&shape, dtype);
    g.node(op.name(), &[a, b, out], move |c| {
        elementwise::binary(c.gpu, op, c.tensor(0), c.tensor(1), c.tensor(2))
    });
    out
}
