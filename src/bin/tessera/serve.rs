//! `tessera serve` and `tessera chat`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tessera::gpu::Gpu;
use tessera::io::{TextStream, Tokenizer};
use tessera::models::llama::{Llama, LoadOptions, PagedOptions};
use tessera::serve::template::{ChatTemplate, Message};
use tessera::serve::{EngineOptions, ServeOptions};
use tessera::{DType, Error, Result};

/// How the model is loaded (shared by serve and chat).
#[derive(clap::Args)]
pub struct ModelArgs {
    /// Model directory (config.json, *.safetensors, tokenizer.json) or .gguf file.
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// Element type of weights and activations (f16 needs SHADER_F16).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"])]
    dtype: String,
    /// Quantize a safetensors model's weights at load (q8_0, q4_0, q4_k).
    #[arg(long, value_parser = ["q8_0", "q4_0", "q4_k"])]
    quant: Option<String>,
    /// Positions one sequence may hold (default: the model's context, at most 4096).
    #[arg(long)]
    max_context: Option<usize>,
    /// A Jinja chat template file, instead of the model's own.
    #[arg(long, value_name = "FILE")]
    chat_template: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The model id clients see (default: the model's directory or file name).
    #[arg(long)]
    name: Option<String>,
    /// Sequences decoded together at most.
    #[arg(long, default_value_t = 16)]
    max_running: usize,
    /// Requests waiting for a place at most; more get 503.
    #[arg(long, default_value_t = 64)]
    max_waiting: usize,
    /// Prompt tokens fed per step at most (long prompts go in chunks of this).
    #[arg(long, default_value_t = 64)]
    chunk_tokens: usize,
    /// Positions per KV-cache block.
    #[arg(long, default_value_t = tessera::models::llama::DEFAULT_BLOCK_SIZE)]
    block_size: usize,
    /// KV-cache blocks (the memory budget; default: four full contexts).
    #[arg(long)]
    kv_blocks: Option<usize>,
    /// Tokens generated when a request gives no max_tokens.
    #[arg(long, default_value_t = 256)]
    default_max_tokens: usize,
    /// Seconds requests in flight may run on after SIGINT/SIGTERM before they are cancelled.
    #[arg(long, default_value_t = 30.0)]
    shutdown_grace: f64,
}

#[derive(clap::Args)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A system message that opens the conversation.
    #[arg(long)]
    system: Option<String>,
    /// Most tokens per reply.
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    /// 0 for greedy decoding.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    #[arg(long, default_value_t = 0.9)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// The model, its tokenizer and its chat template (or the one given).
fn open(
    adapter: Option<&str>,
    args: &ModelArgs,
) -> Result<(Llama, Tokenizer, Option<ChatTemplate>)> {
    let tokenizer = Tokenizer::for_model(&args.model)?.ok_or_else(|| {
        Error::Invalid(format!(
            "{} has no tokenizer (tokenizer.json, or a GGUF file's metadata)",
            args.model.display()
        ))
    })?;
    let template = match &args.chat_template {
        Some(file) => Some(template_file(file)?),
        None => ChatTemplate::for_model(&args.model)?,
    };
    let gpu = Gpu::new(adapter)?;
    super::kernels::tune_if_needed(&gpu)?;
    let options = LoadOptions {
        dtype: args.dtype.parse::<DType>()?,
        max_context: args.max_context,
        quantize: args.quant.as_deref().map(str::parse).transpose()?,
        ..LoadOptions::default()
    };
    let model = Llama::load(&gpu, &args.model, &options)?;
    Ok((model, tokenizer, template))
}

fn template_file(file: &Path) -> Result<ChatTemplate> {
    let source = tessera::io::files::read_text(file, "chat template", 1 << 20)?;
    ChatTemplate::new(source, "", "", &file.display().to_string())
}

pub fn serve(adapter: Option<&str>, args: &ServeArgs) -> Result<bool> {
    if !(args.shutdown_grace.is_finite() && args.shutdown_grace >= 0.0) {
        return Err(Error::Invalid(
            "--shutdown-grace must be 0 or more seconds".into(),
        ));
    }
    let (model, tokenizer, template) = open(adapter, &args.model)?;
    let engine = tessera::serve::Engine::new(
        model,
        EngineOptions {
            max_running: args.max_running,
            chunk_tokens: args.chunk_tokens,
            max_waiting: args.max_waiting,
            paged: PagedOptions {
                block_size: args.block_size,
                blocks: args.kv_blocks,
            },
        },
    )?;
    let name = args.name.clone().unwrap_or_else(|| {
        let path = args
            .model
            .model
            .canonicalize()
            .unwrap_or(args.model.model.clone());
        path.file_name()
            .map_or("model".into(), |n| n.to_string_lossy().into_owned())
    });
    let options = ServeOptions {
        host: args.host.clone(),
        port: args.port,
        model_name: name.clone(),
        default_max_tokens: args.default_max_tokens,
        shutdown_grace: Duration::from_secs_f64(args.shutdown_grace),
    };
    let chat = if template.is_some() {
        ""
    } else {
        " (no chat template: /v1/chat/completions refuses)"
    };
    tessera::serve::run(engine, tokenizer, template, &options, |address| {
        eprintln!("serving {name} on http://{address}/v1{chat}");
    })?;
    eprintln!("tessera serve: stopped");
    Ok(true)
}

pub fn chat(adapter: Option<&str>, args: &ChatArgs) -> Result<bool> {
    use std::io::{BufRead, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tessera::models::llama::GenerateOptions;
    use tessera::models::sampling::SamplerConfig;

    let (mut model, tokenizer, template) = open(adapter, &args.model)?;
    let template = template.ok_or_else(|| {
        Error::Invalid(format!(
            "{} has no chat template (chat_template.jinja, tokenizer_config.json or GGUF \
             metadata): pass --chat-template FILE",
            args.model.model.display()
        ))
    })?;
    // Ctrl-C stops the reply being written, not the chat.
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .map_err(|e| Error::Invalid(format!("cannot catch Ctrl-C: {e}")))?;
    let opening: Vec<Message> = args
        .system
        .iter()
        .map(|s| Message::new("system", s))
        .collect();
    let mut history = opening.clone();
    let mut turn = 0u64;
    eprintln!(
        "chat with {} — /reset clears the history, /exit (or Ctrl-D) ends, Ctrl-C stops a reply",
        args.model.model.display()
    );
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("> ");
        let Some(line) = lines.next() else { break };
        let line = line.map_err(|e| Error::Io {
            path: "standard input".into(),
            source: e,
        })?;
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history = opening.clone();
                eprintln!("(history cleared)");
                continue;
            }
            _ => {}
        }
        history.push(Message::new("user", line));
        let prompt = tokenizer.encode_plain(&template.render(&history, true)?)?;
        if prompt.len() >= model.capacity() {
            history.pop();
            eprintln!(
                "(the conversation is {} tokens, the context {}: /reset to start again)",
                prompt.len(),
                model.capacity()
            );
            continue;
        }
        let options = GenerateOptions {
            max_tokens: args.max_tokens.min(model.capacity() - prompt.len()),
            sampler: SamplerConfig {
                temperature: args.temperature,
                top_k: None,
                top_p: Some(args.top_p),
                seed: args.seed.wrapping_add(turn),
            },
            stop_at_eos: true,
            keep_logits: false,
        };
        turn += 1;
        interrupted.store(false, Ordering::Relaxed);
        let mut stream = TextStream::new(&tokenizer);
        let mut reply = String::new();
        let mut stdout = std::io::stdout();
        let result = model.generate(&prompt, &options, |token| {
            if interrupted.load(Ordering::Relaxed) {
                return Err(Error::Stopped);
            }
            let piece = stream.push(token)?;
            reply.push_str(&piece);
            let _ = stdout
                .write_all(piece.as_bytes())
                .and_then(|()| stdout.flush());
            Ok(())
        });
        match result {
            Ok(_) => {
                let rest = stream.finish()?;
                reply.push_str(&rest);
                println!("{rest}");
            }
            Err(Error::Stopped) => println!(" [stopped]"),
            Err(e) => return Err(e),
        }
        history.push(Message::new("assistant", &reply));
    }
    Ok(true)
}
