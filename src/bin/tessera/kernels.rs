//! `tessera info`, `tessera check`, `tessera tune` and `tessera bench`.

use tessera::gpu::{AdapterReport, Gpu, list_adapters, tuning};
use tessera::suite::bench::{self, BenchConfig, BenchReport};
use tessera::suite::check::{self, Summary};
use tessera::suite::models::bench_models;
use tessera::suite::{self, Case, DEFAULT_SEED, tune};
use tessera::{DType, Error, Result};

pub fn info(json: bool) -> Result<bool> {
    let reports: Vec<AdapterReport> = list_adapters()?.iter().map(AdapterReport::of).collect();
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
        let tuned = tuning::load(r);
        if tuned.is_empty() {
            println!("    kernel paths: not tuned (`tessera tune` measures them)");
        } else {
            println!("    kernel paths (tuned):");
            for (what, choice) in &tuned {
                println!("      {}", tune::format_choice(*what, choice));
            }
        }
    }
    Ok(true)
}

/// `tessera tune`: time the competing kernel paths and cache the choices.
pub fn run_tune(adapter: Option<&str>, seed: u64) -> Result<bool> {
    let gpu = Gpu::new(adapter)?;
    println!("adapter: {}", gpu.report().summary());
    if let Err(missing) = gpu.cooperative_f16() {
        println!(
            "one path per kernel here (no {missing}): the portable kernels run; nothing to tune"
        );
        return Ok(true);
    }
    let (_, path) = tune::tune_and_save(&gpu, seed, |what, choice| {
        println!("{}", tune::format_choice(what, choice));
    })?;
    println!("cached in {}", path.display());
    Ok(true)
}

/// Runs `tessera tune` first where `gpu` has kernel paths to choose between that were never
/// measured (once per adapter, driver and version; the result is cached).
pub fn tune_if_needed(gpu: &Gpu) -> Result<()> {
    if !tune::needs_tuning(gpu) {
        return Ok(());
    }
    eprintln!("tuning kernel paths for this adapter (once; `tessera tune` measures again):");
    let tuning = tune::tune(gpu, DEFAULT_SEED, |what, choice| {
        eprintln!("  {}", tune::format_choice(what, choice));
    })?;
    // The choices are in force for this run either way; an unwritable cache only means
    // the next run measures again.
    match tuning::save(gpu.report(), &tuning) {
        Ok(path) => eprintln!("  cached in {}", path.display()),
        Err(e) => eprintln!("  not cached ({e}); the next run measures again"),
    }
    Ok(())
}

fn selected_cases(filter: Option<&str>, ci_only: bool) -> Vec<Case> {
    suite::cases()
        .into_iter()
        .filter(|c| !ci_only || c.ci)
        .filter(|c| filter.is_none_or(|f| c.name().contains(f)))
        .collect()
}

pub fn run_check(
    adapter: Option<&str>,
    all_adapters: bool,
    seed: u64,
    filter: Option<&str>,
    ci_only: bool,
    path: Option<&str>,
) -> Result<bool> {
    let cases = selected_cases(filter, ci_only);
    if cases.is_empty() {
        return Err(Error::Invalid(format!(
            "no case matches the filter {filter:?}"
        )));
    }
    let gpus: Vec<Result<Gpu>> = if all_adapters {
        let adapters = list_adapters()?;
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
        gpu.force_path(path);
        println!("adapter: {}", gpu.report().summary());
        if let Some(path) = path {
            println!("automatic kernel choices forced to {path}");
        }
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

pub fn run_bench(
    adapter: Option<&str>,
    quick: bool,
    json: Option<&std::path::Path>,
    seed: u64,
    filter: Option<&str>,
    path: Option<&str>,
) -> Result<bool> {
    let gpu = Gpu::new(adapter)?;
    tune_if_needed(&gpu)?;
    gpu.force_path(path);
    let config = BenchConfig::for_adapter(quick, &gpu);
    let cases: Vec<Case> = selected_cases(filter, false)
        .into_iter()
        .filter(|c| config.includes(c))
        .collect();
    if cases.is_empty() {
        return Err(Error::Invalid(format!(
            "no benchmark case matches the filter {filter:?}"
        )));
    }
    println!("adapter: {}", gpu.report().summary());
    print_paths(&gpu, path);
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
            Err(e) => {
                let (row, failed) = bench::format_unbenched(case, &e);
                println!("{row}");
                all_ran &= !failed;
            }
        }
    }
    if let Some(path) = json {
        write_report(path, &report)?;
    }
    Ok(all_ran)
}

fn write_report(path: &std::path::Path, report: &BenchReport) -> Result<()> {
    let text = serde_json::to_string_pretty(report).expect("serialisable");
    std::fs::write(path, text + "\n").map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    println!("\nwrote {}", path.display());
    Ok(())
}

pub fn run_model_bench(
    adapter: Option<&str>,
    quick: bool,
    json: Option<&std::path::Path>,
    filter: Option<&str>,
    path: Option<&str>,
) -> Result<bool> {
    let config = BenchConfig::new(quick);
    let gpu = Gpu::new(adapter)?;
    tune_if_needed(&gpu)?;
    gpu.force_path(path);
    println!("adapter: {}", gpu.report().summary());
    print_paths(&gpu, path);
    let copy = bench::measure_copy(&gpu, &config)?;
    println!("copy bandwidth: {:.2} GB/s\n", copy.gbytes_per_second);
    println!(
        "{:<36} {:<5} {:<24} {:>14} {:>12}  detail",
        "model", "dtype", "phase", "rate", "weights GB/s"
    );
    let mut report = BenchReport::new(&gpu, &config, copy);
    for dtype in DType::ALL {
        if gpu.require(dtype, "the models").is_err() {
            println!("{dtype}: skipped, the adapter has no SHADER_F16");
            continue;
        }
        let rows = bench_models(&gpu, quick, dtype, filter, |r| {
            let bandwidth = r
                .weight_gbytes_per_second
                .map_or(String::new(), |g| format!("{g:.2}"));
            println!(
                "{:<36} {:<5} {:<24} {:>8.2} {:<5} {:>12}  {}",
                r.model, r.dtype, r.phase, r.per_second, r.unit, bandwidth, r.detail
            );
        })?;
        report.models.extend(rows);
    }
    if let Some(path) = json {
        write_report(path, &report)?;
    }
    Ok(true)
}

/// Says which path each automatic choice takes in this run.
fn print_paths(gpu: &Gpu, forced: Option<&str>) {
    if let Some(path) = forced {
        println!("kernel paths: forced to {path} where it is a candidate");
        return;
    }
    let tuned = gpu.tuning();
    if tuned.is_empty() {
        println!("kernel paths: portable (not tuned)");
        return;
    }
    let choices: Vec<String> = tuned
        .iter()
        .map(|(what, c)| format!("{} {}", what.name(), c.choice))
        .collect();
    println!("kernel paths (tuned): {}", choices.join(", "));
}
