//! Nodes both models add to their graphs: a checkpoint `Linear` layer and the elementwise
//! operations, each into a new intermediate tensor.

use super::{Graph, Id};
use crate::kernels::elementwise::{self, Binary, Unary};
use crate::kernels::matmul::{self, BLayout};
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
