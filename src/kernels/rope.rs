//! Rotary position embedding (`shaders/rope.wgsl`) in the Hugging Face "rotate half" layout,
//! with the frequency schedules a Llama / Mistral / Qwen2 `config.json` may ask for: the
//! default `1 / theta^(2i/d)`, `"linear"` scaling and Llama 3.x's `"llama3"` scaling.
//!
//! The cos/sin values come from a table computed on the host in f64 ([`table_tensor`]), one
//! row per position the model will see, so every GPU applies the same, fully accurate
//! rotation.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::{KernelCall, Position, last_dim, prepare_at, to_u32};
use crate::tensor::{DType, Tensor};

const SHADER: ShaderSource = ShaderSource {
    name: "rope.wgsl",
    body: include_str!("../../shaders/rope.wgsl"),
    library: &[super::STEP],
};
const WG: u32 = 256;

/// How the rotary frequencies are scaled (`rope_scaling` / `rope_parameters` in a config).
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// `rope_type: "default"` (or no scaling).
    None,
    /// `rope_type: "linear"`: every frequency divided by `factor`.
    Linear { factor: f64 },
    /// `rope_type: "llama3"`: low frequencies divided by `factor`, high ones kept, a smooth
    /// blend in between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    /// Each frequency `i` divided by its own factor: llama.cpp's `rope_freqs.weight` tensor
    /// (how a GGUF file stores Llama 3's scaling), `head_dim / 2` of them.
    Factors(Vec<f64>),
    /// `rope_type: "longrope"` (Phi-3): frequency `i` divided by `short[i]`, or by `long[i]`
    /// at positions from `original_max_position_embeddings` on, and cos and sin scaled by
    /// `attention_factor`. (transformers decides by the longest position of the current
    /// forward, which is the same while a prompt fits the original context; a longer prompt
    /// turns with `long` from its first position there, with `short` up to that position here.)
    LongRope {
        short: Vec<f64>,
        long: Vec<f64>,
        original_max_position_embeddings: usize,
        attention_factor: f64,
    },
}

/// The frequencies each position turns at: `near` below `far_from`, `far` from there, and
/// the factor on cos and sin.
struct Frequencies {
    near: Vec<f64>,
    far: Vec<f64>,
    far_from: usize,
    scale: f64,
}

impl Frequencies {
    fn at(&self, t: usize) -> &[f64] {
        if t >= self.far_from {
            &self.far
        } else {
            &self.near
        }
    }
}

/// The rotary embedding of one model.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeConfig {
    /// `rope_theta`.
    pub theta: f64,
    /// The rotated size: the attention head size.
    pub head_dim: usize,
    pub scaling: RopeScaling,
}

impl RopeConfig {
    fn check(&self) -> Result<()> {
        let bad = |why: String| Err(Error::Invalid(format!("RoPE configuration: {why}")));
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "head_dim {} must be even and positive",
                self.head_dim
            ));
        }
        if self.theta.is_nan() || self.theta <= 1.0 {
            return bad(format!("rope_theta {} must be above 1", self.theta));
        }
        match &self.scaling {
            RopeScaling::None => Ok(()),
            RopeScaling::Factors(f) if f.len() != self.head_dim / 2 => bad(format!(
                "{} frequency factors for head_dim {}",
                f.len(),
                self.head_dim
            )),
            RopeScaling::Factors(f) if f.iter().all(|v| v.is_finite() && *v > 0.0) => Ok(()),
            RopeScaling::Factors(_) => bad("frequency factors must be finite and positive".into()),
            RopeScaling::LongRope {
                short,
                long,
                attention_factor,
                ..
            } => {
                let half = self.head_dim / 2;
                let good =
                    |f: &[f64]| f.len() == half && f.iter().all(|v| v.is_finite() && *v > 0.0);
                if good(short)
                    && good(long)
                    && attention_factor.is_finite()
                    && *attention_factor > 0.0
                {
                    Ok(())
                } else {
                    bad(format!(
                        "longrope needs {half} finite positive short and long factors and a \
                         positive attention factor (head_dim {})",
                        self.head_dim
                    ))
                }
            }
            &RopeScaling::Linear { factor } if factor > 0.0 => Ok(()),
            RopeScaling::Linear { factor } => {
                bad(format!("linear factor {factor} must be positive"))
            }
            &RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                if factor > 0.0
                    && low_freq_factor > 0.0
                    && high_freq_factor > low_freq_factor
                    && original_max_position_embeddings > 0.0
                {
                    Ok(())
                } else {
                    bad(format!(
                        "llama3 scaling needs factor, low_freq_factor, \
                         original_max_position_embeddings > 0 and high_freq_factor > \
                         low_freq_factor; got {:?}",
                        self.scaling
                    ))
                }
            }
        }
    }

    /// The `head_dim / 2` inverse frequencies, as transformers' `modeling_rope_utils`
    /// computes them for this scaling (in f64 here).
    pub fn inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim as f64;
        let base = (0..self.head_dim / 2).map(|i| 1.0 / self.theta.powf(2.0 * i as f64 / d));
        match &self.scaling {
            RopeScaling::None => base.collect(),
            RopeScaling::Factors(factors) | RopeScaling::LongRope { short: factors, .. } => {
                base.zip(factors).map(|(f, by)| f / by).collect()
            }
            &RopeScaling::Linear { factor } => base.map(|f| f / factor).collect(),
            &RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old_len,
            } => base
                .map(|f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < old_len / high_freq_factor {
                        f
                    } else if wavelen > old_len / low_freq_factor {
                        f / factor
                    } else {
                        let smooth = (old_len / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect(),
        }
    }

    /// The frequencies by position (see [`RopeScaling::LongRope`]; one set otherwise).
    fn frequencies(&self) -> Frequencies {
        let near = self.inv_freq();
        match &self.scaling {
            RopeScaling::LongRope {
                long,
                original_max_position_embeddings,
                attention_factor,
                ..
            } => {
                let d = self.head_dim as f64;
                let far = (0..self.head_dim / 2)
                    .zip(long)
                    .map(|(i, by)| 1.0 / (self.theta.powf(2.0 * i as f64 / d) * by))
                    .collect();
                Frequencies {
                    near,
                    far,
                    far_from: *original_max_position_embeddings,
                    scale: *attention_factor,
                }
            }
            _ => Frequencies {
                far: near.clone(),
                near,
                far_from: usize::MAX,
                scale: 1.0,
            },
        }
    }

    /// The host table for positions `0 .. positions`: row `t` holds `cos(t·inv_freq)` then
    /// `sin(t·inv_freq)` (times LongRope's attention factor), `[positions, head_dim]`,
    /// rounded once from f64 to f32.
    pub fn table(&self, positions: usize) -> Result<Vec<f32>> {
        self.check()?;
        let freq = self.frequencies();
        let half = self.head_dim / 2;
        let mut table = vec![0.0f32; positions * 2 * half];
        for (t, row) in table.chunks_exact_mut(2 * half).enumerate() {
            for (i, f) in freq.at(t).iter().enumerate() {
                let (sin, cos) = (t as f64 * f).sin_cos();
                row[i] = (freq.scale * cos) as f32;
                row[half + i] = (freq.scale * sin) as f32;
            }
        }
        Ok(table)
    }
}

/// The table that makes [`rope`] apply RoPE's gradient: each rotation is orthogonal (times
/// LongRope's scale), so the gradient of `y = s·R x` is `dx = s·Rᵀ dy`, the rotation by the
/// opposite angle: the same table with its sines negated (`table` as
/// [`RopeConfig::table`] gives it, rows of `head_dim`).
pub fn backward_table(table: &[f32], head_dim: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = table.to_vec();
    for row in out.chunks_exact_mut(head_dim) {
        for sin in &mut row[half..] {
            *sin = -*sin;
        }
    }
    out
}

/// The cos/sin table of [`RopeConfig::table`] on the device: `[positions, head_dim]` f32.
pub fn table_tensor(gpu: &Gpu, config: &RopeConfig, positions: usize) -> Result<Tensor> {
    let values = config.table(positions)?;
    Tensor::from_f32(gpu, &[positions, config.head_dim], &values, DType::F32)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    pairs: u32,
    seq: u32,
    n_heads: u32,
    half: u32,
}

fn key(dtype: DType) -> PipelineKey {
    PipelineKey::new(SHADER, "rope", dtype, &[("WG", WG)])
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    DType::ALL.iter().map(|&d| key(d)).collect()
}

/// Rotates `x` (`[batch, seq, n_heads, head_dim]`) in place; token `s` has position
/// `position + s`, which must lie inside the table.
pub fn rope<'a>(
    gpu: &Gpu,
    x: &'a Tensor,
    table: &'a Tensor,
    position: Position<'a>,
) -> Result<KernelCall<'a>> {
    let op = "rope";
    let head_dim = last_dim(op, x)?;
    let [_, seq, n_heads, _] = <[usize; 4]>::try_from(x.shape()).map_err(|_| {
        let shape = x.shape();
        Error::shape(
            op,
            format!("x is {shape:?}; expected [batch, seq, heads, head_dim]"),
        )
    })?;
    let &[positions, table_dim] = table.shape() else {
        return Err(Error::shape(
            op,
            format!("the table is {table:?}, not [positions, head_dim]"),
        ));
    };
    if table.dtype() != DType::F32 || table_dim != head_dim || !head_dim.is_multiple_of(2) {
        return Err(Error::shape(
            op,
            format!(
                "x has head_dim {head_dim} (must be even); the table {table:?} must be [_, {head_dim}] f32"
            ),
        ));
    }
    let end = position.max() + seq;
    if end > positions {
        return Err(Error::shape(
            op,
            format!("positions up to {end} exceed the table's {positions}"),
        ));
    }
    let pairs = x.len() / 2;
    let params = Params {
        pairs: to_u32(op, "pairs", pairs)?,
        seq: to_u32(op, "seq", seq)?,
        n_heads: to_u32(op, "n_heads", n_heads)?,
        half: to_u32(op, "head_dim / 2", head_dim / 2)?,
    };
    let grid = gpu.grid(op, pairs.div_ceil(WG as usize) as u64)?;
    let tensors = [(1, table), (2, x)];
    prepare_at(gpu, &key(x.dtype()), &params, &tensors, &position, grid)
}

/// f64 reference of [`rope`] on `x` (`[batch, seq, n_heads, head_dim]`, flattened), with the
/// angles computed exactly from the configuration's frequencies.
pub fn reference(
    config: &RopeConfig,
    x: &[f64],
    seq: usize,
    n_heads: usize,
    position: usize,
) -> Vec<f64> {
    rotate(config, x, seq, n_heads, position, 1.0)
}

/// f64 reference of RoPE's gradient: `dy` rotated by the opposite angles (times the scale).
pub fn reference_backward(
    config: &RopeConfig,
    dy: &[f64],
    seq: usize,
    n_heads: usize,
    position: usize,
) -> Vec<f64> {
    rotate(config, dy, seq, n_heads, position, -1.0)
}

/// `x` rotated by `direction` (1 or -1) times each position's angles, times the scale.
fn rotate(
    config: &RopeConfig,
    x: &[f64],
    seq: usize,
    n_heads: usize,
    position: usize,
    direction: f64,
) -> Vec<f64> {
    let freq = config.frequencies();
    let half = config.head_dim / 2;
    let mut out = x.to_vec();
    for (row, chunk) in out.chunks_exact_mut(2 * half).enumerate() {
        let t = position + (row / n_heads) % seq;
        for (i, f) in freq.at(t).iter().enumerate() {
            let (sin, cos) = (t as f64 * f).sin_cos();
            let (sin, cos) = (direction * freq.scale * sin, freq.scale * cos);
            let (x1, x2) = (chunk[i], chunk[half + i]);
            chunk[i] = x1 * cos - x2 * sin;
            chunk[half + i] = x2 * cos + x1 * sin;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gradient is the transpose: <R x, y> = <x, Rᵀ y> for every schedule, LongRope's
    /// scale included.
    #[test]
    fn the_backward_rotation_is_the_transpose() {
        let config = RopeConfig {
            theta: 10_000.0,
            head_dim: 8,
            scaling: RopeScaling::LongRope {
                short: vec![1.0, 1.5, 2.0, 3.0],
                long: vec![2.0, 3.0, 4.0, 5.0],
                original_max_position_embeddings: 3,
                attention_factor: 1.2,
            },
        };
        let (seq, heads) = (5, 2);
        let n = seq * heads * 8;
        let x: Vec<f64> = (0..n).map(|i| ((i * 37) % 11) as f64 / 5.0 - 1.0).collect();
        let y: Vec<f64> = (0..n).map(|i| ((i * 53) % 13) as f64 / 6.0 - 1.0).collect();
        let rx = reference(&config, &x, seq, heads, 1);
        let rty = reference_backward(&config, &y, seq, heads, 1);
        let left: f64 = rx.iter().zip(&y).map(|(a, b)| a * b).sum();
        let right: f64 = x.iter().zip(&rty).map(|(a, b)| a * b).sum();
        assert!((left - right).abs() < 1e-12, "{left} vs {right}");
        let table = config.table(seq + 1).unwrap();
        let back = backward_table(&table, 8);
        assert_eq!(back[0..4], table[0..4]);
        assert_eq!(back[12], -table[12]);
    }

    /// llama.cpp's converter stores Llama 3's scaling as per-frequency divisors
    /// 1 / ((1 - smooth) / factor + smooth) (1 for high, `factor` for low frequencies): the
    /// same frequencies as transformers' llama3 schedule.
    #[test]
    fn llama3_as_gguf_factors_is_llama3() {
        let scaled = llama3();
        let RopeScaling::Llama3 {
            factor,
            low_freq_factor: low,
            high_freq_factor: high,
            original_max_position_embeddings: old,
        } = scaled.scaling
        else {
            unreachable!("llama3() is Llama3");
        };
        let plain = RopeConfig {
            scaling: RopeScaling::None,
            ..scaled.clone()
        };
        let factors: Vec<f64> = plain
            .inv_freq()
            .iter()
            .map(|f| {
                let wavelen = 2.0 * std::f64::consts::PI / f;
                if wavelen < old / high {
                    1.0
                } else if wavelen > old / low {
                    factor
                } else {
                    let smooth = (old / wavelen - low) / (high - low);
                    1.0 / ((1.0 - smooth) / factor + smooth)
                }
            })
            .collect();
        let as_factors = RopeConfig {
            scaling: RopeScaling::Factors(factors),
            ..scaled.clone()
        };
        for (a, b) in as_factors.inv_freq().iter().zip(scaled.inv_freq()) {
            assert!((a - b).abs() <= 1e-12 * b.abs(), "{a} vs {b}");
        }
        let short = RopeConfig {
            scaling: RopeScaling::Factors(vec![1.0; 3]),
            ..scaled.clone()
        };
        assert!(short.table(4).is_err());
    }

    use approx::assert_relative_eq;

    fn llama3() -> RopeConfig {
        // Llama 3.2 1B's values.
        RopeConfig {
            theta: 500_000.0,
            head_dim: 64,
            scaling: RopeScaling::Llama3 {
                factor: 32.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            },
        }
    }

    #[test]
    fn default_frequencies_follow_theta() {
        let c = RopeConfig {
            theta: 10_000.0,
            head_dim: 8,
            scaling: RopeScaling::None,
        };
        let f = c.inv_freq();
        let want = [1.0, 0.1, 0.01, 0.001];
        for (got, want) in f.iter().zip(want) {
            assert_relative_eq!(*got, want, max_relative = 1e-12);
        }
        let linear = RopeConfig {
            scaling: RopeScaling::Linear { factor: 4.0 },
            ..c
        };
        assert_relative_eq!(linear.inv_freq()[1], 0.025, max_relative = 1e-14);
    }

    #[test]
    fn llama3_keeps_high_divides_low_and_blends_between() {
        let c = llama3();
        let plain = RopeConfig {
            scaling: RopeScaling::None,
            ..c
        }
        .inv_freq();
        let scaled = c.inv_freq();
        // wavelength below 8192/4: unchanged; above 8192: divided by 32
        assert_eq!(scaled[0], plain[0]);
        let last = plain.len() - 1;
        assert_relative_eq!(scaled[last], plain[last] / 32.0, max_relative = 1e-14);
        // in between: strictly between the two
        let mid = (0..plain.len())
            .find(|&i| {
                let w = 2.0 * std::f64::consts::PI / plain[i];
                w > 2048.0 && w < 8192.0
            })
            .unwrap();
        assert!(scaled[mid] < plain[mid] && scaled[mid] > plain[mid] / 32.0);
    }

    #[test]
    fn bad_configurations_are_errors() {
        let bad = RopeConfig {
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 4.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            },
            ..llama3()
        };
        assert!(bad.table(4).is_err());
        let odd = RopeConfig {
            head_dim: 7,
            ..llama3()
        };
        assert!(odd.table(4).is_err());
    }

    #[test]
    fn table_rows_are_cos_then_sin() {
        let c = llama3();
        let table = c.table(3).unwrap();
        let f = c.inv_freq();
        assert_eq!(table.len(), 3 * 64);
        assert_eq!(table[0], 1.0);
        assert_eq!(table[32], 0.0);
        assert_eq!(table[64 + 5], (f[5]).cos() as f32);
        assert_eq!(table[128 + 32 + 7], (2.0 * f[7]).sin() as f32);
    }
}
