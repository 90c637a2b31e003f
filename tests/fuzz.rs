//! Mutation fuzzing of every parser of untrusted model files, on stable Rust: start from the
//! repository's own fixtures, mutate bytes and JSON values, and require an `Err` or a success,
//! never a panic, an abort or a runaway allocation (the test binary runs under an address-space
//! cap, so an allocation sized from a mutated field aborts it and fails the run).
//!
//! GGUF files are fuzzed too (reader and dequantization of every tensor).
//!
//! `cargo test` runs `TESSERA_FUZZ_CASES` cases per parser (default 2,000: 10⁴ in all);
//! `tools/fuzz.sh N` runs N per parser. Seeds are fixed per parser and printed, and a case that
//! panics is written to `target/fuzz-failures/` with its seed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use serde_json::Value;
use tessera::io::gguf::Gguf;
use tessera::io::{Checkpoint, ConfigJson, Tokenizer};
use tessera::kernels::quant::dequantize;
use tessera::models::diffusion::{Scheduler, SchedulerConfig, UNetConfig};
use tessera::models::llama::{LlamaConfig, expected_tensors};
use tessera::rng::Rng;

const DEFAULT_CASES: u64 = 2_000;
/// The address-space cap of the fuzzing process: far above what any fixture needs, far below
/// what a size taken from a mutated field would ask for.
const MEMORY_CAP_BYTES: u64 = 8 << 30;

fn cases() -> u64 {
    std::env::var("TESSERA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Caps this process's address space once (Linux): an allocation sized from input then fails
/// and aborts the process instead of exhausting the machine.
fn cap_memory() {
    #[cfg(target_os = "linux")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let limit = libc::rlimit {
                rlim_cur: MEMORY_CAP_BYTES,
                rlim_max: MEMORY_CAP_BYTES,
            };
            // SAFETY: setrlimit only reads the struct passed to it.
            let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
            assert_eq!(rc, 0, "setrlimit(RLIMIT_AS) failed");
        });
    }
}

// ---- mutations ----

struct Mutator {
    rng: Rng,
}

impl Mutator {
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.rng.next_u64() % n as u64) as usize
        }
    }

    /// One to four byte-level edits: flips, overwrites with interesting bytes, insertions,
    /// deletions, duplicated runs, truncation.
    fn bytes(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(out.len().max(1));
            match self.below(7) {
                0 if !out.is_empty() => out[at] ^= 1 << self.below(8),
                1 if !out.is_empty() => {
                    const INTERESTING: [u8; 10] =
                        [0, 1, 0x7f, 0x80, 0xff, b'"', b'9', b'-', b'{', b'['];
                    out[at] = INTERESTING[self.below(INTERESTING.len())];
                }
                2 => {
                    let b = self.rng.next_u64() as u8;
                    out.insert(at.min(out.len()), b);
                }
                3 if !out.is_empty() => {
                    let n = 1 + self.below(16).min(out.len() - at - 1);
                    out.drain(at..at + n);
                }
                4 if !out.is_empty() => {
                    let n = 1 + self.below(64).min(out.len() - at - 1);
                    let run: Vec<u8> = out[at..at + n].to_vec();
                    let to = self.below(out.len());
                    out.splice(to..to, run);
                }
                5 => out.truncate(at),
                _ => {
                    // Overwrite 8 bytes with an extreme little-endian integer (a length, an
                    // offset).
                    const WORDS: [u64; 6] = [0, 1, u32::MAX as u64, u64::MAX, 1 << 40, 1 << 62];
                    let word = WORDS[self.below(WORDS.len())].to_le_bytes();
                    for (i, b) in word.iter().enumerate() {
                        if let Some(slot) = out.get_mut(at + i) {
                            *slot = *b;
                        }
                    }
                }
            }
        }
        out
    }

    /// A value that stresses a parser: extremes, wrong types, empty and deep structures.
    fn value(&mut self) -> Value {
        let huge = serde_json::Number::from(u64::MAX);
        match self.below(16) {
            0 => Value::Null,
            1 => Value::Bool(self.below(2) == 0),
            2 => 0.into(),
            3 => (-1).into(),
            4 => Value::Number(huge),
            5 => 100_000_000.into(),
            6 => (1u64 << 40).into(),
            7 => 1e300.into(),
            8 => (-1e-300).into(),
            9 => 0.5.into(),
            10 => "".into(),
            11 => "x".repeat(1 + self.below(300)).into(),
            12 => Value::Array(Vec::new()),
            13 => Value::Array(vec![(1u64 << 40).into(); 1 + self.below(3)]),
            14 => Value::Object(serde_json::Map::new()),
            _ => {
                let mut deep = Value::from(1);
                for _ in 0..self.below(64) {
                    deep = Value::Array(vec![deep]);
                }
                deep
            }
        }
    }

    /// One to three edits of the JSON tree: a value replaced, a key removed or added, a list
    /// shortened or lengthened, a number scaled.
    fn json(&mut self, value: &Value) -> Value {
        let mut out = value.clone();
        for _ in 0..1 + self.below(3) {
            let mut paths = Vec::new();
            collect_paths(&out, &mut Vec::new(), &mut paths);
            let path = paths[self.below(paths.len())].clone();
            let replacement = self.value();
            let edit = self.below(5);
            let scale = [0.0, -1.0, 1e-30, 1e30, 2.0, 1e10][self.below(6)];
            let target = pointer_mut(&mut out, &path);
            match (edit, target) {
                (0, target) => *target = replacement,
                (1, Value::Object(map)) if !map.is_empty() => {
                    let key = map.keys().nth(self.below(map.len())).cloned().unwrap();
                    map.remove(&key);
                }
                (2, Value::Object(map)) => {
                    map.insert(format!("k{}", self.below(4)), replacement);
                }
                (3, Value::Array(items)) if !items.is_empty() => {
                    if self.below(2) == 0 {
                        items.truncate(self.below(items.len()));
                    } else {
                        let copy = items[self.below(items.len())].clone();
                        items.extend(std::iter::repeat_n(copy, 1 + self.below(8)));
                    }
                }
                (_, Value::Number(n)) => {
                    let scaled = n.as_f64().unwrap_or(1.0) * scale;
                    *n = serde_json::Number::from_f64(scaled)
                        .unwrap_or_else(|| serde_json::Number::from(0));
                }
                (_, target) => *target = replacement,
            }
        }
        out
    }
}

/// Every path (object keys and list indexes) in `value`, the root included.
fn collect_paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                prefix.push(k.clone());
                collect_paths(v, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            // Long lists (a tokenizer's vocabulary) contribute a few entries, not all.
            for (i, v) in items.iter().enumerate().take(8) {
                prefix.push(i.to_string());
                collect_paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn pointer_mut<'a>(value: &'a mut Value, path: &[String]) -> &'a mut Value {
    let mut current = value;
    for key in path {
        current = match current {
            Value::Object(map) => map.get_mut(key).expect("collected path"),
            Value::Array(items) => &mut items[key.parse::<usize>().expect("index")],
            _ => unreachable!("collected path"),
        };
    }
    current
}

// ---- the harness ----

thread_local! {
    /// Whether this thread is running a mutated case (whose panics are counted, not printed).
    static IN_CASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs, once, a panic hook that stays silent for panics inside mutated cases and
/// reports every other panic (the tests' own assertions) as usual.
fn quiet_panics_in_cases() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CASE.get() {
                report(info);
            }
        }));
    });
}

/// Runs `cases()` mutations of `seed_input` through `parse`; fails with the first input that
/// panicked (also saved under target/fuzz-failures/).
fn fuzz(name: &str, seed_input: &[u8], json: bool, parse: impl Fn(&[u8])) {
    cap_memory();
    let n = cases();
    let base_seed = 0x5eed_0000
        ^ name
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b));
    let parsed_json: Option<Value> = json.then(|| serde_json::from_slice(seed_input).unwrap());
    // The unmutated input must parse: otherwise the fuzzing explores nothing.
    let clean = catch_unwind(AssertUnwindSafe(|| parse(seed_input)));
    assert!(clean.is_ok(), "{name}: the seed input itself panics");
    quiet_panics_in_cases();
    let mut panics = Vec::new();
    for case in 0..n {
        let seed = base_seed.wrapping_add(case);
        let mut m = Mutator {
            rng: Rng::new(seed),
        };
        let input = match &parsed_json {
            Some(value) if m.below(3) != 0 => serde_json::to_vec(&m.json(value)).unwrap(),
            _ => m.bytes(seed_input),
        };
        IN_CASE.set(true);
        let outcome = catch_unwind(AssertUnwindSafe(|| parse(&input)));
        IN_CASE.set(false);
        if outcome.is_err() {
            let dir = repo().join("target/fuzz-failures");
            std::fs::create_dir_all(&dir).ok();
            let file = dir.join(format!("{name}-{seed:x}"));
            std::fs::write(&file, &input).ok();
            panics.push(format!("seed {seed:#x} ({})", file.display()));
            if panics.len() >= 5 {
                break;
            }
        }
    }
    eprintln!(
        "fuzz {name}: {n} cases from seed {base_seed:#x}, {} panics",
        panics.len()
    );
    assert!(
        panics.is_empty(),
        "{name}: inputs that panicked:\n{}",
        panics.join("\n")
    );
}

/// A scratch directory of this process for files the parsers must open.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-fuzz-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---- one test per parser ----

#[test]
fn safetensors_files() {
    let dir = scratch("safetensors");
    let file = dir.join("model.safetensors");
    let seed = read(&repo().join("tests/fixtures/llama_gqa/model.safetensors"));
    fuzz("safetensors", &seed, false, |bytes| {
        std::fs::write(&file, bytes).unwrap();
        if let Ok(ckpt) = Checkpoint::open_files("fuzz", std::slice::from_ref(&file)) {
            // Reading every tensor at its declared shape must stay in bounds too.
            for name in ckpt.names() {
                let shape = ckpt.shape(name).unwrap().to_vec();
                let _ = ckpt.read_f32(name, &shape);
            }
        }
    });
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn shard_indexes() {
    let dir = scratch("index");
    let fixture = repo().join("tests/fixtures/llama3_sharded");
    for entry in std::fs::read_dir(&fixture).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let index = dir.join("model.safetensors.index.json");
    let seed = read(&fixture.join("model.safetensors.index.json"));
    fuzz("shard-index", &seed, true, |bytes| {
        std::fs::write(&index, bytes).unwrap();
        let _ = Checkpoint::open_dir(&dir);
    });
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn llama_configs() {
    let seed = read(&repo().join("tests/fixtures/llama3_sharded/config.json"));
    fuzz("llama-config", &seed, true, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        if let Ok(c) = ConfigJson::parse("config.json", &text)
            && let Ok(config) = LlamaConfig::from_json(&c)
        {
            // What the loader builds from the config before it reads any weight.
            let _ = expected_tensors(&config);
            let _ = config.rope.inv_freq();
        }
    });
}

#[test]
fn unet_configs() {
    let seed = read(&repo().join("assets/models/digits-unet/config.json"));
    fuzz("unet-config", &seed, true, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        if let Ok(c) = ConfigJson::parse("config.json", &text)
            && let Ok(config) = UNetConfig::from_json(&c)
        {
            let _ = config.time_embed_dim();
        }
    });
}

#[test]
fn scheduler_configs() {
    let seed = read(&repo().join("assets/models/digits-unet/scheduler_config.json"));
    fuzz("scheduler-config", &seed, true, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        if let Ok(c) = ConfigJson::parse("scheduler_config.json", &text)
            && let Ok(config) = SchedulerConfig::from_json(&c)
        {
            let steps = config.num_train_timesteps().min(50);
            if let Ok(scheduler) = Scheduler::new(config, None, steps, 0.5) {
                for i in 0..scheduler.timesteps().len() {
                    let _ = scheduler.coefficients(i);
                }
            }
        }
    });
}

#[test]
fn tokenizers() {
    let dir = scratch("tokenizer");
    let file = dir.join("tokenizer.json");
    let seed = read(&repo().join("assets/models/stdlib-byte/tokenizer.json"));
    fuzz("tokenizer", &seed, true, |bytes| {
        std::fs::write(&file, bytes).unwrap();
        if let Ok(t) = Tokenizer::from_file(&file)
            && let Ok(ids) = t.encode("def f(x):\n    return x")
        {
            let _ = t.decode(&ids);
        }
    });
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn gguf_files() {
    let dir = scratch("gguf");
    let file = dir.join("model.gguf");
    let seed = read(&repo().join("tests/fixtures/gguf/tiny.gguf"));
    fuzz("gguf", &seed, false, |bytes| {
        std::fs::write(&file, bytes).unwrap();
        if let Ok(g) = Gguf::open(&file) {
            for t in g.tensors() {
                let _ = dequantize(t.ggml_type, g.data(t), t.elements() as usize);
            }
        }
    });
    std::fs::remove_dir_all(&dir).ok();
}
