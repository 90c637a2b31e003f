//! 2-D convolution, NCHW (`shaders/conv2d.wgsl`), as an implicit GEMM: output channels ×
//! output pixels, with the input patches gathered while the tile is staged.

use crate::error::{Error, Result};
use crate::gpu::{CoopFacts, Gpu, PipelineKey, ShaderSource, Tunable};
use crate::kernels::matmul::{COOP_GEMM, coop_gemm_facts, coop_key_for, coop_tile};
use crate::kernels::{
    CoopRequest, KernelCall, coop_choice, expect_shape, prepare, same_dtype, to_u32,
};
use crate::tensor::{DType, Tensor};

/// The parameters and the patch gather the convolution kernels share.
const PATCH: &str = include_str!("../../shaders/lib/conv2d_patch.wgsl");
/// An invocation's 8 × 8 block of accumulators (conv2d.wgsl, conv2d_weight_grad.wgsl).
pub(crate) const BLOCK8: &str = include_str!("../../shaders/lib/block8x8.wgsl");
/// The patch gather through workgroup tables (conv2d.wgsl, conv2d_weight_grad.wgsl).
pub(crate) const TABLES: &str = include_str!("../../shaders/lib/conv2d_tables.wgsl");

const SHADER: ShaderSource = ShaderSource {
    name: "conv2d.wgsl",
    body: include_str!("../../shaders/conv2d.wgsl"),
    library: &[PATCH, BLOCK8, TABLES],
};
const WIDE: ShaderSource = ShaderSource {
    name: "conv2d_wide.wgsl",
    body: include_str!("../../shaders/conv2d_wide.wgsl"),
    library: &[PATCH],
};
const COOP: ShaderSource = ShaderSource {
    name: "conv2d_coop.wgsl",
    body: include_str!("../../shaders/conv2d_coop.wgsl"),
    library: &[PATCH, COOP_GEMM],
};

/// Which kernel computes a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvPath {
    /// The cooperative-matrix kernel for f16 where the adapter has it and `tessera tune`
    /// measured it faster; else the scalar kernels (the tile chosen by output channels).
    Auto,
    /// `conv2d.wgsl` / `conv2d_wide.wgsl`: f32 arithmetic on register blocks.
    Scalar,
    /// `conv2d_coop.wgsl`: the implicit GEMM on cooperative matrices (f16 only).
    Coop,
}

/// The output tile of `conv2d_wide.wgsl` (channels and pixels), used from this many output
/// channels on.
const WIDE_TILE: u32 = 128;

/// The K step of conv2d.wgsl.
const TILE_K: u32 = 16;
/// Each invocation of conv2d.wgsl holds a BLOCK × BLOCK register block of outputs.
const BLOCK: u32 = 8;

/// Workgroup shapes (channels × pixels invocations), one per range of output channels: a
/// layer with few output channels (a UNet's last convolution has 1 or 3) gets a tile that is
/// narrow in channels and long in pixels instead of a 64 × 64 tile that is mostly idle.
/// Workgroup memory stays at TILE_K · (tile_m + tile_n) · 4 ≤ 9 KiB, plus the gather's
/// tables (1.6 KiB).
const TILINGS: [(u32, u32); 4] = [(1, 16), (2, 16), (4, 8), (8, 8)];

/// The `(WG_M, WG_N)` for `c_out` output channels.
fn tiling(c_out: u32) -> (u32, u32) {
    TILINGS
        .into_iter()
        .find(|&(wg_m, _)| c_out <= wg_m * BLOCK)
        .unwrap_or(TILINGS[TILINGS.len() - 1])
}

/// Stride and zero padding of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    pub stride: usize,
    /// Rows added above and below, columns added left and right.
    pub pad_top: usize,
    pub pad_bottom: usize,
    pub pad_left: usize,
    pub pad_right: usize,
}

impl Conv2dOptions {
    /// The same padding on every side (PyTorch's `padding=p`).
    pub fn symmetric(stride: usize, padding: usize) -> Self {
        Conv2dOptions {
            stride,
            pad_top: padding,
            pad_bottom: padding,
            pad_left: padding,
            pad_right: padding,
        }
    }

    /// The output size for an `h × w` input and a `kh × kw` kernel, if there is one.
    pub fn output_size(&self, h: usize, w: usize, kh: usize, kw: usize) -> Option<(usize, usize)> {
        let padded_h = h + self.pad_top + self.pad_bottom;
        let padded_w = w + self.pad_left + self.pad_right;
        if self.stride == 0 || padded_h < kh || padded_w < kw {
            return None;
        }
        Some((
            (padded_h - kh) / self.stride + 1,
            (padded_w - kw) / self.stride + 1,
        ))
    }
}

/// A convolution's sizes after shape checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dDims {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub h_out: usize,
    pub w_out: usize,
}

impl Conv2dDims {
    /// `2·N·Cout·Cin·kh·kw·Hout·Wout`.
    pub fn flops(&self) -> f64 {
        2.0 * super::product_f64(&[
            self.batch, self.c_out, self.c_in, self.kh, self.kw, self.h_out, self.w_out,
        ])
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    h_out: u32,
    w_out: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    has_bias: u32,
    _pad: [u32; 3],
}

fn key(dtype: DType, (wg_m, wg_n): (u32, u32)) -> PipelineKey {
    let overrides = [("WG_M", wg_m), ("WG_N", wg_n), ("TILE_K", TILE_K)];
    PipelineKey::new(SHADER, "conv2d", dtype, &overrides)
}

fn wide_key(dtype: DType) -> PipelineKey {
    PipelineKey::new(WIDE, "conv2d_wide", dtype, &[])
}

fn coop_conv_key(coop: CoopFacts) -> PipelineKey {
    coop_key_for(COOP, "conv2d_coop", &[], coop)
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    let coop = [(8, 8), (16, 32)]
        .map(|(fragment, subgroup)| coop_conv_key(CoopFacts { fragment, subgroup }));
    DType::ALL
        .iter()
        .flat_map(|&d| TILINGS.iter().map(move |&t| key(d, t)).chain([wide_key(d)]))
        .chain(coop)
        .collect()
}

/// Checks the shapes: `x` `[batch, c_in, h, w]`, `weight` `[c_out, c_in, kh, kw]`, `bias`
/// `[c_out]`, `out` `[batch, c_out, h_out, w_out]`.
pub fn dims(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    options: Conv2dOptions,
    out: &Tensor,
) -> Result<Conv2dDims> {
    let op = "conv2d";
    let four = |what: &str, t: &Tensor| {
        <[usize; 4]>::try_from(t.shape()).map_err(|_| {
            Error::shape(
                op,
                format!("{what} is {:?}; expected 4 dimensions", t.shape()),
            )
        })
    };
    let [batch, c_in, h, w] = four("input", x)?;
    let [c_out, wc_in, kh, kw] = four("weight", weight)?;
    if wc_in != c_in {
        return Err(Error::shape(
            op,
            format!(
                "input has {c_in} channels, the weight {:?} expects {wc_in}",
                weight.shape()
            ),
        ));
    }
    let (h_out, w_out) = options.output_size(h, w, kh, kw).ok_or_else(|| {
        Error::shape(
            op,
            format!("a {kh}x{kw} kernel with {options:?} does not fit a {h}x{w} input"),
        )
    })?;
    expect_shape(op, "output", out, &[batch, c_out, h_out, w_out])?;
    if let Some(bias) = bias {
        expect_shape(op, "bias", bias, &[c_out])?;
    }
    Ok(Conv2dDims {
        batch,
        c_in,
        h,
        w,
        c_out,
        kh,
        kw,
        h_out,
        w_out,
    })
}

/// `out = conv2d(x, weight) + bias`.
pub fn conv2d<'a>(
    gpu: &Gpu,
    x: &'a Tensor,
    weight: &'a Tensor,
    bias: Option<&'a Tensor>,
    options: Conv2dOptions,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    conv2d_with(gpu, x, weight, bias, options, out, ConvPath::Auto)
}

/// [`conv2d`] on the kernel `path` names.
pub fn conv2d_with<'a>(
    gpu: &Gpu,
    x: &'a Tensor,
    weight: &'a Tensor,
    bias: Option<&'a Tensor>,
    options: Conv2dOptions,
    out: &'a Tensor,
    path: ConvPath,
) -> Result<KernelCall<'a>> {
    let op = "conv2d";
    let mut operands = vec![x, weight, out];
    operands.extend(bias);
    let dtype = same_dtype(op, &operands)?;
    let d = dims(x, weight, bias, options, out)?;
    let placeholder = match bias {
        Some(_) => None,
        None => Some(Tensor::empty(gpu, &[1], dtype)?),
    };
    let bias_tensor = bias
        .or(placeholder.as_ref())
        .expect("one of the two is set");
    let u = |what: &str, n: usize| to_u32(op, what, n);
    let params = Params {
        batch: u("batch", d.batch)?,
        c_in: u("c_in", d.c_in)?,
        h: u("h", d.h)?,
        w: u("w", d.w)?,
        c_out: u("c_out", d.c_out)?,
        h_out: u("h_out", d.h_out)?,
        w_out: u("w_out", d.w_out)?,
        kh: u("kh", d.kh)?,
        kw: u("kw", d.kw)?,
        stride: u("stride", options.stride)?,
        pad_top: u("pad_top", options.pad_top)?,
        pad_left: u("pad_left", options.pad_left)?,
        has_bias: u32::from(bias.is_some()),
        _pad: [0; 3],
    };
    u("patch length", d.c_in * d.kh * d.kw)?;
    let pixels = u("output pixels", d.batch * d.h_out * d.w_out)?;
    let limit = gpu.limits().max_compute_workgroups_per_dimension;
    let request = match path {
        ConvPath::Scalar => CoopRequest::Never,
        ConvPath::Coop => CoopRequest::Always,
        ConvPath::Auto => CoopRequest::IfTuned(Tunable::Conv2dF16),
    };
    let coop = coop_choice(gpu, op, dtype, request, || coop_gemm_facts(gpu))?;
    let wide = params.c_out >= WIDE_TILE;
    let tiling = tiling(params.c_out);
    let (tile_m, tile_n) = match coop {
        Some(coop) => (coop_tile(coop.fragment), coop_tile(coop.fragment)),
        None if wide => (WIDE_TILE, WIDE_TILE),
        None => (tiling.0 * BLOCK, tiling.1 * BLOCK),
    };
    let grid = [pixels.div_ceil(tile_n), params.c_out.div_ceil(tile_m), 1];
    if grid[0] > limit || grid[1] > limit {
        return Err(Error::TooManyWorkgroups {
            what: format!("conv2d over {pixels} output pixels"),
            groups: u64::from(grid[0].max(grid[1])),
            limit,
        });
    }
    let tensors = [(1, x), (2, weight), (3, bias_tensor), (4, out)];
    let key = match coop {
        Some(coop) => coop_conv_key(coop),
        None if wide => wide_key(dtype),
        None => key(dtype, tiling),
    };
    Ok(prepare(gpu, &key, &params, &tensors, grid)?.owning(placeholder))
}

/// Calls `tap(output, input, weight)` with the flat indices of every product a convolution
/// sums (padding taps left out), output by output and within one in (ci, ky, kx) order: the
/// loop the f64 references of the convolution and its gradients share.
pub(crate) fn for_each_tap(
    d: &Conv2dDims,
    options: Conv2dOptions,
    mut tap: impl FnMut(usize, usize, usize),
) {
    for n in 0..d.batch {
        for co in 0..d.c_out {
            for oy in 0..d.h_out {
                for ox in 0..d.w_out {
                    let o = ((n * d.c_out + co) * d.h_out + oy) * d.w_out + ox;
                    for ci in 0..d.c_in {
                        for ky in 0..d.kh {
                            let iy = (oy * options.stride + ky) as isize - options.pad_top as isize;
                            if iy < 0 || iy >= d.h as isize {
                                continue;
                            }
                            for kx in 0..d.kw {
                                let ix =
                                    (ox * options.stride + kx) as isize - options.pad_left as isize;
                                if ix < 0 || ix >= d.w as isize {
                                    continue;
                                }
                                let xi =
                                    ((n * d.c_in + ci) * d.h + iy as usize) * d.w + ix as usize;
                                let wi = ((co * d.c_in + ci) * d.kh + ky) * d.kw + kx;
                                tap(o, xi, wi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// f64 reference of [`conv2d`].
pub fn reference(
    d: &Conv2dDims,
    options: Conv2dOptions,
    x: &[f64],
    weight: &[f64],
    bias: Option<&[f64]>,
) -> Vec<f64> {
    let plane = d.h_out * d.w_out;
    let mut out: Vec<f64> = (0..d.batch * d.c_out * plane)
        .map(|o| bias.map_or(0.0, |b| b[(o / plane) % d.c_out]))
        .collect();
    for_each_tap(d, options, |o, xi, wi| out[o] += x[xi] * weight[wi]);
    out
}
