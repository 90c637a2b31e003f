//! Many requests at once without HTTP: the continuous-batching engine behind `tessera serve`,
//! driven step by step by the application. Each request's tokens arrive through its sink as
//! they are sampled; requests may join between any two steps.
//!
//!     cargo run --release --example batch -- [MODEL_DIR]

use std::path::PathBuf;
use std::sync::mpsc;

use tessera::Gpu;
use tessera::io::Tokenizer;
use tessera::models::llama::{Llama, LoadOptions};
use tessera::models::sampling::SamplerConfig;
use tessera::serve::{Engine, EngineOptions, Event, Request};

fn main() -> tessera::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/stdlib-byte")
        });
    let gpu = Gpu::new(None)?;
    let model = Llama::load(&gpu, &dir, &LoadOptions::default())?;
    let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
    let mut engine = Engine::new(model, EngineOptions::default())?;

    let prompts = ["def parse(", "class Cache:", "import os\n", "for line in"];
    let (events, received) = mpsc::channel::<(usize, Event)>();
    for (i, prompt) in prompts.iter().enumerate() {
        let request = Request {
            prompt: tokenizer.encode(prompt)?,
            max_tokens: 40,
            sampler: SamplerConfig {
                temperature: 0.7,
                top_p: Some(0.9),
                seed: i as u64,
                ..SamplerConfig::default()
            },
            stop_at_eos: true,
        };
        let events = events.clone();
        // The sink answers whether anyone still listens; `false` cancels the request.
        engine.submit(request, Box::new(move |e| events.send((i, e)).is_ok()))?;
    }
    let mut tokens: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
    while !engine.is_idle() {
        let step = engine.step()?;
        eprintln!("step: {} sequences, {} rows", step.sequences, step.rows);
        for (i, event) in received.try_iter() {
            match event {
                Event::Token(t) => tokens[i].push(t),
                Event::Finished { reason, .. } => eprintln!("request {i}: {}", reason.as_str()),
                Event::Failed(e) => eprintln!("request {i} failed: {e}"),
            }
        }
    }
    for (prompt, ids) in prompts.iter().zip(&tokens) {
        println!("--- {prompt:?}\n{prompt}{}", tokenizer.decode(ids)?);
    }
    Ok(())
}
