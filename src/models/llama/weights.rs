//! The decoder's weights: every tensor checked against the configuration (name, shape, type)
//! before anything is uploaded, then converted to the dtype the model runs in. Matrices
//! larger than one storage binding (a 128k-token vocabulary) are split by rows.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::Checkpoint;
use crate::kernels::packed::PackedWeight;
use crate::kernels::quant;
use crate::tensor::{DType, Tensor};

use super::LlamaConfig;

/// A `[rows, width]` matrix stored as consecutive row blocks, each within one binding.
/// Only the embedding and the output projection are split (a large vocabulary makes them
/// the largest tensors); every other weight must fit one binding. Parts are dense, or packed
/// blocks where the checkpoint stores the matrix so (read by the packed gather and GEMV).
pub struct RowSplit {
    /// `(first row, [rows, width] weight)` for each part.
    pub parts: Vec<(usize, Proj)>,
}

impl RowSplit {
    /// Uploads `name` (`[rows, width]`), in as few parts as the binding limit allows: packed
    /// where the checkpoint stores it in a block type the packed kernels read and `packed`
    /// allows, else in `dtype`. A part starts at a row whose offset in a `[.., rows]` output
    /// (the logits, in `dtype`) meets the device's binding alignment, so outputs can be split
    /// the same way.
    fn load(
        gpu: &Gpu,
        ckpt: &Checkpoint,
        name: &str,
        [rows, width]: [usize; 2],
        dtype: DType,
        packed: bool,
    ) -> Result<RowSplit> {
        let blocks = if packed {
            ckpt.read_packed(name, &[rows, width])?
        } else {
            None
        };
        let values = match blocks {
            Some(_) => Vec::new(),
            None => ckpt.read_f32(name, &[rows, width])?,
        };
        let limits = gpu.limits();
        let limit = limits.max_storage_buffer_binding_size as usize;
        let align = limits.min_storage_buffer_offset_alignment as usize;
        let granule = (align / dtype.size()).max(1);
        // The largest binding a row needs: its quant words when packed, else its values.
        let (row_bytes, row_block_bytes) = match &blocks {
            Some((t, bytes)) => {
                let f = quant::packed_format(*t)?;
                (
                    width / f.block * f.quant_words * 4,
                    bytes.len() / rows.max(1),
                )
            }
            None => (width * dtype.size(), 0),
        };
        let per_part = (limit / row_bytes.max(1)) / granule * granule;
        if per_part == 0 {
            return Err(Error::TooLarge {
                what: format!("{granule} rows of {name}"),
                bytes: (granule * row_bytes) as u64,
                limit_name: "max_storage_buffer_binding_size",
                limit: limit as u64,
            });
        }
        let mut parts = Vec::new();
        for first in (0..rows).step_by(per_part) {
            let count = per_part.min(rows - first);
            let part = match &blocks {
                Some((t, bytes)) => {
                    let slice = &bytes[first * row_block_bytes..(first + count) * row_block_bytes];
                    let relaid = quant::relay(*t, slice, count, width)?;
                    Proj::Packed(PackedWeight::upload(gpu, *t, &relaid)?)
                }
                None => {
                    let slice = &values[first * width..(first + count) * width];
                    Proj::Dense(Tensor::from_f32(gpu, &[count, width], slice, dtype)?)
                }
            };
            parts.push((first, part));
        }
        Ok(RowSplit { parts })
    }
}

/// A projection's weight: a plain `[out, in]` tensor in the model's dtype, or quantized
/// blocks kept packed (from a GGUF file, read by the packed GEMV).
pub enum Proj {
    Dense(Tensor),
    Packed(PackedWeight),
}

impl Proj {
    /// Loads `name` (`[rows, cols]`): packed where the checkpoint stores it in a block type
    /// the packed kernels read and `packed` allows, else widened to `dtype`.
    fn load(
        gpu: &Gpu,
        ckpt: &Checkpoint,
        name: &str,
        shape: [usize; 2],
        dtype: DType,
        packed: bool,
    ) -> Result<Proj> {
        if packed && let Some((t, bytes)) = ckpt.read_packed(name, &shape)? {
            let relaid = quant::relay(t, &bytes, shape[0], shape[1])?;
            return Ok(Proj::Packed(PackedWeight::upload(gpu, t, &relaid)?));
        }
        Ok(Proj::Dense(ckpt.upload(gpu, name, &shape, dtype)?))
    }

    pub fn is_packed(&self) -> bool {
        matches!(self, Proj::Packed(_))
    }

    /// The weight's rows (its output features).
    pub fn rows(&self) -> usize {
        match self {
            Proj::Dense(t) => t.shape()[0],
            Proj::Packed(w) => w.rows,
        }
    }
}

/// One decoder layer.
pub struct Layer {
    pub input_norm: Tensor,
    /// RMSNorm weights over each head of q and k (`[head_dim]`, Qwen3).
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
    /// Gemma's norms on the attention's output and the MLP's output.
    pub attn_out_norm: Option<Tensor>,
    pub mlp_out_norm: Option<Tensor>,
    /// Whether the layer applies RoPE (SmolLM3 skips it on some).
    pub rope: bool,
    /// Whether it is a sliding-window layer (Gemma 3's local RoPE).
    pub sliding: bool,
    /// The attention window of the layer, if it has one.
    pub window: Option<usize>,
    pub q: Proj,
    pub k: Proj,
    pub v: Proj,
    pub o: Proj,
    pub q_bias: Option<Tensor>,
    pub k_bias: Option<Tensor>,
    pub v_bias: Option<Tensor>,
    pub o_bias: Option<Tensor>,
    pub post_norm: Tensor,
    pub mlp: Mlp,
    /// q, k and v stacked into one `[q + k + v, hidden]` weight (and bias) that `q`, `k`
    /// and `v` are row views of, so decode projects all three with one GEMV. `None` where
    /// the views would break the device's binding alignment or the stack one binding.
    pub qkv: Option<Stacked>,
}

/// A layer's feed-forward block. (One per layer: the variants' sizes do not matter.)
#[allow(clippy::large_enum_variant)]
pub enum Mlp {
    Dense(DenseMlp),
    Experts(MoeWeights),
}

/// A gated MLP: down(act(gate · h) · (up · h)).
pub struct DenseMlp {
    pub gate: Proj,
    pub up: Proj,
    pub down: Proj,
    pub gate_bias: Option<Tensor>,
    pub up_bias: Option<Tensor>,
    pub down_bias: Option<Tensor>,
}

/// A mixture-of-experts MLP: the router and every expert's projections stacked by expert
/// (expert e's rows at e · rows; dense, or packed blocks from a GGUF file's stacked expert
/// tensors), and Qwen2-MoE's gated shared expert.
pub struct MoeWeights {
    /// `[experts, hidden]`
    pub router: Tensor,
    /// `[experts · intermediate, hidden]`
    pub gate: Proj,
    pub up: Proj,
    /// `[experts · hidden, intermediate]`
    pub down: Proj,
    pub shared: Option<SharedExpert>,
}

/// Qwen2-MoE's shared expert: a SwiGLU MLP whose output is scaled by sigmoid(gate · h).
pub struct SharedExpert {
    pub mlp: DenseMlp,
    /// `[1, hidden]`
    pub gate_logit: Tensor,
}

/// The checkpoint names of layer `i`'s router, each expert's (gate, up, down) and the
/// shared expert's (gate, up, down, gate logit) where it has one.
pub fn moe_names(c: &LlamaConfig, i: usize) -> (String, Vec<[String; 3]>, Option<[String; 4]>) {
    let n = |s: &str| format!("model.layers.{i}.{s}");
    let experts = c.moe.as_ref().map_or(0, |m| m.experts);
    if c.architecture == super::config::Architecture::Mixtral {
        let e = |x: usize, w: &str| n(&format!("block_sparse_moe.experts.{x}.{w}.weight"));
        return (
            n("block_sparse_moe.gate.weight"),
            (0..experts)
                .map(|x| [e(x, "w1"), e(x, "w3"), e(x, "w2")])
                .collect(),
            None,
        );
    }
    let e = |x: usize, w: &str| n(&format!("mlp.experts.{x}.{w}_proj.weight"));
    let shared = c.moe.as_ref().and_then(|m| m.shared_intermediate).map(|_| {
        [
            n("mlp.shared_expert.gate_proj.weight"),
            n("mlp.shared_expert.up_proj.weight"),
            n("mlp.shared_expert.down_proj.weight"),
            n("mlp.shared_expert_gate.weight"),
        ]
    });
    (
        n("mlp.gate.weight"),
        (0..experts)
            .map(|x| [e(x, "gate"), e(x, "up"), e(x, "down")])
            .collect(),
        shared,
    )
}

/// Layer `i`'s router and experts (stacked by expert on the host, one upload each), and the
/// shared expert.
#[allow(clippy::too_many_arguments)]
fn load_experts(
    gpu: &Gpu,
    ckpt: &Checkpoint,
    c: &LlamaConfig,
    i: usize,
    dtype: DType,
    packed: bool,
    proj: &dyn Fn(&str, [usize; 2]) -> Result<Proj>,
) -> Result<MoeWeights> {
    let m = c.moe.as_ref().expect("sparse layers have a config");
    let (hidden, ei) = (c.hidden_size, m.expert_intermediate);
    let (router, experts, shared) = moe_names(c, i);
    // A GGUF file's stacked expert tensor stays packed where its type allows; otherwise the
    // experts are read one by one and stacked here.
    let stack = |which: usize, shape: [usize; 2]| -> Result<Proj> {
        let stacked = format!(
            "model.layers.{i}.mlp.experts.{}_stack",
            ["gate", "up", "down"][which]
        );
        let rows = m.experts * shape[0];
        let stacked_shape = [m.experts, shape[0], shape[1]];
        let has_stack = ckpt.shape(&stacked).is_some();
        if packed
            && has_stack
            && let Some((t, bytes)) = ckpt.read_packed(&stacked, &stacked_shape)?
        {
            let relaid = quant::relay(t, &bytes, rows, shape[1])?;
            return Ok(Proj::Packed(PackedWeight::upload(gpu, t, &relaid)?));
        }
        // The stack must fit one binding: checked before its values are read.
        let bytes = (rows * shape[1] * dtype.size()) as u64;
        let limit = gpu.limits().max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(Error::TooLarge {
                what: format!("the {} experts' stacked {stacked}", m.experts),
                bytes,
                limit_name: "max_storage_buffer_binding_size",
                limit,
            });
        }
        // A file's stack is read once (not once per expert slice of it).
        let values = if has_stack {
            ckpt.read_f32(&stacked, &stacked_shape)?
        } else {
            let mut values = Vec::with_capacity(rows * shape[1]);
            for names in &experts {
                values.extend(ckpt.read_f32(&names[which], &shape)?);
            }
            values
        };
        Ok(Proj::Dense(Tensor::from_f32(
            gpu,
            &[rows, shape[1]],
            &values,
            dtype,
        )?))
    };
    let shared = match (shared, m.shared_intermediate) {
        (Some([g, u, d, gl]), Some(si)) => Some(SharedExpert {
            mlp: DenseMlp {
                gate: proj(&g, [si, hidden])?,
                up: proj(&u, [si, hidden])?,
                down: proj(&d, [hidden, si])?,
                gate_bias: None,
                up_bias: None,
                down_bias: None,
            },
            gate_logit: ckpt.upload(gpu, &gl, &[1, hidden], dtype)?,
        }),
        _ => None,
    };
    Ok(MoeWeights {
        router: ckpt.upload(gpu, &router, &[m.experts, hidden], dtype)?,
        gate: stack(0, [ei, hidden])?,
        up: stack(1, [ei, hidden])?,
        down: stack(2, [hidden, ei])?,
        shared,
    })
}

/// The lengths of the q and k norm weights: a head's, or (OLMoE) all of q's and k's.
pub fn qk_norm_sizes(c: &LlamaConfig) -> (usize, usize) {
    if c.qk_norm_full {
        (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim)
    } else {
        (c.head_dim, c.head_dim)
    }
}

/// Whether layer `i`'s MLP is a mixture of experts.
fn is_sparse(c: &LlamaConfig, i: usize) -> bool {
    c.moe.as_ref().is_some_and(|m| m.sparse_layers[i])
}

/// Weights stacked along their rows.
pub struct Stacked {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

/// Uploads the `[rows, width]` tensors `parts` as one stacked tensor and returns it with a row
/// view per part, or `None` (nothing uploaded) where a view would start at a misaligned byte
/// or the stack would exceed one storage binding.
fn stack_rows<const N: usize>(
    gpu: &Gpu,
    ckpt: &Checkpoint,
    parts: &[(String, usize); N],
    width: usize,
    dtype: DType,
) -> Result<Option<(Tensor, [Tensor; N])>> {
    let rows: usize = parts.iter().map(|(_, r)| r).sum();
    let limits = gpu.limits();
    let align = limits.min_storage_buffer_offset_alignment as usize;
    let bytes = rows * width * dtype.size();
    let mut first = 0;
    for (_, r) in parts {
        if !(first * width * dtype.size()).is_multiple_of(align) {
            return Ok(None);
        }
        first += r;
    }
    if bytes as u64 > limits.max_storage_buffer_binding_size {
        return Ok(None);
    }
    let mut values = Vec::with_capacity(rows * width);
    for (name, r) in parts {
        let shape: &[usize] = if width == 1 { &[*r] } else { &[*r, width] };
        values.extend(ckpt.read_f32(name, shape)?);
    }
    let shape = if width == 1 {
        vec![rows]
    } else {
        vec![rows, width]
    };
    let stacked = Tensor::from_f32(gpu, &shape, &values, dtype)?;
    let mut views = Vec::with_capacity(N);
    let mut first = 0;
    for (_, r) in parts {
        let view_shape = if width == 1 {
            vec![*r]
        } else {
            vec![*r, width]
        };
        views.push(stacked.view(first * width, &view_shape)?);
        first += r;
    }
    let views: [Tensor; N] = views.try_into().unwrap_or_else(|_| unreachable!("N parts"));
    Ok(Some((stacked, views)))
}

pub struct LlamaWeights {
    pub embed: RowSplit,
    pub layers: Vec<Layer>,
    pub norm: Tensor,
    /// `None` when the embedding is tied (the embedding serves as the output projection).
    pub lm_head: Option<RowSplit>,
}

/// The projections a checkpoint stores fused, as `(name, fused tensor, first row, rows)`
/// for [`Checkpoint::with_row_slices`]: Phi-3's `qkv_proj` (q, k, v) and `gate_up_proj`
/// (gate, up). Empty for the other architectures.
pub fn fused_slices(c: &LlamaConfig) -> Vec<(String, String, usize, usize)> {
    if c.architecture != super::config::Architecture::Phi3 {
        return Vec::new();
    }
    let (q, kv, inter) = (
        c.num_heads * c.head_dim,
        c.num_kv_heads * c.head_dim,
        c.intermediate_size,
    );
    let mut list = Vec::new();
    for i in 0..c.num_layers {
        let n = |s: &str| format!("model.layers.{i}.{s}");
        let qkv = n("self_attn.qkv_proj.weight");
        let gate_up = n("mlp.gate_up_proj.weight");
        for (name, source, first, rows) in [
            ("self_attn.q_proj.weight", &qkv, 0, q),
            ("self_attn.k_proj.weight", &qkv, q, kv),
            ("self_attn.v_proj.weight", &qkv, q + kv, kv),
            ("mlp.gate_proj.weight", &gate_up, 0, inter),
            ("mlp.up_proj.weight", &gate_up, inter, inter),
        ] {
            list.push((n(name), source.clone(), first, rows));
        }
    }
    list
}

/// The name and shape of every tensor the configuration calls for.
pub fn expected_tensors(c: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let (hidden, inter, kv) = (
        c.hidden_size,
        c.intermediate_size,
        c.num_kv_heads * c.head_dim,
    );
    let q = c.num_heads * c.head_dim;
    let mut list = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![c.vocab_size, hidden],
    )];
    for i in 0..c.num_layers {
        let p = format!("model.layers.{i}");
        let mut add = |suffix: &str, shape: Vec<usize>| list.push((format!("{p}.{suffix}"), shape));
        add("input_layernorm.weight", vec![hidden]);
        add("self_attn.q_proj.weight", vec![q, hidden]);
        add("self_attn.k_proj.weight", vec![kv, hidden]);
        add("self_attn.v_proj.weight", vec![kv, hidden]);
        add("self_attn.o_proj.weight", vec![hidden, q]);
        if c.qk_norm {
            let (qn, kn) = qk_norm_sizes(c);
            add("self_attn.q_norm.weight", vec![qn]);
            add("self_attn.k_norm.weight", vec![kn]);
        }
        if c.qkv_bias {
            add("self_attn.q_proj.bias", vec![q]);
            add("self_attn.k_proj.bias", vec![kv]);
            add("self_attn.v_proj.bias", vec![kv]);
        }
        if c.o_bias {
            add("self_attn.o_proj.bias", vec![hidden]);
        }
        add("post_attention_layernorm.weight", vec![hidden]);
        if c.sandwich_norms {
            add("pre_feedforward_layernorm.weight", vec![hidden]);
            add("post_feedforward_layernorm.weight", vec![hidden]);
        }
        if is_sparse(c, i) {
            let m = c.moe.as_ref().expect("sparse layers have a config");
            let (router, experts, shared) = moe_names(c, i);
            let ei = m.expert_intermediate;
            list.push((router, vec![m.experts, hidden]));
            for [g, u, d] in experts {
                list.extend([
                    (g, vec![ei, hidden]),
                    (u, vec![ei, hidden]),
                    (d, vec![hidden, ei]),
                ]);
            }
            if let (Some([g, u, d, gl]), Some(si)) = (shared, m.shared_intermediate) {
                list.extend([
                    (g, vec![si, hidden]),
                    (u, vec![si, hidden]),
                    (d, vec![hidden, si]),
                    (gl, vec![1, hidden]),
                ]);
            }
            continue;
        }
        let mut add = |suffix: &str, shape: Vec<usize>| list.push((format!("{p}.{suffix}"), shape));
        add("mlp.gate_proj.weight", vec![inter, hidden]);
        add("mlp.up_proj.weight", vec![inter, hidden]);
        add("mlp.down_proj.weight", vec![hidden, inter]);
        if c.mlp_bias {
            add("mlp.gate_proj.bias", vec![inter]);
            add("mlp.up_proj.bias", vec![inter]);
            add("mlp.down_proj.bias", vec![hidden]);
        }
    }
    list.push(("model.norm.weight".to_string(), vec![hidden]));
    if !c.tie_word_embeddings {
        list.push(("lm_head.weight".to_string(), vec![c.vocab_size, hidden]));
    }
    list
}

impl Layer {
    /// Whether any projection is packed (the packed GEMV fuses no norm).
    pub fn has_packed(&self) -> bool {
        let mlp = match &self.mlp {
            Mlp::Dense(m) => vec![&m.gate, &m.up, &m.down],
            Mlp::Experts(_) => Vec::new(),
        };
        [&self.q, &self.k, &self.v, &self.o]
            .into_iter()
            .chain(mlp)
            .any(Proj::is_packed)
    }
}

impl LlamaWeights {
    /// Checks every expected tensor, then uploads them in `dtype` (projections stored in a
    /// packed block type stay packed when `packed`).
    pub fn load(
        gpu: &Gpu,
        ckpt: &Checkpoint,
        c: &LlamaConfig,
        dtype: DType,
        packed: bool,
    ) -> Result<LlamaWeights> {
        for (name, shape) in expected_tensors(c) {
            if !ckpt.contains(&name) {
                let hint = if name == "lm_head.weight" {
                    " (the config says tie_word_embeddings is false)".to_string()
                } else {
                    String::new()
                };
                return Err(Error::MissingTensor {
                    path: ckpt.origin().to_string(),
                    name,
                    hint,
                });
            }
            ckpt.expect(&name, &shape)?;
        }
        let up = |name: &str, shape: &[usize]| ckpt.upload(gpu, name, shape, dtype);
        let opt = |present: bool, name: &str, shape: &[usize]| -> Result<Option<Tensor>> {
            present.then(|| up(name, shape)).transpose()
        };
        // RMSNorm weights, with Gemma's 1 added (it scales by 1 + w).
        let norm = |name: &str, len: usize| -> Result<Tensor> {
            let mut w = ckpt.read_f32(name, &[len])?;
            if c.norm_offset != 0.0 {
                w.iter_mut().for_each(|v| *v += c.norm_offset);
            }
            Tensor::from_f32(gpu, &[len], &w, dtype)
        };
        let opt_norm = |present: bool, name: &str, len: usize| -> Result<Option<Tensor>> {
            present.then(|| norm(name, len)).transpose()
        };
        let (hidden, inter) = (c.hidden_size, c.intermediate_size);
        let (q, kv) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
        let proj =
            |name: &str, shape: [usize; 2]| Proj::load(gpu, ckpt, name, shape, dtype, packed);
        let mut layers = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let n = |suffix: &str| format!("model.layers.{i}.{suffix}");
            let projections = |kind: &str| {
                [("q", q), ("k", kv), ("v", kv)]
                    .map(|(p, rows)| (n(&format!("self_attn.{p}_proj.{kind}")), rows))
            };
            // Packed q/k/v are projected one by one (no stacked dense copy).
            let packed_qkv = packed
                && ckpt
                    .packed_type(&n("self_attn.q_proj.weight"), &[q, hidden])
                    .is_some();
            let stacked = if packed_qkv {
                None
            } else {
                stack_rows(gpu, ckpt, &projections("weight"), hidden, dtype)?
            };
            let stacked_bias = match (&stacked, c.qkv_bias) {
                (Some(_), true) => stack_rows(gpu, ckpt, &projections("bias"), 1, dtype)?,
                _ => None,
            };
            let (qkv, [wq, wk, wv], [bq, bk, bv]) = match (stacked, stacked_bias) {
                (Some((weight, [wq, wk, wv])), Some((bias, [bq, bk, bv]))) => (
                    Some(Stacked {
                        weight,
                        bias: Some(bias),
                    }),
                    [Proj::Dense(wq), Proj::Dense(wk), Proj::Dense(wv)],
                    [Some(bq), Some(bk), Some(bv)],
                ),
                (Some((weight, [wq, wk, wv])), None) if !c.qkv_bias => (
                    Some(Stacked { weight, bias: None }),
                    [Proj::Dense(wq), Proj::Dense(wk), Proj::Dense(wv)],
                    [None, None, None],
                ),
                _ => (
                    None,
                    [
                        proj(&n("self_attn.q_proj.weight"), [q, hidden])?,
                        proj(&n("self_attn.k_proj.weight"), [kv, hidden])?,
                        proj(&n("self_attn.v_proj.weight"), [kv, hidden])?,
                    ],
                    [
                        opt(c.qkv_bias, &n("self_attn.q_proj.bias"), &[q])?,
                        opt(c.qkv_bias, &n("self_attn.k_proj.bias"), &[kv])?,
                        opt(c.qkv_bias, &n("self_attn.v_proj.bias"), &[kv])?,
                    ],
                ),
            };
            let mlp = if is_sparse(c, i) {
                Mlp::Experts(load_experts(gpu, ckpt, c, i, dtype, packed, &proj)?)
            } else {
                Mlp::Dense(DenseMlp {
                    gate: proj(&n("mlp.gate_proj.weight"), [inter, hidden])?,
                    up: proj(&n("mlp.up_proj.weight"), [inter, hidden])?,
                    down: proj(&n("mlp.down_proj.weight"), [hidden, inter])?,
                    gate_bias: opt(c.mlp_bias, &n("mlp.gate_proj.bias"), &[inter])?,
                    up_bias: opt(c.mlp_bias, &n("mlp.up_proj.bias"), &[inter])?,
                    down_bias: opt(c.mlp_bias, &n("mlp.down_proj.bias"), &[hidden])?,
                })
            };
            // Gemma: post_attention_layernorm normalises the attention's output, and the MLP
            // has its own pre- and post-norms.
            let sandwich = c.sandwich_norms;
            let pre_mlp_norm = if sandwich {
                n("pre_feedforward_layernorm.weight")
            } else {
                n("post_attention_layernorm.weight")
            };
            layers.push(Layer {
                input_norm: norm(&n("input_layernorm.weight"), hidden)?,
                q_norm: opt_norm(c.qk_norm, &n("self_attn.q_norm.weight"), qk_norm_sizes(c).0)?,
                k_norm: opt_norm(c.qk_norm, &n("self_attn.k_norm.weight"), qk_norm_sizes(c).1)?,
                attn_out_norm: opt_norm(sandwich, &n("post_attention_layernorm.weight"), hidden)?,
                mlp_out_norm: opt_norm(sandwich, &n("post_feedforward_layernorm.weight"), hidden)?,
                rope: c.rope_layers[i],
                sliding: c.sliding_layers[i],
                window: c.layer_windows[i],
                q: wq,
                k: wk,
                v: wv,
                o: proj(&n("self_attn.o_proj.weight"), [hidden, q])?,
                q_bias: bq,
                k_bias: bk,
                v_bias: bv,
                o_bias: opt(c.o_bias, &n("self_attn.o_proj.bias"), &[hidden])?,
                post_norm: norm(&pre_mlp_norm, hidden)?,
                mlp,
                qkv,
            });
        }
        let split =
            |name: &str| RowSplit::load(gpu, ckpt, name, [c.vocab_size, hidden], dtype, packed);
        let embed = split("model.embed_tokens.weight")?;
        let lm_head = if c.tie_word_embeddings {
            None
        } else {
            Some(split("lm_head.weight")?)
        };
        Ok(LlamaWeights {
            embed,
            layers,
            norm: norm("model.norm.weight", hidden)?,
            lm_head,
        })
    }

    /// The output projection: `lm_head`, or the embedding when tied.
    pub fn output(&self) -> &RowSplit {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }
}
