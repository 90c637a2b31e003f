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

/// Runs the CI cases of the suite whose kernel is one of `kernels` and fails with every
/// failing row if any fails.
pub fn check_ci_cases(kernels: &[&str]) {
    let gpu = gpu();
    let cases: Vec<_> = suite::cases()
        .into_iter()
        .filter(|c| c.ci && kernels.contains(&c.kernel()))
        .collect();
    assert!(!cases.is_empty(), "no CI cases for {kernels:?}");
    let mut summary = Summary::default();
    let mut failures = Vec::new();
    for case in &cases {
        let result = check::check_case(&gpu, case, DEFAULT_SEED);
        summary.add(&result);
        if result.failed() {
            failures.push(check::format_row(&result));
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
    // Skips are only allowed where the adapter lacks f16.
    if gpu.supports(tessera::DType::F16) {
        assert_eq!(
            summary.skipped,
            0,
            "unexpected skips on {}",
            gpu.report().name
        );
    }
    assert!(summary.passed > 0);
}
