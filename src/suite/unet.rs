//! Case specifications for the diffusion UNet's kernels: conv2d, GroupNorm, resampling, the
//! time-embedding add, channel concatenation and the sinusoidal timestep embedding.

use super::compare::Tolerance;
use super::{CaseSpec, HostTensor, Random};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::conv2d::{self, Conv2dDims, Conv2dOptions, ConvPath};
use crate::kernels::scheduler_step::StepCoefficients;
use crate::kernels::scheduler_step::{self, StepUniform};
use crate::kernels::spatial::{self, ChannelMix};
use crate::kernels::timestep::{self, TimestepConfig};
use crate::kernels::{KernelCall, group_norm};
use crate::tensor::{DType, Tensor};

/// A convolution case: `[batch, c_in, h, w]` by a `[c_out, c_in, k, k]` kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dSpec {
    pub batch: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: usize,
    pub options: Conv2dOptions,
    pub bias: bool,
    /// The kernel: `Auto` (scalar unless tuned) or forced.
    pub path: ConvPath,
}

impl Conv2dSpec {
    /// A `k × k` convolution with "same" padding (`k / 2`) and a bias.
    pub fn new(
        batch: usize,
        c_in: usize,
        c_out: usize,
        hw: (usize, usize),
        k: usize,
        stride: usize,
    ) -> Self {
        Conv2dSpec {
            batch,
            c_in,
            c_out,
            h: hw.0,
            w: hw.1,
            kernel: k,
            options: Conv2dOptions::symmetric(stride, k / 2),
            bias: true,
            path: ConvPath::Auto,
        }
    }

    pub fn dims(&self) -> Conv2dDims {
        let (h_out, w_out) = self
            .options
            .output_size(self.h, self.w, self.kernel, self.kernel)
            .expect("listed cases have an output");
        Conv2dDims {
            batch: self.batch,
            c_in: self.c_in,
            h: self.h,
            w: self.w,
            c_out: self.c_out,
            kh: self.kernel,
            kw: self.kernel,
            h_out,
            w_out,
        }
    }
}

impl CaseSpec for Conv2dSpec {
    fn kernel(&self) -> &'static str {
        "conv2d"
    }

    fn shape(&self) -> String {
        let o = self.options;
        let mut s = format!(
            "{}x{} {}->{} {}x{} s{}",
            self.kernel, self.kernel, self.c_in, self.c_out, self.h, self.w, o.stride
        );
        if (o.pad_top, o.pad_left) != (o.pad_bottom, o.pad_right) {
            s += &format!(
                " pad={},{},{},{}",
                o.pad_top, o.pad_bottom, o.pad_left, o.pad_right
            );
        }
        if self.batch > 1 {
            s += &format!(" b={}", self.batch);
        }
        if !self.bias {
            s += " nobias";
        }
        if self.path == ConvPath::Coop {
            s += " coop";
        }
        s
    }

    fn flops(&self) -> f64 {
        self.dims().flops()
    }

    fn cooperative(&self) -> bool {
        self.path == ConvPath::Coop
    }

    fn traffic(&self) -> usize {
        let d = self.dims();
        d.batch * d.c_in * d.h * d.w
            + d.c_out * d.c_in * d.kh * d.kw
            + d.batch * d.c_out * d.h_out * d.w_out
    }

    /// As for matmul: f32 accumulation over K = c_in·k·k products of magnitude ~1/4.
    fn compute_tolerance(&self) -> Tolerance {
        let k = self.c_in * self.kernel * self.kernel;
        Tolerance {
            atol: DType::F32.epsilon() * k as f64,
            rtol: 1e-6,
        }
    }

    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let mut inputs = vec![
            random(&[self.batch, self.c_in, self.h, self.w], -1.0, 1.0),
            random(
                &[self.c_out, self.c_in, self.kernel, self.kernel],
                -1.0,
                1.0,
            ),
        ];
        if self.bias {
            inputs.push(random(&[self.c_out], -1.0, 1.0));
        }
        Ok(inputs)
    }

    fn output_shape(&self, _: &[HostTensor]) -> Vec<usize> {
        let d = self.dims();
        vec![d.batch, d.c_out, d.h_out, d.w_out]
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let bias = inputs.get(2).map(|b| b.data.as_slice());
        conv2d::reference(
            &self.dims(),
            self.options,
            &inputs[0].data,
            &inputs[1].data,
            bias,
        )
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        conv2d::conv2d_with(
            gpu,
            &inputs[0],
            &inputs[1],
            inputs.get(2),
            self.options,
            out,
            self.path,
        )
    }
}

/// A GroupNorm case on `[batch, channels, h, w]` values `offset ± 1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNormSpec {
    pub batch: usize,
    pub channels: usize,
    pub groups: usize,
    pub h: usize,
    pub w: usize,
    pub silu: bool,
    pub offset: f64,
}

/// diffusers' default `norm_eps`.
const GROUP_NORM_EPS: f64 = 1e-5;

impl CaseSpec for GroupNormSpec {
    fn kernel(&self) -> &'static str {
        "group_norm"
    }

    fn shape(&self) -> String {
        let mut s = format!(
            "{}x{}x{}x{} g={}",
            self.batch, self.channels, self.h, self.w, self.groups
        );
        if self.silu {
            s += " +silu";
        }
        if self.offset != 0.0 {
            s += &format!(" offset={}", self.offset);
        }
        s
    }

    fn traffic(&self) -> usize {
        2 * self.batch * self.channels * self.h * self.w + 2 * self.channels
    }

    /// As LayerNorm: two-pass statistics in f32, plus exp() in the SiLU.
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 1e-6,
            rtol: 1e-5,
        }
    }

    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let shape = [self.batch, self.channels, self.h, self.w];
        Ok(vec![
            random(&shape, self.offset - 1.0, self.offset + 1.0),
            random(&[self.channels], 0.5, 1.5),
            random(&[self.channels], -1.0, 1.0),
        ])
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let [x, w, b] = [&inputs[0].data, &inputs[1].data, &inputs[2].data];
        group_norm::reference(
            x,
            w,
            b,
            self.groups,
            self.h * self.w,
            GROUP_NORM_EPS,
            self.silu,
        )
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let [x, w, b] = [&inputs[0], &inputs[1], &inputs[2]];
        let eps = GROUP_NORM_EPS as f32;
        group_norm::group_norm(gpu, x, w, b, self.groups, eps, self.silu, out)
    }
}

/// The element-placement ops of a UNet, on `[n, c, h, w]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SpatialSpec {
    Upsample {
        n: usize,
        c: usize,
        h: usize,
        w: usize,
    },
    AvgPool {
        n: usize,
        c: usize,
        h: usize,
        w: usize,
    },
    ChannelMix {
        mix: ChannelMix,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
    },
    /// `[n, c, h, w]` and `[n, c_b, h, w]` into `[n, c + c_b, h, w]`.
    Concat {
        n: usize,
        c: usize,
        c_b: usize,
        h: usize,
        w: usize,
    },
}

impl CaseSpec for SpatialSpec {
    fn kernel(&self) -> &'static str {
        match self {
            SpatialSpec::Upsample { .. } => "upsample",
            SpatialSpec::AvgPool { .. } => "avg_pool",
            SpatialSpec::ChannelMix {
                mix: ChannelMix::Add,
                ..
            } => "channel_add",
            SpatialSpec::ChannelMix { .. } => "scale_shift",
            SpatialSpec::Concat { .. } => "concat",
        }
    }

    fn shape(&self) -> String {
        match *self {
            SpatialSpec::Upsample { n, c, h, w }
            | SpatialSpec::AvgPool { n, c, h, w }
            | SpatialSpec::ChannelMix { n, c, h, w, .. } => format!("{n}x{c}x{h}x{w}"),
            SpatialSpec::Concat { n, c, c_b, h, w } => format!("{n}x({c}+{c_b})x{h}x{w}"),
        }
    }

    fn traffic(&self) -> usize {
        match *self {
            SpatialSpec::Upsample { n, c, h, w } => 5 * n * c * h * w,
            SpatialSpec::AvgPool { n, c, h, w } => n * c * h * w + n * c * (h / 2) * (w / 2),
            SpatialSpec::ChannelMix { n, c, h, w, .. } => 2 * n * c * h * w + 2 * n * c,
            SpatialSpec::Concat { n, c, c_b, h, w } => 2 * n * (c + c_b) * h * w,
        }
    }

    /// The averages and the scale-and-shift take a few f32 roundings.
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 1e-6,
            rtol: 2.0 * DType::F32.epsilon(),
        }
    }

    /// Upsampling and concatenation only move values.
    fn exact(&self) -> bool {
        matches!(
            self,
            SpatialSpec::Upsample { .. } | SpatialSpec::Concat { .. }
        )
    }

    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        Ok(match *self {
            SpatialSpec::Upsample { n, c, h, w } | SpatialSpec::AvgPool { n, c, h, w } => {
                vec![random(&[n, c, h, w], -1.0, 1.0)]
            }
            SpatialSpec::ChannelMix { mix, n, c, h, w } => {
                let width = if mix == ChannelMix::Add { c } else { 2 * c };
                vec![
                    random(&[n, c, h, w], -1.0, 1.0),
                    random(&[n, width], -1.0, 1.0),
                ]
            }
            SpatialSpec::Concat { n, c, c_b, h, w } => {
                vec![
                    random(&[n, c, h, w], -1.0, 1.0),
                    random(&[n, c_b, h, w], -1.0, 1.0),
                ]
            }
        })
    }

    fn output_shape(&self, _: &[HostTensor]) -> Vec<usize> {
        match *self {
            SpatialSpec::Upsample { n, c, h, w } => vec![n, c, 2 * h, 2 * w],
            SpatialSpec::AvgPool { n, c, h, w } => vec![n, c, h / 2, w / 2],
            SpatialSpec::ChannelMix { n, c, h, w, .. } => vec![n, c, h, w],
            SpatialSpec::Concat { n, c, c_b, h, w } => vec![n, c + c_b, h, w],
        }
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let x = &inputs[0].data;
        match *self {
            SpatialSpec::Upsample { h, w, .. } => spatial::reference_upsample(x, h, w),
            SpatialSpec::AvgPool { h, w, .. } => spatial::reference_avg_pool(x, h, w),
            SpatialSpec::ChannelMix { mix, c, .. } => {
                spatial::reference_channel_mix(mix, x, &inputs[1].data, c)
            }
            SpatialSpec::Concat { n, .. } => spatial::reference_concat(x, &inputs[1].data, n),
        }
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let x = &inputs[0];
        match *self {
            SpatialSpec::Upsample { .. } => spatial::upsample_nearest2x(gpu, x, out),
            SpatialSpec::AvgPool { .. } => spatial::avg_pool2x(gpu, x, out),
            SpatialSpec::ChannelMix { mix, .. } => {
                spatial::channel_mix(gpu, mix, x, &inputs[1], out)
            }
            SpatialSpec::Concat { .. } => spatial::concat_channels(gpu, x, &inputs[1], out),
        }
    }
}

/// A timestep-embedding case: one embedding per listed timestep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimestepSpec {
    pub config: TimestepConfig,
    pub timesteps: &'static [f64],
}

impl CaseSpec for TimestepSpec {
    fn kernel(&self) -> &'static str {
        "timestep_emb"
    }

    fn shape(&self) -> String {
        let c = self.config;
        format!(
            "dim={} t={:?}{} shift={}",
            c.dim,
            self.timesteps,
            if c.flip_sin_to_cos { " flip" } else { "" },
            c.freq_shift
        )
    }

    fn traffic(&self) -> usize {
        self.timesteps.len() * (self.config.dim + 1)
    }

    /// sin/cos of an argument reduced to [-π, π]: a few 1e-7 on a good driver.
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 2e-6,
            rtol: 0.0,
        }
    }

    /// The timesteps and the frequencies, both f32 whatever the case's dtype.
    fn inputs(&self, _: Random<'_>) -> Result<Vec<HostTensor>> {
        let f32_tensor = |data: Vec<f64>| HostTensor::f32_table(vec![data.len()], data);
        let freqs = self.config.freqs()?.into_iter().map(f64::from).collect();
        Ok(vec![f32_tensor(self.timesteps.to_vec()), f32_tensor(freqs)])
    }

    fn output_shape(&self, _: &[HostTensor]) -> Vec<usize> {
        vec![self.timesteps.len(), self.config.dim]
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let freqs: Vec<f32> = inputs[1].data.iter().map(|&f| f as f32).collect();
        timestep::reference(&self.config, &inputs[0].data, &freqs)
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        timestep::timestep_embedding(gpu, &self.config, &inputs[0], &inputs[1], out)
    }
}

/// One sampler step on `len` elements with fixed coefficients (DDPM-like with clipping, or
/// DDIM-like with an epsilon term).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SchedulerStepSpec {
    pub len: usize,
    pub coefficients: StepCoefficients,
}

impl CaseSpec for SchedulerStepSpec {
    fn kernel(&self) -> &'static str {
        "sched_step"
    }

    fn shape(&self) -> String {
        let c = self.coefficients;
        let kind = if c.a_eps != 0.0 { "ddim" } else { "ddpm" };
        let clip = if c.clip.is_some() { " clip" } else { "" };
        format!("n={} {kind}{clip}", self.len)
    }

    fn traffic(&self) -> usize {
        4 * self.len
    }

    /// A handful of f32 multiply-adds of O(1) terms.
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 2e-6,
            rtol: 4.0 * DType::F32.epsilon(),
        }
    }

    fn in_place(&self) -> bool {
        true
    }

    /// The sample, the model output, the noise.
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        Ok(vec![
            random(&[self.len], -3.0, 3.0),
            random(&[self.len], -3.0, 3.0),
            random(&[self.len], -3.0, 3.0),
        ])
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let [x, m, z] = [&inputs[0].data, &inputs[1].data, &inputs[2].data];
        self.coefficients.apply(x, m, z)
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let uniform = StepUniform::new(gpu, self.len)?;
        uniform.set(gpu, &self.coefficients)?;
        // The bind group keeps the coefficient buffer alive after `uniform` is dropped.
        Ok(scheduler_step::scheduler_step(gpu, out, &inputs[1], &inputs[2], &uniform)?.detach())
    }
}
