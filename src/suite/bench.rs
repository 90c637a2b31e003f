//! `tessera bench` and `cargo bench`: each case timed on one adapter, reported next to the
//! copy bandwidth measured in the same run.

use serde::Serialize;

use super::{BenchTier, Case, Prepared};
use crate::error::Result;
use crate::gpu::{AdapterReport, Gpu, TimingMethod};
use crate::kernels::copy;
use crate::tensor::{DType, Tensor};

/// How long to time.
#[derive(Clone, Copy, Debug)]
pub struct BenchConfig {
    /// Only [`BenchTier::Quick`] cases, fewer samples.
    pub quick: bool,
    /// Samples per case; the median is reported.
    pub samples: u32,
    /// Calls per sample are chosen so one sample lasts about this long.
    pub sample_seconds: f64,
    /// Fewer samples are taken where `samples` of them would last longer than this.
    pub case_seconds: f64,
    /// Bytes the copy-bandwidth kernel moves from source to destination.
    pub copy_bytes: u64,
    /// Whether [`BenchTier::Large`] cases are timed (not on CPU adapters).
    pub large: bool,
}

impl BenchConfig {
    pub fn new(quick: bool) -> Self {
        if quick {
            BenchConfig {
                quick,
                samples: 5,
                sample_seconds: 0.002,
                case_seconds: 0.5,
                copy_bytes: 32 << 20,
                large: false,
            }
        } else {
            BenchConfig {
                quick,
                samples: 15,
                sample_seconds: 0.01,
                case_seconds: 3.0,
                copy_bytes: 256 << 20,
                large: true,
            }
        }
    }

    /// [`BenchConfig::new`] for `gpu`: no [`BenchTier::Large`] cases on a CPU adapter.
    pub fn for_adapter(quick: bool, gpu: &Gpu) -> Self {
        let mut config = BenchConfig::new(quick);
        config.large &= gpu.report().device_type != "Cpu";
        config
    }

    /// Whether this configuration times `case`.
    pub fn includes(&self, case: &Case) -> bool {
        match case.bench {
            BenchTier::No => false,
            BenchTier::Quick => true,
            BenchTier::Full => !self.quick,
            BenchTier::Large => !self.quick && self.large,
        }
    }
}

/// One timed case.
#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    pub name: String,
    pub kernel: &'static str,
    pub dtype: String,
    pub shape: String,
    pub flops: f64,
    pub bytes: f64,
    pub median_seconds: f64,
    pub samples_seconds: Vec<f64>,
    pub calls_per_sample: u32,
    /// `flops / median`, in units of 10⁹ per second (`None` for pure data movement).
    pub gflops: Option<f64>,
    /// `bytes / median` in 10⁹ bytes per second.
    pub gbytes_per_second: f64,
    /// [`BenchRow::gbytes_per_second`] as a percentage of the measured copy bandwidth.
    pub percent_of_copy: f64,
}

/// Everything one run measured, as `--json` writes it.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub tessera_version: &'static str,
    pub date: String,
    pub adapter: AdapterReport,
    pub timing: TimingMethod,
    pub quick: bool,
    /// The measured kernel-path choices in force (`tessera tune`), and a path forced over
    /// them (`--path`): what a case that does not name its path ran on.
    pub tuning: crate::gpu::Tuning,
    pub forced_path: Option<String>,
    pub copy: CopyBandwidth,
    pub cases: Vec<BenchRow>,
    /// Whole-model figures (`bench --models`).
    pub models: Vec<ModelRow>,
}

/// One whole-model figure.
#[derive(Clone, Debug, Serialize)]
pub struct ModelRow {
    /// The shape's name, e.g. "TinyLlama-1.1B".
    pub model: String,
    pub dtype: String,
    /// What was timed, e.g. "decode" or "unet forward, batch 64".
    pub phase: String,
    /// Tokens (decoder) or forward passes (UNet) per second.
    pub per_second: f64,
    /// The unit of `per_second`: "tokens/s" or "steps/s".
    pub unit: &'static str,
    /// Parameters of the model.
    pub parameters: u64,
    /// For decode: weight bytes read per token × tokens/s, in 10⁹ bytes per second.
    pub weight_gbytes_per_second: Option<f64>,
    /// The run's details (prompt length, tokens, batch, repeats, seconds).
    pub detail: String,
}

/// Now, for the report's date (a browser's clock where there is no system clock).
fn now() -> std::time::SystemTime {
    #[cfg(target_arch = "wasm32")]
    {
        let since = web_time::SystemTime::now()
            .duration_since(web_time::UNIX_EPOCH)
            .unwrap_or_default();
        std::time::UNIX_EPOCH + since
    }
    #[cfg(not(target_arch = "wasm32"))]
    std::time::SystemTime::now()
}

/// The device's copy bandwidth as measured by the copy kernel: `2 · bytes / time` (every
/// byte is read once and written once).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CopyBandwidth {
    pub bytes: u64,
    pub median_seconds: f64,
    pub gbytes_per_second: f64,
}

impl BenchReport {
    pub fn new(gpu: &Gpu, config: &BenchConfig, copy: CopyBandwidth) -> Self {
        BenchReport {
            tessera_version: env!("CARGO_PKG_VERSION"),
            date: humantime::format_rfc3339_seconds(now()).to_string(),
            adapter: gpu.report().clone(),
            timing: gpu.timing_method(),
            quick: config.quick,
            tuning: gpu.tuning(),
            forced_path: gpu.forced_path(),
            copy,
            cases: Vec::new(),
            models: Vec::new(),
        }
    }
}

/// Times calls of `encode`. The first call is a warm-up (first-use costs such as driver
/// compilation and page faults land there) and its time sets how many calls make one sample
/// last about `config.sample_seconds`; then up to `config.samples` samples are taken, fewer
/// (but at least 3) when that would exceed `config.case_seconds`.
async fn time_call(
    gpu: &Gpu,
    op: &str,
    config: &BenchConfig,
    encode: &dyn Fn(&mut wgpu::ComputePass<'_>),
) -> Result<(Vec<f64>, f64, u32)> {
    let once = gpu.time_async(op, 1, 1, encode).await?.median().max(1e-7);
    let calls = (config.sample_seconds / once).ceil().clamp(1.0, 1000.0) as u32;
    let affordable = (config.case_seconds / (once * f64::from(calls))).floor() as u32;
    let samples = affordable.clamp(3, config.samples);
    let timings = gpu.time_async(op, calls, samples, encode).await?;
    Ok((timings.samples.clone(), timings.median(), calls))
}

/// Measures the copy bandwidth with the copy kernel over `config.copy_bytes` (capped by the
/// device's storage-binding limit).
#[cfg(not(target_arch = "wasm32"))]
pub fn measure_copy(gpu: &Gpu, config: &BenchConfig) -> Result<CopyBandwidth> {
    crate::gpu::block_on(measure_copy_async(gpu, config))
}

/// [`measure_copy`], awaited.
pub async fn measure_copy_async(gpu: &Gpu, config: &BenchConfig) -> Result<CopyBandwidth> {
    let limit = gpu.limits().max_storage_buffer_binding_size;
    let bytes = config.copy_bytes.min(limit) / 16 * 16;
    let len = (bytes / 4) as usize;
    let src = Tensor::empty(gpu, &[len], DType::F32)?;
    let dst = Tensor::empty(gpu, &[len], DType::F32)?;
    src.poison()?;
    let call = copy::copy(gpu, &src, &dst)?;
    let encode = |pass: &mut wgpu::ComputePass<'_>| call.encode(pass);
    let (_, median, _) = time_call(gpu, "copy bandwidth", config, &encode).await?;
    Ok(CopyBandwidth {
        bytes,
        median_seconds: median,
        gbytes_per_second: 2.0 * bytes as f64 / median / 1e9,
    })
}

/// Times one case.
#[cfg(not(target_arch = "wasm32"))]
pub fn bench_case(
    gpu: &Gpu,
    case: &Case,
    seed: u64,
    config: &BenchConfig,
    copy: &CopyBandwidth,
) -> Result<BenchRow> {
    crate::gpu::block_on(bench_case_async(gpu, case, seed, config, copy))
}

/// [`bench_case`], awaited.
pub async fn bench_case_async(
    gpu: &Gpu,
    case: &Case,
    seed: u64,
    config: &BenchConfig,
    copy: &CopyBandwidth,
) -> Result<BenchRow> {
    let prepared = Prepared::new(gpu, case, seed)?;
    let call = case.call(gpu, &prepared.inputs, &prepared.out)?;
    let name = case.name();
    let encode = |pass: &mut wgpu::ComputePass<'_>| call.encode(pass);
    let (samples, median, calls) = time_call(gpu, &name, config, &encode).await?;
    let (flops, bytes) = (case.flops(), case.bytes());
    let gbytes_per_second = bytes / median / 1e9;
    Ok(BenchRow {
        name,
        kernel: case.kernel(),
        dtype: case.dtype.to_string(),
        shape: case.shape(),
        flops,
        bytes,
        median_seconds: median,
        samples_seconds: samples,
        calls_per_sample: calls,
        gflops: (flops > 0.0).then(|| flops / median / 1e9),
        gbytes_per_second,
        percent_of_copy: 100.0 * gbytes_per_second / copy.gbytes_per_second,
    })
}

/// The row for a case that could not be timed, and whether that is a failure: a missing
/// feature or an exceeded limit is a skip with its reason, any other error an error.
pub fn format_unbenched(case: &Case, error: &crate::error::Error) -> (String, bool) {
    use crate::error::Error;
    let failed = !matches!(error, Error::MissingFeature { .. } | Error::TooLarge { .. });
    let what = if failed { "error" } else { "skip" };
    let row = format!(
        "{:<11} {:<5} {:<34} {what}: {error}",
        case.kernel(),
        case.dtype,
        case.shape()
    );
    (row, failed)
}

pub fn format_header() -> String {
    format!(
        "{:<11} {:<5} {:<34} {:>11} {:>10} {:>9} {:>7}",
        "kernel", "dtype", "shape", "time (us)", "GFLOP/s", "GB/s", "% copy"
    )
}

pub fn format_row(r: &BenchRow) -> String {
    let gflops = r.gflops.map_or("-".to_string(), |g| format!("{g:.1}"));
    format!(
        "{:<11} {:<5} {:<34} {:>11.1} {:>10} {:>9.2} {:>6.1}%",
        r.kernel,
        r.dtype,
        r.shape,
        r.median_seconds * 1e6,
        gflops,
        r.gbytes_per_second,
        r.percent_of_copy
    )
}
