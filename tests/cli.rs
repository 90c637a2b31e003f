//! The command line: exit codes, error messages and machine-readable output.

use std::process::Command;

/// Runs the binary with a tuning cache of its own (shared by these tests, so the adapter is
/// tuned once, by the first command that needs it).
fn tessera(args: &[&str]) -> std::process::Output {
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-tuning.json");
    tessera_with_cache(args, &cache)
}

fn tessera_with_cache(args: &[&str], cache: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env("TESSERA_TUNE_CACHE", cache)
        .output()
        .expect("the binary runs")
}

/// `tune` measures the competing paths and caches the winners; `info` prints them. On an
/// adapter without cooperative matrices there is nothing to choose, and it says so.
#[test]
fn tune_caches_the_measured_paths_and_info_prints_them() {
    let cache = std::env::temp_dir().join(format!("tessera-tune-{}.json", std::process::id()));
    std::fs::remove_file(&cache).ok();
    let out = tessera_with_cache(&["tune"], &cache);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let coop_required = std::env::var("TESSERA_REQUIRE_COOP").is_ok_and(|v| v == "1");
    if stdout.contains("nothing to tune") {
        assert!(!coop_required, "{stdout}");
        assert!(!cache.exists());
        return;
    }
    for what in ["matmul f16: ", "flash attention f16: ", "conv2d f16: "] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(what))
            .unwrap_or_else(|| panic!("{what} in {stdout}"));
        assert!(line.contains(" ms") && line.contains("coop"), "{line}");
    }
    let cached: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    let entry = cached.as_object().unwrap().values().next().unwrap();
    let choice = entry["matmul_f16"]["choice"].as_str().unwrap();
    assert!(choice == "wide" || choice == "coop", "{choice}");
    let info = tessera_with_cache(&["info"], &cache);
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("kernel paths (tuned):"), "{info}");
    assert!(info.contains(&format!("matmul f16: {choice} (")), "{info}");
    std::fs::remove_file(&cache).ok();
}

#[test]
fn an_unknown_adapter_is_a_clear_error() {
    let out = tessera(&["check", "--adapter", "no-such-adapter-anywhere", "--ci"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-adapter-anywhere"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_arguments_are_rejected_by_the_parser() {
    let out = tessera(&["bench", "--seed", "not-a-number"]);
    assert_eq!(out.status.code(), Some(2));
    let out = tessera(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = tessera(&["check", "--filter", "no case has this name"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn info_json_lists_adapters_with_features() {
    let out = tessera(&["info", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let adapters: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first = &adapters.as_array().unwrap()[0];
    assert!(first["name"].is_string());
    assert!(first["features"]["shader_f16"].is_boolean());
    assert!(
        first["limits"]["max_storage_buffer_binding_size"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn check_prints_a_table_and_passes() {
    let out = tessera(&["check", "--filter", "rms_norm f32 3x255"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("seed: "), "{stdout}");
    assert!(stdout.contains("pass   rms_norm"), "{stdout}");
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
}

#[test]
fn bench_json_is_written_and_parses() {
    let dir = std::env::temp_dir().join(format!("tessera-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bench.json");
    let out = tessera(&[
        "bench",
        "--quick",
        "--filter",
        "add f32",
        "--json",
        path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("copy bandwidth"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(report["copy"]["gbytes_per_second"].as_f64().unwrap() > 0.0);
    let cases = report["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    assert!(
        cases
            .iter()
            .all(|c| c["median_seconds"].as_f64().unwrap() > 0.0)
    );
    assert!(report["adapter"]["name"].is_string());
    std::fs::remove_dir_all(&dir).ok();
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn generate_json_and_dumped_logits_follow_the_contract() {
    let dir = std::env::temp_dir().join(format!("tessera-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dump = dir.join("logits.safetensors");
    let out = tessera(&[
        "generate",
        "--model",
        &fixture("llama_gqa"),
        "--tokens",
        "3,17,42,99,5,200,33",
        "--max-tokens",
        "6",
        "--temperature",
        "0",
        "--json",
        "--dump-logits",
        dump.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let tokens: Vec<u64> = json["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    // transformers' greedy continuation of this prompt (tests/fixtures/llama_gqa).
    assert_eq!(tokens, vec![16, 84, 156, 234, 21, 78]);
    assert!(json["text"].is_string());
    let bytes = std::fs::read(&dump).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let logits = file.tensor("logits").unwrap();
    assert_eq!(logits.shape(), &[6, 256]);
    assert_eq!(logits.dtype(), safetensors::Dtype::F32);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn generate_rejects_bad_arguments_clearly() {
    let model = fixture("llama_gqa");
    // both inputs, or neither
    let out = tessera(&[
        "generate", "--model", &model, "--tokens", "1", "--prompt", "x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = tessera(&["generate", "--model", &model]);
    assert_eq!(out.status.code(), Some(2));
    // a text prompt for a model without tokenizer.json
    let out = tessera(&["generate", "--model", &model, "--prompt", "hello"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tokens"));
    // a token outside the vocabulary, a negative temperature, a missing directory
    for args in [
        vec!["--tokens", "1,999"],
        vec!["--tokens", "1", "--temperature", "-1"],
    ] {
        let mut all = vec!["generate", "--model", model.as_str()];
        all.extend(args);
        let out = tessera(&all);
        assert_eq!(out.status.code(), Some(2), "{all:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("error: ") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
    let out = tessera(&["generate", "--model", "/no/such/dir", "--tokens", "1"]);
    assert_eq!(out.status.code(), Some(2));
}

fn write_sample(path: &std::path::Path, shape: &[usize], values: &[f32]) {
    tessera::io::write_tensor_f32(path, "sample", shape, values).unwrap();
}

#[test]
fn sample_and_unet_eps_follow_the_contract() {
    let dir = std::env::temp_dir().join(format!("tessera-sample-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = fixture("unet_attn");
    let (png, raw, noise) = (
        dir.join("s.png"),
        dir.join("raw.safetensors"),
        dir.join("noise.safetensors"),
    );
    let values: Vec<f32> = (0..2 * 3 * 8 * 8)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
        .collect();
    write_sample(&noise, &[2, 3, 8, 8], &values);
    let out = tessera(&[
        "sample",
        "--model",
        &model,
        "--steps",
        "3",
        "--count",
        "2",
        "--init-noise",
        noise.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
        "--out-raw",
        raw.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = std::fs::read(&png).unwrap();
    assert_eq!(&image[1..4], b"PNG");
    let (shape, _) = tessera::io::read_tensor_f32(&raw, "sample").unwrap();
    assert_eq!(shape, vec![2, 3, 8, 8]);

    // --init-noise of the wrong shape, --steps 0, --steps beyond the training timesteps
    for bad in [
        vec!["--count", "3"],
        vec!["--steps", "0"],
        vec!["--steps", "5000"],
    ] {
        let mut args = vec![
            "sample",
            "--model",
            &model,
            "--init-noise",
            noise.to_str().unwrap(),
        ];
        args.extend(bad.iter().copied());
        let out = tessera(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with("error: "),
            "{bad:?}"
        );
    }

    let eps = dir.join("eps.safetensors");
    let out = tessera(&[
        "unet-eps",
        "--model",
        &model,
        "--timestep",
        "500",
        "--input",
        noise.to_str().unwrap(),
        "--out",
        eps.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (shape, eps_values) = tessera::io::read_tensor_f32(&eps, "sample").unwrap();
    assert_eq!(shape, vec![2, 3, 8, 8]);
    assert!(eps_values.iter().all(|v| v.is_finite()));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn generate_runs_the_bundled_model_with_only_a_prompt() {
    let out = tessera(&["generate", "--prompt", "import os\n", "--max-tokens", "24"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("import os\n"), "{stdout}");
    assert!(
        stdout.len() > "import os\n".len() + 4,
        "nothing generated: {stdout:?}"
    );
    // Seeded sampling repeats.
    let again = tessera(&["generate", "--prompt", "import os\n", "--max-tokens", "24"]);
    assert_eq!(out.stdout, again.stdout);
}

#[test]
fn sample_runs_the_bundled_model_and_profiles_it() {
    let dir = std::env::temp_dir().join(format!("tessera-bundled-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("digits.png");
    let out = tessera(&[
        "sample",
        "--steps",
        "3",
        "--count",
        "2",
        "--profile",
        "--out",
        png.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let image = std::fs::read(&png).unwrap();
    assert_eq!(&image[1..4], b"PNG");
    // Two 16x16 digits side by side with a one-pixel gutter: the IHDR width and height.
    assert_eq!(&image[16..24], &[0, 0, 0, 33, 0, 0, 0, 16]);
    assert!(stderr.contains("2 images, 3 Ddim steps"), "{stderr}");
    assert!(stderr.contains("profile of one UNet forward"), "{stderr}");
    assert!(stderr.contains("conv2d.wgsl:conv2d<f32>"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn generate_profiles_a_decode_step() {
    let out = tessera(&[
        "generate",
        "--prompt",
        "def ",
        "--max-tokens",
        "4",
        "--profile",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("profile of one decode step at position"),
        "{stderr}"
    );
    assert!(stderr.contains("gemv"), "{stderr}");
}

#[test]
fn bench_models_quick_writes_model_figures() {
    let path = std::env::temp_dir().join(format!("tessera-models-{}.json", std::process::id()));
    let out = tessera(&[
        "bench",
        "--models",
        "--quick",
        "--json",
        path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).ok();
    let rows = json["models"].as_array().unwrap();
    // prefill, decode, batched decode of 1, 4 and 16 sequences, decode with Q8_0 and with
    // Q4_K weights, a mixture-of-experts decode and two UNet batches per dtype the adapter has
    assert!(rows.len() == 10 || rows.len() == 20, "{rows:?}");

    for row in rows {
        let rate = row["per_second"].as_f64().unwrap();
        assert!(rate.is_finite() && rate > 0.0, "{row}");
        assert!(row["parameters"].as_u64().unwrap() > 100_000, "{row}");
    }
    let phases: Vec<&str> = rows.iter().map(|r| r["phase"].as_str().unwrap()).collect();
    assert_eq!(
        &phases[..10],
        [
            "prefill",
            "decode",
            "batched decode, 1 sequence",
            "batched decode, 4 sequences",
            "batched decode, 16 sequences",
            "decode, Q8_0 weights",
            "decode, Q4_K weights",
            "decode, 2 of 8 experts",
            "unet forward, batch 1",
            "unet forward, batch 2"
        ]
    );
    assert!(rows[1]["weight_gbytes_per_second"].as_f64().unwrap() > 0.0);
    assert!(rows[7]["weight_gbytes_per_second"].as_f64().unwrap() > 0.0);
    // The batched rows state their ratio to one sequence.
    for row in &rows[3..5] {
        assert!(
            row["detail"]
                .as_str()
                .unwrap()
                .contains("x the aggregate rate of one sequence"),
            "{row}"
        );
    }
}

/// `bench --models --filter` times only the groups of rows it names, and names them when
/// it matches none.
#[test]
fn bench_models_filter_selects_sections() {
    let out = tessera(&["bench", "--models", "--quick", "--filter", "unet"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("unet forward, batch 1"), "{stdout}");
    assert!(!stdout.contains("decode"), "{stdout}");
    let out = tessera(&["bench", "--models", "--quick", "--filter", "nothing"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("batched decode"), "{stderr}");
}

/// A GGUF file runs like a checkpoint directory (greedy tokens as transformers gave them for
/// this file: tests/fixtures/gguf/llama_q8_0.expected.safetensors); one that is not a decoder
/// is refused, naming what is missing.
#[test]
fn generate_runs_a_gguf_file() {
    let gguf = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/gguf/llama_q8_0.gguf"
    );
    let out = tessera(&[
        "generate",
        "--model",
        gguf,
        "--tokens",
        "3,17,42,99,5,200,33",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "61,128,188,25,156,25,68,106");
    let tiny = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gguf/tiny.gguf");
    let out = tessera(&["generate", "--model", tiny, "--tokens", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("token_embd.weight"), "{stderr}");
}

/// A GGUF file with a tokenizer in its metadata takes a text prompt: the continuation is what
/// transformers generates from that text (tools/make_gguf_fixtures.py), read back as ids.
#[test]
fn generate_tokenizes_a_text_prompt_with_the_gguf_tokenizer() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gguf/");
    let gguf = format!("{dir}llama_spm_q5_0.gguf");
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{dir}llama_spm_q5_0.tokenizer.json")).unwrap(),
    )
    .unwrap();
    let prompt = cases["texts"][0].as_str().unwrap();
    let expected = safetensors_ints(&format!("{dir}llama_spm_q5_0.expected.safetensors"));
    let out = tessera(&[
        "generate",
        "--model",
        &gguf,
        "--prompt",
        prompt,
        "--max-tokens",
        "8",
        "--temperature",
        "0",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens: Vec<i64> = json["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    // Generation stops early only at EOS (id 2), which the reference then also produced.
    assert!(!tokens.is_empty());
    assert_eq!(tokens[..], expected[..tokens.len()]);
    assert!(tokens.len() == 8 || tokens.last() == Some(&2), "{tokens:?}");
    assert_eq!(
        json["prompt_tokens"].as_u64(),
        Some(cases["ids"][0].as_array().unwrap().len() as u64)
    );
}

/// The i64 `tokens` of an expected.safetensors fixture.
fn safetensors_ints(path: &str) -> Vec<i64> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensor("tokens")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// `--quant` quantizes a safetensors model at load (the reference is the GGUF file the `gguf`
/// package makes of it); unknown recipes and GGUF inputs are refused.
#[test]
fn generate_quantizes_a_safetensors_model_at_load() {
    let root = env!("CARGO_MANIFEST_DIR");
    let model = format!("{root}/tests/fixtures/llama_gqa");
    let expected = safetensors_ints(&format!(
        "{root}/tests/fixtures/gguf/llama_gqa_as_q4_0.expected.safetensors"
    ));
    let args = |quant: &'static str| {
        vec![
            "generate".to_string(),
            "--model".into(),
            model.clone(),
            "--tokens".into(),
            "3,17,42,99,5,200,33".into(),
            "--max-tokens".into(),
            "8".into(),
            "--temperature".into(),
            "0".into(),
            "--quant".into(),
            quant.into(),
        ]
    };
    let run = |a: Vec<String>| tessera(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run(args("q4_0"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let tokens: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(',')
        .map(|t| t.parse().unwrap())
        .collect();
    assert_eq!(tokens[..], expected[..8]);
    let out = run(args("q5_k"));
    assert_eq!(out.status.code(), Some(2));
    let gguf = format!("{root}/tests/fixtures/gguf/llama_f32.gguf");
    let mut a = args("q8_0");
    a[2] = gguf;
    let out = run(a);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only a safetensors checkpoint"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
