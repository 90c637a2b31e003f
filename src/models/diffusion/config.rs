//! `UNet2DModel`'s `config.json`. Every key is either understood or refused by name: a setting
//! tessera does not implement is an error, never silently ignored.

use std::path::Path;

use crate::error::Result;
use crate::io::ConfigJson;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// `DownBlock2D` / `UpBlock2D`: ResNet blocks only.
    Plain,
    /// `AttnDownBlock2D` / `AttnUpBlock2D`: each ResNet block followed by self-attention.
    Attention,
}

/// How a ResNet block mixes in the time embedding (`resnet_time_scale_shift`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeShift {
    /// `h + proj(t)`, then GroupNorm.
    Default,
    /// GroupNorm, then `h·(1 + scale) + shift` from a projection twice as wide.
    ScaleShift,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UNetConfig {
    pub sample_size: (usize, usize),
    pub in_channels: usize,
    pub out_channels: usize,
    pub center_input_sample: bool,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
    pub time_embedding_dim: Option<usize>,
    pub down_blocks: Vec<BlockKind>,
    pub up_blocks: Vec<BlockKind>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub mid_block: bool,
    pub mid_block_scale_factor: f64,
    pub downsample_padding: usize,
    pub attention_head_dim: Option<usize>,
    pub norm_num_groups: usize,
    pub attn_norm_num_groups: Option<usize>,
    pub norm_eps: f64,
    pub time_shift: TimeShift,
    pub add_attention: bool,
}

/// Bounds on what a config may say, far beyond any released UNet2DModel, so that nothing
/// sized from a config overflows or asks for absurd memory before the checkpoint is checked.
const MAX_SIDE: usize = 1 << 12;
const MAX_CHANNELS: usize = 1 << 14;
const MAX_LEVELS: usize = 12;
const MAX_LAYERS_PER_BLOCK: usize = 64;

/// The `UNet2DModel` arguments tessera reads, and bookkeeping keys diffusers writes.
const KNOWN_KEYS: &[&str] = &[
    "_class_name",
    "_diffusers_version",
    "_name_or_path",
    "sample_size",
    "in_channels",
    "out_channels",
    "center_input_sample",
    "time_embedding_type",
    "time_embedding_dim",
    "freq_shift",
    "flip_sin_to_cos",
    "down_block_types",
    "mid_block_type",
    "up_block_types",
    "block_out_channels",
    "layers_per_block",
    "mid_block_scale_factor",
    "downsample_padding",
    "downsample_type",
    "upsample_type",
    "dropout",
    "act_fn",
    "attention_head_dim",
    "norm_num_groups",
    "attn_norm_num_groups",
    "norm_eps",
    "resnet_time_scale_shift",
    "add_attention",
    "class_embed_type",
    "num_class_embeds",
    "num_train_timesteps",
];

impl UNetConfig {
    pub fn read(path: &Path) -> Result<UNetConfig> {
        UNetConfig::from_json(&ConfigJson::read(path)?)
    }

    pub fn from_json(c: &ConfigJson) -> Result<UNetConfig> {
        if let Some(class) = c.opt_str("_class_name")?
            && class != "UNet2DModel"
        {
            return Err(c.error(format!(
                "{class} is not supported; tessera runs UNet2DModel"
            )));
        }
        let unknown: Vec<&str> = c.keys().filter(|k| !KNOWN_KEYS.contains(k)).collect();
        if !unknown.is_empty() {
            return Err(c.error(format!("unsupported config keys: {}", unknown.join(", "))));
        }
        let refuse_unless = |key: &str, allowed: &[&str], default: &str| -> Result<()> {
            let value = c.opt_str(key)?.unwrap_or(default);
            if allowed.contains(&value) {
                Ok(())
            } else {
                Err(c.error(format!(
                    "{key} {value:?} is not supported (tessera: {allowed:?})"
                )))
            }
        };
        refuse_unless("time_embedding_type", &["positional"], "positional")?;
        refuse_unless("downsample_type", &["conv"], "conv")?;
        refuse_unless("upsample_type", &["conv"], "conv")?;
        refuse_unless("act_fn", &["silu", "swish"], "silu")?;
        for key in ["class_embed_type", "num_class_embeds"] {
            if c.has(key) {
                return Err(c.error(format!("{key} (class conditioning) is not supported")));
            }
        }
        let blocks = |key: &str, plain: &str, attention: &str| -> Result<Vec<BlockKind>> {
            let list = c
                .string_list(key)?
                .ok_or_else(|| c.error(format!("{key} is missing")))?;
            list.iter()
                .map(|name| match name.as_str() {
                    n if n == plain => Ok(BlockKind::Plain),
                    n if n == attention => Ok(BlockKind::Attention),
                    other => Err(c.error(format!(
                        "{key}: block type {other:?} is not supported (tessera: {plain}, {attention})"
                    ))),
                })
                .collect()
        };
        let down_blocks = blocks("down_block_types", "DownBlock2D", "AttnDownBlock2D")?;
        let up_blocks = blocks("up_block_types", "UpBlock2D", "AttnUpBlock2D")?;
        let block_out_channels = c
            .usize_list("block_out_channels")?
            .into_iter()
            .map(|ch| c.in_range("block_out_channels", ch, 1..=MAX_CHANNELS))
            .collect::<Result<Vec<_>>>()?;
        // Each level halves the resolution: more levels than that is no UNet (and 1 << levels
        // would overflow).
        c.in_range(
            "the number of down blocks",
            down_blocks.len(),
            1..=MAX_LEVELS,
        )?;
        if block_out_channels.is_empty()
            || block_out_channels.len() != down_blocks.len()
            || up_blocks.len() != down_blocks.len()
        {
            return Err(c.error(format!(
                "block_out_channels ({}), down_block_types ({}) and up_block_types ({}) must \
                 have the same, non-zero length",
                block_out_channels.len(),
                down_blocks.len(),
                up_blocks.len()
            )));
        }
        let mid_block = if c.has_null("mid_block_type") {
            false
        } else {
            match c.opt_str("mid_block_type")? {
                None | Some("UNetMidBlock2D") => true,
                Some(other) => {
                    return Err(c.error(format!("mid_block_type {other:?} is not supported")));
                }
            }
        };
        let time_shift = match c.opt_str("resnet_time_scale_shift")?.unwrap_or("default") {
            "default" => TimeShift::Default,
            "scale_shift" => TimeShift::ScaleShift,
            other => {
                return Err(c.error(format!(
                    "resnet_time_scale_shift {other:?} is not supported (default, scale_shift)"
                )));
            }
        };
        let sample_size = match c.get("sample_size") {
            Some(serde_json::Value::Array(_)) => {
                let hw = c.usize_list("sample_size")?;
                match hw.as_slice() {
                    &[h, w] => (h, w),
                    _ => return Err(c.error("sample_size should be one number or [height, width]")),
                }
            }
            _ => {
                let s = c.usize("sample_size")?;
                (s, s)
            }
        };
        let sample_size = (
            c.in_range("sample_size", sample_size.0, 1..=MAX_SIDE)?,
            c.in_range("sample_size", sample_size.1, 1..=MAX_SIDE)?,
        );
        let norm_num_groups = c.opt_usize("norm_num_groups")?.unwrap_or(32);
        for &ch in &block_out_channels {
            if norm_num_groups == 0 || ch % norm_num_groups != 0 {
                return Err(c.error(format!(
                    "norm_num_groups {norm_num_groups} does not divide block channels {ch}"
                )));
            }
        }
        let channels = |key: &str, default: usize| -> Result<usize> {
            c.in_range(key, c.opt_usize(key)?.unwrap_or(default), 1..=MAX_CHANNELS)
        };
        let optional_channels = |key: &str| -> Result<Option<usize>> {
            c.opt_usize(key)?
                .map(|v| c.in_range(key, v, 1..=MAX_CHANNELS))
                .transpose()
        };
        let config = UNetConfig {
            sample_size,
            in_channels: channels("in_channels", 3)?,
            out_channels: channels("out_channels", 3)?,
            center_input_sample: c.bool_or("center_input_sample", false)?,
            flip_sin_to_cos: c.bool_or("flip_sin_to_cos", true)?,
            freq_shift: c.finite("freq_shift", c.opt_f64("freq_shift")?.unwrap_or(0.0), 1e6)?,
            time_embedding_dim: optional_channels("time_embedding_dim")?,
            down_blocks,
            up_blocks,
            block_out_channels,
            layers_per_block: c.in_range(
                "layers_per_block",
                c.opt_usize("layers_per_block")?.unwrap_or(2),
                1..=MAX_LAYERS_PER_BLOCK,
            )?,
            mid_block,
            mid_block_scale_factor: c.positive(
                "mid_block_scale_factor",
                c.opt_f64("mid_block_scale_factor")?.unwrap_or(1.0),
                1e6,
            )?,
            downsample_padding: c.opt_usize("downsample_padding")?.unwrap_or(1),
            // Absent: UNet2DModel's default of 8; null: one head over all channels.
            attention_head_dim: if c.has_null("attention_head_dim") {
                None
            } else {
                Some(optional_channels("attention_head_dim")?.unwrap_or(8))
            },
            norm_num_groups,
            attn_norm_num_groups: optional_channels("attn_norm_num_groups")?,
            norm_eps: c.positive("norm_eps", c.opt_f64("norm_eps")?.unwrap_or(1e-5), 1.0)?,
            time_shift,
            add_attention: c.bool_or("add_attention", true)?,
        };
        if config.downsample_padding > 1 {
            return Err(c.error("downsample_padding must be 0 or 1"));
        }
        if let Some(groups) = config.attn_norm_num_groups
            && let Some(&ch) = config
                .block_out_channels
                .iter()
                .find(|&&ch| ch % groups != 0)
        {
            return Err(c.error(format!(
                "attn_norm_num_groups {groups} does not divide block channels {ch}"
            )));
        }
        Ok(config)
    }

    /// Width of the time embedding (`time_embedding_dim`, default 4 × the first block's).
    pub fn time_embed_dim(&self) -> usize {
        self.time_embedding_dim
            .unwrap_or(4 * self.block_out_channels[0])
    }
}
