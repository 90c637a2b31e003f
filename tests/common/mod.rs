//! Shared by the GPU integration tests: the device they run on.
//!
//! Tests use the default adapter (honouring `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`); in CI
//! that is Mesa's lavapipe. A machine with no adapter at all fails these tests with the
//! reason rather than skipping them silently.

#![allow(dead_code)]

use tessera::Gpu;
use tessera::suite::check::{self, Summary};
use tessera::suite::{self, DEFAULT_SEED};

pub fn gpu() -> Gpu {
    Gpu::new(None)
        .unwrap_or_else(|e| panic!("these tests need a GPU adapter (lavapipe will do): {e}"))
}

/// Runs the CI cases of the suite that `select` picks and fails with every failing row if
/// any fails, and with every skip the adapter does not explain.
pub fn check_ci_cases(what: &str, select: impl Fn(&suite::Case) -> bool) {
    let gpu = gpu();
    let cases: Vec<_> = suite::cases()
        .into_iter()
        .filter(|c| c.ci && select(c))
        .collect();
    assert!(!cases.is_empty(), "no CI cases for {what}");
    let mut summary = Summary::default();
    let mut failures = Vec::new();
    let mut unexpected_skips = Vec::new();
    for case in &cases {
        let result = check::check_case(&gpu, case, DEFAULT_SEED);
        summary.add(&result);
        if result.failed() {
            failures.push(check::format_row(&result));
        }
        if matches!(result.status, check::Status::Skip(_)) && !may_skip(&gpu, case) {
            unexpected_skips.push(check::format_row(&result));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed on {}:\n{}",
        failures.len(),
        cases.len(),
        gpu.report().name,
        failures.join("\n")
    );
    assert!(
        unexpected_skips.is_empty(),
        "unexpected skips on {}:\n{}",
        gpu.report().name,
        unexpected_skips.join("\n")
    );
    // Either something ran, or everything skipped for a reason the adapter explains (the
    // cooperative cases on an adapter without cooperative matrices).
    assert!(summary.passed > 0 || summary.skipped == cases.len());
}

/// Skips are allowed only where the adapter lacks what the case needs: f16, or cooperative
/// matrices for the tensor-core paths. Under `TESSERA_REQUIRE_COOP=1` (set by
/// tools/mesa26.sh, whose lavapipe has them) a cooperative case must run.
fn may_skip(gpu: &Gpu, case: &suite::Case) -> bool {
    let coop_required = std::env::var("TESSERA_REQUIRE_COOP").is_ok_and(|v| v == "1");
    (case.dtype == tessera::DType::F16 && !gpu.supports(tessera::DType::F16))
        || (case.spec.cooperative() && !coop_required && gpu.cooperative_f16().is_err())
}

/// A scratch copy of a fixture directory (its files), to break on purpose; removed on drop.
pub struct FixtureCopy(pub std::path::PathBuf);

impl FixtureCopy {
    pub fn of(fixture: &str, tag: &str) -> FixtureCopy {
        let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(fixture);
        let to = std::env::temp_dir().join(format!("tessera-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
            }
        }
        FixtureCopy(to)
    }

    /// Replaces the first `from` in `file` by `to`.
    pub fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.0.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from} not in {file}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }
}

impl Drop for FixtureCopy {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// `‖got − want‖ / ‖want‖`.
pub fn relative_l2(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let err: f64 = got
        .iter()
        .zip(want)
        .map(|(g, w)| f64::from(g - w).powi(2))
        .sum();
    let norm: f64 = want.iter().map(|w| f64::from(*w).powi(2)).sum();
    (err / norm).sqrt()
}

/// What transformers generated for a decoder fixture (tools/make_fixtures.py,
/// tools/make_gguf_fixtures.py): the prompt, 24 greedy tokens and the logits that chose them.
pub struct Expected {
    pub prompt: Vec<u32>,
    pub tokens: Vec<u32>,
    /// `[steps][vocab]`
    pub logits: Vec<Vec<f32>>,
}

impl Expected {
    /// Reads an `expected.safetensors` file: i64 `prompt` and `tokens`, f32 `logits`.
    pub fn read(path: &std::path::Path) -> Expected {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let ints = |name: &str| -> Vec<u32> {
            file.tensor(name)
                .unwrap()
                .data()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
                .collect()
        };
        let logits = file.tensor("logits").unwrap();
        let vocab = logits.shape()[1];
        let values: Vec<f32> = logits
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        Expected {
            prompt: ints("prompt"),
            tokens: ints("tokens"),
            logits: values.chunks(vocab).map(<[f32]>::to_vec).collect(),
        }
    }
}

/// Every decoder fixture in tests/fixtures (a directory with `expected.safetensors` that is
/// not a UNet's), sorted.
pub fn decoder_fixtures() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.safetensors").is_file())
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("unet_")
        })
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 5, "fixtures missing in {}", root.display());
    dirs
}
