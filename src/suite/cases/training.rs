//! Cases for the training kernels: awkward row lengths (1, primes, a workgroup ± 1), every
//! output of each kernel.

use super::{Entry, entry};
use crate::kernels::conv2d::Conv2dOptions;
use crate::suite::spatial_backward::{
    Conv2dBackwardSpec, Grad, GroupNormBackwardSpec, SpatialBackwardSpec, SpatialGrad,
};
use crate::suite::training::{
    AdamWSpec, AttentionBackwardSpec, AttentionGrad, CrossEntropySpec, EmaSpec,
    EmbeddingBackwardSpec, GegluBackwardSpec, GeluBackwardSpec, LayerNormBackwardSpec,
    LinearBackwardSpec, LinearGrad, MseSpec, Output, RmsNormBackwardSpec, SiluBackwardSpec,
    SoftmaxBackwardSpec, SumOfSquaresSpec, SwigluBackwardSpec,
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
        for copy in [false, true] {
            let spec = AdamWSpec {
                len,
                step,
                grad_scale,
                copy,
            };
            list.push(entry(spec, true, BenchTier::No));
        }
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
    // earlier keys, a tile ± 1 of keys, head sizes 32 to 256, a batch of two.
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
    // Past 128 the workgroup doubles.
    specs.push(attention(5, 9, (2, 1), 256, true));
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
        copy: false,
    };
    list.push(entry(adamw, false, BenchTier::Quick));
    if dtype == DType::F32 {
        for (len, decay) in [(1, 0.5), (257, 0.995), (4097, 0.9999)] {
            list.push(entry(EmaSpec { len, decay }, true, BenchTier::No));
        }
    }
    for len in [1, 255, 4097] {
        for tanh in [false, true] {
            list.push(entry(GeluBackwardSpec { len, tanh }, true, BenchTier::No));
        }
        for output in [Output::First, Output::Second] {
            list.push(entry(
                GegluBackwardSpec { len, output },
                true,
                BenchTier::No,
            ));
        }
    }
    for (rows, cols) in [(1, 1), (3, 17), (64, 192), (5, 1000)] {
        for grad in [Grad::Input, Grad::Weight, Grad::Bias] {
            list.push(entry(
                LayerNormBackwardSpec { rows, cols, grad },
                true,
                BenchTier::No,
            ));
        }
        list.push(entry(
            SoftmaxBackwardSpec { rows, cols },
            true,
            BenchTier::No,
        ));
    }
    list.extend(spatial_backward_cases());
    list
}

/// The NCHW gradients: a convolution's at a 1x1 kernel, odd sizes with padding, stride 2 on
/// odd sizes with and without padding, and the digits UNet's widest 3x3; GroupNorm's at one
/// element, odd groups, a workgroup ± 1 and the UNet's planes; the small ops at one element
/// and odd sizes.
fn spatial_backward_cases() -> Vec<Entry> {
    let mut list = Vec::new();
    let convs = [
        (1, 1, 1, 1, 1, 1, 1, 0),
        (2, 3, 5, 7, 6, 3, 1, 1),
        (2, 4, 6, 9, 9, 3, 2, 1),
        (3, 5, 2, 8, 8, 1, 1, 0),
        (1, 2, 3, 5, 5, 3, 2, 0),
        (4, 32, 64, 16, 16, 3, 1, 1),
        (2, 3, 4, 6, 7, 3, 1, 3),
    ];
    for (batch, c_in, c_out, h, w, k, stride, pad) in convs {
        for (grad, direct) in [
            (Grad::Input, false),
            (Grad::Input, true),
            (Grad::Weight, false),
            (Grad::Weight, true),
            (Grad::Bias, false),
        ] {
            let spec = Conv2dBackwardSpec {
                batch,
                c_in,
                c_out,
                h,
                w,
                k,
                options: Conv2dOptions::symmetric(stride, pad),
                grad,
                direct,
            };
            list.push(entry(spec, true, BenchTier::No));
        }
    }
    // Timed: the digits UNet's 3x3 convolutions at train-ddpm's batch of 32.
    for (c_in, c_out, hw) in [(32, 32, 8), (64, 64, 4), (96, 32, 8)] {
        for grad in [Grad::Input, Grad::Weight] {
            let spec = Conv2dBackwardSpec {
                batch: 32,
                c_in,
                c_out,
                h: hw,
                w: hw,
                k: 3,
                options: Conv2dOptions::symmetric(1, 1),
                grad,
                direct: false,
            };
            list.push(entry(spec, false, BenchTier::Quick));
        }
    }
    for (batch, channels, groups, spatial) in
        [(1, 1, 1, 1), (2, 6, 3, 7), (2, 8, 2, 257), (3, 32, 8, 256)]
    {
        for silu in [false, true] {
            for grad in [Grad::Input, Grad::Weight, Grad::Bias] {
                let spec = GroupNormBackwardSpec {
                    batch,
                    channels,
                    groups,
                    spatial,
                    silu,
                    grad,
                };
                list.push(entry(spec, true, BenchTier::No));
            }
        }
    }
    let spatial = |op, batch, channels, channels_b, h, w| SpatialBackwardSpec {
        op,
        batch,
        channels,
        channels_b,
        h,
        w,
    };
    let specs = [
        spatial(SpatialGrad::Upsample, 1, 1, 0, 1, 1),
        spatial(SpatialGrad::Upsample, 2, 3, 0, 5, 7),
        spatial(SpatialGrad::AvgPool, 1, 1, 0, 2, 2),
        spatial(SpatialGrad::AvgPool, 2, 3, 0, 7, 9),
        spatial(SpatialGrad::ChannelSum, 1, 1, 0, 1, 1),
        spatial(SpatialGrad::ChannelSum, 2, 3, 0, 5, 7),
        spatial(SpatialGrad::ChannelSum, 2, 64, 0, 16, 16),
        spatial(SpatialGrad::Split(true), 1, 1, 1, 1, 1),
        spatial(SpatialGrad::Split(true), 2, 3, 5, 4, 5),
        spatial(SpatialGrad::Split(false), 2, 3, 5, 4, 5),
    ];
    for spec in specs {
        list.push(entry(spec, true, BenchTier::No));
    }
    list
}
