//! Cases for the mixture-of-experts kernels: routing (ties, k = E, k = 1, renormalised or
//! not, Mixtral's 2 of 8, Qwen3-MoE's 8 of 128) and the expert GEMV (per-token and per-pair
//! inputs, weighted, with the gated epilogues), plus a Mixtral-sized decode for bench.

use super::{Entry, entry};
use crate::kernels::matmul::EpilogueKind;
use crate::suite::*;

pub(super) fn moe_cases() -> Vec<Entry> {
    let mut list = Vec::new();
    let route = |tokens, experts, top_k, renormalize, ties| MoeRouteSpec {
        tokens,
        experts,
        top_k,
        renormalize,
        ties,
    };
    for spec in [
        route(1, 8, 2, true, false),
        route(7, 8, 2, true, true),
        route(5, 4, 4, false, false),
        route(5, 4, 4, true, true),
        route(3, 64, 1, false, false),
        route(9, 128, 8, true, false),
        route(65, 60, 4, false, true),
        route(300, 16, 2, true, false),
    ] {
        list.push(entry(spec, true, BenchTier::No));
    }
    let gemv = |experts, tokens, top_k, n, k, per_token, weighted, epilogue| MoeGemvSpec {
        experts,
        tokens,
        top_k,
        n,
        k,
        per_token,
        weighted,
        epilogue,
        grouped: false,
    };
    let grouped = |spec: MoeGemvSpec| MoeGemvSpec {
        grouped: true,
        ..spec
    };
    for spec in [
        gemv(8, 1, 2, 33, 64, true, false, EpilogueKind::None),
        gemv(8, 3, 2, 96, 64, true, false, EpilogueKind::SiluMul),
        gemv(4, 5, 2, 64, 96, false, true, EpilogueKind::None),
        gemv(16, 2, 4, 300, 129, true, false, EpilogueKind::GeluTanhMul),
        gemv(3, 7, 1, 9, 17, false, true, EpilogueKind::None),
    ] {
        list.push(entry(spec, true, BenchTier::No));
    }
    // The grouped expert matmul of a prompt: tile edges (65, 63, 130 rows and columns), K
    // not a multiple of its 16, a lone token, every token on one expert (k = E = 1), many
    // experts idle (2 of 64 over 5 tokens).
    for spec in [
        gemv(4, 65, 2, 63, 70, true, false, EpilogueKind::None),
        gemv(8, 130, 2, 96, 33, true, false, EpilogueKind::SiluMul),
        gemv(4, 33, 2, 130, 64, false, true, EpilogueKind::None),
        gemv(16, 9, 4, 64, 129, true, false, EpilogueKind::GeluTanhMul),
        gemv(1, 70, 1, 17, 9, true, true, EpilogueKind::None),
        gemv(64, 5, 2, 48, 40, false, true, EpilogueKind::None),
        gemv(8, 1, 2, 33, 64, true, false, EpilogueKind::None),
    ] {
        list.push(entry(grouped(spec), true, BenchTier::No));
    }
    // Packed experts, every block type: a token's 2 of 8, a prompt's pairs with SwiGLU, and
    // weighted down projections.
    for ggml_type in crate::kernels::quant::GgmlType::PACKED {
        let k = ggml_type.block().0 as usize * 2;
        for (tokens, top_k, n, weighted, epilogue) in [
            (1, 2, 33, false, EpilogueKind::None),
            (5, 2, 17, false, EpilogueKind::SiluMul),
            (3, 4, 40, true, EpilogueKind::None),
        ] {
            let spec = PackedExpertSpec {
                ggml_type,
                experts: 8,
                tokens,
                top_k,
                n,
                k,
                weighted,
                epilogue,
            };
            list.push(entry(spec, true, BenchTier::No));
        }
    }
    // Mixtral-like decode: one token, 2 of 8 experts (a 1024 × 2048 slice of each).
    list.push(entry(
        gemv(8, 1, 2, 1024, 2048, true, false, EpilogueKind::None),
        false,
        BenchTier::Quick,
    ));
    // ... and a 256-token prompt through the same experts, grouped.
    list.push(entry(
        grouped(gemv(8, 256, 2, 1024, 2048, true, false, EpilogueKind::None)),
        false,
        BenchTier::Full,
    ));
    list
}
