//! The case list. Shapes include 1, primes, tile and workgroup sizes ± 1, grids past 65535
//! workgroups, and one large case per kernel family. `ci` marks the subset `cargo test` runs;
//! `bench` marks what `tessera bench` times. One file per kernel family.

mod attention;
mod basic;
mod matmul;
mod moe;
mod training;
mod unet;

use std::sync::Arc;

use super::{BenchTier, Case, CaseSpec};
use crate::tensor::DType;

/// Every case, in a stable order.
pub fn cases() -> Vec<Case> {
    let mut list = Vec::new();
    for dtype in DType::ALL {
        let families = [
            basic::copy_cases(),
            basic::elementwise_cases(),
            basic::row_cases(dtype),
            matmul::matmul_cases(dtype),
            matmul::packed_cases(),
            moe::moe_cases(),
            attention::attention_cases(dtype),
            attention::rope_cases(),
            attention::kv_append_cases(),
            attention::paged_cases(),
            training::training_cases(dtype),
            unet::conv_cases(dtype),
            unet::group_norm_cases(dtype),
            unet::spatial_cases(),
            unet::timestep_cases(),
            unet::scheduler_step_cases(),
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
pub(super) type Entry = (Arc<dyn CaseSpec>, bool, BenchTier);

pub(super) fn entry(spec: impl CaseSpec, ci: bool, bench: BenchTier) -> Entry {
    (Arc::new(spec), ci, bench)
}

/// `list` as entries, followed for f16 by the cooperative-matrix twin of every case that
/// `twin` gives one (same sizes, CI subset and bench tier).
pub(super) fn with_coop_twins<S: CaseSpec + Copy>(
    list: Vec<(S, bool, BenchTier)>,
    dtype: DType,
    twin: impl Fn(S) -> Option<S>,
) -> Vec<Entry> {
    let twins: Vec<(S, bool, BenchTier)> = if dtype == DType::F16 {
        list.iter()
            .filter_map(|&(spec, ci, tier)| twin(spec).map(|t| (t, ci, tier)))
            .collect()
    } else {
        Vec::new()
    };
    list.into_iter()
        .chain(twins)
        .map(|(spec, ci, tier)| entry(spec, ci, tier))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::attention::HEAD_GROUPS;
    use super::matmul::{MATMUL_K, MATMUL_M, MATMUL_N};
    use super::unet::{CONV_CHANNELS, CONV_SIZES};
    use super::*;
    use crate::kernels::matmul::BLayout;
    use crate::suite::{
        AttentionKernel, AttentionSpec, Conv2dSpec, GroupNormSpec, MatmulSpec, TimestepSpec,
    };
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
            "norm_gemv",
            "gemv_quant",
            "matmul_quant",
            "gather_quant",
            "moe_route",
            "moe_gemv",
            "moe_matmul",
            "moe_gemv_quant",
            "fma_peak",
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
            "fma_peak",
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
