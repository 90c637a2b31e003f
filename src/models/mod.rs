//! Models composed from the kernels: the LLaMA-family decoder.

pub mod llama;
