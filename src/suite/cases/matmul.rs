//! Cases for matmul and GEMV.

use super::{Entry, entry};
use crate::kernels::matmul::{BLayout, EpilogueKind, Path};
use crate::suite::*;
use crate::tensor::DType;

/// The matmul grid `tessera check` covers in full (tile = 64): M × N × K.
pub(super) const MATMUL_M: [usize; 5] = [1, 7, 64, 65, 257];
pub(super) const MATMUL_N: [usize; 3] = [1, 33, 4096];
pub(super) const MATMUL_K: [usize; 3] = [1, 17, 1000];

pub(super) fn matmul_cases(dtype: DType) -> Vec<Entry> {
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
    // The wide kernel at its tile edges (128) and below, with bias and per-batch b.
    for layout in [BLayout::NK, BLayout::KN] {
        for (m, n, k) in [
            (1, 1, 1),
            (7, 33, 9),
            (127, 129, 8),
            (128, 128, 7),
            (129, 300, 17),
            (257, 131, 1000),
        ] {
            let spec = MatmulSpec {
                path: Path::Wide,
                bias: m % 2 == 1,
                ..mm(m, n, k, layout)
            };
            list.push(entry(spec, k < 1000, BenchTier::No));
        }
        let batched = MatmulSpec {
            path: Path::Wide,
            batch: 3,
            b_batched: true,
            ..mm(130, 129, 33, layout)
        };
        list.push(entry(batched, true, BenchTier::No));
    }
    if dtype == DType::F16 {
        list.extend(coop_cases());
    }
    // The acceptance size of the fast-path issue: 4096³, scalar and (f16) on tensor cores.
    list.push(entry(
        mm(4096, 4096, 4096, BLayout::NK),
        false,
        BenchTier::Large,
    ));
    if dtype == DType::F16 {
        let coop = MatmulSpec {
            path: Path::Coop,
            ..mm(4096, 4096, 4096, BLayout::NK)
        };
        list.push(entry(coop, false, BenchTier::Large));
    }
    // Fused epilogues (residual add, SwiGLU, GeGLU) on every kernel.
    for epilogue in [
        EpilogueKind::Add,
        EpilogueKind::SiluMul,
        EpilogueKind::GeluTanhMul,
    ] {
        for (path, m, n, k, layout) in [
            (Path::Tiled, 7, 33, 17, BLayout::NK),
            (Path::Tiled, 65, 66, 70, BLayout::KN),
            (Path::Wide, 130, 129, 33, BLayout::NK),
            (Path::Wide, 9, 200, 8, BLayout::KN),
            (Path::Gemv, 1, 300, 129, BLayout::NK),
            (Path::Gemv, 1, 65, 33, BLayout::KN),
            (Path::Auto, 1, 129, 63, BLayout::NK),
        ] {
            let spec = MatmulSpec {
                path,
                epilogue,
                bias: n % 2 == 1,
                ..mm(m, n, k, layout)
            };
            list.push(entry(spec, true, BenchTier::No));
        }
        let batched = MatmulSpec {
            batch: 2,
            b_batched: true,
            epilogue,
            ..mm(33, 17, 9, BLayout::NK)
        };
        list.push(entry(batched, true, BenchTier::No));
    }
    // The multi-row GEMV of batched decode: 1 to 16 rows (one and two row groups, a group
    // ± 1), K packable or not, with bias and every epilogue.
    for (m, n, k, bias, epilogue) in [
        (1, 33, 17, false, EpilogueKind::None),
        (2, 33, 17, true, EpilogueKind::None),
        (7, 300, 129, false, EpilogueKind::Add),
        (8, 65, 64, true, EpilogueKind::SiluMul),
        (9, 129, 1000, false, EpilogueKind::GeluTanhMul),
        (16, 257, 256, true, EpilogueKind::None),
    ] {
        let spec = MatmulSpec {
            path: Path::GemvRows,
            bias,
            epilogue,
            ..mm(m, n, k, BLayout::NK)
        };
        list.push(entry(spec, true, BenchTier::No));
    }
    // The short tiles (few rows on CPU adapters): 4 × 256 and 16 × 64 tiles, both layouts.
    for (m, n, k, layout, epilogue) in [
        (1, 300, 129, BLayout::NK, EpilogueKind::None),
        (3, 257, 70, BLayout::NK, EpilogueKind::Add),
        (4, 65, 33, BLayout::KN, EpilogueKind::None),
        (5, 129, 64, BLayout::NK, EpilogueKind::SiluMul),
        (16, 300, 100, BLayout::NK, EpilogueKind::GeluTanhMul),
        (17, 64, 17, BLayout::KN, EpilogueKind::None),
    ] {
        let spec = MatmulSpec {
            path: Path::Short,
            bias: n % 2 == 1,
            epilogue,
            ..mm(m, n, k, layout)
        };
        list.push(entry(spec, true, BenchTier::No));
    }
    // A decode step of 4 and 16 sequences through a 4096 × 4096 projection, both ways.
    for m in [4, 16] {
        for path in [Path::GemvRows, Path::Short] {
            let spec = MatmulSpec {
                path,
                ..mm(m, 4096, 4096, BLayout::NK)
            };
            list.push(entry(spec, false, BenchTier::Quick));
        }
    }
    // RMSNorm fused in front of a decode GEMV.
    for (n, k, bias, epilogue) in [
        (1, 1, false, EpilogueKind::None),
        (7, 33, true, EpilogueKind::None),
        (300, 257, false, EpilogueKind::Add),
        (129, 1000, true, EpilogueKind::SiluMul),
        (64, 4096, false, EpilogueKind::None),
        (33, 100, false, EpilogueKind::GeluTanhMul),
    ] {
        let spec = MatmulSpec {
            norm: true,
            bias,
            epilogue,
            path: Path::Gemv,
            ..mm(1, n, k, BLayout::NK)
        };
        list.push(entry(spec, true, BenchTier::No));
    }
    let tiled = |m, n, k| MatmulSpec {
        path: Path::Tiled,
        ..mm(m, n, k, BLayout::NK)
    };
    let bench = [
        (tiled(256, 256, 256), BenchTier::Quick),
        (tiled(1024, 1024, 1024), BenchTier::Full),
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

/// The cooperative-matrix kernel (f16 only; skipped where the adapter has none): the whole
/// matmul grid in both layouts (GEMV-shaped M = 1 included), then the edges of its tiles for
/// both fragment sizes (8F = 64 and 128), bias, per-batch b and both fused epilogues.
fn coop_cases() -> Vec<Entry> {
    let coop = |m, n, k, layout| MatmulSpec {
        path: Path::Coop,
        ..MatmulSpec::new(m, n, k, layout)
    };
    let mut list = Vec::new();
    for layout in [BLayout::NK, BLayout::KN] {
        for m in MATMUL_M {
            for n in MATMUL_N {
                for k in MATMUL_K {
                    let ci = n < 4096 && k < 1000 && m < 257;
                    list.push(entry(coop(m, n, k, layout), ci, BenchTier::No));
                }
            }
        }
        for (m, n, k) in [
            (8, 8, 8),
            (16, 16, 16),
            (63, 65, 15),
            (64, 64, 16),
            (127, 129, 31),
            (128, 128, 32),
            (129, 300, 33),
            (257, 131, 1000),
        ] {
            let spec = MatmulSpec {
                bias: true,
                ..coop(m, n, k, layout)
            };
            list.push(entry(spec, k < 1000, BenchTier::No));
        }
        for bias in [false, true] {
            let batched = MatmulSpec {
                batch: 3,
                b_batched: true,
                bias,
                ..coop(130, 129, 33, layout)
            };
            list.push(entry(batched, true, BenchTier::No));
        }
        let shared = MatmulSpec {
            batch: 2,
            ..coop(5, 33, 17, layout)
        };
        list.push(entry(shared, true, BenchTier::No));
        for epilogue in [
            EpilogueKind::Add,
            EpilogueKind::SiluMul,
            EpilogueKind::GeluTanhMul,
        ] {
            for (m, n, k, bias) in [(129, 131, 40, true), (1, 65, 33, false), (64, 7, 100, true)] {
                let spec = MatmulSpec {
                    epilogue,
                    bias,
                    ..coop(m, n, k, layout)
                };
                list.push(entry(spec, true, BenchTier::No));
            }
            let batched = MatmulSpec {
                batch: 2,
                b_batched: true,
                epilogue,
                ..coop(33, 17, 9, layout)
            };
            list.push(entry(batched, true, BenchTier::No));
        }
    }
    let bench = [
        (coop(256, 256, 256, BLayout::NK), BenchTier::Quick),
        (coop(1024, 1024, 1024, BLayout::NK), BenchTier::Full),
    ];
    list.extend(bench.map(|(spec, tier)| entry(spec, false, tier)));
    list
}

/// The packed quantized kernels, every block type: the GEMV at awkward row counts (1, a
/// workgroup's 8 ± 1, primes) and K of one block, a few, and a 7B-class row (4096), with a
/// few rows of x, bias and the epilogues; the matmul at tile edges (M, N of 1, 63 ± 2, 130)
/// with them. Bench: the decode size of a 7B-class layer (GB/s of packed bytes beside the
/// f16 GEMV's) and a 128-token prompt through it.
pub(super) fn packed_cases() -> Vec<Entry> {
    use crate::kernels::matmul::EpilogueKind;
    use crate::kernels::packed::PackedKernel::{Gemv, Matmul};
    use crate::kernels::quant::GgmlType;
    let mut list = Vec::new();
    for ggml_type in GgmlType::PACKED {
        let block = ggml_type.block().0 as usize;
        let spec = |kernel, m, n, k| PackedLinearSpec::new(ggml_type, kernel, m, n, k);
        // K: one block, a few, and a 7B-class row.
        let k_few = if block == 256 { 768 } else { 96 };
        for (n, k) in [(1, block), (7, 2 * block), (9, k_few), (33, 1024)] {
            list.push(entry(spec(Gemv, 1, n, k), true, BenchTier::No));
        }
        list.push(entry(spec(Gemv, 1, 257, 4096), false, BenchTier::No));
        list.push(entry(spec(Gemv, 3, 9, k_few), true, BenchTier::No));
        let fused = |kernel, m, n, k, epilogue| PackedLinearSpec {
            bias: true,
            epilogue,
            ..spec(kernel, m, n, k)
        };
        list.push(entry(
            fused(Gemv, 2, 9, k_few, EpilogueKind::SiluMul),
            true,
            BenchTier::No,
        ));
        list.push(entry(
            fused(Gemv, 1, 33, k_few, EpilogueKind::Add),
            true,
            BenchTier::No,
        ));
        for (m, n, k) in [
            (1, 7, block),
            (5, 9, k_few),
            (65, 63, 2 * block),
            (61, 130, 1024),
        ] {
            list.push(entry(spec(Matmul, m, n, k), true, BenchTier::No));
        }
        list.push(entry(
            fused(Matmul, 67, 65, k_few, EpilogueKind::Add),
            true,
            BenchTier::No,
        ));
        list.push(entry(
            fused(Matmul, 9, 70, k_few, EpilogueKind::SiluMul),
            true,
            BenchTier::No,
        ));
        list.push(entry(
            fused(Gemv, 1, 40, k_few, EpilogueKind::GeluTanhMul),
            true,
            BenchTier::No,
        ));
        // The embedding gather: a prompt's ids, one decode id, a part of a split table.
        for (n, rows, row_start) in [(7, 5, 0), (1, 33, 0), (9, 17, 100)] {
            let gather = PackedGatherSpec {
                ggml_type,
                n,
                rows,
                width: 2 * block,
                row_start,
            };
            list.push(entry(gather, true, BenchTier::No));
        }
        list.push(entry(spec(Gemv, 1, 4096, 4096), false, BenchTier::Quick));
        list.push(entry(spec(Gemv, 1, 11008, 4096), false, BenchTier::Full));
        list.push(entry(spec(Matmul, 128, 4096, 4096), false, BenchTier::Full));
    }
    list
}
