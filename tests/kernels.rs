//! The CI subset of the kernel suite, on the default adapter, against the f64 references.
//! `tessera check` runs the whole list. The tests split the list by family, and
//! `every_ci_case_belongs_to_a_test` makes sure no CI case falls between them.

mod common;

use tessera::suite::{self, Case};

/// The families the tests below run, by kernel name prefix; "" takes the rest.
const FAMILIES: [(&str, &[&str]); 8] = [
    ("matmul", &["matmul", "gemv", "norm_gemv", "gemv_rows"]),
    ("packed", &["gemv_quant", "matmul_quant", "gather_quant"]),
    (
        "moe",
        &["moe_route", "moe_gemv", "moe_matmul", "moe_gemv_quant"],
    ),
    (
        "attention",
        &[
            "flash_attn",
            "decode_attn",
            "rope",
            "kv_append",
            "paged_attn",
            "paged_kv_write",
        ],
    ),
    (
        "training",
        &[
            "cross_entropy",
            "cross_entropy_grad",
            "rms_norm_grad_x",
            "rms_norm_grad_w",
            "swiglu_grad_gate",
            "swiglu_grad_up",
            "adamw",
            "adamw_copy",
            "ema",
            "linear_grad_x",
            "linear_grad_w",
            "linear_grad_b",
            "embedding_grad",
            "silu_grad",
            "mse",
            "mse_grad",
            "sum_of_squares",
            "attention_grad_q",
            "attention_grad_k",
            "attention_grad_v",
            "rope_grad",
            "gelu_erf_grad",
            "gelu_tanh_grad",
            "geglu_grad_gate",
            "geglu_grad_up",
            "layer_norm_grad_x",
            "layer_norm_grad_w",
            "layer_norm_grad_b",
            "softmax_grad",
            "conv2d_grad_x",
            "conv2d_grad_w",
            "conv2d_grad_b",
            "group_norm_grad_x",
            "group_norm_grad_w",
            "group_norm_grad_b",
            "group_norm_silu_grad_x",
            "group_norm_silu_grad_w",
            "group_norm_silu_grad_b",
            "upsample_grad",
            "avg_pool_grad",
            "channel_add_grad",
            "concat_grad",
        ],
    ),
    (
        "unet",
        &[
            "conv2d",
            "group_norm",
            "upsample",
            "avg_pool",
            "channel_add",
            "scale_shift",
            "concat",
            "timestep_emb",
            "sched_step",
        ],
    ),
    ("cooperative", &[]),
    ("basic", &[]),
];

/// The family a case is tested in: every cooperative-matrix case in "cooperative", the
/// others by kernel name, and whatever no family names in "basic".
fn family(case: &Case) -> &'static str {
    if case.spec.cooperative() {
        return "cooperative";
    }
    FAMILIES
        .iter()
        .find(|(_, kernels)| kernels.contains(&case.kernel()))
        .map_or("basic", |(name, _)| name)
}

fn check_family(name: &str) {
    common::check_ci_cases(name, |c| family(c) == name);
}

#[test]
fn every_ci_case_belongs_to_a_test() {
    let ci: Vec<Case> = suite::cases().into_iter().filter(|c| c.ci).collect();
    for (name, _) in FAMILIES {
        assert!(
            ci.iter().any(|c| family(c) == name),
            "no CI case in family {name}"
        );
    }
    // The fused-norm GEMV once fell between the per-kernel lists.
    assert!(
        ci.iter()
            .any(|c| c.kernel() == "norm_gemv" && family(c) == "matmul")
    );
}

#[test]
fn basic_kernels_match_reference() {
    check_family("basic");
}

#[test]
fn matmul_and_gemv_match_reference() {
    check_family("matmul");
}

/// Every block type through the packed GEMV and matmul (f64 reference: the block format's
/// dequantization).
#[test]
fn packed_quantized_kernels_match_reference() {
    check_family("packed");
}

/// Routing, the expert GEMV and the grouped expert matmul of the mixture-of-experts MLP.
#[test]
fn mixture_of_experts_kernels_match_reference() {
    check_family("moe");
}

/// Flash, split-KV and paged attention, RoPE, the KV-cache append and the paged row write.
#[test]
fn attention_rope_and_kv_cache_match_reference() {
    check_family("attention");
}

/// The losses, gradients and optimizer step training runs.
#[test]
fn training_kernels_match_reference() {
    check_family("training");
}

#[test]
fn unet_kernels_match_reference() {
    check_family("unet");
}

/// The tensor-core paths: on an adapter without cooperative matrices every case skips with
/// the reason (checked in `common::may_skip`); on Mesa 26 lavapipe they all run.
#[test]
fn cooperative_matrix_kernels_match_reference() {
    check_family("cooperative");
}

/// The acceptance grid of matmul shapes (M × N × K), a CI-sized subset of what
/// `tessera check` runs in full: both dtypes, both layouts of B, the tiled kernel and GEMV.
#[test]
fn matmul_grid_subset_is_in_ci() {
    let ci: Vec<_> = suite::cases()
        .into_iter()
        .filter(|c| c.ci && (c.kernel() == "matmul" || c.kernel() == "gemv"))
        .map(|c| c.name())
        .collect();
    for want in [
        "gemv f32 M=1 N=33 K=17 b:nk",
        "matmul f16 M=65 N=33 K=17 b:kn",
        "matmul f32 M=257 N=1 K=1 b:nk",
        "gemv f16 M=1 N=4096 K=1000 b:nk +bias",
        "matmul f16 M=65 N=33 K=17 b:kn coop",
    ] {
        assert!(ci.iter().any(|n| n == want), "{want} not in the CI subset");
    }
}
