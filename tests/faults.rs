//! Faults in the middle of work: a device lost while a model generates or samples, and
//! allocations the device refuses at load. Each is an `Err` that says what happened, never a
//! panic or a hang. (A GPU wait past its limit: tests/reliability.rs.)

mod common;

use std::path::PathBuf;

use tessera::gpu::{Gpu, select_adapter};
use tessera::models::diffusion::{self, GaussianNoise, Scheduler, SchedulerConfig, UNet};
use tessera::models::llama::{GenerateOptions, Llama, LoadOptions};
use tessera::{DType, Error};

fn bundled(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets/models")
        .join(name)
}

fn is_device_error(err: &Error) -> bool {
    matches!(err, Error::DeviceLost(_) | Error::Gpu { .. })
}

#[test]
fn losing_the_device_mid_generation_is_an_error() {
    let gpu = common::gpu();
    let mut model = Llama::load(&gpu, &bundled("stdlib-byte"), &LoadOptions::default()).unwrap();
    let options = GenerateOptions {
        max_tokens: 20,
        ..GenerateOptions::default()
    };
    let mut seen = 0;
    let result = model.generate(&[256, 100, 101], &options, |_| {
        seen += 1;
        if seen == 3 {
            gpu.device().destroy();
        }
        Ok(())
    });
    let err = result.expect_err("generation on a destroyed device must fail");
    assert!(is_device_error(&err), "{err}");
    assert_eq!(seen, 3, "no token after the loss");
}

#[test]
fn losing_the_device_mid_sampling_is_an_error() {
    let gpu = common::gpu();
    let dir = bundled("digits-unet");
    let unet = UNet::load(&gpu, &dir, DType::F32).unwrap();
    let config = SchedulerConfig::read(&dir.join("scheduler_config.json")).unwrap();
    let scheduler = Scheduler::new(config, None, 5, 0.0).unwrap();
    let mut noise = GaussianNoise::new(1);
    let init = noise.draw(unet.sample_shape(2).iter().product());
    let mut steps = 0;
    let result = diffusion::sample(&unet, &scheduler, 2, &init, &mut noise, true, |done, _| {
        steps = done;
        if done == 2 {
            gpu.device().destroy();
        }
    });
    let err = result.expect_err("sampling on a destroyed device must fail");
    assert!(is_device_error(&err), "{err}");
    assert!(steps <= 3, "{steps} steps ran after the loss");
}

#[test]
fn allocations_the_device_refuses_at_load_are_errors() {
    let adapter = select_adapter(None).unwrap();
    let gpu = Gpu::open_with_limits(adapter, |limits| {
        limits.max_buffer_size = 4096;
        limits.max_storage_buffer_binding_size = 4096;
    })
    .unwrap();
    let err = Llama::load(&gpu, &bundled("stdlib-byte"), &LoadOptions::default())
        .err()
        .expect("a 1.7M-parameter model does not fit 4 KiB buffers");
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    let err = UNet::load(&gpu, &bundled("digits-unet"), DType::F32)
        .err()
        .expect("the UNet does not fit 4 KiB buffers");
    assert!(
        matches!(err, Error::TooLarge { .. } | Error::Config { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("4096"), "{err}");
}

/// A readback that fails does not hand its staging buffer back to the pool, where the next
/// readback would find it still mapped or pending.
#[test]
fn a_failed_readback_keeps_its_staging_buffer_out_of_the_pool() {
    let gpu = common::gpu();
    let x = tessera::Tensor::from_f32(&gpu, &[256], &[1.0; 256], DType::F32).unwrap();
    gpu.trim_pool();
    let pooled = gpu.pooled_bytes();
    gpu.device().destroy();
    assert!(x.to_f32().is_err());
    assert_eq!(gpu.pooled_bytes(), pooled);
}

/// An error nobody scoped (here: raw wgpu use outside the library) is reported by the next
/// operation, naming the operation that was under way when it arrived and where it was
/// noticed, rather than blaming the next one alone.
#[test]
fn an_uncaptured_error_names_the_operation_under_way() {
    let gpu = common::gpu();
    let x = tessera::Tensor::from_f32(&gpu, &[4], &[1.0; 4], DType::F32).unwrap();
    // Invalid: a mapped-at-creation buffer whose size is not a multiple of 4.
    let _bad = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("bad"),
        size: 3,
        usage: wgpu::BufferUsages::MAP_WRITE,
        mapped_at_creation: true,
    });
    let err = x.to_f32().expect_err("the uncaptured error surfaces");
    let text = err.to_string();
    assert!(matches!(err, Error::Gpu { .. }), "{text}");
    assert!(text.contains("noticed at"), "{text}");
}
