//! The bundled models on the page: the demo decoder continuing a prompt, streaming its text,
//! and the digits UNet sampling a grid. The page fetches their files from its own folder
//! (`web/pkg/models/`, copied there by `tools/build_web.sh`) and hands them over as bytes;
//! loading, generation and sampling are the library's, awaited.

use std::cell::RefCell;

use tessera::error::require_finite;
use tessera::io::{TextStream, Tokenizer, png_grid};
use tessera::models::diffusion::{
    GaussianNoise, Scheduler, SchedulerConfig, SchedulerKind, UNet, sample_async,
};
use tessera::models::llama::{GenerateOptions, Llama, LoadOptions};
use tessera::models::sampling::SamplerConfig;
use tessera::{DType, Error};
use wasm_bindgen::prelude::*;

use crate::{js_error, opened};

/// A decoder and the tokenizer that turns its tokens into text.
struct Decoder {
    model: Llama,
    tokenizer: Tokenizer,
}

/// A UNet and the scheduler config it was trained with.
struct Denoiser {
    unet: UNet,
    scheduler: SchedulerConfig,
}

thread_local! {
    /// The loaded decoder; taken out while it generates, so a second request while one runs
    /// is refused rather than sharing it.
    static DECODER: RefCell<Option<Decoder>> = const { RefCell::new(None) };
    /// The loaded UNet, taken out the same way while it samples.
    static DENOISER: RefCell<Option<Denoiser>> = const { RefCell::new(None) };
}

/// Takes the model out of `cell` for one run, and puts it back when the run is over.
async fn with_model<M, T>(
    cell: &'static std::thread::LocalKey<RefCell<Option<M>>>,
    what: &str,
    run: impl AsyncFnOnce(&mut M) -> Result<T, JsValue>,
) -> Result<T, JsValue> {
    let mut model = cell.with(|m| m.borrow_mut().take()).ok_or_else(|| {
        JsValue::from_str(&format!("no {what} is loaded, or it is busy with a run"))
    })?;
    let result = run(&mut model).await;
    cell.with(|m| *m.borrow_mut() = Some(model));
    result
}

/// Loads a decoder from its `config.json`, `model.safetensors` and `tokenizer.json`; returns
/// a one-line description.
#[wasm_bindgen]
pub fn load_decoder(
    config: String,
    weights: Vec<u8>,
    tokenizer: String,
) -> Result<String, JsValue> {
    let gpu = opened()?;
    let tokenizer = Tokenizer::from_text("tokenizer.json", &tokenizer).map_err(js_error)?;
    let model =
        Llama::from_bytes(&gpu, &config, weights, &LoadOptions::default()).map_err(js_error)?;
    let c = model.config();
    let about = format!(
        "{} layers, hidden size {}, {} heads ({} key/value), vocabulary {}, context {}",
        c.num_layers,
        c.hidden_size,
        c.num_heads,
        c.num_kv_heads,
        c.vocab_size,
        model.capacity()
    );
    DECODER.with(|d| *d.borrow_mut() = Some(Decoder { model, tokenizer }));
    Ok(about)
}

/// Continues `prompt` (text, encoded by the model's tokenizer) or `tokens` (ids used as
/// given; they win when both are given) by at most `max_tokens`, at `temperature` (0:
/// greedy) with `seed`, calling `on_text(piece)` as each token completes text. Returns the
/// JSON `tessera generate --json` prints (tokens, text, prompt_tokens, stop and the two
/// rates; a rate is null when no time was measured).
#[wasm_bindgen]
pub async fn generate(
    prompt: Option<String>,
    tokens: Option<Vec<u32>>,
    max_tokens: usize,
    temperature: f32,
    seed: u64,
    on_text: js_sys::Function,
) -> Result<String, JsValue> {
    with_model(&DECODER, "decoder", async move |decoder| {
        let ids = match (tokens, prompt) {
            (Some(ids), _) => ids,
            (None, Some(text)) => decoder.tokenizer.encode(&text).map_err(js_error)?,
            (None, None) => return Err(JsValue::from_str("give a prompt or token ids")),
        };
        if ids.is_empty() {
            return Err(JsValue::from_str("the prompt has no tokens"));
        }
        let options = GenerateOptions {
            max_tokens,
            sampler: SamplerConfig {
                temperature,
                seed,
                ..SamplerConfig::default()
            },
            ..GenerateOptions::default()
        };
        let mut stream = TextStream::new(&decoder.tokenizer);
        let on_token = |token| {
            let piece = stream.push(token)?;
            if !piece.is_empty() {
                on_text
                    .call1(&JsValue::NULL, &JsValue::from_str(&piece))
                    .map_err(|e| Error::Invalid(format!("the page's on_text failed: {e:?}")))?;
            }
            Ok(())
        };
        let out = decoder
            .model
            .generate_async(&ids, &options, on_token)
            .await
            .map_err(js_error)?;
        let text = decoder.tokenizer.decode(&out.tokens).map_err(js_error)?;
        let json = serde_json::json!({
            "tokens": out.tokens,
            "text": text,
            "prompt_tokens": out.prompt_tokens,
            "stop": out.stop,
            "prompt_tokens_per_second": out.prompt_tokens_per_second(),
            "generation_tokens_per_second": out.generation_tokens_per_second(),
        });
        Ok(json.to_string())
    })
    .await
}

/// Loads a UNet from its `config.json`, `diffusion_pytorch_model.safetensors` and
/// `scheduler_config.json`; returns a one-line description.
#[wasm_bindgen]
pub fn load_unet(config: String, weights: Vec<u8>, scheduler: String) -> Result<String, JsValue> {
    let gpu = opened()?;
    let scheduler = tessera::io::ConfigJson::parse("scheduler_config.json", &scheduler)
        .and_then(|c| SchedulerConfig::from_json(&c))
        .map_err(js_error)?;
    let unet = UNet::from_bytes(&gpu, &config, weights, DType::F32).map_err(js_error)?;
    let [_, channels, h, w] = unet.sample_shape(1);
    let about = format!(
        "{} parameters, {channels}×{h}×{w} samples, trained over {} timesteps",
        unet.parameters(),
        scheduler.num_train_timesteps()
    );
    DENOISER.with(|d| *d.borrow_mut() = Some(Denoiser { unet, scheduler }));
    Ok(about)
}

/// Samples `count` images in `steps` DDIM steps from the noise of `seed` (the same noise
/// `tessera sample --scheduler ddim` draws for that seed), calling `progress(done, total)`
/// after each step; returns the grid as a PNG file (`tessera sample --out`'s image).
#[wasm_bindgen]
pub async fn sample_digits(
    count: usize,
    steps: usize,
    seed: u64,
    progress: js_sys::Function,
) -> Result<Vec<u8>, JsValue> {
    with_model(&DENOISER, "UNet", async move |denoiser| {
        let unet = &denoiser.unet;
        unet.check_batch(count)
            .map_err(|e| JsValue::from_str(&format!("{count} images: {e}")))?;
        let scheduler = Scheduler::new(
            denoiser.scheduler.clone(),
            Some(SchedulerKind::Ddim),
            steps,
            0.0,
        )
        .map_err(js_error)?;
        let shape = unet.sample_shape(count);
        let mut noise = GaussianNoise::new(seed);
        let init = noise.draw(shape.iter().product());
        // Finite values checked after every step: the readback between steps is also what
        // lets the page draw the progress.
        let out = sample_async(
            unet,
            &scheduler,
            count,
            &init,
            &mut noise,
            true,
            |done, total| {
                progress
                    .call2(
                        &JsValue::NULL,
                        &JsValue::from(done as u32),
                        &JsValue::from(total as u32),
                    )
                    .ok();
            },
        )
        .await
        .map_err(js_error)?;
        require_finite(&out, || format!("the samples after {steps} steps")).map_err(js_error)?;
        png_grid(&out, shape).map_err(js_error)
    })
    .await
}
