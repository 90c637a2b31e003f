//! `tessera sample` and `tessera unet-eps`.

use tessera::error::require_finite;
use tessera::gpu::Gpu;
use tessera::io::{read_tensor_f32_if, write_png_grid, write_tensor_f32};
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
    /// Images to sample at once (default: the batch of --init-noise, else 16).
    #[arg(long)]
    count: Option<usize>,
    /// Start from this noise (safetensors, f32 tensor "sample" [count, C, H, W]).
    #[arg(long, value_name = "FILE")]
    init_noise: Option<std::path::PathBuf>,
    /// PNG grid of the samples (default: samples.png, unless only --out-raw is given).
    #[arg(long, value_name = "FILE.png")]
    out: Option<std::path::PathBuf>,
    /// Write the final samples before they are mapped to pixels (tensor "sample").
    #[arg(long, value_name = "FILE")]
    out_raw: Option<std::path::PathBuf>,
    /// Write results even if they hold NaN or infinity (by default that is an error).
    #[arg(long)]
    allow_nonfinite: bool,
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
    /// Accept NaN or infinity in the input and write them in the output.
    #[arg(long)]
    allow_nonfinite: bool,
}

/// The largest timestep `unet-eps` takes (diffusers' models train on 1000).
const MAX_TIMESTEP: f64 = 1e6;

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
    if args.count == Some(0) {
        return Err(Error::Invalid("--count must be at least 1".into()));
    }
    // Without --out, the grid goes to samples.png unless only the raw samples were asked for.
    let png = match (&args.out, &args.out_raw) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(_)) => None,
        (None, None) => Some("samples.png".into()),
    };
    let gpu = Gpu::new(adapter)?;
    super::kernels::tune_if_needed(&gpu)?;
    let unet = UNet::load(&gpu, &files.unet_dir, args.dtype.parse::<DType>()?)?;
    // The initial noise (unless given) and then each step's noise come from one stream.
    let mut noise = GaussianNoise::new(args.seed);
    let (count, init) = match &args.init_noise {
        Some(path) => {
            // The noise's batch is the count; its shape is checked before it is read whole.
            let (shape, values) = read_tensor_f32_if(path, "sample", |found| {
                let batch = found.first().copied().unwrap_or(0);
                let want = unet.sample_shape(args.count.unwrap_or(batch));
                if found != want || batch == 0 {
                    return Err(Error::Invalid(format!(
                        "{}: tensor \"sample\" is {found:?}; this model{} needs {want:?}",
                        path.display(),
                        if args.count.is_some() {
                            " and --count"
                        } else {
                            ""
                        }
                    )));
                }
                unet.check_batch(batch).map_err(|e| {
                    Error::Invalid(format!("{}: a batch of {batch}: {e}", path.display()))
                })
            })?;
            if !args.allow_nonfinite {
                require_finite(&values, || {
                    format!("{} (tensor \"sample\")", path.display())
                })?;
            }
            (shape[0], values)
        }
        None => {
            let count = args.count.unwrap_or(16);
            unet.check_batch(count)
                .map_err(|e| Error::Invalid(format!("--count {count}: {e}")))?;
            let len = unet.sample_shape(count).iter().product();
            (count, noise.draw(len))
        }
    };
    let shape = unet.sample_shape(count);
    let bar = indicatif::ProgressBar::new(steps as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} steps, {per_sec}, {eta}")
            .expect("a valid template"),
    );
    let start = std::time::Instant::now();
    let check_finite = !args.allow_nonfinite;
    let out = diffusion::sample(
        &unet,
        &scheduler,
        count,
        &init,
        &mut noise,
        check_finite,
        |done, _| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    if !args.allow_nonfinite {
        require_finite(&out, || format!("the samples after {steps} steps"))?;
    }
    let mut wrote = Vec::new();
    if let Some(path) = &png {
        write_png_grid(path, &out, shape)?;
        wrote.push(path.display().to_string());
    }
    if let Some(path) = &args.out_raw {
        write_tensor_f32(path, "sample", &shape, &out)?;
        wrote.push(path.display().to_string());
    }
    eprintln!(
        "{count} images, {steps} {effective:?} steps in {seconds:.2} s ({:.2} steps/s) on {}; wrote {}",
        steps as f64 / seconds,
        gpu.report().name,
        wrote.join(" and ")
    );
    if args.profile {
        let run = unet.prepare(count)?;
        run.sample.write_f32(&out)?;
        let t = scheduler.timesteps().last().copied().unwrap_or(0);
        let times = run.profile(t as f64, 5)?;
        crate::print_profile(&format!("one UNet forward at batch {count}"), &times);
    }
    Ok(true)
}

pub fn unet_eps(adapter: Option<&str>, args: &UnetEpsArgs) -> Result<bool> {
    if !(args.timestep.is_finite() && (0.0..=MAX_TIMESTEP).contains(&args.timestep)) {
        return Err(Error::Invalid(format!(
            "--timestep {} must be a finite number between 0 and {MAX_TIMESTEP}",
            args.timestep
        )));
    }
    let files = ModelFiles::locate(&args.model)?;
    let gpu = Gpu::new(adapter)?;
    super::kernels::tune_if_needed(&gpu)?;
    let unet = UNet::load(&gpu, &files.unet_dir, args.dtype.parse::<DType>()?)?;
    let (shape, values) = read_tensor_f32_if(&args.input, "sample", |shape| {
        let batch = shape.first().copied().unwrap_or(0);
        if shape.len() != 4 || batch == 0 || shape[..] != unet.sample_shape(batch)[..] {
            return Err(Error::Invalid(format!(
                "{}: tensor \"sample\" is {shape:?}; the model takes {:?}",
                args.input.display(),
                unet.sample_shape(batch.max(1))
            )));
        }
        unet.check_batch(batch).map_err(|e| {
            Error::Invalid(format!("{}: a batch of {batch}: {e}", args.input.display()))
        })
    })?;
    if !args.allow_nonfinite {
        require_finite(&values, || {
            format!("{} (tensor \"sample\")", args.input.display())
        })?;
    }
    let batch = shape[0];
    let out = diffusion::forward(&unet, batch, &values, args.timestep)?;
    if !args.allow_nonfinite {
        require_finite(&out, || "the UNet output".to_string())?;
    }
    let c = unet.config();
    let out_shape = [batch, c.out_channels, c.sample_size.0, c.sample_size.1];
    write_tensor_f32(&args.out, "sample", &out_shape, &out)?;
    Ok(true)
}
