//! The diffusion UNet (diffusers' `UNet2DModel`) and its DDPM / DDIM samplers.

mod scheduler;

pub use scheduler::{
    Prediction, Scheduler, SchedulerConfig, SchedulerKind, Spacing, StepCoefficients, VarianceType,
};
