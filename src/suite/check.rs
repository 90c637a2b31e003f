//! `tessera check`: every case on one adapter against its f64 reference.

use serde::Serialize;

use super::compare::{Comparison, Tolerance, compare};
use super::{BenchTier, Case, Prepared};
use crate::error::{Error, Result};
use crate::gpu::Gpu;

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// The adapter lacks a feature or a limit the case needs.
    Skip(String),
    /// The library returned an error.
    Error(String),
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub kernel: &'static str,
    pub dtype: String,
    pub shape: String,
    pub status: Status,
    pub tolerance: Tolerance,
    pub comparison: Option<Comparison>,
}

impl CaseResult {
    pub fn failed(&self) -> bool {
        matches!(self.status, Status::Fail | Status::Error(_))
    }
}

/// Runs one case: upload seeded inputs, poison the output with NaN, run, compare.
#[cfg(not(target_arch = "wasm32"))]
pub fn check_case(gpu: &Gpu, case: &Case, seed: u64) -> CaseResult {
    crate::gpu::block_on(check_case_async(gpu, case, seed))
}

/// [`check_case`], awaited.
pub async fn check_case_async(gpu: &Gpu, case: &Case, seed: u64) -> CaseResult {
    let tolerance = case.tolerance();
    let (status, comparison) = match run_unless_large(gpu, case, seed, tolerance).await {
        Ok(Some(c)) if c.passed => (Status::Pass, Some(c)),
        Ok(Some(c)) => (Status::Fail, Some(c)),
        Err(e @ (Error::MissingFeature { .. } | Error::TooLarge { .. })) => {
            (Status::Skip(e.to_string()), None)
        }
        Err(e) => (Status::Error(e.to_string()), None),
        Ok(None) => (
            Status::Skip(
                "benchmark only: its f64 reference takes minutes; the same kernel paths are \
                 checked at smaller sizes"
                    .into(),
            ),
            None,
        ),
    };
    CaseResult {
        name: case.name(),
        kernel: case.kernel(),
        dtype: case.dtype.to_string(),
        shape: case.shape(),
        status,
        tolerance,
        comparison,
    }
}

async fn run_unless_large(
    gpu: &Gpu,
    case: &Case,
    seed: u64,
    tolerance: Tolerance,
) -> Result<Option<Comparison>> {
    if case.bench == BenchTier::Large {
        return Ok(None);
    }
    run(gpu, case, seed, tolerance).await.map(Some)
}

async fn run(gpu: &Gpu, case: &Case, seed: u64, tolerance: Tolerance) -> Result<Comparison> {
    let prepared = Prepared::new(gpu, case, seed)?;
    if !case.in_place() {
        prepared.out.poison()?;
    }
    case.call(gpu, &prepared.inputs, &prepared.out)?.run(gpu)?;
    let got = prepared.out.to_f32_async().await?;
    let want = case.reference(&prepared.host);
    Ok(compare(&got, &want, tolerance))
}

/// Counts of a check run.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Summary {
    pub fn add(&mut self, result: &CaseResult) {
        match result.status {
            Status::Pass => self.passed += 1,
            Status::Skip(_) => self.skipped += 1,
            Status::Fail | Status::Error(_) => self.failed += 1,
        }
    }
}

/// The header line of [`format_row`]'s table.
pub fn format_header() -> String {
    format!(
        "{:<6} {:<11} {:<5} {:<42} {:>10} {:>10} {:>8}",
        "status", "kernel", "dtype", "shape", "max err", "NMSE", "err/tol"
    )
}

/// One result as a table row; a failure adds the worst element on the next line.
pub fn format_row(r: &CaseResult) -> String {
    let status = match &r.status {
        Status::Pass => "pass",
        Status::Fail => "FAIL",
        Status::Skip(_) => "skip",
        Status::Error(_) => "ERROR",
    };
    let mut line = format!(
        "{status:<6} {:<11} {:<5} {:<42}",
        r.kernel, r.dtype, r.shape
    );
    if let Some(c) = &r.comparison {
        line += &format!(
            " {:>10.3e} {:>10.3e} {:>8.3}",
            c.max_abs_err, c.nmse, c.worst_ratio
        );
        if !c.passed
            && let Some((index, got, want)) = c.worst
        {
            line += &format!(
                "\n       {} of the outputs out of tolerance; worst at index {index}: got {got}, \
                 want {want} (allowed ±{:.3e})",
                c.bad,
                r.tolerance.atol + r.tolerance.rtol * want.abs()
            );
        }
    }
    match &r.status {
        Status::Skip(why) | Status::Error(why) => line += &format!(" {why}"),
        _ => {}
    }
    line
}
