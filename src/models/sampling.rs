//! Choosing the next token from logits: greedy, or sampling with temperature, top-k and
//! top-p (nucleus), from a seeded generator so runs repeat.

use crate::error::{Error, Result};
use crate::rng::Rng;

/// How to pick tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 picks the most likely token (greedy); otherwise logits are divided by it.
    pub temperature: f32,
    /// Keep only the k most likely tokens (`None`: all).
    pub top_k: Option<usize>,
    /// Keep the most likely tokens whose probabilities add up to at least p (`None` or 1: all).
    pub top_p: Option<f32>,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
        }
    }
}

pub struct Sampler {
    config: SamplerConfig,
    rng: Rng,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Result<Sampler> {
        let bad = |what: String| Err(Error::Invalid(what));
        if !(config.temperature >= 0.0 && config.temperature.is_finite()) {
            return bad(format!(
                "temperature {} must be 0 or more",
                config.temperature
            ));
        }
        if config.top_k == Some(0) {
            return bad("top-k must be at least 1".into());
        }
        if let Some(p) = config.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return bad(format!("top-p {p} must be in (0, 1]"));
        }
        Ok(Sampler {
            config,
            rng: Rng::new(config.seed),
        })
    }

    /// The next token for `logits`.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        let candidates = self.probabilities(logits)?;
        Ok(self.draw(&candidates))
    }

    /// The distribution [`Sampler::sample`] draws from: the candidate tokens with their
    /// probabilities (summing to 1), most likely first; one token with probability 1 when
    /// greedy.
    pub fn probabilities(&self, logits: &[f32]) -> Result<Vec<(u32, f64)>> {
        if logits.is_empty() || logits.iter().any(|l| l.is_nan()) {
            return Err(Error::Invalid("the model produced NaN logits".into()));
        }
        if self.config.temperature == 0.0 || self.config.top_k == Some(1) {
            return Ok(vec![(argmax(logits), 1.0)]);
        }
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        if let Some(k) = self.config.top_k {
            order.truncate(k);
        }
        let t = f64::from(self.config.temperature);
        let top = f64::from(logits[order[0]]);
        let mut probs: Vec<f64> = order
            .iter()
            .map(|&i| ((f64::from(logits[i]) - top) / t).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if let Some(top_p) = self.config.top_p {
            let mut sum = 0.0;
            let keep = probs
                .iter()
                .position(|p| {
                    sum += p;
                    sum >= f64::from(top_p)
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            order.truncate(keep);
        }
        let total: f64 = probs.iter().sum();
        Ok(order
            .iter()
            .zip(probs)
            .map(|(&i, p)| (i as u32, p / total))
            .collect())
    }

    /// A token drawn from `candidates` (weights need not sum to 1; at least one).
    pub fn draw(&mut self, candidates: &[(u32, f64)]) -> u32 {
        if let [(only, _)] = candidates {
            return *only;
        }
        let total: f64 = candidates.iter().map(|c| c.1).sum();
        let mut u = self.rng.uniform(0.0, total);
        for &(token, p) in candidates {
            if u < p {
                return token;
            }
            u -= p;
        }
        candidates.last().expect("at least one candidate").0
    }

    /// A uniform draw in [0, 1) from the sampler's generator.
    pub fn uniform(&mut self) -> f64 {
        self.rng.uniform(0.0, 1.0)
    }
}

/// The index of the largest logit (the first of equals, as `torch.argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplerConfig::default()).unwrap();
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 3.0]).unwrap(), 1);
    }

    #[test]
    fn top_k_and_top_p_restrict_the_draw() {
        let logits = [5.0, 4.9, 0.0, -3.0, 4.8];
        let mut k = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_k: Some(2),
            top_p: None,
            seed: 3,
        })
        .unwrap();
        let mut p = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_k: None,
            top_p: Some(0.5),
            seed: 3,
        })
        .unwrap();
        for _ in 0..200 {
            assert!([0, 1].contains(&k.sample(&logits).unwrap()));
            assert!([0, 1].contains(&p.sample(&logits).unwrap()));
        }
    }

    #[test]
    fn sampling_follows_the_probabilities_and_the_seed() {
        let logits = [0.0f32, (3.0f32).ln()]; // probabilities 1/4 and 3/4
        let config = SamplerConfig {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            seed: 11,
        };
        let mut s = Sampler::new(config).unwrap();
        let ones = (0..4000)
            .filter(|_| s.sample(&logits).unwrap() == 1)
            .count();
        assert!((2800..3200).contains(&ones), "{ones}");
        let draw = |seed| {
            let mut s = Sampler::new(SamplerConfig { seed, ..config }).unwrap();
            (0..50)
                .map(|_| s.sample(&logits).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
    }

    #[test]
    fn bad_settings_and_nan_logits_are_errors() {
        assert!(
            Sampler::new(SamplerConfig {
                temperature: -1.0,
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            Sampler::new(SamplerConfig {
                top_k: Some(0),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            Sampler::new(SamplerConfig {
                top_p: Some(1.5),
                ..Default::default()
            })
            .is_err()
        );
        let mut s = Sampler::new(SamplerConfig::default()).unwrap();
        assert!(s.sample(&[1.0, f32::NAN]).is_err());
    }
}
