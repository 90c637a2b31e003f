//! Models composed from the kernels: the LLaMA-family decoder with token sampling, and the
//! diffusion UNet with its samplers.

pub mod diffusion;
pub mod kv_blocks;
pub mod llama;
pub mod sampling;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
