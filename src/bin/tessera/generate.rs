//! `tessera generate`.

use tessera::gpu::Gpu;
use tessera::io::{TextStream, Tokenizer, write_rows_f32};
use tessera::models::llama::{GenerateOptions, Llama, LoadOptions};
use tessera::models::sampling::SamplerConfig;
use tessera::{DType, Error, Result};

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["prompt", "tokens"]))]
pub struct GenerateArgs {
    /// Model directory: config.json, *.safetensors, tokenizer.json (default: the bundled
    /// demo model in assets/models/).
    #[arg(long, value_name = "DIR")]
    model: Option<std::path::PathBuf>,
    /// Text to continue (tokenised with the model's tokenizer.json).
    #[arg(long)]
    prompt: Option<String>,
    /// Token ids to continue, used exactly as given: "1,5,9".
    #[arg(long, value_delimiter = ',')]
    tokens: Option<Vec<u32>>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// 0 for greedy decoding.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    #[arg(long)]
    top_k: Option<usize>,
    #[arg(long, default_value_t = 0.9)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Element type of weights and activations (f16 needs SHADER_F16).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"])]
    dtype: String,
    /// Quantize a safetensors model's weights at load: q8_0 (every weight Q8_0), q4_0 or
    /// q4_k (projections and embedding in Q4_0 / Q4_K, the output in Q6_K), kept packed.
    #[arg(long, value_parser = ["q8_0", "q4_0", "q4_k"])]
    quant: Option<String>,
    /// KV-cache positions (default: the model's context, at most 4096).
    #[arg(long)]
    max_context: Option<usize>,
    /// Print one JSON object (tokens, text, stats) instead of streaming text.
    #[arg(long)]
    json: bool,
    /// Write the logits that chose each token to a safetensors file (tensor "logits").
    #[arg(long, value_name = "FILE")]
    dump_logits: Option<std::path::PathBuf>,
    /// Print prompt and generation speed (tokens/s) to stderr.
    #[arg(long)]
    stats: bool,
    /// Afterwards, time each kernel of one decode step and print the table to stderr.
    #[arg(long)]
    profile: bool,
    /// Speculative decoding: this smaller model (same vocabulary) drafts tokens that the
    /// model verifies several at a time. Greedy output is unchanged; --stats prints the
    /// acceptance rate.
    #[arg(long, value_name = "PATH")]
    draft: Option<std::path::PathBuf>,
    /// Tokens the draft proposes per verifying pass.
    #[arg(long, default_value_t = 4, requires = "draft")]
    draft_tokens: usize,
    /// Quantize the draft model at load (q8_0, q4_0, q4_k).
    #[arg(long, value_parser = ["q8_0", "q4_0", "q4_k"], requires = "draft")]
    draft_quant: Option<String>,
}

/// The demo model `generate` uses when no `--model` is given.
fn bundled_model() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/stdlib-byte")
}

/// Standard output for streamed text: a closed pipe (the reader exited) is remembered and
/// ends the output instead of panicking; other write errors are errors.
#[derive(Default)]
struct Output {
    closed: bool,
}

impl Output {
    fn write(&mut self, text: &str) -> Result<()> {
        use std::io::Write;
        if self.closed {
            return Err(Error::Invalid("standard output was closed".into()));
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Err(Error::Invalid("standard output was closed".into()))
            }
            Err(e) => Err(Error::Io {
                path: "standard output".into(),
                source: e,
            }),
        }
    }
}

pub fn generate(adapter: Option<&str>, args: &GenerateArgs) -> Result<bool> {
    let dir = args.model.clone().unwrap_or_else(bundled_model);
    let gguf = tessera::models::llama::is_gguf(&dir);
    if !gguf && !tessera::io::files::exists(&dir.join("config.json")) {
        return Err(Error::Invalid(format!(
            "{} is not a model directory (no config.json) or a .gguf file{}",
            dir.display(),
            if args.model.is_none() {
                "; pass --model DIR"
            } else {
                ""
            }
        )));
    }
    let tokenizer = Tokenizer::for_model(&dir)?;
    let prompt = match (&args.tokens, &args.prompt) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) => match &tokenizer {
            Some(t) => t.encode(text)?,
            None => {
                return Err(Error::Invalid(format!(
                    "{} has no tokenizer ({}): give the prompt as --tokens",
                    dir.display(),
                    if gguf {
                        "none in its metadata, no tokenizer.json beside it"
                    } else {
                        "no tokenizer.json"
                    }
                )));
            }
        },
        (None, None) => unreachable!("clap requires one of the two"),
    };
    if prompt.is_empty() {
        return Err(Error::Invalid("the prompt has no tokens".into()));
    }
    let gpu = Gpu::new(adapter)?;
    super::kernels::tune_if_needed(&gpu)?;
    let options = LoadOptions {
        dtype: args.dtype.parse::<DType>()?,
        max_context: args.max_context,
        quantize: args.quant.as_deref().map(str::parse).transpose()?,
        ..LoadOptions::default()
    };
    let mut model = Llama::load(&gpu, &dir, &options)?;
    let mut draft = match &args.draft {
        Some(path) => {
            let options = LoadOptions {
                quantize: args.draft_quant.as_deref().map(str::parse).transpose()?,
                ..options.clone()
            };
            Some(Llama::load(&gpu, path, &options)?)
        }
        None => None,
    };
    let generate = GenerateOptions {
        max_tokens: args.max_tokens,
        sampler: SamplerConfig {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: Some(args.top_p),
            seed: args.seed,
        },
        stop_at_eos: true,
        keep_logits: args.dump_logits.is_some(),
    };
    let mut stream = tokenizer.as_ref().map(TextStream::new);
    let mut stdout = Output::default();
    if !args.json
        && let Some(text) = &args.prompt
    {
        // The continuation reads on from the prompt.
        stdout.write(text)?;
    }
    let on_token = |token| {
        if !args.json
            && let Some(stream) = stream.as_mut()
        {
            stdout.write(&stream.push(token)?)?;
        }
        Ok(())
    };
    let mut speculation = None;
    let generated = match draft.as_mut() {
        None => model.generate(&prompt, &generate, on_token),
        Some(draft) => model
            .generate_speculative(draft, args.draft_tokens, &prompt, &generate, on_token)
            .map(|(out, stats)| {
                speculation = Some(stats);
                out
            }),
    };
    // A reader that went away (`| head`) ends the generation quietly.
    if stdout.closed {
        return Ok(true);
    }
    let out = generated?;
    let text = match &tokenizer {
        Some(t) => t.decode(&out.tokens)?,
        None => String::new(),
    };
    let prompt_rate = out.prompt_tokens_per_second();
    let decode_rate = out.generation_tokens_per_second();
    if args.json {
        let json = serde_json::json!({
            "tokens": out.tokens,
            "text": text,
            "prompt_tokens": out.prompt_tokens,
            "stop": out.stop,
            "prompt_tokens_per_second": prompt_rate,
            "generation_tokens_per_second": decode_rate,
        });
        let mut json = json;
        if let Some(s) = speculation {
            json["draft"] = serde_json::json!({
                "drafted": s.drafted,
                "accepted": s.accepted,
                "acceptance_rate": s.acceptance_rate(),
                "target_passes": s.target_passes,
            });
        }
        stdout.write(&format!("{json}\n"))?;
    } else if let Some(stream) = stream.as_mut() {
        stdout.write(&format!("{}\n", stream.finish()?))?;
    } else {
        let ids: Vec<String> = out.tokens.iter().map(u32::to_string).collect();
        stdout.write(&format!("{}\n", ids.join(",")))?;
    }
    if stdout.closed {
        return Ok(true);
    }
    if let Some(path) = &args.dump_logits {
        write_rows_f32(path, "logits", &out.logits)?;
    }
    if args.stats {
        eprintln!(
            "prompt: {} tokens in {:.3} s ({prompt_rate:.1} tokens/s); generation: {} tokens \
             in {:.3} s ({decode_rate:.1} tokens/s); stopped at {}; {}",
            out.prompt_tokens,
            out.prompt_seconds,
            out.tokens.len(),
            out.generate_seconds,
            out.stop,
            gpu.report().summary()
        );
        if let Some(s) = speculation {
            eprintln!(
                "draft: {} of {} drafted tokens accepted (acceptance rate {:.1}%), {} target \
                 passes for {} tokens",
                s.accepted,
                s.drafted,
                100.0 * s.acceptance_rate(),
                s.target_passes,
                out.tokens.len()
            );
        }
    }
    if args.profile {
        let times = model.profile_decode(5)?;
        crate::print_profile(
            &format!("one decode step at position {}", model.position()),
            &times,
        );
    }
    Ok(true)
}
