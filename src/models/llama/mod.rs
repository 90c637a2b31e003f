//! The LLaMA-family decoder (Llama, Mistral, Qwen2): configuration, weights, forward pass,
//! generation.

#[cfg(not(target_arch = "wasm32"))]
mod batch;
mod config;
mod generate;
pub mod gguf;
mod model;
#[cfg(not(target_arch = "wasm32"))]
mod speculative;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
#[cfg(not(target_arch = "wasm32"))]
pub mod train_run;
mod weights;

pub use crate::io::gguf::is_gguf;
#[cfg(not(target_arch = "wasm32"))]
pub use batch::{Chunk, DEFAULT_BLOCK_SIZE, PagedCache, PagedOptions};
pub use config::{Architecture, LlamaConfig};
pub use generate::{GenerateOptions, Generation};
pub use model::{DEFAULT_MAX_CONTEXT, Llama, LoadOptions};
#[cfg(not(target_arch = "wasm32"))]
pub use speculative::SpeculativeStats;
pub use weights::expected_tensors;
