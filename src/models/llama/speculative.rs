//! Speculative decoding: a small draft model proposes `k` tokens one at a time, the target
//! scores all of them in one forward pass, and the longest prefix the target agrees with is
//! kept, plus one token of the target's own. Greedy, the output is the target's greedy output
//! token for token. Sampling, each draft token `x` is kept with probability
//! `min(1, p(x) / q(x))` (p the target's distribution, q the draft's), and at the first
//! rejection a token is drawn from `max(0, p - q)` renormalised, which leaves the output
//! distributed exactly as the target's (Leviathan et al., 2023; Chen et al., 2023).

use std::collections::HashMap;
use std::time::Instant;

use crate::error::{Error, Result, require_finite};
use crate::models::sampling::Sampler;

use super::{GenerateOptions, Generation, Llama};

/// How often the target agreed with the draft.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SpeculativeStats {
    /// Draft tokens proposed.
    pub drafted: usize,
    /// Draft tokens the target kept.
    pub accepted: usize,
    /// Verifying forward passes of the target.
    pub target_passes: usize,
}

impl SpeculativeStats {
    /// Accepted over drafted (0 when nothing was drafted).
    pub fn acceptance_rate(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            self.accepted as f64 / self.drafted as f64
        }
    }
}

impl Llama {
    /// [`Llama::generate`] with `draft` proposing `k` tokens per target pass. The draft must
    /// share the target's vocabulary.
    pub fn generate_speculative(
        &mut self,
        draft: &mut Llama,
        k: usize,
        prompt: &[u32],
        options: &GenerateOptions,
        mut on_token: impl FnMut(u32) -> Result<()>,
    ) -> Result<(Generation, SpeculativeStats)> {
        if k == 0 {
            return Err(Error::Invalid(
                "speculative decoding drafts at least 1 token".into(),
            ));
        }
        if draft.config().vocab_size != self.config().vocab_size {
            return Err(Error::Invalid(format!(
                "the draft model's vocabulary ({}) differs from the target's ({})",
                draft.config().vocab_size,
                self.config().vocab_size
            )));
        }
        let Some((&last, head)) = prompt.split_last() else {
            return Err(Error::Invalid("the prompt has no tokens".into()));
        };
        self.check_tokens(prompt)?;
        let mut target_sampler = Sampler::new(options.sampler)?;
        // The draft draws with its own generator (a different stream of the same seed).
        let mut draft_sampler = Sampler::new(crate::models::sampling::SamplerConfig {
            seed: options.sampler.seed ^ 0x5bd1_e995,
            ..options.sampler
        })?;
        let capacity = self.capacity().min(draft.capacity());
        if prompt.len() > capacity {
            return Err(Error::Invalid(format!(
                "the prompt of {} tokens exceeds the context of {capacity}",
                prompt.len()
            )));
        }
        self.reset();
        draft.reset();
        let start = Instant::now();
        // Both models hold every token but the latest, which the next round feeds.
        if !head.is_empty() {
            self.forward(head)?;
            draft.forward(head)?;
        }
        let mut out = Generation {
            prompt_tokens: prompt.len(),
            prompt_seconds: start.elapsed().as_secs_f64(),
            stop: "max_tokens",
            ..Generation::default()
        };
        let start = Instant::now();
        let mut stats = SpeculativeStats::default();
        let eos = self.config().eos_token_ids.clone();
        let mut pending = last;
        'rounds: while out.tokens.len() < options.max_tokens {
            let base = self.position();
            // Room for pending + k drafts in the context, and no more drafts than tokens left.
            let room = capacity.saturating_sub(base + 1);
            let left = options.max_tokens - out.tokens.len();
            if base + 1 > capacity {
                out.stop = "context";
                break;
            }
            let k = k.min(room).min(left.saturating_sub(1));

            // The draft proposes k tokens.
            let mut drafts = Vec::with_capacity(k);
            let mut draft_probs = Vec::with_capacity(k);
            let mut feed = pending;
            for i in 0..k {
                let logits = draft.forward(&[feed])?;
                require_finite(&logits, || format!("the draft model's logits at draft {i}"))?;
                let q = draft_sampler.probabilities(&logits)?;
                let x = draft_sampler.draw(&q);
                drafts.push(x);
                draft_probs.push(q);
                feed = x;
            }
            stats.drafted += k;

            // The target scores pending and every draft in one pass: row i is its
            // distribution for the token after draft i - 1.
            let mut verify = vec![pending];
            verify.extend(&drafts);
            let rows = self.forward_all(&verify)?;
            stats.target_passes += 1;
            let mut emitted = Vec::with_capacity(k + 1);
            let mut accepted = 0;
            let mut chosen = None;
            for (i, logits) in rows.iter().enumerate() {
                require_finite(logits, || {
                    format!("the logits of generation step {}", out.tokens.len() + i)
                })?;
                let p = target_sampler.probabilities(logits)?;
                if options.keep_logits {
                    out.logits.push(logits.clone());
                }
                let Some(&x) = drafts.get(i) else {
                    // Every draft kept: one more token from the target's last row.
                    chosen = Some(target_sampler.draw(&p));
                    break;
                };
                let (px, qx) = (mass(&p, x), mass(&draft_probs[i], x));
                if px >= qx || target_sampler.uniform() * qx < px {
                    accepted += 1;
                    emitted.push(x);
                    continue;
                }
                // Rejected: a token from what the target wants beyond the draft.
                chosen = Some(target_sampler.draw(&residual(&p, &draft_probs[i])));
                break;
            }
            emitted.extend(chosen);
            stats.accepted += accepted;
            if options.keep_logits {
                out.logits.truncate(out.tokens.len() + emitted.len());
            }

            // Both caches keep pending and the accepted drafts.
            self.truncate(base + 1 + accepted);
            if accepted == k {
                // The draft has not seen its own last proposal (or, drafting none, pending).
                draft.forward(&[drafts.last().copied().unwrap_or(pending)])?;
            }
            draft.truncate(base + 1 + accepted);

            for token in emitted {
                out.tokens.push(token);
                on_token(token)?;
                if options.stop_at_eos && eos.contains(&(token as usize)) {
                    out.stop = "eos";
                    break 'rounds;
                }
                if out.tokens.len() == options.max_tokens {
                    break 'rounds;
                }
            }
            pending = *out.tokens.last().expect("a round emits at least one token");
        }
        out.logits.truncate(out.tokens.len());
        out.generate_seconds = start.elapsed().as_secs_f64();
        Ok((out, stats))
    }
}

/// The probability `dist` gives `token`.
fn mass(dist: &[(u32, f64)], token: u32) -> f64 {
    dist.iter().find(|c| c.0 == token).map_or(0.0, |c| c.1)
}

/// `max(0, p - q)` over p's candidates (the sampler renormalises when drawing). Where it is
/// zero everywhere (p within q), p itself.
fn residual(p: &[(u32, f64)], q: &[(u32, f64)]) -> Vec<(u32, f64)> {
    let q: HashMap<u32, f64> = q.iter().copied().collect();
    let r: Vec<(u32, f64)> = p
        .iter()
        .map(|&(t, pt)| (t, (pt - q.get(&t).copied().unwrap_or(0.0)).max(0.0)))
        .filter(|c| c.1 > 0.0)
        .collect();
    if r.is_empty() { p.to_vec() } else { r }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::sampling::SamplerConfig;

    /// The accept/reject rule over a three-token vocabulary leaves the target's
    /// distribution: drafting from q and correcting gives p, measured over many draws.
    #[test]
    fn the_accept_reject_rule_keeps_the_target_distribution() {
        let p = vec![(0u32, 0.5), (1, 0.3), (2, 0.2)];
        let q = vec![(0u32, 0.2), (1, 0.7), (2, 0.1)];
        let config = SamplerConfig {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            seed: 9,
        };
        let mut s = Sampler::new(config).unwrap();
        let mut counts = [0usize; 3];
        let n = 60_000;
        for _ in 0..n {
            let x = s.draw(&q);
            let (px, qx) = (mass(&p, x), mass(&q, x));
            let token = if px >= qx || s.uniform() * qx < px {
                x
            } else {
                s.draw(&residual(&p, &q))
            };
            counts[token as usize] += 1;
        }
        for (t, &(_, want)) in p.iter().enumerate() {
            let got = counts[t] as f64 / n as f64;
            assert!((got - want).abs() < 0.01, "token {t}: {got} vs {want}");
        }
    }
}
