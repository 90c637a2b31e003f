//! tessera on a web page: the browser's WebGPU adapter, the whole case list checked against
//! its f64 references, and `bench --quick` in the schema of `tessera bench --json`. The page
//! (`web/index.html`, `web/main.js`) calls these through wasm-bindgen; everything here is
//! the library's own `check` and `bench` of one case, awaited, in a loop that reports each
//! result as it comes. The bundled models run on the page too (see [`models`]).

mod models;

use std::cell::RefCell;

use tessera::gpu::AdapterReport;
use tessera::suite::bench::{self, BenchConfig, BenchReport};
use tessera::suite::check::{self, Summary};
use tessera::suite::{self, DEFAULT_SEED};
use tessera::{Error, Gpu};
use wasm_bindgen::prelude::*;

thread_local! {
    /// The device the page opened ([`open_adapter`]); a page has one.
    static GPU: RefCell<Option<Gpu>> = const { RefCell::new(None) };
    /// The adapter's name as the page read it from `GPUAdapterInfo`, where wgpu's is empty
    /// (browsers leave `description` blank unless asked for unmasked information).
    static NAME: RefCell<String> = const { RefCell::new(String::new()) };
    /// The last bench report, for its plot ([`bench_plot`]).
    static LAST_BENCH: RefCell<Option<BenchReport>> = const { RefCell::new(None) };
}

/// The adapter's report, its name filled in from the page's where wgpu has none.
fn report(gpu: &Gpu) -> AdapterReport {
    let mut report = gpu.report().clone();
    if report.name.trim().is_empty() {
        report.name = NAME.with(|n| n.borrow().clone());
    }
    report
}

pub(crate) fn js_error(e: Error) -> JsValue {
    JsValue::from_str(&e.to_string())
}

pub(crate) fn opened() -> Result<Gpu, JsValue> {
    GPU.with(|g| g.borrow().clone())
        .ok_or_else(|| JsValue::from_str("no adapter yet: call open_adapter first"))
}

/// Opens the browser's adapter; returns its description and limits as JSON (the `adapter`
/// object of `tessera bench --json`). `name` names the adapter where the browser gives wgpu
/// no description (the page builds it from `GPUAdapterInfo`'s vendor and architecture).
#[wasm_bindgen]
pub async fn open_adapter(name: String) -> Result<String, JsValue> {
    let gpu = Gpu::request(None).await.map_err(js_error)?;
    NAME.with(|n| *n.borrow_mut() = name);
    let json = serde_json::to_string(&report(&gpu)).map_err(|e| e.to_string())?;
    GPU.with(|g| *g.borrow_mut() = Some(gpu));
    Ok(json)
}

/// The number of cases `check` runs with `filter` (a substring of the case name).
#[wasm_bindgen]
pub fn case_count(filter: Option<String>) -> usize {
    selected(filter.as_deref()).len()
}

fn selected(filter: Option<&str>) -> Vec<suite::Case> {
    suite::cases()
        .into_iter()
        .filter(|c| filter.is_none_or(|f| c.name().contains(f)))
        .collect()
}

/// Checks every case (or those whose name contains `filter`) against its f64 reference,
/// calling `progress(index, row, failed)` after each with the row `tessera check` prints;
/// returns the verdict line `N passed, M failed, K skipped on ADAPTER`.
#[wasm_bindgen]
pub async fn check(filter: Option<String>, progress: js_sys::Function) -> Result<String, JsValue> {
    let gpu = opened()?;
    let mut summary = Summary::default();
    for (index, case) in selected(filter.as_deref()).iter().enumerate() {
        let result = check::check_case_async(&gpu, case, DEFAULT_SEED).await;
        summary.add(&result);
        progress.call3(
            &JsValue::NULL,
            &JsValue::from(index as u32),
            &JsValue::from_str(&check::format_row(&result)),
            &JsValue::from_bool(result.failed()),
        )?;
    }
    Ok(format!(
        "{} passed, {} failed, {} skipped on {}",
        summary.passed,
        summary.failed,
        summary.skipped,
        report(&gpu).name
    ))
}

/// `tessera bench` (`--quick` when `quick`) on the page's adapter, calling
/// `progress(row)` with each printed row; returns the report as JSON in the schema of
/// `tessera bench --json`.
#[wasm_bindgen]
pub async fn bench(quick: bool, progress: js_sys::Function) -> Result<String, JsValue> {
    let gpu = opened()?;
    let config = BenchConfig::for_adapter(quick, &gpu);
    let copy = bench::measure_copy_async(&gpu, &config)
        .await
        .map_err(js_error)?;
    let say = |line: String| progress.call1(&JsValue::NULL, &JsValue::from_str(&line));
    say(format!(
        "copy bandwidth: {:.2} GB/s ({} MiB copied in {:.1} us)",
        copy.gbytes_per_second,
        copy.bytes >> 20,
        copy.median_seconds * 1e6
    ))?;
    say(bench::format_header())?;
    let mut bench_report = BenchReport::new(&gpu, &config, copy);
    bench_report.adapter = report(&gpu);
    for case in suite::cases().iter().filter(|c| config.includes(c)) {
        match bench::bench_case_async(&gpu, case, DEFAULT_SEED, &config, &copy).await {
            Ok(row) => {
                say(bench::format_row(&row))?;
                bench_report.cases.push(row);
            }
            Err(e) => {
                say(bench::format_unbenched(case, &e).0)?;
            }
        }
    }
    let json = serde_json::to_string_pretty(&bench_report)
        .map_err(|e| JsValue::from_str(&e.to_string()))?;
    LAST_BENCH.with(|b| *b.borrow_mut() = Some(bench_report));
    Ok(json)
}

/// The last bench's plot as SVG: each case's throughput as a share of the adapter's measured
/// ceiling (the plot `tools/bench_table.py --svg` draws from the JSON); `None` before a bench.
#[wasm_bindgen]
pub fn bench_plot() -> Option<String> {
    LAST_BENCH.with(|b| {
        b.borrow()
            .as_ref()
            .map(|report| tessera::suite::plot::ceiling_svg(&[report]))
    })
}
