//! Case specification for matmul and GEMV.

use super::compare::Tolerance;
use super::epilogue_suffix;
use super::{CaseSpec, HostTensor, Random};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::matmul::{self, BLayout, Dims, Epilogue, EpilogueKind, Path};
use crate::kernels::{KernelCall, norm};
use crate::tensor::{DType, Tensor};

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
    /// The fused epilogue (its operand is drawn as an extra input).
    pub epilogue: EpilogueKind,
    /// RMSNorm of `a` fused in front ([`matmul::norm_gemv`]; one row, `[N, K]` b).
    pub norm: bool,
}

/// The epsilon of the fused-norm cases.
const NORM_EPS: f64 = 1e-5;

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
            epilogue: EpilogueKind::None,
            norm: false,
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

impl CaseSpec for MatmulSpec {
    fn kernel(&self) -> &'static str {
        if self.norm {
            return "norm_gemv";
        }
        if self.path == Path::GemvRows {
            "gemv_rows"
        } else if self.dims().m == 1 && matches!(self.path, Path::Auto | Path::Gemv) {
            "gemv"
        } else {
            "matmul"
        }
    }

    fn shape(&self) -> String {
        let mut s = format!(
            "M={} N={} K={} b:{}",
            self.m,
            self.n,
            self.k,
            self.layout.name()
        );
        if self.batch > 1 {
            let shared = if self.b_batched { "" } else { " shared-b" };
            s += &format!(" batch={}{shared}", self.batch);
        }
        if self.bias {
            s += " +bias";
        }
        if self.norm {
            s += " rms_norm";
        }
        s += epilogue_suffix(self.epilogue);
        match self.path {
            Path::Tiled if self.m == 1 => s += " tiled",
            Path::Tiled if self.m >= 128 && self.n >= 128 => s += " tiled",
            Path::Wide => s += " wide",
            Path::Short => s += " short",
            Path::Coop => s += " coop",
            _ => {}
        }
        s
    }

    fn flops(&self) -> f64 {
        self.dims().flops()
    }

    fn cooperative(&self) -> bool {
        self.path == Path::Coop
    }

    fn traffic(&self) -> usize {
        let d = self.dims();
        d.batch * d.m * d.k + d.batch * d.k * d.n + d.batch * d.m * d.n + d.n * usize::from(d.bias)
    }

    /// f32 accumulation of K products of magnitude ~1/4: rounding errors grow like a random
    /// walk, well inside eps·K; bias and operands are exact in the output type.
    fn compute_tolerance(&self) -> Tolerance {
        let product = DType::F32.epsilon() * self.k as f64;
        if matches!(
            self.epilogue,
            EpilogueKind::SiluMul | EpilogueKind::GeluTanhMul
        ) {
            // silu(gate) with |gate| <= 4 scales the product's error by up to 4; exp() may be
            // off by a few ulp.
            Tolerance {
                atol: 4.0 * product,
                rtol: 4e-6,
            }
        } else {
            Tolerance {
                atol: product,
                rtol: 1e-6,
            }
        }
    }

    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let a_shape = if self.batch > 1 {
            vec![self.batch, self.m, self.k]
        } else {
            vec![self.m, self.k]
        };
        let mut b_shape = match self.layout {
            BLayout::KN => vec![self.k, self.n],
            BLayout::NK => vec![self.n, self.k],
        };
        if self.b_batched {
            b_shape.insert(0, self.batch);
        }
        let mut inputs = vec![random(&a_shape, -1.0, 1.0), random(&b_shape, -1.0, 1.0)];
        if self.bias {
            inputs.push(random(&[self.n], -1.0, 1.0));
        }
        if self.norm {
            inputs.push(random(&[self.k], -2.0, 2.0));
        }
        if self.epilogue != EpilogueKind::None {
            let out_shape = self.output_shape(&inputs);
            inputs.push(random(&out_shape, -4.0, 4.0));
        }
        Ok(inputs)
    }

    fn output_shape(&self, inputs: &[HostTensor]) -> Vec<usize> {
        let mut shape = inputs[0].shape.clone();
        *shape.last_mut().expect("rank >= 2") = self.n;
        shape
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let bias = self.bias.then(|| inputs[2].data.as_slice());
        let normed;
        let a = if self.norm {
            let weight = &inputs[2 + usize::from(self.bias)].data;
            normed = norm::reference_rms_norm(&inputs[0].data, weight, NORM_EPS);
            &normed
        } else {
            &inputs[0].data
        };
        let product = matmul::reference(&self.dims(), a, &inputs[1].data, bias);
        if self.epilogue == EpilogueKind::None {
            return product;
        }
        let other = &inputs[inputs.len() - 1].data;
        product
            .iter()
            .zip(other)
            .map(|(&v, &o)| self.epilogue.reference(v, o))
            .collect()
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let (a, b) = (&inputs[0], &inputs[1]);
        let bias = self.bias.then(|| &inputs[2]);
        let other = &inputs[inputs.len() - 1];
        let epilogue = Epilogue::new(self.epilogue, other);
        if self.norm {
            let weight = &inputs[2 + usize::from(self.bias)];
            let eps = NORM_EPS as f32;
            return matmul::norm_gemv(gpu, a, weight, eps, b, bias, epilogue, out);
        }
        matmul::matmul_fused(gpu, a, b, self.layout, bias, epilogue, out, self.path)
    }
}
