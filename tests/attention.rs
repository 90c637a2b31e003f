//! Attention beyond the case list: memory that grows with S·D and not S², the KV cache
//! appended step by step, RoPE bounds, and shape errors.

mod common;

use tessera::kernels::Position;
use tessera::kernels::attention::{self, AttentionDims};
use tessera::kernels::kv_cache::KvCache;
use tessera::kernels::rope::{self, RopeConfig, RopeScaling};
use tessera::suite::compare::{Tolerance, compare};
use tessera::suite::rng::Rng;
use tessera::{DType, Error, Gpu, Tensor};

/// A random f32 tensor and its values.
fn random(gpu: &Gpu, rng: &mut Rng, shape: &[usize]) -> (Tensor, Vec<f64>) {
    let values: Vec<f32> = (0..shape.iter().product())
        .map(|_| rng.uniform(-1.0, 1.0) as f32)
        .collect();
    let t = Tensor::from_f32(gpu, shape, &values, DType::F32).unwrap();
    (t, values.iter().map(|&v| f64::from(v)).collect())
}

/// Bytes requested while preparing a flash-attention call over `seq` positions.
fn flash_bytes(gpu: &Gpu, seq: usize, head_dim: usize) -> u64 {
    let shape = [1, seq, 4, head_dim];
    let q = Tensor::empty(gpu, &shape, DType::F32).unwrap();
    let k = Tensor::empty(gpu, &shape, DType::F32).unwrap();
    let v = Tensor::empty(gpu, &shape, DType::F32).unwrap();
    let out = Tensor::empty(gpu, &shape, DType::F32).unwrap();
    let before = gpu.requested_bytes();
    let call =
        attention::flash_attention(gpu, &q, &k, &v, Position::Fixed(0), true, 0.125, &out).unwrap();
    let bytes = gpu.requested_bytes() - before;
    drop(call);
    bytes
}

/// Bytes requested while preparing a decode-attention call against `kv_len` positions.
fn decode_bytes(gpu: &Gpu, kv_len: usize, head_dim: usize) -> u64 {
    let q = Tensor::empty(gpu, &[1, 1, 8, head_dim], DType::F32).unwrap();
    let k = Tensor::empty(gpu, &[1, kv_len, 2, head_dim], DType::F32).unwrap();
    let v = Tensor::empty(gpu, &[1, kv_len, 2, head_dim], DType::F32).unwrap();
    let out = Tensor::empty(gpu, &[1, 1, 8, head_dim], DType::F32).unwrap();
    let before = gpu.requested_bytes();
    let past = Position::Fixed(kv_len - 1);
    let call = attention::decode_attention(gpu, &q, &k, &v, past, 0.125, &out).unwrap();
    let bytes = gpu.requested_bytes() - before;
    drop(call);
    bytes
}

#[test]
fn attention_memory_grows_with_s_times_d_not_s_squared() {
    let gpu = common::gpu();
    let d = 64;
    // Flash attention allocates nothing that depends on the sequence: only its parameters.
    let small = flash_bytes(&gpu, 1024, d);
    let large = flash_bytes(&gpu, 4096, d);
    assert_eq!(small, large, "flash attention scratch must not grow with S");
    assert!(large < 1024, "flash attention requested {large} bytes");
    // Decode keeps one partial result (head_dim + 2 floats) per 256 keys and head.
    let small = decode_bytes(&gpu, 1024, d);
    let large = decode_bytes(&gpu, 4096, d);
    let s_times_d = (4096 * d * 4) as u64;
    assert!(
        large <= s_times_d,
        "decode requested {large} bytes, over S·D·4 = {s_times_d}"
    );
    assert!(
        large <= 4 * small + 1024,
        "decode scratch grew faster than S: {small} -> {large}"
    );
    let s_squared = 4096u64 * 4096 * 4;
    assert!(large * 100 < s_squared);
}

#[test]
fn a_cache_filled_by_prefill_then_decode_steps_matches_the_reference() {
    let gpu = common::gpu();
    let mut rng = Rng::new(11);
    let (heads, kv_heads, d, capacity) = (4, 2, 32, 40);
    let mut cache = KvCache::new(&gpu, 1, capacity, kv_heads, d, DType::F32).unwrap();
    let mut all_k = Vec::new();
    let mut all_v = Vec::new();
    // A 5-position prefill, then single decode steps.
    for new_len in [5, 1, 1, 1] {
        let (k_new, k_host) = random(&gpu, &mut rng, &[1, new_len, kv_heads, d]);
        let (v_new, v_host) = random(&gpu, &mut rng, &[1, new_len, kv_heads, d]);
        cache.append(&gpu, &k_new, &v_new).unwrap();
        all_k.extend(k_host);
        all_v.extend(v_host);
    }
    assert_eq!(cache.len(), 8);
    let (q, q_host) = random(&gpu, &mut rng, &[1, 1, heads, d]);
    let out = Tensor::empty(&gpu, &[1, 1, heads, d], DType::F32).unwrap();
    out.poison().unwrap();
    let scale = 1.0 / (d as f64).sqrt();
    attention::decode_attention(
        &gpu,
        &q,
        &cache.k,
        &cache.v,
        Position::Fixed(cache.len() - 1),
        scale as f32,
        &out,
    )
    .unwrap()
    .run(&gpu)
    .unwrap();
    let dims = AttentionDims {
        batch: 1,
        q_len: 1,
        kv_len: 8,
        kv_capacity: 8,
        n_heads: heads,
        n_kv_heads: kv_heads,
        head_dim: d,
    };
    let want = attention::reference(&dims, &q_host, &all_k, &all_v, true, scale, None, None);
    let tol = Tolerance {
        atol: 1e-6,
        rtol: 2e-6,
    };
    let c = compare(&out.to_f32().unwrap(), &want, tol);
    assert!(c.passed, "{c:?}");

    // The cache is full at its capacity, and says so.
    let (k_big, _) = random(&gpu, &mut rng, &[1, capacity, kv_heads, d]);
    let err = cache.append(&gpu, &k_big, &k_big).unwrap_err();
    assert!(err.to_string().contains("capacity"), "{err}");
    assert_eq!(cache.len(), 8, "a failed append leaves the cache as it was");
}

#[test]
fn attention_shape_errors_are_clear() {
    let gpu = common::gpu();
    let t = |shape: &[usize]| Tensor::empty(&gpu, shape, DType::F32).unwrap();
    let (q, out) = (t(&[1, 4, 6, 16]), t(&[1, 4, 6, 16]));
    let (k, v) = (t(&[1, 8, 4, 16]), t(&[1, 8, 4, 16]));
    // 4 kv heads do not divide 6 query heads
    let at = |p| Position::Fixed(p);
    let err = attention::flash_attention(&gpu, &q, &k, &v, at(0), true, 1.0, &out)
        .err()
        .unwrap();
    assert!(err.to_string().contains("do not divide"), "{err}");
    let (k, v) = (t(&[1, 8, 3, 16]), t(&[1, 8, 3, 16]));
    // 4 queries after 5 cached positions need 9 keys, over the capacity of 8
    assert!(attention::flash_attention(&gpu, &q, &k, &v, at(4), true, 1.0, &out).is_ok());
    let err = attention::flash_attention(&gpu, &q, &k, &v, at(5), true, 1.0, &out)
        .err()
        .unwrap();
    assert!(err.to_string().contains("capacity"), "{err}");
    // decode needs one query
    let err = attention::decode_attention(&gpu, &q, &k, &v, at(3), 1.0, &out)
        .err()
        .unwrap();
    assert!(err.to_string().contains("one query"), "{err}");
    // head_dim mismatch
    let k16 = t(&[1, 8, 3, 8]);
    let err = attention::flash_attention(&gpu, &q, &k16, &k16, at(0), true, 1.0, &out)
        .err()
        .unwrap();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
}

#[test]
fn rope_refuses_positions_past_its_table() {
    let gpu = common::gpu();
    let config = RopeConfig {
        theta: 10_000.0,
        head_dim: 16,
        scaling: RopeScaling::Linear { factor: 2.0 },
    };
    let table = rope::table_tensor(&gpu, &config, 10).unwrap();
    let x = Tensor::empty(&gpu, &[1, 4, 2, 16], DType::F32).unwrap();
    assert!(rope::rope(&gpu, &x, &table, Position::Fixed(6)).is_ok());
    let err = rope::rope(&gpu, &x, &table, Position::Fixed(7))
        .err()
        .unwrap();
    assert!(err.to_string().contains("exceed"), "{err}");
    let wrong = Tensor::empty(&gpu, &[1, 4, 2, 8], DType::F32).unwrap();
    assert!(rope::rope(&gpu, &wrong, &table, Position::Fixed(0)).is_err());
}
