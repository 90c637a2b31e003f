//! `tessera train-lm` and `tessera train-ddpm`.

use tessera::Result;
use tessera::gpu::Gpu;
use tessera::models::llama::train_run::{self, LmRunOptions};

#[derive(clap::Args)]
pub struct TrainLmArgs {
    /// Text file to train on (through the model's tokenizer; bytes for a fresh model).
    #[arg(long, value_name = "FILE")]
    data: std::path::PathBuf,
    /// Directory for the checkpoint (config.json, model.safetensors, tokenizer.json), the
    /// optimizer state and loss.csv.
    #[arg(long, value_name = "DIR")]
    out: std::path::PathBuf,
    /// Start from this plain-Llama checkpoint instead of fresh weights (the bundled demo
    /// model's shape: 258 byte tokens, 4 layers of width 192).
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    init: Option<std::path::PathBuf>,
    /// Continue the run saved in --out (weights, optimizer state, step, batch shape, data
    /// order) up to --steps.
    #[arg(long)]
    resume: bool,
    /// Total optimizer steps.
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Stop after this step, short of --steps (go on later with --resume).
    #[arg(long, value_name = "STEP")]
    stop_at: Option<u64>,
    /// Windows per batch.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Tokens per window.
    #[arg(long, default_value_t = 128)]
    seq: usize,
    /// Peak learning rate (linear warm-up, then cosine decay to 10% at --steps).
    #[arg(long, default_value_t = 3e-3)]
    lr: f32,
    #[arg(long, default_value_t = 100)]
    warmup: u64,
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f32,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    clip: f32,
    /// Recompute each layer's activations in the backward pass (less memory, more time).
    #[arg(long)]
    checkpointing: bool,
    /// The passes' element type: f16 is mixed precision (f32 master weights and optimizer
    /// state, dynamic loss scaling that skips the steps whose gradients overflow).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"])]
    dtype: String,
    /// Seeds the fresh weights and the order of the windows.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Save a checkpoint every this many steps as well as at the end (0: only at the end).
    #[arg(long, default_value_t = 200)]
    save_every: u64,
}

pub fn train_lm(adapter: Option<&str>, args: &TrainLmArgs) -> Result<bool> {
    let gpu = Gpu::new(adapter)?;
    let options = LmRunOptions {
        data: args.data.clone(),
        out: args.out.clone(),
        init: args.init.clone(),
        resume: args.resume,
        steps: args.steps,
        stop_at: args.stop_at,
        batch: args.batch,
        seq: args.seq,
        lr: args.lr,
        warmup: args.warmup,
        weight_decay: args.weight_decay,
        clip_norm: (args.clip > 0.0).then_some(args.clip),
        checkpointing: args.checkpointing,
        dtype: if args.dtype == "f16" {
            tessera::DType::F16
        } else {
            tessera::DType::F32
        },
        seed: args.seed,
        save_every: args.save_every,
    };
    let bar = progress(args.stop_at.unwrap_or(args.steps).min(args.steps));
    let summary = train_run::run(&gpu, &options, |p| {
        bar.set_position(p.step);
        let scale = match p.loss_scale {
            1.0 => String::new(),
            scale => format!(", loss scale {scale}"),
        };
        let skipped = if p.skipped {
            " (skipped: overflow)"
        } else {
            ""
        };
        bar.set_message(format!(
            "loss {:.4}, lr {:.2e}{scale}{skipped}",
            p.loss, p.lr
        ));
    })?;
    bar.finish_and_clear();
    report(
        summary.parameters,
        summary.start_step,
        summary.steps,
        summary.seconds,
        summary.scratch_bytes,
        summary.first_loss.zip(summary.last_loss),
        &args.out,
    );
    Ok(true)
}

#[derive(clap::Args)]
pub struct TrainDdpmArgs {
    /// `digits` (scikit-learn's 8x8 digits, bundled) or a safetensors file with "images"
    /// [N, H, W] or [N, C, H, W] in [-1, 1].
    #[arg(long, default_value = "digits")]
    data: String,
    /// Directory for the model (config.json, diffusion_pytorch_model.safetensors,
    /// scheduler_config.json), the optimizer state and loss.csv.
    #[arg(long, value_name = "DIR")]
    out: std::path::PathBuf,
    /// Start from this diffusers UNet directory instead of fresh weights of the digits
    /// architecture.
    #[arg(long, value_name = "DIR", conflicts_with = "resume")]
    init: Option<std::path::PathBuf>,
    /// Continue the run saved in --out up to --steps.
    #[arg(long)]
    resume: bool,
    /// The digits' size: 8 (as they are) or 16 (bilinear 2x, as tools/train_digits.py).
    #[arg(long, default_value_t = 8, value_parser = clap::builder::ValueParser::new(size_8_or_16))]
    size: usize,
    /// Total optimizer steps.
    #[arg(long, default_value_t = 3000)]
    steps: u64,
    /// Stop after this step, short of --steps (go on later with --resume).
    #[arg(long, value_name = "STEP")]
    stop_at: Option<u64>,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Peak learning rate (linear warm-up, then cosine decay to 10% at --steps).
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    #[arg(long, default_value_t = 100)]
    warmup: u64,
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f32,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    clip: f32,
    /// Decay of the moving average of the weights the model is saved as (0: save the
    /// weights themselves).
    #[arg(long, default_value_t = 0.995)]
    ema: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Save a checkpoint every this many steps as well as at the end (0: only at the end).
    #[arg(long, default_value_t = 250)]
    save_every: u64,
    /// Afterwards, time each kernel of one training step and print the table to stderr.
    #[arg(long)]
    profile: bool,
}

pub fn train_ddpm(adapter: Option<&str>, args: &TrainDdpmArgs) -> Result<bool> {
    use tessera::models::diffusion::train_run::{self, DdpmRunOptions};
    let gpu = Gpu::new(adapter)?;
    let options = DdpmRunOptions {
        data: args.data.clone(),
        out: args.out.clone(),
        init: args.init.clone(),
        resume: args.resume,
        size: args.size,
        steps: args.steps,
        stop_at: args.stop_at,
        batch: args.batch,
        lr: args.lr,
        warmup: args.warmup,
        weight_decay: args.weight_decay,
        clip_norm: (args.clip > 0.0).then_some(args.clip),
        ema: (args.ema > 0.0).then_some(args.ema),
        seed: args.seed,
        save_every: args.save_every,
        profile: args.profile,
    };
    let bar = progress(args.stop_at.unwrap_or(args.steps).min(args.steps));
    let summary = train_run::run(&gpu, &options, |p| {
        bar.set_position(p.step);
        bar.set_message(format!("loss {:.4}, lr {:.2e}", p.loss, p.lr));
    })?;
    if let Some(times) = &summary.profile {
        crate::print_profile("one training step (forward and backward passes)", times);
    }
    bar.finish_and_clear();
    report(
        summary.parameters,
        summary.start_step,
        summary.steps,
        summary.seconds,
        summary.scratch_bytes,
        summary.first_loss.zip(summary.last_loss),
        &args.out,
    );
    Ok(true)
}

fn progress(steps: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(steps);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} steps, {per_sec}, ETA {eta}, {msg}",
        )
        .expect("a valid template"),
    );
    bar
}

/// Prints what a run did.
fn report(
    parameters: usize,
    start_step: u64,
    steps: u64,
    seconds: f64,
    scratch_bytes: u64,
    losses: Option<(f64, f64)>,
    out: &std::path::Path,
) {
    let done = steps - start_step;
    match losses {
        Some((first, last)) => println!(
            "trained {parameters} parameters for steps {}..{steps} ({done} steps, {:.2} steps/s, {:.1} MiB of activations and gradients): loss {first:.4} -> {last:.4}; wrote {}",
            start_step + 1,
            done as f64 / seconds.max(1e-9),
            scratch_bytes as f64 / (1 << 20) as f64,
            out.display()
        ),
        None => println!(
            "the run in {} is already at step {steps}; nothing to do",
            out.display()
        ),
    }
}

fn size_8_or_16(s: &str) -> std::result::Result<usize, String> {
    match s {
        "8" => Ok(8),
        "16" => Ok(16),
        _ => Err("the digits come at 8 or 16".to_string()),
    }
}
