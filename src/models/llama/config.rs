//! The decoder's configuration, from a Hugging Face `config.json` of transformers 4.x (top-level
//! `rope_theta`, `rope_scaling`, `torch_dtype`) or 5.x (`rope_parameters`, `dtype`).

use std::path::Path;

use crate::error::Result;
use crate::io::ConfigJson;
use crate::kernels::rope::{RopeConfig, RopeScaling};

/// The architectures tessera runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// `LlamaForCausalLM`: Llama 2, Llama 3.x, TinyLlama, SmolLM2, ...
    Llama,
    /// `MistralForCausalLM`.
    Mistral,
    /// `Qwen2ForCausalLM`: biases on the q, k and v projections.
    Qwen2,
    /// `Qwen3ForCausalLM`: RMSNorm over each head of q and k before RoPE.
    Qwen3,
    /// `SmolLM3ForCausalLM`: no RoPE on the layers `no_rope_layers` marks 0.
    SmolLM3,
    /// `Phi3ForCausalLM`: q, k, v fused in `qkv_proj`, gate and up in `gate_up_proj`;
    /// longrope scaling.
    Phi3,
    /// `MixtralForCausalLM`: every MLP a mixture of experts (top-2 of 8, renormalised).
    Mixtral,
    /// `Qwen2MoeForCausalLM`: Qwen2 with mixture-of-experts MLPs and a gated shared expert.
    Qwen2Moe,
    /// `Qwen3MoeForCausalLM`: Qwen3 with mixture-of-experts MLPs.
    Qwen3Moe,
    /// `OlmoeForCausalLM`: mixture-of-experts MLPs, RMSNorm over the whole q and k.
    Olmoe,
    /// `Gemma2ForCausalLM`: as Gemma 3 without q/k norms and with one RoPE, and with
    /// attention-logit and final-logit soft-capping.
    Gemma2,
    /// `Gemma3ForCausalLM` (text only): (1 + w) norms, four per layer, q/k head norms,
    /// embeddings scaled by √hidden, GeGLU MLP, `query_pre_attn_scalar`, sliding-window
    /// layers with their own RoPE base.
    Gemma3,
}

/// A mixture-of-experts MLP: a router picks `top_k` of `experts` expert MLPs per token.
#[derive(Clone, Debug, PartialEq)]
pub struct MoeConfig {
    pub experts: usize,
    pub top_k: usize,
    /// Whether the chosen experts' probabilities are renormalised to sum 1.
    pub renormalize: bool,
    /// Each expert's intermediate size.
    pub expert_intermediate: usize,
    /// Qwen2-MoE's shared expert (its intermediate size), gated by a sigmoid.
    pub shared_intermediate: Option<usize>,
    /// Per layer: a mixture of experts (else a dense MLP of `intermediate_size`).
    pub sparse_layers: Vec<bool>,
}

/// The activation on an MLP's gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU: silu(gate) · up.
    Silu,
    /// GeGLU: gelu_tanh(gate) · up (`gelu_pytorch_tanh`).
    GeluTanh,
}

impl Architecture {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "LlamaForCausalLM" => Some(Architecture::Llama),
            "MistralForCausalLM" => Some(Architecture::Mistral),
            "Qwen2ForCausalLM" => Some(Architecture::Qwen2),
            "Qwen3ForCausalLM" => Some(Architecture::Qwen3),
            "SmolLM3ForCausalLM" => Some(Architecture::SmolLM3),
            "Phi3ForCausalLM" => Some(Architecture::Phi3),
            "Gemma2ForCausalLM" => Some(Architecture::Gemma2),
            "MixtralForCausalLM" => Some(Architecture::Mixtral),
            "Qwen2MoeForCausalLM" => Some(Architecture::Qwen2Moe),
            "Qwen3MoeForCausalLM" => Some(Architecture::Qwen3Moe),
            "OlmoeForCausalLM" => Some(Architecture::Olmoe),
            "Gemma3ForCausalLM" => Some(Architecture::Gemma3),
            _ => None,
        }
    }
}

/// What the decoder needs to know about a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub architecture: Architecture,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope: RopeConfig,
    pub tie_word_embeddings: bool,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub bos_token_id: Option<usize>,
    pub eos_token_ids: Vec<usize>,
    /// `torch_dtype` / `dtype` as written (the checkpoint's own type; informational).
    pub stored_dtype: Option<String>,
    /// Biases on q, k and v (Qwen2; Llama with `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (Llama with `attention_bias`).
    pub o_bias: bool,
    /// Biases on the MLP projections (Llama with `mlp_bias`).
    pub mlp_bias: bool,
    /// Attention window (Mistral, Phi-3, Gemma's local layers, the Qwens and SmolLM3 with
    /// `use_sliding_window`); `None` means full.
    pub sliding_window: Option<usize>,
    /// Per layer: its attention window (`sliding_window` on the layers that slide).
    pub layer_windows: Vec<Option<usize>>,
    /// RMSNorm over each head of q and k (weights `self_attn.{q,k}_norm.weight`, `[head_dim]`)
    /// before RoPE (Qwen3).
    pub qk_norm: bool,
    /// With `qk_norm`: the norms span all of q and of k (`[heads · head_dim]`, OLMoE).
    pub qk_norm_full: bool,
    /// Per layer: whether it applies RoPE (all but SmolLM3's NoPE layers).
    pub rope_layers: Vec<bool>,
    /// The MLP gate's activation.
    pub activation: Activation,
    /// Added to every RMSNorm weight as it is loaded (Gemma stores w and scales by 1 + w).
    pub norm_offset: f32,
    /// Factor on the embedded tokens (Gemma: √hidden, rounded to f32).
    pub embed_scale: Option<f32>,
    /// Gemma's norms on the attention's output and around the MLP
    /// (`post_attention_layernorm`, `pre_/post_feedforward_layernorm`).
    pub sandwich_norms: bool,
    /// The factor on q·k: 1/√head_dim, or Gemma's `query_pre_attn_scalar`^-1/2.
    pub attention_scale: f64,
    /// Per layer: whether it is a sliding-window layer (Gemma 3's local layers).
    pub sliding_layers: Vec<bool>,
    /// The RoPE of the sliding-window layers where it differs (Gemma 3's local base).
    pub rope_local: Option<RopeConfig>,
    /// Gemma 2's caps c on attention logits and on the final logits: s ↦ c·tanh(s / c).
    pub attn_softcap: Option<f32>,
    pub final_softcap: Option<f32>,
    /// Mixture-of-experts MLPs (Mixtral, Qwen2-MoE, Qwen3-MoE).
    pub moe: Option<MoeConfig>,
}

impl LlamaConfig {
    /// Reads `dir/config.json`.
    pub fn read(dir: &Path) -> Result<LlamaConfig> {
        LlamaConfig::from_json(&ConfigJson::read(&dir.join("config.json"))?)
    }

    pub fn from_json(c: &ConfigJson) -> Result<LlamaConfig> {
        let architecture = architecture(c)?;
        let gemma = matches!(architecture, Architecture::Gemma2 | Architecture::Gemma3);
        let activation = activation(c, gemma)?;
        let hidden_size = c.in_range("hidden_size", c.usize("hidden_size")?, 1..=MAX_WIDTH)?;
        let num_heads = c.in_range(
            "num_attention_heads",
            c.usize("num_attention_heads")?,
            1..=MAX_HEADS,
        )?;
        let num_kv_heads = c.opt_usize("num_key_value_heads")?.unwrap_or(num_heads);
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(c.error(format!(
                "num_key_value_heads {num_kv_heads} must divide num_attention_heads {num_heads}"
            )));
        }
        let head_dim = match c.opt_usize("head_dim")? {
            Some(d) => c.in_range("head_dim", d, 1..=MAX_HEAD_DIM)?,
            None if hidden_size % num_heads == 0 => hidden_size / num_heads,
            None => {
                return Err(c.error(format!(
                    "head_dim is absent and hidden_size {hidden_size} is not a multiple of \
                     num_attention_heads {num_heads}"
                )));
            }
        };
        let (rope, rope_local) = if architecture == Architecture::Gemma3 {
            gemma_rope(c, head_dim)?
        } else {
            (rope_config(c, head_dim)?, None)
        };
        let attention_bias = c.bool_or("attention_bias", false)?;
        let (qkv_bias, o_bias) = match architecture {
            Architecture::Qwen2 | Architecture::Qwen2Moe => (true, false),
            _ => (attention_bias, attention_bias),
        };
        let sliding_window = match architecture {
            Architecture::Mistral | Architecture::Phi3 | Architecture::Mixtral => {
                c.opt_usize("sliding_window")?
            }
            Architecture::Gemma2 | Architecture::Gemma3 if sliding_layers_named(c)? => {
                c.opt_usize("sliding_window")?
            }
            Architecture::Qwen2
            | Architecture::Qwen3
            | Architecture::SmolLM3
            | Architecture::Qwen2Moe
            | Architecture::Qwen3Moe
                if c.bool_or("use_sliding_window", false)? =>
            {
                c.opt_usize("sliding_window")?
            }
            _ => None,
        };
        let sliding_window = sliding_window
            .map(|w| c.in_range("sliding_window", w, 1..=MAX_POSITIONS))
            .transpose()?;
        let vocab_size = c.in_range("vocab_size", c.usize("vocab_size")?, 1..=MAX_VOCAB)?;
        let eos_token_ids = c.usize_list("eos_token_id")?;
        let bos_token_id = c.opt_usize("bos_token_id")?;
        for id in eos_token_ids.iter().chain(&bos_token_id) {
            c.in_range("bos_token_id / eos_token_id", *id, 0..=vocab_size - 1)?;
        }
        let num_layers = c.in_range(
            "num_hidden_layers",
            c.usize("num_hidden_layers")?,
            1..=MAX_LAYERS,
        )?;
        let rope_layers = match architecture {
            Architecture::SmolLM3 => nope_layers(c, num_layers)?,
            _ => vec![true; num_layers],
        };
        let sliding_layers = if gemma {
            gemma_checks(c)?;
            layer_kinds(c, num_layers, architecture)?
        } else {
            vec![false; num_layers]
        };
        let attention_scale = match c.opt_f64("query_pre_attn_scalar")? {
            Some(q) if gemma => 1.0 / c.positive("query_pre_attn_scalar", q, MAX_ROPE)?.sqrt(),
            _ => 1.0 / (head_dim as f64).sqrt(),
        };
        let config = LlamaConfig {
            architecture,
            hidden_size,
            intermediate_size: c.in_range(
                "intermediate_size",
                c.usize("intermediate_size")?,
                1..=MAX_WIDTH * 16,
            )?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: c.positive(
                "rms_norm_eps",
                c.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
                MAX_EPS,
            )?,
            rope,
            tie_word_embeddings: c.bool_or("tie_word_embeddings", false)?,
            vocab_size,
            max_position_embeddings: c.in_range(
                "max_position_embeddings",
                c.opt_usize("max_position_embeddings")?.unwrap_or(2048),
                1..=MAX_POSITIONS,
            )?,
            bos_token_id,
            eos_token_ids,
            stored_dtype: c
                .opt_str("torch_dtype")?
                .or(c.opt_str("dtype")?)
                .map(str::to_string),
            qkv_bias,
            o_bias,
            mlp_bias: c.bool_or("mlp_bias", false)?,
            layer_windows: layer_windows(
                c,
                architecture,
                sliding_window,
                &sliding_layers,
                &rope_layers,
            )?,
            sliding_window,
            qk_norm: matches!(
                architecture,
                Architecture::Qwen3
                    | Architecture::Gemma3
                    | Architecture::Qwen3Moe
                    | Architecture::Olmoe
            ),
            qk_norm_full: architecture == Architecture::Olmoe,
            rope_layers,
            activation,
            norm_offset: if gemma { 1.0 } else { 0.0 },
            embed_scale: gemma.then(|| (hidden_size as f64).sqrt() as f32),
            sandwich_norms: gemma,
            attention_scale,
            sliding_layers,
            rope_local,
            attn_softcap: softcap(c, "attn_logit_softcapping", gemma)?,
            final_softcap: softcap(c, "final_logit_softcapping", gemma)?,
            moe: moe_config(c, architecture, num_layers)?,
        };
        Ok(config)
    }
}

/// The MLP activation: `hidden_act` (or Gemma's `hidden_activation`), silu for the Llama
/// family, gelu_pytorch_tanh for Gemma.
fn activation(c: &ConfigJson, gemma: bool) -> Result<Activation> {
    let (key, want, activation) = if gemma {
        (
            "hidden_activation",
            "gelu_pytorch_tanh",
            Activation::GeluTanh,
        )
    } else {
        ("hidden_act", "silu", Activation::Silu)
    };
    match c.opt_str(key)?.or(c.opt_str("hidden_act")?) {
        Some(act) if act != want => Err(c.error(format!(
            "{key} {act:?} is not supported here (only {want:?})"
        ))),
        _ => Ok(activation),
    }
}

/// The mixture-of-experts settings of the MoE architectures (`None` for the others):
/// Mixtral's `num_local_experts` / `num_experts_per_tok` (renormalised, every layer), the Qwen
/// MoEs' `num_experts`, `norm_topk_prob`, `moe_intermediate_size`, `decoder_sparse_step`,
/// `mlp_only_layers` and Qwen2-MoE's `shared_expert_intermediate_size`.
fn moe_config(c: &ConfigJson, arch: Architecture, layers: usize) -> Result<Option<MoeConfig>> {
    let mixtral = arch == Architecture::Mixtral;
    if !matches!(
        arch,
        Architecture::Mixtral
            | Architecture::Qwen2Moe
            | Architecture::Qwen3Moe
            | Architecture::Olmoe
    ) {
        return Ok(None);
    }
    if let Some(clip) = c.opt_f64("clip_qkv")? {
        return Err(c.error(format!("clip_qkv {clip} is not supported")));
    }
    // transformers 5 writes num_local_experts for Qwen3-MoE too; 4.x wrote num_experts.
    let experts_key = if mixtral || !c.has("num_experts") {
        "num_local_experts"
    } else {
        "num_experts"
    };
    let experts = c.in_range(experts_key, c.usize(experts_key)?, 1..=MAX_EXPERTS)?;
    let top_k = c.in_range(
        "num_experts_per_tok",
        c.usize("num_experts_per_tok")?,
        1..=experts.min(crate::kernels::moe::MAX_TOP_K),
    )?;
    let expert_intermediate = if mixtral || arch == Architecture::Olmoe {
        c.usize("intermediate_size")?
    } else {
        c.usize("moe_intermediate_size")?
    };
    let expert_intermediate = c.in_range(
        "moe_intermediate_size",
        expert_intermediate,
        1..=MAX_WIDTH * 16,
    )?;
    let shared_intermediate = match arch {
        Architecture::Qwen2Moe => match c.opt_usize("shared_expert_intermediate_size")? {
            Some(0) | None => None,
            Some(n) => {
                Some(c.in_range("shared_expert_intermediate_size", n, 1..=MAX_WIDTH * 16)?)
            }
        },
        _ => None,
    };
    let step = c.in_range(
        "decoder_sparse_step",
        c.opt_usize("decoder_sparse_step")?.unwrap_or(1),
        1..=MAX_LAYERS,
    )?;
    let dense_only = c.usize_list("mlp_only_layers")?;
    let sparse_layers = (0..layers)
        .map(|i| !dense_only.contains(&i) && (i + 1) % step == 0)
        .collect();
    Ok(Some(MoeConfig {
        experts,
        top_k,
        renormalize: mixtral || c.bool_or("norm_topk_prob", false)?,
        expert_intermediate,
        shared_intermediate,
        sparse_layers,
    }))
}

/// A soft-cap (Gemma's `attn_logit_softcapping` / `final_logit_softcapping`): null or absent
/// is none; a value must be positive. Other architectures have none.
fn softcap(c: &ConfigJson, key: &str, gemma: bool) -> Result<Option<f32>> {
    match c.opt_f64(key)? {
        Some(v) if gemma => Ok(Some(c.positive(key, v, MAX_ROPE)? as f32)),
        _ => Ok(None),
    }
}

/// What Gemma configs may say that tessera does not run, refused by name.
fn gemma_checks(c: &ConfigJson) -> Result<()> {
    if c.bool_or("use_bidirectional_attention", false)? {
        return Err(c.error("use_bidirectional_attention is not supported (a causal decoder)"));
    }
    Ok(())
}

/// Which layers attend within `window`: those `layer_types` calls "sliding_attention" where
/// the config lists them, else by architecture: every layer (Mistral, Phi-3, Mixtral),
/// Gemma's sliding layers, the Qwens' layers from `max_window_layers` (default 28) on,
/// SmolLM3's NoPE layers.
fn layer_windows(
    c: &ConfigJson,
    arch: Architecture,
    window: Option<usize>,
    gemma_sliding: &[bool],
    rope_layers: &[bool],
) -> Result<Vec<Option<usize>>> {
    let layers = rope_layers.len();
    let Some(window) = window else {
        return Ok(vec![None; layers]);
    };
    let sliding: Vec<bool> = match arch {
        Architecture::Gemma2 | Architecture::Gemma3 => gemma_sliding.to_vec(),
        _ => match c.string_list("layer_types")? {
            Some(kinds) if kinds.len() >= layers => kinds[..layers]
                .iter()
                .map(|k| k == "sliding_attention")
                .collect(),
            _ => match arch {
                Architecture::Qwen2
                | Architecture::Qwen3
                | Architecture::Qwen2Moe
                | Architecture::Qwen3Moe => {
                    let from = c.opt_usize("max_window_layers")?.unwrap_or(28);
                    (0..layers).map(|i| i >= from).collect()
                }
                Architecture::SmolLM3 => rope_layers.iter().map(|r| !r).collect(),
                _ => vec![true; layers],
            },
        },
    };
    Ok(sliding.iter().map(|&s| s.then_some(window)).collect())
}

/// Whether any layer is a sliding-window one (the window then bounds the context).
fn sliding_layers_named(c: &ConfigJson) -> Result<bool> {
    let layers = c.opt_usize("num_hidden_layers")?.unwrap_or(0);
    let arch = architecture(c)?;
    Ok(layer_kinds(c, layers, arch)?.iter().any(|&s| s))
}

/// Gemma's layer kinds: `layer_types` ("sliding_attention" / "full_attention" per layer),
/// else every `sliding_window_pattern`-th layer global (default 6; Gemma 2 alternates, 2).
fn layer_kinds(c: &ConfigJson, layers: usize, arch: Architecture) -> Result<Vec<bool>> {
    if let Some(kinds) = c.string_list("layer_types")? {
        if kinds.len() < layers {
            return Err(c.error(format!(
                "layer_types names {} layers of {layers}",
                kinds.len()
            )));
        }
        return kinds[..layers]
            .iter()
            .map(|k| match k.as_str() {
                "sliding_attention" => Ok(true),
                "full_attention" => Ok(false),
                other => Err(c.error(format!("layer_types entry {other:?} is not supported"))),
            })
            .collect();
    }
    let pattern = c.in_range(
        "sliding_window_pattern",
        c.opt_usize("sliding_window_pattern")?
            .unwrap_or(if arch == Architecture::Gemma2 { 2 } else { 6 }),
        1..=MAX_LAYERS,
    )?;
    Ok((0..layers).map(|i| (i + 1) % pattern != 0).collect())
}

/// Gemma 3's two RoPEs: the global layers' (`rope_parameters.full_attention`, or 4.x
/// `rope_theta` and `rope_scaling`, default base 1e6) and the sliding layers'
/// (`rope_parameters.sliding_attention`, or `rope_local_base_freq`, default 1e4).
fn gemma_rope(c: &ConfigJson, head_dim: usize) -> Result<(RopeConfig, Option<RopeConfig>)> {
    let one = |p: Option<ConfigJson>, default_theta: f64| -> Result<RopeConfig> {
        let (theta, scaling) = match &p {
            Some(p) => (p.opt_f64("rope_theta")?, scaling(p, c, head_dim)?),
            None => (None, RopeScaling::None),
        };
        Ok(RopeConfig {
            theta: c.positive("rope_theta", theta.unwrap_or(default_theta), MAX_ROPE)?,
            head_dim,
            scaling,
        })
    };
    match c.object("rope_parameters")? {
        Some(p) if p.has("full_attention") || p.has("sliding_attention") => Ok((
            one(p.object("full_attention")?, 1e6)?,
            Some(one(p.object("sliding_attention")?, 1e4)?),
        )),
        _ => {
            let global = RopeConfig {
                theta: c.opt_f64("rope_theta")?.unwrap_or(1e6),
                ..rope_config(c, head_dim)?
            };
            let local = RopeConfig {
                theta: c.positive(
                    "rope_local_base_freq",
                    c.opt_f64("rope_local_base_freq")?.unwrap_or(1e4),
                    MAX_ROPE,
                )?,
                head_dim,
                scaling: RopeScaling::None,
            };
            Ok((global, Some(local)))
        }
    }
}

/// Phi-3's longrope: `short_factor` / `long_factor` (one per frequency), the original context
/// (in the scaling or the config), and the attention factor, given or derived from the
/// context growth as transformers derives it: √(1 + ln(factor) / ln(original)).
fn longrope(s: &ConfigJson, top: &ConfigJson, head_dim: usize) -> Result<RopeScaling> {
    let half = head_dim / 2;
    let key = "original_max_position_embeddings";
    let original = match s.opt_usize(key)? {
        Some(n) => n,
        None => top
            .opt_usize(key)?
            .ok_or_else(|| s.error(format!("longrope needs {key}")))?,
    };
    let original = s.in_range(key, original, 1..=MAX_POSITIONS)?;
    let factor = match s.opt_f64("factor")? {
        Some(f) => s.positive("factor", f, MAX_ROPE)?,
        None => {
            top.opt_usize("max_position_embeddings")?
                .unwrap_or(original) as f64
                / original as f64
        }
    };
    let attention_factor = match s.opt_f64("attention_factor")? {
        Some(a) => s.positive("attention_factor", a, MAX_ROPE)?,
        None if factor <= 1.0 => 1.0,
        None => (1.0 + factor.ln() / (original as f64).ln()).sqrt(),
    };
    Ok(RopeScaling::LongRope {
        short: s.f64_list("short_factor", half)?,
        long: s.f64_list("long_factor", half)?,
        original_max_position_embeddings: original,
        attention_factor,
    })
}

/// SmolLM3's RoPE layers: `no_rope_layers` (1 = RoPE, 0 = none, one per layer at least), or
/// every `no_rope_layer_interval`-th layer (default 4) without.
fn nope_layers(c: &ConfigJson, layers: usize) -> Result<Vec<bool>> {
    let key = "no_rope_layers";
    if c.get(key).is_some_and(|v| !v.is_null()) {
        let flags = c.usize_list(key)?;
        if flags.len() < layers || flags.iter().any(|&f| f > 1) {
            return Err(c.error(format!(
                "{key} must give 0 or 1 for each of the {layers} layers, not {flags:?}"
            )));
        }
        return Ok(flags[..layers].iter().map(|&f| f == 1).collect());
    }
    let interval = c.in_range(
        "no_rope_layer_interval",
        c.opt_usize("no_rope_layer_interval")?.unwrap_or(4),
        1..=MAX_LAYERS,
    )?;
    Ok((0..layers).map(|i| (i + 1) % interval != 0).collect())
}

/// Bounds on what a config may say, far beyond any released model, so that nothing sized
/// from a config overflows or asks for absurd host memory before the checkpoint is checked.
const MAX_WIDTH: usize = 1 << 16;
const MAX_HEADS: usize = 1 << 10;
const MAX_HEAD_DIM: usize = 1 << 10;
const MAX_LAYERS: usize = 1 << 10;
const MAX_EXPERTS: usize = 1 << 12;
const MAX_VOCAB: usize = 1 << 24;
const MAX_POSITIONS: usize = 1 << 24;
/// An epsilon above this is no longer a guard against division by zero (and 1e300 is inf
/// in f32).
const MAX_EPS: f64 = 1.0;
/// The largest RoPE base and scaling factors accepted.
const MAX_ROPE: f64 = 1e12;

/// The architecture: `architectures[0]`, or for converters that write only `model_type`,
/// the architecture that model type names.
fn architecture(c: &ConfigJson) -> Result<Architecture> {
    let name = match c.first_string("architectures")? {
        Some(name) => name,
        None => match c.opt_str("model_type")? {
            Some("llama") => "LlamaForCausalLM",
            Some("mistral") => "MistralForCausalLM",
            Some("qwen2") => "Qwen2ForCausalLM",
            Some("qwen3") => "Qwen3ForCausalLM",
            Some("smollm3") => "SmolLM3ForCausalLM",
            Some("phi3") => "Phi3ForCausalLM",
            Some("gemma2") => "Gemma2ForCausalLM",
            Some("mixtral") => "MixtralForCausalLM",
            Some("qwen2_moe") => "Qwen2MoeForCausalLM",
            Some("qwen3_moe") => "Qwen3MoeForCausalLM",
            Some("olmoe") => "OlmoeForCausalLM",
            Some("gemma3_text") => "Gemma3ForCausalLM",
            Some(other) => {
                return Err(c.error(format!(
                    "no architectures, and model_type {other:?} is not one tessera runs \
                     (llama, mistral, qwen2, qwen3, smollm3, phi3, gemma2, gemma3_text, mixtral, \
                     qwen2_moe, qwen3_moe, olmoe)"
                )));
            }
            None => {
                return Err(
                    c.error("architectures and model_type are both missing: which model is this?")
                );
            }
        },
    };
    Architecture::from_name(name).ok_or_else(|| {
        c.error(format!(
            "unknown architecture {name:?}; tessera runs LlamaForCausalLM, \
             MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, SmolLM3ForCausalLM, \
             Phi3ForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM, MixtralForCausalLM, \
             Qwen2MoeForCausalLM, Qwen3MoeForCausalLM and OlmoeForCausalLM"
        ))
    })
}

/// `rope_theta` and the scaling, from `rope_parameters` (5.x) or the top level (4.x).
fn rope_config(c: &ConfigJson, head_dim: usize) -> Result<RopeConfig> {
    if !head_dim.is_multiple_of(2) {
        return Err(c.error(format!(
            "head_dim {head_dim} must be even for rotary embeddings"
        )));
    }
    let (theta, scaling) = match c.object("rope_parameters")? {
        Some(p) => (
            p.opt_f64("rope_theta")?.or(c.opt_f64("rope_theta")?),
            scaling(&p, c, head_dim)?,
        ),
        None => {
            let scaling = match c.object("rope_scaling")? {
                Some(s) => scaling(&s, c, head_dim)?,
                None => RopeScaling::None,
            };
            (c.opt_f64("rope_theta")?, scaling)
        }
    };
    // Rotating only part of each head (Phi-4-mini, StableLM) is not supported.
    let nested = c.object("rope_parameters")?;
    for source in nested.iter().chain(std::iter::once(c)) {
        if let Some(f) = source.opt_f64("partial_rotary_factor")?
            && f != 1.0
        {
            return Err(source.error(format!(
                "partial_rotary_factor {f} is not supported (only 1: RoPE over the whole head)"
            )));
        }
    }
    Ok(RopeConfig {
        theta: c.positive("rope_theta", theta.unwrap_or(10_000.0), MAX_ROPE)?,
        head_dim,
        scaling,
    })
}

/// The scaling `s` (`rope_parameters` / `rope_scaling`) names; `top` is the whole config
/// (longrope reads the context lengths there too).
fn scaling(s: &ConfigJson, top: &ConfigJson, head_dim: usize) -> Result<RopeScaling> {
    let kind = s
        .opt_str("rope_type")?
        .or(s.opt_str("type")?)
        .unwrap_or("default");
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear {
            factor: s.positive("factor", s.f64("factor")?, MAX_ROPE)?,
        }),
        "longrope" => longrope(s, top, head_dim),
        "llama3" => {
            let get = |key: &str| s.positive(key, s.f64(key)?, MAX_ROPE);
            let (low, high) = (get("low_freq_factor")?, get("high_freq_factor")?);
            if low >= high {
                return Err(s.error(format!(
                    "low_freq_factor {low} must be below high_freq_factor {high}"
                )));
            }
            Ok(RopeScaling::Llama3 {
                factor: get("factor")?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: get("original_max_position_embeddings")?,
            })
        }
        other => Err(s.error(format!(
            "rope_type {other:?} is not supported; tessera implements default, linear and llama3"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LlamaConfig> {
        LlamaConfig::from_json(&ConfigJson::parse("config.json", text)?)
    }

    const TINYLLAMA: &str = r#"{
        "architectures": ["LlamaForCausalLM"], "hidden_act": "silu", "hidden_size": 2048,
        "intermediate_size": 5632, "max_position_embeddings": 2048, "num_attention_heads": 32,
        "num_hidden_layers": 22, "num_key_value_heads": 4, "rms_norm_eps": 1e-05,
        "rope_scaling": null, "rope_theta": 10000.0, "tie_word_embeddings": false,
        "torch_dtype": "bfloat16", "vocab_size": 32000, "bos_token_id": 1, "eos_token_id": 2
    }"#;

    #[test]
    fn a_transformers_4_config_parses() {
        let c = parse(TINYLLAMA).unwrap();
        assert_eq!(c.architecture, Architecture::Llama);
        assert_eq!((c.num_heads, c.num_kv_heads, c.head_dim), (32, 4, 64));
        assert_eq!(c.rope.scaling, RopeScaling::None);
        assert_eq!(c.rope.theta, 10_000.0);
        assert_eq!(c.eos_token_ids, vec![2]);
        assert_eq!(c.stored_dtype.as_deref(), Some("bfloat16"));
        assert!(!c.qkv_bias && !c.tie_word_embeddings);
    }

    #[test]
    fn a_transformers_5_config_with_llama3_rope_parses() {
        let text = r#"{
            "architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "intermediate_size": 8192,
            "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
            "head_dim": 64, "vocab_size": 128256, "tie_word_embeddings": true, "dtype": "bfloat16",
            "eos_token_id": [128001, 128008, 128009],
            "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192}
        }"#;
        let c = parse(text).unwrap();
        assert_eq!(c.rope.theta, 500_000.0);
        assert!(matches!(
            c.rope.scaling,
            RopeScaling::Llama3 { factor: 32.0, .. }
        ));
        assert_eq!(c.eos_token_ids.len(), 3);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.stored_dtype.as_deref(), Some("bfloat16"));
    }

    #[test]
    fn qwen2_has_qkv_biases_and_linear_scaling_is_read() {
        let text = TINYLLAMA
            .replace("LlamaForCausalLM", "Qwen2ForCausalLM")
            .replace(
                "\"rope_scaling\": null",
                "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}",
            );
        let c = parse(&text).unwrap();
        assert!(c.qkv_bias && !c.o_bias);
        assert_eq!(c.rope.scaling, RopeScaling::Linear { factor: 2.0 });
    }

    #[test]
    fn unsupported_configurations_are_named() {
        let err = parse(&TINYLLAMA.replace("LlamaForCausalLM", "GPT2LMHeadModel")).unwrap_err();
        assert!(err.to_string().contains("GPT2LMHeadModel"), "{err}");
        let yarn = TINYLLAMA.replace(
            "\"rope_scaling\": null",
            "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}",
        );
        let err = parse(&yarn).unwrap_err();
        assert!(err.to_string().contains("yarn"), "{err}");
        let err = parse(&TINYLLAMA.replace("\"hidden_size\": 2048,", "")).unwrap_err();
        assert!(err.to_string().contains("hidden_size"), "{err}");
        let err =
            parse(&TINYLLAMA.replace("\"num_key_value_heads\": 4", "\"num_key_value_heads\": 5"))
                .unwrap_err();
        assert!(err.to_string().contains("num_key_value_heads"), "{err}");
        let err = parse(&TINYLLAMA.replace("\"silu\"", "\"gelu\"")).unwrap_err();
        assert!(err.to_string().contains("gelu"), "{err}");
        assert!(parse("[1, 2]").is_err());
        assert!(parse("{not json").is_err());
    }
}
