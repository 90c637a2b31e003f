//! The `tessera` command line: parses arguments, calls the library, prints. One module per
//! group of subcommands.

mod diffusion;
mod generate;
mod kernels;
mod serve;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tessera::suite::DEFAULT_SEED;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "WGSL compute kernels on wgpu, checked against f64 references and benchmarked; \
             a LLaMA-family decoder and a diffusion UNet built from them"
)]
struct Cli {
    /// Adapter to use: an index from `tessera info` or a substring of its name
    /// (default: WGPU_ADAPTER_NAME, else the first discrete, integrated, virtual, CPU adapter).
    /// WGPU_BACKEND (vulkan, metal, dx12, gl) limits which backends are searched.
    #[arg(long, global = true)]
    adapter: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text with a LLaMA-family checkpoint (Llama, Mistral, Qwen2).
    Generate(generate::GenerateArgs),
    /// Serve a decoder over OpenAI's HTTP API (completions, chat, streaming), many requests
    /// batched together.
    Serve(serve::ServeArgs),
    /// Chat with a decoder in the terminal, through its chat template.
    Chat(serve::ChatArgs),
    /// Train a plain-Llama decoder on a text file (fresh byte-level weights or a given
    /// checkpoint) and write a transformers checkpoint.
    TrainLm(train::TrainLmArgs),
    /// Train a diffusers UNet2DModel from scratch (or from a checkpoint) on the bundled
    /// digits or other images with the DDPM loss, and write a model `sample` loads.
    TrainDdpm(train::TrainDdpmArgs),
    /// Sample images with a diffusers UNet2DModel and its DDPM / DDIM scheduler.
    Sample(diffusion::SampleArgs),
    /// Run one UNet forward on a safetensors input (tensor "sample") and write its output.
    UnetEps(diffusion::UnetEpsArgs),
    /// List every adapter wgpu sees: backend, driver, features, limits.
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run every kernel case and compare with its f64 reference; exit 1 on any failure.
    Check {
        /// Check every adapter in turn instead of one.
        #[arg(long, conflicts_with = "adapter")]
        all_adapters: bool,
        /// Seed for the random inputs.
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
        /// Only cases whose name contains this text (e.g. "matmul f16").
        #[arg(long)]
        filter: Option<String>,
        /// Only the small subset `cargo test` runs.
        #[arg(long)]
        ci: bool,
        /// Force every automatic kernel choice to this path where it is a candidate
        /// (scalar, wide, coop); cases that name their path keep it.
        #[arg(long, value_parser = ["scalar", "wide", "coop"])]
        path: Option<String>,
    },
    /// Time the kernel paths that compete on this adapter (scalar or wide vs cooperative
    /// matrices) and cache the fastest correct one for `Auto` choices (see `tessera info`).
    Tune {
        /// Seed for the random inputs.
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
    },
    /// Time the kernel cases; report time, GFLOP/s, GB/s and % of the copy bandwidth.
    Bench {
        /// Fewer cases and samples.
        #[arg(long)]
        quick: bool,
        /// Also write the adapter description and every figure to this JSON file.
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
        /// Seed for the random inputs.
        #[arg(long, default_value_t = DEFAULT_SEED)]
        seed: u64,
        /// Only cases whose name contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Time whole models instead of kernels: a TinyLlama-1.1B-shaped decoder (prefill and
        /// decode tokens/s) and a ddpm-cifar10-32-shaped UNet (steps/s at batch 1 and 64),
        /// synthetic weights, f32 and f16. With --quick, small shapes.
        /// (With --filter: only the groups of rows whose name contains it: decoder, batched
        /// decode, packed decode, moe decode, unet.)
        #[arg(long)]
        models: bool,
        /// Force every automatic kernel choice to this path where it is a candidate
        /// (scalar, wide, coop); cases that name their path keep it.
        #[arg(long, value_parser = ["scalar", "wide", "coop"])]
        path: Option<String>,
    },
}

/// Prints a `--profile` table: each kernel's calls, time and share of the total.
fn print_profile(what: &str, times: &[tessera::graph::KernelTime]) {
    let total: f64 = times.iter().map(|k| k.seconds).sum();
    eprintln!(
        "profile of {what} ({:.3} ms, one pass per call):",
        total * 1e3
    );
    eprintln!(
        "  {:<28} {:>6} {:>11} {:>7} {:>14}",
        "kernel", "calls", "ms", "share", "weights read"
    );
    for k in times {
        let bytes = k.weight_bytes.map_or(String::new(), |b| format!("{b} B"));
        eprintln!(
            "  {:<28} {:>6} {:>11.3} {:>6.1}% {:>14}",
            k.kernel,
            k.calls,
            k.seconds * 1e3,
            100.0 * k.seconds / total,
            bytes
        );
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let adapter = cli.adapter.as_deref();
    let outcome = match cli.command {
        Command::Generate(args) => generate::generate(adapter, &args),
        Command::Serve(args) => serve::serve(adapter, &args),
        Command::Chat(args) => serve::chat(adapter, &args),
        Command::TrainLm(args) => train::train_lm(adapter, &args),
        Command::TrainDdpm(args) => train::train_ddpm(adapter, &args),
        Command::Sample(args) => diffusion::sample(adapter, &args),
        Command::UnetEps(args) => diffusion::unet_eps(adapter, &args),
        Command::Info { json } => kernels::info(json),
        Command::Check {
            all_adapters,
            seed,
            filter,
            ci,
            path,
        } => kernels::run_check(
            adapter,
            all_adapters,
            seed,
            filter.as_deref(),
            ci,
            path.as_deref(),
        ),
        Command::Tune { seed } => kernels::run_tune(adapter, seed),
        Command::Bench {
            quick,
            json,
            seed: _,
            filter,
            models: true,
            path,
        } => kernels::run_model_bench(
            adapter,
            quick,
            json.as_deref(),
            filter.as_deref(),
            path.as_deref(),
        ),
        Command::Bench {
            quick,
            json,
            seed,
            filter,
            models: false,
            path,
        } => kernels::run_bench(
            adapter,
            quick,
            json.as_deref(),
            seed,
            filter.as_deref(),
            path.as_deref(),
        ),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
