//! The CI subset of the kernel suite, on the default adapter, against the f64 references.
//! `tessera check` runs the whole list.

mod common;

#[test]
fn copy_matches_reference() {
    common::check_ci_cases(&["copy", "gather", "transpose"]);
}

#[test]
fn elementwise_match_reference() {
    common::check_ci_cases(&[
        "scale",
        "silu",
        "gelu_erf",
        "gelu_tanh",
        "add",
        "mul",
        "swiglu",
    ]);
}

#[test]
fn softmax_matches_reference() {
    common::check_ci_cases(&["softmax"]);
}

#[test]
fn norms_match_reference() {
    common::check_ci_cases(&["rms_norm", "layer_norm"]);
}

#[test]
fn matmul_and_gemv_match_reference() {
    common::check_ci_cases(&["matmul", "gemv"]);
}

/// The acceptance grid of matmul shapes (M × N × K), a CI-sized subset of what
/// `tessera check` runs in full: both dtypes, both layouts of B, the tiled kernel and GEMV.
#[test]
fn matmul_grid_subset_is_in_ci() {
    let ci: Vec<_> = tessera::suite::cases()
        .into_iter()
        .filter(|c| c.ci && (c.kernel() == "matmul" || c.kernel() == "gemv"))
        .map(|c| c.name())
        .collect();
    for want in [
        "gemv f32 M=1 N=33 K=17 b:nk",
        "matmul f16 M=65 N=33 K=17 b:kn",
        "matmul f32 M=257 N=1 K=1 b:nk",
        "gemv f16 M=1 N=4096 K=1000 b:nk +bias",
    ] {
        assert!(ci.iter().any(|n| n == want), "{want} not in the CI subset");
    }
}

#[test]
fn attention_matches_reference() {
    common::check_ci_cases(&["flash_attn", "decode_attn"]);
}

#[test]
fn rope_and_kv_cache_match_reference() {
    common::check_ci_cases(&["rope", "kv_append"]);
}

#[test]
fn unet_kernels_match_reference() {
    common::check_ci_cases(&[
        "conv2d",
        "group_norm",
        "upsample",
        "avg_pool",
        "channel_add",
        "scale_shift",
        "concat",
        "timestep_emb",
        "sched_step",
    ]);
}
