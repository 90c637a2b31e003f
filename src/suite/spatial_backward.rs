//! Case specifications for the gradients of the NCHW kernels: a convolution's data, weight
//! and bias gradients, GroupNorm's (with and without the fused SiLU), and those of
//! upsampling, average pooling, the per-channel add and the channel concatenation. A kernel
//! with several outputs has a case per output; the others go to tensors the call owns.

use super::compare::Tolerance;
use super::{CaseSpec, HostTensor, Random};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::KernelCall;
use crate::kernels::conv2d::{Conv2dDims, Conv2dOptions};
use crate::kernels::spatial_backward as kernels;
use crate::tensor::{DType, Tensor};

/// Which gradient of a layer with a weight and a bias a case compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grad {
    Input,
    Weight,
    Bias,
}

impl Grad {
    fn pick(self, (input, weight, bias): (Vec<f64>, Vec<f64>, Vec<f64>)) -> Vec<f64> {
        match self {
            Grad::Input => input,
            Grad::Weight => weight,
            Grad::Bias => bias,
        }
    }
}

/// A convolution's gradients: `x` `[batch, c_in, h, w]`, a `k × k` kernel, `options`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dBackwardSpec {
    pub batch: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub options: Conv2dOptions,
    pub grad: Grad,
    /// The direct kernels instead of the rearrangement onto the tiled ones.
    pub direct: bool,
}

impl Conv2dBackwardSpec {
    fn dims(&self) -> Conv2dDims {
        let (h_out, w_out) = self
            .options
            .output_size(self.h, self.w, self.k, self.k)
            .expect("cases are valid convolutions");
        Conv2dDims {
            batch: self.batch,
            c_in: self.c_in,
            h: self.h,
            w: self.w,
            c_out: self.c_out,
            kh: self.k,
            kw: self.k,
            h_out,
            w_out,
        }
    }

    /// Terms in one sum of the compared gradient.
    fn terms(&self) -> usize {
        let d = self.dims();
        match self.grad {
            Grad::Input => d.c_out * d.kh * d.kw,
            Grad::Weight | Grad::Bias => d.batch * d.h_out * d.w_out,
        }
    }
}

impl CaseSpec for Conv2dBackwardSpec {
    fn kernel(&self) -> &'static str {
        match self.grad {
            Grad::Input => "conv2d_grad_x",
            Grad::Weight => "conv2d_grad_w",
            Grad::Bias => "conv2d_grad_b",
        }
    }

    fn shape(&self) -> String {
        format!(
            "N={} Ci={} Co={} {}x{} k={} s={} p={}{}",
            self.batch,
            self.c_in,
            self.c_out,
            self.h,
            self.w,
            self.k,
            self.options.stride,
            self.options.pad_top,
            if self.direct { " direct" } else { "" }
        )
    }

    fn flops(&self) -> f64 {
        match self.grad {
            Grad::Bias => crate::kernels::product_f64(&[
                self.batch,
                self.c_out,
                self.dims().h_out,
                self.dims().w_out,
            ]),
            _ => self.dims().flops(),
        }
    }

    fn traffic(&self) -> usize {
        let d = self.dims();
        d.batch * d.c_in * d.h * d.w
            + d.c_out * d.c_in * d.kh * d.kw
            + d.batch * d.c_out * d.h_out * d.w_out
    }

    /// Sums of products of values in [-1, 1], each summed in one running f32 total: the
    /// forward convolution's bound, one unit roundoff per term.
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: DType::F32.epsilon() * self.terms() as f64,
            rtol: 1e-6,
        }
    }

    /// x, weight, dy.
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let d = self.dims();
        Ok(vec![
            random(&[d.batch, d.c_in, d.h, d.w], -1.0, 1.0),
            random(&[d.c_out, d.c_in, d.kh, d.kw], -1.0, 1.0),
            random(&[d.batch, d.c_out, d.h_out, d.w_out], -1.0, 1.0),
        ])
    }

    fn output_shape(&self, inputs: &[HostTensor]) -> Vec<usize> {
        match self.grad {
            Grad::Input => inputs[0].shape.clone(),
            Grad::Weight => inputs[1].shape.clone(),
            Grad::Bias => vec![self.c_out],
        }
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        self.grad.pick(kernels::reference_conv2d_backward(
            &self.dims(),
            self.options,
            &inputs[0].data,
            &inputs[1].data,
            &inputs[2].data,
        ))
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let (x, w, dy) = (&inputs[0], &inputs[1], &inputs[2]);
        let shapes = match (self.grad, self.direct) {
            (Grad::Input, false) => kernels::data_scratch(x.shape(), w.shape(), self.options)?,
            _ => Vec::new(),
        };
        let weight_kernel = match self.direct {
            true => kernels::WeightGradKernel::Direct,
            false => kernels::WeightGradKernel::Tiled,
        };
        let scratch = shapes
            .iter()
            .map(|shape| Tensor::empty(gpu, shape, x.dtype()))
            .collect::<Result<Vec<_>>>()?;
        let views: Vec<&Tensor> = scratch.iter().collect();
        let call = match self.grad {
            Grad::Input => kernels::conv2d_backward_data(gpu, dy, w, self.options, &views, out)?,
            Grad::Weight => {
                kernels::conv2d_backward_weight(gpu, dy, x, self.options, weight_kernel, out)?
            }
            Grad::Bias => kernels::conv2d_backward_bias(gpu, dy, out)?,
        };
        Ok(call.detach().owning(scratch))
    }
}

/// GroupNorm's gradients over `x` `[batch, channels, spatial]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNormBackwardSpec {
    pub batch: usize,
    pub channels: usize,
    pub groups: usize,
    pub spatial: usize,
    pub silu: bool,
    pub grad: Grad,
}

const EPS: f64 = 1e-5;

impl CaseSpec for GroupNormBackwardSpec {
    fn kernel(&self) -> &'static str {
        match (self.grad, self.silu) {
            (Grad::Input, false) => "group_norm_grad_x",
            (Grad::Weight, false) => "group_norm_grad_w",
            (Grad::Bias, false) => "group_norm_grad_b",
            (Grad::Input, true) => "group_norm_silu_grad_x",
            (Grad::Weight, true) => "group_norm_silu_grad_w",
            (Grad::Bias, true) => "group_norm_silu_grad_b",
        }
    }

    fn shape(&self) -> String {
        format!(
            "N={} C={} G={} HW={}",
            self.batch, self.channels, self.groups, self.spatial
        )
    }

    fn traffic(&self) -> usize {
        3 * self.batch * self.channels * self.spatial
    }

    /// Group reductions of values near 1 (dx), sums over the batch's planes (weight, bias).
    fn compute_tolerance(&self) -> Tolerance {
        let terms = match self.grad {
            Grad::Input => self.channels / self.groups * self.spatial,
            Grad::Weight | Grad::Bias => self.batch * self.spatial,
        } as f64;
        Tolerance {
            atol: 1e-6 * terms.sqrt(),
            rtol: 1e-5,
        }
    }

    /// x, weight, bias, dy.
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let shape = [self.batch, self.channels, self.spatial];
        Ok(vec![
            random(&shape, -2.0, 2.0),
            random(&[self.channels], 0.5, 1.5),
            random(&[self.channels], -0.5, 0.5),
            random(&shape, -1.0, 1.0),
        ])
    }

    fn output_shape(&self, inputs: &[HostTensor]) -> Vec<usize> {
        match self.grad {
            Grad::Input => inputs[0].shape.clone(),
            Grad::Weight | Grad::Bias => vec![self.channels],
        }
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        self.grad.pick(kernels::reference_group_norm_backward(
            &inputs[0].data,
            &inputs[1].data,
            &inputs[2].data,
            &inputs[3].data,
            self.groups,
            self.spatial,
            EPS,
            self.silu,
        ))
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let (x, w, b, dy) = (&inputs[0], &inputs[1], &inputs[2], &inputs[3]);
        let [partials, stats] = kernels::group_norm_scratch(self.batch, self.channels, self.groups);
        let partials = Tensor::empty(gpu, &partials, DType::F32)?;
        let stats = Tensor::empty(gpu, &stats, DType::F32)?;
        let mut owned = vec![];
        let mut scratch = |shape: &[usize]| -> Result<Tensor> {
            let t = Tensor::empty(gpu, shape, x.dtype())?;
            owned.push(t.share());
            Ok(t)
        };
        let c = [self.channels];
        let (dx, dw, db) = match self.grad {
            Grad::Input => (out.share(), scratch(&c)?, scratch(&c)?),
            Grad::Weight => (scratch(x.shape())?, out.share(), scratch(&c)?),
            Grad::Bias => (scratch(x.shape())?, scratch(&c)?, out.share()),
        };
        let call = kernels::group_norm_backward(
            gpu,
            x,
            w,
            b,
            dy,
            self.groups,
            EPS as f32,
            self.silu,
            [&partials, &stats],
            [&dx, &dw, &db],
        )?
        .detach();
        owned.extend([partials, stats]);
        Ok(call.owning(owned))
    }
}

/// The gradients of the small NCHW ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpatialGrad {
    Upsample,
    AvgPool,
    ChannelSum,
    /// The concatenation's first (`true`) or second part.
    Split(bool),
}

/// A [`SpatialGrad`] case: `dx` of the forward input `[batch, channels, h, w]` (for `Split`,
/// `channels` + `channels_b` channels of dy, for `ChannelSum` its `[batch, channels]` sum).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpatialBackwardSpec {
    pub op: SpatialGrad,
    pub batch: usize,
    pub channels: usize,
    pub channels_b: usize,
    pub h: usize,
    pub w: usize,
}

impl SpatialBackwardSpec {
    fn dy_shape(&self) -> Vec<usize> {
        let (n, c, h, w) = (self.batch, self.channels, self.h, self.w);
        match self.op {
            SpatialGrad::Upsample => vec![n, c, 2 * h, 2 * w],
            SpatialGrad::AvgPool => vec![n, c, h / 2, w / 2],
            SpatialGrad::ChannelSum => vec![n, c, h, w],
            SpatialGrad::Split(_) => vec![n, c + self.channels_b, h, w],
        }
    }
}

impl CaseSpec for SpatialBackwardSpec {
    fn kernel(&self) -> &'static str {
        match self.op {
            SpatialGrad::Upsample => "upsample_grad",
            SpatialGrad::AvgPool => "avg_pool_grad",
            SpatialGrad::ChannelSum => "channel_add_grad",
            SpatialGrad::Split(_) => "concat_grad",
        }
    }

    fn shape(&self) -> String {
        let part = match self.op {
            SpatialGrad::Split(true) => format!("+{} first", self.channels_b),
            SpatialGrad::Split(false) => format!("+{} second", self.channels_b),
            _ => String::new(),
        };
        format!(
            "N={} C={}{part} {}x{}",
            self.batch, self.channels, self.h, self.w
        )
    }

    fn traffic(&self) -> usize {
        2 * self.dy_shape().iter().product::<usize>()
    }

    /// At most a sum of four (upsampling) or of a plane (the channel sum).
    fn compute_tolerance(&self) -> Tolerance {
        let terms = match self.op {
            SpatialGrad::ChannelSum => self.h * self.w,
            _ => 4,
        } as f64;
        Tolerance {
            atol: 1e-7 * terms.sqrt(),
            rtol: 2e-6,
        }
    }

    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        Ok(vec![random(&self.dy_shape(), -1.0, 1.0)])
    }

    fn output_shape(&self, _inputs: &[HostTensor]) -> Vec<usize> {
        let (n, c, h, w) = (self.batch, self.channels, self.h, self.w);
        match self.op {
            SpatialGrad::ChannelSum => vec![n, c],
            SpatialGrad::Split(false) => vec![n, self.channels_b, h, w],
            _ => vec![n, c, h, w],
        }
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let dy = &inputs[0].data;
        let (h, w) = (self.h, self.w);
        match self.op {
            SpatialGrad::Upsample => kernels::reference_upsample_backward(dy, h, w),
            SpatialGrad::AvgPool => kernels::reference_avg_pool_backward(dy, h, w),
            SpatialGrad::ChannelSum => kernels::reference_channel_sum(dy, h * w),
            SpatialGrad::Split(first) => {
                let (a, b) =
                    kernels::reference_split_channels(dy, self.channels, self.channels_b, h * w);
                if first { a } else { b }
            }
        }
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let dy = &inputs[0];
        match self.op {
            SpatialGrad::Upsample => kernels::upsample_nearest2x_backward(gpu, dy, out),
            SpatialGrad::AvgPool => kernels::avg_pool2x_backward(gpu, dy, out),
            SpatialGrad::ChannelSum => kernels::channel_sum(gpu, dy, out),
            SpatialGrad::Split(first) => {
                let (n, h, w) = (self.batch, self.h, self.w);
                let other = match first {
                    true => [n, self.channels_b, h, w],
                    false => [n, self.channels, h, w],
                };
                let other = Tensor::empty(gpu, &other, dy.dtype())?;
                let call = match first {
                    true => kernels::split_channels(gpu, dy, out, &other)?,
                    false => kernels::split_channels(gpu, dy, &other, out)?,
                };
                Ok(call.detach().owning([other]))
            }
        }
    }
}
