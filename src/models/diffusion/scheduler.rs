//! DDPM and DDIM samplers, configured from a diffusers `scheduler_config.json`.
//!
//! Every step of both is one linear update of the whole batch,
//! `prev = a_x0·clip(x0) + a_sample·x + a_eps·eps + noise_scale·z`, with
//! `x0 = k_sample·x + k_model·m` and `eps = e_sample·x + e_model·m` (x the current sample, m
//! the UNet output, z fresh Gaussian noise). [`Scheduler::coefficients`] works out the
//! coefficients of a step on the host in f64 (following the DDPM and DDIM papers as diffusers
//! implements them); the GPU applies them (`kernels::scheduler_step`).

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::ConfigJson;
pub use crate::kernels::scheduler_step::StepCoefficients;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedulerKind {
    Ddpm,
    Ddim,
}

impl std::str::FromStr for SchedulerKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ddpm" => Ok(SchedulerKind::Ddpm),
            "ddim" => Ok(SchedulerKind::Ddim),
            other => Err(Error::Invalid(format!(
                "unknown scheduler {other:?}: ddpm or ddim"
            ))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prediction {
    Epsilon,
    Sample,
    VPrediction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarianceType {
    FixedSmall,
    FixedLarge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spacing {
    Leading,
    Trailing,
    Linspace,
}

/// The contents of `scheduler_config.json` (diffusers' defaults for absent keys).
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// The class in the file (`--scheduler` may override it).
    pub kind: SchedulerKind,
    pub betas: Vec<f64>,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    pub prediction: Prediction,
    pub variance_type: VarianceType,
    pub set_alpha_to_one: bool,
    pub steps_offset: usize,
    pub spacing: Spacing,
}

impl SchedulerConfig {
    pub fn read(path: &Path) -> Result<SchedulerConfig> {
        SchedulerConfig::from_json(&ConfigJson::read(path)?)
    }

    pub fn from_json(c: &ConfigJson) -> Result<SchedulerConfig> {
        let kind = match c.opt_str("_class_name")? {
            None | Some("DDPMScheduler") => SchedulerKind::Ddpm,
            Some("DDIMScheduler") => SchedulerKind::Ddim,
            Some(other) => {
                return Err(c.error(format!(
                    "scheduler {other:?} is not supported; tessera runs DDPMScheduler and \
                     DDIMScheduler"
                )));
            }
        };
        for key in ["thresholding", "rescale_betas_zero_snr"] {
            if c.bool_or(key, false)? {
                return Err(c.error(format!("{key} is not supported")));
            }
        }
        let steps = c.in_range(
            "num_train_timesteps",
            c.opt_usize("num_train_timesteps")?.unwrap_or(1000),
            1..=MAX_TRAIN_TIMESTEPS,
        )?;
        let betas = match c.get("trained_betas") {
            Some(serde_json::Value::Array(values)) if values.len() > MAX_TRAIN_TIMESTEPS => {
                return Err(c.error(format!(
                    "trained_betas holds {} values, more than the {MAX_TRAIN_TIMESTEPS} \
                     timesteps tessera accepts",
                    values.len()
                )));
            }
            Some(serde_json::Value::Array(values)) => values
                .iter()
                .map(|v| {
                    v.as_f64()
                        .ok_or_else(|| c.error("trained_betas must be numbers"))
                })
                .collect::<Result<Vec<f64>>>()?,
            Some(_) => return Err(c.error("trained_betas must be a list of numbers")),
            None => {
                let start = c.opt_f64("beta_start")?.unwrap_or(0.0001);
                let end = c.opt_f64("beta_end")?.unwrap_or(0.02);
                let schedule = c.opt_str("beta_schedule")?.unwrap_or("linear");
                beta_schedule(schedule, start, end, steps).map_err(|e| c.error(e))?
            }
        };
        if betas.is_empty() || betas.iter().any(|b| !(*b > 0.0 && *b < 1.0)) {
            return Err(c.error("every beta must lie in (0, 1)"));
        }
        // The steps divide by sqrt(1 - ᾱ_t): betas so small that ᾱ_t rounds to 1 would make
        // every sample NaN.
        let mut alpha_bar = 1.0;
        for (t, beta) in betas.iter().enumerate() {
            alpha_bar *= 1.0 - beta;
            if 1.0 - alpha_bar < MIN_NOISE_LEVEL {
                return Err(c.error(format!(
                    "the betas are too small: at timestep {t} the noise level 1 - ᾱ is \
                     {:e}, below {MIN_NOISE_LEVEL:e} (beta_start, beta_end or trained_betas)",
                    1.0 - alpha_bar
                )));
            }
        }
        let clip_sample_range = c.positive(
            "clip_sample_range",
            c.opt_f64("clip_sample_range")?.unwrap_or(1.0),
            1e6,
        )?;
        let steps_offset = c.in_range(
            "steps_offset",
            c.opt_usize("steps_offset")?.unwrap_or(0),
            0..=betas.len() - 1,
        )?;
        let prediction = match c.opt_str("prediction_type")?.unwrap_or("epsilon") {
            "epsilon" => Prediction::Epsilon,
            "sample" => Prediction::Sample,
            "v_prediction" => Prediction::VPrediction,
            other => return Err(c.error(format!("prediction_type {other:?} is not supported"))),
        };
        let variance_type = match c.opt_str("variance_type")?.unwrap_or("fixed_small") {
            "fixed_small" => VarianceType::FixedSmall,
            "fixed_large" => VarianceType::FixedLarge,
            other => return Err(c.error(format!("variance_type {other:?} is not supported"))),
        };
        let spacing = match c.opt_str("timestep_spacing")?.unwrap_or("leading") {
            "leading" => Spacing::Leading,
            "trailing" => Spacing::Trailing,
            "linspace" => Spacing::Linspace,
            other => return Err(c.error(format!("timestep_spacing {other:?} is not supported"))),
        };
        Ok(SchedulerConfig {
            kind,
            betas,
            clip_sample: c.bool_or("clip_sample", true)?,
            clip_sample_range,
            prediction,
            variance_type,
            set_alpha_to_one: c.bool_or("set_alpha_to_one", true)?,
            steps_offset,
            spacing,
        })
    }

    pub fn num_train_timesteps(&self) -> usize {
        self.betas.len()
    }
}

/// The most training timesteps a scheduler config may have (diffusers' models use 1000).
const MAX_TRAIN_TIMESTEPS: usize = 1_000_000;
/// The smallest noise level 1 - ᾱ_t accepted at any timestep: the updates divide by its
/// square root, in f32 on the GPU.
const MIN_NOISE_LEVEL: f64 = 1e-12;

fn beta_schedule(schedule: &str, start: f64, end: f64, steps: usize) -> Result<Vec<f64>, String> {
    let lerp = |a: f64, b: f64, i: usize| {
        if steps == 1 {
            a
        } else {
            a + (b - a) * i as f64 / (steps - 1) as f64
        }
    };
    match schedule {
        "linear" => Ok((0..steps).map(|i| lerp(start, end, i)).collect()),
        "scaled_linear" => Ok((0..steps)
            .map(|i| lerp(start.sqrt(), end.sqrt(), i).powi(2))
            .collect()),
        "squaredcos_cap_v2" => {
            let alpha_bar = |t: f64| {
                ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                    .cos()
                    .powi(2)
            };
            Ok((0..steps)
                .map(|i| {
                    let (t1, t2) = (i as f64 / steps as f64, (i + 1) as f64 / steps as f64);
                    (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999)
                })
                .collect())
        }
        other => Err(format!("beta_schedule {other:?} is not supported")),
    }
}

/// A sampler set up for a number of inference steps.
#[derive(Clone, Debug)]
pub struct Scheduler {
    pub config: SchedulerConfig,
    pub kind: SchedulerKind,
    alphas_cumprod: Vec<f64>,
    timesteps: Vec<usize>,
    eta: f64,
}

impl Scheduler {
    /// `steps` inference steps of `kind` (`None`: the class in the config); `eta` is DDIM's
    /// noise level (0: deterministic).
    pub fn new(
        config: SchedulerConfig,
        kind: Option<SchedulerKind>,
        steps: usize,
        eta: f64,
    ) -> Result<Scheduler> {
        let train = config.num_train_timesteps();
        if steps == 0 || steps > train {
            return Err(Error::Invalid(format!(
                "--steps {steps} must be between 1 and the {train} training timesteps"
            )));
        }
        if !(0.0..=1.0).contains(&eta) {
            return Err(Error::Invalid(format!(
                "--eta {eta} must be between 0 and 1"
            )));
        }
        let mut product = 1.0;
        let alphas_cumprod = config
            .betas
            .iter()
            .map(|b| {
                product *= 1.0 - b;
                product
            })
            .collect();
        let timesteps = timesteps(config.spacing, train, steps, config.steps_offset);
        if let Some(&bad) = timesteps.iter().find(|&&t| t >= train) {
            return Err(Error::Invalid(format!(
                "steps_offset {} puts timestep {bad} past the {train} training timesteps",
                config.steps_offset
            )));
        }
        Ok(Scheduler {
            kind: kind.unwrap_or(config.kind),
            config,
            alphas_cumprod,
            timesteps,
            eta,
        })
    }

    /// The timesteps of the steps, in the order they run (descending).
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// Whether step `i` adds noise (which must then be drawn for it).
    pub fn noisy(&self, i: usize) -> bool {
        self.coefficients(i).noise_scale != 0.0
    }

    /// The update of step `i` (at `timesteps()[i]`).
    pub fn coefficients(&self, i: usize) -> StepCoefficients {
        let c = &self.config;
        let t = self.timesteps[i];
        let ac = &self.alphas_cumprod;
        let a_t = ac[t];
        let b_t = 1.0 - a_t;
        let (k_sample, k_model) = match c.prediction {
            Prediction::Epsilon => (1.0 / a_t.sqrt(), -(b_t / a_t).sqrt()),
            Prediction::Sample => (0.0, 1.0),
            Prediction::VPrediction => (a_t.sqrt(), -b_t.sqrt()),
        };
        let clip = c.clip_sample.then_some(c.clip_sample_range);
        let none = StepCoefficients {
            k_sample,
            k_model,
            clip,
            a_x0: 0.0,
            a_sample: 0.0,
            a_eps: 0.0,
            e_sample: 0.0,
            e_model: 0.0,
            noise_scale: 0.0,
        };
        match self.kind {
            SchedulerKind::Ddpm => {
                // The previous timestep is the next one in the list (DDPMScheduler).
                let a_prev = self.timesteps.get(i + 1).map_or(1.0, |&p| ac[p]);
                let b_prev = 1.0 - a_prev;
                let current_alpha = a_t / a_prev;
                let current_beta = 1.0 - current_alpha;
                let variance = match c.variance_type {
                    VarianceType::FixedSmall => (b_prev / b_t * current_beta).max(1e-20),
                    VarianceType::FixedLarge => current_beta,
                };
                StepCoefficients {
                    a_x0: a_prev.sqrt() * current_beta / b_t,
                    a_sample: current_alpha.sqrt() * b_prev / b_t,
                    noise_scale: if t > 0 { variance.sqrt() } else { 0.0 },
                    ..none
                }
            }
            SchedulerKind::Ddim => {
                let train = c.num_train_timesteps();
                let steps = self.timesteps.len();
                let prev = t as i64 - (train / steps) as i64;
                let a_prev = if prev >= 0 {
                    ac[prev as usize]
                } else if c.set_alpha_to_one {
                    1.0
                } else {
                    ac[0]
                };
                let b_prev = 1.0 - a_prev;
                let (e_sample, e_model) = match c.prediction {
                    Prediction::Epsilon => (0.0, 1.0),
                    Prediction::Sample => (1.0 / b_t.sqrt(), -(a_t / b_t).sqrt()),
                    Prediction::VPrediction => (b_t.sqrt(), a_t.sqrt()),
                };
                let variance = b_prev / b_t * (1.0 - a_t / a_prev);
                let std = self.eta * variance.sqrt();
                StepCoefficients {
                    a_x0: a_prev.sqrt(),
                    a_eps: (1.0 - a_prev - std * std).max(0.0).sqrt(),
                    e_sample,
                    e_model,
                    noise_scale: std,
                    ..none
                }
            }
        }
    }
}

/// diffusers' `set_timesteps` for the three spacings.
fn timesteps(spacing: Spacing, train: usize, steps: usize, offset: usize) -> Vec<usize> {
    match spacing {
        Spacing::Leading => {
            let ratio = train / steps;
            (0..steps).rev().map(|i| i * ratio + offset).collect()
        }
        Spacing::Trailing => {
            let ratio = train as f64 / steps as f64;
            (0..steps)
                .map(|i| (train as f64 - i as f64 * ratio).round() as usize - 1)
                .collect()
        }
        Spacing::Linspace => {
            let last = (train - 1) as f64;
            (0..steps)
                .rev()
                .map(|i| {
                    if steps == 1 {
                        0
                    } else {
                        (last * i as f64 / (steps - 1) as f64).round() as usize
                    }
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> SchedulerConfig {
        SchedulerConfig::from_json(&ConfigJson::parse("scheduler_config.json", text).unwrap())
            .unwrap()
    }

    #[test]
    fn timesteps_follow_each_spacing() {
        assert_eq!(
            timesteps(Spacing::Leading, 1000, 10, 0),
            [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
        );
        assert_eq!(timesteps(Spacing::Leading, 1000, 10, 1)[0], 901);
        assert_eq!(
            timesteps(Spacing::Trailing, 1000, 10, 0),
            [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
        );
        assert_eq!(timesteps(Spacing::Linspace, 1000, 4, 0), [999, 666, 333, 0]);
    }

    #[test]
    fn an_older_hub_file_takes_diffusers_defaults() {
        // google/ddpm-cifar10-32's scheduler file holds little more than this.
        let c = config(
            r#"{"_class_name": "DDPMScheduler", "beta_end": 0.02, "beta_schedule": "linear", "beta_start": 0.0001, "clip_sample": true, "variance_type": "fixed_small"}"#,
        );
        assert_eq!(c.num_train_timesteps(), 1000);
        assert_eq!(c.prediction, Prediction::Epsilon);
        assert!((c.betas[999] - 0.02).abs() < 1e-15);
    }

    #[test]
    fn ddim_with_eta_zero_is_deterministic_and_recovers_x0_at_the_end() {
        let c = config(r#"{"_class_name": "DDIMScheduler", "clip_sample": false}"#);
        let s = Scheduler::new(c, None, 10, 0.0).unwrap();
        let last = s.coefficients(9);
        assert_eq!(last.noise_scale, 0.0);
        // At the last step a_prev = 1: prev = x0.
        assert!((last.a_x0 - 1.0).abs() < 1e-12 && last.a_eps.abs() < 1e-6);
    }

    #[test]
    fn ddpm_adds_no_noise_at_t_zero() {
        let c = config("{}");
        let s = Scheduler::new(c, None, 1000, 0.0).unwrap();
        assert!(s.noisy(0));
        assert!(!s.noisy(999));
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        let c = config("{}");
        assert!(
            Scheduler::new(c.clone(), None, 0, 0.0)
                .unwrap_err()
                .to_string()
                .contains("--steps")
        );
        assert!(
            Scheduler::new(c, None, 1001, 0.0)
                .unwrap_err()
                .to_string()
                .contains("1000")
        );
        let bad = |text: &str| {
            SchedulerConfig::from_json(&ConfigJson::parse("s.json", text).unwrap())
                .unwrap_err()
                .to_string()
        };
        assert!(
            bad(r#"{"_class_name": "EulerDiscreteScheduler"}"#).contains("EulerDiscreteScheduler")
        );
        assert!(bad(r#"{"beta_schedule": "sigmoid"}"#).contains("sigmoid"));
        assert!(bad(r#"{"thresholding": true}"#).contains("thresholding"));
    }
}
