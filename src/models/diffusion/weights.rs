//! The UNet's weights, read block by block as the configuration lays them out; each tensor is
//! checked (name, shape) before it is uploaded. Both the current attention names (`to_q`,
//! `to_k`, `to_v`, `to_out.0`) and the deprecated ones (`query`, `key`, `value`,
//! `proj_attn`) are accepted.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::Checkpoint;
use crate::kernels::conv2d::Conv2dOptions;
use crate::tensor::{DType, Tensor};

use super::config::{BlockKind, TimeShift, UNetConfig};

pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

pub struct Conv {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub options: Conv2dOptions,
}

pub struct Norm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub groups: usize,
    pub eps: f32,
}

pub struct ResBlock {
    pub norm1: Norm,
    pub conv1: Conv,
    pub time: Linear,
    pub norm2: Norm,
    pub conv2: Conv,
    pub shortcut: Option<Conv>,
    /// `1 / output_scale_factor`.
    pub out_scale: f32,
}

pub struct AttnBlock {
    pub norm: Option<Norm>,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub out: Linear,
    pub heads: usize,
    /// `1 / rescale_output_factor`.
    pub out_scale: f32,
}

/// One resolution of the down or up path.
pub struct Level {
    pub kind: BlockKind,
    pub resnets: Vec<ResBlock>,
    pub attentions: Vec<AttnBlock>,
    /// The stride-2 convolution (down) or the convolution after 2× upsampling (up).
    pub resample: Option<Conv>,
}

pub struct Mid {
    pub first: ResBlock,
    pub attention: Option<AttnBlock>,
    pub second: ResBlock,
}

pub struct UNetWeights {
    pub conv_in: Conv,
    pub time1: Linear,
    pub time2: Linear,
    pub down: Vec<Level>,
    pub mid: Option<Mid>,
    pub up: Vec<Level>,
    pub norm_out: Norm,
    pub conv_out: Conv,
    /// Elements of every tensor loaded.
    pub parameters: u64,
    /// Every tensor loaded with its checkpoint name, in load order (the trainer's
    /// parameters).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // read by training, native only
    pub named: Vec<(String, Tensor)>,
}

struct Loader<'a> {
    gpu: &'a Gpu,
    ckpt: &'a Checkpoint,
    config: &'a UNetConfig,
    dtype: DType,
    /// Elements loaded so far.
    loaded: std::cell::Cell<u64>,
    named: std::cell::RefCell<Vec<(String, Tensor)>>,
}

impl Loader<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let tensor = self.ckpt.upload(self.gpu, name, shape, self.dtype)?;
        self.loaded
            .set(self.loaded.get() + shape.iter().product::<usize>() as u64);
        self.named
            .borrow_mut()
            .push((name.to_string(), tensor.share()));
        Ok(tensor)
    }

    fn linear(&self, prefix: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear {
            weight: self.tensor(&format!("{prefix}.weight"), &[out, inp])?,
            bias: Some(self.tensor(&format!("{prefix}.bias"), &[out])?),
        })
    }

    fn conv(
        &self,
        prefix: &str,
        out: usize,
        inp: usize,
        k: usize,
        options: Conv2dOptions,
    ) -> Result<Conv> {
        Ok(Conv {
            weight: self.tensor(&format!("{prefix}.weight"), &[out, inp, k, k])?,
            bias: Some(self.tensor(&format!("{prefix}.bias"), &[out])?),
            options,
        })
    }

    fn norm(&self, prefix: &str, channels: usize, groups: usize) -> Result<Norm> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            return Err(Error::Config {
                path: self.ckpt.origin().to_string(),
                detail: format!("{prefix}: {groups} groups do not divide {channels} channels"),
            });
        }
        Ok(Norm {
            weight: self.tensor(&format!("{prefix}.weight"), &[channels])?,
            bias: self.tensor(&format!("{prefix}.bias"), &[channels])?,
            groups,
            eps: self.config.norm_eps as f32,
        })
    }

    fn resnet(&self, prefix: &str, inp: usize, out: usize, output_scale: f64) -> Result<ResBlock> {
        let c = self.config;
        let time_width = match c.time_shift {
            TimeShift::Default => out,
            TimeShift::ScaleShift => 2 * out,
        };
        let same = Conv2dOptions::symmetric(1, 1);
        Ok(ResBlock {
            norm1: self.norm(&format!("{prefix}.norm1"), inp, c.norm_num_groups)?,
            conv1: self.conv(&format!("{prefix}.conv1"), out, inp, 3, same)?,
            time: self.linear(
                &format!("{prefix}.time_emb_proj"),
                time_width,
                c.time_embed_dim(),
            )?,
            norm2: self.norm(&format!("{prefix}.norm2"), out, c.norm_num_groups)?,
            conv2: self.conv(&format!("{prefix}.conv2"), out, out, 3, same)?,
            shortcut: (inp != out)
                .then(|| {
                    self.conv(
                        &format!("{prefix}.conv_shortcut"),
                        out,
                        inp,
                        1,
                        Conv2dOptions::symmetric(1, 0),
                    )
                })
                .transpose()?,
            out_scale: (1.0 / output_scale) as f32,
        })
    }

    /// The first of `names` the checkpoint has under `prefix` (current name, then deprecated).
    fn pick(&self, prefix: &str, names: [&str; 2]) -> String {
        let current = format!("{prefix}.{}", names[0]);
        let deprecated = format!("{prefix}.{}", names[1]);
        if self.ckpt.contains(&format!("{current}.weight"))
            || !self.ckpt.contains(&format!("{deprecated}.weight"))
        {
            current
        } else {
            deprecated
        }
    }

    fn attention(
        &self,
        prefix: &str,
        channels: usize,
        groups: Option<usize>,
        output_scale: f64,
    ) -> Result<AttnBlock> {
        let head_dim = self.config.attention_head_dim.unwrap_or(channels);
        if head_dim == 0 || !channels.is_multiple_of(head_dim) {
            return Err(Error::Config {
                path: self.ckpt.origin().to_string(),
                detail: format!(
                    "attention_head_dim {head_dim} does not divide {channels} channels"
                ),
            });
        }
        Ok(AttnBlock {
            norm: groups
                .map(|g| self.norm(&format!("{prefix}.group_norm"), channels, g))
                .transpose()?,
            q: self.linear(&self.pick(prefix, ["to_q", "query"]), channels, channels)?,
            k: self.linear(&self.pick(prefix, ["to_k", "key"]), channels, channels)?,
            v: self.linear(&self.pick(prefix, ["to_v", "value"]), channels, channels)?,
            out: self.linear(
                &self.pick(prefix, ["to_out.0", "proj_attn"]),
                channels,
                channels,
            )?,
            heads: channels / head_dim,
            out_scale: (1.0 / output_scale) as f32,
        })
    }
}

impl UNetWeights {
    pub fn load(
        gpu: &Gpu,
        ckpt: &Checkpoint,
        config: &UNetConfig,
        dtype: DType,
    ) -> Result<UNetWeights> {
        let l = Loader {
            gpu,
            ckpt,
            config,
            dtype,
            loaded: std::cell::Cell::new(0),
            named: std::cell::RefCell::new(Vec::new()),
        };
        let c = config;
        let channels = &c.block_out_channels;
        let levels = channels.len();
        let c0 = channels[0];
        let ted = c.time_embed_dim();
        let same = Conv2dOptions::symmetric(1, 1);
        let down_options = if c.downsample_padding == 0 {
            // diffusers pads (0, 1, 0, 1) and convolves without padding.
            Conv2dOptions {
                stride: 2,
                pad_top: 0,
                pad_bottom: 1,
                pad_left: 0,
                pad_right: 1,
            }
        } else {
            Conv2dOptions::symmetric(2, c.downsample_padding)
        };

        let mut down = Vec::with_capacity(levels);
        let mut out_ch = c0;
        for (i, &kind) in c.down_blocks.iter().enumerate() {
            let in_ch = out_ch;
            out_ch = channels[i];
            let mut level = Level {
                kind,
                resnets: Vec::new(),
                attentions: Vec::new(),
                resample: None,
            };
            for j in 0..c.layers_per_block {
                let inp = if j == 0 { in_ch } else { out_ch };
                level.resnets.push(l.resnet(
                    &format!("down_blocks.{i}.resnets.{j}"),
                    inp,
                    out_ch,
                    1.0,
                )?);
                if kind == BlockKind::Attention {
                    let prefix = format!("down_blocks.{i}.attentions.{j}");
                    level.attentions.push(l.attention(
                        &prefix,
                        out_ch,
                        Some(c.norm_num_groups),
                        1.0,
                    )?);
                }
            }
            if i + 1 < levels {
                let prefix = format!("down_blocks.{i}.downsamplers.0.conv");
                level.resample = Some(l.conv(&prefix, out_ch, out_ch, 3, down_options)?);
            }
            down.push(level);
        }

        let last = channels[levels - 1];
        let mid = if c.mid_block {
            let scale = c.mid_block_scale_factor;
            // UNetMidBlock2D: the attention's GroupNorm has attn_norm_num_groups groups, by
            // default the ResNets' — but none at all with the scale-shift time embedding.
            let groups = c.attn_norm_num_groups.or(match c.time_shift {
                TimeShift::Default => Some(c.norm_num_groups),
                TimeShift::ScaleShift => None,
            });
            Some(Mid {
                first: l.resnet("mid_block.resnets.0", last, last, scale)?,
                attention: c
                    .add_attention
                    .then(|| l.attention("mid_block.attentions.0", last, groups, scale))
                    .transpose()?,
                second: l.resnet("mid_block.resnets.1", last, last, scale)?,
            })
        } else {
            None
        };

        let reversed: Vec<usize> = channels.iter().rev().copied().collect();
        let mut up = Vec::with_capacity(levels);
        let mut out_ch = reversed[0];
        for (i, &kind) in c.up_blocks.iter().enumerate() {
            let prev_out = out_ch;
            out_ch = reversed[i];
            let in_ch = reversed[(i + 1).min(levels - 1)];
            let mut level = Level {
                kind,
                resnets: Vec::new(),
                attentions: Vec::new(),
                resample: None,
            };
            for j in 0..=c.layers_per_block {
                let skip = if j == c.layers_per_block {
                    in_ch
                } else {
                    out_ch
                };
                let inp = if j == 0 { prev_out } else { out_ch };
                let prefix = format!("up_blocks.{i}.resnets.{j}");
                level
                    .resnets
                    .push(l.resnet(&prefix, inp + skip, out_ch, 1.0)?);
                if kind == BlockKind::Attention {
                    let prefix = format!("up_blocks.{i}.attentions.{j}");
                    level.attentions.push(l.attention(
                        &prefix,
                        out_ch,
                        Some(c.norm_num_groups),
                        1.0,
                    )?);
                }
            }
            if i + 1 < levels {
                let prefix = format!("up_blocks.{i}.upsamplers.0.conv");
                level.resample = Some(l.conv(&prefix, out_ch, out_ch, 3, same)?);
            }
            up.push(level);
        }

        let conv_in = l.conv("conv_in", c0, c.in_channels, 3, same)?;
        let time1 = l.linear("time_embedding.linear_1", ted, c0)?;
        let time2 = l.linear("time_embedding.linear_2", ted, ted)?;
        let norm_out = l.norm("conv_norm_out", c0, c.norm_num_groups)?;
        let conv_out = l.conv("conv_out", c.out_channels, c0, 3, same)?;
        Ok(UNetWeights {
            conv_in,
            time1,
            time2,
            down,
            mid,
            up,
            norm_out,
            conv_out,
            parameters: l.loaded.get(),
            named: l.named.take(),
        })
    }
}
