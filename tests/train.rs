//! Training the byte-level decoder against PyTorch (tests/fixtures/train_lm, written by
//! tools/make_train_fixtures.py): the gradients of one batch against autograd, the same
//! gradients with checkpointing in less memory, and the loss of 200 AdamW steps against
//! torch.optim.AdamW's.

mod common;

use std::path::{Path, PathBuf};

use common::relative_l2;
use tessera::kernels::training::AdamW;
use tessera::models::llama::LlamaConfig;
use tessera::models::llama::train::{self, LmShape, LmTrainer, TokenWindows};
use tessera::models::train::{Optimizer, Schedule};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/train_lm")
}

struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    fn read() -> Reference {
        let path = fixture().join("reference.safetensors");
        Reference {
            bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }

    fn floats(&self, name: &str) -> Vec<f32> {
        let file = safetensors::SafeTensors::deserialize(&self.bytes).unwrap();
        let t = file.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    fn ints(&self, name: &str) -> Vec<u32> {
        let file = safetensors::SafeTensors::deserialize(&self.bytes).unwrap();
        let t = file.tensor(name).unwrap();
        t.data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
            .collect()
    }
}

fn trainer(batch: usize, seq: usize, checkpointing: bool) -> LmTrainer {
    let config = LlamaConfig::read(&fixture()).unwrap();
    let weights = train::read_weights(&config, &fixture()).unwrap();
    let shape = LmShape {
        batch,
        seq,
        checkpointing,
        dtype: tessera::DType::F32,
    };
    let adamw = AdamW {
        lr: 3e-3,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    LmTrainer::new(
        &common::gpu(),
        &config,
        &weights,
        shape,
        Optimizer::new(adamw, Some(1.0)),
    )
    .unwrap()
}

#[test]
fn gradients_match_autograd() {
    let reference = Reference::read();
    let (ids, targets) = (reference.ints("ids"), reference.ints("targets"));
    let want_loss = f64::from(reference.floats("loss")[0]);
    for checkpointing in [false, true] {
        let mut t = trainer(3, 21, checkpointing);
        let loss = t.compute_gradients(&ids, &targets).unwrap();
        assert!(
            ((loss - want_loss) / want_loss).abs() < 1e-5,
            "loss {loss} against autograd's {want_loss}"
        );
        let grads = t.gradients().unwrap();
        assert_eq!(
            grads.len(),
            21,
            "2 layers of 9 tensors, embeddings, norm, head"
        );
        for (name, got) in grads {
            let want = reference.floats(&format!("grad.{name}"));
            let err = relative_l2(&got, &want);
            assert!(
                err < 1e-4,
                "{name} (checkpointing {checkpointing}): relative L2 {err:.2e}"
            );
        }
    }
}

#[test]
fn checkpointing_gives_the_same_gradients_in_less_memory() {
    let corpus = std::fs::read(fixture().join("corpus.txt")).unwrap();
    let tokens: Vec<u32> = corpus.iter().map(|&b| u32::from(b)).collect();
    let (ids, targets) = TokenWindows::new(tokens, 48, 3).unwrap().next_batch(4);
    let mut plain = trainer(4, 48, false);
    let mut checkpointed = trainer(4, 48, true);
    let a = plain.compute_gradients(&ids, &targets).unwrap();
    let b = checkpointed.compute_gradients(&ids, &targets).unwrap();
    assert_eq!(a, b, "the recomputed forward pass gives the same loss");
    for ((name, x), (_, y)) in plain
        .gradients()
        .unwrap()
        .into_iter()
        .zip(checkpointed.gradients().unwrap())
    {
        assert_eq!(x, y, "{name}: recomputation changes no bit");
    }
    let (without, with) = (plain.scratch_bytes(), checkpointed.scratch_bytes());
    eprintln!("scratch: {without} bytes without checkpointing, {with} with");
    assert!(
        with < without,
        "checkpointing holds {with} bytes of intermediates, not less than {without}"
    );
}

#[test]
fn loss_curve_follows_pytorch_for_200_steps() {
    let reference = Reference::read();
    let want = reference.floats("curve");
    let corpus = std::fs::read(fixture().join("corpus.txt")).unwrap();
    let tokens: Vec<u32> = corpus.iter().map(|&b| u32::from(b)).collect();
    let mut windows = TokenWindows::new(tokens, 32, 0).unwrap();
    let mut t = trainer(4, 32, false);
    let schedule = Schedule {
        peak: 3e-3,
        warmup: 20,
        total: 200,
        floor: 0.1,
    };
    let mut worst = (0usize, 0.0f64);
    for (step, &want) in (1..=200u64).zip(&want) {
        let (ids, targets) = windows.next_batch(4);
        let (loss, update) = t.step(&ids, &targets, schedule.rate(step)).unwrap();
        assert!(!update.skipped, "step {step} skipped");
        let rel = ((loss - f64::from(want)) / f64::from(want)).abs();
        if rel > worst.1 {
            worst = (step as usize, rel);
        }
    }
    eprintln!("worst step {} off by {:.2e} (relative)", worst.0, worst.1);
    assert!(
        worst.1 < 0.01,
        "step {}'s loss is {:.2}% off PyTorch's",
        worst.0,
        worst.1 * 100.0
    );
}

/// Runs `tessera SUBCOMMAND ARGS...` and returns what it printed; fails the test if it fails.
fn tessera(subcommand: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg(subcommand)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{subcommand} {args:?} failed: {text}");
    text
}

fn train_lm(args: &[&str]) -> String {
    tessera("train-lm", args)
}

#[test]
fn train_lm_resumes_exactly_where_it_stopped() {
    let corpus = fixture().join("corpus.txt");
    let init = fixture();
    let tmp = std::env::temp_dir().join(format!("tessera-train-lm-{}", std::process::id()));
    let (straight, split) = (tmp.join("straight"), tmp.join("split"));
    let common = |out: &Path, steps: &str| -> Vec<String> {
        [
            "--data",
            corpus.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--steps",
            steps,
            "--batch",
            "2",
            "--seq",
            "24",
            "--warmup",
            "3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |args: Vec<String>| train_lm(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut first = common(&straight, "8");
    first.extend(["--init".to_string(), init.to_str().unwrap().to_string()]);
    run(first);
    let mut half = common(&split, "8");
    half.extend([
        "--init".to_string(),
        init.to_str().unwrap().to_string(),
        "--stop-at".to_string(),
        "5".to_string(),
    ]);
    run(half);
    let mut rest = common(&split, "8");
    rest.push("--resume".to_string());
    let said = run(rest);
    assert!(said.contains("steps 6..8"), "{said}");
    for file in ["model.safetensors", "optimizer.safetensors"] {
        let a = std::fs::read(straight.join(file)).unwrap();
        let b = std::fs::read(split.join(file)).unwrap();
        assert!(a == b, "{file}: 8 steps straight and 5 + 3 resumed differ");
    }
    let log = std::fs::read_to_string(split.join("loss.csv")).unwrap();
    assert_eq!(log.lines().count(), 9, "a header and 8 steps: {log}");
    // The checkpoint loads for inference.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["generate", "--model", split.to_str().unwrap()])
        .args([
            "--tokens",
            "100,101,102",
            "--max-tokens",
            "4",
            "--temperature",
            "0",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

mod unet {
    use super::*;
    use tessera::models::diffusion::train::{DdpmBatches, UNetTrainer};
    use tessera::models::diffusion::{SchedulerConfig, UNetConfig};

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/train_unet")
    }

    fn reference() -> Reference {
        let path = fixture().join("reference.safetensors");
        Reference {
            bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }

    fn trainer(batch: usize) -> UNetTrainer {
        let config = UNetConfig::read(&fixture().join("config.json")).unwrap();
        let checkpoint =
            tessera::io::Checkpoint::open_named(&fixture(), "diffusion_pytorch_model").unwrap();
        let adamw = AdamW {
            lr: 2e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-4,
        };
        UNetTrainer::new(
            &common::gpu(),
            config,
            &checkpoint,
            batch,
            Optimizer::new(adamw, Some(1.0)),
        )
        .unwrap()
    }

    #[test]
    fn unet_gradients_match_autograd() {
        let r = reference();
        let mut t = trainer(3);
        let loss = t
            .compute_gradients(&r.floats("x_t"), &r.floats("timesteps"), &r.floats("noise"))
            .unwrap();
        let want = f64::from(r.floats("loss")[0]);
        assert!(
            ((loss - want) / want).abs() < 1e-5,
            "loss {loss} against autograd's {want}"
        );
        let grads = t.gradients().unwrap();
        assert!(grads.len() > 50, "{} parameters", grads.len());
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let largest = grads
            .iter()
            .map(|(name, _)| norm(&r.floats(&format!("grad.{name}"))))
            .fold(0.0, f64::max);
        let mut worst = (String::new(), 0.0);
        for (name, got) in grads {
            let want = r.floats(&format!("grad.{name}"));
            if name.ends_with("to_k.bias") {
                // Zero in exact arithmetic (a query's softmax ignores what it adds to all of
                // its scores): both sides hold rounding noise, compared with the others' size.
                for (side, v) in [("tessera", &got), ("autograd", &want)] {
                    assert!(
                        norm(v) < 1e-6 * largest,
                        "{name}: {side}'s {:.2e} is not rounding noise next to {largest:.2e}",
                        norm(v)
                    );
                }
                continue;
            }
            let err = relative_l2(&got, &want);
            if err > worst.1 {
                worst = (name.clone(), err);
            }
            assert!(err < 1e-4, "{name}: relative L2 {err:.2e}");
        }
        eprintln!("worst gradient: {} at {:.2e}", worst.0, worst.1);
    }

    #[test]
    fn ddpm_loss_curve_follows_pytorch_for_200_steps() {
        let want = reference().floats("curve");
        let data = digits_8x8();
        let scheduler = SchedulerConfig::read(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("assets/models/digits-unet/scheduler_config.json"),
        )
        .unwrap();
        let mut batches = DdpmBatches::new(data, 64, &scheduler.betas, 0).unwrap();
        let mut t = trainer(8);
        let schedule = Schedule {
            peak: 2e-3,
            warmup: 20,
            total: 200,
            floor: 0.1,
        };
        let mut worst = (0usize, 0.0f64);
        for (step, &want) in (1..=200u64).zip(&want) {
            let b = batches.next_batch(8);
            let (loss, update) = t
                .step(&b.x_t, &b.timesteps, &b.noise, schedule.rate(step))
                .unwrap();
            assert!(!update.skipped, "step {step} skipped");
            let rel = ((loss - f64::from(want)) / f64::from(want)).abs();
            if rel > worst.1 {
                worst = (step as usize, rel);
            }
        }
        eprintln!("worst step {} off by {:.2e} (relative)", worst.0, worst.1);
        assert!(
            worst.1 < 0.01,
            "step {}'s loss is {:.2}% off PyTorch's",
            worst.0,
            worst.1 * 100.0
        );
    }

    /// assets/data/digits.safetensors's images scaled to [-1, 1].
    fn digits_8x8() -> Vec<f32> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/data/digits.safetensors");
        let checkpoint = tessera::io::Checkpoint::open_files("digits", &[path]).unwrap();
        checkpoint
            .read_f32("images", &[1797, 8, 8])
            .unwrap()
            .iter()
            .map(|v| v / 16.0 * 2.0 - 1.0)
            .collect()
    }
}

fn train_ddpm(args: &[&str]) -> String {
    tessera("train-ddpm", args)
}

#[test]
fn train_ddpm_resumes_exactly_and_writes_a_model_sample_loads() {
    let init = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/train_unet");
    let tmp = std::env::temp_dir().join(format!("tessera-train-ddpm-{}", std::process::id()));
    let (straight, split) = (tmp.join("straight"), tmp.join("split"));
    let args = |out: &Path, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "5",
            "--batch",
            "2",
            "--warmup",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: Vec<String>| train_ddpm(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let init = init.to_str().unwrap();
    run(args(&straight, &["--init", init]));
    run(args(&split, &["--init", init, "--stop-at", "3"]));
    let said = run(args(&split, &["--resume"]));
    assert!(said.contains("steps 4..5"), "{said}");
    for file in [
        "diffusion_pytorch_model.safetensors",
        "training.safetensors",
        "optimizer.safetensors",
    ] {
        let a = std::fs::read(straight.join(file)).unwrap();
        let b = std::fs::read(split.join(file)).unwrap();
        assert!(a == b, "{file}: 5 steps straight and 3 + 2 resumed differ");
    }
    // The moving average is what the model holds: not the weights being trained.
    assert_ne!(
        std::fs::read(split.join("diffusion_pytorch_model.safetensors")).unwrap(),
        std::fs::read(split.join("training.safetensors")).unwrap()
    );
    let png = tmp.join("samples.png");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["sample", "--model", split.to_str().unwrap()])
        .args(["--scheduler", "ddim", "--steps", "4", "--count", "2"])
        .args(["--out", png.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(png.is_file());
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn f16_training_skips_overflowing_steps_halves_the_scale_and_goes_on() {
    use tessera::models::train::LossScaler;
    let reference = Reference::read();
    let (ids, targets) = (reference.ints("ids"), reference.ints("targets"));
    let config = LlamaConfig::read(&fixture()).unwrap();
    let weights = train::read_weights(&config, &fixture()).unwrap();
    let shape = LmShape {
        batch: 3,
        seq: 21,
        checkpointing: false,
        dtype: tessera::DType::F16,
    };
    let adamw = AdamW {
        lr: 1e-3,
        ..AdamW::default()
    };
    let gpu = common::gpu();
    let start = 2f32.powi(40);
    let mut t = LmTrainer::new(
        &gpu,
        &config,
        &weights,
        shape,
        Optimizer::new(adamw, Some(1.0)),
    )
    .unwrap()
    .with_loss_scaling(LossScaler::new(start, 1000))
    .unwrap();
    let before = t.parameters()[0].value.to_f32().unwrap();
    // 2^40 times the loss's gradient is past f16's range: the first step must be skipped.
    let (first_loss, update) = t.step(&ids, &targets, 1e-3).unwrap();
    assert!(
        update.skipped,
        "a step with overflowing gradients was taken"
    );
    assert_eq!(t.loss_scale(), start / 2.0, "the scale halves on overflow");
    assert_eq!(t.optimizer.steps, 0, "a skipped step is not counted");
    assert_eq!(
        t.parameters()[0].value.to_f32().unwrap(),
        before,
        "a skipped step changes no weight"
    );
    let want = f64::from(reference.floats("loss")[0]);
    assert!(
        ((first_loss - want) / want).abs() < 2e-3,
        "the f16 forward pass's loss {first_loss} is far from f32 autograd's {want}"
    );
    // The scale comes down until the gradients fit, then training goes on.
    let (mut skipped, mut taken, mut last) = (1, 0, first_loss);
    for _ in 0..60 {
        let (loss, update) = t.step(&ids, &targets, 1e-3).unwrap();
        if update.skipped {
            skipped += 1;
        } else {
            taken += 1;
            last = loss;
        }
    }
    eprintln!(
        "{skipped} skipped, {taken} taken, scale {}, loss {first_loss:.4} -> {last:.4}",
        t.loss_scale()
    );
    assert!(taken >= 20, "only {taken} of 61 steps were taken");
    assert!(
        t.loss_scale() <= start / 2f32.powi(16),
        "the scale {} did not come down",
        t.loss_scale()
    );
    assert_eq!(
        t.loss_scale(),
        start / 2f32.powi(skipped),
        "one halving per skipped step"
    );
    assert_eq!(t.optimizer.steps, taken);
    assert!(
        last < first_loss - 0.5,
        "{taken} steps on one batch took the loss from {first_loss} to {last} only"
    );
}
