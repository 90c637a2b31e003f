//! `cargo bench`: the suite's benchmark cases, timed on the default adapter (the same list and
//! timing as `tessera bench`). `cargo bench -- --full` times every benchmark case; any other
//! argument filters cases by name.

use tessera::Gpu;
use tessera::suite::bench::{self, BenchConfig};
use tessera::suite::{self, DEFAULT_SEED};

fn main() -> Result<(), tessera::Error> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let full = args.iter().any(|a| a == "--full");
    let filter = args.iter().find(|a| !a.starts_with("--"));
    let gpu = Gpu::new(None)?;
    let config = BenchConfig::for_adapter(!full, &gpu);
    println!("adapter: {}", gpu.report().summary());
    let copy = bench::measure_copy(&gpu, &config)?;
    println!("copy bandwidth: {:.2} GB/s\n", copy.gbytes_per_second);
    println!("{}", bench::format_header());
    for case in suite::cases() {
        if !config.includes(&case) || filter.is_some_and(|f| !case.name().contains(f.as_str())) {
            continue;
        }
        match bench::bench_case(&gpu, &case, DEFAULT_SEED, &config, &copy) {
            Ok(row) => println!("{}", bench::format_row(&row)),
            Err(e) => println!(
                "{:<11} {:<5} {:<34} {e}",
                case.kernel(),
                case.dtype,
                case.shape()
            ),
        }
    }
    Ok(())
}
