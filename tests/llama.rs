//! The decoder against transformers: each fixture in tests/fixtures (made by
//! tools/make_fixtures.py) holds a tiny random checkpoint and the greedy tokens and logits
//! PyTorch computed for it.

mod common;

use std::path::{Path, PathBuf};

use tessera::models::llama::{GenerateOptions, Llama, LoadOptions};
use tessera::{DType, Gpu};

struct Expected {
    prompt: Vec<u32>,
    tokens: Vec<u32>,
    /// `[steps][vocab]`
    logits: Vec<Vec<f32>>,
}

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.safetensors").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 5, "fixtures missing in {}", root.display());
    dirs
}

fn expected(dir: &Path) -> Expected {
    let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ints = |name: &str| -> Vec<u32> {
        file.tensor(name)
            .unwrap()
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
            .collect()
    };
    let logits = file.tensor("logits").unwrap();
    let vocab = logits.shape()[1];
    let values: Vec<f32> = logits
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    Expected {
        prompt: ints("prompt"),
        tokens: ints("tokens"),
        logits: values.chunks(vocab).map(<[f32]>::to_vec).collect(),
    }
}

fn relative_l2(got: &[f32], want: &[f32]) -> f64 {
    let err: f64 = got
        .iter()
        .zip(want)
        .map(|(g, w)| f64::from(g - w).powi(2))
        .sum();
    let norm: f64 = want.iter().map(|w| f64::from(*w).powi(2)).sum();
    (err / norm).sqrt()
}

fn load(gpu: &Gpu, dir: &Path, dtype: DType) -> Llama {
    let options = LoadOptions {
        dtype,
        max_context: None,
    };
    Llama::load(gpu, dir, &options).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

#[test]
fn greedy_generation_matches_transformers_in_f32() {
    let gpu = common::gpu();
    for dir in fixtures() {
        let want = expected(&dir);
        let mut model = load(&gpu, &dir, DType::F32);
        let options = GenerateOptions {
            max_tokens: want.tokens.len(),
            stop_at_eos: false,
            keep_logits: true,
            ..GenerateOptions::default()
        };
        let out = model.generate(&want.prompt, &options, |_| Ok(())).unwrap();
        let name = dir.file_name().unwrap().to_string_lossy();
        assert_eq!(out.tokens, want.tokens, "{name}: greedy tokens");
        for (step, (got, want)) in out.logits.iter().zip(&want.logits).enumerate() {
            let rel = relative_l2(got, want);
            assert!(
                rel < 1e-3,
                "{name} step {step}: logits relative L2 error {rel:e}"
            );
        }
    }
}

#[test]
fn f16_activations_stay_within_2e_2() {
    let gpu = common::gpu();
    if !gpu.supports(DType::F16) {
        return;
    }
    for dir in fixtures() {
        let want = expected(&dir);
        let mut model = load(&gpu, &dir, DType::F16);
        let name = dir.file_name().unwrap().to_string_lossy();
        // Teacher-forced: each step sees transformers' tokens, so rows stay comparable.
        let mut logits = model.forward(&want.prompt).unwrap();
        for (step, token) in want.tokens.iter().enumerate() {
            let rel = relative_l2(&logits, &want.logits[step]);
            assert!(
                rel < 2e-2,
                "{name} step {step}: f16 logits relative L2 error {rel:e}"
            );
            logits = model.forward(&[*token]).unwrap();
        }
    }
}
