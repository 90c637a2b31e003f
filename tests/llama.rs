//! The decoder against transformers: each fixture in tests/fixtures (made by
//! tools/make_fixtures.py) holds a tiny random checkpoint and the greedy tokens and logits
//! PyTorch computed for it.

mod common;

use std::path::{Path, PathBuf};

use common::{Expected, relative_l2};
use tessera::models::llama::{GenerateOptions, Llama, LoadOptions};
use tessera::{DType, Gpu};

fn expected(dir: &Path) -> Expected {
    Expected::read(&dir.join("expected.safetensors"))
}

fn fixtures() -> Vec<PathBuf> {
    common::decoder_fixtures()
}

fn load(gpu: &Gpu, dir: &Path, dtype: DType) -> Llama {
    load_with(gpu, dir, dtype, None)
}

fn load_with(gpu: &Gpu, dir: &Path, dtype: DType, fused_norms: Option<bool>) -> Llama {
    let options = LoadOptions {
        dtype,
        fused_norms,
        ..LoadOptions::default()
    };
    Llama::load(gpu, dir, &options).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

#[test]
fn greedy_generation_matches_transformers_in_f32() {
    let gpu = common::gpu();
    // Decode with the norms fused into the projections and without, whatever the adapter's
    // default.
    for (dir, fused) in fixtures()
        .into_iter()
        .flat_map(|dir| [(dir.clone(), false), (dir, true)])
    {
        let want = expected(&dir);
        let mut model = load_with(&gpu, &dir, DType::F32, Some(fused));
        let options = GenerateOptions {
            max_tokens: want.tokens.len(),
            stop_at_eos: false,
            keep_logits: true,
            ..GenerateOptions::default()
        };
        let out = model.generate(&want.prompt, &options, |_| Ok(())).unwrap();
        let name = format!(
            "{} (fused norms: {fused})",
            dir.file_name().unwrap().to_string_lossy()
        );
        assert_eq!(out.tokens, want.tokens, "{name}: greedy tokens");
        let mut worst: f64 = 0.0;
        for (step, (got, want)) in out.logits.iter().zip(&want.logits).enumerate() {
            let rel = relative_l2(got, want);
            assert!(
                rel < 1e-3,
                "{name} step {step}: logits relative L2 error {rel:e}"
            );
            worst = worst.max(rel);
        }
        eprintln!(
            "{name}: {} tokens identical, worst logits relative L2 {worst:.1e}",
            out.tokens.len()
        );
    }
}

/// f16 on the portable kernels and, where the adapter has cooperative matrices, with every
/// automatic choice forced onto them (prefill attention then runs on tensor cores).
#[test]
fn f16_activations_stay_within_2e_2() {
    let gpu = common::gpu();
    if !gpu.supports(DType::F16) {
        return;
    }
    let mut paths = vec![None];
    if gpu.cooperative_f16().is_ok() {
        paths.push(Some("coop"));
    }
    for path in paths {
        gpu.force_path(path);
        f16_logits_match(&gpu, path.unwrap_or("portable"));
    }
    gpu.force_path(None);
}

fn f16_logits_match(gpu: &tessera::Gpu, path: &str) {
    for dir in fixtures() {
        let want = expected(&dir);
        let mut model = load(gpu, &dir, DType::F16);
        let name = dir.file_name().unwrap().to_string_lossy();
        let name = format!("{name} ({path})");
        // Teacher-forced: each step sees transformers' tokens, so rows stay comparable.
        let mut logits = model.forward(&want.prompt).unwrap();
        let mut worst: f64 = 0.0;
        for (step, token) in want.tokens.iter().enumerate() {
            let rel = relative_l2(&logits, &want.logits[step]);
            assert!(
                rel < 2e-2,
                "{name} step {step}: f16 logits relative L2 error {rel:e}"
            );
            worst = worst.max(rel);
            logits = model.forward(&[*token]).unwrap();
        }
        eprintln!("{name} f16: worst logits relative L2 {worst:.1e}");
    }
}

use common::FixtureCopy;

/// The error loading `dir` gives.
fn load_error(dir: &FixtureCopy) -> String {
    let gpu = common::gpu();
    match Llama::load(&gpu, &dir.0, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded", dir.0.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_truncated_checkpoint_is_a_clear_error() {
    let dir = FixtureCopy::of("llama_gqa", "truncated");
    let weights = dir.0.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_error(&dir);
    assert!(
        err.contains("model.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );
}

#[test]
fn a_header_that_lies_about_offsets_is_a_clear_error() {
    let dir = FixtureCopy::of("llama_gqa", "lying");
    let weights = dir.0.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    // Move one tensor's end offset without touching the file size: offsets no longer tile.
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
    let at = header
        .find("\"data_offsets\":[0,")
        .expect("a tensor at offset 0");
    let digit = at + "\"data_offsets\":[0,".len();
    let mut lying = header.into_bytes();
    lying[digit] = if lying[digit] == b'9' {
        b'1'
    } else {
        lying[digit] + 1
    };
    bytes[8..8 + header_len].copy_from_slice(&lying);
    std::fs::write(&weights, &bytes).unwrap();
    let err = load_error(&dir);
    assert!(err.contains("not a valid safetensors"), "{err}");
}

#[test]
fn a_tensor_of_the_wrong_shape_is_named() {
    let dir = FixtureCopy::of("llama_gqa", "shape");
    dir.edit(
        "config.json",
        "\"intermediate_size\": 96",
        "\"intermediate_size\": 100",
    );
    let err = load_error(&dir);
    assert!(
        err.contains("mlp.gate_proj.weight") && err.contains("[100, 64]"),
        "{err}"
    );
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = FixtureCopy::of("qwen2_bias", "missing");
    // The fixture ties its embeddings; claiming otherwise requires an lm_head it lacks.
    dir.edit(
        "config.json",
        "\"tie_word_embeddings\": true",
        "\"tie_word_embeddings\": false",
    );
    let err = load_error(&dir);
    assert!(
        err.contains("lm_head.weight") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn an_unknown_architecture_is_named() {
    let dir = FixtureCopy::of("llama_gqa", "arch");
    dir.edit("config.json", "LlamaForCausalLM", "FalconForCausalLM");
    let err = load_error(&dir);
    assert!(
        err.contains("FalconForCausalLM") && err.contains("config.json"),
        "{err}"
    );
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let gpu = common::gpu();
    let dir = fixtures().remove(0);
    let options = LoadOptions {
        dtype: DType::F32,
        max_context: Some(16),
        ..LoadOptions::default()
    };
    let mut model = Llama::load(&gpu, &dir, &options).unwrap();
    let err = model.forward(&[5; 17]).unwrap_err().to_string();
    assert!(err.contains("context of 16"), "{err}");
    // The model is still usable, and generation stops at the end of the context.
    let out = model
        .generate(
            &[5; 10],
            &GenerateOptions {
                max_tokens: 50,
                stop_at_eos: false,
                ..Default::default()
            },
            |_| Ok(()),
        )
        .unwrap();
    assert_eq!(out.stop, "context");
    assert_eq!(
        out.tokens.len(),
        7,
        "10 prompt positions + 6 decoded fill 16; the 7th is chosen last"
    );
    let err = model.forward(&[300]).unwrap_err().to_string();
    assert!(err.contains("vocabulary"), "{err}");
}

#[test]
fn decoding_allocates_nothing_per_token() {
    let gpu = common::gpu();
    let dir = fixtures().remove(0);
    let mut model = load(&gpu, &dir, DType::F32);
    let mut logits = model.forward(&[3, 17, 42]).unwrap();
    // One decode step to warm the read-back staging buffer.
    logits = model
        .forward(&[tessera::models::sampling::argmax(&logits)])
        .unwrap();
    let (created, pooled) = (gpu.created_bytes(), gpu.pooled_bytes());
    for _ in 0..100 {
        let token = tessera::models::sampling::argmax(&logits);
        logits = model.forward(&[token]).unwrap();
    }
    assert_eq!(
        gpu.created_bytes(),
        created,
        "no buffer created over 100 decode steps"
    );
    assert_eq!(
        gpu.pooled_bytes(),
        pooled,
        "the pool is stable over 100 decode steps"
    );
}

#[test]
fn an_embedding_larger_than_a_binding_is_split_not_refused() {
    // A device whose storage bindings hold 32 KiB: the fixture's 256 x 64 f32 embedding and
    // output projection (64 KiB each) must be split in two; everything else fits.
    let adapter = tessera::gpu::select_adapter(None).unwrap();
    let gpu =
        Gpu::open_with_limits(adapter, |l| l.max_storage_buffer_binding_size = 32 << 10).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_gqa");
    let want = expected(&dir);
    let mut model = load(&gpu, &dir, DType::F32);
    let options = GenerateOptions {
        max_tokens: 8,
        stop_at_eos: false,
        ..GenerateOptions::default()
    };
    let out = model.generate(&want.prompt, &options, |_| Ok(())).unwrap();
    assert_eq!(out.tokens, want.tokens[..8]);
}

#[test]
fn decode_stacks_qkv_and_fuses_what_it_can() {
    let gpu = common::gpu();
    let dir = fixtures()
        .into_iter()
        .find(|d| d.ends_with("llama_gqa"))
        .expect("the GQA fixture");
    let layers = 2;
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(config.contains("\"num_hidden_layers\": 2"), "{config}");
    // f32, head_dim 16: k and v are 128 bytes of the stacked projection's output.
    let stacked = gpu.limits().min_storage_buffer_offset_alignment <= 128;
    for fused_norms in [false, true] {
        let mut model = load_with(&gpu, &dir, DType::F32, Some(fused_norms));
        // Per layer: [norm], q/k/v (1 stacked or 3), rope (q|k in one call when stacked, else
        // q and k), kv append, attention, o (+ residual), [norm], gate, up (+ SwiGLU), down
        // (+ residual). Around them: embedding, last-position gather, final norm, output
        // projection.
        let norms = if fused_norms { 0 } else { 2 };
        let (qkv, rope) = if stacked { (1, 1) } else { (3, 2) };
        let want = layers * (norms + qkv + rope + 6) + 4;
        assert_eq!(
            model.decode_calls().unwrap(),
            want,
            "fused norms {fused_norms}, stacked {stacked}"
        );
    }
}

/// Variants of the newer architectures tessera does not run yet, or configs that contradict
/// themselves, are errors that name the key (one per case).
#[test]
fn unsupported_variants_of_the_newer_architectures_name_the_key() {
    let cases: [(&str, &str, &str, &str); 9] = [
        // Phi-4-mini rotates 3/4 of each head.
        (
            "phi3_longrope",
            "\"partial_rotary_factor\": 1.0",
            "\"partial_rotary_factor\": 0.75",
            "partial_rotary_factor",
        ),
        // A scaling type the decoder does not know.
        (
            "phi3_longrope",
            "\"rope_type\": \"longrope\"",
            "\"rope_type\": \"yarn\"",
            "yarn",
        ),
        // longrope factors must cover every frequency of the head.
        (
            "phi3_longrope",
            "\"short_factor\": [\n      1.0,",
            "\"short_factor\": [",
            "short_factor",
        ),
        // A fused qkv_proj of the wrong size for the heads the config declares.
        (
            "phi3_longrope",
            "\"num_key_value_heads\": 2",
            "\"num_key_value_heads\": 4",
            "qkv_proj",
        ),
        // SmolLM3's NoPE list must cover every layer with 0 or 1.
        (
            "smollm3_nope",
            "\"no_rope_layers\": [\n    1,\n    0,\n    1\n  ]",
            "\"no_rope_layers\": [1, 2]",
            "no_rope_layers",
        ),
        // Gemma 3's bidirectional (encoder) attention.
        (
            "gemma3_text",
            "\"use_bidirectional_attention\": false",
            "\"use_bidirectional_attention\": true",
            "use_bidirectional_attention",
        ),
        // Gemma's MLP with another activation.
        (
            "gemma2_softcap",
            "\"hidden_activation\": \"gelu_pytorch_tanh\"",
            "\"hidden_activation\": \"relu\"",
            "hidden_activation",
        ),
        // A soft-cap must be positive.
        (
            "gemma2_softcap",
            "\"final_logit_softcapping\": 15.0",
            "\"final_logit_softcapping\": -1.0",
            "final_logit_softcapping",
        ),
        // Qwen3 declaring q/k/v biases its checkpoint lacks.
        (
            "qwen3_qk_norm",
            "\"attention_bias\": false",
            "\"attention_bias\": true",
            "q_proj.bias",
        ),
    ];
    for (i, (fixture, from, to, named)) in cases.into_iter().enumerate() {
        let dir = FixtureCopy::of(fixture, &format!("variant{i}"));
        dir.edit("config.json", from, to);
        let err = load_error(&dir);
        assert!(err.contains(named), "{fixture}, {to}: {err}");
    }
}

/// A decode step through a mixture-of-experts layer reads the chosen experts' weights only:
/// the expert GEMVs of the Mixtral fixture (2 layers, 2 of 4 experts, gate/up/down of
/// 96 × 64 f32) state 2 · 3 · 2 · 96 · 64 · 4 bytes, half of what all experts hold, and the
/// profile (`generate --profile`) reports them.
#[test]
fn expert_gemvs_read_only_the_chosen_experts() {
    let gpu = common::gpu();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mixtral_moe");
    let mut model = load(&gpu, &dir, DType::F32);
    let c = model.config().clone();
    let m = c.moe.clone().expect("a mixture of experts");
    model.forward(&[3, 17, 42]).unwrap();
    let profile = model.profile_decode(1).unwrap();
    let expert = profile
        .iter()
        .find(|k| k.kernel.contains("moe_gemv"))
        .expect("expert GEMVs in the decode step");
    let per_matrix = (m.expert_intermediate * c.hidden_size * 4) as u64;
    let chosen = (c.num_layers * 3 * m.top_k) as u64 * per_matrix;
    assert_eq!(expert.weight_bytes, Some(chosen));
    let every_expert = (c.num_layers * 3 * m.experts) as u64 * per_matrix;
    assert_eq!(2 * chosen, every_expert, "2 of 4 experts");
}

#[test]
fn a_model_loaded_from_bytes_generates_as_one_loaded_from_files() {
    // What a web page does: config.json and model.safetensors fetched, handed over as bytes.
    let gpu = common::gpu();
    let dir = fixtures()
        .into_iter()
        .find(|d| d.join("model.safetensors").is_file())
        .expect("a single-file fixture");
    let want = expected(&dir);
    let options = GenerateOptions {
        max_tokens: want.tokens.len(),
        stop_at_eos: false,
        keep_logits: true,
        ..GenerateOptions::default()
    };
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let mut from_bytes =
        Llama::from_bytes(&gpu, &config, weights.clone(), &LoadOptions::default()).unwrap();
    let mut from_files = load(&gpu, &dir, DType::F32);
    let got = from_bytes
        .generate(&want.prompt, &options, |_| Ok(()))
        .unwrap();
    let files = from_files
        .generate(&want.prompt, &options, |_| Ok(()))
        .unwrap();
    assert_eq!(got.tokens, want.tokens);
    assert_eq!(got.logits, files.logits, "the same bits either way");

    // A truncated download is an error naming the file, not a panic.
    let cut = weights[..weights.len() / 2].to_vec();
    let err = Llama::from_bytes(&gpu, &config, cut, &LoadOptions::default())
        .err()
        .expect("half a checkpoint was accepted");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}
