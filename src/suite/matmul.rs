//! Case specification for matmul and GEMV.

use super::compare::Tolerance;
use super::{CaseSpec, HostTensor, Random};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::KernelCall;
use crate::kernels::matmul::{self, BLayout, Dims, Path};
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

impl CaseSpec for MatmulSpec {
    fn kernel(&self) -> &'static str {
        if self.dims().m == 1 && matches!(self.path, Path::Auto | Path::Gemv) {
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
        match self.path {
            Path::Tiled if self.m == 1 => s += " tiled",
            Path::Tiled if self.m >= 128 && self.n >= 128 => s += " tiled",
            Path::Wide => s += " wide",
            Path::Coop => s += " coop",
            _ => {}
        }
        s
    }

    fn flops(&self) -> f64 {
        self.dims().flops()
    }

    fn traffic(&self) -> usize {
        let d = self.dims();
        d.batch * d.m * d.k + d.batch * d.k * d.n + d.batch * d.m * d.n + d.n * usize::from(d.bias)
    }

    /// f32 accumulation of K products of magnitude ~1/4: rounding errors grow like a random
    /// walk, well inside eps·K; bias and operands are exact in the output type.
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: DType::F32.epsilon() * self.k as f64,
            rtol: 1e-6,
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
        Ok(inputs)
    }

    fn output_shape(&self, inputs: &[HostTensor]) -> Vec<usize> {
        let mut shape = inputs[0].shape.clone();
        *shape.last_mut().expect("rank >= 2") = self.n;
        shape
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let bias = inputs.get(2).map(|b| b.data.as_slice());
        matmul::reference(&self.dims(), &inputs[0].data, &inputs[1].data, bias)
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let (a, b) = (&inputs[0], &inputs[1]);
        matmul::matmul_with(gpu, a, b, self.layout, inputs.get(2), out, self.path)
    }
}
