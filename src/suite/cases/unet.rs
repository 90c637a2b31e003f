//! Cases for the UNet's kernels and the sampler step.

use super::{Entry, entry, with_coop_twins};
use crate::kernels::conv2d::{Conv2dOptions, ConvPath};
use crate::kernels::scheduler_step::StepCoefficients;
use crate::kernels::spatial::ChannelMix;
use crate::kernels::timestep::TimestepConfig;
use crate::suite::*;
use crate::tensor::DType;

/// Convolution channel pairs and input sizes from the UNet acceptance list.
pub(super) const CONV_CHANNELS: [(usize, usize); 4] = [(3, 32), (32, 64), (64, 64), (96, 32)];
pub(super) const CONV_SIZES: [(usize, usize); 4] = [(1, 1), (7, 9), (16, 16), (32, 32)];

/// The convolution cases; for f16 each again on the cooperative-matrix kernel (skipped where
/// the adapter has none), the benchmark sizes included.
pub(super) fn conv_cases(dtype: DType) -> Vec<Entry> {
    with_coop_twins(scalar_conv_cases(), dtype, |spec| {
        Some(Conv2dSpec {
            path: ConvPath::Coop,
            ..spec
        })
    })
}

fn scalar_conv_cases() -> Vec<(Conv2dSpec, bool, BenchTier)> {
    let mut list = Vec::new();
    for kernel in [3, 1] {
        for stride in [1, 2] {
            for (c_in, c_out) in CONV_CHANNELS {
                for hw in CONV_SIZES {
                    for batch in [1, 3] {
                        let spec = Conv2dSpec::new(batch, c_in, c_out, hw, kernel, stride);
                        let ci = hw.0 * hw.1 * c_in * c_out * batch <= 7 * 9 * 32 * 64;
                        list.push((spec, ci, BenchTier::No));
                    }
                }
            }
        }
    }
    // Few output channels (a UNet's last convolution): the narrow tilings.
    for (c_in, c_out) in [(32, 1), (32, 3), (64, 16), (16, 5)] {
        for hw in [(7, 9), (16, 16)] {
            for batch in [1, 3] {
                let spec = Conv2dSpec::new(batch, c_in, c_out, hw, 3, 1);
                list.push((spec, true, BenchTier::No));
            }
        }
    }
    // Many output channels: the wide kernel (edges of its 128 × 128 tile in both directions).
    for (batch, c_in, c_out, hw, kernel, stride) in [
        (2, 16, 128, (7, 9), 3, 1),
        (3, 32, 130, (9, 9), 3, 1),
        (1, 24, 256, (17, 15), 3, 2),
        (2, 200, 128, (5, 5), 1, 1),
    ] {
        let spec = Conv2dSpec::new(batch, c_in, c_out, hw, kernel, stride);
        list.push((spec, true, BenchTier::No));
    }
    let padded = Conv2dSpec {
        options: Conv2dOptions {
            stride: 2,
            pad_top: 0,
            pad_bottom: 1,
            pad_left: 0,
            pad_right: 1,
        },
        ..Conv2dSpec::new(1, 8, 128, (9, 8), 3, 2)
    };
    list.push((padded, true, BenchTier::No));
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
        list.push((spec, true, BenchTier::No));
    }
    let no_bias = Conv2dSpec {
        bias: false,
        ..Conv2dSpec::new(1, 5, 7, (6, 5), 3, 1)
    };
    list.push((no_bias, true, BenchTier::No));
    let quick = Conv2dSpec::new(1, 64, 64, (64, 64), 3, 1);
    list.push((quick, false, BenchTier::Quick));
    let quick_wide = Conv2dSpec::new(1, 128, 128, (32, 32), 3, 1);
    list.push((quick_wide, false, BenchTier::Quick));
    let full = Conv2dSpec::new(4, 128, 128, (32, 32), 3, 1);
    list.push((full, false, BenchTier::Full));
    // The digits UNet's convolutions at train-ddpm's batch of 32.
    for (c_in, c_out, hw) in [(32, 32, (8, 8)), (64, 64, (4, 4))] {
        let spec = Conv2dSpec::new(32, c_in, c_out, hw, 3, 1);
        list.push((spec, false, BenchTier::Quick));
    }
    list
}

pub(super) fn group_norm_cases(dtype: DType) -> Vec<Entry> {
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

pub(super) fn spatial_cases() -> Vec<Entry> {
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

pub(super) fn scheduler_step_cases() -> Vec<Entry> {
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

pub(super) fn timestep_cases() -> Vec<Entry> {
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
