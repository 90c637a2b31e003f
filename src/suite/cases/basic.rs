//! Cases for copy, gather, transpose, the elementwise kernels, softmax and the norms.

use super::{Entry, entry};
use crate::kernels::elementwise::{Binary, Unary};
use crate::suite::*;
use crate::tensor::DType;

/// Lengths for elementwise kernels: 1, a prime, workgroup (256) ± 1, a large prime.
const ELEMENTWISE_LENGTHS: [usize; 5] = [1, 7, 255, 257, 65_537];
/// More than 65535 workgroups of 256: exercises the 2-D dispatch grid.
const HUGE_LEN: usize = (1 << 24) + 3;

pub(super) fn copy_cases() -> Vec<Entry> {
    let mut list: Vec<Entry> = [1, 3, 257, 65_537]
        .map(|len| entry(CopySpec { len }, true, BenchTier::No))
        .into();
    for (len, iterations) in [(1, 1), (257, 3), (4099, 0)] {
        list.push(entry(FmaPeakSpec { len, iterations }, true, BenchTier::No));
    }
    // The compute ceiling: enough invocations to fill a large GPU, enough rounds to hide the
    // load and store.
    let quick = FmaPeakSpec {
        len: 1 << 20,
        iterations: 64,
    };
    list.push(entry(quick, false, BenchTier::Quick));
    let full = FmaPeakSpec {
        len: 1 << 22,
        iterations: 256,
    };
    list.push(entry(full, false, BenchTier::Full));
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

pub(super) fn elementwise_cases() -> Vec<Entry> {
    let mut list = Vec::new();
    for op in [
        Unary::Scale(0.37),
        Unary::Silu,
        Unary::GeluErf,
        Unary::GeluTanh,
        Unary::SoftCap(3.0),
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

pub(super) fn row_cases(dtype: DType) -> Vec<Entry> {
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
