//! The sampling loop: start from Gaussian noise, and at each of the scheduler's timesteps run
//! the UNet and apply the step update on the GPU. Nothing is read back until the end.

use crate::error::{Error, Result, require_finite};
use crate::kernels::scheduler_step::{StepUniform, scheduler_step};
use crate::rng::Rng;
use crate::tensor::Tensor;

use super::{Scheduler, UNet};

/// Where the per-step Gaussian noise (DDPM, DDIM with η > 0) comes from.
pub trait NoiseSource {
    /// `len` values for step `step`.
    fn noise(&mut self, step: usize, len: usize) -> Result<Vec<f32>>;
}

/// Standard normal values from a seeded generator (Box–Muller).
pub struct GaussianNoise {
    rng: Rng,
}

impl GaussianNoise {
    pub fn new(seed: u64) -> Self {
        GaussianNoise {
            rng: Rng::new(seed),
        }
    }

    pub fn draw(&mut self, len: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(len + 1);
        while out.len() < len {
            let u1 = self.rng.uniform(f64::MIN_POSITIVE, 1.0);
            let u2 = self.rng.uniform(0.0, 1.0);
            let r = (-2.0 * u1.ln()).sqrt();
            let angle = 2.0 * std::f64::consts::PI * u2;
            out.push((r * angle.cos()) as f32);
            out.push((r * angle.sin()) as f32);
        }
        out.truncate(len);
        out
    }
}

impl NoiseSource for GaussianNoise {
    fn noise(&mut self, _step: usize, len: usize) -> Result<Vec<f32>> {
        Ok(self.draw(len))
    }
}

/// Runs the scheduler's steps on `batch` samples starting from `init`
/// (`[batch, channels, height, width]`, flattened) and returns the final sample (before it is
/// mapped to pixels). `on_step(done, total)` is called after each step.
///
/// With `check_finite`, the sample is read back after every step and a NaN or infinity is an
/// error naming the step (and timestep) where it first appeared, instead of a black image at
/// the end; the readback is one copy of the batch per step, small beside a UNet forward.
#[cfg(not(target_arch = "wasm32"))]
pub fn sample(
    unet: &UNet,
    scheduler: &Scheduler,
    batch: usize,
    init: &[f32],
    noise: &mut dyn NoiseSource,
    check_finite: bool,
    on_step: impl FnMut(usize, usize),
) -> Result<Vec<f32>> {
    crate::gpu::block_on(sample_async(
        unet,
        scheduler,
        batch,
        init,
        noise,
        check_finite,
        on_step,
    ))
}

/// [`sample`], awaited (in a browser: with `check_finite` each step's readback is awaited,
/// so the page stays responsive and can show `on_step`'s progress).
pub async fn sample_async(
    unet: &UNet,
    scheduler: &Scheduler,
    batch: usize,
    init: &[f32],
    noise: &mut dyn NoiseSource,
    check_finite: bool,
    mut on_step: impl FnMut(usize, usize),
) -> Result<Vec<f32>> {
    let gpu = unet.gpu();
    let shape = unet.sample_shape(batch);
    let len: usize = shape.iter().product();
    if init.len() != len {
        return Err(Error::Invalid(format!(
            "the initial noise holds {} values; {shape:?} needs {len}",
            init.len()
        )));
    }
    let run = unet.prepare(batch)?;
    run.sample.write_f32(init)?;
    let fresh = Tensor::empty(gpu, &shape, unet.dtype())?;
    fresh.write_f32(&vec![0.0; len])?;
    let coefficients = StepUniform::new(gpu, len)?;
    let update = scheduler_step(gpu, &run.sample, &run.output, &fresh, &coefficients)?;
    let steps = scheduler.timesteps();
    for (i, &t) in steps.iter().enumerate() {
        run.run(t as f64)?;
        let c = scheduler.coefficients(i);
        if c.noise_scale != 0.0 {
            fresh.write_f32(&noise.noise(i, len)?)?;
        }
        coefficients.set(gpu, &c)?;
        update.run(gpu)?;
        if check_finite {
            let values = run.sample.to_f32_async().await?;
            if values.iter().any(|v| !v.is_finite()) {
                // Which half of the step broke it.
                let model = run.output.to_f32_async().await?;
                let source = if model.iter().any(|v| !v.is_finite()) {
                    "the UNet output"
                } else {
                    "the scheduler update"
                };
                require_finite(&values, || {
                    format!(
                        "the sample after step {} of {} (timestep {t}; it came from {source})",
                        i + 1,
                        steps.len()
                    )
                })?;
            }
        }
        on_step(i + 1, steps.len());
    }
    run.sample.to_f32_async().await
}

/// One UNet forward: the model output for `input` (`[batch, channels, height, width]`) at
/// timestep `t`.
#[cfg(not(target_arch = "wasm32"))]
pub fn forward(unet: &UNet, batch: usize, input: &[f32], t: f64) -> Result<Vec<f32>> {
    let run = unet.prepare(batch)?;
    let expected: usize = unet.sample_shape(batch).iter().product();
    if input.len() != expected {
        return Err(Error::Invalid(format!(
            "the input holds {} values; {:?} needs {expected}",
            input.len(),
            unet.sample_shape(batch)
        )));
    }
    run.sample.write_f32(input)?;
    run.run(t)?;
    run.output.to_f32()
}
