//! Speculative decoding on the decoder fixtures: greedy output identical to the target's
//! alone, with a draft that mostly agrees (the target itself quantized to Q8_0) and one that
//! mostly does not (another random model of the same vocabulary); the acceptance rate is
//! reported by `generate --stats`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use tessera::DType;
use tessera::kernels::quantize::QuantRecipe;
use tessera::models::llama::{GenerateOptions, Llama, LoadOptions};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(dir: &Path, quantize: Option<QuantRecipe>) -> Llama {
    let gpu = common::gpu();
    let options = LoadOptions {
        dtype: DType::F32,
        quantize,
        ..LoadOptions::default()
    };
    Llama::load(&gpu, dir, &options).unwrap()
}

#[test]
fn greedy_speculative_decoding_gives_the_targets_own_tokens() {
    for target_name in ["llama_gqa", "qwen3_qk_norm", "mixtral_moe"] {
        let dir = fixture(target_name);
        let mut target = load(&dir, None);
        let expected = common::Expected::read(&dir.join("expected.safetensors"));
        let options = GenerateOptions {
            max_tokens: expected.tokens.len(),
            stop_at_eos: false,
            ..GenerateOptions::default()
        };
        let alone = target
            .generate(&expected.prompt, &options, |_| Ok(()))
            .unwrap()
            .tokens;
        assert_eq!(alone, expected.tokens, "{target_name} alone");
        let drafts = [
            ("itself in Q8_0", load(&dir, Some("q8_0".parse().unwrap()))),
            ("another model", load(&fixture("llama_mqa_tied_bf16"), None)),
        ];
        for (what, mut draft) in drafts {
            for k in [1, 3, 5] {
                let mut streamed = Vec::new();
                let (out, stats) = target
                    .generate_speculative(&mut draft, k, &expected.prompt, &options, |t| {
                        streamed.push(t);
                        Ok(())
                    })
                    .unwrap();
                let name = format!("{target_name}, draft {what}, k = {k}");
                assert_eq!(out.tokens, alone, "{name}");
                assert_eq!(streamed, alone, "{name}: streamed");
                assert!(stats.accepted <= stats.drafted, "{name}: {stats:?}");
                assert!(
                    stats.target_passes < alone.len() || k == 1 || stats.accepted == 0,
                    "{name}: {stats:?}"
                );
                eprintln!(
                    "{name}: {} tokens identical, acceptance {:.0}% in {} target passes",
                    out.tokens.len(),
                    100.0 * stats.acceptance_rate(),
                    stats.target_passes
                );
                if what == "itself in Q8_0" {
                    assert!(stats.acceptance_rate() > 0.7, "{name}: {stats:?}");
                }
            }
        }
    }
}

#[test]
fn generate_with_a_draft_prints_the_acceptance_rate() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/stdlib-byte");
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args([
                "generate",
                "--prompt",
                "def main(",
                "--max-tokens",
                "24",
                "--temperature",
                "0",
                "--json",
                "--model",
            ])
            .arg(&model)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (json, String::from_utf8(out.stderr).unwrap())
    };
    let (alone, _) = run(&[]);
    let draft = model.to_str().unwrap();
    let (speculative, stderr) = run(&["--draft", draft, "--draft-quant", "q4_0", "--stats"]);
    assert_eq!(speculative["tokens"], alone["tokens"]);
    assert!(stderr.contains("acceptance rate"), "{stderr}");
    let rate = speculative["draft"]["acceptance_rate"].as_f64().unwrap();
    assert!(rate > 0.5 && rate <= 1.0, "{speculative}");
}
