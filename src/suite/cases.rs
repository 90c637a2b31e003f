//! The case list. Shapes include 1, primes, tile and workgroup sizes ± 1, grids past 65535
//! workgroups, and one large case per kernel family. `ci` marks the subset `cargo test` runs;
//! `bench` marks what `tessera bench` times.

use super::{BenchTier, Case, MatmulSpec, Spec};
use crate::kernels::elementwise::{Binary, Unary};
use crate::kernels::matmul::{BLayout, Path};
use crate::tensor::DType;

/// Lengths for elementwise kernels: 1, a prime, workgroup (256) ± 1, a large prime.
const ELEMENTWISE_LENGTHS: [usize; 5] = [1, 7, 255, 257, 65_537];
/// More than 65535 workgroups of 256: exercises the 2-D dispatch grid.
const HUGE_LEN: usize = (1 << 24) + 3;
const BENCH_LEN_QUICK: usize = 1 << 20;
const BENCH_LEN: usize = 1 << 24;

/// Rows × columns for row-wise kernels: single elements, primes, workgroup ± 1, a long row,
/// more rows than one grid dimension holds.
const ROW_SHAPES: [(usize, usize); 8] = [
    (1, 1),
    (1, 7),
    (3, 255),
    (5, 256),
    (2, 257),
    (7, 1000),
    (1, 65_537),
    (70_001, 3),
];

/// The matmul grid `tessera check` covers in full (tile = 64): M × N × K.
const MATMUL_M: [usize; 5] = [1, 7, 64, 65, 257];
const MATMUL_N: [usize; 3] = [1, 33, 4096];
const MATMUL_K: [usize; 3] = [1, 17, 1000];

/// Every case, in a stable order.
pub fn cases() -> Vec<Case> {
    let mut list = Vec::new();
    for dtype in DType::ALL {
        copy_cases(&mut list, dtype);
        elementwise_cases(&mut list, dtype);
        row_cases(&mut list, dtype);
        matmul_cases(&mut list, dtype);
    }
    list
}

fn case(spec: Spec, dtype: DType, ci: bool, bench: BenchTier) -> Case {
    Case {
        spec,
        dtype,
        ci,
        bench,
    }
}

fn copy_cases(list: &mut Vec<Case>, dtype: DType) {
    for len in [1, 3, 257, 65_537] {
        list.push(case(Spec::Copy { len }, dtype, true, BenchTier::No));
    }
}

fn elementwise_cases(list: &mut Vec<Case>, dtype: DType) {
    let unary = [
        Unary::Scale(0.37),
        Unary::Silu,
        Unary::GeluErf,
        Unary::GeluTanh,
    ];
    for op in unary {
        for len in ELEMENTWISE_LENGTHS {
            list.push(case(Spec::Unary { op, len }, dtype, true, BenchTier::No));
        }
        list.push(case(
            Spec::Unary { op, len: HUGE_LEN },
            dtype,
            false,
            BenchTier::No,
        ));
    }
    for op in [Binary::Add, Binary::Mul, Binary::SwiGlu] {
        for len in ELEMENTWISE_LENGTHS {
            let spec = Spec::Binary {
                op,
                a: vec![len],
                b: vec![len],
            };
            list.push(case(spec, dtype, true, BenchTier::No));
        }
        // b repeated over a's leading dimensions: a bias row, and a trailing 2-D block.
        for (a, b) in [(vec![33, 257], vec![257]), (vec![3, 5, 7], vec![5, 7])] {
            list.push(case(Spec::Binary { op, a, b }, dtype, true, BenchTier::No));
        }
        list.push(case(
            Spec::Binary {
                op,
                a: vec![HUGE_LEN],
                b: vec![HUGE_LEN],
            },
            dtype,
            false,
            BenchTier::No,
        ));
    }
    for (len, tier) in [
        (BENCH_LEN_QUICK, BenchTier::Quick),
        (BENCH_LEN, BenchTier::Full),
    ] {
        list.push(case(
            Spec::Unary {
                op: Unary::Silu,
                len,
            },
            dtype,
            false,
            tier,
        ));
        let add = Spec::Binary {
            op: Binary::Add,
            a: vec![len],
            b: vec![len],
        };
        list.push(case(add, dtype, false, tier));
        let swiglu = Spec::Binary {
            op: Binary::SwiGlu,
            a: vec![len],
            b: vec![len],
        };
        list.push(case(swiglu, dtype, false, tier));
    }
}

fn row_cases(list: &mut Vec<Case>, dtype: DType) {
    for (rows, cols) in ROW_SHAPES {
        let ci = rows * cols < 70_000;
        let (s, r, l) = row_specs(rows, cols, 0.0);
        for spec in [s, r, l] {
            list.push(case(spec, dtype, ci, BenchTier::No));
        }
    }
    // Logits near 100 overflow exp() in f32 unless the row maximum is subtracted first.
    let spec = Spec::Softmax {
        rows: 4,
        cols: 1000,
        offset: 100.0,
    };
    list.push(case(spec, dtype, true, BenchTier::No));
    // Values 1000 ± 2: E[x²] - mean² would lose the variance to cancellation. f16 cannot hold
    // such values finely enough for the case to mean anything.
    if dtype == DType::F32 {
        let spec = Spec::LayerNorm {
            rows: 2,
            cols: 65_537,
            offset: 1000.0,
        };
        list.push(case(spec, dtype, true, BenchTier::No));
    }
    for ((rows, cols), tier) in [
        ((1024, 1024), BenchTier::Quick),
        ((4096, 4096), BenchTier::Full),
    ] {
        let (s, r, l) = row_specs(rows, cols, 0.0);
        for spec in [s, r, l] {
            list.push(case(spec, dtype, false, tier));
        }
    }
}

fn row_specs(rows: usize, cols: usize, offset: f64) -> (Spec, Spec, Spec) {
    (
        Spec::Softmax { rows, cols, offset },
        Spec::RmsNorm { rows, cols },
        Spec::LayerNorm { rows, cols, offset },
    )
}

fn matmul(m: usize, n: usize, k: usize, layout: BLayout) -> Spec {
    Spec::Matmul(MatmulSpec::new(m, n, k, layout))
}

fn matmul_cases(list: &mut Vec<Case>, dtype: DType) {
    for layout in [BLayout::NK, BLayout::KN] {
        for m in MATMUL_M {
            for n in MATMUL_N {
                for k in MATMUL_K {
                    let ci = n < 4096 && k < 1000;
                    list.push(case(matmul(m, n, k, layout), dtype, ci, BenchTier::No));
                }
            }
        }
    }
    // A few large ones in CI too: a wide tiled product, a long GEMV.
    for (m, n, k) in [(65, 4096, 17), (1, 4096, 1000), (64, 33, 1000)] {
        let spec = Spec::Matmul(MatmulSpec {
            bias: true,
            ..MatmulSpec::new(m, n, k, BLayout::NK)
        });
        list.push(case(spec, dtype, true, BenchTier::No));
    }
    let extras = [
        // bias, both layouts, both kernels
        Spec::Matmul(MatmulSpec {
            bias: true,
            ..MatmulSpec::new(7, 33, 17, BLayout::KN)
        }),
        Spec::Matmul(MatmulSpec {
            bias: true,
            ..MatmulSpec::new(1, 129, 63, BLayout::KN)
        }),
        // the tiled kernel at M = 1
        Spec::Matmul(MatmulSpec {
            path: Path::Tiled,
            ..MatmulSpec::new(1, 33, 17, BLayout::NK)
        }),
        Spec::Matmul(MatmulSpec {
            path: Path::Tiled,
            bias: true,
            ..MatmulSpec::new(1, 65, 129, BLayout::KN)
        }),
        // one b per batch (attention-like), tiled and GEMV
        Spec::Matmul(MatmulSpec {
            batch: 3,
            b_batched: true,
            ..MatmulSpec::new(7, 33, 17, BLayout::NK)
        }),
        Spec::Matmul(MatmulSpec {
            batch: 3,
            b_batched: true,
            bias: true,
            ..MatmulSpec::new(65, 31, 66, BLayout::KN)
        }),
        Spec::Matmul(MatmulSpec {
            batch: 4,
            b_batched: true,
            ..MatmulSpec::new(1, 65, 129, BLayout::NK)
        }),
        Spec::Matmul(MatmulSpec {
            batch: 4,
            b_batched: true,
            ..MatmulSpec::new(1, 65, 129, BLayout::KN)
        }),
        // a [batch, seq, K] activation times a shared Linear weight
        Spec::Matmul(MatmulSpec {
            batch: 2,
            bias: true,
            ..MatmulSpec::new(5, 33, 17, BLayout::NK)
        }),
    ];
    for spec in extras {
        list.push(case(spec, dtype, true, BenchTier::No));
    }
    let bench = [
        (matmul(256, 256, 256, BLayout::NK), BenchTier::Quick),
        (matmul(1, 4096, 4096, BLayout::NK), BenchTier::Quick),
        (matmul(1024, 1024, 1024, BLayout::NK), BenchTier::Full),
        (matmul(1024, 1024, 1024, BLayout::KN), BenchTier::Full),
        (matmul(1, 4096, 4096, BLayout::KN), BenchTier::Full),
    ];
    for (spec, tier) in bench {
        list.push(case(spec, dtype, false, tier));
    }
    // The decode GEMV of a 7B-class MLP (11008 × 4096): f16 only, since in f32 it is larger
    // than a 128 MiB storage binding (lavapipe's limit).
    if dtype == DType::F16 {
        list.push(case(
            matmul(1, 11008, 4096, BLayout::NK),
            dtype,
            false,
            BenchTier::Full,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique() {
        let all = cases();
        let names: HashSet<String> = all.iter().map(Case::name).collect();
        assert_eq!(names.len(), all.len());
    }

    #[test]
    fn the_full_matmul_grid_is_listed_for_both_dtypes() {
        let all = cases();
        for dtype in DType::ALL {
            for m in MATMUL_M {
                for n in MATMUL_N {
                    for k in MATMUL_K {
                        let want = matmul(m, n, k, BLayout::NK);
                        assert!(
                            all.iter().any(|c| c.dtype == dtype && c.spec == want),
                            "missing M={m} N={n} K={k} {dtype}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_kernel_has_ci_and_bench_cases() {
        let all = cases();
        for kernel in [
            "copy",
            "silu",
            "add",
            "swiglu",
            "softmax",
            "rms_norm",
            "layer_norm",
        ] {
            assert!(
                all.iter().any(|c| c.kernel() == kernel && c.ci),
                "{kernel} ci"
            );
        }
        for kernel in [
            "silu",
            "add",
            "softmax",
            "rms_norm",
            "layer_norm",
            "matmul",
            "gemv",
        ] {
            let quick = |c: &&Case| c.kernel() == kernel && c.bench == BenchTier::Quick;
            assert!(all.iter().any(|c| quick(&c)), "{kernel} quick bench");
        }
    }
}
