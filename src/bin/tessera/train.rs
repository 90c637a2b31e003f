//! `tessera train-lm`.

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
        seed: args.seed,
        save_every: args.save_every,
    };
    let bar = indicatif::ProgressBar::new(args.stop_at.unwrap_or(args.steps).min(args.steps));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} steps, {per_sec}, ETA {eta}, {msg}",
        )
        .expect("a valid template"),
    );
    let summary = train_run::run(&gpu, &options, |p| {
        bar.set_position(p.step);
        bar.set_message(format!("loss {:.4}, lr {:.2e}", p.loss, p.lr));
    })?;
    bar.finish_and_clear();
    let done = summary.steps - summary.start_step;
    match (summary.first_loss, summary.last_loss) {
        (Some(first), Some(last)) => println!(
            "trained {} parameters for steps {}..{} ({done} steps, {:.2} steps/s, {:.1} MiB of activations and gradients): loss {first:.4} -> {last:.4}; wrote {}",
            summary.parameters,
            summary.start_step + 1,
            summary.steps,
            done as f64 / summary.seconds.max(1e-9),
            summary.scratch_bytes as f64 / (1 << 20) as f64,
            args.out.display()
        ),
        _ => println!(
            "the run in {} is already at step {}; nothing to do",
            args.out.display(),
            summary.steps
        ),
    }
    Ok(true)
}
