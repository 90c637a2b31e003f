//! A whole training run of the decoder on a text file, as `tessera train-lm` drives it:
//! the data as token windows, fresh or given starting weights, AdamW on a warm-up + cosine
//! schedule with clipping, a loss log, checkpoints in the transformers layout every so many
//! steps and at the end, and resumption from such a checkpoint with the optimizer's state.

use std::path::{Path, PathBuf};

use super::config::LlamaConfig;
use super::train::{self, LmShape, LmTrainer, TokenWindows};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::ConfigJson;
use crate::io::tokenizer::Tokenizer;
use crate::kernels::training::AdamW;
use crate::models::train::{
    LossLog, LossScaler, Optimizer, Schedule, io_error, read_json, read_state, write_json,
};
use crate::tensor::DType;

/// The byte-level tokenizer of the bundled demo model: ids 0-255 are the bytes, 256 `<s>`,
/// 257 `</s>`. A fresh model trains on bytes and is saved with it.
const BYTE_TOKENIZER: &str = include_str!("../../../assets/models/stdlib-byte/tokenizer.json");

/// The largest data file a run reads.
pub const MAX_DATA_BYTES: u64 = 1 << 30;

/// What `train-lm` was asked for.
#[derive(Clone, Debug)]
pub struct LmRunOptions {
    /// The text to train on.
    pub data: PathBuf,
    /// Where checkpoints, the loss log and the optimizer state go.
    pub out: PathBuf,
    /// Start from this checkpoint instead of fresh weights of the demo model's shape.
    pub init: Option<PathBuf>,
    /// Continue the run saved in `out` (its weights, optimizer state, step, batch shape and
    /// data order) up to `steps`.
    pub resume: bool,
    /// Total steps of the run (the schedule's length).
    pub steps: u64,
    /// Stop after this step, short of `steps` (to go on later with `resume`).
    pub stop_at: Option<u64>,
    pub batch: usize,
    pub seq: usize,
    /// Peak learning rate.
    pub lr: f32,
    pub warmup: u64,
    pub weight_decay: f32,
    /// Clip the global gradient norm to this.
    pub clip_norm: Option<f32>,
    /// Recompute each layer's activations in the backward pass.
    pub checkpointing: bool,
    /// The passes' element type: f32, or f16 for mixed precision with dynamic loss scaling
    /// (f32 master weights and optimizer state).
    pub dtype: DType,
    /// Seeds the fresh weights and the order of the windows.
    pub seed: u64,
    /// Save a checkpoint every this many steps (0: only at the end).
    pub save_every: u64,
}

/// One step's figures, for progress displays.
#[derive(Clone, Copy, Debug)]
pub struct LmProgress {
    pub step: u64,
    pub steps: u64,
    pub loss: f64,
    pub lr: f32,
    pub grad_norm: f64,
    /// The gradients overflowed: nothing changed (f16 with loss scaling).
    pub skipped: bool,
    /// The loss scale for the next step (1 in f32).
    pub loss_scale: f32,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct LmRunSummary {
    /// The step the run started from (0 unless resumed).
    pub start_step: u64,
    pub steps: u64,
    pub parameters: usize,
    /// Bytes of the plan's activations and gradients.
    pub scratch_bytes: u64,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    pub seconds: f64,
}

/// The run's fixed settings, kept in `trainer_state.json` so `--resume` draws the same
/// batches.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct RunState {
    step: u64,
    batch: usize,
    seq: usize,
    seed: u64,
    /// The loss scale of an f16 run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    loss_scale: Option<f32>,
}

/// The demo model's shape (assets/models/stdlib-byte) as a transformers config.
fn fresh_config() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "attention_bias": false,
        "bos_token_id": 256,
        "eos_token_id": 257,
        "head_dim": 32,
        "hidden_act": "silu",
        "hidden_size": 192,
        "intermediate_size": 512,
        "max_position_embeddings": 512,
        "mlp_bias": false,
        "num_attention_heads": 6,
        "num_hidden_layers": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": false,
        "vocab_size": 258,
        "torch_dtype": "float32"
    })
}

/// The data as tokens: through the model's tokenizer when it has one, else as bytes.
fn read_tokens(path: &Path, tokenizer: Option<&Tokenizer>) -> Result<Vec<u32>> {
    let mut file = crate::io::files::open_regular(path, "training data")?;
    let len = file.metadata().map_err(io_error(path))?.len();
    if len > MAX_DATA_BYTES {
        return Err(Error::Invalid(format!(
            "{}: {len} bytes of data is over the {MAX_DATA_BYTES}-byte limit",
            path.display()
        )));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(io_error(path))?;
    match tokenizer {
        None => Ok(bytes.iter().map(|&b| u32::from(b)).collect()),
        Some(t) => {
            let text = String::from_utf8(bytes)
                .map_err(|e| Error::Invalid(format!("{}: not UTF-8 text: {e}", path.display())))?;
            t.encode_plain(&text)
        }
    }
}

/// Runs training as `options` say, calling `on_step` after every step.
pub fn run(
    gpu: &Gpu,
    options: &LmRunOptions,
    mut on_step: impl FnMut(&LmProgress),
) -> Result<LmRunSummary> {
    let out = &options.out;
    // Where the weights, config and tokenizer come from.
    let source: Option<&Path> = if options.resume {
        Some(out)
    } else {
        options.init.as_deref()
    };
    let (config_json, mut state) = match source {
        Some(dir) => {
            let json = read_json(&dir.join("config.json"))?;
            let state = if options.resume {
                read_state::<RunState>(&dir.join("trainer_state.json"))?
            } else {
                RunState {
                    step: 0,
                    batch: options.batch,
                    seq: options.seq,
                    seed: options.seed,
                    loss_scale: None,
                }
            };
            (json, state)
        }
        None => (
            fresh_config(),
            RunState {
                step: 0,
                batch: options.batch,
                seq: options.seq,
                seed: options.seed,
                loss_scale: None,
            },
        ),
    };
    let config = LlamaConfig::from_json(&ConfigJson::parse(
        &out.join("config.json").display().to_string(),
        &config_json.to_string(),
    )?)?;
    train::check_trainable(&config)?;
    if state.seq > config.max_position_embeddings {
        return Err(Error::Invalid(format!(
            "windows of {} tokens are longer than the model's {} positions",
            state.seq, config.max_position_embeddings
        )));
    }
    let tokenizer = match source {
        Some(dir) => Tokenizer::from_dir(dir)?,
        None => None,
    };
    let tokens = read_tokens(&options.data, tokenizer.as_ref())?;
    if let Some(bad) = tokens.iter().find(|&&t| t as usize >= config.vocab_size) {
        return Err(Error::Invalid(format!(
            "the data holds token {bad}, outside the model's vocabulary of {}",
            config.vocab_size
        )));
    }
    let mut windows = TokenWindows::new(tokens, state.seq, state.seed)?;
    windows.skip(state.step, state.batch);

    let weights = match source {
        Some(dir) => train::read_weights(&config, dir)?,
        None => train::initial_weights(&config, state.seed),
    };
    let adamw = AdamW {
        lr: options.lr,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: options.weight_decay,
    };
    let shape = LmShape {
        batch: state.batch,
        seq: state.seq,
        checkpointing: options.checkpointing,
        dtype: options.dtype,
    };
    let mut trainer = LmTrainer::new(
        gpu,
        &config,
        &weights,
        shape,
        Optimizer::new(adamw, options.clip_norm),
    )?;
    if options.dtype != DType::F32 {
        // PyTorch's GradScaler defaults: 2^16, doubled after 2000 good steps in a row.
        let scale = state.loss_scale.unwrap_or(65536.0);
        trainer = trainer.with_loss_scaling(LossScaler::new(scale, 2000))?;
    }
    if options.resume {
        trainer.load_moments(out)?;
        trainer.optimizer.steps = state.step;
    }
    std::fs::create_dir_all(out).map_err(io_error(out))?;
    let tokenizer_json = match source {
        Some(dir) if dir.join("tokenizer.json").is_file() => crate::io::files::read_text(
            &dir.join("tokenizer.json"),
            "tokenizer",
            crate::io::files::MAX_JSON_BYTES,
        )?,
        _ => BYTE_TOKENIZER.to_string(),
    };
    crate::models::train::write_atomically(&out.join("tokenizer.json"), tokenizer_json.as_bytes())?;

    let mut log = LossLog::open(out, state.step == 0)?;
    let schedule = Schedule {
        peak: options.lr,
        warmup: options.warmup,
        total: options.steps,
        floor: 0.1,
    };
    let save = |trainer: &LmTrainer, state: &RunState| -> Result<()> {
        let mut json = config_json.clone();
        if let Some(map) = json.as_object_mut() {
            map.insert("torch_dtype".into(), "float32".into());
            map.remove("dtype");
        }
        trainer.save(out, &json, DType::F32, true)?;
        write_json(&out.join("trainer_state.json"), state)
    };

    let started = std::time::Instant::now();
    let start_step = state.step;
    let (mut first_loss, mut last_loss) = (None, None);
    let stop = options.stop_at.unwrap_or(options.steps).min(options.steps);
    while state.step < stop {
        let step = state.step + 1;
        let (ids, targets) = windows.next_batch(state.batch);
        let lr = schedule.rate(step);
        let (loss, update) = trainer.step(&ids, &targets, lr)?;
        crate::error::require_finite(&[loss as f32], || {
            format!("the training loss at step {step}")
        })?;
        state.step = step;
        if options.dtype != DType::F32 {
            state.loss_scale = Some(trainer.loss_scale());
        }
        first_loss.get_or_insert(loss);
        last_loss = Some(loss);
        log.write(step, loss, &update)?;
        on_step(&LmProgress {
            step,
            steps: options.steps,
            loss,
            lr,
            grad_norm: update.grad_norm,
            skipped: update.skipped,
            loss_scale: trainer.loss_scale(),
        });
        if options.save_every > 0 && step % options.save_every == 0 && step < stop {
            save(&trainer, &state)?;
        }
    }
    save(&trainer, &state)?;
    Ok(LmRunSummary {
        start_step,
        steps: state.step,
        parameters: trainer.parameters().iter().map(|p| p.value.len()).sum(),
        scratch_bytes: trainer.scratch_bytes(),
        first_loss,
        last_loss,
        seconds: started.elapsed().as_secs_f64(),
    })
}
