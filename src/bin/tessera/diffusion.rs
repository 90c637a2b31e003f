//! `tessera sample` and `tessera unet-eps`.

use tessera::gpu::Gpu;
use tessera::io::{read_tensor_f32, write_png_grid, write_tensor_f32};
use tessera::models::diffusion::{
    self, GaussianNoise, ModelFiles, Scheduler, SchedulerConfig, SchedulerKind, UNet,
};
use tessera::{DType, Error, Result};

#[derive(clap::Args)]
pub struct SampleArgs {
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
    /// Afterwards, time each kernel of one UNet forward and print the table to stderr.
    #[arg(long)]
    profile: bool,
}

#[derive(clap::Args)]
pub struct UnetEpsArgs {
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

/// The demo model `sample` uses when no `--model` is given.
fn bundled_unet() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/digits-unet")
}

pub fn sample(adapter: Option<&str>, args: &SampleArgs) -> Result<bool> {
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
    super::kernels::tune_if_needed(&gpu)?;
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
    if args.profile {
        let run = unet.prepare(args.count)?;
        run.sample.write_f32(&out)?;
        let t = scheduler.timesteps().last().copied().unwrap_or(0);
        let times = run.profile(t as f64, 5)?;
        crate::print_profile(&format!("one UNet forward at batch {}", args.count), &times);
    }
    Ok(true)
}

pub fn unet_eps(adapter: Option<&str>, args: &UnetEpsArgs) -> Result<bool> {
    let files = ModelFiles::locate(&args.model)?;
    let (shape, values) = read_tensor_f32(&args.input, "sample")?;
    let gpu = Gpu::new(adapter)?;
    super::kernels::tune_if_needed(&gpu)?;
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
