//! Cases for the training kernels: awkward row lengths (1, primes, a workgroup ± 1), every
//! output of each kernel.

use super::{Entry, entry};
use crate::suite::training::{
    AdamWSpec, AttentionBackwardSpec, AttentionGrad, CrossEntropySpec, EmbeddingBackwardSpec,
    LinearBackwardSpec, LinearGrad, MseSpec, Output, RmsNormBackwardSpec, SiluBackwardSpec,
    SumOfSquaresSpec, SwigluBackwardSpec,
};
use crate::suite::*;
use crate::tensor::DType;

pub(super) fn training_cases(dtype: DType) -> Vec<Entry> {
    let mut list = Vec::new();
    for (rows, vocab) in [(1, 1), (5, 258), (7, 255), (9, 257), (3, 1000)] {
        // The per-row losses are f32 whatever the logits are: one set of cases, with f32.
        let outputs: &[Output] = if dtype == DType::F32 {
            &[Output::First, Output::Second]
        } else {
            &[Output::Second]
        };
        for &output in outputs {
            let spec = CrossEntropySpec {
                rows,
                vocab,
                output,
            };
            list.push(entry(spec, true, BenchTier::No));
        }
    }
    for (rows, cols) in [(1, 1), (3, 17), (64, 192), (5, 1000)] {
        for output in [Output::First, Output::Second] {
            let spec = RmsNormBackwardSpec { rows, cols, output };
            list.push(entry(spec, true, BenchTier::No));
        }
    }
    for len in [1, 255, 4097] {
        for output in [Output::First, Output::Second] {
            list.push(entry(
                SwigluBackwardSpec { len, output },
                true,
                BenchTier::No,
            ));
        }
    }
    for (len, step, grad_scale) in [
        (1, 1, 1.0),
        (257, 1, 0.5),
        (1000, 7, 1.0),
        (4097, 1000, 0.25),
    ] {
        let spec = AdamWSpec {
            len,
            step,
            grad_scale,
        };
        list.push(entry(spec, true, BenchTier::No));
    }
    // A Linear layer's three gradients: one row, odd sizes, a tile ± 1, one row of outputs.
    for (m, n, k) in [(1, 7, 5), (33, 17, 65), (64, 65, 63), (130, 1, 33)] {
        for grad in [LinearGrad::Input, LinearGrad::Weight, LinearGrad::Bias] {
            let spec = LinearBackwardSpec { m, n, k, grad };
            list.push(entry(spec, true, BenchTier::No));
        }
    }
    // The embedding gradient: one position, a repeated id over many positions, rows with none.
    for (positions, vocab, width) in [(1, 1, 1), (7, 5, 3), (1024, 258, 192), (300, 1000, 33)] {
        let spec = EmbeddingBackwardSpec {
            positions,
            vocab,
            width,
        };
        list.push(entry(spec, true, BenchTier::No));
    }
    for len in [1, 255, 4097] {
        list.push(entry(SiluBackwardSpec { len }, true, BenchTier::No));
    }
    for (rows, cols) in [(1, 1), (4, 3 * 16 * 16), (3, 1000)] {
        let outputs: &[Output] = if dtype == DType::F32 {
            &[Output::First, Output::Second]
        } else {
            &[Output::Second]
        };
        for &output in outputs {
            list.push(entry(MseSpec { rows, cols, output }, true, BenchTier::No));
        }
    }
    // The partial sums are f32 whatever the gradient is: one set of cases, with f32.
    if dtype == DType::F32 {
        for len in [1, 2047, 2049, 100_000] {
            list.push(entry(SumOfSquaresSpec { len }, true, BenchTier::No));
        }
    }
    // Attention's backward: every head grouping, causal and full, a query chunk after
    // earlier keys, a tile ± 1 of keys, head sizes 32 to 128, a batch of two.
    let attention = |q_len, kv_len, heads, head_dim, causal| AttentionBackwardSpec {
        batch: 1,
        q_len,
        kv_len,
        heads,
        head_dim,
        causal,
        grad: AttentionGrad::Q,
    };
    let mut specs = Vec::new();
    for heads in [(4, 4), (4, 2), (8, 2), (4, 1)] {
        for causal in [true, false] {
            specs.push(attention(37, 37, heads, 64, causal));
        }
    }
    specs.push(attention(7, 65, (4, 2), 64, true));
    specs.push(attention(63, 63, (2, 1), 32, true));
    specs.push(attention(17, 17, (2, 2), 128, false));
    specs.push(AttentionBackwardSpec {
        batch: 2,
        ..attention(9, 20, (4, 2), 80, true)
    });
    for spec in specs {
        for grad in [AttentionGrad::Q, AttentionGrad::K, AttentionGrad::V] {
            list.push(entry(
                AttentionBackwardSpec { grad, ..spec },
                true,
                BenchTier::No,
            ));
        }
    }
    // The byte LM's shapes at batch 16 × 64 positions: loss, and one AdamW step over 1M
    // parameters.
    let ce = CrossEntropySpec {
        rows: 1024,
        vocab: 258,
        output: Output::Second,
    };
    list.push(entry(ce, false, BenchTier::Quick));
    let adamw = AdamWSpec {
        len: 1 << 20,
        step: 10,
        grad_scale: 1.0,
    };
    list.push(entry(adamw, false, BenchTier::Quick));
    list
}
