//! The full-size shapes `bench --models` times, loaded with synthetic weights. Too slow for CI
//! on a CPU adapter (gigabytes of weights): run with `cargo test --release -- --ignored`.

mod common;

use tessera::DType;
use tessera::io::{Checkpoint, ConfigJson};
use tessera::models::diffusion::{self, UNet, UNetConfig};
use tessera::models::llama::{Llama, LlamaConfig, LoadOptions};
use tessera::suite::models::{DDPM_CIFAR10_32, TINYLLAMA_1_1B};

#[test]
#[ignore = "4.4 GB of weights; minutes on lavapipe"]
fn tinyllama_shape_loads_and_decodes_a_token() {
    let gpu = common::gpu();
    let config =
        LlamaConfig::from_json(&ConfigJson::parse("tinyllama", TINYLLAMA_1_1B).unwrap()).unwrap();
    let options = LoadOptions {
        dtype: DType::F32,
        max_context: Some(16),
        ..LoadOptions::default()
    };
    let mut model = Llama::from_parts(&gpu, config, &Checkpoint::synthetic(1), &options).unwrap();
    let logits = model.forward(&[1, 2, 3]).unwrap();
    assert_eq!(logits.len(), 32000);
    assert!(logits.iter().all(|v| v.is_finite()));
    let next = model.forward(&[4]).unwrap();
    assert!(next.iter().all(|v| v.is_finite()));
    assert_ne!(logits, next);
}

#[test]
#[ignore = "tens of seconds on lavapipe"]
fn ddpm_cifar10_shape_runs_a_forward() {
    let gpu = common::gpu();
    let config =
        UNetConfig::from_json(&ConfigJson::parse("cifar10", DDPM_CIFAR10_32).unwrap()).unwrap();
    let unet = UNet::from_parts(&gpu, config, &Checkpoint::synthetic(2), DType::F32).unwrap();
    // google/ddpm-cifar10-32 has 35.7M parameters.
    assert_eq!(unet.parameters(), 35_746_307);
    let input: Vec<f32> = (0..3 * 32 * 32)
        .map(|i| ((i % 13) as f32 - 6.0) / 6.0)
        .collect();
    let out = diffusion::forward(&unet, 1, &input, 500.0).unwrap();
    assert_eq!(out.len(), 3 * 32 * 32);
    assert!(out.iter().all(|v| v.is_finite()));
}
