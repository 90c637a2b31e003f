//! Nodes both models add to their graphs: a checkpoint `Linear` layer and the elementwise
//! operations, each into a new intermediate tensor.

use super::{Graph, Id};
use crate::kernels::elementwise::{self, Binary, Unary};
use crate::kernels::matmul::{self, BLayout, Epilogue, Path};
use crate::tensor::{DType, Tensor};

/// `x · weightᵀ (+ bias)`: `x` `[rows, in]`, `weight` `[out, in]` (a checkpoint `Linear`),
/// `bias` `[out]`; the result is `[rows, out]`.
pub fn linear(g: &mut Graph, x: Id, weight: &Tensor, bias: Option<&Tensor>, dtype: DType) -> Id {
    let rows = g.shape(x)[0];
    let out = g.temp(&[rows, weight.shape()[0]], dtype);
    let w = g.external(weight);
    match bias {
        Some(bias) => {
            let b = g.external(bias);
            g.node("linear", &[x, w, b, out], |c| {
                let (x, w, b, out) = (c.tensor(0), c.tensor(1), c.tensor(2), c.tensor(3));
                matmul::matmul(c.gpu, x, w, BLayout::NK, Some(b), out)
            });
        }
        None => g.node("linear", &[x, w, out], |c| {
            let (x, w, out) = (c.tensor(0), c.tensor(1), c.tensor(2));
            matmul::matmul(c.gpu, x, w, BLayout::NK, None, out)
        }),
    }
    out
}

/// What [`linear_then`] does with its result, in the matmul's own store.
#[derive(Clone, Copy, Debug)]
pub enum Then {
    /// `other + linear(x)`: a residual connection.
    Add(Id),
    /// `silu(other) · linear(x)`: SwiGLU with the gate projection in `other`.
    SiluMul(Id),
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
    let rows = g.shape(x)[0];
    let out = g.temp(&[rows, weight.shape()[0]], dtype);
    let w = g.external(weight);
    let (other, add) = match then {
        Then::Add(other) => (other, true),
        Then::SiluMul(other) => (other, false),
    };
    let mut operands = vec![x, w, other, out];
    operands.extend(bias.map(|b| g.external(b)));
    g.node("linear", &operands, move |c| {
        let (x, w, other, out) = (c.tensor(0), c.tensor(1), c.tensor(2), c.tensor(3));
        let bias = c.has(4).then(|| c.tensor(4));
        let epilogue = if add {
            Epilogue::Add(other)
        } else {
            Epilogue::SiluMul(other)
        };
        matmul::matmul_fused(c.gpu, x, w, BLayout::NK, bias, epilogue, out, Path::Auto)
    });
    out
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
    let out = g.temp(&[1, weight.shape()[0]], dtype);
    let (norm_w, w) = (g.external(norm_weight), g.external(weight));
    let mut operands = vec![x, norm_w, w, out];
    let (other, add) = match then {
        Some(Then::Add(other)) => (Some(other), true),
        Some(Then::SiluMul(other)) => (Some(other), false),
        None => (None, false),
    };
    operands.extend(other);
    let bias_at = operands.len();
    operands.extend(bias.map(|b| g.external(b)));
    let has_other = other.is_some();
    g.node("norm + linear", &operands, move |c| {
        let (x, norm_w, w, out) = (c.tensor(0), c.tensor(1), c.tensor(2), c.tensor(3));
        let epilogue = match (has_other, add) {
            (false, _) => Epilogue::None,
            (true, true) => Epilogue::Add(c.tensor(4)),
            (true, false) => Epilogue::SiluMul(c.tensor(4)),
        };
        let bias = c.has(bias_at).then(|| c.tensor(bias_at));
        matmul::norm_gemv(c.gpu, x, norm_w, eps, w, bias, epilogue, out)
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
