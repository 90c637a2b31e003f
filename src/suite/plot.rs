//! The bench plot: each case's throughput as a share of its adapter's measured ceiling, as an
//! SVG of horizontal bars, one colour per report. The ceiling is the copy kernel's bandwidth
//! for data movement; for cases with FLOPs it is the roofline, the lower of the `fma_peak`
//! probe's GFLOP/s in the same dtype and what the copy bandwidth feeds at the case's FLOPs per
//! byte. The same plot, from the same JSON, as `tools/bench_table.py --svg` draws (the page
//! has no Python; the script reads any saved report without building tessera).

use std::fmt::Write;

use super::bench::{BenchReport, BenchRow};

const COLOURS: [&str; 7] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
];

/// The best `fma_peak` GFLOP/s of `dtype` in `report`.
fn peak(report: &BenchReport, dtype: &str) -> Option<f64> {
    report
        .cases
        .iter()
        .filter(|c| c.kernel == "fma_peak" && c.dtype == dtype)
        .filter_map(|c| c.gflops)
        .filter(|g| *g > 0.0)
        .reduce(f64::max)
}

/// Which ceiling a case is held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ceiling {
    /// The copy kernel's bandwidth (at the case's intensity, for a case with FLOPs).
    Copy,
    /// The `fma_peak` probe's GFLOP/s.
    Peak,
}

impl Ceiling {
    fn name(self) -> &'static str {
        match self {
            Ceiling::Copy => "copy",
            Ceiling::Peak => "peak",
        }
    }
}

/// The percentage of its ceiling `case` reaches in `report`, and which ceiling; `None` for the
/// peak probe itself and for FLOP cases of a dtype the probe did not measure.
pub fn ceiling_share(report: &BenchReport, case: &BenchRow) -> Option<(f64, Ceiling)> {
    if case.kernel == "fma_peak" {
        return None;
    }
    match case.gflops {
        None => Some((case.percent_of_copy, Ceiling::Copy)),
        Some(gflops) => Some(roofline_share(
            gflops,
            case.flops / case.bytes,
            report.copy.gbytes_per_second,
            peak(report, &case.dtype)?,
        )),
    }
}

/// `gflops` as a percentage of the roofline at `flops_per_byte`: the lower of `peak_gflops`
/// and what `copy_gbs` of bandwidth feeds at that intensity.
fn roofline_share(
    gflops: f64,
    flops_per_byte: f64,
    copy_gbs: f64,
    peak_gflops: f64,
) -> (f64, Ceiling) {
    let fed = flops_per_byte * copy_gbs;
    if fed < peak_gflops {
        (100.0 * gflops / fed, Ceiling::Copy)
    } else {
        (100.0 * gflops / peak_gflops, Ceiling::Peak)
    }
}

fn throughput(case: &BenchRow) -> String {
    match case.gflops {
        Some(g) => format!("{g:.1} GFLOP/s"),
        None => format!("{:.2} GB/s", case.gbytes_per_second),
    }
}

/// Text for SVG: `&`, `<`, `>` and quotes escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The plot of `reports` (one bar per report for every case that has a share in any).
pub fn ceiling_svg(reports: &[&BenchReport]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for report in reports {
        for case in &report.cases {
            if !names.contains(&case.name.as_str()) && ceiling_share(report, case).is_some() {
                names.push(&case.name);
            }
        }
    }
    let find = |report: &'_ BenchReport, name: &str| -> Option<(f64, Ceiling, String)> {
        let case = report.cases.iter().find(|c| c.name == name)?;
        let (share, ceiling) = ceiling_share(report, case)?;
        Some((share, ceiling, throughput(case)))
    };
    let (bar, gap, label_w, plot_w, top) = (12.0, 8.0, 380.0, 520.0, 60.0);
    let group = bar * reports.len() as f64 + gap;
    let bottom = top + group * names.len() as f64;
    let height = bottom + 40.0 + 18.0 * reports.len() as f64;
    let width = label_w + plot_w + 140.0;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">tessera bench: throughput as % of the \
         measured ceiling (copy GB/s; with FLOPs, the roofline of fma_peak and copy)</text>\n"
    );
    for pct in [0.0, 25.0, 50.0, 75.0, 100.0] {
        let x = label_w + plot_w * pct / 100.0;
        let _ = writeln!(
            out,
            "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{bottom}\" stroke=\"#ccc\"/>\n\
             <text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{pct}%</text>",
            top - 10.0,
            top - 14.0
        );
    }
    for (i, name) in names.iter().enumerate() {
        let y0 = top + i as f64 * group;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            label_w - 6.0,
            y0 + bar * reports.len() as f64 / 2.0 + 4.0,
            escape(name)
        );
        for (j, report) in reports.iter().enumerate() {
            let Some((share, ceiling, throughput)) = find(report, name) else {
                continue;
            };
            let y = y0 + j as f64 * bar;
            let w = plot_w * share.clamp(0.0, 100.0) / 100.0;
            let _ = writeln!(
                out,
                "<rect x=\"{label_w}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{}\">\
                 <title>{}: {throughput}, {share:.1}% of {}</title></rect>\n\
                 <text x=\"{:.1}\" y=\"{}\" font-size=\"9\">{throughput} ({share:.0}%)</text>",
                bar - 2.0,
                COLOURS[j % COLOURS.len()],
                escape(&report.adapter.name),
                ceiling.name(),
                label_w + w + 4.0,
                y + bar - 3.0
            );
        }
    }
    for (j, report) in reports.iter().enumerate() {
        let a = &report.adapter;
        let peaks: Vec<String> = ["f32", "f16"]
            .iter()
            .filter_map(|d| peak(report, d).map(|p| format!("{d} peak {p:.0} GFLOP/s")))
            .collect();
        let mut text = format!(
            "{} ({}, {} {}), {}: copy {:.1} GB/s",
            a.name, a.backend, a.driver, a.driver_info, report.date, report.copy.gbytes_per_second
        );
        if !peaks.is_empty() {
            text = format!("{text}, {}", peaks.join(", "));
        }
        let y = bottom + 30.0 + 18.0 * j as f64;
        let _ = writeln!(
            out,
            "<rect x=\"10\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>\n\
             <text x=\"28\" y=\"{y}\">{}</text>",
            y - 10.0,
            COLOURS[j % COLOURS.len()],
            escape(&text)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_is_held_to_the_lower_of_bandwidth_and_peak() {
        // 10 GB/s feeds 5 GFLOP/s at half a FLOP per byte (a GEMV): bandwidth bound.
        assert_eq!(roofline_share(4.0, 0.5, 10.0, 100.0), (80.0, Ceiling::Copy));
        // At 100 FLOPs per byte it would feed 1000: the 100 GFLOP/s peak bounds it.
        assert_eq!(
            roofline_share(25.0, 100.0, 10.0, 100.0),
            (25.0, Ceiling::Peak)
        );
    }

    #[test]
    fn names_are_escaped_for_svg() {
        assert_eq!(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
