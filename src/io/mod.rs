//! Reading model files: safetensors checkpoints (single or sharded, memory-mapped) and
//! Hugging Face / diffusers `config.json`. Everything read here is untrusted input: every
//! error names the file and what is wrong with it.

pub mod safetensors;

pub use safetensors::{Checkpoint, StoredDtype};
pub mod config;

pub use config::ConfigJson;
