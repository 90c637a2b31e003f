//! The LLaMA-family decoder (Llama, Mistral, Qwen2): configuration, weights, forward pass,
//! generation.

mod batch;
mod config;
mod generate;
pub mod gguf;
mod model;
mod speculative;
pub mod train;
pub mod train_run;
mod weights;

pub use crate::io::gguf::is_gguf;
pub use batch::{Chunk, DEFAULT_BLOCK_SIZE, PagedCache, PagedOptions};
pub use config::{Architecture, LlamaConfig};
pub use generate::{GenerateOptions, Generation};
pub use model::{DEFAULT_MAX_CONTEXT, Llama, LoadOptions};
pub use speculative::SpeculativeStats;
pub use weights::expected_tensors;
