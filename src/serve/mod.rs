//! Serving: many sequences at once. [`engine`] batches them continuously over a paged KV
//! cache.

pub mod engine;

pub use engine::{Engine, EngineOptions, Event, FinishReason, Request, Sink, StepReport};
