//! The UNet kernels beyond the case list: conv2d's relative error at the largest acceptance
//! case, GroupNorm on a million values with a large offset, channel concatenation through
//! views (no copy), and the time-embedding path Linear → SiLU → Linear → channel add.

mod common;

use tessera::kernels::elementwise::{self, Unary};
use tessera::kernels::matmul::{self, BLayout, Dims};
use tessera::kernels::spatial::{self, ChannelMix};
use tessera::kernels::timestep::{self, TimestepConfig};
use tessera::kernels::{copy, run_all};
use tessera::suite::compare::{Tolerance, compare};
use tessera::suite::rng::Rng;
use tessera::suite::{self, Conv2dSpec, DEFAULT_SEED, GroupNormSpec, Prepared};
use tessera::{DType, Gpu, Tensor};

fn run_case<T: suite::CaseSpec + PartialEq>(gpu: &Gpu, want: &T) -> (Vec<f32>, Vec<f64>) {
    let case = suite::cases()
        .into_iter()
        .find(|c| c.dtype == DType::F32 && c.spec_as::<T>() == Some(want))
        .expect("the case is listed");
    let prepared = Prepared::new(gpu, &case, DEFAULT_SEED).unwrap();
    prepared.out.poison().unwrap();
    case.call(gpu, &prepared.inputs, &prepared.out)
        .unwrap()
        .run(gpu)
        .unwrap();
    (
        prepared.out.to_f32().unwrap(),
        case.reference(&prepared.host),
    )
}

fn relative_l2(got: &[f32], want: &[f64]) -> f64 {
    let err: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, w)| (f64::from(g) - w).powi(2))
        .sum();
    let norm: f64 = want.iter().map(|w| w * w).sum();
    (err / norm).sqrt()
}

#[test]
fn conv2d_f32_relative_error_is_under_1e_5_at_the_largest_case() {
    let gpu = common::gpu();
    let largest = Conv2dSpec::new(3, 64, 64, (32, 32), 3, 1);
    let (got, want) = run_case(&gpu, &largest);
    let rel = relative_l2(&got, &want);
    assert!(rel < 1e-5, "relative L2 error {rel:e}");
}

#[test]
fn group_norm_keeps_a_million_values_around_1000_accurate() {
    let gpu = common::gpu();
    let spec = GroupNormSpec {
        batch: 1,
        channels: 64,
        groups: 1,
        h: 128,
        w: 128,
        silu: false,
        offset: 1000.0,
    };
    let (got, want) = run_case(&gpu, &spec);
    // Normalised values are O(1): a wrong mean by δ shifts every one by δ/σ ≈ 1.7δ, a wrong
    // variance scales them. E[x²] - mean² in f32 would be off by ~1e-2 here.
    let max_err = got
        .iter()
        .zip(&want)
        .map(|(&g, w)| (f64::from(g) - w).abs())
        .fold(0.0, f64::max);
    assert!(
        max_err < 2e-6,
        "max error {max_err:e} over a 1M-element group"
    );
}

fn upload(gpu: &Gpu, rng: &mut Rng, shape: &[usize]) -> (Tensor, Vec<f64>) {
    let values: Vec<f32> = (0..shape.iter().product())
        .map(|_| rng.uniform(-1.0, 1.0) as f32)
        .collect();
    let t = Tensor::from_f32(gpu, shape, &values, DType::F32).unwrap();
    (t, values.into_iter().map(f64::from).collect())
}

#[test]
fn producers_write_a_channel_concatenation_through_views() {
    let gpu = common::gpu();
    let mut rng = Rng::new(5);
    let (a, a_host) = upload(&gpu, &mut rng, &[1, 64, 8, 8]);
    let (b, b_host) = upload(&gpu, &mut rng, &[1, 32, 8, 8]);
    let out = Tensor::empty(&gpu, &[1, 96, 8, 8], DType::F32).unwrap();
    out.poison().unwrap();
    let views = spatial::channel_views(&out, &[64, 32])
        .unwrap()
        .expect("batch 1 is contiguous");
    let before = gpu.requested_bytes();
    let first = copy::copy(&gpu, &a, &views[0]).unwrap();
    let second = copy::copy(&gpu, &b, &views[1]).unwrap();
    run_all(&gpu, &[&first, &second]).unwrap();
    assert!(
        gpu.requested_bytes() - before < 1024,
        "no buffer beyond parameters"
    );
    let got = out.to_f32().unwrap();
    let want = spatial::reference_concat(&a_host, &b_host, 1);
    assert!(
        compare(
            &got,
            &want,
            Tolerance {
                atol: 0.0,
                rtol: 0.0
            }
        )
        .passed
    );

    // Not contiguous per part (batch 2), or a part off the binding alignment: copy instead.
    let batched = Tensor::empty(&gpu, &[2, 96, 8, 8], DType::F32).unwrap();
    assert!(
        spatial::channel_views(&batched, &[64, 32])
            .unwrap()
            .is_none()
    );
    let tiny = Tensor::empty(&gpu, &[1, 8, 1, 1], DType::F32).unwrap();
    assert!(spatial::channel_views(&tiny, &[3, 5]).unwrap().is_none());
    assert!(spatial::channel_views(&tiny, &[3, 4]).is_err());
}

#[test]
fn time_embedding_flows_through_the_mlp_into_a_feature_map() {
    let gpu = common::gpu();
    let mut rng = Rng::new(9);
    let (batch, dim, hidden, channels) = (3, 32, 64, 16);
    let config = TimestepConfig {
        dim,
        flip_sin_to_cos: true,
        freq_shift: 0.0,
    };
    let steps = [0.0f32, 1.0, 999.0];
    let timesteps = Tensor::from_f32(&gpu, &[batch], &steps, DType::F32).unwrap();
    let freqs = timestep::freqs_tensor(&gpu, &config).unwrap();
    let (w1, w1_host) = upload(&gpu, &mut rng, &[hidden, dim]);
    let (b1, b1_host) = upload(&gpu, &mut rng, &[hidden]);
    let (w2, w2_host) = upload(&gpu, &mut rng, &[channels, hidden]);
    let (b2, b2_host) = upload(&gpu, &mut rng, &[channels]);
    let (x, x_host) = upload(&gpu, &mut rng, &[batch, channels, 5, 7]);
    let t = |shape: &[usize]| Tensor::empty(&gpu, shape, DType::F32).unwrap();
    let (emb, h, act, proj, out) = (
        t(&[batch, dim]),
        t(&[batch, hidden]),
        t(&[batch, hidden]),
        t(&[batch, channels]),
        t(&[batch, channels, 5, 7]),
    );
    out.poison().unwrap();
    let calls = [
        timestep::timestep_embedding(&gpu, &config, &timesteps, &freqs, &emb).unwrap(),
        matmul::matmul(&gpu, &emb, &w1, BLayout::NK, Some(&b1), &h).unwrap(),
        elementwise::unary(&gpu, Unary::Silu, &h, &act).unwrap(),
        matmul::matmul(&gpu, &act, &w2, BLayout::NK, Some(&b2), &proj).unwrap(),
        spatial::channel_mix(&gpu, ChannelMix::Add, &x, &proj, &out).unwrap(),
    ];
    run_all(&gpu, &calls.iter().collect::<Vec<_>>()).unwrap();

    let steps_f64: Vec<f64> = steps.iter().map(|&s| f64::from(s)).collect();
    let emb_ref = timestep::reference(&config, &steps_f64, &config.freqs().unwrap());
    let linear = |x: &[f64], w: &[f64], b: &[f64], n: usize, k: usize| {
        let d = Dims {
            batch: 1,
            m: batch,
            n,
            k,
            layout: BLayout::NK,
            bias: true,
        };
        matmul::reference(&d, x, w, Some(b))
    };
    let h_ref = linear(&emb_ref, &w1_host, &b1_host, hidden, dim);
    let act_ref = elementwise::reference_unary(Unary::Silu, &h_ref);
    let proj_ref = linear(&act_ref, &w2_host, &b2_host, channels, hidden);
    let want = spatial::reference_channel_mix(ChannelMix::Add, &x_host, &proj_ref, channels);
    let c = compare(
        &out.to_f32().unwrap(),
        &want,
        Tolerance {
            atol: 2e-5,
            rtol: 1e-5,
        },
    );
    assert!(c.passed, "{c:?}");
}
