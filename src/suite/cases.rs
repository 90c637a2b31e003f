//! The case list. Shapes include 1, primes, tile and workgroup sizes ± 1, grids past 65535
//! workgroups, and one large case per kernel family. `ci` marks the subset `cargo test` runs;
//! `bench` marks what `tessera bench` times.

use super::{AttentionSpec, BenchTier, Case, KvAppendSpec, MatmulSpec, RopeSpec, Spec};
use crate::kernels::elementwise::{Binary, Unary};
use crate::kernels::matmul::{BLayout, Path};
use crate::kernels::rope::{RopeConfig, RopeScaling};
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
        attention_cases(&mut list, dtype);
        rope_cases(&mut list, dtype);
        kv_append_cases(&mut list, dtype);
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

/// Query/key-value head pairs: grouped-query ratios 1, 2 and 4, and multi-query.
const HEAD_GROUPS: [(usize, usize); 4] = [(4, 4), (4, 2), (8, 2), (4, 1)];

fn attention_cases(list: &mut Vec<Case>, dtype: DType) {
    let mut push = |spec: AttentionSpec, ci: bool, bench: BenchTier| {
        list.push(case(Spec::Attention(spec), dtype, ci, bench));
    };
    // Every head grouping, causal and full, on a prefill that is not a multiple of the block.
    for (h, kv) in HEAD_GROUPS {
        for causal in [true, false] {
            push(
                AttentionSpec::new(37, h, kv, 64, causal),
                true,
                BenchTier::No,
            );
        }
    }
    // Self-attention prefills of awkward lengths at the common head sizes.
    for head_dim in [64, 128, 80] {
        for q_len in [1, 7, 64, 129] {
            for causal in [true, false] {
                let spec = AttentionSpec::new(q_len, 4, 2, head_dim, causal);
                push(spec, q_len < 129 || head_dim == 64, BenchTier::No);
            }
        }
    }
    for head_dim in [32, 96, 256] {
        push(
            AttentionSpec::new(33, 4, 2, head_dim, true),
            true,
            BenchTier::No,
        );
    }
    // Chunked prefill: the queries are the last q_len of kv_len positions.
    for head_dim in [64, 128] {
        for (q_len, kv_len) in [(1, 1024), (7, 100), (64, 1024), (129, 1000)] {
            for causal in [true, false] {
                let spec = AttentionSpec {
                    kv_len,
                    kv_capacity: kv_len,
                    ..AttentionSpec::new(q_len, 4, 2, head_dim, causal)
                };
                push(spec, kv_len <= 100, BenchTier::No);
            }
        }
    }
    // Batched, reading a cache larger than what is filled.
    push(
        AttentionSpec {
            batch: 2,
            kv_len: 40,
            kv_capacity: 64,
            ..AttentionSpec::new(7, 8, 2, 64, true)
        },
        true,
        BenchTier::No,
    );
    // Decode against caches of 1, 17, a split ± 1 and 2048 positions.
    for kv_len in [1, 17, 255, 257, 2048] {
        for (h, kv) in [(4, 4), (8, 2), (8, 1)] {
            push(
                AttentionSpec::decode(kv_len, h, kv, 64),
                kv_len < 2048,
                BenchTier::No,
            );
        }
        push(
            AttentionSpec::decode(kv_len, 8, 2, 128),
            kv_len < 2048,
            BenchTier::No,
        );
    }
    push(
        AttentionSpec {
            batch: 3,
            kv_capacity: 300,
            ..AttentionSpec::decode(257, 8, 2, 80)
        },
        true,
        BenchTier::No,
    );
    // The flash kernel with a single query, for comparison with decode.
    push(
        AttentionSpec {
            kv_len: 300,
            kv_capacity: 300,
            ..AttentionSpec::new(1, 8, 2, 64, true)
        },
        true,
        BenchTier::No,
    );
    push(
        AttentionSpec::new(256, 8, 8, 64, true),
        false,
        BenchTier::Quick,
    );
    push(
        AttentionSpec::new(1024, 8, 8, 128, true),
        false,
        BenchTier::Full,
    );
    push(
        AttentionSpec::decode(1024, 32, 8, 128),
        false,
        BenchTier::Quick,
    );
    push(
        AttentionSpec::decode(4096, 32, 8, 128),
        false,
        BenchTier::Full,
    );
}

fn rope_cases(list: &mut Vec<Case>, dtype: DType) {
    let default = RopeConfig {
        theta: 10_000.0,
        head_dim: 64,
        scaling: RopeScaling::None,
    };
    let linear = RopeConfig {
        scaling: RopeScaling::Linear { factor: 4.0 },
        ..default
    };
    // Llama 3.x's schedule; 40000 is far past its original 8192-position context.
    let llama3 = RopeConfig {
        theta: 500_000.0,
        head_dim: 128,
        scaling: RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0,
        },
    };
    for config in [default, linear, llama3] {
        for (seq, position) in [(7, 0), (1, 1), (5, 40_000)] {
            let spec = RopeSpec {
                batch: 1,
                seq,
                n_heads: 3,
                position,
                config,
            };
            list.push(case(Spec::Rope(spec), dtype, true, BenchTier::No));
        }
    }
    let odd = RopeSpec {
        batch: 2,
        seq: 9,
        n_heads: 5,
        position: 3,
        config: RopeConfig {
            head_dim: 80,
            ..default
        },
    };
    list.push(case(Spec::Rope(odd), dtype, true, BenchTier::No));
    let bench = RopeSpec {
        batch: 1,
        seq: 2048,
        n_heads: 32,
        position: 0,
        config: llama3,
    };
    list.push(case(Spec::Rope(bench), dtype, false, BenchTier::Quick));
}

fn kv_append_cases(list: &mut Vec<Case>, dtype: DType) {
    for (position, new_len) in [(0, 5), (12, 5), (16, 1)] {
        let spec = KvAppendSpec {
            batch: 2,
            capacity: 17,
            n_kv_heads: 3,
            head_dim: 8,
            position,
            new_len,
        };
        list.push(case(Spec::KvAppend(spec), dtype, true, BenchTier::No));
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

    #[test]
    fn the_attention_acceptance_cases_are_listed_for_both_dtypes() {
        let all = cases();
        let attention = |dtype: DType| {
            all.iter().filter_map(move |c| match c.spec {
                Spec::Attention(a) if c.dtype == dtype => Some(a),
                _ => None,
            })
        };
        for dtype in DType::ALL {
            for causal in [true, false] {
                for (h, kv) in HEAD_GROUPS {
                    assert!(attention(dtype).any(|a| a.causal == causal
                        && (a.n_heads, a.n_kv_heads) == (h, kv)
                        && a.kernel == super::super::AttentionKernel::Flash));
                }
            }
            for head_dim in [64, 128, 80] {
                for q_len in [1, 7, 64, 129] {
                    assert!(attention(dtype).any(|a| a.head_dim == head_dim && a.q_len == q_len));
                }
            }
            assert!(attention(dtype).any(|a| a.q_len < a.kv_len && a.kv_len == 1024));
            for kv_len in [1, 17, 2048] {
                assert!(attention(dtype).any(|a| a.q_len == 1
                    && a.kv_len == kv_len
                    && a.kernel == super::super::AttentionKernel::Decode));
            }
        }
    }
}
