//! Embedding tessera in an application: load a LLaMA-family checkpoint, tokenize a prompt,
//! and stream the generated text through a callback.
//!
//!     cargo run --release --example generate -- [MODEL_DIR] [PROMPT]
//!
//! Without arguments it uses the bundled demo model (a small Llama trained on the Python
//! standard library).

use std::io::Write;
use std::path::PathBuf;

use tessera::io::{TextStream, Tokenizer};
use tessera::models::llama::{GenerateOptions, Llama, LoadOptions};
use tessera::models::sampling::SamplerConfig;
use tessera::{DType, Gpu};

fn main() -> tessera::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/stdlib-byte")
    });
    let prompt = args
        .next()
        .unwrap_or_else(|| "def read_config(path):".to_string());

    // The default adapter (or WGPU_ADAPTER_NAME / WGPU_BACKEND); f16 where the GPU has it.
    let gpu = Gpu::new(None)?;
    let dtype = if gpu.supports(DType::F16) {
        DType::F16
    } else {
        DType::F32
    };
    let mut model = Llama::load(
        &gpu,
        &dir,
        &LoadOptions {
            dtype,
            max_context: None,
            ..LoadOptions::default()
        },
    )?;
    let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;

    let ids = tokenizer.encode(&prompt)?;
    let options = GenerateOptions {
        max_tokens: 120,
        sampler: SamplerConfig {
            temperature: 0.7,
            top_k: None,
            top_p: Some(0.9),
            seed: 1,
        },
        ..GenerateOptions::default()
    };
    print!("{prompt}");
    let mut stream = TextStream::new(&tokenizer);
    let out = model.generate(&ids, &options, |token| {
        print!("{}", stream.push(token)?);
        std::io::stdout().flush().ok();
        Ok(())
    })?;
    println!("{}", stream.finish()?);
    eprintln!(
        "{} tokens at {:.1} tokens/s on {}",
        out.tokens.len(),
        out.tokens.len() as f64 / out.generate_seconds,
        gpu.report().name
    );
    Ok(())
}
