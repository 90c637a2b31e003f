//! Models composed from the kernels: the LLaMA-family decoder, and token sampling.

pub mod llama;
pub mod sampling;
