//! The LLaMA-family decoder (Llama, Mistral, Qwen2): configuration, weights, forward pass,
//! generation.

mod config;

pub use config::{Architecture, LlamaConfig};
