//! Case specifications for the training kernels: the cross-entropy loss and its gradient,
//! RMSNorm's and SwiGLU's gradients, and the AdamW step. A kernel with several outputs has a
//! case per output; the others go to tensors the call owns.

use super::compare::Tolerance;
use super::{CaseSpec, HostTensor, Random};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::KernelCall;
use crate::kernels::training::{self, AdamW};
use crate::tensor::{DType, Tensor};

/// Which output of a two-output kernel a case compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    First,
    Second,
}

impl Output {
    /// The compared one of a reference's two outputs.
    fn pick(self, (first, second): (Vec<f64>, Vec<f64>)) -> Vec<f64> {
        match self {
            Output::First => first,
            Output::Second => second,
        }
    }
}

/// A loss kernel's call for a case comparing `output`: `run` gets (per-row losses, gradient),
/// one of them `out`, the other a tensor the call owns (`[rows]` f32, or shaped as `like`).
fn loss_call<'a>(
    gpu: &Gpu,
    output: Output,
    rows: usize,
    like: &Tensor,
    out: &'a Tensor,
    run: impl FnOnce(&Tensor, &Tensor) -> Result<KernelCall<'static>>,
) -> Result<KernelCall<'a>> {
    Ok(match output {
        Output::First => {
            let grad = Tensor::empty(gpu, like.shape(), like.dtype())?;
            run(out, &grad)?.owning([grad])
        }
        Output::Second => {
            let loss = Tensor::empty(gpu, &[rows], DType::F32)?;
            run(&loss, out)?.owning([loss])
        }
    })
}

fn words(shape: Vec<usize>, values: impl IntoIterator<Item = usize>) -> HostTensor {
    HostTensor {
        shape,
        data: values.into_iter().map(|v| v as f64).collect(),
        dtype: Some(DType::U32),
    }
}

/// Cross entropy over `rows` rows of `vocab` logits, every fifth target ignored (u32::MAX);
/// `First` compares the per-row losses (f32), `Second` the gradient.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrossEntropySpec {
    pub rows: usize,
    pub vocab: usize,
    pub output: Output,
}

impl CrossEntropySpec {
    /// 1 / the rows counted: the gradient of the mean loss.
    fn scale(&self) -> f64 {
        1.0 / self
            .targets()
            .iter()
            .filter(|&&t| t < self.vocab)
            .count()
            .max(1) as f64
    }

    fn targets(&self) -> Vec<usize> {
        (0..self.rows)
            .map(|r| {
                if r % 5 == 4 {
                    u32::MAX as usize
                } else {
                    (r * 7919 + 13) % self.vocab
                }
            })
            .collect()
    }
}

impl CaseSpec for CrossEntropySpec {
    fn kernel(&self) -> &'static str {
        match self.output {
            Output::First => "cross_entropy",
            Output::Second => "cross_entropy_grad",
        }
    }

    fn shape(&self) -> String {
        format!("rows={} vocab={}", self.rows, self.vocab)
    }

    fn traffic(&self) -> usize {
        2 * self.rows * self.vocab
    }

    /// A log-sum-exp over the row (terms ≤ 1 after the max, a few ulp each) and a softmax.
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 2e-6,
            rtol: 4e-6,
        }
    }

    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        Ok(vec![
            random(&[self.rows, self.vocab], -4.0, 4.0),
            words(vec![self.rows], self.targets()),
        ])
    }

    fn output_shape(&self, inputs: &[HostTensor]) -> Vec<usize> {
        match self.output {
            Output::First => vec![self.rows],
            Output::Second => inputs[0].shape.clone(),
        }
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        self.output.pick(training::reference_cross_entropy(
            &inputs[0].data,
            &self.targets(),
            self.scale(),
        ))
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let (logits, targets) = (&inputs[0], &inputs[1]);
        let scale = self.scale() as f32;
        loss_call(gpu, self.output, self.rows, logits, out, |loss, grad| {
            Ok(training::cross_entropy(gpu, logits, targets, scale, loss, grad)?.detach())
        })
    }
}

/// RMSNorm's gradients over `rows` rows of `cols`: `First` dx, `Second` dw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsNormBackwardSpec {
    pub rows: usize,
    pub cols: usize,
    pub output: Output,
}

const EPS: f64 = 1e-5;

impl CaseSpec for RmsNormBackwardSpec {
    fn kernel(&self) -> &'static str {
        match self.output {
            Output::First => "rms_norm_grad_x",
            Output::Second => "rms_norm_grad_w",
        }
    }

    fn shape(&self) -> String {
        format!("{}x{}", self.rows, self.cols)
    }

    fn traffic(&self) -> usize {
        3 * self.rows * self.cols
    }

    /// Two row reductions (dx), a sum over the rows (dw): a few ulp per term of values near 1.
    fn compute_tolerance(&self) -> Tolerance {
        let terms = match self.output {
            Output::First => 8.0,
            Output::Second => self.rows as f64,
        };
        Tolerance {
            atol: 1e-6 * terms.sqrt(),
            rtol: 4e-6,
        }
    }

    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let shape = [self.rows, self.cols];
        Ok(vec![
            random(&shape, -2.0, 2.0),
            random(&[self.cols], 0.5, 1.5),
            random(&shape, -1.0, 1.0),
        ])
    }

    fn output_shape(&self, inputs: &[HostTensor]) -> Vec<usize> {
        match self.output {
            Output::First => inputs[0].shape.clone(),
            Output::Second => vec![self.cols],
        }
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        self.output.pick(training::reference_rms_norm_backward(
            &inputs[0].data,
            &inputs[1].data,
            &inputs[2].data,
            EPS,
        ))
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let (x, w, dy) = (&inputs[0], &inputs[1], &inputs[2]);
        let inv_rms = Tensor::empty(gpu, &[self.rows], DType::F32)?;
        let eps = EPS as f32;
        match self.output {
            Output::First => {
                let call = training::rms_norm_backward(gpu, x, w, dy, eps, out, &inv_rms)?;
                Ok(call.detach().owning([inv_rms]))
            }
            Output::Second => {
                let dx = Tensor::empty(gpu, x.shape(), x.dtype())?;
                let first = training::rms_norm_backward(gpu, x, w, dy, eps, &dx, &inv_rms)?;
                let second = training::rms_norm_backward_weight(gpu, x, dy, &inv_rms, out)?;
                Ok(first.then(second).detach().owning([dx, inv_rms]))
            }
        }
    }
}

/// SwiGLU's gradients over `len` elements: `First` dgate, `Second` dup.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SwigluBackwardSpec {
    pub len: usize,
    pub output: Output,
}

impl CaseSpec for SwigluBackwardSpec {
    fn kernel(&self) -> &'static str {
        match self.output {
            Output::First => "swiglu_grad_gate",
            Output::Second => "swiglu_grad_up",
        }
    }

    fn shape(&self) -> String {
        format!("n={}", self.len)
    }

    fn traffic(&self) -> usize {
        5 * self.len
    }

    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 1e-6,
            rtol: 2e-6,
        }
    }

    /// gate over [-12, 12] (both tails of the sigmoid), up and dy in [-1, 1].
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        Ok(vec![
            random(&[self.len], -12.0, 12.0),
            random(&[self.len], -1.0, 1.0),
            random(&[self.len], -1.0, 1.0),
        ])
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        self.output.pick(training::reference_swiglu_backward(
            &inputs[0].data,
            &inputs[1].data,
            &inputs[2].data,
        ))
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let (gate, up, dy) = (&inputs[0], &inputs[1], &inputs[2]);
        let other = Tensor::empty(gpu, gate.shape(), gate.dtype())?;
        let call = match self.output {
            Output::First => training::swiglu_backward(gpu, gate, up, dy, out, &other)?,
            Output::Second => training::swiglu_backward(gpu, gate, up, dy, &other, out)?,
        };
        Ok(call.detach().owning([other]))
    }
}

/// One AdamW step over `len` parameters at step `step`, gradient in the case's dtype, the
/// parameters (compared, updated in place) and moments in f32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWSpec {
    pub len: usize,
    pub step: u64,
    pub grad_scale: f32,
    /// Compare the updated parameter's copy in the gradient's type (`adamw_copy`, mixed
    /// precision) instead of the f32 parameter.
    pub copy: bool,
}

fn adamw_settings() -> AdamW {
    AdamW {
        lr: 3e-3,
        weight_decay: 0.1,
        ..AdamW::default()
    }
}

impl CaseSpec for AdamWSpec {
    fn kernel(&self) -> &'static str {
        if self.copy { "adamw_copy" } else { "adamw" }
    }

    fn shape(&self) -> String {
        format!(
            "n={} step={} grad scale={}",
            self.len, self.step, self.grad_scale
        )
    }

    fn traffic(&self) -> usize {
        7 * self.len
    }

    /// The update is lr · O(1): its f32 error (a division, a square root) is far below the
    /// rounding of the parameter itself.
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 1e-7,
            rtol: 1e-7,
        }
    }

    fn in_place(&self) -> bool {
        !self.copy
    }

    /// The parameters (f32, updated in place), the gradient, m and v (f32).
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let f32_of = |h: HostTensor| {
            let data = h.data.iter().map(|&v| f64::from(v as f32)).collect();
            HostTensor::f32_table(h.shape, data)
        };
        let n = [self.len];
        Ok(vec![
            f32_of(random(&n, -1.0, 1.0)),
            random(&n, -1.0, 1.0),
            f32_of(random(&n, -0.1, 0.1)),
            f32_of(random(&n, 0.0, 0.01)),
        ])
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let [p, g, m, v] = [0, 1, 2, 3].map(|i| &inputs[i].data);
        let grad_scale = f64::from(self.grad_scale);
        training::reference_adamw(&adamw_settings(), self.step, g, grad_scale, p, m, v).0
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let (grad, m, v) = (&inputs[1], &inputs[2], &inputs[3]);
        let settings = adamw_settings();
        if !self.copy {
            return training::adamw(gpu, &settings, self.step, grad, self.grad_scale, out, m, v);
        }
        // The f32 parameter is a copy the call owns; `out` gets the updated copy.
        let param = Tensor::empty(gpu, inputs[0].shape(), DType::F32)?;
        let first = crate::kernels::copy::copy(gpu, &inputs[0], &param)?.detach();
        let state = [&param, m, v];
        let step = training::adamw_with_copy(
            gpu,
            &settings,
            self.step,
            grad,
            self.grad_scale,
            state,
            Some(out),
        )?
        .detach();
        Ok(first.then(step).owning([param]))
    }
}

/// The weights' moving average over `len` elements (f32, in place).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmaSpec {
    pub len: usize,
    pub decay: f32,
}

impl CaseSpec for EmaSpec {
    fn kernel(&self) -> &'static str {
        "ema"
    }

    fn shape(&self) -> String {
        format!("n={} decay={}", self.len, self.decay)
    }

    fn traffic(&self) -> usize {
        3 * self.len
    }

    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 1e-7,
            rtol: 2e-7,
        }
    }

    fn in_place(&self) -> bool {
        true
    }

    /// The average (f32, updated in place) and the parameter (f32).
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let f32_of = |h: HostTensor| {
            let data = h.data.iter().map(|&v| f64::from(v as f32)).collect();
            HostTensor::f32_table(h.shape, data)
        };
        let n = [self.len];
        Ok(vec![
            f32_of(random(&n, -1.0, 1.0)),
            f32_of(random(&n, -1.0, 1.0)),
        ])
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        training::reference_ema(f64::from(self.decay), &inputs[1].data, &inputs[0].data)
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        training::ema_update(gpu, self.decay, &inputs[1], out)
    }
}

/// Which gradient of a Linear layer a case compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearGrad {
    Input,
    Weight,
    Bias,
}

/// A Linear layer's gradients (`y = x · wᵀ + b`, `x` `[m, k]`, `w` `[n, k]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearBackwardSpec {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub grad: LinearGrad,
}

impl CaseSpec for LinearBackwardSpec {
    fn kernel(&self) -> &'static str {
        match self.grad {
            LinearGrad::Input => "linear_grad_x",
            LinearGrad::Weight => "linear_grad_w",
            LinearGrad::Bias => "linear_grad_b",
        }
    }

    fn shape(&self) -> String {
        format!("M={} N={} K={}", self.m, self.n, self.k)
    }

    fn flops(&self) -> f64 {
        match self.grad {
            LinearGrad::Bias => (self.m * self.n) as f64,
            _ => 2.0 * crate::kernels::product_f64(&[self.m, self.n, self.k]),
        }
    }

    fn traffic(&self) -> usize {
        self.m * self.k + self.n * self.k + self.m * self.n
    }

    /// Sums of products of values in [-1, 1]: the matmul's bound over the summed length.
    fn compute_tolerance(&self) -> Tolerance {
        let terms = match self.grad {
            LinearGrad::Input => self.n,
            LinearGrad::Weight | LinearGrad::Bias => self.m,
        } as f64;
        Tolerance {
            atol: 2e-7 * terms.sqrt() + 1e-7,
            rtol: 4e-6,
        }
    }

    /// x, w, dy.
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        Ok(vec![
            random(&[self.m, self.k], -1.0, 1.0),
            random(&[self.n, self.k], -1.0, 1.0),
            random(&[self.m, self.n], -1.0, 1.0),
        ])
    }

    fn output_shape(&self, _inputs: &[HostTensor]) -> Vec<usize> {
        match self.grad {
            LinearGrad::Input => vec![self.m, self.k],
            LinearGrad::Weight => vec![self.n, self.k],
            LinearGrad::Bias => vec![self.n],
        }
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let (dx, dw, db) = training::reference_linear_backward(
            &inputs[0].data,
            &inputs[1].data,
            &inputs[2].data,
            [self.m, self.n, self.k],
        );
        match self.grad {
            LinearGrad::Input => dx,
            LinearGrad::Weight => dw,
            LinearGrad::Bias => db,
        }
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let (x, w, dy) = (&inputs[0], &inputs[1], &inputs[2]);
        match self.grad {
            LinearGrad::Input => training::linear_grad_input(gpu, dy, w, out),
            LinearGrad::Weight => {
                let dy_t = Tensor::empty(gpu, &[self.n, self.m], dy.dtype())?;
                let call = training::linear_grad_weight(gpu, dy, x, &dy_t, out)?;
                Ok(call.detach().owning([dy_t]))
            }
            LinearGrad::Bias => {
                let ones = vec![1.0f32; self.m];
                let ones = Tensor::from_f32(gpu, &[1, self.m], &ones, dy.dtype())?;
                let call = training::linear_grad_bias(gpu, dy, &ones, out)?;
                Ok(call.detach().owning([ones]))
            }
        }
    }
}

/// The embedding gradient: `positions` positions of a vocabulary of `vocab`, ids drawn so
/// that some repeat many times (the lost-update case) and some rows get none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmbeddingBackwardSpec {
    pub positions: usize,
    pub vocab: usize,
    pub width: usize,
}

impl EmbeddingBackwardSpec {
    /// Half the positions share id 1; the others spread over the even ids.
    fn ids(&self) -> Vec<u32> {
        (0..self.positions)
            .map(|i| {
                if i % 2 == 0 || self.vocab < 2 {
                    (1 % self.vocab) as u32
                } else {
                    ((i * 7919) % self.vocab.div_ceil(2) * 2 % self.vocab) as u32
                }
            })
            .collect()
    }
}

impl CaseSpec for EmbeddingBackwardSpec {
    fn kernel(&self) -> &'static str {
        "embedding_grad"
    }

    fn shape(&self) -> String {
        format!(
            "positions={} vocab={} width={}",
            self.positions, self.vocab, self.width
        )
    }

    fn traffic(&self) -> usize {
        (self.positions + self.vocab) * self.width
    }

    /// Sums of up to `positions` values in [-1, 1], in order.
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 1e-7 * self.positions as f64,
            rtol: 1e-6,
        }
    }

    /// d_out, then the grouping (order, offsets) the host computes from the ids.
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let (order, offsets) = training::group_by_id(&self.ids(), self.vocab)?;
        let as_words = |v: Vec<u32>| v.into_iter().map(|w| w as usize);
        Ok(vec![
            random(&[self.positions, self.width], -1.0, 1.0),
            words(vec![self.positions], as_words(order)),
            words(vec![self.vocab + 1], as_words(offsets)),
        ])
    }

    fn output_shape(&self, _inputs: &[HostTensor]) -> Vec<usize> {
        vec![self.vocab, self.width]
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        training::reference_embedding_backward(&inputs[0].data, &self.ids(), self.vocab)
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        training::embedding_backward(gpu, &inputs[0], &inputs[1], &inputs[2], out)
    }
}

/// SiLU's gradient over `len` elements (x over both tails of the sigmoid).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SiluBackwardSpec {
    pub len: usize,
}

impl CaseSpec for SiluBackwardSpec {
    fn kernel(&self) -> &'static str {
        "silu_grad"
    }

    fn shape(&self) -> String {
        format!("n={}", self.len)
    }

    fn traffic(&self) -> usize {
        3 * self.len
    }

    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 1e-6,
            rtol: 2e-6,
        }
    }

    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        Ok(vec![
            random(&[self.len], -12.0, 12.0),
            random(&[self.len], -1.0, 1.0),
        ])
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        training::reference_silu_backward(&inputs[0].data, &inputs[1].data)
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        training::silu_backward(gpu, &inputs[0], &inputs[1], out)
    }
}

/// The squared error of `rows` rows of `cols`: `First` the per-row sums (f32), `Second` the
/// gradient (scaled as for a mean).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MseSpec {
    pub rows: usize,
    pub cols: usize,
    pub output: Output,
}

impl MseSpec {
    fn scale(&self) -> f64 {
        1.0 / (self.rows * self.cols) as f64
    }
}

impl CaseSpec for MseSpec {
    fn kernel(&self) -> &'static str {
        match self.output {
            Output::First => "mse",
            Output::Second => "mse_grad",
        }
    }

    fn shape(&self) -> String {
        format!("{}x{}", self.rows, self.cols)
    }

    fn traffic(&self) -> usize {
        3 * self.rows * self.cols
    }

    /// A sum of up to `cols` squares of values below 4.
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 1e-6,
            rtol: 4e-6,
        }
    }

    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let shape = [self.rows, self.cols];
        Ok(vec![random(&shape, -1.0, 1.0), random(&shape, -1.0, 1.0)])
    }

    fn output_shape(&self, inputs: &[HostTensor]) -> Vec<usize> {
        match self.output {
            Output::First => vec![self.rows],
            Output::Second => inputs[0].shape.clone(),
        }
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        self.output.pick(training::reference_mse(
            &inputs[0].data,
            &inputs[1].data,
            self.cols,
            self.scale(),
        ))
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let (pred, target) = (&inputs[0], &inputs[1]);
        let scale = self.scale() as f32;
        loss_call(gpu, self.output, self.rows, pred, out, |loss, grad| {
            Ok(training::mse(gpu, pred, target, scale, loss, grad)?.detach())
        })
    }
}

/// The partial sums of squares of `len` gradient values (f32).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SumOfSquaresSpec {
    pub len: usize,
}

impl CaseSpec for SumOfSquaresSpec {
    fn kernel(&self) -> &'static str {
        "sum_of_squares"
    }

    fn shape(&self) -> String {
        format!("n={}", self.len)
    }

    fn traffic(&self) -> usize {
        self.len
    }

    /// Sums of up to 2048 squares below 1.
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 1e-6,
            rtol: 4e-6,
        }
    }

    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        Ok(vec![random(&[self.len], -1.0, 1.0)])
    }

    fn output_shape(&self, _inputs: &[HostTensor]) -> Vec<usize> {
        vec![training::sum_of_squares_groups(self.len)]
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        inputs[0]
            .data
            .chunks(training::SQUARES_PER_GROUP)
            .map(|c| c.iter().map(|v| v * v).sum())
            .collect()
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        training::sum_of_squares(gpu, &inputs[0], out)
    }
}

/// Which gradient of attention a case compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionGrad {
    Q,
    K,
    V,
}

/// Attention's recomputing backward: `q` `[batch, q_len, heads.0, head_dim]` against every
/// one of `kv_len` keys (`heads.1` kv heads), causal or not.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionBackwardSpec {
    pub batch: usize,
    pub q_len: usize,
    pub kv_len: usize,
    pub heads: (usize, usize),
    pub head_dim: usize,
    pub causal: bool,
    pub grad: AttentionGrad,
}

impl AttentionBackwardSpec {
    fn dims(&self) -> crate::kernels::attention::AttentionDims {
        crate::kernels::attention::AttentionDims {
            batch: self.batch,
            q_len: self.q_len,
            kv_len: self.kv_len,
            kv_capacity: self.kv_len,
            n_heads: self.heads.0,
            n_kv_heads: self.heads.1,
            head_dim: self.head_dim,
        }
    }

    fn scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }
}

impl CaseSpec for AttentionBackwardSpec {
    fn kernel(&self) -> &'static str {
        match self.grad {
            AttentionGrad::Q => "attention_grad_q",
            AttentionGrad::K => "attention_grad_k",
            AttentionGrad::V => "attention_grad_v",
        }
    }

    fn shape(&self) -> String {
        let mut s = format!(
            "q={} kv={} h={}/{} d={}",
            self.q_len, self.kv_len, self.heads.0, self.heads.1, self.head_dim
        );
        if self.batch > 1 {
            s += &format!(" b={}", self.batch);
        }
        s += if self.causal { " causal" } else { " full" };
        s
    }

    fn flops(&self) -> f64 {
        // Scores twice, dP, dQ, dK, dV: about 2.5 times the forward.
        2.5 * self.dims().flops(self.causal)
    }

    fn traffic(&self) -> usize {
        let q = self.batch * self.q_len * self.heads.0 * self.head_dim;
        let kv = self.batch * self.kv_len * self.heads.1 * self.head_dim;
        4 * q + 4 * kv
    }

    /// Sums over keys and queries of softmax-weighted products of values in [-1, 1].
    fn compute_tolerance(&self) -> Tolerance {
        let terms = (self.kv_len.max(self.q_len) * self.heads.0 / self.heads.1) as f64;
        Tolerance {
            atol: 1e-6 * terms.sqrt(),
            rtol: 4e-6,
        }
    }

    /// q, k, v, dout, then the forward's output (computed here in f64).
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let q_shape = [self.batch, self.q_len, self.heads.0, self.head_dim];
        let kv_shape = [self.batch, self.kv_len, self.heads.1, self.head_dim];
        let q = random(&q_shape, -1.5, 1.5);
        let k = random(&kv_shape, -1.5, 1.5);
        let v = random(&kv_shape, -1.0, 1.0);
        let dout = random(&q_shape, -1.0, 1.0);
        let out = crate::kernels::attention::reference(
            &self.dims(),
            &q.data,
            &k.data,
            &v.data,
            self.causal,
            self.scale(),
            None,
            None,
        );
        // Rounded to the case's dtype, as the upload will round it, so that the kernel and the
        // reference read the same values. `inputs` is not told the dtype: `random` rounded its
        // draws to it, so f16 is when every draw of q is an f16 value (never by chance for a
        // few thousand uniform f32 draws).
        let f16 = q
            .data
            .iter()
            .all(|&v| f64::from(half::f16::from_f64(v)) == v);
        let round = |x: f64| -> f64 {
            if f16 {
                f64::from(half::f16::from_f64(x))
            } else {
                f64::from(x as f32)
            }
        };
        let out = HostTensor {
            shape: q_shape.to_vec(),
            data: out.into_iter().map(round).collect(),
            dtype: None,
        };
        Ok(vec![q, k, v, dout, out])
    }

    fn output_shape(&self, inputs: &[HostTensor]) -> Vec<usize> {
        match self.grad {
            AttentionGrad::Q => inputs[0].shape.clone(),
            AttentionGrad::K | AttentionGrad::V => inputs[1].shape.clone(),
        }
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let [q, k, v, dout, out] = [0, 1, 2, 3, 4].map(|i| &inputs[i].data);
        let (dq, dk, dv) = training::reference_attention_backward(
            &self.dims(),
            q,
            k,
            v,
            out,
            dout,
            self.causal,
            self.scale(),
        );
        match self.grad {
            AttentionGrad::Q => dq,
            AttentionGrad::K => dk,
            AttentionGrad::V => dv,
        }
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let [q, k, v, dout, forward] = [0, 1, 2, 3, 4].map(|i| &inputs[i]);
        let stats = Tensor::empty(gpu, &[self.batch, self.heads.0, self.q_len, 2], DType::F32)?;
        let spare_q = Tensor::empty(gpu, q.shape(), q.dtype())?;
        let spare_k = Tensor::empty(gpu, k.shape(), k.dtype())?;
        let spare_v = Tensor::empty(gpu, k.shape(), k.dtype())?;
        let grads = match self.grad {
            AttentionGrad::Q => [out, &spare_k, &spare_v],
            AttentionGrad::K => [&spare_q, out, &spare_v],
            AttentionGrad::V => [&spare_q, &spare_k, out],
        };
        let scale = self.scale() as f32;
        let call = training::attention_backward(
            gpu,
            q,
            k,
            v,
            forward,
            dout,
            self.causal,
            scale,
            &stats,
            grads,
        )?;
        Ok(call.detach().owning([stats, spare_q, spare_k, spare_v]))
    }
}

/// GELU's gradient over `len` elements: the exact GELU or the tanh approximation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeluBackwardSpec {
    pub len: usize,
    pub tanh: bool,
}

impl CaseSpec for GeluBackwardSpec {
    fn kernel(&self) -> &'static str {
        if self.tanh {
            "gelu_tanh_grad"
        } else {
            "gelu_erf_grad"
        }
    }

    fn shape(&self) -> String {
        format!("n={}", self.len)
    }

    fn traffic(&self) -> usize {
        3 * self.len
    }

    /// A polynomial erfc (|error| < 1.5e-7) and an exponential.
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 1e-6,
            rtol: 2e-6,
        }
    }

    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        Ok(vec![
            random(&[self.len], -8.0, 8.0),
            random(&[self.len], -1.0, 1.0),
        ])
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        training::reference_gelu_backward(&inputs[0].data, &inputs[1].data, self.tanh)
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        training::gelu_backward(gpu, &inputs[0], &inputs[1], self.tanh, out)
    }
}

/// GeGLU's gradients over `len` elements: `First` dgate, `Second` dup.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GegluBackwardSpec {
    pub len: usize,
    pub output: Output,
}

impl CaseSpec for GegluBackwardSpec {
    fn kernel(&self) -> &'static str {
        match self.output {
            Output::First => "geglu_grad_gate",
            Output::Second => "geglu_grad_up",
        }
    }

    fn shape(&self) -> String {
        format!("n={}", self.len)
    }

    fn traffic(&self) -> usize {
        5 * self.len
    }

    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 1e-6,
            rtol: 4e-6,
        }
    }

    /// gate, up, dy.
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let n = [self.len];
        Ok(vec![
            random(&n, -8.0, 8.0),
            random(&n, -2.0, 2.0),
            random(&n, -1.0, 1.0),
        ])
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        self.output.pick(training::reference_geglu_backward(
            &inputs[0].data,
            &inputs[1].data,
            &inputs[2].data,
        ))
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let (gate, up, dy) = (&inputs[0], &inputs[1], &inputs[2]);
        let other = Tensor::empty(gpu, gate.shape(), gate.dtype())?;
        let call = match self.output {
            Output::First => training::geglu_backward(gpu, gate, up, dy, out, &other)?,
            Output::Second => training::geglu_backward(gpu, gate, up, dy, &other, out)?,
        };
        Ok(call.detach().owning([other]))
    }
}

/// LayerNorm's gradients over `rows` rows of `cols`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNormBackwardSpec {
    pub rows: usize,
    pub cols: usize,
    pub grad: super::spatial_backward::Grad,
}

impl CaseSpec for LayerNormBackwardSpec {
    fn kernel(&self) -> &'static str {
        use super::spatial_backward::Grad;
        match self.grad {
            Grad::Input => "layer_norm_grad_x",
            Grad::Weight => "layer_norm_grad_w",
            Grad::Bias => "layer_norm_grad_b",
        }
    }

    fn shape(&self) -> String {
        format!("{}x{}", self.rows, self.cols)
    }

    fn traffic(&self) -> usize {
        3 * self.rows * self.cols
    }

    /// Row reductions (dx), sums over the rows (dw, db).
    fn compute_tolerance(&self) -> Tolerance {
        let terms = match self.grad {
            super::spatial_backward::Grad::Input => 8.0,
            _ => self.rows as f64,
        };
        Tolerance {
            atol: 2e-6 * terms.sqrt(),
            rtol: 1e-5,
        }
    }

    /// x, weight, dy.
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let shape = [self.rows, self.cols];
        Ok(vec![
            random(&shape, -2.0, 2.0),
            random(&[self.cols], 0.5, 1.5),
            random(&shape, -1.0, 1.0),
        ])
    }

    fn output_shape(&self, inputs: &[HostTensor]) -> Vec<usize> {
        match self.grad {
            super::spatial_backward::Grad::Input => inputs[0].shape.clone(),
            _ => vec![self.cols],
        }
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        use super::spatial_backward::Grad;
        let (dx, dw, db) = training::reference_layer_norm_backward(
            &inputs[0].data,
            &inputs[1].data,
            &inputs[2].data,
            EPS,
        );
        match self.grad {
            Grad::Input => dx,
            Grad::Weight => dw,
            Grad::Bias => db,
        }
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        use super::spatial_backward::Grad;
        let (x, w, dy) = (&inputs[0], &inputs[1], &inputs[2]);
        let stats = Tensor::empty(gpu, &[self.rows, 2], DType::F32)?;
        let mut owned = Vec::new();
        let mut scratch = |shape: &[usize]| -> Result<Tensor> {
            let t = Tensor::empty(gpu, shape, x.dtype())?;
            owned.push(t.share());
            Ok(t)
        };
        let c = [self.cols];
        let (dx, dw, db) = match self.grad {
            Grad::Input => (out.share(), scratch(&c)?, scratch(&c)?),
            Grad::Weight => (scratch(x.shape())?, out.share(), scratch(&c)?),
            Grad::Bias => (scratch(x.shape())?, scratch(&c)?, out.share()),
        };
        let call =
            training::layer_norm_backward(gpu, x, w, dy, EPS as f32, &stats, [&dx, &dw, &db])?
                .detach();
        owned.push(stats);
        Ok(call.owning(owned))
    }
}

/// Softmax's gradient over `rows` rows of `cols` (from the forward output y in (0, 1)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftmaxBackwardSpec {
    pub rows: usize,
    pub cols: usize,
}

impl CaseSpec for SoftmaxBackwardSpec {
    fn kernel(&self) -> &'static str {
        "softmax_grad"
    }

    fn shape(&self) -> String {
        format!("{}x{}", self.rows, self.cols)
    }

    fn traffic(&self) -> usize {
        3 * self.rows * self.cols
    }

    /// One row dot product of values in (0, 1) and [-1, 1].
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 2e-7 * (self.cols as f64).sqrt() + 1e-7,
            rtol: 4e-6,
        }
    }

    /// y, dy.
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let shape = [self.rows, self.cols];
        Ok(vec![random(&shape, 0.0, 1.0), random(&shape, -1.0, 1.0)])
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        training::reference_softmax_backward(&inputs[0].data, &inputs[1].data, self.cols)
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        training::softmax_backward(gpu, &inputs[0], &inputs[1], out)
    }
}
