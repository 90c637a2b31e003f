//! Cases for attention, RoPE and the KV-cache append.

use super::{Entry, entry, with_coop_twins};
use crate::kernels::rope::{RopeConfig, RopeScaling};
use crate::suite::*;
use crate::tensor::DType;

/// Query/key-value head pairs: grouped-query ratios 1, 2 and 4, and multi-query.
pub(super) const HEAD_GROUPS: [(usize, usize); 4] = [(4, 4), (4, 2), (8, 2), (4, 1)];

/// The attention cases; for f16 every prefill case again on the cooperative-matrix kernel
/// (skipped where the adapter has none) at the head sizes it takes (64, 80, 96, 128).
pub(super) fn attention_cases(dtype: DType) -> Vec<Entry> {
    with_coop_twins(scalar_attention_cases(), dtype, |spec| {
        let takes =
            spec.kernel == AttentionKernel::Flash && [64, 80, 96, 128].contains(&spec.head_dim);
        takes.then_some(AttentionSpec {
            kernel: AttentionKernel::FlashCoop,
            ..spec
        })
    })
}

fn scalar_attention_cases() -> Vec<(AttentionSpec, bool, BenchTier)> {
    let flash = AttentionSpec::new;
    let decode = AttentionSpec::decode;
    let mut list = Vec::new();
    // Every head grouping, causal and full, on a prefill that is not a multiple of the block.
    for heads in HEAD_GROUPS {
        for causal in [true, false] {
            list.push((flash(37, heads, 64, causal), true, BenchTier::No));
        }
    }
    // Self-attention prefills of awkward lengths at the common head sizes.
    for head_dim in [64, 128, 80, 96] {
        for q_len in [1, 7, 64, 129] {
            for causal in [true, false] {
                let ci = q_len < 129 || head_dim == 64;
                list.push((flash(q_len, (4, 2), head_dim, causal), ci, BenchTier::No));
            }
        }
    }
    for head_dim in [32, 256] {
        list.push((flash(33, (4, 2), head_dim, true), true, BenchTier::No));
    }
    // Sliding windows shorter than the keys: a prefill (window inside a block and across
    // blocks), a chunked prefill, and decode with the window inside one split and across
    // splits (300 keys, window 260).
    for (spec, window) in [
        (flash(37, (4, 2), 64, true), 5),
        (flash(70, (8, 2), 128, true), 40),
        (
            AttentionSpec {
                kv_len: 100,
                kv_capacity: 100,
                ..flash(7, (4, 2), 64, true)
            },
            16,
        ),
        (decode(40, (4, 1), 64), 8),
        (decode(300, (4, 2), 64), 260),
    ] {
        let windowed = AttentionSpec {
            window: Some(window),
            ..spec
        };
        list.push((windowed, true, BenchTier::No));
    }
    // Gemma 2's logit soft-cap, tight enough (2) to bend most logits: prefill and decode.
    for spec in [
        flash(37, (4, 2), 64, true),
        flash(9, (8, 2), 128, false),
        decode(300, (4, 1), 64),
    ] {
        let capped = AttentionSpec {
            softcap: Some(2.0),
            ..spec
        };
        list.push((capped, true, BenchTier::No));
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
                list.push((spec, kv_len <= 100, BenchTier::No));
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
    list.push((batched, true, BenchTier::No));
    // Decode against caches of 1, 17, a split ± 1 and 2048 positions.
    for kv_len in [1, 17, 255, 257, 2048] {
        for heads in [(4, 4), (8, 2), (8, 1)] {
            list.push((decode(kv_len, heads, 64), kv_len < 2048, BenchTier::No));
        }
        list.push((decode(kv_len, (8, 2), 128), kv_len < 2048, BenchTier::No));
    }
    let batched_decode = AttentionSpec {
        batch: 3,
        kv_capacity: 300,
        ..decode(257, (8, 2), 80)
    };
    list.push((batched_decode, true, BenchTier::No));
    // The flash kernel with a single query, for comparison with decode.
    let single = AttentionSpec {
        kv_len: 300,
        kv_capacity: 300,
        ..flash(1, (8, 2), 64, true)
    };
    list.push((single, true, BenchTier::No));
    list.push((flash(256, (8, 8), 64, true), false, BenchTier::Quick));
    list.push((flash(1024, (8, 8), 128, true), false, BenchTier::Full));
    // The fast-path issue's acceptance size: B = 1, H = 32, S = 2048, D = 128, causal.
    list.push((flash(2048, (32, 32), 128, true), false, BenchTier::Large));
    list.push((decode(1024, (32, 8), 128), false, BenchTier::Quick));
    list.push((decode(4096, (32, 8), 128), false, BenchTier::Full));
    list
}

pub(super) fn rope_cases() -> Vec<Entry> {
    let default = RopeConfig {
        theta: 10_000.0,
        head_dim: 64,
        scaling: RopeScaling::None,
    };
    let linear = RopeConfig {
        scaling: RopeScaling::Linear { factor: 4.0 },
        ..default.clone()
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
    // Llama 3's schedule as a GGUF file stores it (rope_freqs.weight): the same table.
    let factors = RopeConfig {
        scaling: RopeScaling::Factors(
            llama3
                .inv_freq()
                .iter()
                .zip(
                    RopeConfig {
                        scaling: RopeScaling::None,
                        ..llama3.clone()
                    }
                    .inv_freq(),
                )
                .map(|(scaled, plain)| plain / scaled)
                .collect(),
        ),
        ..llama3.clone()
    };
    // Phi-3's longrope: short factors below position 8, long ones from there (the (5, 40000)
    // and a (6, 5) case below cross or pass it), cos and sin scaled.
    let longrope = RopeConfig {
        scaling: RopeScaling::LongRope {
            short: (0..32).map(|i| 1.0 + i as f64 / 32.0).collect(),
            long: (0..32).map(|i| 1.0 + i as f64 / 4.0).collect(),
            original_max_position_embeddings: 8,
            attention_factor: 1.19,
        },
        ..default.clone()
    };
    let rope = |batch, seq, n_heads, position, config: &RopeConfig| RopeSpec {
        batch,
        seq,
        n_heads,
        position,
        config: config.clone(),
        backward: false,
    };
    let mut list = Vec::new();
    for config in [&default, &linear, &llama3, &factors, &longrope] {
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
        ..default.clone()
    };
    list.push(entry(rope(2, 9, 5, 3, &odd), true, BenchTier::No));
    list.push(entry(rope(1, 6, 3, 5, &longrope), true, BenchTier::No));
    // RoPE's gradient (the opposite rotation) under every schedule.
    for config in [&default, &linear, &llama3, &factors, &longrope] {
        let spec = RopeSpec {
            backward: true,
            ..rope(1, 9, 3, 2, config)
        };
        list.push(entry(spec, true, BenchTier::No));
    }
    list.push(entry(
        rope(1, 2048, 32, 0, &llama3),
        false,
        BenchTier::Quick,
    ));
    list
}

pub(super) fn kv_append_cases() -> Vec<Entry> {
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

/// Paged attention: decode rows of sequences of 1 key, a block ± 1 and a few tiles; prompt
/// chunks beside decode rows; every head grouping; a window and a soft-cap; head sizes 32
/// to 256; blocks of 1, 16 and 13 positions. And the row write into the pool.
pub(super) fn paged_cases() -> Vec<Entry> {
    let spec =
        |seqs: &[(usize, usize)], heads: (usize, usize), head_dim, block_size| PagedAttentionSpec {
            seqs: seqs.to_vec(),
            n_heads: heads.0,
            n_kv_heads: heads.1,
            head_dim,
            block_size,
            softcap: None,
            window: None,
        };
    let mixed: &[(usize, usize)] = &[(1, 1), (15, 1), (16, 1), (17, 1), (150, 1), (40, 9)];
    let mut list: Vec<Entry> = HEAD_GROUPS
        .iter()
        .map(|&heads| entry(spec(mixed, heads, 64, 16), true, BenchTier::No))
        .collect();
    for head_dim in [32, 80, 128, 256] {
        list.push(entry(
            spec(mixed, (4, 2), head_dim, 16),
            true,
            BenchTier::No,
        ));
    }
    list.push(entry(
        spec(&[(5, 5), (9, 2), (3, 1)], (4, 2), 64, 1),
        true,
        BenchTier::No,
    ));
    list.push(entry(
        spec(&[(70, 70), (33, 1)], (8, 2), 64, 13),
        true,
        BenchTier::No,
    ));
    list.push(entry(
        PagedAttentionSpec {
            window: Some(20),
            ..spec(mixed, (4, 1), 64, 16)
        },
        true,
        BenchTier::No,
    ));
    list.push(entry(
        PagedAttentionSpec {
            softcap: Some(2.0),
            ..spec(mixed, (4, 2), 64, 16)
        },
        true,
        BenchTier::No,
    ));
    // A decode step of 16 sequences of 1024 keys (the batched-decode bench shape).
    let batch: Vec<(usize, usize)> = vec![(1024, 1); 16];
    list.push(entry(
        spec(&batch, (32, 4), 64, 16),
        false,
        BenchTier::Quick,
    ));
    for (rows, pool_rows) in [(1, 1), (7, 48), (64, 257)] {
        let write = PagedWriteSpec {
            rows,
            pool_rows,
            n_kv_heads: 3,
            head_dim: 8,
        };
        list.push(entry(write, true, BenchTier::No));
    }
    list
}
