//! Training the decoder (plain Llama layers: RMSNorm, RoPE, grouped-query attention, SwiGLU;
//! tied or separate output weights): the forward pass of a batch of token windows as a
//! [`Tape`], its backward pass derived from it, the mean cross-entropy over every position,
//! and AdamW over the f32 weights. Checkpoints are written in the transformers layout.

use std::path::Path;
use std::rc::Rc;

use super::config::{Activation, Architecture, LlamaConfig};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::Plan;
use crate::graph::autodiff::{Segment, Tape};
use crate::io::safetensors::Checkpoint;
use crate::kernels::rope;
use crate::kernels::training::group_by_id;
use crate::models::train::{self, HostTensor, LossScaler, Optimizer, Parameter, Update};
use crate::rng::Rng;
use crate::tensor::{DType, Tensor};

/// The shape of the batches a trainer is compiled for, the passes' element type, and whether
/// it checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LmShape {
    /// Windows per batch.
    pub batch: usize,
    /// Tokens per window.
    pub seq: usize,
    /// Recompute each layer's activations in the backward pass instead of keeping them.
    pub checkpointing: bool,
    /// The activations', gradients' and passes' weights' type: f32, or f16 for mixed
    /// precision (f32 master weights and optimizer state; use loss scaling).
    pub dtype: DType,
}

/// The inputs a batch writes and the loss it reads.
struct Inputs {
    ids: Tensor,
    targets: Tensor,
    order: Tensor,
    offsets: Tensor,
    loss: Tensor,
}

/// A decoder being trained: its parameters (in checkpoint order), the compiled forward and
/// backward plan for one batch shape, and the optimizer.
pub struct LmTrainer {
    gpu: Gpu,
    config: LlamaConfig,
    shape: LmShape,
    params: Vec<Parameter>,
    inputs: Inputs,
    plan: Plan,
    pub optimizer: Optimizer,
    /// Dynamic loss scaling (mixed precision): the loss's gradient is multiplied by its
    /// scale, and the plan is rebuilt when the scale changes.
    scaler: Option<LossScaler>,
}

/// The checkpoint names and shapes of a plain Llama's weights, in the order transformers
/// lists them.
pub fn parameter_shapes(c: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let (q, kv) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    let mut shapes = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![c.vocab_size, h],
    )];
    for l in 0..c.num_layers {
        let p = format!("model.layers.{l}");
        shapes.extend([
            (format!("{p}.self_attn.q_proj.weight"), vec![q, h]),
            (format!("{p}.self_attn.k_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.v_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.o_proj.weight"), vec![h, q]),
            (format!("{p}.mlp.gate_proj.weight"), vec![i, h]),
            (format!("{p}.mlp.up_proj.weight"), vec![i, h]),
            (format!("{p}.mlp.down_proj.weight"), vec![h, i]),
            (format!("{p}.input_layernorm.weight"), vec![h]),
            (format!("{p}.post_attention_layernorm.weight"), vec![h]),
        ]);
    }
    shapes.push(("model.norm.weight".to_string(), vec![h]));
    if !c.tie_word_embeddings {
        shapes.push(("lm_head.weight".to_string(), vec![c.vocab_size, h]));
    }
    shapes
}

/// `Err` unless the trainer builds `c`'s forward pass exactly.
pub fn check_trainable(c: &LlamaConfig) -> Result<()> {
    let unsupported = [
        (
            c.architecture != Architecture::Llama,
            "an architecture other than Llama",
        ),
        (c.qkv_bias || c.o_bias || c.mlp_bias, "biases"),
        (c.qk_norm, "q/k norms"),
        (
            c.activation != Activation::Silu,
            "an activation other than SiLU",
        ),
        (c.embed_scale.is_some(), "scaled embeddings"),
        (c.norm_offset != 0.0, "offset norms"),
        (c.sandwich_norms, "sandwich norms"),
        (
            c.sliding_window.is_some() || c.layer_windows.iter().any(Option::is_some),
            "sliding windows",
        ),
        (
            c.attn_softcap.is_some() || c.final_softcap.is_some(),
            "soft-capping",
        ),
        (c.moe.is_some(), "mixture-of-experts layers"),
        (c.rope_layers.iter().any(|&r| !r), "layers without RoPE"),
    ];
    for (present, what) in unsupported {
        if present {
            return Err(Error::Invalid(format!(
                "training covers plain Llama decoders; this one has {what}"
            )));
        }
    }
    Ok(())
}

/// Fresh weights as transformers initialises a `LlamaForCausalLM`: N(0, 0.02²) for every
/// matrix, ones for the norms.
pub fn initial_weights(c: &LlamaConfig, seed: u64) -> Vec<HostTensor> {
    let mut rng = Rng::new(seed);
    parameter_shapes(c)
        .into_iter()
        .map(|(name, shape)| {
            let len = shape.iter().product();
            let values = if shape.len() == 1 {
                vec![1.0; len]
            } else {
                train::normal(&mut rng, len, 0.02)
            };
            HostTensor {
                name,
                shape,
                values,
            }
        })
        .collect()
}

/// The weights of the checkpoint in `dir` (any stored float type), widened to f32.
pub fn read_weights(c: &LlamaConfig, dir: &Path) -> Result<Vec<HostTensor>> {
    let checkpoint = Checkpoint::open_dir(dir)?;
    parameter_shapes(c)
        .into_iter()
        .map(|(name, shape)| {
            let values = checkpoint.read_f32(&name, &shape)?;
            Ok(HostTensor {
                name,
                shape,
                values,
            })
        })
        .collect()
}

impl LmTrainer {
    /// A trainer for `config` starting from `weights` (as [`parameter_shapes`] lists them),
    /// compiled for batches of `shape`.
    pub fn new(
        gpu: &Gpu,
        config: &LlamaConfig,
        weights: &[HostTensor],
        shape: LmShape,
        optimizer: Optimizer,
    ) -> Result<LmTrainer> {
        check_trainable(config)?;
        if shape.batch == 0 || shape.seq == 0 {
            return Err(Error::Invalid(
                "a batch needs at least one token".to_string(),
            ));
        }
        let expected = parameter_shapes(config);
        let mut params = Vec::with_capacity(expected.len());
        for (name, want) in &expected {
            let Some(given) = weights.iter().find(|t| &t.name == name) else {
                return Err(Error::Invalid(format!("no weights for {name}")));
            };
            let got = &given.shape;
            if got != want {
                return Err(Error::shape(
                    "training weights",
                    format!("{name} is {got:?}, the config wants {want:?}"),
                ));
            }
            params.push(Parameter::new(gpu, name, want, &given.values, shape.dtype)?);
        }
        let rows = shape.batch * shape.seq;
        let inputs = Inputs {
            ids: Tensor::from_u32(gpu, &[rows], &vec![0; rows])?,
            targets: Tensor::from_u32(gpu, &[rows], &vec![0; rows])?,
            order: Tensor::from_u32(gpu, &[rows], &vec![0; rows])?,
            offsets: Tensor::from_u32(
                gpu,
                &[config.vocab_size + 1],
                &vec![0; config.vocab_size + 1],
            )?,
            loss: Tensor::empty(gpu, &[rows], DType::F32)?,
        };
        gpu.require(shape.dtype, "training")?;
        let plan = build_plan(gpu, config, shape, &params, &inputs, 1.0)?;
        Ok(LmTrainer {
            gpu: gpu.clone(),
            config: config.clone(),
            shape,
            params,
            inputs,
            plan,
            optimizer,
            scaler: None,
        })
    }

    /// The trainer with dynamic loss scaling by `scaler` (for f16 passes).
    pub fn with_loss_scaling(mut self, scaler: LossScaler) -> Result<LmTrainer> {
        if !(scaler.scale.is_finite() && scaler.scale > 0.0) {
            return Err(Error::Invalid(format!(
                "a loss scale of {} is not a positive number",
                scaler.scale
            )));
        }
        self.rebuild(scaler.scale)?;
        self.scaler = Some(scaler);
        Ok(self)
    }

    /// The loss scale the next step uses (1 without loss scaling).
    pub fn loss_scale(&self) -> f32 {
        self.scaler.map_or(1.0, |s| s.scale)
    }

    fn rebuild(&mut self, loss_scale: f32) -> Result<()> {
        let plan = build_plan(
            &self.gpu,
            &self.config,
            self.shape,
            &self.params,
            &self.inputs,
            loss_scale,
        )?;
        self.plan = plan;
        Ok(())
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub fn shape(&self) -> LmShape {
        self.shape
    }

    pub fn parameters(&self) -> &[Parameter] {
        &self.params
    }

    /// Bytes of the plan's intermediate tensors (activations and gradients).
    pub fn scratch_bytes(&self) -> u64 {
        self.plan.scratch_bytes()
    }

    /// Runs the forward and backward pass on one batch (`ids` and `targets`, each
    /// `batch · seq` tokens, window after window) and returns the mean loss; the gradients
    /// are left in the parameters.
    pub fn compute_gradients(&mut self, ids: &[u32], targets: &[u32]) -> Result<f64> {
        let rows = self.shape.batch * self.shape.seq;
        let vocab = self.config.vocab_size;
        for (what, tokens) in [("ids", ids), ("targets", targets)] {
            if tokens.len() != rows {
                return Err(Error::shape(
                    "training batch",
                    format!("{} {what} for {rows} positions", tokens.len()),
                ));
            }
            if let Some(bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
                return Err(Error::Invalid(format!(
                    "token {bad} in the batch's {what} is outside the vocabulary of {vocab}"
                )));
            }
        }
        let (order, offsets) = group_by_id(ids, vocab)?;
        self.inputs.ids.write_u32(ids)?;
        self.inputs.targets.write_u32(targets)?;
        self.inputs.order.write_u32(&order)?;
        self.inputs.offsets.write_u32(&offsets)?;
        self.plan.run(0)?;
        let losses = self.inputs.loss.to_f32()?;
        Ok(losses.iter().map(|&l| f64::from(l)).sum::<f64>() / rows as f64)
    }

    /// One training step on a batch at learning rate `lr`: (mean loss, what the optimizer
    /// did). With loss scaling, a step whose gradients overflow is skipped and halves the
    /// scale; enough good steps in a row double it.
    pub fn step(&mut self, ids: &[u32], targets: &[u32], lr: f32) -> Result<(f64, Update)> {
        let loss = self.compute_gradients(ids, targets)?;
        let scale = self.loss_scale();
        let update = self.optimizer.step(&self.gpu, &self.params, lr, scale)?;
        if let Some(scaler) = &mut self.scaler {
            scaler.update(update.skipped);
            let next = scaler.scale;
            if next != scale {
                self.rebuild(next)?;
            }
        }
        Ok((loss, update))
    }

    /// The gradients of the last batch (the loss scale divided out), `(name, values)`.
    pub fn gradients(&self) -> Result<Vec<(String, Vec<f32>)>> {
        let scale = self.loss_scale();
        self.params
            .iter()
            .map(|p| {
                let values = p.grad.to_f32()?;
                Ok((p.name.clone(), values.iter().map(|g| g / scale).collect()))
            })
            .collect()
    }

    /// Writes the weights in the transformers layout (`config.json`, `model.safetensors` in
    /// `dtype`) to `dir`, and the optimizer's moments (`optimizer.safetensors`) when
    /// `with_state` (the step count is the caller's to keep).
    pub fn save(
        &self,
        dir: &Path,
        config_json: &serde_json::Value,
        dtype: DType,
        with_state: bool,
    ) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(train::io_error(dir))?;
        let weights = train::read_values(&self.params)?;
        let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        train::write_safetensors(
            &dir.join("model.safetensors"),
            &weights,
            dtype,
            Some(metadata),
        )?;
        train::write_json(&dir.join("config.json"), config_json)?;
        if with_state {
            train::save_moments(&dir.join("optimizer.safetensors"), &self.params)?;
        }
        Ok(())
    }

    /// Restores the optimizer's moments [`LmTrainer::save`] wrote to `dir` (the step count
    /// is the caller's).
    pub fn load_moments(&self, dir: &Path) -> Result<()> {
        train::load_moments(&dir.join("optimizer.safetensors"), &self.params)
    }
}

/// The forward pass of one batch, the mean cross-entropy (its gradient times `loss_scale`),
/// and the backward pass.
fn build_plan(
    gpu: &Gpu,
    c: &LlamaConfig,
    shape: LmShape,
    params: &[Parameter],
    inputs: &Inputs,
    loss_scale: f32,
) -> Result<Plan> {
    let LmShape {
        batch,
        seq,
        checkpointing,
        dtype,
    } = shape;
    let rows = batch * seq;
    let mut t = Tape::new(gpu, dtype);
    let ids: Vec<_> = params.iter().map(|p| t.parameter(p.pass_value())).collect();
    let by_name = |name: &str| {
        params
            .iter()
            .position(|p| p.name == name)
            .map(|i| ids[i])
            .ok_or_else(|| Error::Invalid(format!("no parameter {name}")))
    };

    let table = rope::table_tensor(gpu, &c.rope, seq)?;
    let inverse = rope::backward_table(&c.rope.table(seq)?, c.head_dim);
    let inverse = Tensor::from_f32(gpu, &[seq, c.head_dim], &inverse, DType::F32)?;
    let (table, inverse) = (t.input(&table), t.input(&inverse));

    let tokens = t.input(&inputs.ids);
    let (order, offsets) = (t.input(&inputs.order), t.input(&inputs.offsets));
    let embed = by_name("model.embed_tokens.weight")?;
    let mut x = t.embedding(tokens, order, offsets, embed)?;

    for l in 0..c.num_layers {
        let p = |what: &str| by_name(&format!("model.layers.{l}.{what}.weight"));
        let weights = LayerWeights {
            input_norm: p("input_layernorm")?,
            q: p("self_attn.q_proj")?,
            k: p("self_attn.k_proj")?,
            v: p("self_attn.v_proj")?,
            o: p("self_attn.o_proj")?,
            post_norm: p("post_attention_layernorm")?,
            gate: p("mlp.gate_proj")?,
            up: p("mlp.up_proj")?,
            down: p("mlp.down_proj")?,
        };
        let dims = LayerDims {
            batch,
            seq,
            heads: c.num_heads,
            kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            eps: c.rms_norm_eps as f32,
            scale: c.attention_scale as f32,
        };
        let segment: Segment =
            Rc::new(move |t: &mut Tape, x| layer(t, x, &weights, &dims, table, inverse));
        x = if checkpointing {
            t.checkpoint(x, segment)?
        } else {
            segment(&mut t, x)?
        };
    }
    let normed = t.rms_norm(x, by_name("model.norm.weight")?, c.rms_norm_eps as f32)?;
    let head = if c.tie_word_embeddings {
        embed
    } else {
        by_name("lm_head.weight")?
    };
    let logits = t.linear(normed, head, None)?;
    let (targets, loss) = (t.input(&inputs.targets), t.input(&inputs.loss));
    t.cross_entropy(logits, targets, loss, loss_scale / rows as f32)?;
    t.backward()?;
    let grads: Vec<&Tensor> = params.iter().map(|p| &p.grad).collect();
    t.compile(&grads)
}

#[derive(Clone, Copy)]
struct LayerWeights {
    input_norm: crate::graph::Id,
    q: crate::graph::Id,
    k: crate::graph::Id,
    v: crate::graph::Id,
    o: crate::graph::Id,
    post_norm: crate::graph::Id,
    gate: crate::graph::Id,
    up: crate::graph::Id,
    down: crate::graph::Id,
}

#[derive(Clone, Copy)]
struct LayerDims {
    batch: usize,
    seq: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f32,
    scale: f32,
}

/// One decoder layer on `x` (`[batch · seq, hidden]`).
fn layer(
    t: &mut Tape,
    x: crate::graph::Id,
    w: &LayerWeights,
    d: &LayerDims,
    table: crate::graph::Id,
    inverse: crate::graph::Id,
) -> Result<crate::graph::Id> {
    let rows = d.batch * d.seq;
    let h = t.rms_norm(x, w.input_norm, d.eps)?;
    let heads = |t: &mut Tape, proj, n| -> Result<crate::graph::Id> {
        let y = t.linear(h, proj, None)?;
        t.reshape(y, &[d.batch, d.seq, n, d.head_dim])
    };
    let q = heads(t, w.q, d.heads)?;
    let k = heads(t, w.k, d.kv_heads)?;
    let v = heads(t, w.v, d.kv_heads)?;
    let q = t.rope(q, table, inverse)?;
    let k = t.rope(k, table, inverse)?;
    let a = t.causal_attention(q, k, v, d.scale)?;
    let a = t.reshape(a, &[rows, d.heads * d.head_dim])?;
    let o = t.linear(a, w.o, None)?;
    let x = t.add(x, o)?;
    let h = t.rms_norm(x, w.post_norm, d.eps)?;
    let gate = t.linear(h, w.gate, None)?;
    let up = t.linear(h, w.up, None)?;
    let act = t.swiglu(gate, up)?;
    let down = t.linear(act, w.down, None)?;
    t.add(x, down)
}

/// Batches of windows from a token stream: window `b` of every batch starts at a position
/// drawn from a SplitMix64 generator seeded with `seed` (`start = next % (len - seq)`), so a
/// script can draw the same batches.
pub struct TokenWindows {
    tokens: Vec<u32>,
    seq: usize,
    rng: Rng,
}

impl TokenWindows {
    pub fn new(tokens: Vec<u32>, seq: usize, seed: u64) -> Result<TokenWindows> {
        if tokens.len() <= seq {
            return Err(Error::Invalid(format!(
                "{} tokens of data do not fill one window of {seq} and its next token",
                tokens.len()
            )));
        }
        Ok(TokenWindows {
            tokens,
            seq,
            rng: Rng::new(seed),
        })
    }

    /// The next `batch` windows: (ids, targets), each `batch · seq` tokens.
    pub fn next_batch(&mut self, batch: usize) -> (Vec<u32>, Vec<u32>) {
        let span = (self.tokens.len() - self.seq) as u64;
        let mut ids = Vec::with_capacity(batch * self.seq);
        let mut targets = Vec::with_capacity(batch * self.seq);
        for _ in 0..batch {
            let start = (self.rng.next_u64() % span) as usize;
            ids.extend_from_slice(&self.tokens[start..start + self.seq]);
            targets.extend_from_slice(&self.tokens[start + 1..start + self.seq + 1]);
        }
        (ids, targets)
    }

    /// Skips `batches` batches of `batch` windows (resuming a run).
    pub fn skip(&mut self, batches: u64, batch: usize) {
        for _ in 0..batches * batch as u64 {
            self.rng.next_u64();
        }
    }
}
