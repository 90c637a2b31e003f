//! The decoder's forward pass as a graph of kernel calls, and the model state (KV caches,
//! position) that generation advances.
//!
//! Per layer, on `seq` tokens at positions `p .. p + seq`:
//! `h = rms_norm(x)`, `q, k, v = h·Wqᵀ, h·Wkᵀ, h·Wvᵀ (+ biases)`, RoPE on q and k, k and v
//! appended to the layer's cache, `a = attention(q, cache)` (flash for a prompt, split-KV for
//! one token), `x += a·Woᵀ`, then `x += down(silu(gate(h2)) · up(h2))` with
//! `h2 = rms_norm(x)`. The last position goes through the final norm and the output
//! projection. A prompt is one plan run over all its positions; decoding re-runs one plan,
//! compiled at load, with the position in the step buffer.

use std::path::Path;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::layers::Then;
use crate::graph::{Graph, Id, Plan, layers};
use crate::io::gguf::is_gguf;
use crate::io::{Checkpoint, ConfigJson};
use crate::kernels::kv_cache::{KvCache, write_rows};
use crate::kernels::matmul::{self, BLayout, Epilogue};
use crate::kernels::packed::{self, PackedView};
use crate::kernels::quantize::QuantRecipe;
use crate::kernels::{Position, attention, gather, moe, norm, paged_kv, rope};
use crate::tensor::{DType, Tensor};

use super::LlamaConfig;
use super::config::Activation;
use super::weights::{DenseMlp, Layer, LlamaWeights, Mlp, MoeWeights, Proj, RowSplit, Stacked};
use crate::kernels::elementwise::{self, Binary, Unary};

/// The context used when neither the caller nor a smaller model limit says otherwise: KV caches
/// for a 128k-position model would not fit most devices.
pub const DEFAULT_MAX_CONTEXT: usize = 4096;

/// How to load a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Element type of weights, activations and caches (f32 accumulation either way).
    pub dtype: DType,
    /// Positions the KV cache holds; default: the model's `max_position_embeddings`, at most
    /// [`DEFAULT_MAX_CONTEXT`], and no more than one cache binding can hold.
    pub max_context: Option<usize>,
    /// Whether decode fuses each RMSNorm into the projections after it (one GEMV instead of
    /// a norm dispatch and a GEMV). Default: on GPUs, where a dispatch costs microseconds
    /// and the repeated norm reads a cached row; not on CPU adapters, where every workgroup
    /// repeating the reduction costs more than the dispatch it saves.
    pub fused_norms: Option<bool>,
    /// Whether projections a checkpoint stores in a block-quantized type the packed kernels
    /// read (`GgmlType::PACKED`, in a GGUF file or from `quantize`) stay packed on the GPU
    /// (default), or are widened to `dtype` at load.
    pub packed_weights: bool,
    /// Quantize a safetensors checkpoint's weights at load by this recipe (see
    /// [`Checkpoint::quantized`]); a GGUF file is refused with it.
    pub quantize: Option<QuantRecipe>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            dtype: DType::F32,
            max_context: None,
            fused_norms: None,
            packed_weights: true,
            quantize: None,
        }
    }
}

/// A loaded decoder. Its single-sequence state (contiguous KV caches, the decode plan) is
/// made on the first [`Llama::forward`]; batches of sequences use a
/// [`super::batch::PagedCache`] instead.
pub struct Llama {
    pub(super) gpu: Gpu,
    config: LlamaConfig,
    pub(super) dtype: DType,
    capacity: usize,
    weights: LlamaWeights,
    /// Cos/sin rows for every position the model may see.
    pub(super) rope: Tensor,
    /// The sliding-window layers' RoPE table where it differs (Gemma 3).
    rope_local: Option<Tensor>,
    single: Option<Single>,
    position: usize,
    fused_norms: bool,
}

/// One sequence's state: a contiguous KV cache per layer, the logits of the last position
/// and the decode plan compiled for them.
struct Single {
    caches: Vec<KvCache>,
    logits: Logits,
    decode_ids: Tensor,
    decode: Plan,
    /// Plans that keep every row's logits, by row count up to [`VERIFY_PLANS_UP_TO`]
    /// (speculative decoding verifies a few draft tokens per pass).
    verify: Vec<(usize, VerifyPlan)>,
}

/// Row counts whose all-rows plans are kept for reuse.
const VERIFY_PLANS_UP_TO: usize = 16;

struct VerifyPlan {
    ids: Tensor,
    logits: Logits,
    plan: Plan,
}

/// Logits of `rows` positions, `[rows, vocab]`, as one tensor per part of the output
/// projection (`[rows, part rows]`, from column `first`).
pub(super) struct Logits {
    rows: usize,
    vocab: usize,
    parts: Vec<(usize, Tensor)>,
}

impl Logits {
    pub(super) fn new(gpu: &Gpu, output: &RowSplit, rows: usize, dtype: DType) -> Result<Logits> {
        let parts = output
            .parts
            .iter()
            .map(|(first, part)| Ok((*first, Tensor::empty(gpu, &[rows, part.rows()], dtype)?)))
            .collect::<Result<Vec<_>>>()?;
        let vocab = output.parts.iter().map(|(_, p)| p.rows()).sum();
        Ok(Logits { rows, vocab, parts })
    }

    /// Every row, read back.
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn read(&self) -> Result<Vec<Vec<f32>>> {
        crate::gpu::block_on(self.read_async())
    }

    /// [`Logits::read`], awaited.
    pub(super) async fn read_async(&self) -> Result<Vec<Vec<f32>>> {
        let mut rows = vec![vec![0.0f32; self.vocab]; self.rows];
        for (first, part) in &self.parts {
            let width = part.shape()[1];
            let values = part.to_f32_async().await?;
            for (row, values) in rows.iter_mut().zip(values.chunks_exact(width)) {
                row[*first..*first + width].copy_from_slice(values);
            }
        }
        Ok(rows)
    }
}

/// How a plan's layers reach their keys and values.
pub(super) enum KvSource<'a> {
    /// One sequence in contiguous caches, at the position in the plan's step buffer.
    Contiguous(&'a [KvCache]),
    /// Rows of many sequences in paged pools; their positions, pool slots, table runs and
    /// the tables are inputs of the plan.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // for batches, native only
    Paged {
        pools: &'a PagedPools,
        positions: &'a Tensor,
        slots: &'a Tensor,
        row_info: &'a Tensor,
        table: &'a Tensor,
    },
}

/// The key and value pools of a paged cache: per layer `[blocks · block_size, n_kv_heads,
/// head_dim]`.
pub(super) struct PagedPools {
    pub(super) k: Vec<Tensor>,
    pub(super) v: Vec<Tensor>,
    pub(super) block_size: usize,
}

/// What a plan reads and writes besides the weights: `rows` token ids, where attention finds
/// its keys, which rows get logits (`logit_rows`, u32) and where they go.
pub(super) struct StepIo<'a> {
    pub(super) ids: &'a Tensor,
    pub(super) rows: usize,
    pub(super) kv: KvSource<'a>,
    pub(super) logit_rows: &'a Tensor,
    pub(super) logits: &'a Logits,
}

/// A layer's keys and values inside a graph.
#[derive(Clone, Copy)]
enum LayerKv {
    Contiguous {
        k: Id,
        v: Id,
    },
    Paged {
        k: Id,
        v: Id,
        slots: Id,
        row_info: Id,
        table: Id,
        block_size: usize,
    },
}

/// The RoPE table a layer rotates with: the whole table at the step position (one
/// sequence), or rows already gathered for each token's own position (a batch).
#[derive(Clone, Copy)]
struct RopeAt {
    table: Id,
    per_row: bool,
}

impl Llama {
    /// Loads `path` onto `gpu`: a directory (`config.json` and safetensors weights) or a
    /// `.gguf` file (see [`super::gguf`]).
    pub fn load(gpu: &Gpu, path: &Path, options: &LoadOptions) -> Result<Llama> {
        let (config, ckpt) = if is_gguf(path) {
            super::gguf::open(path)?
        } else {
            (LlamaConfig::read(path)?, Checkpoint::open_dir(path)?)
        };
        Llama::from_checkpoint(gpu, config, ckpt, options)
    }

    /// Loads a model from the contents of its `config.json` and `model.safetensors` (a web
    /// page fetches them; it has no files). Checked as [`Llama::load`] checks files.
    pub fn from_bytes(
        gpu: &Gpu,
        config_json: &str,
        safetensors: Vec<u8>,
        options: &LoadOptions,
    ) -> Result<Llama> {
        let config = LlamaConfig::from_json(&ConfigJson::parse("config.json", config_json)?)?;
        let ckpt = Checkpoint::from_bytes("model.safetensors", safetensors)?;
        Llama::from_checkpoint(gpu, config, ckpt, options)
    }

    /// [`Llama::from_parts`] after the checkpoint's fused projections are split and, when
    /// asked, its weights quantized.
    fn from_checkpoint(
        gpu: &Gpu,
        config: LlamaConfig,
        mut ckpt: Checkpoint,
        options: &LoadOptions,
    ) -> Result<Llama> {
        ckpt = ckpt.with_row_slices(super::weights::fused_slices(&config));
        if let Some(recipe) = options.quantize {
            ckpt = ckpt.quantized(recipe)?;
        }
        Llama::from_parts(gpu, config, &ckpt, options)
    }

    pub fn from_parts(
        gpu: &Gpu,
        config: LlamaConfig,
        ckpt: &Checkpoint,
        options: &LoadOptions,
    ) -> Result<Llama> {
        let dtype = options.dtype;
        gpu.require(dtype, "the decoder")?;
        let capacity = context_capacity(gpu, &config, options)?;
        let weights = LlamaWeights::load(gpu, ckpt, &config, dtype, options.packed_weights)?;
        let rope = rope::table_tensor(gpu, &config.rope, capacity)?;
        let rope_local = config
            .rope_local
            .as_ref()
            .map(|r| rope::table_tensor(gpu, r, capacity))
            .transpose()?;
        Ok(Llama {
            gpu: gpu.clone(),
            config,
            dtype,
            capacity,
            weights,
            rope,
            rope_local,
            single: None,
            position: 0,
            fused_norms: options
                .fused_norms
                .unwrap_or(gpu.report().device_type != "Cpu"),
        })
    }

    /// The single-sequence state, made on first use.
    fn single(&mut self) -> Result<&Single> {
        if self.single.is_none() {
            let c = &self.config;
            let caches = (0..c.num_layers)
                .map(|_| {
                    let (kv_heads, head_dim) = (c.num_kv_heads, c.head_dim);
                    KvCache::new(&self.gpu, 1, self.capacity, kv_heads, head_dim, self.dtype)
                })
                .collect::<Result<Vec<_>>>()?;
            let logits = Logits::new(&self.gpu, self.weights.output(), 1, self.dtype)?;
            let decode_ids = Tensor::from_u32(&self.gpu, &[1], &[0])?;
            let last = Tensor::from_u32(&self.gpu, &[1], &[0])?;
            let decode = self.plan(&StepIo {
                ids: &decode_ids,
                rows: 1,
                kv: KvSource::Contiguous(&caches),
                logit_rows: &last,
                logits: &logits,
            })?;
            self.single = Some(Single {
                caches,
                logits,
                decode_ids,
                decode,
                verify: Vec::new(),
            });
        }
        Ok(self.single.as_ref().expect("made above"))
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Positions the KV cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Tokens seen since the last [`Llama::reset`].
    pub fn position(&self) -> usize {
        self.position
    }

    /// Forgets every token seen (the caches are overwritten from position 0).
    pub fn reset(&mut self) {
        self.position = 0;
    }

    /// Forgets the tokens seen after the first `position` (speculative decoding takes back
    /// the draft tokens the target rejected).
    pub fn truncate(&mut self, position: usize) {
        self.position = self.position.min(position);
    }

    /// The weights of the output projection's parts (for logits buffers).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // for batches, native only
    pub(super) fn output(&self) -> &RowSplit {
        self.weights.output()
    }

    /// Runs `tokens` after the ones already seen and returns the logits at the last of them.
    /// Several tokens (a prompt) go through one plan built for their number; one token
    /// re-runs the decode plan.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        crate::gpu::block_on(self.forward_async(tokens))
    }

    /// [`Llama::forward`], awaited (in a browser, where reading the logits back cannot
    /// block).
    pub async fn forward_async(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let last = tokens.len().saturating_sub(1);
        let mut logits = self.forward_rows(tokens, &[last]).await?;
        Ok(logits.pop().expect("one row asked for"))
    }

    /// Runs `tokens` after the ones already seen and returns the logits at every one of them
    /// (row `i`: the distribution of the token after `tokens[i]`); speculative decoding
    /// verifies a draft with it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_all(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        let all: Vec<usize> = (0..tokens.len()).collect();
        crate::gpu::block_on(self.forward_rows(tokens, &all))
    }

    /// `Err` unless every token of `prompt` is inside the vocabulary.
    pub fn check_prompt(&self, prompt: &[u32]) -> Result<()> {
        self.check_tokens(prompt)
    }

    /// `Err` unless every token is inside the vocabulary.
    pub(super) fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        if let Some(&bad) = tokens
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            return Err(Error::Invalid(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.config.vocab_size
            )));
        }
        Ok(())
    }

    /// [`Llama::forward`] keeping the logits of the rows `keep` (indices into `tokens`).
    async fn forward_rows(&mut self, tokens: &[u32], keep: &[usize]) -> Result<Vec<Vec<f32>>> {
        if tokens.is_empty() {
            return Err(Error::Invalid("forward needs at least one token".into()));
        }
        self.check_tokens(tokens)?;
        let end = self.position + tokens.len();
        if end > self.capacity {
            return Err(Error::Invalid(format!(
                "{} tokens after {} already seen exceed the context of {} positions \
                 (--max-context; the model allows {})",
                tokens.len(),
                self.position,
                self.capacity,
                self.config.max_position_embeddings
            )));
        }
        let position = self.position;
        let single = self.single()?;
        let n = tokens.len();
        let every_row = keep.len() == n && keep.iter().enumerate().all(|(i, &r)| i == r);
        let logits = if n == 1 && keep == [0] {
            single.decode_ids.write_u32(tokens)?;
            single.decode.run(position)?;
            single.logits.read_async().await?
        } else if every_row && n <= VERIFY_PLANS_UP_TO {
            if !single.verify.iter().any(|(rows, _)| *rows == n) {
                let ids = Tensor::from_u32(&self.gpu, &[n], tokens)?;
                let all: Vec<u32> = (0..n as u32).collect();
                let logits = Logits::new(&self.gpu, self.weights.output(), n, self.dtype)?;
                let single = self.single.as_ref().expect("made above");
                let plan = self.plan(&StepIo {
                    ids: &ids,
                    rows: n,
                    kv: KvSource::Contiguous(&single.caches),
                    logit_rows: &Tensor::from_u32(&self.gpu, &[n], &all)?,
                    logits: &logits,
                })?;
                let single = self.single.as_mut().expect("made above");
                single.verify.push((n, VerifyPlan { ids, logits, plan }));
            }
            let single = self.single.as_ref().expect("made above");
            let (_, verify) = single
                .verify
                .iter()
                .find(|(rows, _)| *rows == n)
                .expect("made above");
            verify.ids.write_u32(tokens)?;
            verify.plan.run(position)?;
            verify.logits.read_async().await?
        } else {
            let rows: Vec<u32> = keep.iter().map(|&r| r as u32).collect();
            let logits = Logits::new(&self.gpu, self.weights.output(), rows.len(), self.dtype)?;
            let single = self.single.as_ref().expect("made above");
            self.plan(&StepIo {
                ids: &Tensor::from_u32(&self.gpu, &[tokens.len()], tokens)?,
                rows: tokens.len(),
                kv: KvSource::Contiguous(&single.caches),
                logit_rows: &Tensor::from_u32(&self.gpu, &[rows.len()], &rows)?,
                logits: &logits,
            })?
            .run(position)?;
            logits.read_async().await?
        };
        self.position = end;
        Ok(logits)
    }

    /// Kernel calls in one decode step (what a GPU pays in dispatch overhead per token).
    pub fn decode_calls(&mut self) -> Result<usize> {
        Ok(self.single()?.decode.len())
    }

    /// Times each kernel of one decode step at the current position (see [`Plan::profile`]).
    #[cfg(not(target_arch = "wasm32"))]
    /// The step writes the cache row at that position, which the next token overwrites.
    pub fn profile_decode(&mut self, repeats: u32) -> Result<Vec<crate::graph::KernelTime>> {
        if self.position >= self.capacity {
            return Err(Error::Invalid(
                "the context is full; there is no decode step to profile".into(),
            ));
        }
        let position = self.position;
        self.single()?.decode.profile(position, repeats)
    }

    /// The forward pass over `io.rows` tokens: compiled for every position the cache allows
    /// (one sequence), or for positions read from the plan's inputs (a paged batch).
    pub(super) fn plan(&self, io: &StepIo<'_>) -> Result<Plan> {
        let d = self.dtype;
        let seq = io.rows;
        let hidden = self.config.hidden_size;
        let eps = self.config.rms_norm_eps as f32;
        let mut g = Graph::new(&self.gpu);

        let ids = g.external(io.ids);
        let mut x = g.temp(&[seq, hidden], d);
        gather_rows(&mut g, ids, &self.weights.embed, x);
        if let Some(scale) = self.config.embed_scale {
            x = layers::unary(&mut g, x, Unary::Scale(scale), d);
        }
        // A batch gathers each table's rows at its tokens' positions once for all layers.
        let positions = match &io.kv {
            KvSource::Contiguous(_) => None,
            KvSource::Paged { positions, .. } => Some(g.external(positions)),
        };
        let mut rope_at = |table: &Tensor| -> RopeAt {
            let table = g.external(table);
            match positions {
                None => RopeAt {
                    table,
                    per_row: false,
                },
                Some(positions) => {
                    let rows = g.temp(&[seq, self.config.head_dim], DType::F32);
                    g.node("rope rows", &[positions, table, rows], |c| {
                        gather::gather(c.gpu, c.tensor(0), c.tensor(1), 0, c.tensor(2))
                    });
                    RopeAt {
                        table: rows,
                        per_row: true,
                    }
                }
            }
        };
        let rope_global = rope_at(&self.rope);
        let rope_local = self.rope_local.as_ref().map(&mut rope_at);
        let paged_inputs = match &io.kv {
            KvSource::Contiguous(_) => None,
            KvSource::Paged {
                slots,
                row_info,
                table,
                ..
            } => Some((g.external(slots), g.external(row_info), g.external(table))),
        };

        for (i, layer) in self.weights.layers.iter().enumerate() {
            let rope_table = match (layer.sliding, rope_local) {
                (true, Some(local)) => local,
                _ => rope_global,
            };
            let kv = match (&io.kv, paged_inputs) {
                (KvSource::Contiguous(caches), _) => LayerKv::Contiguous {
                    k: g.external(&caches[i].k),
                    v: g.external(&caches[i].v),
                },
                (KvSource::Paged { pools, .. }, Some((slots, row_info, table))) => LayerKv::Paged {
                    k: g.external(&pools.k[i]),
                    v: g.external(&pools.v[i]),
                    slots,
                    row_info,
                    table,
                    block_size: pools.block_size,
                },
                (KvSource::Paged { .. }, None) => unreachable!("paged inputs are added above"),
            };
            x = self.layer(&mut g, x, rope_table, layer, kv, seq)?;
        }

        // Only the rows asked for get logits.
        let kept = io.logits.rows;
        let logit_rows = g.external(io.logit_rows);
        let last = g.temp(&[kept, hidden], d);
        g.node("logit rows", &[logit_rows, x, last], |c| {
            gather::gather(c.gpu, c.tensor(0), c.tensor(1), 0, c.tensor(2))
        });
        let normed = rms_norm(&mut g, last, &self.weights.norm, eps, d);
        // Gemma 2 caps the logits: the projection writes a temporary, the cap the logits.
        for ((_, part), (_, logits)) in self.weights.output().parts.iter().zip(&io.logits.parts) {
            let out = match self.config.final_softcap {
                Some(_) => g.temp(&[kept, part.rows()], d),
                None => g.external(logits),
            };
            match part {
                Proj::Dense(w) => {
                    let w = g.external(w);
                    g.node("output projection", &[normed, w, out], |c| {
                        matmul::matmul(
                            c.gpu,
                            c.tensor(0),
                            c.tensor(1),
                            BLayout::NK,
                            None,
                            c.tensor(2),
                        )
                    });
                }
                Proj::Packed(w) => {
                    let (scales, quants) = (g.external(&w.scales), g.external(&w.quants));
                    let (ggml_type, rows, cols) = (w.ggml_type, w.rows, w.cols);
                    g.node(
                        "output projection",
                        &[normed, scales, quants, out],
                        move |c| {
                            let w = PackedView {
                                ggml_type,
                                rows,
                                cols,
                                scales: c.tensor(1),
                                quants: c.tensor(2),
                            };
                            packed::linear(c.gpu, c.tensor(0), w, None, Epilogue::None, c.tensor(3))
                        },
                    );
                }
            }
            if let Some(cap) = self.config.final_softcap {
                let logits = g.external(logits);
                g.node("final softcap", &[out, logits], move |c| {
                    elementwise::unary(c.gpu, Unary::SoftCap(cap), c.tensor(0), c.tensor(1))
                });
            }
        }
        match io.kv {
            KvSource::Contiguous(_) => g.compile(self.capacity - seq),
            KvSource::Paged { .. } => g.compile(0),
        }
    }
}

impl Llama {
    /// One decoder layer on `x` (`[seq, hidden]`): attention with the layer's cache, then
    /// the SwiGLU MLP, each with its residual.
    fn layer(
        &self,
        g: &mut Graph,
        x: Id,
        rope: RopeAt,
        layer: &Layer,
        kv: LayerKv,
        seq: usize,
    ) -> Result<Id> {
        let c = &self.config;
        let d = self.dtype;
        let (heads, kv_heads, head_dim) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let eps = c.rms_norm_eps as f32;
        let scores = attention::Scores {
            scale: c.attention_scale as f32,
            softcap: c.attn_softcap,
            window: layer.window,
        };

        // The packed GEMV fuses no norm: layers with packed projections compute it once.
        let fuse = seq == 1 && self.fused_norms && !layer.has_packed();
        let h = Normed::new(g, x, &layer.input_norm, eps, d, fuse);
        // The tensors RoPE rotates in place: q and k, or (one row, stacked) the q|k run at
        // the front of the stacked projection's output, rotated by one call since every head
        // of it sits at the same position.
        let (q, k, v, qk) = match self.stacked_qkv(layer, seq) {
            // One row: one GEMV over the stacked weight, and views of its output.
            Some(stacked) => {
                let qkv = h.dense_linear(g, &stacked.weight, stacked.bias.as_ref(), None);
                let (q_len, kv_len) = (heads * head_dim, kv_heads * head_dim);
                let qk = g.slice(qkv, 0, &[1, 1, heads + kv_heads, head_dim])?;
                (
                    g.slice(qkv, 0, &[1, q_len])?,
                    g.slice(qkv, q_len, &[1, kv_len])?,
                    g.slice(qkv, q_len + kv_len, &[1, kv_len])?,
                    Some(qk),
                )
            }
            None => (
                h.linear(g, &layer.q, layer.q_bias.as_ref(), None),
                h.linear(g, &layer.k, layer.k_bias.as_ref(), None),
                h.linear(g, &layer.v, layer.v_bias.as_ref(), None),
                None,
            ),
        };
        let mut q4 = g.reshape(q, &[1, seq, heads, head_dim])?;
        let mut k4 = g.reshape(k, &[1, seq, kv_heads, head_dim])?;
        let v4 = g.reshape(v, &[1, seq, kv_heads, head_dim])?;
        let mut rotated = match qk {
            Some(qk) => vec![qk],
            None => vec![q4, k4],
        };
        // Qwen3: each head of q and k RMS-normalised (into new tensors, then rotated there).
        if let (Some(q_norm), Some(k_norm)) = (&layer.q_norm, &layer.k_norm) {
            // OLMoE normalises all of q and of k; Qwen3 and Gemma 3 each head.
            let full = c.qk_norm_full;
            q4 = head_norm(g, q, q_norm, eps, [seq, heads, head_dim], full, d)?;
            k4 = head_norm(g, k, k_norm, eps, [seq, kv_heads, head_dim], full, d)?;
            rotated = vec![q4, k4];
        }
        if layer.rope {
            let per_row = rope.per_row;
            for t in rotated {
                g.node("rope", &[t, rope.table], move |c| {
                    // Rows gathered per token start at row 0; the whole table at the step.
                    let at = if per_row {
                        Position::Fixed(0)
                    } else {
                        c.position()
                    };
                    rope::rope(c.gpu, c.tensor(0), c.tensor(1), at)
                });
            }
        }
        let a = g.temp(&[seq, heads * head_dim], d);
        let a4 = g.reshape(a, &[1, seq, heads, head_dim])?;
        match kv {
            LayerKv::Contiguous { k: ck, v: cv } => {
                g.node("kv append", &[k4, v4, ck, cv], |c| {
                    let k = write_rows(c.gpu, c.tensor(0), c.tensor(2), c.position())?;
                    Ok(k.then(write_rows(c.gpu, c.tensor(1), c.tensor(3), c.position())?))
                });
                g.node("attention", &[q4, ck, cv, a4], move |c| {
                    let (q, k, v, out) = (c.tensor(0), c.tensor(1), c.tensor(2), c.tensor(3));
                    attention::attention(c.gpu, q, k, v, c.position(), true, scores, out)
                });
            }
            LayerKv::Paged {
                k: pk,
                v: pv,
                slots,
                row_info,
                table,
                block_size,
            } => {
                g.node("kv write", &[k4, v4, slots, pk, pv], |c| {
                    let slots = c.tensor(2);
                    let k = paged_kv::write_rows(c.gpu, c.tensor(0), slots, c.tensor(3))?;
                    Ok(k.then(paged_kv::write_rows(
                        c.gpu,
                        c.tensor(1),
                        slots,
                        c.tensor(4),
                    )?))
                });
                g.node(
                    "paged attention",
                    &[q4, pk, pv, row_info, table, a4],
                    move |c| {
                        let (q, k, v) = (c.tensor(0), c.tensor(1), c.tensor(2));
                        let (rows, table, out) = (c.tensor(3), c.tensor(4), c.tensor(5));
                        paged_kv::attention(c.gpu, q, k, v, rows, table, block_size, scores, out)
                    },
                );
            }
        }
        // The residual adds and the gated activation ride in the projections' stores
        // (Gemma normalises the attention's and the MLP's outputs first, then adds).
        let x = residual(
            g,
            x,
            a,
            &layer.o,
            layer.o_bias.as_ref(),
            &layer.attn_out_norm,
            eps,
            d,
        );

        let mlp = match &layer.mlp {
            Mlp::Dense(mlp) => mlp,
            Mlp::Experts(moe) => {
                let h = rms_norm(g, x, &layer.post_norm, eps, d);
                return self.experts(g, x, h, moe, seq);
            }
        };
        let h = Normed::new(g, x, &layer.post_norm, eps, d, fuse);
        let act = gated(g, &h, mlp, c.activation);
        let down_bias = mlp.down_bias.as_ref();
        Ok(residual(
            g,
            x,
            act,
            &mlp.down,
            down_bias,
            &layer.mlp_out_norm,
            eps,
            d,
        ))
    }

    /// `x + Σ_j w_j · expert_j(h)` over each token's top-k experts (and Qwen2-MoE's gated
    /// shared expert): routed on the GPU, each expert GEMV reading only its expert's rows.
    fn experts(&self, g: &mut Graph, x: Id, h: Id, moe: &MoeWeights, seq: usize) -> Result<Id> {
        let c = &self.config;
        let m = c.moe.as_ref().expect("an expert layer has a config");
        let d = self.dtype;
        let (k, experts, ei, hidden) = (m.top_k, m.experts, m.expert_intermediate, c.hidden_size);
        let logits = layers::linear(g, h, &moe.router, None, d);
        let ids = g.temp(&[seq, k], DType::U32);
        let weights = g.temp(&[seq, k], DType::F32);
        let renormalize = m.renormalize;
        g.node("moe route", &[logits, ids, weights], move |c| {
            moe::route(c.gpu, c.tensor(0), k, renormalize, c.tensor(1), c.tensor(2))
        });
        let pairs = seq * k;
        // A prompt groups the pairs by expert and runs one matmul per expert; decode runs
        // one GEMV per pair.
        let grouping = (seq >= moe::GROUP_FROM_TOKENS).then(|| {
            let order = g.temp(&[pairs], DType::U32);
            let offsets = g.temp(&[experts + 1], DType::U32);
            g.node("moe group", &[ids, order, offsets], move |c| {
                moe::group(c.gpu, c.tensor(0), experts, c.tensor(1), c.tensor(2))
            });
            (order, offsets)
        });
        // The expert products for every (token, slot) pair: x read per token (x_div = k) or
        // per pair (1), then `step`.
        // Operands: the weight (dense: the stack; packed: scales, quants), ids, x, out,
        // weights, then the grouping and the gate where used.
        let expert = |g: &mut Graph, w: &Proj, x: Id, x_div: usize, rows: usize, step: Step| {
            let out = g.temp(&[pairs, rows], d);
            let (mut operands, packed) = match w {
                Proj::Dense(t) => (vec![g.external(t)], None),
                Proj::Packed(p) => (
                    vec![g.external(&p.scales), g.external(&p.quants)],
                    Some((p.ggml_type, p.rows, p.cols)),
                ),
            };
            let at = operands.len();
            operands.extend([ids, x, out, weights]);
            // Packed experts run one GEMV per pair, a prompt too.
            let grouping = grouping.filter(|_| packed.is_none());
            operands.extend(grouping.map(|(o, f)| [o, f]).into_iter().flatten());
            let gate_at = operands.len();
            if let Step::Gated(gate, _) = step {
                operands.push(gate);
            }
            g.node("moe expert", &operands, move |c| {
                let weighted = (step == Step::Weighted).then(|| c.tensor(at + 3));
                let epilogue = match step {
                    Step::Gated(_, Activation::Silu) => Epilogue::SiluMul(c.tensor(gate_at)),
                    Step::Gated(_, Activation::GeluTanh) => {
                        Epilogue::GeluTanhMul(c.tensor(gate_at))
                    }
                    _ => Epilogue::None,
                };
                let (ids, x, out) = (c.tensor(at), c.tensor(at + 1), c.tensor(at + 2));
                match (packed, grouping) {
                    (Some((ggml_type, rows, cols)), _) => {
                        let w = PackedView {
                            ggml_type,
                            rows,
                            cols,
                            scales: c.tensor(0),
                            quants: c.tensor(1),
                        };
                        packed::expert_gemv(
                            c.gpu, w, experts, ids, x, x_div, weighted, epilogue, out,
                        )
                    }
                    (None, Some(_)) => {
                        let grouping = (c.tensor(at + 4), c.tensor(at + 5));
                        let w = c.tensor(0);
                        moe::expert_matmul(
                            c.gpu, w, experts, grouping, seq, x, x_div, weighted, epilogue, out,
                        )
                    }
                    (None, None) => {
                        let w = c.tensor(0);
                        moe::expert_gemv(c.gpu, w, experts, ids, x, x_div, weighted, epilogue, out)
                    }
                }
            });
            out
        };
        let gate = expert(g, &moe.gate, h, k, ei, Step::Plain);
        let act = expert(g, &moe.up, h, k, ei, Step::Gated(gate, c.activation));
        let y = expert(g, &moe.down, act, 1, hidden, Step::Weighted);
        let shared = match &moe.shared {
            None => None,
            Some(shared) => {
                let normed = Normed::Computed { h, dtype: d };
                let s = gated(g, &normed, &shared.mlp, Activation::Silu);
                let s = project(g, s, &shared.mlp.down, None, None, d);
                let gate_logit = layers::linear(g, h, &shared.gate_logit, None, d);
                Some((s, gate_logit))
            }
        };
        let out = g.temp(&[seq, hidden], d);
        let mut operands = vec![x, y, out];
        if let Some((s, gl)) = shared {
            operands.extend([s, gl]);
        }
        let has_shared = shared.is_some();
        g.node("moe combine", &operands, move |c| {
            let shared = has_shared.then(|| (c.tensor(3), c.tensor(4)));
            moe::combine(c.gpu, c.tensor(0), c.tensor(1), k, shared, c.tensor(2))
        });
        Ok(out)
    }
}

/// What an expert GEMV does after its product.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    Plain,
    /// `act(gate) · product`: the up projection with the gate's output.
    Gated(Id, Activation),
    /// `router weight · product`: the down projection.
    Weighted,
}

/// `act(gate · h) · (up · h)` for a dense gated MLP (the norm fused where `h` asks).
fn gated(g: &mut Graph, h: &Normed<'_>, mlp: &DenseMlp, activation: Activation) -> Id {
    let gate = h.linear(g, &mlp.gate, mlp.gate_bias.as_ref(), None);
    let then = Some(match activation {
        Activation::Silu => Then::SiluMul(gate),
        Activation::GeluTanh => Then::GeluTanhMul(gate),
    });
    h.linear(g, &mlp.up, mlp.up_bias.as_ref(), then)
}

/// `x + project(h)`, or with an output norm `x + RMSNorm(project(h))` (Gemma).
#[allow(clippy::too_many_arguments)]
fn residual(
    g: &mut Graph,
    x: Id,
    h: Id,
    w: &Proj,
    bias: Option<&Tensor>,
    out_norm: &Option<Tensor>,
    eps: f32,
    d: DType,
) -> Id {
    match out_norm {
        None => project(g, h, w, bias, Some(Then::Add(x)), d),
        Some(norm) => {
            let y = project(g, h, w, bias, None, d);
            let normed = rms_norm(g, y, norm, eps, d);
            layers::binary(g, x, normed, Binary::Add, d)
        }
    }
}

/// `x · wᵀ (+ bias)`, then `then`, on the kernel the weight's storage calls for.
fn project(
    g: &mut Graph,
    x: Id,
    w: &Proj,
    bias: Option<&Tensor>,
    then: Option<Then>,
    d: DType,
) -> Id {
    match (w, then) {
        (Proj::Packed(w), then) => layers::packed_linear(g, x, w, bias, then, d),
        (Proj::Dense(w), Some(then)) => layers::linear_then(g, x, w, bias, then, d),
        (Proj::Dense(w), None) => layers::linear(g, x, w, bias, d),
    }
}

/// RMSNorm(x) on its way into projections: fused into each projection's GEMV (decode, one
/// row, where [`LoadOptions::fused_norms`] allows), or computed once into a tensor the
/// projections share.
#[derive(Clone, Copy)]
enum Normed<'w> {
    Fused {
        x: Id,
        weight: &'w Tensor,
        eps: f32,
        dtype: DType,
    },
    Computed {
        h: Id,
        dtype: DType,
    },
}

impl<'w> Normed<'w> {
    fn new(g: &mut Graph, x: Id, weight: &'w Tensor, eps: f32, dtype: DType, fuse: bool) -> Self {
        if fuse {
            Normed::Fused {
                x,
                weight,
                eps,
                dtype,
            }
        } else {
            Normed::Computed {
                h: rms_norm(g, x, weight, eps, dtype),
                dtype,
            }
        }
    }

    /// `linear(RMSNorm(x))`, then `then`, for either kind of weight.
    fn linear(&self, g: &mut Graph, w: &Proj, bias: Option<&Tensor>, then: Option<Then>) -> Id {
        match (w, *self) {
            (Proj::Dense(w), _) => self.dense_linear(g, w, bias, then),
            // Layers with packed projections compute their norms ([`Layer::has_packed`]);
            // should one not, the norm is computed here rather than skipped.
            (Proj::Packed(_), Normed::Computed { h, dtype }) => project(g, h, w, bias, then, dtype),
            (
                Proj::Packed(_),
                Normed::Fused {
                    x,
                    weight,
                    eps,
                    dtype,
                },
            ) => {
                let h = rms_norm(g, x, weight, eps, dtype);
                project(g, h, w, bias, then, dtype)
            }
        }
    }

    /// `linear(RMSNorm(x))`, then `then`, with a dense weight (the norm fused where asked).
    fn dense_linear(
        &self,
        g: &mut Graph,
        w: &Tensor,
        bias: Option<&Tensor>,
        then: Option<Then>,
    ) -> Id {
        match *self {
            Normed::Fused {
                x,
                weight,
                eps,
                dtype,
            } => layers::norm_linear(g, x, weight, eps, w, bias, then, dtype),
            Normed::Computed { h, dtype } => match then {
                Some(then) => layers::linear_then(g, h, w, bias, then, dtype),
                None => layers::linear(g, h, w, bias, dtype),
            },
        }
    }
}

impl Llama {
    /// The layer's stacked q/k/v weight, when `seq` is one row and the q, k and v parts of
    /// the projection's output start at aligned bytes (so they can be views of it).
    fn stacked_qkv<'l>(&self, layer: &'l Layer, seq: usize) -> Option<&'l Stacked> {
        let c = &self.config;
        let align = self.gpu.limits().min_storage_buffer_offset_alignment as usize;
        let q_bytes = c.num_heads * c.head_dim * self.dtype.size();
        let kv_bytes = c.num_kv_heads * c.head_dim * self.dtype.size();
        let aligned = q_bytes.is_multiple_of(align) && kv_bytes.is_multiple_of(align);
        layer.qkv.as_ref().filter(|_| seq == 1 && aligned)
    }
}

/// `out[r] = table[ids[r]]` over the table's parts.
fn gather_rows(g: &mut Graph, ids: Id, table: &RowSplit, out: Id) {
    for (first, part) in &table.parts {
        let first = *first;
        match part {
            Proj::Dense(part) => {
                let part = g.external(part);
                g.node("embedding", &[ids, part, out], move |c| {
                    gather::gather(c.gpu, c.tensor(0), c.tensor(1), first, c.tensor(2))
                });
            }
            Proj::Packed(w) => {
                let (scales, quants) = (g.external(&w.scales), g.external(&w.quants));
                let (ggml_type, rows, cols) = (w.ggml_type, w.rows, w.cols);
                g.node("embedding", &[ids, scales, quants, out], move |c| {
                    let table = PackedView {
                        ggml_type,
                        rows,
                        cols,
                        scales: c.tensor(1),
                        quants: c.tensor(2),
                    };
                    packed::gather(c.gpu, c.tensor(0), table, first, c.tensor(3))
                });
            }
        }
    }
}

/// RMSNorm over each head of `x` (`[seq, heads · head_dim]`) with one `[head_dim]` weight,
/// or with `full` over each whole row (`[heads · head_dim]` weight), as
/// `[1, seq, heads, head_dim]`.
fn head_norm(
    g: &mut Graph,
    x: Id,
    weight: &Tensor,
    eps: f32,
    [seq, heads, head_dim]: [usize; 3],
    full: bool,
    dtype: DType,
) -> Result<Id> {
    let rows = if full {
        g.reshape(x, &[seq, heads * head_dim])?
    } else {
        g.reshape(x, &[seq * heads, head_dim])?
    };
    let normed = rms_norm(g, rows, weight, eps, dtype);
    g.reshape(normed, &[1, seq, heads, head_dim])
}

fn rms_norm(g: &mut Graph, x: Id, weight: &Tensor, eps: f32, dtype: DType) -> Id {
    let shape = g.shape(x).to_vec();
    let out = g.temp(&shape, dtype);
    let w = g.external(weight);
    g.node("rms_norm", &[x, w, out], move |c| {
        norm::rms_norm(c.gpu, c.tensor(0), c.tensor(1), eps, c.tensor(2))
    });
    out
}

/// The KV-cache length: the caller's choice or the model's (at most
/// [`DEFAULT_MAX_CONTEXT`]), within one binding per cache and the sliding window.
fn context_capacity(gpu: &Gpu, c: &LlamaConfig, options: &LoadOptions) -> Result<usize> {
    let row_bytes = c.num_kv_heads * c.head_dim * options.dtype.size();
    let binding = gpu.limits().max_storage_buffer_binding_size as usize;
    let fits = binding / row_bytes;
    let capacity = match options.max_context {
        Some(0) => return Err(Error::Invalid("--max-context must be at least 1".into())),
        Some(n) if n > c.max_position_embeddings => {
            return Err(Error::Invalid(format!(
                "--max-context {n} exceeds the model's max_position_embeddings {}",
                c.max_position_embeddings
            )));
        }
        Some(n) if n > fits => {
            return Err(Error::TooLarge {
                what: format!("a KV cache of {n} positions"),
                bytes: (n * row_bytes) as u64,
                limit_name: "max_storage_buffer_binding_size",
                limit: binding as u64,
            });
        }
        Some(n) => n,
        None => c.max_position_embeddings.min(DEFAULT_MAX_CONTEXT).min(fits),
    };
    // Sliding-window layers mask the keys outside their window (the cache holds them all).
    Ok(capacity)
}
