//! Loading the decoder from a GGUF file (llama.cpp's format): the configuration from the
//! metadata (Llama 3's rotary scaling from the `rope_freqs.weight` tensor) and the tensors
//! under their Hugging Face names; quantized ones are kept packed or widened by the loader.
//!
//! The metadata is turned into the `config.json` the Hugging Face loader reads, so it is
//! validated by the same code with the same ranges; an error then names the Hugging Face key,
//! and [`METADATA_KEYS`] says which GGUF key each one comes from.

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::gguf::{FromGguf, Gguf, GgufTensors, GgufValue};
use crate::io::{Checkpoint, ConfigJson};

use super::config::{Architecture, LlamaConfig};
use crate::kernels::rope::RopeScaling;

/// GGUF metadata key (after `{arch}.`) → `config.json` key, for the numbers.
pub const METADATA_KEYS: [(&str, &str); 8] = [
    ("embedding_length", "hidden_size"),
    ("feed_forward_length", "intermediate_size"),
    ("block_count", "num_hidden_layers"),
    ("attention.head_count", "num_attention_heads"),
    ("attention.head_count_kv", "num_key_value_heads"),
    ("attention.layer_norm_rms_epsilon", "rms_norm_eps"),
    ("rope.freq_base", "rope_theta"),
    ("context_length", "max_position_embeddings"),
];

fn error(g: &Gguf, detail: impl Into<String>) -> Error {
    Error::Config {
        path: g.path().display().to_string(),
        detail: detail.into(),
    }
}

/// The architecture GGUF's `general.architecture` names, and the `architectures` entry of
/// the equivalent `config.json`.
fn architecture(g: &Gguf) -> Result<(&str, &'static str)> {
    let arch = g
        .get("general.architecture")
        .and_then(GgufValue::as_str)
        .ok_or_else(|| error(g, "general.architecture is missing or not a string"))?;
    let hf = match arch {
        "llama" => "LlamaForCausalLM",
        "qwen2" => "Qwen2ForCausalLM",
        "qwen3" => "Qwen3ForCausalLM",
        "qwen3moe" => "Qwen3MoeForCausalLM",
        "gemma2" => "Gemma2ForCausalLM",
        "gemma3" => "Gemma3ForCausalLM",
        "phi3" => "Phi3ForCausalLM",
        other => {
            return Err(error(
                g,
                format!(
                    "general.architecture {other:?} is not supported from GGUF (llama, qwen2, \
                     qwen3, qwen3moe, gemma2, gemma3, phi3)"
                ),
            ));
        }
    };
    Ok((arch, hf))
}

/// The decoder configuration of `g`.
pub fn config(g: &Gguf) -> Result<LlamaConfig> {
    let (arch, hf) = architecture(g)?;
    let mut json = serde_json::Map::new();
    json.insert("architectures".into(), serde_json::json!([hf]));
    for (gguf_key, hf_key) in METADATA_KEYS {
        let key = format!("{arch}.{gguf_key}");
        if let Some(value) = g.get(&key) {
            let number = match value.as_u64() {
                Some(n) => serde_json::Value::from(n),
                None => value
                    .as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(serde_json::Value::Number)
                    .ok_or_else(|| error(g, format!("{key} should be a number, not {value:?}")))?,
            };
            json.insert(hf_key.into(), number);
        }
    }
    // head_dim: GGUF's key length where written (it may differ from hidden / heads).
    if let Some(d) = g
        .get(&format!("{arch}.attention.key_length"))
        .and_then(GgufValue::as_u64)
    {
        json.insert("head_dim".into(), d.into());
    }
    let vocab = g
        .get(&format!("{arch}.vocab_size"))
        .and_then(GgufValue::as_u64)
        .or_else(|| {
            g.tensor("token_embd.weight")
                .and_then(|t| t.dims.get(1).copied())
        })
        .ok_or_else(|| error(g, "no vocab_size and no token_embd.weight"))?;
    json.insert("vocab_size".into(), vocab.into());
    for (gguf_key, hf_key) in [
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
    ] {
        if let Some(id) = g.get(gguf_key).and_then(GgufValue::as_u64) {
            json.insert(hf_key.into(), id.into());
        }
    }
    json.insert(
        "tie_word_embeddings".into(),
        g.tensor("output.weight").is_none().into(),
    );
    // Mixture of experts (qwen3moe): llama.cpp renormalises the chosen experts' weights.
    for (gguf_key, hf_key) in [
        ("expert_count", "num_experts"),
        ("expert_used_count", "num_experts_per_tok"),
        ("expert_feed_forward_length", "moe_intermediate_size"),
    ] {
        if let Some(n) = g
            .get(&format!("{arch}.{gguf_key}"))
            .and_then(GgufValue::as_u64)
        {
            json.insert(hf_key.into(), n.into());
        }
    }
    if arch == "qwen3moe" {
        json.insert("norm_topk_prob".into(), true.into());
    }
    // Gemma: the window, the caps, and q·k scaled by the head size as llama.cpp does.
    for (gguf_key, hf_key) in [
        ("attention.sliding_window", "sliding_window"),
        ("attn_logit_softcapping", "attn_logit_softcapping"),
        ("final_logit_softcapping", "final_logit_softcapping"),
    ] {
        let Some(value) = g.get(&format!("{arch}.{gguf_key}")) else {
            continue;
        };
        let number = match value.as_u64() {
            Some(n) => serde_json::Value::from(n),
            None => value
                .as_f64()
                .and_then(serde_json::Number::from_f64)
                .map(serde_json::Value::Number)
                .ok_or_else(|| error(g, format!("{arch}.{gguf_key} should be a number")))?,
        };
        json.insert(hf_key.into(), number);
    }
    if arch.starts_with("gemma")
        && let Some(d) = json.get("head_dim").cloned()
    {
        json.insert("query_pre_attn_scalar".into(), d);
    }
    if let Some(kind) = g
        .get(&format!("{arch}.rope.scaling.type"))
        .and_then(GgufValue::as_str)
        && kind != "none"
    {
        let factor = g
            .get(&format!("{arch}.rope.scaling.factor"))
            .and_then(GgufValue::as_f64)
            .unwrap_or(1.0);
        json.insert(
            "rope_scaling".into(),
            serde_json::json!({ "rope_type": kind, "factor": factor }),
        );
    }
    let text = serde_json::Value::Object(json).to_string();
    let origin = format!("{} (GGUF metadata)", g.path().display());
    LlamaConfig::from_json(&ConfigJson::parse(&origin, &text)?)
}

/// The checkpoint tensors of `config`, each from its GGUF tensor.
pub fn tensors(config: &LlamaConfig) -> Vec<(String, FromGguf)> {
    let (hidden, inter) = (config.hidden_size, config.intermediate_size);
    let (q_rows, kv_rows) = (
        config.num_heads * config.head_dim,
        config.num_kv_heads * config.head_dim,
    );
    // llama.cpp's converter reorders q and k rows for llama-architecture files only.
    let permuted = config.architecture == Architecture::Llama;
    let entry = |hf: String, gguf: String, shape: Vec<usize>, heads: Option<usize>| {
        let from = FromGguf {
            source: gguf,
            shape,
            unpermute_heads: heads.filter(|_| permuted),
        };
        (hf, from)
    };
    let mut list = vec![
        entry(
            "model.embed_tokens.weight".into(),
            "token_embd.weight".into(),
            vec![config.vocab_size, hidden],
            None,
        ),
        entry(
            "model.norm.weight".into(),
            "output_norm.weight".into(),
            vec![hidden],
            None,
        ),
    ];
    if !config.tie_word_embeddings {
        list.push(entry(
            "lm_head.weight".into(),
            "output.weight".into(),
            vec![config.vocab_size, hidden],
            None,
        ));
    }
    for i in 0..config.num_layers {
        let hf = |s: &str| format!("model.layers.{i}.{s}");
        let gg = |s: &str| format!("blk.{i}.{s}");
        let layer = [
            (
                "input_layernorm.weight",
                "attn_norm.weight",
                vec![hidden],
                None,
            ),
            (
                "post_attention_layernorm.weight",
                "ffn_norm.weight",
                vec![hidden],
                None,
            ),
            (
                "self_attn.q_proj.weight",
                "attn_q.weight",
                vec![q_rows, hidden],
                Some(config.num_heads),
            ),
            (
                "self_attn.k_proj.weight",
                "attn_k.weight",
                vec![kv_rows, hidden],
                Some(config.num_kv_heads),
            ),
            (
                "self_attn.v_proj.weight",
                "attn_v.weight",
                vec![kv_rows, hidden],
                None,
            ),
            (
                "self_attn.o_proj.weight",
                "attn_output.weight",
                vec![hidden, q_rows],
                None,
            ),
            (
                "mlp.gate_proj.weight",
                "ffn_gate.weight",
                vec![inter, hidden],
                None,
            ),
            (
                "mlp.up_proj.weight",
                "ffn_up.weight",
                vec![inter, hidden],
                None,
            ),
            (
                "mlp.down_proj.weight",
                "ffn_down.weight",
                vec![hidden, inter],
                None,
            ),
        ];
        let sparse = config.moe.as_ref().is_some_and(|m| m.sparse_layers[i]);
        // Phi-3 keeps q, k, v in attn_qkv and gate, up in ffn_up: the fused tensors under
        // their Hugging Face names, which the decoder cuts into row slices.
        let phi3 = config.architecture == Architecture::Phi3;
        if phi3 {
            list.push(entry(
                hf("self_attn.qkv_proj.weight"),
                gg("attn_qkv.weight"),
                vec![q_rows + 2 * kv_rows, hidden],
                None,
            ));
            list.push(entry(
                hf("mlp.gate_up_proj.weight"),
                gg("ffn_up.weight"),
                vec![2 * inter, hidden],
                None,
            ));
        }
        for (hf_name, gguf_name, shape, heads) in layer {
            if sparse && hf_name.starts_with("mlp.") {
                continue;
            }
            let fused = matches!(
                hf_name,
                "self_attn.q_proj.weight"
                    | "self_attn.k_proj.weight"
                    | "self_attn.v_proj.weight"
                    | "mlp.gate_proj.weight"
                    | "mlp.up_proj.weight"
            );
            if phi3 && fused {
                continue;
            }
            // Gemma: post_attention_layernorm is the attention output's norm; ffn_norm the
            // MLP's input norm (pre_feedforward_layernorm); post_ffw_norm its output's.
            let gguf_name = match (config.sandwich_norms, hf_name) {
                (true, "post_attention_layernorm.weight") => "post_attention_norm.weight",
                _ => gguf_name,
            };
            list.push(entry(hf(hf_name), gg(gguf_name), shape, heads));
        }
        if config.sandwich_norms {
            for (hf_name, gguf_name) in [
                ("pre_feedforward_layernorm.weight", "ffn_norm.weight"),
                ("post_feedforward_layernorm.weight", "post_ffw_norm.weight"),
            ] {
                list.push(entry(hf(hf_name), gg(gguf_name), vec![hidden], None));
            }
        }
        if let (true, Some(m)) = (sparse, &config.moe) {
            // The router, and each projection of every expert as one 3-D tensor, which
            // `expert_slices` cuts into the experts' checkpoint names.
            let (e, ei) = (m.experts, m.expert_intermediate);
            list.push(entry(
                hf("mlp.gate.weight"),
                gg("ffn_gate_inp.weight"),
                vec![e, hidden],
                None,
            ));
            for (stack, gguf_name, shape) in [
                ("gate", "ffn_gate_exps.weight", vec![e, ei, hidden]),
                ("up", "ffn_up_exps.weight", vec![e, ei, hidden]),
                ("down", "ffn_down_exps.weight", vec![e, hidden, ei]),
            ] {
                list.push(entry(expert_stack(i, stack), gg(gguf_name), shape, None));
            }
        }
        if config.qkv_bias {
            for (hf_name, gguf_name, rows, heads) in [
                (
                    "self_attn.q_proj.bias",
                    "attn_q.bias",
                    q_rows,
                    Some(config.num_heads),
                ),
                (
                    "self_attn.k_proj.bias",
                    "attn_k.bias",
                    kv_rows,
                    Some(config.num_kv_heads),
                ),
                ("self_attn.v_proj.bias", "attn_v.bias", kv_rows, None),
            ] {
                list.push(entry(hf(hf_name), gg(gguf_name), vec![rows], heads));
            }
        }
        if config.qk_norm {
            for (hf_name, gguf_name) in [
                ("self_attn.q_norm.weight", "attn_q_norm.weight"),
                ("self_attn.k_norm.weight", "attn_k_norm.weight"),
            ] {
                list.push(entry(
                    hf(hf_name),
                    gg(gguf_name),
                    vec![config.head_dim],
                    None,
                ));
            }
        }
        if config.o_bias {
            list.push(entry(
                hf("self_attn.o_proj.bias"),
                gg("attn_output.bias"),
                vec![hidden],
                None,
            ));
        }
    }
    list
}

/// llama.cpp's `rope_freqs.weight`, if the file has it: the divisor of each rotary frequency
/// (how its converter stores Llama 3's scaling), `head_dim / 2` finite positive values.
fn rope_factors(g: &Gguf, config: &LlamaConfig) -> Result<Option<Vec<f64>>> {
    let Some(t) = g.tensor("rope_freqs.weight") else {
        return Ok(None);
    };
    let half = config.head_dim / 2;
    if t.dims != [half as u64] {
        return Err(error(
            g,
            format!(
                "rope_freqs.weight is {:?}; head_dim {} needs [{half}]",
                t.dims, config.head_dim
            ),
        ));
    }
    if config.rope.scaling != RopeScaling::None {
        return Err(error(
            g,
            format!(
                "rope_freqs.weight together with {:?} scaling is not supported",
                config.rope.scaling
            ),
        ));
    }
    let values = crate::kernels::quant::dequantize(t.ggml_type, g.data(t), half)
        .map_err(|e| error(g, format!("rope_freqs.weight: {e}")))?;
    if let Some(bad) = values.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
        return Err(error(
            g,
            format!("rope_freqs.weight holds {bad}; factors must be finite and positive"),
        ));
    }
    Ok(Some(values))
}

/// The checkpoint name given to layer `i`'s stacked `which` (gate, up, down) expert tensor.
fn expert_stack(i: usize, which: &str) -> String {
    format!("model.layers.{i}.mlp.experts.{which}_stack")
}

/// Each expert's projections as row slices of the stacked tensors (for
/// [`Checkpoint::with_row_slices`]).
fn expert_slices(config: &LlamaConfig) -> Vec<(String, String, usize, usize)> {
    let Some(m) = &config.moe else {
        return Vec::new();
    };
    let mut list = Vec::new();
    for i in (0..config.num_layers).filter(|&i| m.sparse_layers[i]) {
        let (_, experts, _) = super::weights::moe_names(config, i);
        for (e, names) in experts.into_iter().enumerate() {
            let [gate, up, down] = names;
            let ei = m.expert_intermediate;
            let hidden = config.hidden_size;
            list.push((gate, expert_stack(i, "gate"), e * ei, ei));
            list.push((up, expert_stack(i, "up"), e * ei, ei));
            list.push((down, expert_stack(i, "down"), e * hidden, hidden));
        }
    }
    list
}

/// The configuration and a checkpoint over the tensors of the GGUF file at `path`.
pub fn open(path: &Path) -> Result<(LlamaConfig, Checkpoint)> {
    let g = Gguf::open(path)?;
    let mut config = config(&g)?;
    // Phi-3's longrope stored as factor tensors (the 128k-context files) is not read yet:
    // refused rather than run without its scaling.
    for name in ["rope_factors_long.weight", "rope_factors_short.weight"] {
        if g.tensor(name).is_some() {
            return Err(error(
                &g,
                format!("{name} (longrope stored as tensors) is not supported yet"),
            ));
        }
    }
    // llama.cpp's converter stores Gemma's norm weights as 1 + w already.
    if config.sandwich_norms {
        config.norm_offset = 0.0;
    }
    if let Some(factors) = rope_factors(&g, &config)? {
        config.rope.scaling = RopeScaling::Factors(factors);
    }
    let tensors = GgufTensors::new(g, tensors(&config))?;
    let slices = expert_slices(&config);
    Ok((
        config,
        Checkpoint::from_gguf(tensors).with_row_slices(slices),
    ))
}
