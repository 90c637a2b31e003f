//! The UNet and its samplers against diffusers: each tests/fixtures/unet_* directory (made by
//! tools/make_fixtures.py) holds a tiny random UNet, one forward's output, a 10-step DDIM run
//! and a 5-step DDPM run whose noise draws were recorded.

mod common;

use std::path::{Path, PathBuf};

use tessera::models::diffusion::{
    self, ModelFiles, NoiseSource, Scheduler, SchedulerConfig, SchedulerKind, UNet,
};
use tessera::{DType, Result};

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("unet_")
        })
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 3);
    dirs
}

struct Expected {
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    timestep: i64,
}

impl Expected {
    fn read(dir: &Path) -> Expected {
        let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors = Vec::new();
        let mut timestep = 0;
        for (name, view) in file.tensors() {
            if name == "timestep" {
                timestep = i64::from_le_bytes(view.data()[..8].try_into().unwrap());
                continue;
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            tensors.push((name, view.shape().to_vec(), values));
        }
        Expected { tensors, timestep }
    }

    fn get(&self, name: &str) -> &[f32] {
        &self.tensors.iter().find(|(n, _, _)| n == name).unwrap().2
    }
}

/// The noise diffusers drew, step by step.
struct Recorded<'a> {
    steps: &'a [f32],
}

impl NoiseSource for Recorded<'_> {
    fn noise(&mut self, step: usize, len: usize) -> Result<Vec<f32>> {
        Ok(self.steps[step * len..(step + 1) * len].to_vec())
    }
}

#[test]
fn unet_forward_and_samplers_match_diffusers_in_f32() {
    let gpu = common::gpu();
    for dir in fixtures() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let want = Expected::read(&dir);
        let files = ModelFiles::locate(&dir).unwrap();
        let unet =
            UNet::load(&gpu, &files.unet_dir, DType::F32).unwrap_or_else(|e| panic!("{name}: {e}"));
        let config = SchedulerConfig::read(&files.scheduler_config).unwrap();

        let out = diffusion::forward(&unet, 2, want.get("input"), want.timestep as f64).unwrap();
        let rel = relative_l2(&out, want.get("output"));
        assert!(rel < 1e-3, "{name}: forward relative L2 error {rel:e}");
        eprintln!("{name}: forward relative L2 {rel:.1e}");

        let ddim = Scheduler::new(config.clone(), Some(SchedulerKind::Ddim), 10, 0.0).unwrap();
        let mut no_noise = diffusion::GaussianNoise::new(0);
        let got = diffusion::sample(
            &unet,
            &ddim,
            2,
            want.get("ddim_noise"),
            &mut no_noise,
            true,
            |_, _| {},
        )
        .unwrap();
        let rel = relative_l2(&got, want.get("ddim_final"));
        assert!(rel < 2e-3, "{name}: 10-step DDIM relative L2 error {rel:e}");
        eprintln!("{name}: 10-step DDIM relative L2 {rel:.1e}");

        let mut ddpm_config = config;
        ddpm_config.kind = SchedulerKind::Ddpm;
        let ddpm = Scheduler::new(ddpm_config, None, 5, 0.0).unwrap();
        let mut recorded = Recorded {
            steps: want.get("ddpm_step_noise"),
        };
        let got = diffusion::sample(
            &unet,
            &ddpm,
            2,
            want.get("ddpm_init"),
            &mut recorded,
            true,
            |_, _| {},
        )
        .unwrap();
        let rel = relative_l2(&got, want.get("ddpm_final"));
        assert!(rel < 2e-3, "{name}: 5-step DDPM relative L2 error {rel:e}");
        eprintln!("{name}: 5-step DDPM relative L2 {rel:.1e}");
    }
}

use common::{FixtureCopy, relative_l2};

/// The error loading `dir` gives.
fn load_error(dir: &FixtureCopy) -> String {
    match UNet::load(&common::gpu(), &dir.0, DType::F32) {
        Ok(_) => panic!("{} loaded", dir.0.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_unsupported_block_type_is_named() {
    let dir = FixtureCopy::of("unet_attn", "block");
    dir.edit(
        "config.json",
        "\"AttnDownBlock2D\"",
        "\"CrossAttnDownBlock2D\"",
    );
    let err = load_error(&dir);
    assert!(
        err.contains("CrossAttnDownBlock2D") && err.contains("config.json"),
        "{err}"
    );
}

#[test]
fn an_unknown_config_key_is_named_not_ignored() {
    let dir = FixtureCopy::of("unet_attn", "key");
    dir.edit(
        "config.json",
        "\"act_fn\"",
        "\"resnet_skip_time_act\": true,\n  \"act_fn\"",
    );
    let err = load_error(&dir);
    assert!(err.contains("resnet_skip_time_act"), "{err}");
}

#[test]
fn weights_that_do_not_match_the_config_are_named() {
    let dir = FixtureCopy::of("unet_attn", "weights");
    dir.edit(
        "config.json",
        "\"layers_per_block\": 1",
        "\"layers_per_block\": 2",
    );
    let err = load_error(&dir);
    assert!(
        err.contains("down_blocks.0.resnets.1") && err.contains("missing"),
        "{err}"
    );
    let dir = FixtureCopy::of("unet_attn", "widths");
    dir.edit("config.json", "    16,\n    32", "    16,\n    48");
    let err = load_error(&dir);
    assert!(
        err.contains("has shape") || err.contains("does not divide"),
        "{err}"
    );
}

#[test]
fn bad_step_counts_are_refused() {
    let files = ModelFiles::locate(&fixtures()[0]).unwrap();
    let config = SchedulerConfig::read(&files.scheduler_config).unwrap();
    let err = Scheduler::new(config.clone(), None, 0, 0.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--steps 0"), "{err}");
    let err = Scheduler::new(config, None, 1001, 0.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("1000 training timesteps"), "{err}");
}

#[test]
fn initial_noise_of_the_wrong_length_is_refused() {
    let gpu = common::gpu();
    let files = ModelFiles::locate(&fixtures()[0]).unwrap();
    let unet = UNet::load(&gpu, &files.unet_dir, DType::F32).unwrap();
    let config = SchedulerConfig::read(&files.scheduler_config).unwrap();
    let scheduler = Scheduler::new(config, None, 2, 0.0).unwrap();
    let mut noise = diffusion::GaussianNoise::new(1);
    let err = diffusion::sample(
        &unet,
        &scheduler,
        2,
        &[0.0; 10],
        &mut noise,
        true,
        |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("initial noise"), "{err}");
}
