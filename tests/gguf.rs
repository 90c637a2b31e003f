//! GGUF files: the reader on a file written by the `gguf` package
//! (tools/make_gguf_fixture.py) — metadata and every tensor, dequantized, as the package's own
//! reader sees them — and the decoder on GGUF checkpoints (tools/make_gguf_fixtures.py:
//! llama and qwen2 files in F32 and every block type tessera reads, one mixing types like a
//! Q4_K_M file) against transformers reading the same files: the same greedy tokens, logits
//! within 1e-3; and the tokenizers in their metadata (byte-level BPE with two pre-tokenizers,
//! SentencePiece-style) against transformers' GGUF tokenizer: the same ids, the same text.

mod common;

use std::path::PathBuf;

use common::{Expected, relative_l2};
use tessera::DType;
use tessera::models::llama::{GenerateOptions, Generation, Llama, LoadOptions};

use tessera::io::Tokenizer;
use tessera::io::gguf::{GgmlType, Gguf, GgufValue};
use tessera::kernels::quant::dequantize;

/// `steps` greedy tokens after `prompt`, with the logits that chose them.
fn greedy(model: &mut Llama, prompt: &[u32], steps: usize) -> Generation {
    let options = GenerateOptions {
        max_tokens: steps,
        stop_at_eos: false,
        keep_logits: true,
        ..GenerateOptions::default()
    };
    model.generate(prompt, &options, |_| Ok(())).unwrap()
}

/// The largest relative L2 distance between corresponding rows.
fn worst_logits(got: &[Vec<f32>], want: &[Vec<f32>]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(g, w)| relative_l2(g, w))
        .fold(0.0, f64::max)
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf")
        .join(name)
}

#[test]
fn a_file_from_the_gguf_package_reads_as_the_package_reads_it() {
    let g = Gguf::open(&fixture("tiny.gguf")).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny.json")).unwrap()).unwrap();
    assert_eq!(
        g.get("general.architecture").and_then(GgufValue::as_str),
        Some("llama")
    );
    assert_eq!(
        g.get("llama.block_count").and_then(GgufValue::as_u64),
        Some(2)
    );
    assert_eq!(
        g.get("llama.attention.layer_norm_rms_epsilon")
            .and_then(GgufValue::as_f64),
        Some(f64::from(1e-5f32))
    );
    assert_eq!(g.get("tessera.test_flag"), Some(&GgufValue::Bool(true)));
    let tokens: Vec<&str> = g
        .get("tokenizer.ggml.tokens")
        .and_then(GgufValue::as_array)
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens, ["a", "b", "ab", "<s>"]);
    let tensors = want["tensors"].as_object().unwrap();
    assert_eq!(g.tensors().len(), tensors.len());
    for (name, expected) in tensors {
        let t = g.tensor(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(
            format!("{:?}", t.ggml_type),
            expected["type"].as_str().unwrap()
        );
        let dims: Vec<u64> = expected["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(t.dims, dims, "{name}");
        let got = dequantize(t.ggml_type, g.data(t), t.elements() as usize).unwrap();
        let values = expected["values"].as_array().unwrap();
        assert_eq!(got.len(), values.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(values).enumerate() {
            let w = w.as_f64().unwrap();
            assert!(
                (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                "{name}[{i}]: {g} vs {w}"
            );
        }
    }
    assert_eq!(g.tensor("q4_k").unwrap().ggml_type, GgmlType::Q4_K);
}

/// The decoder fixtures: F32, each block type, a Q4_K_M-like mix; those named `_bpe_` /
/// `_spm_`, `llama_q5_k`, `llama_q4_k_m` and `qwen3_q8_0` carry a tokenizer.
const FIXTURES: [&str; 15] = [
    "llama_f32",
    "llama_q8_0",
    "qwen2_q4_0",
    "llama_bpe_q4_1",
    "llama_spm_q5_0",
    "qwen2_bpe_q5_1",
    "llama_q4_k",
    "llama_q5_k",
    "llama_q6_k",
    "llama_q4_k_m",
    "qwen3_q8_0",
    "qwen3moe_q8_0",
    "gemma2_q8_0",
    "gemma3_q8_0",
    "phi3_q8_0",
];

/// Texts with transformers' ids and decodings (NAME.tokenizer.json).
#[derive(serde::Deserialize)]
struct TokenizerCases {
    texts: Vec<String>,
    ids: Vec<Vec<u32>>,
    decoded: Vec<String>,
}

impl TokenizerCases {
    fn read(name: &str) -> TokenizerCases {
        let path = fixture(&format!("{name}.tokenizer.json"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }
}

#[test]
fn gguf_tokenizers_encode_and_decode_as_transformers_does() {
    let with_tokenizer = [
        "llama_bpe_q4_1",
        "llama_spm_q5_0",
        "qwen2_bpe_q5_1",
        "llama_q5_k",
        "llama_q4_k_m",
        "qwen3_q8_0",
    ];
    for name in with_tokenizer {
        let tokenizer = Tokenizer::for_model(&fixture(&format!("{name}.gguf")))
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: no tokenizer"));
        let cases = TokenizerCases::read(name);
        for ((text, ids), decoded) in cases.texts.iter().zip(&cases.ids).zip(&cases.decoded) {
            assert_eq!(&tokenizer.encode(text).unwrap(), ids, "{name}: {text:?}");
            assert_eq!(&tokenizer.decode(ids).unwrap(), decoded, "{name}: {text:?}");
        }
    }
    // Files without one have none (generate then wants --tokens).
    assert!(
        Tokenizer::for_model(&fixture("llama_f32.gguf"))
            .unwrap()
            .is_none()
    );
}

/// Each fixture with its quantized projections kept packed (the packed GEMV, for the prompt
/// and every decode step) and widened to f32 at load: both as transformers.
#[test]
fn gguf_checkpoints_generate_as_transformers_does() {
    let gpu = common::gpu();
    for name in FIXTURES {
        for packed_weights in [true, false] {
            let want = Expected::read(&fixture(&format!("{name}.expected.safetensors")));
            let options = LoadOptions {
                dtype: DType::F32,
                packed_weights,
                ..LoadOptions::default()
            };
            let path = fixture(&format!("{name}.gguf"));
            let label = format!("{name} (packed weights: {packed_weights})");
            let mut model =
                Llama::load(&gpu, &path, &options).unwrap_or_else(|e| panic!("{label}: {e}"));
            // A file with a tokenizer: the prompt is the text, as tessera tokenizes it.
            let prompt = match Tokenizer::for_model(&path).unwrap() {
                Some(tokenizer) => {
                    let cases = TokenizerCases::read(name);
                    let ids = tokenizer.encode(&cases.texts[0]).unwrap();
                    assert_eq!(ids, want.prompt, "{label}: prompt ids");
                    ids
                }
                None => want.prompt.clone(),
            };
            let out = greedy(&mut model, &prompt, want.tokens.len());
            assert_eq!(out.tokens, want.tokens, "{label}: greedy tokens");
            let mut worst: f64 = 0.0;
            for (step, (got, w)) in out.logits.iter().zip(&want.logits).enumerate() {
                let rel = relative_l2(got, w);
                assert!(
                    rel < 1e-3,
                    "{label} step {step}: logits relative L2 {rel:e}"
                );
                worst = worst.max(rel);
            }
            eprintln!(
                "{label}: {} tokens identical, worst logits relative L2 {worst:.1e}",
                out.tokens.len()
            );
        }
    }
}

/// `--quant` on a safetensors checkpoint computes what transformers computes from the GGUF
/// file the `gguf` package makes of it (tools/make_gguf_fixtures.py, FROM_SAFETENSORS): the
/// Q8_0 and Q4_0 blocks are ggml's reference quantization, bit for bit, packed or widened.
/// This model's rows (64, 96) are not whole Q4_K blocks: `q4_k` falls back to `q4_0`'s types
/// here (the K-quant fits are checked in `kernels::quantize`).
#[test]
fn quantizing_a_safetensors_checkpoint_at_load_matches_the_reference() {
    use tessera::kernels::quantize::QuantRecipe;
    let gpu = common::gpu();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_gqa");
    for (recipe, reference) in [
        (QuantRecipe::Q8_0, "llama_gqa_as_q8_0"),
        (QuantRecipe::Q4_0, "llama_gqa_as_q4_0"),
        (QuantRecipe::Q4_K, "llama_gqa_as_q4_0"),
    ] {
        let want = Expected::read(&fixture(&format!("{reference}.expected.safetensors")));
        for packed_weights in [true, false] {
            let label = format!("{recipe:?} (packed {packed_weights})");
            let options = LoadOptions {
                dtype: DType::F32,
                packed_weights,
                quantize: Some(recipe),
                ..LoadOptions::default()
            };
            let mut model = Llama::load(&gpu, &dir, &options).unwrap();
            let out = greedy(&mut model, &want.prompt, want.tokens.len());
            assert_eq!(out.tokens, want.tokens, "{label}");
            let worst = worst_logits(&out.logits, &want.logits);
            assert!(worst < 1e-3, "{label}: {worst:e}");
            eprintln!("{label} at load: tokens as {reference}, worst logits {worst:.1e}");
        }
    }
    // A GGUF file is quantized already.
    let options = LoadOptions {
        quantize: Some(QuantRecipe::Q8_0),
        ..LoadOptions::default()
    };
    let err = Llama::load(&gpu, &fixture("llama_f32.gguf"), &options)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("only a safetensors checkpoint"), "{err}");
}

/// A packed embedding and output projection larger than a binding are split by rows like
/// dense ones: bindings of 8 KiB hold 128 of the Q8_0 fixture's 256 rows (64 bytes of quants
/// each), so both come in two parts, gathered and projected part by part.
#[test]
fn a_packed_embedding_larger_than_a_binding_is_split() {
    use tessera::gpu::Gpu;
    use tessera::kernels::quantize::QuantRecipe;
    let adapter = tessera::gpu::select_adapter(None).unwrap();
    let gpu =
        Gpu::open_with_limits(adapter, |l| l.max_storage_buffer_binding_size = 8 << 10).unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_gqa");
    let want = Expected::read(&fixture("llama_gqa_as_q8_0.expected.safetensors"));
    let options = LoadOptions {
        quantize: Some(QuantRecipe::Q8_0),
        ..LoadOptions::default()
    };
    let mut model = Llama::load(&gpu, &dir, &options).unwrap();
    let out = greedy(&mut model, &want.prompt, 8);
    assert_eq!(out.tokens, want.tokens[..8]);
}

/// Llama 3's rotary scaling as llama.cpp stores it (`rope_freqs.weight`, per-frequency
/// divisors): the GGUF file of the sharded Llama 3 fixture generates what transformers
/// generates from the safetensors original (its GGUF loader ignores the tensor).
#[test]
fn rope_freqs_in_a_gguf_file_scale_the_rotary_frequencies() {
    let gpu = common::gpu();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let want = Expected::read(&root.join("tests/fixtures/llama3_sharded/expected.safetensors"));
    let mut model = Llama::load(
        &gpu,
        &fixture("llama3_rope_freqs.gguf"),
        &LoadOptions::default(),
    )
    .unwrap();
    let out = greedy(&mut model, &want.prompt, want.tokens.len());
    assert_eq!(out.tokens, want.tokens);
    let worst = worst_logits(&out.logits, &want.logits);
    assert!(worst < 1e-3, "{worst:e}");
    eprintln!("llama3_rope_freqs: tokens identical, worst logits {worst:.1e}");
}

/// A packed weight whose rows are not whole blocks is refused by the kernels with the reason,
/// before anything is dispatched (and the re-layout refuses to make one).
#[test]
fn packed_rows_that_are_not_whole_blocks_are_refused() {
    use tessera::kernels::matmul::Epilogue;
    use tessera::kernels::packed::{self, PackedKernel, PackedView};
    use tessera::kernels::quant::relay;
    use tessera::tensor::Tensor;
    let gpu = common::gpu();
    // 48 columns of Q8_0: one and a half blocks.
    let err = relay(GgmlType::Q8_0, &[0; 2 * 51], 2, 48)
        .unwrap_err()
        .to_string();
    assert!(err.contains("whole 32-element rows"), "{err}");
    let x = Tensor::empty(&gpu, &[1, 48], DType::F32).unwrap();
    let y = Tensor::empty(&gpu, &[1, 2], DType::F32).unwrap();
    let scales = Tensor::from_u32(&gpu, &[2, 1], &[0, 0]).unwrap();
    let quants = Tensor::from_u32(&gpu, &[24], &[0; 24]).unwrap();
    let w = PackedView {
        ggml_type: GgmlType::Q8_0,
        rows: 2,
        cols: 48,
        scales: &scales,
        quants: &quants,
    };
    for kernel in [PackedKernel::Gemv, PackedKernel::Matmul] {
        let err = packed::packed_linear(&gpu, kernel, &x, w, None, Epilogue::None, &y)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("whole 32-element blocks"), "{kernel:?}: {err}");
    }
}
