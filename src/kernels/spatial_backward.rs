//! The gradients of the NCHW kernels: a 2-D convolution's data, weight and bias gradients
//! (`shaders/conv2d_backward.wgsl`), GroupNorm's (with the fused SiLU;
//! `shaders/group_norm_backward.wgsl`), and those of nearest 2× upsampling, 2×2 average
//! pooling, a per-channel add and a concatenation along channels
//! (`shaders/spatial_backward.wgsl`). Each has an f64 reference.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::conv2d::{self, Conv2dDims, Conv2dOptions};
use crate::kernels::spatial::nchw;
use crate::kernels::{KernelCall, expect_shape, prepare, same_dtype, to_u32};
use crate::tensor::{DType, Tensor};

const CONV: ShaderSource = ShaderSource {
    name: "conv2d_backward.wgsl",
    body: include_str!("../../shaders/conv2d_backward.wgsl"),
    library: &[super::WORKGROUP_SUM],
};
const WEIGHT_GRAD: ShaderSource = ShaderSource {
    name: "conv2d_weight_grad.wgsl",
    body: include_str!("../../shaders/conv2d_weight_grad.wgsl"),
    library: &[conv2d::BLOCK8, conv2d::TABLES],
};
const GROUP_NORM: ShaderSource = ShaderSource {
    name: "group_norm_backward.wgsl",
    body: include_str!("../../shaders/group_norm_backward.wgsl"),
    library: &[],
};
const SPATIAL: ShaderSource = ShaderSource {
    name: "spatial_backward.wgsl",
    body: include_str!("../../shaders/spatial_backward.wgsl"),
    library: &[],
};
const WG: u32 = 256;

fn key(shader: ShaderSource, entry: &'static str, dtype: DType) -> PipelineKey {
    PipelineKey::new(shader, entry, dtype, &[("WG", WG)])
}

/// Workgroup shapes (channels × taps invocations) of the tiled weight gradient, one per range
/// of output channels (each invocation owns 8 × 8): a UNet's last convolution (1 or 3
/// channels) gets a tile 8 channels high instead of one that is mostly idle.
const WEIGHT_GRAD_TILINGS: [(u32, u32); 3] = [(1, 16), (4, 8), (8, 8)];
const WEIGHT_GRAD_TILE_P: u32 = 16;
const WEIGHT_GRAD_BLOCK: u32 = 8;

fn weight_grad_tiling(c_out: u32) -> (u32, u32) {
    WEIGHT_GRAD_TILINGS
        .into_iter()
        .find(|&(wg_m, _)| c_out <= wg_m * WEIGHT_GRAD_BLOCK)
        .unwrap_or(WEIGHT_GRAD_TILINGS[WEIGHT_GRAD_TILINGS.len() - 1])
}

fn weight_grad_key(dtype: DType, (wg_m, wg_n): (u32, u32)) -> PipelineKey {
    let overrides = [
        ("WG_M", wg_m),
        ("WG_N", wg_n),
        ("TILE_P", WEIGHT_GRAD_TILE_P),
    ];
    PipelineKey::new(WEIGHT_GRAD, "conv2d_weight_grad", dtype, &overrides)
}

fn group_norm_key(entry: &'static str, dtype: DType, silu: bool) -> PipelineKey {
    let overrides = [("WG", WG), ("SILU", u32::from(silu))];
    PipelineKey::new(GROUP_NORM, entry, dtype, &overrides)
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    let mut keys = Vec::new();
    for dtype in DType::ALL {
        for entry in [
            "conv2d_backward_data",
            "conv2d_backward_weight",
            "conv2d_backward_bias",
            "conv2d_flip_weight",
            "conv2d_dilate",
        ] {
            keys.push(key(CONV, entry, dtype));
        }
        for tiling in WEIGHT_GRAD_TILINGS {
            keys.push(weight_grad_key(dtype, tiling));
        }
        for silu in [false, true] {
            for entry in [
                "group_norm_backward",
                "group_norm_backward_channels",
                "group_norm_backward_affine",
            ] {
                keys.push(group_norm_key(entry, dtype, silu));
            }
        }
        for entry in [
            "upsample_nearest2x_backward",
            "avg_pool2x_backward",
            "channel_sum",
            "split_channels",
        ] {
            keys.push(key(SPATIAL, entry, dtype));
        }
    }
    keys
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ConvParams {
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
}

fn conv_params(d: &Conv2dDims, options: Conv2dOptions) -> Result<ConvParams> {
    let op = "conv2d backward";
    let u = |what: &str, v: usize| to_u32(op, what, v);
    Ok(ConvParams {
        batch: u("batch", d.batch)?,
        c_in: u("input channels", d.c_in)?,
        h: u("height", d.h)?,
        w: u("width", d.w)?,
        c_out: u("output channels", d.c_out)?,
        h_out: u("output height", d.h_out)?,
        w_out: u("output width", d.w_out)?,
        kh: u("kernel height", d.kh)?,
        kw: u("kernel width", d.kw)?,
        stride: u("stride", options.stride)?,
        pad_top: u("padding", options.pad_top)?,
        pad_left: u("padding", options.pad_left)?,
    })
}

fn groups_of(gpu: &Gpu, op: &'static str, len: usize) -> Result<[u32; 3]> {
    to_u32(op, "elements", len)?;
    gpu.grid(op, len.div_ceil(WG as usize) as u64)
}

/// The scratch tensors [`conv2d_backward_data`] takes to run as a forward convolution (the
/// tiled kernels) for a convolution of an `x_shape` input by a `w_shape` weight: the flipped
/// weight, and for stride > 1 the dilated gradient. Empty where the padding is wider than
/// the kernel less one (there the direct kernel runs).
pub fn data_scratch(
    x_shape: &[usize],
    w_shape: &[usize],
    options: Conv2dOptions,
) -> Result<Vec<Vec<usize>>> {
    let d = shape_dims(x_shape, w_shape, options)?;
    let pads = [options.pad_top, options.pad_bottom];
    let wide = [options.pad_left, options.pad_right];
    if pads.iter().any(|&p| p >= d.kh) || wide.iter().any(|&p| p >= d.kw) {
        return Ok(Vec::new());
    }
    let mut shapes = vec![vec![d.c_in, d.c_out, d.kh, d.kw]];
    if options.stride > 1 {
        let s = options.stride;
        shapes.push(vec![
            d.batch,
            d.c_out,
            (d.h_out - 1) * s + 1,
            (d.w_out - 1) * s + 1,
        ]);
    }
    Ok(shapes)
}

fn shape_dims(x: &[usize], w: &[usize], options: Conv2dOptions) -> Result<Conv2dDims> {
    let op = "conv2d gradient";
    let (&[batch, c_in, h, wd], &[c_out, wc_in, kh, kw]) = (x, w) else {
        return Err(Error::shape(
            op,
            format!("x {x:?} and weight {w:?} are not 4-D"),
        ));
    };
    let (h_out, w_out) = options
        .output_size(h, wd, kh, kw)
        .filter(|_| wc_in == c_in)
        .ok_or_else(|| {
            Error::shape(
                op,
                format!("weight {w:?} with {options:?} does not convolve an {x:?} input"),
            )
        })?;
    Ok(Conv2dDims {
        batch,
        c_in,
        h,
        w: wd,
        c_out,
        kh,
        kw,
        h_out,
        w_out,
    })
}

/// Checks that `scratch` holds tensors of `shapes` in `dtype`.
fn check_scratch(
    op: &'static str,
    scratch: &[&Tensor],
    shapes: &[Vec<usize>],
    dtype: DType,
) -> Result<()> {
    if scratch.len() != shapes.len() {
        return Err(Error::shape(
            op,
            format!(
                "{} scratch tensors given, {} needed",
                scratch.len(),
                shapes.len()
            ),
        ));
    }
    for (t, shape) in scratch.iter().zip(shapes) {
        expect_shape(op, "scratch", t, shape)?;
        if t.dtype() != dtype {
            return Err(Error::DType {
                op,
                detail: format!("scratch must be {dtype}, not {}", t.dtype()),
            });
        }
    }
    Ok(())
}

/// A convolution's input gradient `dx` (`[N, Ci, H, W]`, the forward input's shape) from
/// `dy` (`[N, Co, Ho, Wo]`) and `weight` (`[Co, Ci, KH, KW]`). With the [`data_scratch`]
/// tensors it is a forward convolution of (dilated) `dy` with the flipped weight on the tiled
/// kernels; with none, the direct kernel (one invocation per element of `dx`).
pub fn conv2d_backward_data<'a>(
    gpu: &Gpu,
    dy: &'a Tensor,
    weight: &'a Tensor,
    options: Conv2dOptions,
    scratch: &[&'a Tensor],
    dx: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "conv2d data gradient";
    let dtype = same_dtype(op, &[dy, weight, dx])?;
    let d = conv2d::dims(dx, weight, None, options, dy)?;
    let params = conv_params(&d, options)?;
    if scratch.is_empty() {
        let grid = groups_of(gpu, op, dx.len())?;
        let key = key(CONV, "conv2d_backward_data", dtype);
        return prepare(gpu, &key, &params, &[(1, dy), (2, weight), (4, dx)], grid);
    }
    let shapes = data_scratch(dx.shape(), weight.shape(), options)?;
    check_scratch(op, scratch, &shapes, dtype)?;
    let flipped = scratch[0];
    let grid = groups_of(gpu, op, flipped.len())?;
    let key_flip = key(CONV, "conv2d_flip_weight", dtype);
    let mut call = prepare(gpu, &key_flip, &params, &[(2, weight), (8, flipped)], grid)?;
    let source = match scratch.get(1) {
        Some(&dilated) => {
            let grid = groups_of(gpu, op, dilated.len())?;
            let key = key(CONV, "conv2d_dilate", dtype);
            call = call.then(prepare(gpu, &key, &params, &[(1, dy), (8, dilated)], grid)?);
            dilated
        }
        None => dy,
    };
    // Rows of dx past the last the forward pass read get zero: pad the bottom and right by
    // the remainder of the stride.
    let s = options.stride;
    let rest_h = (d.h + options.pad_top + options.pad_bottom - d.kh) % s;
    let rest_w = (d.w + options.pad_left + options.pad_right - d.kw) % s;
    let transposed = Conv2dOptions {
        stride: 1,
        pad_top: d.kh - 1 - options.pad_top,
        pad_bottom: d.kh - 1 - options.pad_bottom + rest_h,
        pad_left: d.kw - 1 - options.pad_left,
        pad_right: d.kw - 1 - options.pad_right + rest_w,
    };
    Ok(call.then(conv2d::conv2d(gpu, source, flipped, None, transposed, dx)?))
}

/// Which kernel computes a convolution's weight gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightGradKernel {
    /// One invocation per weight, looping over every output pixel: the plain check.
    Direct,
    /// A tiled GEMM over dy and x's patches, gathered as staged (`conv2d_weight_grad.wgsl`).
    Tiled,
}

/// A convolution's weight gradient `dw` (`[Co, Ci, KH, KW]`) from `dy` and the forward
/// input `x`, on the `kernel` named.
pub fn conv2d_backward_weight<'a>(
    gpu: &Gpu,
    dy: &'a Tensor,
    x: &'a Tensor,
    options: Conv2dOptions,
    kernel: WeightGradKernel,
    dw: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "conv2d weight gradient";
    let dtype = same_dtype(op, &[dy, x, dw])?;
    let d = conv2d::dims(x, dw, None, options, dy)?;
    let params = conv_params(&d, options)?;
    to_u32(op, "output pixels", d.batch * d.h_out * d.w_out)?;
    match kernel {
        WeightGradKernel::Direct => {
            let grid = groups_of(gpu, op, dw.len())?;
            let key = key(CONV, "conv2d_backward_weight", dtype);
            prepare(gpu, &key, &params, &[(1, dy), (3, x), (5, dw)], grid)
        }
        WeightGradKernel::Tiled => {
            let (wg_m, wg_n) = weight_grad_tiling(params.c_out);
            let taps = to_u32(op, "taps", d.c_in * d.kh * d.kw)?;
            let block = WEIGHT_GRAD_BLOCK;
            let grid = [
                taps.div_ceil(wg_n * block),
                params.c_out.div_ceil(wg_m * block),
                1,
            ];
            let limit = gpu.limits().max_compute_workgroups_per_dimension;
            if grid[0] > limit || grid[1] > limit {
                return Err(Error::TooManyWorkgroups {
                    what: format!("{op} over {taps} taps and {} channels", params.c_out),
                    groups: u64::from(grid[0].max(grid[1])),
                    limit,
                });
            }
            let key = weight_grad_key(dtype, (wg_m, wg_n));
            prepare(gpu, &key, &params, &[(1, dy), (3, x), (5, dw)], grid)
        }
    }
}

/// A convolution's bias gradient `db` (`[Co]`): `dy` summed over samples and positions.
pub fn conv2d_backward_bias<'a>(
    gpu: &Gpu,
    dy: &'a Tensor,
    db: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "conv2d bias gradient";
    let dtype = same_dtype(op, &[dy, db])?;
    let [n, c, h, w] = nchw(op, "dy", dy)?;
    expect_shape(op, "db", db, &[c])?;
    let d = Conv2dDims {
        batch: n,
        c_in: 0,
        h: 0,
        w: 0,
        c_out: c,
        kh: 0,
        kw: 0,
        h_out: h,
        w_out: w,
    };
    to_u32(op, "elements", dy.len())?;
    let params = conv_params(&d, Conv2dOptions::symmetric(1, 0))?;
    let grid = gpu.grid(op, c as u64)?;
    let key = key(CONV, "conv2d_backward_bias", dtype);
    prepare(gpu, &key, &params, &[(1, dy), (6, db)], grid)
}

/// f64 reference of a convolution's gradients: (dx, dw, db).
pub fn reference_conv2d_backward(
    d: &Conv2dDims,
    options: Conv2dOptions,
    x: &[f64],
    weight: &[f64],
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; weight.len()];
    conv2d::for_each_tap(d, options, |o, xi, wi| {
        dx[xi] += dy[o] * weight[wi];
        dw[wi] += dy[o] * x[xi];
    });
    let plane = d.h_out * d.w_out;
    let mut db = vec![0.0; d.c_out];
    for (o, g) in dy.iter().enumerate() {
        db[(o / plane) % d.c_out] += g;
    }
    (dx, dw, db)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GroupNormParams {
    total_groups: u32,
    groups: u32,
    group_len: u32,
    spatial: u32,
    channels_per_group: u32,
    eps: f32,
    batch: u32,
    channels: u32,
}

/// The f32 scratch [`group_norm_backward`] takes for `x` `[batch, channels, ...]` in
/// `groups` groups: per-channel partial sums `[batch, channels, 2]` and per-group statistics
/// `[batch · groups, 4]`.
pub fn group_norm_scratch(batch: usize, channels: usize, groups: usize) -> [Vec<usize>; 2] {
    [vec![batch, channels, 2], vec![batch * groups, 4]]
}

/// GroupNorm's gradients (`y = (silu?)(group_norm(x) · weight + bias)`, as
/// [`super::group_norm::group_norm`]): `dx` (`x`'s shape), `dweight` and `dbias`
/// (`[channels]`), through the [`group_norm_scratch`] tensors `[partials, stats]`.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward<'a>(
    gpu: &Gpu,
    x: &'a Tensor,
    weight: &'a Tensor,
    bias: &'a Tensor,
    dy: &'a Tensor,
    groups: usize,
    eps: f32,
    silu: bool,
    [partials, stats]: [&'a Tensor; 2],
    [dx, dweight, dbias]: [&'a Tensor; 3],
) -> Result<KernelCall<'a>> {
    let op = "group_norm backward";
    let dtype = same_dtype(op, &[x, weight, bias, dy, dx, dweight, dbias])?;
    let shape = x.shape();
    if shape.len() < 2 {
        return Err(Error::shape(
            op,
            format!("x is {shape:?}; expected [batch, channels, ...]"),
        ));
    }
    let (batch, channels) = (shape[0], shape[1]);
    if groups == 0 || channels % groups != 0 {
        return Err(Error::shape(
            op,
            format!("{groups} groups do not divide {channels} channels"),
        ));
    }
    for (what, t) in [
        ("weight", weight),
        ("bias", bias),
        ("dweight", dweight),
        ("dbias", dbias),
    ] {
        expect_shape(op, what, t, &[channels])?;
    }
    expect_shape(op, "dy", dy, shape)?;
    expect_shape(op, "dx", dx, shape)?;
    let [partials_shape, stats_shape] = group_norm_scratch(batch, channels, groups);
    for (what, t, shape) in [
        ("partials", partials, partials_shape),
        ("stats", stats, stats_shape),
    ] {
        if t.dtype() != DType::F32 {
            return Err(Error::DType {
                op,
                detail: format!("the {what} must be f32, not {}", t.dtype()),
            });
        }
        expect_shape(op, what, t, &shape)?;
    }
    let spatial: usize = shape[2..].iter().product();
    let params = GroupNormParams {
        total_groups: to_u32(op, "groups in the batch", batch * groups)?,
        groups: to_u32(op, "groups", groups)?,
        group_len: to_u32(op, "group length", channels / groups * spatial)?,
        spatial: to_u32(op, "spatial size", spatial)?,
        channels_per_group: to_u32(op, "channels per group", channels / groups)?,
        eps,
        batch: to_u32(op, "batch", batch)?,
        channels: to_u32(op, "channels", channels)?,
    };
    to_u32(op, "elements", x.len())?;
    let grid = gpu.grid(op, u64::from(params.total_groups))?;
    let first = prepare(
        gpu,
        &group_norm_key("group_norm_backward", dtype, silu),
        &params,
        &[
            (1, x),
            (2, weight),
            (3, bias),
            (4, dy),
            (5, dx),
            (10, stats),
        ],
        grid,
    )?;
    let grid = groups_of(gpu, op, batch * channels)?;
    let middle = prepare(
        gpu,
        &group_norm_key("group_norm_backward_channels", dtype, silu),
        &params,
        &[
            (1, x),
            (2, weight),
            (3, bias),
            (4, dy),
            (6, partials),
            (11, stats),
        ],
        grid,
    )?;
    let grid = groups_of(gpu, op, channels)?;
    let second = prepare(
        gpu,
        &group_norm_key("group_norm_backward_affine", dtype, silu),
        &params,
        &[(7, partials), (8, dweight), (9, dbias)],
        grid,
    )?;
    Ok(first.then(middle).then(second))
}

/// f64 reference of [`group_norm_backward`] for `x` `[batch, channels, spatial]`
/// (flattened): (dx, dweight, dbias).
#[allow(clippy::too_many_arguments)]
pub fn reference_group_norm_backward(
    x: &[f64],
    weight: &[f64],
    bias: &[f64],
    dy: &[f64],
    groups: usize,
    spatial: usize,
    eps: f64,
    silu: bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let channels = weight.len();
    let cpg = channels / groups;
    let len = cpg * spatial;
    let mut dx = vec![0.0; x.len()];
    let mut dweight = vec![0.0; channels];
    let mut dbias = vec![0.0; channels];
    for (gi, group) in x.chunks(len).enumerate() {
        let base = gi * len;
        let n = len as f64;
        let mean = group.iter().sum::<f64>() / n;
        let var = group.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let inv = 1.0 / (var + eps).sqrt();
        let first_channel = (gi % groups) * cpg;
        let mut dz = vec![0.0; len];
        let mut xhat = vec![0.0; len];
        for j in 0..len {
            let c = first_channel + j / spatial;
            xhat[j] = (group[j] - mean) * inv;
            let z = xhat[j] * weight[c] + bias[c];
            let s = 1.0 / (1.0 + (-z).exp());
            let act = if silu { s * (1.0 + z * (1.0 - s)) } else { 1.0 };
            dz[j] = dy[base + j] * act;
            dweight[c] += dz[j] * xhat[j];
            dbias[c] += dz[j];
        }
        let g: Vec<f64> = (0..len)
            .map(|j| dz[j] * weight[first_channel + j / spatial])
            .collect();
        let mean_g = g.iter().sum::<f64>() / n;
        let mean_gx = g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / n;
        for j in 0..len {
            dx[base + j] = inv * (g[j] - mean_g - xhat[j] * mean_gx);
        }
    }
    (dx, dweight, dbias)
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct SpatialParams {
    len: u32,
    plane: u32,
    channels: u32,
    channels_b: u32,
    h_in: u32,
    w_in: u32,
    h_out: u32,
    w_out: u32,
}

/// The gradient of nearest 2× upsampling: `dx` (`[N, C, H, W]`) sums each 2×2 block of `dy`
/// (`[N, C, 2H, 2W]`).
pub fn upsample_nearest2x_backward<'a>(
    gpu: &Gpu,
    dy: &'a Tensor,
    dx: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "upsample gradient";
    let dtype = same_dtype(op, &[dy, dx])?;
    let [n, c, h, w] = nchw(op, "dx", dx)?;
    expect_shape(op, "dy", dy, &[n, c, 2 * h, 2 * w])?;
    to_u32(op, "length", dy.len())?;
    let params = SpatialParams {
        len: to_u32(op, "length", dx.len())?,
        h_in: h as u32,
        w_in: w as u32,
        h_out: 2 * h as u32,
        w_out: 2 * w as u32,
        ..SpatialParams::default()
    };
    let grid = groups_of(gpu, op, dx.len())?;
    let key = key(SPATIAL, "upsample_nearest2x_backward", dtype);
    prepare(gpu, &key, &params, &[(1, dy), (2, dx)], grid)
}

/// The gradient of 2×2 average pooling: `dx` (`[N, C, H, W]`) from `dy`
/// (`[N, C, H/2, W/2]`).
pub fn avg_pool2x_backward<'a>(
    gpu: &Gpu,
    dy: &'a Tensor,
    dx: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "avg_pool gradient";
    let dtype = same_dtype(op, &[dy, dx])?;
    let [n, c, h, w] = nchw(op, "dx", dx)?;
    if h < 2 || w < 2 {
        return Err(Error::shape(
            op,
            format!("a {h}x{w} input was not pooled 2x2"),
        ));
    }
    expect_shape(op, "dy", dy, &[n, c, h / 2, w / 2])?;
    let params = SpatialParams {
        len: to_u32(op, "length", dx.len())?,
        h_in: h as u32,
        w_in: w as u32,
        h_out: (h / 2) as u32,
        w_out: (w / 2) as u32,
        ..SpatialParams::default()
    };
    let grid = groups_of(gpu, op, dx.len())?;
    let key = key(SPATIAL, "avg_pool2x_backward", dtype);
    prepare(gpu, &key, &params, &[(1, dy), (2, dx)], grid)
}

/// `out[n, c] = Σ_hw dy[n, c, hw]` (`dy` `[N, C, ...]`, `out` `[N, C]`): the gradient of a
/// per-channel add ([`super::spatial::channel_mix`]'s `Add`) with respect to what was added.
pub fn channel_sum<'a>(gpu: &Gpu, dy: &'a Tensor, out: &'a Tensor) -> Result<KernelCall<'a>> {
    let op = "channel sum";
    let dtype = same_dtype(op, &[dy, out])?;
    let shape = dy.shape();
    if shape.len() < 2 {
        return Err(Error::shape(
            op,
            format!("dy is {shape:?}; expected [N, C, ...]"),
        ));
    }
    expect_shape(op, "out", out, &shape[..2])?;
    let params = SpatialParams {
        len: to_u32(op, "planes", shape[0] * shape[1])?,
        plane: to_u32(op, "plane", shape[2..].iter().product())?,
        ..SpatialParams::default()
    };
    to_u32(op, "elements", dy.len())?;
    let grid = groups_of(gpu, op, shape[0] * shape[1])?;
    let key = key(SPATIAL, "channel_sum", dtype);
    prepare(gpu, &key, &params, &[(1, dy), (2, out)], grid)
}

/// The gradient of a concatenation along channels: `dy` (`[N, Ca + Cb, ...]`) into `da`
/// (`[N, Ca, ...]`) and `db` (`[N, Cb, ...]`).
pub fn split_channels<'a>(
    gpu: &Gpu,
    dy: &'a Tensor,
    da: &'a Tensor,
    db: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "split channels";
    let dtype = same_dtype(op, &[dy, da, db])?;
    let (sa, sb) = (da.shape(), db.shape());
    if sa.len() < 2 || sb.len() != sa.len() || sa[0] != sb[0] || sa[2..] != sb[2..] {
        return Err(Error::shape(
            op,
            format!("da {sa:?} and db {sb:?} are not [N, C, ...] of one N and plane"),
        ));
    }
    let mut whole = sa.to_vec();
    whole[1] = sa[1] + sb[1];
    expect_shape(op, "dy", dy, &whole)?;
    let params = SpatialParams {
        len: to_u32(op, "length", dy.len())?,
        plane: to_u32(op, "plane", sa[2..].iter().product())?,
        channels: to_u32(op, "channels", sa[1])?,
        channels_b: to_u32(op, "channels", sb[1])?,
        ..SpatialParams::default()
    };
    let grid = groups_of(gpu, op, dy.len())?;
    let key = key(SPATIAL, "split_channels", dtype);
    prepare(gpu, &key, &params, &[(1, dy), (2, da), (3, db)], grid)
}

/// f64 reference of [`upsample_nearest2x_backward`] for `dy` `[planes, 2h, 2w]`.
pub fn reference_upsample_backward(dy: &[f64], h: usize, w: usize) -> Vec<f64> {
    let planes = dy.len() / (4 * h * w);
    let mut dx = vec![0.0; planes * h * w];
    for p in 0..planes {
        for y in 0..2 * h {
            for x in 0..2 * w {
                dx[(p * h + y / 2) * w + x / 2] += dy[(p * 2 * h + y) * 2 * w + x];
            }
        }
    }
    dx
}

/// f64 reference of [`avg_pool2x_backward`] for an input of `[planes, h, w]`.
pub fn reference_avg_pool_backward(dy: &[f64], h: usize, w: usize) -> Vec<f64> {
    let (ho, wo) = (h / 2, w / 2);
    let planes = dy.len() / (ho * wo);
    let mut dx = vec![0.0; planes * h * w];
    for p in 0..planes {
        for y in 0..2 * ho {
            for x in 0..2 * wo {
                dx[(p * h + y) * w + x] = 0.25 * dy[(p * ho + y / 2) * wo + x / 2];
            }
        }
    }
    dx
}

/// f64 reference of [`channel_sum`] over planes of `plane` values.
pub fn reference_channel_sum(dy: &[f64], plane: usize) -> Vec<f64> {
    dy.chunks(plane).map(|p| p.iter().sum()).collect()
}

/// f64 reference of [`split_channels`]: (da, db) for `ca` + `cb` channels of `plane` values.
pub fn reference_split_channels(
    dy: &[f64],
    ca: usize,
    cb: usize,
    plane: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (mut da, mut db) = (Vec::new(), Vec::new());
    for sample in dy.chunks((ca + cb) * plane) {
        da.extend_from_slice(&sample[..ca * plane]);
        db.extend_from_slice(&sample[ca * plane..]);
    }
    (da, db)
}
