//! `tessera tune`: the short timing run behind the kernels' `Auto` paths where an adapter has
//! more than one correct kernel for a job (the scalar one and the cooperative-matrix one).
//! Each candidate is first checked against the f64 reference on the very case it is timed
//! on, so a path that computes wrong answers on this driver can never win; the fastest
//! correct one is the choice, cached on disk per adapter ([`crate::gpu::tuning`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::bench::{self, BenchConfig};
use super::check::{self, Status};
use super::{AttentionKernel, AttentionSpec, BenchTier, Case, CaseSpec, Conv2dSpec, MatmulSpec};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tunable, TunedChoice, Tuning, tuning};
use crate::kernels::conv2d::ConvPath;
use crate::kernels::matmul::{BLayout, Path};
use crate::tensor::DType;

/// The case a choice is timed on, once per candidate path (`(path name, case)`).
fn candidates(what: Tunable) -> Vec<(&'static str, Case)> {
    let case = |spec: Arc<dyn CaseSpec>| Case {
        spec,
        dtype: DType::F16,
        ci: false,
        bench: BenchTier::No,
    };
    match what {
        Tunable::MatmulF16 => {
            let mm = |path| MatmulSpec {
                path,
                ..MatmulSpec::new(512, 512, 512, BLayout::NK)
            };
            vec![
                ("wide", case(Arc::new(mm(Path::Wide)))),
                ("coop", case(Arc::new(mm(Path::Coop)))),
            ]
        }
        Tunable::FlashAttentionF16 => {
            let attention = |kernel| AttentionSpec {
                kernel,
                ..AttentionSpec::new(256, (8, 8), 64, true)
            };
            vec![
                ("scalar", case(Arc::new(attention(AttentionKernel::Flash)))),
                (
                    "coop",
                    case(Arc::new(attention(AttentionKernel::FlashCoop))),
                ),
            ]
        }
        Tunable::Conv2dF16 => {
            let conv = |path| Conv2dSpec {
                path,
                ..Conv2dSpec::new(1, 64, 64, (32, 32), 3, 1)
            };
            vec![
                ("scalar", case(Arc::new(conv(ConvPath::Scalar)))),
                ("coop", case(Arc::new(conv(ConvPath::Coop)))),
            ]
        }
    }
}

/// The shape of the timed case without its path suffix, for the record.
fn case_label(case: &Case) -> String {
    let name = case.name();
    name.strip_suffix(" coop").unwrap_or(&name).to_string()
}

/// Settles one choice: every candidate that runs and passes its check is timed; the fastest
/// wins. `None` when no candidate runs here (no f16).
pub fn tune_one(gpu: &Gpu, what: Tunable, seed: u64) -> Result<Option<TunedChoice>> {
    let config = BenchConfig::new(true);
    let copy = bench::CopyBandwidth {
        bytes: 0,
        median_seconds: 0.0,
        gbytes_per_second: f64::NAN,
    };
    let mut seconds = BTreeMap::new();
    let mut label = String::new();
    for (path, case) in candidates(what) {
        label = case_label(&case);
        let checked = check::check_case(gpu, &case, seed);
        match checked.status {
            Status::Pass => {}
            // Not on this adapter (no f16, no cooperative matrices): not a candidate.
            Status::Skip(_) => continue,
            // A wrong or failing path is no candidate either; `tessera check` reports it.
            Status::Fail | Status::Error(_) => continue,
        }
        let row = bench::bench_case(gpu, &case, seed, &config, &copy)?;
        seconds.insert(path.to_string(), row.median_seconds);
    }
    let Some((choice, _)) = seconds
        .iter()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(p, s)| (p.clone(), *s))
    else {
        return Ok(None);
    };
    Ok(Some(TunedChoice {
        choice,
        case: label,
        seconds,
    }))
}

/// Times every choice on `gpu`, puts the result in force on it and returns it; `report` is
/// told each choice as it is settled.
pub fn tune(gpu: &Gpu, seed: u64, mut report: impl FnMut(Tunable, &TunedChoice)) -> Result<Tuning> {
    // Measure the kernels themselves, not a previous choice or a forced path.
    gpu.force_path(None);
    let mut tuning = Tuning::new();
    for what in Tunable::ALL {
        if let Some(choice) = tune_one(gpu, what, seed)? {
            report(what, &choice);
            tuning.insert(what, choice);
        }
    }
    gpu.set_tuning(tuning.clone());
    Ok(tuning)
}

/// Whether `gpu` has choices to make (more than one path can run somewhere) that were never
/// measured: then [`tune`] should run before a model does.
pub fn needs_tuning(gpu: &Gpu) -> bool {
    gpu.cooperative_f16().is_ok() && gpu.tuning().len() < Tunable::ALL.len()
}

/// [`tune`] and store the result in the cache; returns where it was written.
pub fn tune_and_save(
    gpu: &Gpu,
    seed: u64,
    report: impl FnMut(Tunable, &TunedChoice),
) -> Result<(Tuning, std::path::PathBuf)> {
    let tuning = tune(gpu, seed, report)?;
    if tuning.is_empty() {
        return Err(Error::Tuning {
            message: format!(
                "no kernel path ran on {}: nothing to choose from",
                gpu.report().name
            ),
        });
    }
    let path = tuning::save(gpu.report(), &tuning)?;
    Ok((tuning, path))
}

/// One line per choice: `matmul f16: coop (coop 1.234 ms, wide 2.345 ms; matmul f16 M=512 ...)`.
pub fn format_choice(what: Tunable, choice: &TunedChoice) -> String {
    let times: Vec<String> = choice
        .seconds
        .iter()
        .map(|(path, s)| format!("{path} {:.3} ms", s * 1e3))
        .collect();
    format!(
        "{}: {} ({}; timed on {})",
        what.name(),
        choice.choice,
        times.join(", "),
        choice.case
    )
}
