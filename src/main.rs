//! The `tessera` command line: parses arguments, calls the library, prints.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tessera::gpu::{AdapterReport, Gpu, list_adapters};
use tessera::io::{
    TextStream, Tokenizer, read_tensor_f32, write_png_grid, write_rows_f32, write_tensor_f32,
};
use tessera::models::diffusion::{
    self, GaussianNoise, ModelFiles, Scheduler, SchedulerConfig, SchedulerKind, UNet,
};
use tessera::models::llama::{GenerateOptions, Llama, LoadOptions};
use tessera::models::sampling::SamplerConfig;
use tessera::suite::bench::{self, BenchConfig, BenchReport};
use tessera::suite::check::{self, Summary};
use tessera::suite::{self, Case, DEFAULT_SEED};
use tessera::{DType, Error, Result};

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "WGSL compute kernels on wgpu: check them against f64 references, benchmark them"
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
    Generate(GenerateArgs),
    /// Sample images with a diffusers UNet2DModel and its DDPM / DDIM scheduler.
    Sample(SampleArgs),
    /// Run one UNet forward on a safetensors input (tensor "sample") and write its output.
    UnetEps(UnetEpsArgs),
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
    },
}

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["prompt", "tokens"]))]
struct GenerateArgs {
    /// Model directory: config.json, *.safetensors, tokenizer.json (default: the bundled
    /// demo model in assets/models/).
    #[arg(long, value_name = "DIR")]
    model: Option<std::path::PathBuf>,
    /// Text to continue (tokenised with the model's tokenizer.json).
    #[arg(long)]
    prompt: Option<String>,
    /// Token ids to continue, used exactly as given: "1,5,9".
    #[arg(long, value_delimiter = ',')]
    tokens: Option<Vec<u32>>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// 0 for greedy decoding.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long, default_value_t = 0.9)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Element type of weights and activations (f16 needs SHADER_F16).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"])]
    dtype: String,
    /// KV-cache positions (default: the model's context, at most 4096).
    #[arg(long)]
    max_context: Option<usize>,
    /// Print one JSON object (tokens, text, stats) instead of streaming text.
    #[arg(long)]
    json: bool,
    /// Write the logits that chose each token to a safetensors file (tensor "logits").
    #[arg(long, value_name = "FILE")]
    dump_logits: Option<std::path::PathBuf>,
    /// Print prompt and generation speed (tokens/s) to stderr.
    #[arg(long)]
    stats: bool,
}

#[derive(clap::Args)]
struct SampleArgs {
    /// Model directory: config.json, diffusion_pytorch_model.safetensors and
    /// scheduler_config.json, or the pipeline layout (unet/, scheduler/, model_index.json).
    /// Default: the bundled demo model in assets/models/.
    #[arg(long, value_name = "DIR")]
    model: Option<std::path::PathBuf>,
    /// Override the scheduler class in scheduler_config.json.
    #[arg(long, value_parser = ["ddpm", "ddim"])]
    scheduler: Option<String>,
    /// Inference steps (default: 50 for DDIM, every training timestep for DDPM).
    #[arg(long)]
    steps: Option<usize>,
    /// DDIM's noise level: 0 is deterministic.
    #[arg(long, default_value_t = 0.0)]
    eta: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images to sample at once.
    #[arg(long, default_value_t = 16)]
    count: usize,
    /// Start from this noise (safetensors, f32 tensor "sample" [count, C, H, W]).
    #[arg(long, value_name = "FILE")]
    init_noise: Option<std::path::PathBuf>,
    /// PNG grid of the samples.
    #[arg(long, value_name = "FILE.png", default_value = "samples.png")]
    out: std::path::PathBuf,
    /// Also write the final samples before they are mapped to pixels (tensor "sample").
    #[arg(long, value_name = "FILE")]
    out_raw: Option<std::path::PathBuf>,
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"])]
    dtype: String,
}

#[derive(clap::Args)]
struct UnetEpsArgs {
    #[arg(long, value_name = "DIR")]
    model: std::path::PathBuf,
    #[arg(long)]
    timestep: f64,
    /// safetensors with an f32 tensor "sample" [B, C, H, W].
    #[arg(long, value_name = "FILE")]
    input: std::path::PathBuf,
    /// Where to write the UNet output (tensor "sample").
    #[arg(long, value_name = "FILE")]
    out: std::path::PathBuf,
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"])]
    dtype: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let adapter = cli.adapter.as_deref();
    let outcome = match cli.command {
        Command::Generate(args) => generate(adapter, &args),
        Command::Sample(args) => sample(adapter, &args),
        Command::UnetEps(args) => unet_eps(adapter, &args),
        Command::Info { json } => info(json),
        Command::Check {
            all_adapters,
            seed,
            filter,
            ci,
        } => run_check(adapter, all_adapters, seed, filter.as_deref(), ci),
        Command::Bench {
            quick,
            json,
            seed,
            filter,
        } => run_bench(adapter, quick, json.as_deref(), seed, filter.as_deref()),
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

/// The demo model `generate` uses when no `--model` is given.
fn bundled_model() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/stdlib-byte")
}

fn generate(adapter: Option<&str>, args: &GenerateArgs) -> Result<bool> {
    use std::io::Write;
    let dir = args.model.clone().unwrap_or_else(bundled_model);
    if !dir.join("config.json").is_file() {
        return Err(Error::Invalid(format!(
            "{} is not a model directory (no config.json){}",
            dir.display(),
            if args.model.is_none() {
                "; pass --model DIR"
            } else {
                ""
            }
        )));
    }
    let tokenizer = Tokenizer::from_dir(&dir)?;
    let prompt = match (&args.tokens, &args.prompt) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) => match &tokenizer {
            Some(t) => t.encode(text)?,
            None => {
                return Err(Error::Invalid(format!(
                    "{} has no tokenizer.json: give the prompt as --tokens",
                    dir.display()
                )));
            }
        },
        (None, None) => unreachable!("clap requires one of the two"),
    };
    if prompt.is_empty() {
        return Err(Error::Invalid("the prompt has no tokens".into()));
    }
    let gpu = Gpu::new(adapter)?;
    let options = LoadOptions {
        dtype: args.dtype.parse::<DType>()?,
        max_context: args.max_context,
    };
    let mut model = Llama::load(&gpu, &dir, &options)?;
    let generate = GenerateOptions {
        max_tokens: args.max_tokens,
        sampler: SamplerConfig {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: Some(args.top_p),
            seed: args.seed,
        },
        stop_at_eos: true,
        keep_logits: args.dump_logits.is_some(),
    };
    let mut stream = tokenizer.as_ref().map(TextStream::new);
    let mut stdout = std::io::stdout();
    let out = model.generate(&prompt, &generate, |token| {
        if !args.json
            && let Some(stream) = stream.as_mut()
        {
            print!("{}", stream.push(token)?);
            stdout.flush().ok();
        }
        Ok(())
    })?;
    let text = match &tokenizer {
        Some(t) => t.decode(&out.tokens)?,
        None => String::new(),
    };
    let per_second = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { f64::NAN };
    let prompt_rate = per_second(out.prompt_tokens, out.prompt_seconds);
    let decode_rate = per_second(out.tokens.len(), out.generate_seconds);
    if args.json {
        let json = serde_json::json!({
            "tokens": out.tokens,
            "text": text,
            "prompt_tokens": out.prompt_tokens,
            "stop": out.stop,
            "prompt_tokens_per_second": prompt_rate,
            "generation_tokens_per_second": decode_rate,
        });
        println!("{json}");
    } else if let Some(stream) = stream.as_mut() {
        println!("{}", stream.finish()?);
    } else {
        let ids: Vec<String> = out.tokens.iter().map(u32::to_string).collect();
        println!("{}", ids.join(","));
    }
    if let Some(path) = &args.dump_logits {
        write_rows_f32(path, "logits", &out.logits)?;
    }
    if args.stats {
        eprintln!(
            "prompt: {} tokens in {:.3} s ({prompt_rate:.1} tokens/s); generation: {} tokens \
             in {:.3} s ({decode_rate:.1} tokens/s); stopped at {}; {}",
            out.prompt_tokens,
            out.prompt_seconds,
            out.tokens.len(),
            out.generate_seconds,
            out.stop,
            gpu.report().summary()
        );
    }
    Ok(true)
}

/// The demo model `sample` uses when no `--model` is given.
fn bundled_unet() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/digits-unet")
}

fn sample(adapter: Option<&str>, args: &SampleArgs) -> Result<bool> {
    let dir = args.model.clone().unwrap_or_else(bundled_unet);
    let files = ModelFiles::locate(&dir)?;
    let config = SchedulerConfig::read(&files.scheduler_config)?;
    let kind = args
        .scheduler
        .as_deref()
        .map(str::parse::<SchedulerKind>)
        .transpose()?;
    let effective = kind.unwrap_or(config.kind);
    let steps = args.steps.unwrap_or(match effective {
        SchedulerKind::Ddim => 50,
        SchedulerKind::Ddpm => config.num_train_timesteps(),
    });
    let scheduler = Scheduler::new(config, kind, steps, args.eta)?;
    if args.count == 0 {
        return Err(Error::Invalid("--count must be at least 1".into()));
    }
    let gpu = Gpu::new(adapter)?;
    let unet = UNet::load(&gpu, &files.unet_dir, args.dtype.parse::<DType>()?)?;
    let shape = unet.sample_shape(args.count);
    let mut noise = GaussianNoise::new(args.seed);
    let init = match &args.init_noise {
        Some(path) => {
            let (found, values) = read_tensor_f32(path, "sample")?;
            if found != shape {
                return Err(Error::Invalid(format!(
                    "{}: tensor \"sample\" is {found:?}; this model and --count need {shape:?}",
                    path.display()
                )));
            }
            values
        }
        None => noise.draw(shape.iter().product()),
    };
    let bar = indicatif::ProgressBar::new(steps as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} steps, {per_sec}, {eta}")
            .expect("a valid template"),
    );
    let start = std::time::Instant::now();
    let out = diffusion::sample(
        &unet,
        &scheduler,
        args.count,
        &init,
        &mut noise,
        |done, _| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    write_png_grid(&args.out, &out, shape)?;
    if let Some(path) = &args.out_raw {
        write_tensor_f32(path, "sample", &shape, &out)?;
    }
    eprintln!(
        "{} images, {steps} {effective:?} steps in {seconds:.2} s ({:.2} steps/s) on {}; wrote {}",
        args.count,
        steps as f64 / seconds,
        gpu.report().name,
        args.out.display()
    );
    Ok(true)
}

fn unet_eps(adapter: Option<&str>, args: &UnetEpsArgs) -> Result<bool> {
    let files = ModelFiles::locate(&args.model)?;
    let (shape, values) = read_tensor_f32(&args.input, "sample")?;
    let gpu = Gpu::new(adapter)?;
    let unet = UNet::load(&gpu, &files.unet_dir, args.dtype.parse::<DType>()?)?;
    let batch = shape.first().copied().unwrap_or(0);
    if shape.len() != 4 || batch == 0 || shape[..] != unet.sample_shape(batch)[..] {
        return Err(Error::Invalid(format!(
            "{}: tensor \"sample\" is {shape:?}; the model takes {:?}",
            args.input.display(),
            unet.sample_shape(batch.max(1))
        )));
    }
    let out = diffusion::forward(&unet, batch, &values, args.timestep)?;
    let c = unet.config();
    let out_shape = [batch, c.out_channels, c.sample_size.0, c.sample_size.1];
    write_tensor_f32(&args.out, "sample", &out_shape, &out)?;
    Ok(true)
}

fn info(json: bool) -> Result<bool> {
    let reports: Vec<AdapterReport> = list_adapters().iter().map(AdapterReport::of).collect();
    if reports.is_empty() {
        return Err(Error::NoAdapter {
            backends: std::env::var("WGPU_BACKEND").unwrap_or_else(|_| "all".into()),
        });
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("serialisable")
        );
        return Ok(true);
    }
    for (i, r) in reports.iter().enumerate() {
        let f = &r.features;
        let yes = |b: bool| if b { "yes" } else { "no" };
        let l = &r.limits;
        println!("[{i}] {}", r.name);
        println!(
            "    backend {}, {}, vendor {:#06x} device {:#06x}",
            r.backend, r.device_type, r.vendor_id, r.device_id
        );
        println!("    driver {} {}", r.driver, r.driver_info);
        println!(
            "    shader-f16 {}, subgroup {} (size {}..{}), timestamps {}, cooperative matrix {}",
            yes(f.shader_f16),
            yes(f.subgroup),
            r.subgroup_size[0],
            r.subgroup_size[1],
            yes(f.timestamp_query),
            yes(f.cooperative_matrix)
        );
        for config in &r.cooperative_matrix {
            println!("      cooperative matrix {config}");
        }
        println!(
            "    max buffer {} MiB, max storage binding {} MiB, workgroup memory {} KiB, \
             {} invocations/workgroup, {} workgroups/dimension",
            l.max_buffer_size >> 20,
            l.max_storage_buffer_binding_size >> 20,
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension
        );
    }
    Ok(true)
}

fn selected_cases(filter: Option<&str>, ci_only: bool) -> Vec<Case> {
    suite::cases()
        .into_iter()
        .filter(|c| !ci_only || c.ci)
        .filter(|c| filter.is_none_or(|f| c.name().contains(f)))
        .collect()
}

fn run_check(
    adapter: Option<&str>,
    all_adapters: bool,
    seed: u64,
    filter: Option<&str>,
    ci_only: bool,
) -> Result<bool> {
    let cases = selected_cases(filter, ci_only);
    if cases.is_empty() {
        return Err(Error::Invalid(format!(
            "no case matches the filter {filter:?}"
        )));
    }
    let gpus: Vec<Result<Gpu>> = if all_adapters {
        let adapters = list_adapters();
        if adapters.is_empty() {
            return Err(Error::NoAdapter {
                backends: "all".into(),
            });
        }
        adapters.into_iter().map(Gpu::open).collect()
    } else {
        vec![Gpu::new(adapter)]
    };
    let mut all_passed = true;
    for gpu in gpus {
        let gpu = match gpu {
            Ok(gpu) => gpu,
            Err(e) if all_adapters => {
                println!("adapter could not be opened: {e}\n");
                all_passed = false;
                continue;
            }
            Err(e) => return Err(e),
        };
        println!("adapter: {}", gpu.report().summary());
        println!("seed: {seed} ({} cases)\n", cases.len());
        println!("{}", check::format_header());
        let mut summary = Summary::default();
        for case in &cases {
            let result = check::check_case(&gpu, case, seed);
            println!("{}", check::format_row(&result));
            summary.add(&result);
        }
        println!(
            "\n{} passed, {} failed, {} skipped on {}\n",
            summary.passed,
            summary.failed,
            summary.skipped,
            gpu.report().name
        );
        all_passed &= summary.failed == 0;
    }
    Ok(all_passed)
}

fn run_bench(
    adapter: Option<&str>,
    quick: bool,
    json: Option<&std::path::Path>,
    seed: u64,
    filter: Option<&str>,
) -> Result<bool> {
    let config = BenchConfig::new(quick);
    let cases: Vec<Case> = selected_cases(filter, false)
        .into_iter()
        .filter(|c| config.includes(c))
        .collect();
    if cases.is_empty() {
        return Err(Error::Invalid(format!(
            "no benchmark case matches the filter {filter:?}"
        )));
    }
    let gpu = Gpu::new(adapter)?;
    println!("adapter: {}", gpu.report().summary());
    println!("timing: {:?}, seed {seed}", gpu.timing_method());
    let copy = bench::measure_copy(&gpu, &config)?;
    println!(
        "copy bandwidth: {:.2} GB/s ({} MiB copied in {:.1} us)\n",
        copy.gbytes_per_second,
        copy.bytes >> 20,
        copy.median_seconds * 1e6
    );
    println!("{}", bench::format_header());
    let mut report = BenchReport::new(&gpu, &config, copy);
    let mut all_ran = true;
    for case in &cases {
        match bench::bench_case(&gpu, case, seed, &config, &copy) {
            Ok(row) => {
                println!("{}", bench::format_row(&row));
                report.cases.push(row);
            }
            Err(e @ (Error::MissingFeature { .. } | Error::TooLarge { .. })) => {
                println!(
                    "{:<11} {:<5} {:<34} skip: {e}",
                    case.kernel(),
                    case.dtype,
                    case.shape()
                );
            }
            Err(e) => {
                println!(
                    "{:<11} {:<5} {:<34} error: {e}",
                    case.kernel(),
                    case.dtype,
                    case.shape()
                );
                all_ran = false;
            }
        }
    }
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report).expect("serialisable");
        std::fs::write(path, text + "\n").map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        println!("\nwrote {}", path.display());
    }
    Ok(all_ran)
}
