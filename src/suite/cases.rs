//! The case list. Shapes include 1, primes, tile and workgroup sizes ± 1, grids past 65535
//! workgroups, and one large case per kernel family. `ci` marks the subset `cargo test` runs;
//! `bench` marks what `tessera bench` times.

use std::sync::Arc;

use super::{
    AttentionSpec, BenchTier, BinarySpec, Case, CaseSpec, Conv2dSpec, CopySpec, GatherSpec,
    GroupNormSpec, KvAppendSpec, LayerNormSpec, MatmulSpec, RmsNormSpec, RopeSpec,
    SchedulerStepSpec, SoftmaxSpec, SpatialSpec, TimestepSpec, TransposeSpec, UnarySpec,
};
use crate::kernels::conv2d::Conv2dOptions;
use crate::kernels::elementwise::{Binary, Unary};
use crate::kernels::matmul::{BLayout, Path};
use crate::kernels::rope::{RopeConfig, RopeScaling};
use crate::kernels::spatial::ChannelMix;
use crate::kernels::timestep::TimestepConfig;
use crate::models::diffusion::StepCoefficients;
use crate::tensor::DType;

/// Every case, in a stable order.
pub fn cases() -> Vec<Case> {
    let mut list = Vec::new();
    for dtype in DType::ALL {
        let families = [
            copy_cases(),
            elementwise_cases(),
            row_cases(dtype),
            matmul_cases(dtype),
            attention_cases(),
            rope_cases(),
            kv_append_cases(),
            conv_cases(),
            group_norm_cases(dtype),
            spatial_cases(),
            timestep_cases(),
            scheduler_step_cases(),
        ];
        list.extend(
            families
                .into_iter()
                .flatten()
                .map(|(spec, ci, bench)| Case {
                    spec,
                    dtype,
                    ci,
                    bench,
                }),
        );
    }
    list
}

/// (spec, in the CI subset, bench tier)
type Entry = (Arc<dyn CaseSpec>, bool, BenchTier);

fn entry(spec: impl CaseSpec, ci: bool, bench: BenchTier) -> Entry {
    (Arc::new(spec), ci, bench)
}

/// Lengths for elementwise kernels: 1, a prime, workgroup (256) ± 1, a large prime.
const ELEMENTWISE_LENGTHS: [usize; 5] = [1, 7, 255, 257, 65_537];
/// More than 65535 workgroups of 256: exercises the 2-D dispatch grid.
const HUGE_LEN: usize = (1 << 24) + 3;

fn copy_cases() -> Vec<Entry> {
    let mut list: Vec<Entry> = [1, 3, 257, 65_537]
        .map(|len| entry(CopySpec { len }, true, BenchTier::No))
        .into();
    for (n, rows, width, split) in [
        (1, 1, 1, None),
        (7, 33, 5, None),
        (300, 1000, 64, None),
        (9, 6, 128, Some(2)),
    ] {
        list.push(entry(
            GatherSpec {
                n,
                rows,
                width,
                split,
            },
            true,
            BenchTier::No,
        ));
    }
    for (batch, rows, cols) in [(1, 1, 1), (2, 17, 33), (3, 64, 256), (1, 1000, 3)] {
        list.push(entry(
            TransposeSpec { batch, rows, cols },
            true,
            BenchTier::No,
        ));
    }
    let big = TransposeSpec {
        batch: 4,
        rows: 256,
        cols: 1024,
    };
    list.push(entry(big, false, BenchTier::Quick));
    list
}

fn elementwise_cases() -> Vec<Entry> {
    let mut list = Vec::new();
    for op in [
        Unary::Scale(0.37),
        Unary::Silu,
        Unary::GeluErf,
        Unary::GeluTanh,
    ] {
        for len in ELEMENTWISE_LENGTHS {
            list.push(entry(UnarySpec { op, len }, true, BenchTier::No));
        }
        list.push(entry(UnarySpec { op, len: HUGE_LEN }, false, BenchTier::No));
    }
    for op in [Binary::Add, Binary::Mul, Binary::SwiGlu] {
        for len in ELEMENTWISE_LENGTHS {
            list.push(entry(BinarySpec::flat(op, len), true, BenchTier::No));
        }
        // b repeated over a's leading dimensions: a bias row, and a trailing 2-D block.
        for (a, b) in [(vec![33, 257], vec![257]), (vec![3, 5, 7], vec![5, 7])] {
            list.push(entry(BinarySpec { op, a, b }, true, BenchTier::No));
        }
        list.push(entry(BinarySpec::flat(op, HUGE_LEN), false, BenchTier::No));
    }
    for (len, tier) in [(1 << 20, BenchTier::Quick), (1 << 24, BenchTier::Full)] {
        list.push(entry(
            UnarySpec {
                op: Unary::Silu,
                len,
            },
            false,
            tier,
        ));
        list.push(entry(BinarySpec::flat(Binary::Add, len), false, tier));
        list.push(entry(BinarySpec::flat(Binary::SwiGlu, len), false, tier));
    }
    list
}

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

fn row_specs(rows: usize, cols: usize, ci: bool, tier: BenchTier) -> [Entry; 3] {
    [
        entry(
            SoftmaxSpec {
                rows,
                cols,
                offset: 0.0,
            },
            ci,
            tier,
        ),
        entry(RmsNormSpec { rows, cols }, ci, tier),
        entry(
            LayerNormSpec {
                rows,
                cols,
                offset: 0.0,
            },
            ci,
            tier,
        ),
    ]
}

fn row_cases(dtype: DType) -> Vec<Entry> {
    let mut list = Vec::new();
    for (rows, cols) in ROW_SHAPES {
        list.extend(row_specs(rows, cols, rows * cols < 70_000, BenchTier::No));
    }
    // Logits near 100 overflow exp() in f32 unless the row maximum is subtracted first.
    let big_logits = SoftmaxSpec {
        rows: 4,
        cols: 1000,
        offset: 100.0,
    };
    list.push(entry(big_logits, true, BenchTier::No));
    // Values 1000 ± 2: E[x²] - mean² would lose the variance to cancellation. f16 cannot hold
    // such values finely enough for the case to mean anything.
    if dtype == DType::F32 {
        let offset = LayerNormSpec {
            rows: 2,
            cols: 65_537,
            offset: 1000.0,
        };
        list.push(entry(offset, true, BenchTier::No));
    }
    list.extend(row_specs(1024, 1024, false, BenchTier::Quick));
    list.extend(row_specs(4096, 4096, false, BenchTier::Full));
    list
}

/// The matmul grid `tessera check` covers in full (tile = 64): M × N × K.
const MATMUL_M: [usize; 5] = [1, 7, 64, 65, 257];
const MATMUL_N: [usize; 3] = [1, 33, 4096];
const MATMUL_K: [usize; 3] = [1, 17, 1000];

fn matmul_cases(dtype: DType) -> Vec<Entry> {
    let mm = MatmulSpec::new;
    let mut list = Vec::new();
    for layout in [BLayout::NK, BLayout::KN] {
        for m in MATMUL_M {
            for n in MATMUL_N {
                for k in MATMUL_K {
                    let ci = n < 4096 && k < 1000;
                    list.push(entry(mm(m, n, k, layout), ci, BenchTier::No));
                }
            }
        }
    }
    // A few large ones in CI too: a wide tiled product, a long GEMV.
    for (m, n, k) in [(65, 4096, 17), (1, 4096, 1000), (64, 33, 1000)] {
        let spec = MatmulSpec {
            bias: true,
            ..mm(m, n, k, BLayout::NK)
        };
        list.push(entry(spec, true, BenchTier::No));
    }
    let extras = [
        // bias, both layouts, both kernels
        MatmulSpec {
            bias: true,
            ..mm(7, 33, 17, BLayout::KN)
        },
        MatmulSpec {
            bias: true,
            ..mm(1, 129, 63, BLayout::KN)
        },
        // the tiled kernel at M = 1
        MatmulSpec {
            path: Path::Tiled,
            ..mm(1, 33, 17, BLayout::NK)
        },
        MatmulSpec {
            path: Path::Tiled,
            bias: true,
            ..mm(1, 65, 129, BLayout::KN)
        },
        // one b per batch (attention-like), tiled and GEMV
        MatmulSpec {
            batch: 3,
            b_batched: true,
            ..mm(7, 33, 17, BLayout::NK)
        },
        MatmulSpec {
            batch: 3,
            b_batched: true,
            bias: true,
            ..mm(65, 31, 66, BLayout::KN)
        },
        MatmulSpec {
            batch: 4,
            b_batched: true,
            ..mm(1, 65, 129, BLayout::NK)
        },
        MatmulSpec {
            batch: 4,
            b_batched: true,
            ..mm(1, 65, 129, BLayout::KN)
        },
        // a [batch, seq, K] activation times a shared Linear weight
        MatmulSpec {
            batch: 2,
            bias: true,
            ..mm(5, 33, 17, BLayout::NK)
        },
    ];
    list.extend(extras.map(|spec| entry(spec, true, BenchTier::No)));
    let bench = [
        (mm(256, 256, 256, BLayout::NK), BenchTier::Quick),
        (mm(1, 4096, 4096, BLayout::NK), BenchTier::Quick),
        (mm(1024, 1024, 1024, BLayout::NK), BenchTier::Full),
        (mm(1024, 1024, 1024, BLayout::KN), BenchTier::Full),
        (mm(1, 4096, 4096, BLayout::KN), BenchTier::Full),
    ];
    list.extend(bench.map(|(spec, tier)| entry(spec, false, tier)));
    // The decode GEMV of a 7B-class MLP (11008 × 4096): f16 only, since in f32 it is larger
    // than a 128 MiB storage binding (lavapipe's limit).
    if dtype == DType::F16 {
        list.push(entry(
            mm(1, 11008, 4096, BLayout::NK),
            false,
            BenchTier::Full,
        ));
    }
    list
}

/// Query/key-value head pairs: grouped-query ratios 1, 2 and 4, and multi-query.
const HEAD_GROUPS: [(usize, usize); 4] = [(4, 4), (4, 2), (8, 2), (4, 1)];

fn attention_cases() -> Vec<Entry> {
    let flash = AttentionSpec::new;
    let decode = AttentionSpec::decode;
    let mut list = Vec::new();
    // Every head grouping, causal and full, on a prefill that is not a multiple of the block.
    for heads in HEAD_GROUPS {
        for causal in [true, false] {
            list.push(entry(flash(37, heads, 64, causal), true, BenchTier::No));
        }
    }
    // Self-attention prefills of awkward lengths at the common head sizes.
    for head_dim in [64, 128, 80] {
        for q_len in [1, 7, 64, 129] {
            for causal in [true, false] {
                let ci = q_len < 129 || head_dim == 64;
                list.push(entry(
                    flash(q_len, (4, 2), head_dim, causal),
                    ci,
                    BenchTier::No,
                ));
            }
        }
    }
    for head_dim in [32, 96, 256] {
        list.push(entry(
            flash(33, (4, 2), head_dim, true),
            true,
            BenchTier::No,
        ));
    }
    // Chunked prefill: the queries are the last q_len of kv_len positions.
    for head_dim in [64, 128] {
        for (q_len, kv_len) in [(1, 1024), (7, 100), (64, 1024), (129, 1000)] {
            for causal in [true, false] {
                let spec = AttentionSpec {
                    kv_len,
                    kv_capacity: kv_len,
                    ..flash(q_len, (4, 2), head_dim, causal)
                };
                list.push(entry(spec, kv_len <= 100, BenchTier::No));
            }
        }
    }
    // Batched, reading a cache larger than what is filled.
    let batched = AttentionSpec {
        batch: 2,
        kv_len: 40,
        kv_capacity: 64,
        ..flash(7, (8, 2), 64, true)
    };
    list.push(entry(batched, true, BenchTier::No));
    // Decode against caches of 1, 17, a split ± 1 and 2048 positions.
    for kv_len in [1, 17, 255, 257, 2048] {
        for heads in [(4, 4), (8, 2), (8, 1)] {
            list.push(entry(
                decode(kv_len, heads, 64),
                kv_len < 2048,
                BenchTier::No,
            ));
        }
        list.push(entry(
            decode(kv_len, (8, 2), 128),
            kv_len < 2048,
            BenchTier::No,
        ));
    }
    let batched_decode = AttentionSpec {
        batch: 3,
        kv_capacity: 300,
        ..decode(257, (8, 2), 80)
    };
    list.push(entry(batched_decode, true, BenchTier::No));
    // The flash kernel with a single query, for comparison with decode.
    let single = AttentionSpec {
        kv_len: 300,
        kv_capacity: 300,
        ..flash(1, (8, 2), 64, true)
    };
    list.push(entry(single, true, BenchTier::No));
    list.push(entry(flash(256, (8, 8), 64, true), false, BenchTier::Quick));
    list.push(entry(
        flash(1024, (8, 8), 128, true),
        false,
        BenchTier::Full,
    ));
    list.push(entry(decode(1024, (32, 8), 128), false, BenchTier::Quick));
    list.push(entry(decode(4096, (32, 8), 128), false, BenchTier::Full));
    list
}

fn rope_cases() -> Vec<Entry> {
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
    let rope = |batch, seq, n_heads, position, config| RopeSpec {
        batch,
        seq,
        n_heads,
        position,
        config,
    };
    let mut list = Vec::new();
    for config in [default, linear, llama3] {
        for (seq, position) in [(7, 0), (1, 1), (5, 40_000)] {
            list.push(entry(
                rope(1, seq, 3, position, config),
                true,
                BenchTier::No,
            ));
        }
    }
    let odd = RopeConfig {
        head_dim: 80,
        ..default
    };
    list.push(entry(rope(2, 9, 5, 3, odd), true, BenchTier::No));
    list.push(entry(rope(1, 2048, 32, 0, llama3), false, BenchTier::Quick));
    list
}

fn kv_append_cases() -> Vec<Entry> {
    [(0, 5), (12, 5), (16, 1)]
        .map(|(position, new_len)| {
            let spec = KvAppendSpec {
                batch: 2,
                capacity: 17,
                n_kv_heads: 3,
                head_dim: 8,
                position,
                new_len,
            };
            entry(spec, true, BenchTier::No)
        })
        .into()
}

/// Convolution channel pairs and input sizes from the UNet acceptance list.
const CONV_CHANNELS: [(usize, usize); 4] = [(3, 32), (32, 64), (64, 64), (96, 32)];
const CONV_SIZES: [(usize, usize); 4] = [(1, 1), (7, 9), (16, 16), (32, 32)];

fn conv_cases() -> Vec<Entry> {
    let mut list = Vec::new();
    for kernel in [3, 1] {
        for stride in [1, 2] {
            for (c_in, c_out) in CONV_CHANNELS {
                for hw in CONV_SIZES {
                    for batch in [1, 3] {
                        let spec = Conv2dSpec::new(batch, c_in, c_out, hw, kernel, stride);
                        let ci = hw.0 * hw.1 * c_in * c_out * batch <= 7 * 9 * 32 * 64;
                        list.push(entry(spec, ci, BenchTier::No));
                    }
                }
            }
        }
    }
    // diffusers' downsample_padding = 0: pad (0, 1, 0, 1), then a stride-2 3×3 convolution.
    for hw in [(7, 9), (16, 16)] {
        let spec = Conv2dSpec {
            options: Conv2dOptions {
                stride: 2,
                pad_top: 0,
                pad_bottom: 1,
                pad_left: 0,
                pad_right: 1,
            },
            ..Conv2dSpec::new(2, 32, 32, hw, 3, 2)
        };
        list.push(entry(spec, true, BenchTier::No));
    }
    let no_bias = Conv2dSpec {
        bias: false,
        ..Conv2dSpec::new(1, 5, 7, (6, 5), 3, 1)
    };
    list.push(entry(no_bias, true, BenchTier::No));
    let quick = Conv2dSpec::new(1, 64, 64, (64, 64), 3, 1);
    list.push(entry(quick, false, BenchTier::Quick));
    let full = Conv2dSpec::new(4, 128, 128, (32, 32), 3, 1);
    list.push(entry(full, false, BenchTier::Full));
    list
}

fn group_norm_cases(dtype: DType) -> Vec<Entry> {
    let gn = |batch, channels, groups, (h, w): (usize, usize), silu| GroupNormSpec {
        batch,
        channels,
        groups,
        h,
        w,
        silu,
        offset: 0.0,
    };
    let mut list = Vec::new();
    let shapes = [
        (32, 1),
        (32, 8),
        (32, 32),
        (64, 32),
        (96, 32),
        (128, 8),
        (256, 32),
        (512, 32),
        (512, 1),
    ];
    for (channels, groups) in shapes {
        for silu in [false, true] {
            for (batch, hw) in [(1, (7, 9)), (3, (4, 4)), (2, (1, 1))] {
                let spec = gn(batch, channels, groups, hw, silu);
                list.push(entry(spec, channels <= 128, BenchTier::No));
            }
        }
    }
    // One group of 1M values 1000 ± 1 (f32: f16 cannot hold such values finely).
    if dtype == DType::F32 {
        let offset = GroupNormSpec {
            offset: 1000.0,
            ..gn(1, 64, 1, (128, 128), false)
        };
        list.push(entry(offset, true, BenchTier::No));
    }
    list.push(entry(
        gn(1, 128, 32, (64, 64), true),
        false,
        BenchTier::Quick,
    ));
    list.push(entry(
        gn(4, 256, 32, (64, 64), true),
        false,
        BenchTier::Full,
    ));
    list
}

fn spatial_cases() -> Vec<Entry> {
    let mut list = Vec::new();
    for (n, c, h, w) in [(1, 3, 7, 9), (3, 32, 16, 16), (2, 5, 1, 1)] {
        list.push(entry(
            SpatialSpec::Upsample { n, c, h, w },
            true,
            BenchTier::No,
        ));
    }
    for (n, c, h, w) in [(1, 3, 7, 9), (3, 32, 16, 16), (2, 5, 2, 2)] {
        list.push(entry(
            SpatialSpec::AvgPool { n, c, h, w },
            true,
            BenchTier::No,
        ));
    }
    for mix in [ChannelMix::Add, ChannelMix::ScaleShift] {
        for (n, c, h, w) in [(3, 32, 7, 9), (1, 64, 1, 1), (2, 96, 16, 16)] {
            list.push(entry(
                SpatialSpec::ChannelMix { mix, n, c, h, w },
                true,
                BenchTier::No,
            ));
        }
    }
    for (n, c, c_b, h, w) in [(3, 32, 64, 7, 9), (1, 3, 5, 1, 1), (2, 96, 32, 16, 16)] {
        list.push(entry(
            SpatialSpec::Concat { n, c, c_b, h, w },
            true,
            BenchTier::No,
        ));
    }
    let big = (4, 128, 64, 64);
    let (n, c, h, w) = big;
    list.push(entry(
        SpatialSpec::Upsample { n, c, h, w },
        false,
        BenchTier::Quick,
    ));
    let mix = ChannelMix::Add;
    list.push(entry(
        SpatialSpec::ChannelMix { mix, n, c, h, w },
        false,
        BenchTier::Quick,
    ));
    list
}

fn scheduler_step_cases() -> Vec<Entry> {
    let ddpm = StepCoefficients {
        k_sample: 1.02,
        k_model: -0.2,
        clip: Some(1.0),
        a_x0: 0.3,
        a_sample: 0.69,
        a_eps: 0.0,
        e_sample: 0.0,
        e_model: 0.0,
        noise_scale: 0.1,
    };
    let ddim = StepCoefficients {
        clip: None,
        a_x0: 0.7,
        a_sample: 0.0,
        a_eps: 0.71,
        e_model: 1.0,
        noise_scale: 0.0,
        ..ddpm
    };
    let mut list = Vec::new();
    for coefficients in [ddpm, ddim] {
        for len in [1, 257, 3 * 3 * 32 * 32] {
            list.push(entry(
                SchedulerStepSpec { len, coefficients },
                true,
                BenchTier::No,
            ));
        }
    }
    list
}

fn timestep_cases() -> Vec<Entry> {
    const TIMESTEPS: &[f64] = &[0.0, 1.0, 999.0, 500.0, 17.0];
    let mut list = Vec::new();
    for (dim, freq_shift) in [(32, 1.0), (33, 0.0), (128, 1.0), (128, 0.0)] {
        for flip_sin_to_cos in [false, true] {
            let config = TimestepConfig {
                dim,
                flip_sin_to_cos,
                freq_shift,
            };
            let spec = TimestepSpec {
                config,
                timesteps: TIMESTEPS,
            };
            list.push(entry(spec, true, BenchTier::No));
        }
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::AttentionKernel;
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
                        let want = MatmulSpec::new(m, n, k, BLayout::NK);
                        assert!(
                            all.iter()
                                .any(|c| c.dtype == dtype
                                    && c.spec_as::<MatmulSpec>() == Some(&want)),
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
        let with_ci = [
            "copy",
            "gather",
            "transpose",
            "transpose",
            "silu",
            "add",
            "swiglu",
            "softmax",
            "rms_norm",
            "layer_norm",
            "flash_attn",
            "decode_attn",
            "rope",
            "kv_append",
            "conv2d",
            "group_norm",
            "upsample",
            "avg_pool",
            "channel_add",
            "scale_shift",
            "concat",
            "timestep_emb",
            "sched_step",
        ];
        for kernel in with_ci {
            assert!(
                all.iter().any(|c| c.kernel() == kernel && c.ci),
                "{kernel} ci"
            );
        }
        let with_bench = [
            "silu",
            "add",
            "softmax",
            "rms_norm",
            "layer_norm",
            "matmul",
            "gemv",
            "flash_attn",
            "decode_attn",
            "rope",
            "conv2d",
            "group_norm",
        ];
        for kernel in with_bench {
            let quick = |c: &&Case| c.kernel() == kernel && c.bench == BenchTier::Quick;
            assert!(all.iter().any(|c| quick(&c)), "{kernel} quick bench");
        }
    }

    #[test]
    fn the_attention_acceptance_cases_are_listed_for_both_dtypes() {
        let all = cases();
        let attention = |dtype: DType| {
            all.iter()
                .filter(move |c| c.dtype == dtype)
                .filter_map(|c| c.spec_as::<AttentionSpec>())
        };
        for dtype in DType::ALL {
            for causal in [true, false] {
                for (h, kv) in HEAD_GROUPS {
                    assert!(attention(dtype).any(|a| a.causal == causal
                        && (a.n_heads, a.n_kv_heads) == (h, kv)
                        && a.kernel == AttentionKernel::Flash));
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
                    && a.kernel == AttentionKernel::Decode));
            }
        }
    }

    #[test]
    fn the_unet_acceptance_cases_are_listed_for_both_dtypes() {
        let all = cases();
        for dtype in DType::ALL {
            let convs: Vec<&Conv2dSpec> = all
                .iter()
                .filter(|c| c.dtype == dtype)
                .filter_map(|c| c.spec_as::<Conv2dSpec>())
                .collect();
            for kernel in [1, 3] {
                for stride in [1, 2] {
                    for (c_in, c_out) in CONV_CHANNELS {
                        for (h, w) in CONV_SIZES {
                            for batch in [1, 3] {
                                assert!(
                                    convs
                                        .iter()
                                        .any(|c| (c.kernel, c.options.stride) == (kernel, stride)
                                            && (c.c_in, c.c_out, c.h, c.w, c.batch)
                                                == (c_in, c_out, h, w, batch))
                                );
                            }
                        }
                    }
                }
            }
            let norms: Vec<&GroupNormSpec> = all
                .iter()
                .filter(|c| c.dtype == dtype)
                .filter_map(|c| c.spec_as::<GroupNormSpec>())
                .collect();
            for groups in [1, 8, 32] {
                for silu in [false, true] {
                    assert!(norms.iter().any(|g| g.groups == groups && g.silu == silu));
                }
            }
            assert!(
                norms.iter().any(|g| g.channels == 32) && norms.iter().any(|g| g.channels == 512)
            );
            let steps: Vec<&TimestepSpec> = all
                .iter()
                .filter(|c| c.dtype == dtype)
                .filter_map(|c| c.spec_as::<TimestepSpec>())
                .collect();
            for flip in [false, true] {
                assert!(steps.iter().any(|s| s.config.flip_sin_to_cos == flip
                    && [0.0, 1.0, 999.0].iter().all(|t| s.timesteps.contains(t))));
            }
        }
    }
}
