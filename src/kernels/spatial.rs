//! The small NCHW ops of a UNet (`shaders/spatial.wgsl`): nearest 2× upsampling, 2×2 average
//! pooling, the per-channel add (or scale and shift) of a projected time embedding, and
//! concatenation along channels.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::{KernelCall, expect_shape, prepare, same_dtype, to_u32};
use crate::tensor::{DType, Tensor};

const SHADER: ShaderSource = ShaderSource {
    name: "spatial.wgsl",
    body: include_str!("../../shaders/spatial.wgsl"),
    library: &[],
};
const WG: u32 = 256;
const ENTRIES: [&str; 5] = [
    "upsample_nearest2x",
    "avg_pool2x",
    "add_channel",
    "scale_shift_channel",
    "concat_channels",
];

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    plane: u32,
    channels: u32,
    channels_b: u32,
    h_in: u32,
    w_in: u32,
    h_out: u32,
    w_out: u32,
}

fn key(entry: &'static str, dtype: DType) -> PipelineKey {
    PipelineKey::new(SHADER, entry, dtype, &[("WG", WG)])
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    DType::ALL
        .iter()
        .flat_map(|&d| ENTRIES.map(|e| key(e, d)))
        .collect()
}

/// `t`'s shape as `[N, C, H, W]`, or a shape error naming `what`.
pub(crate) fn nchw(op: &'static str, what: &str, t: &Tensor) -> Result<[usize; 4]> {
    <[usize; 4]>::try_from(t.shape()).map_err(|_| {
        Error::shape(
            op,
            format!("{what} is {:?}; expected [N, C, H, W]", t.shape()),
        )
    })
}

fn call<'a>(
    gpu: &Gpu,
    entry: &'static str,
    params: Params,
    tensors: &[(u32, &'a Tensor)],
) -> Result<KernelCall<'a>> {
    let dtype = tensors[0].1.dtype();
    let grid = gpu.grid(entry, u64::from(params.len.div_ceil(WG)))?;
    prepare(gpu, &key(entry, dtype), &params, tensors, grid)
}

/// Nearest-neighbour 2× upsampling: `[N, C, H, W]` → `[N, C, 2H, 2W]`.
pub fn upsample_nearest2x<'a>(gpu: &Gpu, x: &'a Tensor, out: &'a Tensor) -> Result<KernelCall<'a>> {
    let op = "upsample";
    same_dtype(op, &[x, out])?;
    let [n, c, h, w] = nchw(op, "input", x)?;
    expect_shape(op, "output", out, &[n, c, 2 * h, 2 * w])?;
    let params = Params {
        len: to_u32(op, "output length", out.len())?,
        h_in: h as u32,
        w_in: w as u32,
        h_out: 2 * h as u32,
        w_out: 2 * w as u32,
        ..Params::default()
    };
    call(gpu, "upsample_nearest2x", params, &[(1, x), (3, out)])
}

/// 2×2 average pooling with stride 2: `[N, C, H, W]` → `[N, C, H/2, W/2]` (an odd last row
/// or column is dropped, as PyTorch's `avg_pool2d(2)` does).
pub fn avg_pool2x<'a>(gpu: &Gpu, x: &'a Tensor, out: &'a Tensor) -> Result<KernelCall<'a>> {
    let op = "avg_pool";
    same_dtype(op, &[x, out])?;
    let [n, c, h, w] = nchw(op, "input", x)?;
    if h < 2 || w < 2 {
        return Err(Error::shape(
            op,
            format!("a {h}x{w} input is too small to pool 2x2"),
        ));
    }
    expect_shape(op, "output", out, &[n, c, h / 2, w / 2])?;
    let params = Params {
        len: to_u32(op, "output length", out.len())?,
        h_in: to_u32(op, "h", h)?,
        w_in: to_u32(op, "w", w)?,
        h_out: (h / 2) as u32,
        w_out: (w / 2) as u32,
        ..Params::default()
    };
    call(gpu, "avg_pool2x", params, &[(1, x), (3, out)])
}

/// How a projected time embedding enters a feature map (diffusers'
/// `resnet_time_scale_shift`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelMix {
    /// `x + emb[n, c]`, emb `[N, C]` ("default").
    Add,
    /// `x · (1 + emb[n, c]) + emb[n, C + c]`, emb `[N, 2C]` ("scale_shift").
    ScaleShift,
}

/// `out[n, c, ...] = mix(x[n, c, ...], emb[n])`, broadcasting the embedding over H×W.
pub fn channel_mix<'a>(
    gpu: &Gpu,
    mix: ChannelMix,
    x: &'a Tensor,
    emb: &'a Tensor,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "channel mix";
    same_dtype(op, &[x, emb, out])?;
    let shape = x.shape();
    if shape.len() < 2 {
        return Err(Error::shape(
            op,
            format!("x is {shape:?}; expected [N, C, ...]"),
        ));
    }
    let (n, c) = (shape[0], shape[1]);
    let (emb_width, entry) = match mix {
        ChannelMix::Add => (c, "add_channel"),
        ChannelMix::ScaleShift => (2 * c, "scale_shift_channel"),
    };
    expect_shape(op, "embedding", emb, &[n, emb_width])?;
    expect_shape(op, "output", out, shape)?;
    let params = Params {
        len: to_u32(op, "length", x.len())?,
        plane: to_u32(op, "plane", shape[2..].iter().product())?,
        channels: to_u32(op, "channels", c)?,
        ..Params::default()
    };
    call(gpu, entry, params, &[(1, x), (2, emb), (3, out)])
}

/// `out = cat([a, b], dim = 1)` by copying: `a` `[N, Ca, ...]`, `b` `[N, Cb, ...]`.
/// Where [`channel_views`] applies, producers can write into `out` directly instead.
pub fn concat_channels<'a>(
    gpu: &Gpu,
    a: &'a Tensor,
    b: &'a Tensor,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "concat";
    same_dtype(op, &[a, b, out])?;
    let (sa, sb) = (a.shape(), b.shape());
    if sa.len() < 2 || sa.len() != sb.len() || sa[0] != sb[0] || sa[2..] != sb[2..] {
        return Err(Error::shape(
            op,
            format!("{sa:?} and {sb:?} differ beyond the channels"),
        ));
    }
    let mut out_shape = sa.to_vec();
    out_shape[1] += sb[1];
    expect_shape(op, "output", out, &out_shape)?;
    let params = Params {
        len: to_u32(op, "length", out.len())?,
        plane: to_u32(op, "plane", sa[2..].iter().product())?,
        channels: to_u32(op, "channels of a", sa[1])?,
        channels_b: to_u32(op, "channels of b", sb[1])?,
        ..Params::default()
    };
    call(gpu, "concat_channels", params, &[(1, a), (2, b), (3, out)])
}

/// Views of `out` (`[1, ΣC, ...]`) holding each part of a channel concatenation, so the
/// producers of the parts write the concatenation with no copy. `None` when the parts are not
/// contiguous (batch above 1) or a part would start off the device's binding alignment; use
/// [`concat_channels`] then.
pub fn channel_views(out: &Tensor, channels: &[usize]) -> Result<Option<Vec<Tensor>>> {
    let shape = out.shape();
    if shape.len() < 2 || channels.iter().sum::<usize>() != shape[1] {
        return Err(Error::shape(
            "concat",
            format!("parts of {channels:?} channels do not make up {shape:?}"),
        ));
    }
    if shape[0] != 1 {
        return Ok(None);
    }
    let plane: usize = shape[2..].iter().product();
    let mut views = Vec::with_capacity(channels.len());
    let mut first = 0;
    for &c in channels {
        let mut part = shape.to_vec();
        part[1] = c;
        match out.view(first * plane, &part) {
            Ok(view) => views.push(view),
            Err(Error::Shape { .. }) => return Ok(None),
            Err(e) => return Err(e),
        }
        first += c;
    }
    Ok(Some(views))
}

/// f64 reference of [`upsample_nearest2x`] for `[planes, h, w]` (flattened).
pub fn reference_upsample(x: &[f64], h: usize, w: usize) -> Vec<f64> {
    let planes = x.len() / (h * w);
    let mut out = Vec::with_capacity(4 * x.len());
    for p in 0..planes {
        for y in 0..2 * h {
            for xx in 0..2 * w {
                out.push(x[(p * h + y / 2) * w + xx / 2]);
            }
        }
    }
    out
}

/// f64 reference of [`avg_pool2x`] for `[planes, h, w]` (flattened).
pub fn reference_avg_pool(x: &[f64], h: usize, w: usize) -> Vec<f64> {
    let planes = x.len() / (h * w);
    let mut out = Vec::new();
    for p in 0..planes {
        for y in 0..h / 2 {
            for xx in 0..w / 2 {
                let at = |dy: usize, dx: usize| x[(p * h + 2 * y + dy) * w + 2 * xx + dx];
                out.push(0.25 * (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)));
            }
        }
    }
    out
}

/// f64 reference of [`channel_mix`] for `x` `[N, C, plane]` (flattened).
pub fn reference_channel_mix(mix: ChannelMix, x: &[f64], emb: &[f64], c: usize) -> Vec<f64> {
    let plane = x.len() / (emb.len() / if mix == ChannelMix::Add { 1 } else { 2 });
    x.iter()
        .enumerate()
        .map(|(i, v)| {
            let nc = i / plane;
            let (n, ch) = (nc / c, nc % c);
            match mix {
                ChannelMix::Add => v + emb[nc],
                ChannelMix::ScaleShift => v * (1.0 + emb[n * 2 * c + ch]) + emb[n * 2 * c + c + ch],
            }
        })
        .collect()
}

/// f64 reference of [`concat_channels`]: per sample, `a`'s block then `b`'s.
pub fn reference_concat(a: &[f64], b: &[f64], batch: usize) -> Vec<f64> {
    let (la, lb) = (a.len() / batch, b.len() / batch);
    (0..batch)
        .flat_map(|n| a[n * la..][..la].iter().chain(&b[n * lb..][..lb]).copied())
        .collect()
}
