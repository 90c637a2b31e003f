//! Bad input gives a clear `Err`, never a panic: shape and dtype mismatches, sizes over the
//! device limits, unknown adapters, invalid GPU operations.

mod common;

use tessera::gpu::{Gpu, PipelineKey, ShaderSource};
use tessera::kernels::elementwise::{self, Binary, Unary};
use tessera::kernels::matmul::{self, BLayout};
use tessera::kernels::{norm, softmax};
use tessera::suite::compare::compare;
use tessera::suite::{self, DEFAULT_SEED, Prepared};
use tessera::{DType, Error, Tensor};

fn zeros(gpu: &Gpu, shape: &[usize], dtype: DType) -> Tensor {
    let len = shape.iter().product();
    Tensor::from_f32(gpu, shape, &vec![0.0; len], dtype).unwrap()
}

#[test]
fn matmul_with_mismatched_k_is_a_shape_error() {
    let gpu = common::gpu();
    let a = zeros(&gpu, &[4, 5], DType::F32);
    let b = zeros(&gpu, &[6, 7], DType::F32);
    let out = zeros(&gpu, &[4, 7], DType::F32);
    let err = matmul::matmul(&gpu, &a, &b, BLayout::KN, None, &out)
        .err()
        .unwrap();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    assert!(err.to_string().contains("K = 5"), "{err}");
}

#[test]
fn matmul_output_and_bias_shapes_are_checked() {
    let gpu = common::gpu();
    let a = zeros(&gpu, &[4, 5], DType::F32);
    let b = zeros(&gpu, &[7, 5], DType::F32);
    let wrong_out = zeros(&gpu, &[4, 6], DType::F32);
    let err = matmul::matmul(&gpu, &a, &b, BLayout::NK, None, &wrong_out)
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("output is [4, 6], expected [4, 7]"),
        "{err}"
    );

    let out = zeros(&gpu, &[4, 7], DType::F32);
    let wrong_bias = zeros(&gpu, &[5], DType::F32);
    let err = matmul::matmul(&gpu, &a, &b, BLayout::NK, Some(&wrong_bias), &out)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("bias is [5], expected [7]"),
        "{err}"
    );

    let vector = zeros(&gpu, &[5], DType::F32);
    let err = matmul::matmul(&gpu, &vector, &b, BLayout::NK, None, &out)
        .err()
        .unwrap();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
}

#[test]
fn mixed_dtypes_are_rejected() {
    let gpu = common::gpu();
    if !gpu.supports(DType::F16) {
        return;
    }
    let a = zeros(&gpu, &[8], DType::F32);
    let out = zeros(&gpu, &[8], DType::F16);
    let err = elementwise::unary(&gpu, Unary::Silu, &a, &out)
        .err()
        .unwrap();
    assert!(matches!(err, Error::DType { .. }), "{err}");
}

#[test]
fn elementwise_norm_and_softmax_shapes_are_checked() {
    let gpu = common::gpu();
    let a = zeros(&gpu, &[3, 4], DType::F32);
    let b = zeros(&gpu, &[3], DType::F32);
    let out = zeros(&gpu, &[3, 4], DType::F32);
    let err = elementwise::binary(&gpu, Binary::Add, &a, &b, &out)
        .err()
        .unwrap();
    assert!(matches!(err, Error::Shape { .. }), "{err}");

    let err = norm::rms_norm(&gpu, &a, &b, 1e-6, &out).err().unwrap();
    assert!(
        err.to_string().contains("weight is [3], expected [4]"),
        "{err}"
    );

    let other = zeros(&gpu, &[4, 3], DType::F32);
    let err = softmax::softmax(&gpu, &a, &other).err().unwrap();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
}

#[test]
fn a_buffer_over_max_buffer_size_is_refused() {
    let gpu = common::gpu();
    let limit = gpu.limits().max_buffer_size;
    let elems = (limit / 4 + 1) as usize;
    let err = Tensor::empty(&gpu, &[elems], DType::F32).unwrap_err();
    match &err {
        Error::TooLarge { limit_name, .. } => assert_eq!(*limit_name, "max_buffer_size"),
        other => panic!("expected TooLarge, got {other}"),
    }
    assert!(err.to_string().contains("max_buffer_size"), "{err}");
}

#[test]
fn a_binding_over_the_storage_limit_is_refused() {
    let gpu = common::gpu();
    let limits = gpu.limits();
    let elems = (limits.max_storage_buffer_binding_size / 4 + 1) as usize;
    if (elems as u64) * 4 > limits.max_buffer_size || elems as u64 * 4 > 1 << 31 {
        return; // this adapter cannot hold such a buffer, or it would be too slow to test
    }
    let x = Tensor::empty(&gpu, &[elems], DType::F32).unwrap();
    let out = Tensor::empty(&gpu, &[elems], DType::F32).unwrap();
    let err = elementwise::unary(&gpu, Unary::Silu, &x, &out)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("max_storage_buffer_binding_size"),
        "{err}"
    );
}

#[test]
fn an_unknown_adapter_names_the_ones_present() {
    for spec in ["no-such-adapter-anywhere", "99"] {
        let err = Gpu::new(Some(spec)).err().unwrap();
        match &err {
            Error::AdapterNotFound { available, .. } => assert!(!available.is_empty()),
            Error::NoAdapter { .. } => {}
            other => panic!("expected AdapterNotFound, got {other}"),
        }
        assert!(err.to_string().contains(spec) || matches!(err, Error::NoAdapter { .. }));
    }
}

#[test]
fn wrong_host_data_and_empty_shapes_are_refused() {
    let gpu = common::gpu();
    let err = Tensor::from_f32(&gpu, &[2, 3], &[1.0; 5], DType::F32).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Length {
                got: 5,
                expected: 6,
                ..
            }
        ),
        "{err}"
    );
    let err = Tensor::empty(&gpu, &[4, 0], DType::F32).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    let scalar = zeros(&gpu, &[], DType::F32);
    let err = softmax::softmax(&gpu, &scalar, &scalar).err().unwrap();
    assert!(err.to_string().contains("scalar"), "{err}");
}

#[test]
fn gpu_validation_errors_become_err() {
    let gpu = common::gpu();
    // MAP_READ may only be combined with COPY_DST: wgpu reports a validation error.
    let err = gpu
        .scoped("invalid buffer", |device| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        })
        .err()
        .unwrap();
    assert!(matches!(err, Error::Gpu { .. }), "{err}");
    // The device is still usable afterwards.
    let t = Tensor::from_f32(&gpu, &[3], &[1.0, 2.0, 3.0], DType::F32).unwrap();
    assert_eq!(t.to_f32().unwrap(), vec![1.0, 2.0, 3.0]);
}

#[test]
fn a_shader_that_does_not_compile_is_an_err() {
    let gpu = common::gpu();
    let broken = ShaderSource {
        name: "broken.wgsl",
        body: "@compute @workgroup_size(1) fn main() { let x: f32 = not_defined; }",
        library: &[],
    };
    let key = PipelineKey::new(broken, "main", DType::F32, &[]);
    let err = gpu.pipeline(&key).err().unwrap();
    assert!(matches!(err, Error::Gpu { .. }), "{err}");
    assert!(
        gpu.pipeline(&key).is_err(),
        "a failed pipeline must not be cached"
    );
}

#[test]
fn an_unwritten_output_fails_the_comparison() {
    let gpu = common::gpu();
    let case = suite::cases()
        .into_iter()
        .find(|c| c.ci && c.kernel() == "silu")
        .unwrap();
    let prepared = Prepared::new(&gpu, &case, DEFAULT_SEED).unwrap();
    prepared.out.poison().unwrap();
    // The kernel is never run: every element is still NaN.
    let got = prepared.out.to_f32().unwrap();
    let c = compare(&got, &case.reference(&prepared.host), case.tolerance());
    assert!(!c.passed);
    assert_eq!(c.bad, got.len());
}

#[test]
fn released_buffers_are_reused() {
    let gpu = common::gpu();
    gpu.trim_pool();
    let t = Tensor::empty(&gpu, &[1000], DType::F32).unwrap();
    drop(t);
    let pooled = gpu.pooled_bytes();
    assert!(
        pooled >= 4000,
        "released tensor went back to the pool: {pooled}"
    );
    let again = Tensor::empty(&gpu, &[1000], DType::F32).unwrap();
    assert_eq!(
        gpu.pooled_bytes(),
        pooled - 4096,
        "the pooled buffer was taken"
    );
    drop(again);
}

#[test]
fn timing_reports_positive_times() {
    let gpu = common::gpu();
    let x = zeros(&gpu, &[4096], DType::F32);
    let out = zeros(&gpu, &[4096], DType::F32);
    let call = elementwise::unary(&gpu, Unary::Silu, &x, &out).unwrap();
    let timings = gpu.time("silu", 3, 4, &|pass| call.encode(pass)).unwrap();
    assert_eq!(timings.samples.len(), 4);
    assert!(
        timings.samples.iter().all(|&t| t > 0.0 && t < 10.0),
        "{timings:?}"
    );
    assert!(timings.median() > 0.0);
}

#[test]
fn a_lost_device_is_reported_not_panicked() {
    let gpu = common::gpu();
    let x = zeros(&gpu, &[16], DType::F32);
    gpu.device().destroy();
    let err = Tensor::empty(&gpu, &[1 << 20], DType::F32)
        .and_then(|t| t.to_f32())
        .err()
        .or_else(|| x.to_f32().err())
        .expect("work on a destroyed device must fail");
    assert!(
        matches!(err, Error::DeviceLost(_) | Error::Gpu { .. }),
        "{err}"
    );
}

#[test]
fn the_cooperative_matrix_path_is_refused_cleanly_where_missing() {
    use tessera::kernels::matmul::{BLayout, Path, matmul_with};
    let gpu = common::gpu();
    // f32 never takes it, on any adapter.
    let a32 = Tensor::from_f32(&gpu, &[16, 16], &[0.5; 256], DType::F32).unwrap();
    let out32 = Tensor::empty(&gpu, &[16, 16], DType::F32).unwrap();
    let err = matmul_with(&gpu, &a32, &a32, BLayout::NK, None, &out32, Path::Coop)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("f16"), "{err}");
    if gpu.cooperative_f16().is_ok() || !gpu.supports(DType::F16) {
        return; // this adapter runs it (checked by the suite), or has no f16 at all
    }
    let a = Tensor::from_f32(&gpu, &[16, 16], &[0.5; 256], DType::F16).unwrap();
    let out = Tensor::empty(&gpu, &[16, 16], DType::F16).unwrap();
    let err = matmul_with(&gpu, &a, &a, BLayout::NK, None, &out, Path::Coop)
        .err()
        .expect("refused");
    assert!(matches!(err, Error::MissingFeature { .. }), "{err}");
}
