//! `tessera bench --models`: whole-model figures at the shapes people compare GPUs with — a
//! TinyLlama-1.1B-shaped decoder (prefill and decode tokens/s) and a
//! google/ddpm-cifar10-32-shaped UNet (forward steps/s at batch 1 and 64) — with synthetic
//! weights ([`Checkpoint::synthetic`]), so no download is needed. `quick` swaps in small
//! shapes that finish in seconds on a CPU adapter.

use std::time::Instant;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::{Checkpoint, ConfigJson};
use crate::kernels::quant::GgmlType;
use crate::models::diffusion::{UNet, UNetConfig};
use crate::models::llama::{
    Chunk, Llama, LlamaConfig, LoadOptions, PagedOptions, expected_tensors,
};
use crate::tensor::DType;

/// TinyLlama/TinyLlama-1.1B-Chat-v1.0's config.json (the keys tessera reads).
pub const TINYLLAMA_1_1B: &str = r#"{
  "architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "intermediate_size": 5632,
  "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "max_position_embeddings": 2048,
  "vocab_size": 32000, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2,
  "torch_dtype": "bfloat16"
}"#;

/// A decoder small enough for a CPU adapter.
const SMALL_LLAMA: &str = r#"{
  "architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 688,
  "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "max_position_embeddings": 512,
  "vocab_size": 2048, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2
}"#;

/// mistralai/Mixtral-8x7B-v0.1's config.json with 2 of its 32 layers (each layer's eight
/// experts are 1.4 G parameters).
pub const MIXTRAL_8X7B_2_LAYERS: &str = r#"{
  "architectures": ["MixtralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
  "num_hidden_layers": 2, "num_attention_heads": 32, "num_key_value_heads": 8,
  "num_local_experts": 8, "num_experts_per_tok": 2, "rms_norm_eps": 1e-05,
  "rope_theta": 1000000.0, "max_position_embeddings": 32768, "vocab_size": 32000,
  "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2, "sliding_window": null
}"#;

/// A mixture-of-experts decoder small enough for a CPU adapter.
const SMALL_MOE: &str = r#"{
  "architectures": ["MixtralForCausalLM"], "hidden_size": 256, "intermediate_size": 688,
  "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2,
  "num_local_experts": 8, "num_experts_per_tok": 2, "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0, "max_position_embeddings": 512, "vocab_size": 2048,
  "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2
}"#;

/// google/ddpm-cifar10-32's unet config.json.
pub const DDPM_CIFAR10_32: &str = r#"{
  "_class_name": "UNet2DModel", "act_fn": "silu", "attention_head_dim": null,
  "block_out_channels": [128, 256, 256, 256], "center_input_sample": false,
  "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
  "downsample_padding": 0, "flip_sin_to_cos": false, "freq_shift": 1, "in_channels": 3,
  "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-06,
  "norm_num_groups": 32, "out_channels": 3, "sample_size": 32,
  "time_embedding_type": "positional",
  "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
}"#;

/// A UNet small enough for a CPU adapter.
const SMALL_UNET: &str = r#"{
  "_class_name": "UNet2DModel", "act_fn": "silu", "attention_head_dim": null,
  "block_out_channels": [32, 64], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
  "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "downsample_padding": 1,
  "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 3, "out_channels": 3,
  "layers_per_block": 1, "norm_eps": 1e-05, "norm_num_groups": 8, "sample_size": 16,
  "time_embedding_type": "positional"
}"#;

pub use super::bench::ModelRow;

/// How big and how long.
struct Plan {
    llama: (&'static str, &'static str),
    moe: (&'static str, &'static str),
    prompt_tokens: usize,
    decode_tokens: usize,
    unet: (&'static str, &'static str),
    batches: [usize; 2],
    unet_steps: usize,
}

fn plan(quick: bool) -> Plan {
    if quick {
        Plan {
            llama: ("small Llama (4 layers, hidden 256)", SMALL_LLAMA),
            moe: ("small MoE (4 layers, 2 of 8 experts)", SMALL_MOE),
            prompt_tokens: 32,
            decode_tokens: 8,
            unet: ("small UNet (32/64 channels, 16x16)", SMALL_UNET),
            batches: [1, 2],
            unet_steps: 2,
        }
    } else {
        Plan {
            llama: ("TinyLlama-1.1B", TINYLLAMA_1_1B),
            moe: ("Mixtral-8x7B (2 of 32 layers)", MIXTRAL_8X7B_2_LAYERS),
            prompt_tokens: 512,
            decode_tokens: 128,
            unet: ("ddpm-cifar10-32", DDPM_CIFAR10_32),
            batches: [1, 64],
            unet_steps: 10,
        }
    }
}

/// The groups of rows `bench --models` times, in order (what `--filter` matches).
pub const SECTIONS: [&str; 5] = [
    "decoder",
    "batched decode",
    "packed decode",
    "moe decode",
    "unet",
];

/// Times the decoder and the UNet in `dtype` (only the [`SECTIONS`] whose name contains
/// `filter`, when given); `on_row` sees each figure as it is measured.
pub fn bench_models(
    gpu: &Gpu,
    quick: bool,
    dtype: DType,
    filter: Option<&str>,
    mut on_row: impl FnMut(&ModelRow),
) -> Result<Vec<ModelRow>> {
    let plan = plan(quick);
    let wanted = |section: &str| filter.is_none_or(|f| section.contains(f));
    if !SECTIONS.iter().any(|s| wanted(s)) {
        return Err(Error::Invalid(format!(
            "no model benchmark matches {filter:?}; the sections are {}",
            SECTIONS.join(", ")
        )));
    }
    let mut rows = Vec::new();
    let mut keep = |row: ModelRow, rows: &mut Vec<ModelRow>| {
        on_row(&row);
        rows.push(row);
    };
    if wanted("decoder") {
        for row in bench_llama(gpu, &plan, dtype)? {
            keep(row, &mut rows);
        }
    }
    if wanted("batched decode") {
        for row in bench_batched_decode(gpu, &plan, dtype)? {
            keep(row, &mut rows);
        }
    }
    if wanted("packed decode") {
        for t in [GgmlType::Q8_0, GgmlType::Q4_K] {
            keep(bench_packed_decode(gpu, &plan, dtype, t)?, &mut rows);
        }
    }
    // The Mixtral-sized stack needs bindings of about a gigabyte: where the device has none
    // that large, the row is left out with the reason.
    if wanted("moe decode") {
        match bench_moe_decode(gpu, &plan, dtype) {
            Ok(row) => keep(row, &mut rows),
            Err(e @ Error::TooLarge { .. }) => {
                eprintln!("{}: left out: {e}", plan.moe.0);
            }
            Err(e) => return Err(e),
        }
    }
    if wanted("unet") {
        for row in bench_unet(gpu, &plan, dtype)? {
            keep(row, &mut rows);
        }
    }
    Ok(rows)
}

/// A dense decoder's parameters, and the bytes of weights one decode step reads in `dtype`:
/// every weight but the embedding table (one row of it).
fn dense_decode_bytes(config: &LlamaConfig, dtype: DType) -> (u64, u64) {
    let parameters: u64 = expected_tensors(config)
        .iter()
        .map(|(_, shape)| shape.iter().product::<usize>() as u64)
        .sum();
    let embedding = (config.vocab_size * config.hidden_size) as u64;
    (parameters, (parameters - embedding) * dtype.size() as u64)
}

fn bench_llama(gpu: &Gpu, plan: &Plan, dtype: DType) -> Result<Vec<ModelRow>> {
    let (name, json) = plan.llama;
    let config = LlamaConfig::from_json(&ConfigJson::parse(name, json)?)?;
    let (parameters, read_per_token) = dense_decode_bytes(&config, dtype);
    let context = plan.prompt_tokens + plan.decode_tokens;
    let options = LoadOptions {
        dtype,
        max_context: Some(context),
        ..LoadOptions::default()
    };
    let mut model = Llama::from_parts(gpu, config, &Checkpoint::synthetic(1), &options)?;
    let vocab = model.config().vocab_size as u32;
    let prompt: Vec<u32> = (0..plan.prompt_tokens as u32)
        .map(|i| (i * 7919) % vocab)
        .collect();

    // The first prefill compiles the pipelines; the second is timed.
    let mut prefill_seconds = f64::INFINITY;
    for _ in 0..2 {
        model.reset();
        let start = Instant::now();
        model.forward(&prompt)?;
        prefill_seconds = start.elapsed().as_secs_f64();
    }
    // Decode after the prompt, each step reading its logits back as generation does.
    let start = Instant::now();
    for i in 0..plan.decode_tokens as u32 {
        model.forward(&[(i * 31) % vocab])?;
    }
    let decode_seconds = start.elapsed().as_secs_f64();
    let decode_rate = plan.decode_tokens as f64 / decode_seconds;
    let row = |phase: &str, per_second: f64, bandwidth: Option<f64>, detail: String| ModelRow {
        model: name.to_string(),
        dtype: dtype.to_string(),
        phase: phase.to_string(),
        per_second,
        unit: "tokens/s",
        parameters,
        weight_gbytes_per_second: bandwidth,
        detail,
    };
    Ok(vec![
        row(
            "prefill",
            plan.prompt_tokens as f64 / prefill_seconds,
            None,
            format!(
                "{} prompt tokens in {prefill_seconds:.4} s (second run)",
                plan.prompt_tokens
            ),
        ),
        row(
            "decode",
            decode_rate,
            Some(read_per_token as f64 * decode_rate / 1e9),
            format!(
                "{} tokens after the prompt in {decode_seconds:.4} s, logits read back each step",
                plan.decode_tokens
            ),
        ),
    ])
}

/// Sequences decoded together in the batched-decode rows.
pub const CONCURRENT_SEQUENCES: [usize; 3] = [1, 4, 16];

/// Aggregate decode tokens/s of [`CONCURRENT_SEQUENCES`] sequences decoded together on a
/// paged KV cache (one step = one token of every sequence, the projections one matmul over
/// their rows, the logits of every sequence read back), after each sequence's prompt. The
/// bandwidth counts the weights one step reads; the detail gives the ratio to one sequence.
fn bench_batched_decode(gpu: &Gpu, plan: &Plan, dtype: DType) -> Result<Vec<ModelRow>> {
    let (name, json) = plan.llama;
    let config = LlamaConfig::from_json(&ConfigJson::parse(name, json)?)?;
    let (parameters, read_per_step) = dense_decode_bytes(&config, dtype);
    // Short prompts and 32 steps: what matters is the steps of many sequences at once.
    let (prompt_len, steps) = (plan.prompt_tokens.min(16), plan.decode_tokens.min(32));
    let context = prompt_len + steps + 1;
    let options = LoadOptions {
        dtype,
        max_context: Some(context),
        ..LoadOptions::default()
    };
    let model = Llama::from_parts(gpu, config, &Checkpoint::synthetic(1), &options)?;
    let vocab = model.config().vocab_size as u32;
    let mut rows = Vec::new();
    let mut single_rate = None;
    for n in CONCURRENT_SEQUENCES {
        let block_size = 16;
        let paged = PagedOptions {
            block_size,
            blocks: Some(n * context.div_ceil(block_size)),
        };
        let mut cache = model.paged_cache(paged)?;
        let prompts: Vec<Vec<u32>> = (0..n as u32)
            .map(|s| {
                (0..prompt_len as u32)
                    .map(|i| (i * 7919 + s * 104_729) % vocab)
                    .collect()
            })
            .collect();
        for (s, prompt) in prompts.iter().enumerate() {
            let chunk = Chunk {
                seq: s as u64,
                tokens: prompt,
                logits: false,
            };
            model.forward_batch(&mut cache, &[chunk])?;
        }
        let tokens: Vec<[u32; 1]> = (0..n as u32).map(|s| [(s * 31) % vocab]).collect();
        let step: Vec<Chunk<'_>> = tokens
            .iter()
            .enumerate()
            .map(|(s, t)| Chunk {
                seq: s as u64,
                tokens: t,
                logits: true,
            })
            .collect();
        model.forward_batch(&mut cache, &step)?; // compiles the step plan
        let start = Instant::now();
        for _ in 0..steps {
            model.forward_batch(&mut cache, &step)?;
        }
        let seconds = start.elapsed().as_secs_f64();
        let rate = (n * steps) as f64 / seconds;
        let single = *single_rate.get_or_insert(rate);
        rows.push(ModelRow {
            model: name.to_string(),
            dtype: dtype.to_string(),
            phase: format!(
                "batched decode, {n} sequence{}",
                if n == 1 { "" } else { "s" }
            ),
            per_second: rate,
            unit: "tokens/s",
            parameters,
            weight_gbytes_per_second: Some(read_per_step as f64 * steps as f64 / seconds / 1e9),
            detail: format!(
                "{steps} steps of {n} tokens in {seconds:.4} s after {prompt_len}-token prompts, \
                 paged KV cache, logits read back each step; {:.2}x the aggregate rate of one \
                 sequence",
                rate / single
            ),
        });
    }
    Ok(rows)
}

/// Decode tokens/s with the projections kept packed in `t` (the packed GEMV), activations in
/// `dtype`; the bandwidth counts the packed bytes a token reads.
fn bench_packed_decode(gpu: &Gpu, plan: &Plan, dtype: DType, t: GgmlType) -> Result<ModelRow> {
    let (name, json) = plan.llama;
    let config = LlamaConfig::from_json(&ConfigJson::parse(name, json)?)?;
    let (block, block_bytes) = t.block();
    let mut parameters = 0u64;
    let mut read_per_token = 0f64;
    for (tensor, shape) in expected_tensors(&config) {
        let n = shape.iter().product::<usize>() as u64;
        parameters += n;
        if tensor.ends_with("_proj.weight") {
            read_per_token += n as f64 / block as f64 * block_bytes as f64;
        } else if tensor != "model.embed_tokens.weight" {
            read_per_token += (n * dtype.size() as u64) as f64;
        }
    }
    let options = LoadOptions {
        dtype,
        max_context: Some(plan.decode_tokens + 1),
        ..LoadOptions::default()
    };
    let ckpt = Checkpoint::synthetic_packed(1, t);
    let mut model = Llama::from_parts(gpu, config, &ckpt, &options)?;
    let vocab = model.config().vocab_size as u32;
    model.forward(&[1])?; // compiles the decode plan
    let start = Instant::now();
    for i in 0..plan.decode_tokens as u32 {
        model.forward(&[(i * 31) % vocab])?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let rate = plan.decode_tokens as f64 / seconds;
    Ok(ModelRow {
        model: name.to_string(),
        dtype: dtype.to_string(),
        phase: format!("decode, {t:?} weights"),
        per_second: rate,
        unit: "tokens/s",
        parameters,
        weight_gbytes_per_second: Some(read_per_token * rate / 1e9),
        detail: format!(
            "{} tokens in {seconds:.4} s, projections packed in {t:?}, logits read back each step",
            plan.decode_tokens
        ),
    })
}

/// Decode tokens/s of a mixture-of-experts decoder; the bandwidth counts the bytes a token
/// reads: every weight but the embedding and the unchosen experts (k of E experts a layer).
fn bench_moe_decode(gpu: &Gpu, plan: &Plan, dtype: DType) -> Result<ModelRow> {
    let (name, json) = plan.moe;
    let config = LlamaConfig::from_json(&ConfigJson::parse(name, json)?)?;
    let moe = config.moe.clone().expect("a mixture-of-experts config");
    let active = moe.top_k as f64 / moe.experts as f64;
    let mut parameters = 0u64;
    let mut read_per_token = 0f64;
    for (tensor, shape) in expected_tensors(&config) {
        let n = shape.iter().product::<usize>() as u64;
        parameters += n;
        let bytes = (n * dtype.size() as u64) as f64;
        if tensor.contains(".experts.") {
            read_per_token += bytes * active;
        } else if tensor != "model.embed_tokens.weight" {
            read_per_token += bytes;
        }
    }
    let options = LoadOptions {
        dtype,
        max_context: Some(plan.decode_tokens + 1),
        ..LoadOptions::default()
    };
    let mut model = Llama::from_parts(gpu, config, &Checkpoint::synthetic(3), &options)?;
    let vocab = model.config().vocab_size as u32;
    model.forward(&[1])?; // compiles the decode plan
    let start = Instant::now();
    for i in 0..plan.decode_tokens as u32 {
        model.forward(&[(i * 31) % vocab])?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let rate = plan.decode_tokens as f64 / seconds;
    Ok(ModelRow {
        model: name.to_string(),
        dtype: dtype.to_string(),
        phase: format!("decode, {} of {} experts", moe.top_k, moe.experts),
        per_second: rate,
        unit: "tokens/s",
        parameters,
        weight_gbytes_per_second: Some(read_per_token * rate / 1e9),
        detail: format!(
            "{} tokens in {seconds:.4} s, routed on the GPU, logits read back each step",
            plan.decode_tokens
        ),
    })
}

fn bench_unet(gpu: &Gpu, plan: &Plan, dtype: DType) -> Result<Vec<ModelRow>> {
    let (name, json) = plan.unet;
    let config = UNetConfig::from_json(&ConfigJson::parse(name, json)?)?;
    let unet = UNet::from_parts(gpu, config, &Checkpoint::synthetic(2), dtype)?;
    let parameters = unet.parameters();
    let mut rows = Vec::new();
    for batch in plan.batches {
        let run = unet.prepare(batch)?;
        let len: usize = unet.sample_shape(batch).iter().product();
        let noise: Vec<f32> = (0..len).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
        run.sample.write_f32(&noise)?;
        run.run(999.0)?; // compiles and warms up
        let start = Instant::now();
        for step in 0..plan.unet_steps {
            run.run((999 - 10 * step) as f64)?;
        }
        let seconds = start.elapsed().as_secs_f64();
        rows.push(ModelRow {
            model: name.to_string(),
            dtype: dtype.to_string(),
            phase: format!("unet forward, batch {batch}"),
            per_second: plan.unet_steps as f64 / seconds,
            unit: "steps/s",
            parameters,
            weight_gbytes_per_second: None,
            detail: format!("{} forwards in {seconds:.4} s", plan.unet_steps),
        });
    }
    Ok(rows)
}
