//! Case specifications for copy, the elementwise kernels, softmax, RMSNorm and LayerNorm.

use super::compare::Tolerance;
use super::{CaseSpec, HostTensor, Random};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::elementwise::{self, Binary, Unary};
use crate::kernels::{KernelCall, copy, gather, norm, peak, softmax, transpose};
use crate::tensor::Tensor;

/// The epsilon of the normalisation cases (a common checkpoint value, exact in f32).
const EPS: f64 = 1.0 / 1024.0 / 1024.0;

/// exp() may be off by a few ulp on GPUs, the erf approximation by 1.5e-7.
const TRANSCENDENTAL: Tolerance = Tolerance {
    atol: 1e-6,
    rtol: 4e-6,
};
/// One rounding of an exact result: covered by the output tolerance.
const ONE_ROUNDING: Tolerance = Tolerance {
    atol: 0.0,
    rtol: 0.0,
};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CopySpec {
    pub len: usize,
}

impl CaseSpec for CopySpec {
    fn kernel(&self) -> &'static str {
        "copy"
    }
    fn shape(&self) -> String {
        format!("n={}", self.len)
    }
    fn traffic(&self) -> usize {
        2 * self.len
    }
    fn compute_tolerance(&self) -> Tolerance {
        ONE_ROUNDING
    }
    fn exact(&self) -> bool {
        true
    }
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        Ok(vec![random(&[self.len], -1.0, 1.0)])
    }
    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        copy::reference(&inputs[0].data)
    }
    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        copy::copy(gpu, &inputs[0], out)
    }
}

/// The arithmetic-ceiling probe: `len` invocations of `iterations` FMA rounds.
#[derive(Clone, Debug)]
pub struct FmaPeakSpec {
    pub len: usize,
    pub iterations: usize,
}

impl CaseSpec for FmaPeakSpec {
    fn kernel(&self) -> &'static str {
        "fma_peak"
    }
    fn shape(&self) -> String {
        format!("n={} iterations={}", self.len, self.iterations)
    }
    fn flops(&self) -> f64 {
        peak::flops(self.len, self.iterations)
    }
    fn traffic(&self) -> usize {
        2 * self.len
    }
    fn compute_tolerance(&self) -> Tolerance {
        ONE_ROUNDING
    }
    fn exact(&self) -> bool {
        true
    }
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        Ok(vec![random(&[self.len], -4.0, 4.0)])
    }
    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        peak::reference(&inputs[0].data)
    }
    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        peak::fma_peak(gpu, &inputs[0], out, self.iterations)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UnarySpec {
    pub op: Unary,
    pub len: usize,
}

impl CaseSpec for UnarySpec {
    fn kernel(&self) -> &'static str {
        self.op.name()
    }
    fn shape(&self) -> String {
        format!("n={}", self.len)
    }
    fn traffic(&self) -> usize {
        2 * self.len
    }
    fn compute_tolerance(&self) -> Tolerance {
        match self.op {
            Unary::Scale(_) => ONE_ROUNDING,
            _ => TRANSCENDENTAL,
        }
    }
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        Ok(vec![random(&[self.len], -5.0, 5.0)])
    }
    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        elementwise::reference_unary(self.op, &inputs[0].data)
    }
    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        elementwise::unary(gpu, self.op, &inputs[0], out)
    }
}

/// `b`'s shape is a suffix of `a`'s.
#[derive(Clone, Debug, PartialEq)]
pub struct BinarySpec {
    pub op: Binary,
    pub a: Vec<usize>,
    pub b: Vec<usize>,
}

impl BinarySpec {
    /// Two operands of the same length.
    pub fn flat(op: Binary, len: usize) -> Self {
        BinarySpec {
            op,
            a: vec![len],
            b: vec![len],
        }
    }
}

impl CaseSpec for BinarySpec {
    fn kernel(&self) -> &'static str {
        self.op.name()
    }
    fn shape(&self) -> String {
        format!("{:?} by {:?}", self.a, self.b)
    }
    fn traffic(&self) -> usize {
        2 * self.a.iter().product::<usize>() + self.b.iter().product::<usize>()
    }
    fn compute_tolerance(&self) -> Tolerance {
        match self.op {
            Binary::Add | Binary::Mul => ONE_ROUNDING,
            Binary::SwiGlu => TRANSCENDENTAL,
        }
    }
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        Ok(vec![random(&self.a, -5.0, 5.0), random(&self.b, -5.0, 5.0)])
    }
    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        elementwise::reference_binary(self.op, &inputs[0].data, &inputs[1].data)
    }
    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        elementwise::binary(gpu, self.op, &inputs[0], &inputs[1], out)
    }
}

/// Softmax over rows of `offset + U(-4, 4)`: a large offset checks the max subtraction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftmaxSpec {
    pub rows: usize,
    pub cols: usize,
    pub offset: f64,
}

fn rows_shape(rows: usize, cols: usize, offset: f64) -> String {
    if offset == 0.0 {
        format!("{rows}x{cols}")
    } else {
        format!("{rows}x{cols} offset={offset}")
    }
}

impl CaseSpec for SoftmaxSpec {
    fn kernel(&self) -> &'static str {
        "softmax"
    }
    fn shape(&self) -> String {
        rows_shape(self.rows, self.cols, self.offset)
    }
    fn traffic(&self) -> usize {
        2 * self.rows * self.cols
    }
    /// exp(x - max) for x - max down to -20: about 3 + 2|x| ulp.
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 1e-9,
            rtol: 1e-5,
        }
    }
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let o = self.offset;
        Ok(vec![random(&[self.rows, self.cols], o - 4.0, o + 4.0)])
    }
    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        softmax::reference(&inputs[0].data, self.cols)
    }
    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        softmax::softmax(gpu, &inputs[0], out)
    }
}

/// Two-pass statistics in f32 over the row.
const ROW_NORM: Tolerance = Tolerance {
    atol: 1e-6,
    rtol: 1e-5,
};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsNormSpec {
    pub rows: usize,
    pub cols: usize,
}

impl CaseSpec for RmsNormSpec {
    fn kernel(&self) -> &'static str {
        "rms_norm"
    }
    fn shape(&self) -> String {
        rows_shape(self.rows, self.cols, 0.0)
    }
    fn traffic(&self) -> usize {
        2 * self.rows * self.cols + self.cols
    }
    fn compute_tolerance(&self) -> Tolerance {
        ROW_NORM
    }
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        Ok(vec![
            random(&[self.rows, self.cols], -2.0, 2.0),
            random(&[self.cols], 0.5, 1.5),
        ])
    }
    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        norm::reference_rms_norm(&inputs[0].data, &inputs[1].data, EPS)
    }
    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        norm::rms_norm(gpu, &inputs[0], &inputs[1], EPS as f32, out)
    }
}

/// LayerNorm over rows of `offset + U(-2, 2)`: a large offset checks the variance's precision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNormSpec {
    pub rows: usize,
    pub cols: usize,
    pub offset: f64,
}

impl CaseSpec for LayerNormSpec {
    fn kernel(&self) -> &'static str {
        "layer_norm"
    }
    fn shape(&self) -> String {
        rows_shape(self.rows, self.cols, self.offset)
    }
    fn traffic(&self) -> usize {
        2 * self.rows * self.cols + 2 * self.cols
    }
    fn compute_tolerance(&self) -> Tolerance {
        ROW_NORM
    }
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let o = self.offset;
        Ok(vec![
            random(&[self.rows, self.cols], o - 2.0, o + 2.0),
            random(&[self.cols], 0.5, 1.5),
            random(&[self.cols], -1.0, 1.0),
        ])
    }
    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let [x, w, b] = [&inputs[0].data, &inputs[1].data, &inputs[2].data];
        norm::reference_layer_norm(x, w, b, EPS)
    }
    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        norm::layer_norm(gpu, &inputs[0], &inputs[1], &inputs[2], EPS as f32, out)
    }
}

/// An embedding lookup of `n` ids into a `[rows, width]` table, optionally gathered from two
/// parts split at row `split` (as for a table larger than one binding).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GatherSpec {
    pub n: usize,
    pub rows: usize,
    pub width: usize,
    pub split: Option<usize>,
}

impl CaseSpec for GatherSpec {
    fn kernel(&self) -> &'static str {
        "gather"
    }
    fn shape(&self) -> String {
        let mut s = format!("{} of {}x{}", self.n, self.rows, self.width);
        if let Some(at) = self.split {
            s += &format!(" split@{at}");
        }
        s
    }
    fn traffic(&self) -> usize {
        2 * self.n * self.width
    }
    fn compute_tolerance(&self) -> Tolerance {
        ONE_ROUNDING
    }
    fn exact(&self) -> bool {
        true
    }
    /// The table, then the ids (u32).
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let table = random(&[self.rows, self.width], -1.0, 1.0);
        let draws = random(&[self.n], 0.0, self.rows as f64);
        let ids = draws
            .data
            .iter()
            .map(|&x| (x.floor() as usize).min(self.rows - 1) as f64)
            .collect();
        Ok(vec![
            table,
            HostTensor {
                shape: vec![self.n],
                data: ids,
                dtype: Some(crate::tensor::DType::U32),
            },
        ])
    }
    fn output_shape(&self, _: &[HostTensor]) -> Vec<usize> {
        vec![self.n, self.width]
    }
    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let ids: Vec<usize> = inputs[1].data.iter().map(|&x| x as usize).collect();
        gather::reference(&ids, &inputs[0].data, self.width)
    }
    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let (table, ids) = (&inputs[0], &inputs[1]);
        match self.split {
            None => gather::gather(gpu, ids, table, 0, out),
            Some(at) => {
                // The parts are views sharing the table's buffer; `out` outlives the call.
                let first = table.view(0, &[at, self.width])?;
                let second = table.view(at * self.width, &[self.rows - at, self.width])?;
                let a = gather::gather(gpu, ids, &first, 0, out)?.detach();
                let b = gather::gather(gpu, ids, &second, at, out)?.detach();
                Ok(a.then(b).owning([first, second]))
            }
        }
    }
}

/// A batched transpose `[batch, rows, cols]` → `[batch, cols, rows]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransposeSpec {
    pub batch: usize,
    pub rows: usize,
    pub cols: usize,
}

impl CaseSpec for TransposeSpec {
    fn kernel(&self) -> &'static str {
        "transpose"
    }
    fn shape(&self) -> String {
        format!("{}x{}x{}", self.batch, self.rows, self.cols)
    }
    fn traffic(&self) -> usize {
        2 * self.batch * self.rows * self.cols
    }
    fn compute_tolerance(&self) -> Tolerance {
        ONE_ROUNDING
    }
    fn exact(&self) -> bool {
        true
    }
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        Ok(vec![random(&[self.batch, self.rows, self.cols], -1.0, 1.0)])
    }
    fn output_shape(&self, _: &[HostTensor]) -> Vec<usize> {
        vec![self.batch, self.cols, self.rows]
    }
    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        transpose::reference(&inputs[0].data, self.batch, self.rows, self.cols)
    }
    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        transpose::transpose(gpu, &inputs[0], out)
    }
}
