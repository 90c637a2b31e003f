//! The executor: a graph compiles into one plan whose runs match the reference, reuse
//! buffers by liveness, follow the step position, and allocate nothing when re-run.

mod common;

use tessera::graph::Graph;
use tessera::kernels::elementwise::{self, Binary, Unary};
use tessera::kernels::rope;
use tessera::kernels::rope::{RopeConfig, RopeScaling};
use tessera::suite::compare::{Tolerance, compare};
use tessera::{DType, Tensor};

#[test]
fn a_chain_of_kernels_reuses_buffers_and_matches_the_reference() {
    let gpu = common::gpu();
    let n = 1000;
    let input: Vec<f32> = (0..n).map(|i| (i as f32 - 500.0) / 100.0).collect();
    let x = Tensor::from_f32(&gpu, &[n], &input, DType::F32).unwrap();
    let out = Tensor::empty(&gpu, &[n], DType::F32).unwrap();
    out.poison().unwrap();

    // out = 0.5 · (silu(silu(x)) + x): three temps, at most two alive at once.
    let mut g = Graph::new(&gpu);
    let (xi, oi) = (g.external(&x), g.external(&out));
    let a = g.temp(&[n], DType::F32);
    let b = g.temp(&[n], DType::F32);
    let c = g.temp(&[n], DType::F32);
    g.node("silu", &[xi, a], |c| {
        elementwise::unary(c.gpu, Unary::Silu, c.tensor(0), c.tensor(1))
    });
    g.node("silu", &[a, b], |c| {
        elementwise::unary(c.gpu, Unary::Silu, c.tensor(0), c.tensor(1))
    });
    g.node("add", &[b, xi, c], |c| {
        elementwise::binary(c.gpu, Binary::Add, c.tensor(0), c.tensor(1), c.tensor(2))
    });
    g.node("scale", &[c, oi], |c| {
        elementwise::unary(c.gpu, Unary::Scale(0.5), c.tensor(0), c.tensor(1))
    });
    let plan = g.compile(0).unwrap();
    assert_eq!(plan.len(), 4);
    assert_eq!(
        plan.scratch_bytes(),
        2 * 4 * n as u64,
        "a's buffer is reused for c"
    );

    // The first run and read-back may create a staging buffer; later ones reuse it.
    plan.run(0).unwrap();
    let mut got = out.to_f32().unwrap();
    let created = gpu.created_bytes();
    for _ in 0..20 {
        plan.run(0).unwrap();
        got = out.to_f32().unwrap();
    }
    assert_eq!(
        gpu.created_bytes(),
        created,
        "re-running a plan allocates nothing"
    );

    let silu = |v: f64| v / (1.0 + (-v).exp());
    let want: Vec<f64> = input
        .iter()
        .map(|&v| 0.5 * (silu(silu(f64::from(v))) + f64::from(v)))
        .collect();
    let c = compare(
        &got,
        &want,
        Tolerance {
            atol: 1e-6,
            rtol: 1e-5,
        },
    );
    assert!(c.passed, "{c:?}");
}

#[test]
fn step_dependent_nodes_follow_the_position_of_each_run() {
    let gpu = common::gpu();
    let config = RopeConfig {
        theta: 10_000.0,
        head_dim: 8,
        scaling: RopeScaling::None,
    };
    let table = rope::table_tensor(&gpu, &config, 64).unwrap();
    let values: Vec<f32> = (0..16).map(|i| i as f32 / 16.0).collect();
    let x = Tensor::from_f32(&gpu, &[1, 1, 2, 8], &values, DType::F32).unwrap();
    let mut g = Graph::new(&gpu);
    let (xi, ti) = (g.external(&x), g.external(&table));
    g.node("rope", &[xi, ti], |c| {
        rope::rope(c.gpu, c.tensor(0), c.tensor(1), c.position())
    });
    let plan = g.compile(63).unwrap();
    for position in [0, 5, 63] {
        x.write_f32(&values).unwrap();
        plan.run(position).unwrap();
        let input: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
        let want = rope::reference(&config, &input, 1, 2, position);
        let c = compare(
            &x.to_f32().unwrap(),
            &want,
            Tolerance {
                atol: 1e-6,
                rtol: 0.0,
            },
        );
        assert!(c.passed, "position {position}: {c:?}");
    }
    let err = plan.run(64).unwrap_err();
    assert!(err.to_string().contains("64"), "{err}");
}

#[test]
fn a_node_that_does_not_fit_names_itself() {
    let gpu = common::gpu();
    let x = Tensor::empty(&gpu, &[4], DType::F32).unwrap();
    let mut g = Graph::new(&gpu);
    let xi = g.external(&x);
    let wrong = g.temp(&[5], DType::F32);
    g.node("the bad one", &[xi, wrong], |c| {
        elementwise::unary(c.gpu, Unary::Silu, c.tensor(0), c.tensor(1))
    });
    let err = g.compile(0).err().unwrap();
    assert!(err.to_string().contains("the bad one"), "{err}");
}

#[test]
fn slices_of_a_temp_are_views_that_keep_it_alive() {
    let gpu = common::gpu();
    // Two aligned halves of one temp: any storage alignment divides 256 elements of f32.
    let half = 256;
    let input: Vec<f32> = (0..2 * half).map(|i| i as f32 / 7.0).collect();
    let x = Tensor::from_f32(&gpu, &[2 * half], &input, DType::F32).unwrap();
    let out = Tensor::empty(&gpu, &[half], DType::F32).unwrap();
    out.poison().unwrap();

    // out = 2·x[..half] + 2·x[half..], through a temp t = 2·x and its two slices.
    let mut g = Graph::new(&gpu);
    let (xi, oi) = (g.external(&x), g.external(&out));
    let t = g.temp(&[2 * half], DType::F32);
    g.node("scale", &[xi, t], |c| {
        elementwise::unary(c.gpu, Unary::Scale(2.0), c.tensor(0), c.tensor(1))
    });
    let low = g.slice(t, 0, &[half]).unwrap();
    let high = g.slice(t, half, &[half]).unwrap();
    g.node("add", &[low, high, oi], |c| {
        elementwise::binary(c.gpu, Binary::Add, c.tensor(0), c.tensor(1), c.tensor(2))
    });
    assert!(g.slice(t, half + 1, &[half]).is_err(), "past the end");
    let plan = g.compile(0).unwrap();
    plan.run(0).unwrap();
    let got = out.to_f32().unwrap();
    let want: Vec<f64> = (0..half)
        .map(|i| 2.0 * f64::from(input[i]) + 2.0 * f64::from(input[i + half]))
        .collect();
    let c = compare(
        &got,
        &want,
        Tolerance {
            atol: 1e-6,
            rtol: 1e-6,
        },
    );
    assert!(c.passed, "{c:?}");
}
