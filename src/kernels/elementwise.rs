//! Elementwise kernels (`shaders/elementwise.wgsl`): scale, SiLU, GELU (erf and tanh forms),
//! add, mul and the fused SwiGLU `silu(a) * b`.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::{KernelCall, prepare, same_dtype, to_u32};
use crate::tensor::{DType, Tensor};

const SHADER: ShaderSource = ShaderSource {
    name: "elementwise.wgsl",
    body: include_str!("../../shaders/elementwise.wgsl"),
    library: &[super::GELU],
};
const WG: u32 = 256;

/// `out[i] = f(x[i])`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// `alpha * x`
    Scale(f32),
    /// `x * sigmoid(x)`
    Silu,
    /// `x * Φ(x)`, the exact GELU.
    GeluErf,
    /// `0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³)))`, the tanh approximation.
    GeluTanh,
    /// `c · tanh(x / c)`: soft-capping at `c` (Gemma 2's final logits).
    SoftCap(f32),
}

/// `out[i] = f(a[i], b[i % len(b)])`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Add,
    Mul,
    /// `silu(a) * b`, the gate of a SwiGLU MLP.
    SwiGlu,
}

impl Unary {
    pub fn name(self) -> &'static str {
        match self {
            Unary::Scale(_) => "scale",
            Unary::Silu => "silu",
            Unary::GeluErf => "gelu_erf",
            Unary::GeluTanh => "gelu_tanh",
            Unary::SoftCap(_) => "softcap",
        }
    }
    /// The shader's `UNARY_OP` value.
    fn code(self) -> u32 {
        match self {
            Unary::Scale(_) => 0,
            Unary::Silu => 1,
            Unary::GeluErf => 2,
            Unary::GeluTanh => 3,
            Unary::SoftCap(_) => 4,
        }
    }
    fn alpha(self) -> f32 {
        match self {
            Unary::Scale(alpha) | Unary::SoftCap(alpha) => alpha,
            _ => 0.0,
        }
    }
}

impl Binary {
    pub fn name(self) -> &'static str {
        match self {
            Binary::Add => "add",
            Binary::Mul => "mul",
            Binary::SwiGlu => "swiglu",
        }
    }

    /// The shader's `BINARY_OP` value.
    fn code(self) -> u32 {
        match self {
            Binary::Add => 0,
            Binary::Mul => 1,
            Binary::SwiGlu => 2,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    len_b: u32,
    alpha: f32,
    _pad: u32,
}

fn unary_key(op: Unary, dtype: DType) -> PipelineKey {
    PipelineKey::new(
        SHADER,
        "unary",
        dtype,
        &[("WG", WG), ("UNARY_OP", op.code())],
    )
}

fn binary_key(op: Binary, dtype: DType) -> PipelineKey {
    PipelineKey::new(
        SHADER,
        "binary",
        dtype,
        &[("WG", WG), ("BINARY_OP", op.code())],
    )
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    let unary = [
        Unary::Scale(1.0),
        Unary::Silu,
        Unary::GeluErf,
        Unary::GeluTanh,
        Unary::SoftCap(1.0),
    ];
    let binary = [Binary::Add, Binary::Mul, Binary::SwiGlu];
    let mut keys = Vec::new();
    for dtype in DType::ALL {
        keys.extend(unary.iter().map(|&op| unary_key(op, dtype)));
        keys.extend(binary.iter().map(|&op| binary_key(op, dtype)));
    }
    keys
}

/// `out = op(x)`; `x` and `out` have the same shape and dtype.
pub fn unary<'a>(gpu: &Gpu, op: Unary, x: &'a Tensor, out: &'a Tensor) -> Result<KernelCall<'a>> {
    let name = "elementwise unary";
    let dtype = same_dtype(name, &[x, out])?;
    if x.shape() != out.shape() {
        return Err(Error::shape(
            name,
            format!(
                "{}: input {:?} vs output {:?}",
                op.name(),
                x.shape(),
                out.shape()
            ),
        ));
    }
    let len = to_u32(name, "length", x.len())?;
    let params = Params {
        len,
        len_b: 1,
        alpha: op.alpha(),
        _pad: 0,
    };
    let grid = gpu.grid(op.name(), u64::from(len.div_ceil(WG)))?;
    prepare(
        gpu,
        &unary_key(op, dtype),
        &params,
        &[(1, x), (3, out)],
        grid,
    )
}

/// `out = op(a, b)` where `b`'s shape is a suffix of `a`'s (it repeats over `a`'s leading
/// dimensions) and `out` has `a`'s shape.
pub fn binary<'a>(
    gpu: &Gpu,
    op: Binary,
    a: &'a Tensor,
    b: &'a Tensor,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let name = "elementwise binary";
    let dtype = same_dtype(name, &[a, b, out])?;
    if !a.shape().ends_with(b.shape()) || a.shape() != out.shape() {
        return Err(Error::shape(
            name,
            format!(
                "{}: a {:?}, b {:?}, out {:?}; b must be a trailing part of a's shape and out \
                 must equal a",
                op.name(),
                a.shape(),
                b.shape(),
                out.shape()
            ),
        ));
    }
    let len = to_u32(name, "length", a.len())?;
    let params = Params {
        len,
        len_b: to_u32(name, "length of b", b.len())?,
        alpha: 0.0,
        _pad: 0,
    };
    let grid = gpu.grid(op.name(), u64::from(len.div_ceil(WG)))?;
    prepare(
        gpu,
        &binary_key(op, dtype),
        &params,
        &[(1, a), (2, b), (3, out)],
        grid,
    )
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// f64 reference of [`unary`].
pub fn reference_unary(op: Unary, x: &[f64]) -> Vec<f64> {
    let f = |v: f64| match op {
        Unary::Scale(alpha) => f64::from(alpha) * v,
        Unary::Silu => silu(v),
        Unary::GeluErf => 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2)),
        Unary::GeluTanh => {
            let u = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v);
            0.5 * v * (1.0 + u.tanh())
        }
        Unary::SoftCap(c) => f64::from(c) * (v / f64::from(c)).tanh(),
    };
    x.iter().map(|&v| f(v)).collect()
}

/// f64 reference of [`binary`].
pub fn reference_binary(op: Binary, a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .enumerate()
        .map(|(i, &x)| {
            let y = b[i % b.len()];
            match op {
                Binary::Add => x + y,
                Binary::Mul => x * y,
                Binary::SwiGlu => silu(x) * y,
            }
        })
        .collect()
}
