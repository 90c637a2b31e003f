//! The one list of kernel cases (kernel × shape × dtype) behind `tessera check`,
//! `tessera bench`, the integration tests and `cargo bench`.
//!
//! A [`Case`] knows how to draw seeded inputs, compute its f64 reference, call its kernel,
//! how much error to allow, and how many FLOPs and bytes one call is worth.

mod attention;
pub mod bench;
mod cases;
pub mod check;
pub mod compare;
pub mod rng;

pub use attention::{AttentionKernel, AttentionSpec, KvAppendSpec, RopeSpec};
pub use cases::cases;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::elementwise::{self, Binary, Unary};
use crate::kernels::matmul::{self, BLayout, Dims, Path};
use crate::kernels::{KernelCall, copy, norm, softmax};
use crate::tensor::{DType, Tensor};
use compare::Tolerance;
use rng::Rng;

/// The seed used when none is given.
pub const DEFAULT_SEED: u64 = 0x7e55_e4a0;

/// What a case computes, with its sizes.
#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    Copy {
        len: usize,
    },
    Unary {
        op: Unary,
        len: usize,
    },
    /// `b`'s shape is a suffix of `a`'s.
    Binary {
        op: Binary,
        a: Vec<usize>,
        b: Vec<usize>,
    },
    /// Inputs are `offset + U(-4, 4)`: a large offset checks the max subtraction.
    Softmax {
        rows: usize,
        cols: usize,
        offset: f64,
    },
    RmsNorm {
        rows: usize,
        cols: usize,
    },
    /// Inputs are `offset + U(-2, 2)`: a large offset checks the variance's precision.
    LayerNorm {
        rows: usize,
        cols: usize,
        offset: f64,
    },
    Matmul(MatmulSpec),
    Attention(AttentionSpec),
    /// In place.
    Rope(RopeSpec),
    /// In place.
    KvAppend(KvAppendSpec),
}

/// A matmul case: `a` is `[batch, m, k]` (`[m, k]` for batch 1); `b` holds one matrix per
/// batch when `b_batched`, else one shared matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatmulSpec {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub layout: BLayout,
    pub bias: bool,
    pub b_batched: bool,
    pub path: Path,
}

impl MatmulSpec {
    /// `[m, k] · b` with no bias, shared `b`, the automatic kernel choice.
    pub fn new(m: usize, n: usize, k: usize, layout: BLayout) -> Self {
        MatmulSpec {
            batch: 1,
            m,
            n,
            k,
            layout,
            bias: false,
            b_batched: false,
            path: Path::Auto,
        }
    }

    /// The problem the kernel solves: a shared `b` folds the batch into M.
    pub fn dims(&self) -> Dims {
        let (batch, m) = if self.b_batched {
            (self.batch, self.m)
        } else {
            (1, self.batch * self.m)
        };
        Dims {
            batch,
            m,
            n: self.n,
            k: self.k,
            layout: self.layout,
            bias: self.bias,
        }
    }
}

/// Whether and when `tessera bench` times a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchTier {
    /// Too small to time meaningfully; checked only.
    No,
    /// Timed by `bench --quick` and `bench`.
    Quick,
    /// Timed by `bench` only.
    Full,
}

#[derive(Clone, Debug)]
pub struct Case {
    pub spec: Spec,
    pub dtype: DType,
    /// Part of the subset `cargo test` runs (small and fast on a CPU adapter).
    pub ci: bool,
    pub bench: BenchTier,
}

/// Host-side values of one input, already rounded to the dtype it is uploaded in.
#[derive(Clone, Debug)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
    /// Uploaded in this dtype rather than the case's (tables that are always f32).
    pub dtype: Option<DType>,
}

impl HostTensor {
    fn random(rng: &mut Rng, dtype: DType, shape: &[usize], lo: f64, hi: f64) -> Self {
        let len = shape.iter().product();
        let data = (0..len).map(|_| dtype.round(rng.uniform(lo, hi))).collect();
        HostTensor {
            shape: shape.to_vec(),
            data,
            dtype: None,
        }
    }
}

impl Case {
    pub fn kernel(&self) -> &'static str {
        match &self.spec {
            Spec::Copy { .. } => "copy",
            Spec::Unary { op, .. } => op.name(),
            Spec::Binary { op, .. } => op.name(),
            Spec::Softmax { .. } => "softmax",
            Spec::RmsNorm { .. } => "rms_norm",
            Spec::LayerNorm { .. } => "layer_norm",
            Spec::Matmul(mm) if mm.dims().m == 1 && mm.path != Path::Tiled => "gemv",
            Spec::Matmul(_) => "matmul",
            Spec::Attention(a) => a.kernel(),
            Spec::Rope(_) => "rope",
            Spec::KvAppend(_) => "kv_append",
        }
    }

    /// The sizes, in a form that reads well in a table.
    pub fn shape(&self) -> String {
        match &self.spec {
            Spec::Copy { len } | Spec::Unary { len, .. } => format!("n={len}"),
            Spec::Binary { a, b, .. } => format!("{a:?} by {b:?}"),
            Spec::Softmax { rows, cols, offset } | Spec::LayerNorm { rows, cols, offset } => {
                if *offset == 0.0 {
                    format!("{rows}x{cols}")
                } else {
                    format!("{rows}x{cols} offset={offset}")
                }
            }
            Spec::RmsNorm { rows, cols } => format!("{rows}x{cols}"),
            Spec::Matmul(mm) => {
                let mut s = format!("M={} N={} K={} b:{}", mm.m, mm.n, mm.k, mm.layout.name());
                if mm.batch > 1 {
                    let shared = if mm.b_batched { "" } else { " shared-b" };
                    s += &format!(" batch={}{shared}", mm.batch);
                }
                if mm.bias {
                    s += " +bias";
                }
                if mm.path == Path::Tiled && mm.m == 1 {
                    s += " tiled";
                }
                s
            }
            Spec::Attention(a) => a.shape(),
            Spec::Rope(r) => r.shape(),
            Spec::KvAppend(kv) => kv.shape(),
        }
    }

    /// `kernel dtype shape`: unique within the list.
    pub fn name(&self) -> String {
        format!("{} {} {}", self.kernel(), self.dtype, self.shape())
    }

    fn matmul_dims(&self) -> Option<Dims> {
        match &self.spec {
            Spec::Matmul(mm) => Some(mm.dims()),
            _ => None,
        }
    }

    /// Whether the kernel updates its output in place: the output then starts as the first
    /// input rather than as NaN.
    pub fn in_place(&self) -> bool {
        matches!(self.spec, Spec::Rope(_) | Spec::KvAppend(_))
    }

    /// Floating-point operations in one call (0 where bandwidth is what matters).
    pub fn flops(&self) -> f64 {
        match &self.spec {
            Spec::Attention(a) if a.q_len > 1 => a.flops(),
            _ => self.matmul_dims().map_or(0.0, |d| d.flops()),
        }
    }

    /// Bytes one call must move at the least: each input read once, the output written once.
    pub fn bytes(&self) -> f64 {
        let elems: usize = match &self.spec {
            Spec::Copy { len } | Spec::Unary { len, .. } => 2 * len,
            Spec::Binary { a, b, .. } => {
                2 * a.iter().product::<usize>() + b.iter().product::<usize>()
            }
            Spec::Softmax { rows, cols, .. } => 2 * rows * cols,
            Spec::RmsNorm { rows, cols } => 2 * rows * cols + cols,
            Spec::LayerNorm { rows, cols, .. } => 2 * rows * cols + 2 * cols,
            Spec::Matmul(mm) => {
                let d = mm.dims();
                let b_mats = if d.batch > 1 { d.batch } else { 1 };
                d.batch * d.m * d.k
                    + b_mats * d.k * d.n
                    + d.batch * d.m * d.n
                    + d.n * (d.bias as usize)
            }
            Spec::Attention(a) => a.bytes_elems(),
            Spec::Rope(r) => r.bytes_elems(),
            Spec::KvAppend(kv) => kv.bytes_elems(),
        };
        (elems * self.dtype.size()) as f64
    }

    /// The error allowed against the f64 reference: the rounding of the output to its dtype
    /// plus what the computation itself may add in f32.
    pub fn tolerance(&self) -> Tolerance {
        let eps32 = DType::F32.epsilon();
        // One unit in the last place of the output, whatever the rounding mode; for f16 also
        // the smallest normal number, since f16 subnormals may be flushed to zero.
        let out = match self.dtype {
            DType::F32 => Tolerance {
                atol: 0.0,
                rtol: eps32,
            },
            DType::F16 => Tolerance {
                atol: 2f64.powi(-14),
                rtol: DType::F16.epsilon(),
            },
        };
        let compute = match &self.spec {
            Spec::Copy { .. } | Spec::KvAppend(_) => {
                return Tolerance {
                    atol: 0.0,
                    rtol: 0.0,
                };
            }
            Spec::Unary {
                op: Unary::Scale(_),
                ..
            }
            | Spec::Binary {
                op: Binary::Add | Binary::Mul,
                ..
            } => Tolerance {
                atol: 0.0,
                rtol: 0.0,
            },
            // exp() may be off by a few ulp on GPUs; the erf approximation by 1.5e-7.
            Spec::Unary { .. } | Spec::Binary { .. } => Tolerance {
                atol: 1e-6,
                rtol: 4e-6,
            },
            // exp(x - max) for x - max down to -20: about 3 + 2|x| ulp.
            Spec::Softmax { .. } => Tolerance {
                atol: 1e-9,
                rtol: 1e-5,
            },
            Spec::RmsNorm { .. } | Spec::LayerNorm { .. } => Tolerance {
                atol: 1e-6,
                rtol: 1e-5,
            },
            // f32 accumulation of K products of magnitude ~1/4: rounding errors grow like a
            // random walk, well inside eps·K; bias and operands are exact in the output type.
            Spec::Matmul(mm) => Tolerance {
                atol: eps32 * mm.k as f64,
                rtol: 1e-6,
            },
            Spec::Attention(a) => a.compute_tolerance(),
            Spec::Rope(r) => r.compute_tolerance(),
        };
        Tolerance {
            atol: out.atol + compute.atol,
            rtol: out.rtol + compute.rtol,
        }
    }

    /// Seeded inputs for this case.
    pub fn inputs(&self, seed: u64) -> Result<Vec<HostTensor>> {
        let mut rng = Rng::for_case(seed, &self.name());
        let d = self.dtype;
        let mut random =
            |shape: &[usize], lo: f64, hi: f64| HostTensor::random(&mut rng, d, shape, lo, hi);
        Ok(match &self.spec {
            Spec::Copy { len } => vec![random(&[*len], -1.0, 1.0)],
            Spec::Unary { len, .. } => vec![random(&[*len], -5.0, 5.0)],
            Spec::Binary { a, b, .. } => vec![random(a, -5.0, 5.0), random(b, -5.0, 5.0)],
            Spec::Softmax { rows, cols, offset } => {
                vec![random(&[*rows, *cols], offset - 4.0, offset + 4.0)]
            }
            Spec::RmsNorm { rows, cols } => {
                vec![
                    random(&[*rows, *cols], -2.0, 2.0),
                    random(&[*cols], 0.5, 1.5),
                ]
            }
            Spec::LayerNorm { rows, cols, offset } => vec![
                random(&[*rows, *cols], offset - 2.0, offset + 2.0),
                random(&[*cols], 0.5, 1.5),
                random(&[*cols], -1.0, 1.0),
            ],
            Spec::Matmul(mm) => {
                let a_shape = if mm.batch > 1 {
                    vec![mm.batch, mm.m, mm.k]
                } else {
                    vec![mm.m, mm.k]
                };
                let mut b_shape = match mm.layout {
                    BLayout::KN => vec![mm.k, mm.n],
                    BLayout::NK => vec![mm.n, mm.k],
                };
                if mm.b_batched {
                    b_shape.insert(0, mm.batch);
                }
                let mut inputs = vec![random(&a_shape, -1.0, 1.0), random(&b_shape, -1.0, 1.0)];
                if mm.bias {
                    inputs.push(random(&[mm.n], -1.0, 1.0));
                }
                inputs
            }
            Spec::Attention(a) => a.inputs(&mut random),
            Spec::Rope(r) => r.inputs(&mut random)?,
            Spec::KvAppend(kv) => kv.inputs(&mut random),
        })
    }

    /// The output's shape.
    pub fn output_shape(&self, inputs: &[HostTensor]) -> Vec<usize> {
        match &self.spec {
            Spec::Matmul(mm) => {
                let mut shape = inputs[0].shape.clone();
                *shape.last_mut().expect("rank >= 2") = mm.n;
                shape
            }
            _ => inputs[0].shape.clone(),
        }
    }

    /// The f64 reference output for `inputs`.
    pub fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let x = &inputs[0].data;
        match &self.spec {
            Spec::Copy { .. } => copy::reference(x),
            Spec::Unary { op, .. } => elementwise::reference_unary(*op, x),
            Spec::Binary { op, .. } => elementwise::reference_binary(*op, x, &inputs[1].data),
            Spec::Softmax { cols, .. } => softmax::reference(x, *cols),
            Spec::RmsNorm { .. } => norm::reference_rms_norm(x, &inputs[1].data, EPS),
            Spec::LayerNorm { .. } => {
                norm::reference_layer_norm(x, &inputs[1].data, &inputs[2].data, EPS)
            }
            Spec::Matmul(mm) => {
                let bias = inputs.get(2).map(|b| b.data.as_slice());
                matmul::reference(&mm.dims(), x, &inputs[1].data, bias)
            }
            Spec::Attention(a) => a.reference(inputs),
            Spec::Rope(r) => r.reference(inputs),
            Spec::KvAppend(kv) => kv.reference(inputs),
        }
    }

    /// The kernel call on device tensors made from [`Case::inputs`].
    pub fn call<'a>(
        &self,
        gpu: &Gpu,
        inputs: &'a [Tensor],
        out: &'a Tensor,
    ) -> Result<KernelCall<'a>> {
        let x = &inputs[0];
        match &self.spec {
            Spec::Copy { .. } => copy::copy(gpu, x, out),
            Spec::Unary { op, .. } => elementwise::unary(gpu, *op, x, out),
            Spec::Binary { op, .. } => elementwise::binary(gpu, *op, x, &inputs[1], out),
            Spec::Softmax { .. } => softmax::softmax(gpu, x, out),
            Spec::RmsNorm { .. } => norm::rms_norm(gpu, x, &inputs[1], EPS as f32, out),
            Spec::LayerNorm { .. } => {
                norm::layer_norm(gpu, x, &inputs[1], &inputs[2], EPS as f32, out)
            }
            Spec::Matmul(mm) => {
                matmul::matmul_with(gpu, x, &inputs[1], mm.layout, inputs.get(2), out, mm.path)
            }
            Spec::Attention(a) => a.call(gpu, inputs, out),
            Spec::Rope(r) => r.call(gpu, inputs, out),
            Spec::KvAppend(kv) => kv.call(gpu, inputs, out),
        }
    }
}

/// The epsilon of the normalisation cases (a common checkpoint value, exact in f32).
const EPS: f64 = 1.0 / 1024.0 / 1024.0;

/// A case made ready on a device: inputs uploaded, output allocated. For an in-place case
/// the output starts as a copy of the first input.
pub struct Prepared {
    pub host: Vec<HostTensor>,
    pub inputs: Vec<Tensor>,
    pub out: Tensor,
}

impl Prepared {
    pub fn new(gpu: &Gpu, case: &Case, seed: u64) -> Result<Prepared> {
        let host = case.inputs(seed)?;
        let upload = |h: &HostTensor| {
            let values: Vec<f32> = h.data.iter().map(|&v| v as f32).collect();
            Tensor::from_f32(gpu, &h.shape, &values, h.dtype.unwrap_or(case.dtype))
        };
        let inputs = host.iter().map(upload).collect::<Result<Vec<_>>>()?;
        let out = if case.in_place() {
            upload(&host[0])?
        } else {
            Tensor::empty(gpu, &case.output_shape(&host), case.dtype)?
        };
        Ok(Prepared { host, inputs, out })
    }
}
