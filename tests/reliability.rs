//! Hostile input, one test per example of the reliability issue: every one ends in a clear
//! error (exit 2 from the CLI, naming the key, flag or path) or in the right behaviour, never
//! in an abort, a hang, a panic or a silent NaN image.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A scratch copy of a model directory (bundled model or fixture), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn of(from: &Path, tag: &str) -> Scratch {
        let to = std::env::temp_dir().join(format!("tessera-rel-{tag}-{}", std::process::id()));
        std::fs::remove_dir_all(&to).ok();
        copy_dir(from, &to);
        Scratch(to)
    }

    fn digits(tag: &str) -> Scratch {
        Scratch::of(&repo().join("assets/models/digits-unet"), tag)
    }

    fn demo_llm(tag: &str) -> Scratch {
        Scratch::of(&repo().join("assets/models/stdlib-byte"), tag)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Sets `key` of the JSON object in `file` to `value` (JSON text).
    fn set(&self, file: &str, key: &str, value: &str) {
        let path = self.path(file);
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        json[key] = serde_json::from_str(value).unwrap();
        std::fs::write(&path, json.to_string()).unwrap();
    }

    fn remove_key(&self, file: &str, key: &str) {
        let path = self.path(file);
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        json.as_object_mut().unwrap().remove(key);
        std::fs::write(&path, json.to_string()).unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the CLI in `dir` with a deadline: a run past it is killed and fails the test as a hang.
fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability-tuning.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
    command
        .args(args)
        .current_dir(dir)
        .env("TESSERA_TUNE_CACHE", cache)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("the binary runs");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("tessera {args:?} hung (killed after 120 s)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(args: &[&str]) -> Outcome {
    run_in(&std::env::temp_dir(), args, &[])
}

/// Exit 2 with every `needles` in the message, and no panic.
fn assert_refused(out: &Outcome, needles: &[&str]) {
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert_eq!(
        out.code,
        Some(2),
        "stdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    for needle in needles {
        assert!(
            out.stderr.contains(needle),
            "{needle:?} not in: {}",
            out.stderr
        );
    }
}

fn sample_args<'a>(dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["sample", "--model", dir.to_str().unwrap(), "--steps", "2"];
    args.extend_from_slice(extra);
    args
}

/// `generate` one token after the prompt "1" with the model in `m`.
fn generate_one(m: &Scratch) -> Outcome {
    run(&[
        "generate",
        "--model",
        m.0.to_str().unwrap(),
        "--tokens",
        "1",
    ])
}

/// `unet-eps` on the model in `m` at `timestep` with `input`, writing into `m`.
fn unet_eps(m: &Scratch, timestep: &str, input: &Path) -> Outcome {
    run(&[
        "unet-eps",
        "--model",
        m.0.to_str().unwrap(),
        &format!("--timestep={timestep}"),
        "--input",
        input.to_str().unwrap(),
        "--out",
        m.path("eps.safetensors").to_str().unwrap(),
    ])
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
}

/// A safetensors file whose one f32 tensor "sample" declares `shape`; the data section is a
/// sparse hole of the right length, so a huge declared tensor costs no disk.
fn sparse_tensor_file(path: &Path, shape: &[usize]) {
    let bytes: u64 = shape.iter().map(|&d| d as u64).product::<u64>() * 4;
    let header = format!(
        "{{\"sample\":{{\"dtype\":\"F32\",\"shape\":{shape:?},\"data_offsets\":[0,{bytes}]}}}}"
    );
    let mut header = header.into_bytes();
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let mut data = (header.len() as u64).to_le_bytes().to_vec();
    data.extend_from_slice(&header);
    std::fs::write(path, &data).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(data.len() as u64 + bytes).unwrap();
}

// ---- host memory sized from input ----

#[test]
fn a_huge_layer_count_is_refused_by_key() {
    let m = Scratch::demo_llm("layers");
    m.set("config.json", "num_hidden_layers", "100000000");
    let out = generate_one(&m);
    assert_refused(&out, &["num_hidden_layers", "out of range"]);
}

#[test]
fn a_huge_timestep_count_is_refused_by_key() {
    let m = Scratch::digits("timesteps");
    m.set(
        "scheduler_config.json",
        "num_train_timesteps",
        "1000000000000",
    );
    let out = run(&sample_args(&m.0, &["--count", "1"]));
    assert_refused(&out, &["num_train_timesteps", "out of range"]);
}

#[test]
fn a_huge_count_is_refused_by_flag_before_any_noise_is_drawn() {
    let m = Scratch::digits("count");
    let out = run(&sample_args(&m.0, &["--count", "10000000000000"]));
    assert_refused(&out, &["--count 10000000000000"]);
}

#[test]
fn huge_sample_sizes_are_refused_by_key() {
    let m = Scratch::digits("size");
    m.set("config.json", "sample_size", "65536");
    assert_refused(
        &run(&sample_args(&m.0, &["--count", "1"])),
        &["sample_size"],
    );
    m.set("config.json", "sample_size", "[2, 1099511627776]");
    assert_refused(
        &run(&sample_args(&m.0, &["--count", "1"])),
        &["sample_size"],
    );
    // Large but within the parser's bounds: refused against the device's limits.
    m.set("config.json", "sample_size", "4096");
    assert_refused(
        &run(&sample_args(&m.0, &["--count", "1"])),
        &["sample_size 4096x4096 is too large"],
    );
}

#[test]
fn a_noise_file_declaring_a_huge_tensor_is_refused_before_it_is_read() {
    let m = Scratch::digits("hugenoise");
    // 2^26 samples of 1×16×16 f32: 64 GiB if it were converted.
    let noise = m.path("noise.safetensors");
    sparse_tensor_file(&noise, &[1 << 26, 1, 16, 16]);
    let out = run(&sample_args(
        &m.0,
        &["--init-noise", noise.to_str().unwrap()],
    ));
    assert_refused(&out, &["noise.safetensors", "a batch of 67108864"]);
    let wrong = m.path("wrong.safetensors");
    sparse_tensor_file(&wrong, &[1 << 26, 3, 16, 16]);
    let out = unet_eps(&m, "10", &wrong);
    assert_refused(&out, &["wrong.safetensors", "the model takes"]);
}

// ---- special files and large indexes ----

#[cfg(unix)]
#[test]
fn fifos_are_refused_not_waited_on() {
    let m = Scratch::digits("fifo");
    let fifo = m.path("noise.safetensors");
    mkfifo(&fifo);
    let out = run(&sample_args(
        &m.0,
        &["--init-noise", fifo.to_str().unwrap()],
    ));
    assert_refused(&out, &["FIFO", "noise.safetensors"]);
    let out = unet_eps(&m, "10", &fifo);
    assert_refused(&out, &["FIFO"]);
    let weights = m.path("diffusion_pytorch_model.safetensors");
    std::fs::remove_file(&weights).unwrap();
    mkfifo(&weights);
    assert_refused(&run(&sample_args(&m.0, &["--count", "1"])), &["FIFO"]);
}

#[cfg(unix)]
#[test]
fn a_directory_or_link_loop_where_the_weights_belong_is_named_as_such() {
    let m = Scratch::demo_llm("notafile");
    let weights = m.path("model.safetensors");
    std::fs::remove_file(&weights).unwrap();
    std::fs::create_dir(&weights).unwrap();
    assert_refused(&generate_one(&m), &["model.safetensors", "a directory"]);
    std::fs::remove_dir(&weights).unwrap();
    let other = m.path("other.safetensors");
    std::os::unix::fs::symlink(&other, &weights).unwrap();
    std::os::unix::fs::symlink(&weights, &other).unwrap();
    assert_refused(&generate_one(&m), &["model.safetensors", "symbolic links"]);
}

#[test]
fn an_index_of_200000_shards_is_handled_in_linear_time() {
    let m = Scratch::demo_llm("index");
    std::fs::remove_file(m.path("model.safetensors")).unwrap();
    let map: serde_json::Map<String, serde_json::Value> = (0..200_000)
        .map(|i| (format!("t{i}"), format!("shard-{i}.safetensors").into()))
        .collect();
    let index = serde_json::json!({ "weight_map": map });
    std::fs::write(m.path("model.safetensors.index.json"), index.to_string()).unwrap();
    let start = Instant::now();
    let out = generate_one(&m);
    // Quadratic de-duplication took 83 s here; a linear pass takes well under one.
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert_refused(&out, &["shard-"]);
}

// ---- silent NaN ----

#[test]
fn non_finite_noise_and_timesteps_are_refused() {
    let m = Scratch::digits("nan");
    let noise = m.path("noise.safetensors");
    let mut values = vec![0.5f32; 2 * 16 * 16];
    values[7] = f32::NAN;
    tessera::io::write_tensor_f32(&noise, "sample", &[2, 1, 16, 16], &values).unwrap();
    let out = run(&sample_args(
        &m.0,
        &["--init-noise", noise.to_str().unwrap()],
    ));
    assert_refused(&out, &["non-finite", "index 7", "--allow-nonfinite"]);
    // Finite but huge: the UNet's output overflows at the first step, which the error names;
    // --allow-nonfinite writes the result all the same.
    let huge = m.path("huge.safetensors");
    tessera::io::write_tensor_f32(&huge, "sample", &[2, 1, 16, 16], &[3e38; 512]).unwrap();
    let png = m.path("huge.png");
    let out = run(&sample_args(
        &m.0,
        &[
            "--init-noise",
            huge.to_str().unwrap(),
            "--out",
            png.to_str().unwrap(),
        ],
    ));
    assert_refused(
        &out,
        &["after step 1 of 2", "UNet output", "--allow-nonfinite"],
    );
    assert!(!png.exists());
    let out = run(&sample_args(
        &m.0,
        &[
            "--init-noise",
            huge.to_str().unwrap(),
            "--out",
            png.to_str().unwrap(),
            "--allow-nonfinite",
        ],
    ));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(png.exists());
    values[7] = 0.5;
    tessera::io::write_tensor_f32(&noise, "sample", &[2, 1, 16, 16], &values).unwrap();
    for t in ["nan", "inf", "1e40", "-1"] {
        let out = unet_eps(&m, t, &noise);
        assert_refused(&out, &["--timestep"]);
    }
}

#[test]
fn configs_that_would_make_nan_are_refused_by_key() {
    for (file, key, value) in [
        ("config.json", "mid_block_scale_factor", "0"),
        ("config.json", "norm_eps", "-1"),
        ("scheduler_config.json", "clip_sample_range", "-1"),
        ("scheduler_config.json", "beta_start", "1e-20"),
    ] {
        let m = Scratch::digits("nanconfig");
        m.set(file, key, value);
        if key == "beta_start" {
            m.set(file, "beta_end", "1e-20");
            m.set(file, "beta_schedule", "\"linear\"");
        }
        let out = run_in(&m.0, &sample_args(&m.0, &["--count", "1"]), &[]);
        assert_refused(&out, &[file, key]);
    }
    let m = Scratch::demo_llm("eps");
    m.set("config.json", "rms_norm_eps", "1e300");
    let out = generate_one(&m);
    assert_refused(&out, &["rms_norm_eps"]);
}

// ---- config values validated at parse time ----

#[test]
fn out_of_range_config_values_name_their_key() {
    for (key, value) in [
        ("max_position_embeddings", "0"),
        ("rms_norm_eps", "-0.5"),
        ("num_attention_heads", "0"),
        ("vocab_size", "0"),
        ("eos_token_id", "100000"),
    ] {
        let m = Scratch::demo_llm("range");
        m.set("config.json", key, value);
        let out = generate_one(&m);
        assert_refused(&out, &["config.json", key.split('_').next().unwrap()]);
    }
    let m = Scratch::demo_llm("window");
    m.set("config.json", "architectures", r#"["MistralForCausalLM"]"#);
    m.set("config.json", "sliding_window", "0");
    let out = generate_one(&m);
    assert_refused(&out, &["sliding_window"]);
    // 70 levels: 1 << 69 wrapped in release builds.
    let m = Scratch::digits("levels");
    m.set(
        "config.json",
        "block_out_channels",
        &format!("{:?}", vec![32; 70]),
    );
    m.set(
        "config.json",
        "down_block_types",
        &format!("{:?}", vec!["DownBlock2D"; 70]),
    );
    m.set(
        "config.json",
        "up_block_types",
        &format!("{:?}", vec!["UpBlock2D"; 70]),
    );
    let out = run(&sample_args(&m.0, &["--count", "1"]));
    assert_refused(&out, &["down blocks", "out of range"]);
}

// ---- messages that say what is wrong ----

#[test]
fn a_bogus_backend_is_named() {
    let out = run_in(
        &std::env::temp_dir(),
        &["info"],
        &[("WGPU_BACKEND", "bogus")],
    );
    assert_refused(&out, &["WGPU_BACKEND=\"bogus\"", "vulkan"]);
}

#[test]
fn a_config_with_only_model_type_is_accepted() {
    let m = Scratch::demo_llm("modeltype");
    m.remove_key("config.json", "architectures");
    let out = run(&[
        "generate",
        "--model",
        m.0.to_str().unwrap(),
        "--tokens",
        "1,2,3",
        "--max-tokens",
        "2",
        "--temperature",
        "0",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    m.set("config.json", "model_type", "\"gpt2\"");
    let out = generate_one(&m);
    assert_refused(&out, &["model_type", "gpt2"]);
}

// ---- the command line ----

#[test]
fn generate_stops_quietly_when_its_reader_goes_away() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "generate",
            "--prompt",
            "def f(x):",
            "--max-tokens",
            "200",
            "--seed",
            "1",
        ])
        .env(
            "TESSERA_TUNE_CACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability-tuning.json"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read five bytes and hang up, as `| head -c 5` does.
    let mut stdout = child.stdout.take().unwrap();
    let mut five = [0u8; 5];
    std::io::Read::read_exact(&mut stdout, &mut five).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn the_noise_batch_is_the_count_and_only_asked_outputs_are_written() {
    let m = Scratch::digits("outputs");
    let noise = m.path("noise.safetensors");
    tessera::io::write_tensor_f32(&noise, "sample", &[2, 1, 16, 16], &vec![0.1; 512]).unwrap();
    let raw = m.path("raw.safetensors");
    let work = m.path("work");
    std::fs::create_dir(&work).unwrap();
    let out = run_in(
        &work,
        &sample_args(
            &m.0,
            &[
                "--init-noise",
                noise.to_str().unwrap(),
                "--out-raw",
                raw.to_str().unwrap(),
            ],
        ),
        &[],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let (shape, _) = tessera::io::read_tensor_f32(&raw, "sample").unwrap();
    assert_eq!(shape, vec![2, 1, 16, 16]);
    // Nothing else, and no partial files: the working directory stays empty.
    let left: Vec<_> = std::fs::read_dir(&work).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    let siblings: Vec<String> = std::fs::read_dir(&m.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(siblings.is_empty(), "{siblings:?}");
    // A --count that disagrees with the noise is refused, naming both.
    let out = run(&sample_args(
        &m.0,
        &["--init-noise", noise.to_str().unwrap(), "--count", "3"],
    ));
    assert_refused(&out, &["--count", "[2, 1, 16, 16]"]);
}

// ---- GPU waits ----

#[test]
fn a_gpu_wait_past_its_limit_is_an_error_naming_the_operation() {
    let out = run_in(
        &std::env::temp_dir(),
        &["check", "--filter", "matmul f32 M=257 N=4096 K=1000 b:nk"],
        &[("TESSERA_GPU_TIMEOUT", "0.000001")],
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("did not finish within"), "{text}");
    assert_ne!(out.code, Some(0));
}
