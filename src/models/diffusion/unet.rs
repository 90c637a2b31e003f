//! `UNet2DModel`'s forward pass as a graph of kernel calls, following diffusers:
//! sinusoidal time embedding → Linear → SiLU → Linear; `conv_in`; down levels of ResNet
//! blocks (GroupNorm + SiLU → conv → + time → GroupNorm + SiLU → conv, plus the shortcut),
//! optional self-attention over the H·W positions, a stride-2 convolution between levels;
//! the middle block; up levels that concatenate the matching skip connection before each
//! ResNet block and upsample 2× (nearest, then a convolution); GroupNorm + SiLU → `conv_out`.

use std::path::Path;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Graph, Id, Plan, layers};
use crate::io::{Checkpoint, ConfigJson};
use crate::kernels::elementwise::{Binary, Unary};
use crate::kernels::spatial::{self, ChannelMix};
use crate::kernels::timestep::{self, TimestepConfig};
use crate::kernels::{Position, attention, conv2d, group_norm, transpose};
use crate::tensor::{DType, Tensor};

use super::config::{BlockKind, TimeShift, UNetConfig};
use super::weights::{AttnBlock, Conv, Linear, Norm, ResBlock, UNetWeights};

/// A loaded UNet.
pub struct UNet {
    gpu: Gpu,
    config: UNetConfig,
    dtype: DType,
    pub(super) weights: UNetWeights,
    pub(super) freqs: Tensor,
    /// `-1` per column, for `center_input_sample` (`2x - 1`).
    minus_one: Tensor,
}

/// A UNet forward prepared for one batch size: write `sample` (and the timestep through
/// [`UNetRun::run`]), read `output`.
pub struct UNetRun {
    plan: Plan,
    pub sample: Tensor,
    pub output: Tensor,
    timesteps: Tensor,
    batch: usize,
}

impl UNetRun {
    /// Runs the UNet on `sample` at timestep `t` (the same for the whole batch).
    pub fn run(&self, t: f64) -> Result<()> {
        self.timesteps.write_f32(&vec![t as f32; self.batch])?;
        self.plan.run(0)
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Times each kernel of one forward at timestep `t` (see [`Plan::profile`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile(&self, t: f64, repeats: u32) -> Result<Vec<crate::graph::KernelTime>> {
        self.timesteps.write_f32(&vec![t as f32; self.batch])?;
        self.plan.profile(0, repeats)
    }
}

impl UNet {
    /// Loads `dir/config.json` and `dir/diffusion_pytorch_model.safetensors` (or its shards).
    pub fn load(gpu: &Gpu, dir: &Path, dtype: DType) -> Result<UNet> {
        let config = UNetConfig::read(&dir.join("config.json"))?;
        let ckpt = Checkpoint::open_named(dir, "diffusion_pytorch_model")?;
        UNet::from_parts(gpu, config, &ckpt, dtype)
    }

    /// Loads a UNet from the contents of its `config.json` and
    /// `diffusion_pytorch_model.safetensors` (a web page fetches them; it has no files).
    pub fn from_bytes(
        gpu: &Gpu,
        config_json: &str,
        safetensors: Vec<u8>,
        dtype: DType,
    ) -> Result<UNet> {
        let config = UNetConfig::from_json(&ConfigJson::parse("config.json", config_json)?)?;
        let ckpt = Checkpoint::from_bytes("diffusion_pytorch_model.safetensors", safetensors)?;
        UNet::from_parts(gpu, config, &ckpt, dtype)
    }

    pub fn from_parts(
        gpu: &Gpu,
        config: UNetConfig,
        ckpt: &Checkpoint,
        dtype: DType,
    ) -> Result<UNet> {
        gpu.require(dtype, "the UNet")?;
        let levels = config.block_out_channels.len();
        let (h, w) = config.sample_size;
        // The config parser bounds the levels (at most 12), so this cannot overflow.
        let factor = 1usize << (levels - 1);
        if h == 0 || w == 0 || h % factor != 0 || w % factor != 0 {
            return Err(Error::Config {
                path: ckpt.origin().to_string(),
                detail: format!(
                    "sample_size {h}x{w} must be a multiple of {factor} for {levels} levels"
                ),
            });
        }
        if let Err(e) = largest_activation(&config, 1, dtype, gpu) {
            return Err(Error::Config {
                path: ckpt.origin().to_string(),
                detail: format!("sample_size {h}x{w} is too large for this device: {e}"),
            });
        }
        let weights = UNetWeights::load(gpu, ckpt, &config, dtype)?;
        let freqs = timestep::freqs_tensor(gpu, &time_config(&config))?;
        let minus_one = Tensor::from_f32(gpu, &[w], &vec![-1.0; w], dtype)?;
        Ok(UNet {
            gpu: gpu.clone(),
            config,
            dtype,
            weights,
            freqs,
            minus_one,
        })
    }

    /// Elements of every weight tensor.
    pub fn parameters(&self) -> u64 {
        self.weights.parameters
    }

    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// `[batch, in_channels, height, width]`
    pub fn sample_shape(&self, batch: usize) -> [usize; 4] {
        let (h, w) = self.config.sample_size;
        [batch, self.config.in_channels, h, w]
    }

    /// `Ok` if a forward pass over `batch` samples fits the device: every activation within
    /// one storage binding. Checked before anything is allocated for the batch (the initial
    /// noise included).
    pub fn check_batch(&self, batch: usize) -> Result<()> {
        if batch == 0 {
            return Err(Error::Invalid(
                "the batch must hold at least one sample".into(),
            ));
        }
        largest_activation(&self.config, batch, self.dtype, &self.gpu).map(drop)
    }

    /// Compiles the forward pass for `batch` samples.
    pub fn prepare(&self, batch: usize) -> Result<UNetRun> {
        self.check_batch(batch)?;
        let c = &self.config;
        let w = &self.weights;
        let d = self.dtype;
        let sample = Tensor::empty(&self.gpu, &self.sample_shape(batch), d)?;
        let (h, wd) = c.sample_size;
        let output = Tensor::empty(&self.gpu, &[batch, c.out_channels, h, wd], d)?;
        let timesteps = Tensor::empty(&self.gpu, &[batch], DType::F32)?;
        let mut b = Builder {
            g: Graph::new(&self.gpu),
            dtype: d,
        };

        let mut x = b.g.external(&sample);
        if c.center_input_sample {
            let doubled = b.unary(x, Unary::Scale(2.0));
            let minus_one = b.g.external(&self.minus_one);
            x = b.binary(doubled, minus_one, Binary::Add);
        }
        // Time embedding: sinusoid → Linear → SiLU → Linear; every ResNet block then takes
        // SiLU of it.
        let ts = b.g.external(&timesteps);
        let freqs = b.g.external(&self.freqs);
        let t_config = time_config(c);
        let sinusoid = b.g.temp(&[batch, c.block_out_channels[0]], d);
        b.g.node("timestep embedding", &[ts, freqs, sinusoid], move |n| {
            timestep::timestep_embedding(n.gpu, &t_config, n.tensor(0), n.tensor(1), n.tensor(2))
        });
        let e1 = b.linear(sinusoid, &w.time1);
        let e1 = b.unary(e1, Unary::Silu);
        let emb = b.linear(e1, &w.time2);
        let emb = b.unary(emb, Unary::Silu);

        let mut h_id = b.conv(x, &w.conv_in, None)?;
        let mut skips = vec![h_id];
        for level in &w.down {
            for (j, resnet) in level.resnets.iter().enumerate() {
                h_id = b.resnet(h_id, emb, resnet, c.time_shift)?;
                if level.kind == BlockKind::Attention {
                    h_id = b.attention(h_id, &level.attentions[j])?;
                }
                skips.push(h_id);
            }
            if let Some(down) = &level.resample {
                h_id = b.conv(h_id, down, None)?;
                skips.push(h_id);
            }
        }
        if let Some(mid) = &w.mid {
            h_id = b.resnet(h_id, emb, &mid.first, c.time_shift)?;
            if let Some(attn) = &mid.attention {
                h_id = b.attention(h_id, attn)?;
            }
            h_id = b.resnet(h_id, emb, &mid.second, c.time_shift)?;
        }
        for level in &w.up {
            for (j, resnet) in level.resnets.iter().enumerate() {
                let skip = skips.pop().expect("one skip per up ResNet block");
                h_id = b.concat(h_id, skip)?;
                h_id = b.resnet(h_id, emb, resnet, c.time_shift)?;
                if level.kind == BlockKind::Attention {
                    h_id = b.attention(h_id, &level.attentions[j])?;
                }
            }
            if let Some(up) = &level.resample {
                h_id = b.upsample(h_id)?;
                h_id = b.conv(h_id, up, None)?;
            }
        }
        let h_id = b.group_norm(h_id, &w.norm_out, true);
        let out = b.g.external(&output);
        b.conv(h_id, &w.conv_out, Some(out))?;
        let plan = b.g.compile(0)?;
        Ok(UNetRun {
            plan,
            sample,
            output,
            timesteps,
            batch,
        })
    }
}

pub(super) fn time_config(c: &UNetConfig) -> TimestepConfig {
    TimestepConfig {
        dim: c.block_out_channels[0],
        flip_sin_to_cos: c.flip_sin_to_cos,
        freq_shift: c.freq_shift,
    }
}

/// Adds the UNet's operations to a graph, tracking shapes.
struct Builder {
    g: Graph,
    dtype: DType,
}

impl Builder {
    fn shape4(&self, x: Id) -> Result<[usize; 4]> {
        <[usize; 4]>::try_from(self.g.shape(x))
            .map_err(|_| Error::shape("unet", "expected an NCHW tensor"))
    }

    fn like(&mut self, x: Id) -> Id {
        let shape = self.g.shape(x).to_vec();
        self.g.temp(&shape, self.dtype)
    }

    /// A convolution into a new tensor, or into `into`.
    fn conv(&mut self, x: Id, conv: &Conv, into: Option<Id>) -> Result<Id> {
        let [n, _, h, w] = self.shape4(x)?;
        let ws = conv.weight.shape();
        let (out_ch, kh, kw) = (ws[0], ws[2], ws[3]);
        let options = conv.options;
        let (ho, wo) = options
            .output_size(h, w, kh, kw)
            .ok_or_else(|| Error::shape("unet", format!("a {kh}x{kw} convolution on {h}x{w}")))?;
        let out = into.unwrap_or_else(|| self.g.temp(&[n, out_ch, ho, wo], self.dtype));
        let weight = self.g.external(&conv.weight);
        match &conv.bias {
            Some(bias) => {
                let bias = self.g.external(bias);
                self.g.node("conv2d", &[x, weight, bias, out], move |c| {
                    let (x, w, b, out) = (c.tensor(0), c.tensor(1), c.tensor(2), c.tensor(3));
                    conv2d::conv2d(c.gpu, x, w, Some(b), options, out)
                });
            }
            None => self.g.node("conv2d", &[x, weight, out], move |c| {
                conv2d::conv2d(c.gpu, c.tensor(0), c.tensor(1), None, options, c.tensor(2))
            }),
        }
        Ok(out)
    }

    fn group_norm(&mut self, x: Id, norm: &Norm, silu: bool) -> Id {
        let out = self.like(x);
        let (weight, bias) = (self.g.external(&norm.weight), self.g.external(&norm.bias));
        let (groups, eps) = (norm.groups, norm.eps);
        self.g
            .node("group_norm", &[x, weight, bias, out], move |c| {
                let (x, w, b, out) = (c.tensor(0), c.tensor(1), c.tensor(2), c.tensor(3));
                group_norm::group_norm(c.gpu, x, w, b, groups, eps, silu, out)
            });
        out
    }

    /// `x · weightᵀ + bias` on `[rows, in]`.
    fn linear(&mut self, x: Id, linear: &Linear) -> Id {
        layers::linear(
            &mut self.g,
            x,
            &linear.weight,
            linear.bias.as_ref(),
            self.dtype,
        )
    }

    fn unary(&mut self, x: Id, op: Unary) -> Id {
        layers::unary(&mut self.g, x, op, self.dtype)
    }

    fn binary(&mut self, a: Id, b: Id, op: Binary) -> Id {
        layers::binary(&mut self.g, a, b, op, self.dtype)
    }

    fn resnet(&mut self, x: Id, emb: Id, r: &ResBlock, shift: TimeShift) -> Result<Id> {
        let a = self.group_norm(x, &r.norm1, true);
        let a = self.conv(a, &r.conv1, None)?;
        let t = self.linear(emb, &r.time);
        let a = match shift {
            TimeShift::Default => {
                let mixed = self.channel_mix(a, t, ChannelMix::Add);
                self.group_norm(mixed, &r.norm2, true)
            }
            TimeShift::ScaleShift => {
                let normed = self.group_norm(a, &r.norm2, false);
                let mixed = self.channel_mix(normed, t, ChannelMix::ScaleShift);
                self.unary(mixed, Unary::Silu)
            }
        };
        let a = self.conv(a, &r.conv2, None)?;
        let shortcut = match &r.shortcut {
            Some(conv) => self.conv(x, conv, None)?,
            None => x,
        };
        let sum = self.binary(shortcut, a, Binary::Add);
        Ok(if r.out_scale == 1.0 {
            sum
        } else {
            self.unary(sum, Unary::Scale(r.out_scale))
        })
    }

    fn channel_mix(&mut self, x: Id, emb: Id, mix: ChannelMix) -> Id {
        let out = self.like(x);
        self.g.node("time embedding", &[x, emb, out], move |c| {
            spatial::channel_mix(c.gpu, mix, c.tensor(0), c.tensor(1), c.tensor(2))
        });
        out
    }

    /// Self-attention over the H·W positions, with the residual and rescaling of diffusers'
    /// attention block.
    fn attention(&mut self, x: Id, a: &AttnBlock) -> Result<Id> {
        let [n, ch, h, w] = self.shape4(x)?;
        let hw = h * w;
        let (heads, head_dim) = (a.heads, ch / a.heads);
        let normed = match &a.norm {
            Some(norm) => self.group_norm(x, norm, false),
            None => x,
        };
        let planar = self.g.reshape(normed, &[n, ch, hw])?;
        let tokens = self.transpose(planar)?;
        let rows = self.g.reshape(tokens, &[n * hw, ch])?;
        let q = self.linear(rows, &a.q);
        let k = self.linear(rows, &a.k);
        let v = self.linear(rows, &a.v);
        let heads_shape = [n, hw, heads, head_dim];
        let (q4, k4, v4) = (
            self.g.reshape(q, &heads_shape)?,
            self.g.reshape(k, &heads_shape)?,
            self.g.reshape(v, &heads_shape)?,
        );
        let attended = self.g.temp(&[n * hw, ch], self.dtype);
        let attended4 = self.g.reshape(attended, &heads_shape)?;
        let scale = 1.0 / (head_dim as f32).sqrt();
        self.g
            .node("attention", &[q4, k4, v4, attended4], move |c| {
                let (q, k, v, out) = (c.tensor(0), c.tensor(1), c.tensor(2), c.tensor(3));
                attention::flash_attention(c.gpu, q, k, v, Position::Fixed(0), false, scale, out)
            });
        let projected = self.linear(attended, &a.out);
        let projected = self.g.reshape(projected, &[n, hw, ch])?;
        let planar_out = self.transpose(projected)?;
        let planar_out = self.g.reshape(planar_out, &[n, ch, h, w])?;
        let sum = self.binary(planar_out, x, Binary::Add);
        Ok(if a.out_scale == 1.0 {
            sum
        } else {
            self.unary(sum, Unary::Scale(a.out_scale))
        })
    }

    /// `[batch, rows, cols]` → `[batch, cols, rows]`.
    fn transpose(&mut self, x: Id) -> Result<Id> {
        let &[n, r, c] = self.g.shape(x) else {
            return Err(Error::shape("unet", "transpose needs a 3-D tensor"));
        };
        let out = self.g.temp(&[n, c, r], self.dtype);
        self.g.node("transpose", &[x, out], |c| {
            transpose::transpose(c.gpu, c.tensor(0), c.tensor(1))
        });
        Ok(out)
    }

    fn concat(&mut self, a: Id, b: Id) -> Result<Id> {
        let [n, ca, h, w] = self.shape4(a)?;
        let [nb, cb, hb, wb] = self.shape4(b)?;
        if (n, h, w) != (nb, hb, wb) {
            return Err(Error::shape(
                "unet",
                format!("skip connection {nb}x{cb}x{hb}x{wb} does not match {n}x{ca}x{h}x{w}"),
            ));
        }
        let out = self.g.temp(&[n, ca + cb, h, w], self.dtype);
        self.g.node("concat", &[a, b, out], |c| {
            spatial::concat_channels(c.gpu, c.tensor(0), c.tensor(1), c.tensor(2))
        });
        Ok(out)
    }

    fn upsample(&mut self, x: Id) -> Result<Id> {
        let [n, c, h, w] = self.shape4(x)?;
        let out = self.g.temp(&[n, c, 2 * h, 2 * w], self.dtype);
        self.g.node("upsample", &[x, out], |c| {
            spatial::upsample_nearest2x(c.gpu, c.tensor(0), c.tensor(1))
        });
        Ok(out)
    }
}

/// Bytes of the largest activation of a forward pass over `batch` samples, or `TooLarge`
/// when it exceeds one storage binding (or overflows). At level `l` (resolution halved `l`
/// times) the widest tensor is an up block's concatenation of its input with a skip
/// connection: at most twice the widest of the channel counts of levels `l - 1 ..= l + 1`.
fn largest_activation(config: &UNetConfig, batch: usize, dtype: DType, gpu: &Gpu) -> Result<u64> {
    let channels = &config.block_out_channels;
    let (h, w) = config.sample_size;
    let too_large = |bytes: u64| Error::TooLarge {
        what: format!("a batch of {batch} samples of {h}x{w} (the UNet's activations)"),
        bytes,
        limit_name: "max_storage_buffer_binding_size",
        limit: gpu.limits().max_storage_buffer_binding_size,
    };
    let mut largest = 0u64;
    for level in 0..channels.len() {
        let widest = channels[level.saturating_sub(1)..(level + 2).min(channels.len())]
            .iter()
            .chain([&config.in_channels, &config.out_channels])
            .max()
            .copied()
            .unwrap_or(1);
        let bytes = [2 * widest, h >> level, w >> level, batch, dtype.size()]
            .iter()
            .try_fold(1u64, |acc, &n| acc.checked_mul(n as u64))
            .ok_or_else(|| too_large(u64::MAX))?;
        largest = largest.max(bytes);
    }
    let limits = gpu.limits();
    if largest
        > limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
    {
        return Err(too_large(largest));
    }
    Ok(largest)
}
