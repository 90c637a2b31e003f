//! Generation: the prompt in one forward pass, then one token at a time until EOS, the token
//! budget or the end of the context.

use web_time::Instant;

use crate::error::{Result, require_finite};
use crate::models::sampling::{Sampler, SamplerConfig};

use super::Llama;

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Stop after a token from the config's `eos_token_id`.
    pub stop_at_eos: bool,
    /// Keep the logits that chose each token (`--dump-logits`).
    pub keep_logits: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 128,
            sampler: SamplerConfig::default(),
            stop_at_eos: true,
            keep_logits: false,
        }
    }
}

/// What a generation produced.
#[derive(Clone, Debug, Default)]
pub struct Generation {
    pub tokens: Vec<u32>,
    /// Row `i`: the logits that chose `tokens[i]` (when kept).
    pub logits: Vec<Vec<f32>>,
    pub prompt_tokens: usize,
    pub prompt_seconds: f64,
    pub generate_seconds: f64,
    /// Why it stopped: "eos", "max_tokens" or "context".
    pub stop: &'static str,
}

impl Generation {
    /// Prompt tokens per second of prefill (NaN when no time was measured).
    pub fn prompt_tokens_per_second(&self) -> f64 {
        per_second(self.prompt_tokens, self.prompt_seconds)
    }

    /// Generated tokens per second (NaN when no time was measured).
    pub fn generation_tokens_per_second(&self) -> f64 {
        per_second(self.tokens.len(), self.generate_seconds)
    }
}

fn per_second(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        f64::NAN
    }
}

impl Llama {
    /// Generates after `prompt`, calling `on_token` with each new token as it is chosen.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn generate(
        &mut self,
        prompt: &[u32],
        options: &GenerateOptions,
        on_token: impl FnMut(u32) -> Result<()>,
    ) -> Result<Generation> {
        crate::gpu::block_on(self.generate_async(prompt, options, on_token))
    }

    /// [`Llama::generate`], awaited: in a browser each token's logits are read back without
    /// blocking the page, so `on_token` can show the text as it grows.
    pub async fn generate_async(
        &mut self,
        prompt: &[u32],
        options: &GenerateOptions,
        mut on_token: impl FnMut(u32) -> Result<()>,
    ) -> Result<Generation> {
        let mut sampler = Sampler::new(options.sampler)?;
        self.reset();
        let start = Instant::now();
        let mut logits = self.forward_async(prompt).await?;
        let mut out = Generation {
            prompt_tokens: prompt.len(),
            prompt_seconds: start.elapsed().as_secs_f64(),
            stop: "max_tokens",
            ..Generation::default()
        };
        let start = Instant::now();
        while out.tokens.len() < options.max_tokens {
            require_finite_logits(&logits, out.tokens.len())?;
            let token = sampler.sample(&logits)?;
            if options.keep_logits {
                out.logits.push(std::mem::take(&mut logits));
            }
            out.tokens.push(token);
            on_token(token)?;
            if options.stop_at_eos && self.config().eos_token_ids.contains(&(token as usize)) {
                out.stop = "eos";
                break;
            }
            if out.tokens.len() == options.max_tokens {
                break;
            }
            if self.position() == self.capacity() {
                out.stop = "context";
                break;
            }
            logits = self.forward_async(&[token]).await?;
        }
        out.generate_seconds = start.elapsed().as_secs_f64();
        Ok(out)
    }
}

/// NaN or infinite logits mean the model (its weights or config) is broken: sampling from
/// them would print garbage, so it is an error naming the step.
fn require_finite_logits(logits: &[f32], step: usize) -> Result<()> {
    require_finite(logits, || {
        format!(
            "the logits of generation step {step} (the weights or the config, such as \
             rms_norm_eps, are broken)"
        )
    })
}
