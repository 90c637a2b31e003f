//! tessera: hand-written WGSL compute kernels on wgpu, each checked against an f64 CPU
//! reference, and the harness that checks and benchmarks them on any adapter.
//!
//! Layers, bottom up: [`gpu`] (the only code that talks to wgpu), [`tensor`], [`kernels`]
//! (one module per shader), [`suite`] (the one list of kernel cases behind `tessera check`,
//! `tessera bench`, the tests and the benches).

pub mod error;
pub mod gpu;
pub mod graph;
pub mod io;
pub mod kernels;
pub mod models;
pub mod rng;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;
pub mod suite;
pub mod tensor;

pub use error::{Error, Result};
pub use gpu::Gpu;
pub use tensor::{DType, Tensor};
