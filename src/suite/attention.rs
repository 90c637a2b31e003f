//! Case specifications for attention, RoPE and the KV-cache append.

use super::compare::Tolerance;
use super::{CaseSpec, HostTensor, Random};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::attention::{self, AttentionDims, FlashPath};
use crate::kernels::rope::{self, RopeConfig, RopeScaling};
use crate::kernels::{KernelCall, Position, kv_cache};
use crate::tensor::Tensor;

/// Which attention kernel a case runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKernel {
    /// Flash attention on the portable (scalar) kernel, whatever `tessera tune` chose: the
    /// cooperative kernel rounds the softmax weights to f16 and is held to its own tolerance
    /// in [`AttentionKernel::FlashCoop`].
    Flash,
    /// Flash attention on cooperative matrices (f16 only).
    FlashCoop,
    /// Split-KV decode; needs `q_len == 1`.
    Decode,
}

/// An attention case: `q` `[batch, q_len, n_heads, head_dim]` against `k`, `v`
/// `[batch, kv_capacity, n_kv_heads, head_dim]` of which `kv_len` positions are used.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionSpec {
    pub batch: usize,
    pub q_len: usize,
    pub kv_len: usize,
    pub kv_capacity: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub causal: bool,
    pub kernel: AttentionKernel,
    /// Gemma 2's attention-logit soft-cap.
    pub softcap: Option<f32>,
    /// A sliding window (Mistral, Gemma's local layers).
    pub window: Option<usize>,
}

impl AttentionSpec {
    /// Self-attention over `seq` positions (`q_len == kv_len == kv_capacity`), batch 1.
    pub fn new(seq: usize, heads: (usize, usize), head_dim: usize, causal: bool) -> Self {
        AttentionSpec {
            batch: 1,
            q_len: seq,
            kv_len: seq,
            kv_capacity: seq,
            n_heads: heads.0,
            n_kv_heads: heads.1,
            head_dim,
            causal,
            kernel: AttentionKernel::Flash,
            softcap: None,
            window: None,
        }
    }

    /// One query per sequence against `kv_len` cached positions, split-KV kernel.
    pub fn decode(kv_len: usize, heads: (usize, usize), head_dim: usize) -> Self {
        AttentionSpec {
            q_len: 1,
            kernel: AttentionKernel::Decode,
            ..AttentionSpec::new(kv_len, heads, head_dim, true)
        }
    }

    fn dims(&self) -> AttentionDims {
        AttentionDims {
            batch: self.batch,
            q_len: self.q_len,
            kv_len: self.kv_len,
            kv_capacity: self.kv_capacity,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
        }
    }

    fn scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }
}

impl CaseSpec for AttentionSpec {
    fn kernel(&self) -> &'static str {
        match self.kernel {
            AttentionKernel::Flash | AttentionKernel::FlashCoop => "flash_attn",
            AttentionKernel::Decode => "decode_attn",
        }
    }

    fn shape(&self) -> String {
        let mut s = format!(
            "q={} kv={} h={}/{} d={}",
            self.q_len, self.kv_len, self.n_heads, self.n_kv_heads, self.head_dim
        );
        if self.batch > 1 {
            s += &format!(" b={}", self.batch);
        }
        if self.kv_capacity > self.kv_len {
            s += &format!(" cap={}", self.kv_capacity);
        }
        if self.kernel != AttentionKernel::Decode {
            s += if self.causal { " causal" } else { " full" };
        }
        if let Some(c) = self.softcap {
            s += &format!(" softcap={c}");
        }
        if let Some(w) = self.window {
            s += &format!(" window={w}");
        }
        if self.kernel == AttentionKernel::FlashCoop {
            s += " coop";
        }
        s
    }

    /// Prefill is compute-bound (FLOPs); a single query is bandwidth-bound (bytes only).
    fn flops(&self) -> f64 {
        if self.q_len > 1 {
            self.dims().flops(self.causal)
        } else {
            0.0
        }
    }

    /// q, the used part of k and v, and the output.
    fn traffic(&self) -> usize {
        let q = self.batch * self.q_len * self.n_heads * self.head_dim;
        let kv = self.batch * self.kv_len * self.n_kv_heads * self.head_dim;
        2 * q + 2 * kv
    }

    /// Weights are a softmax (they sum to 1) of scores with O(1) spread, values in [-1, 1]:
    /// the f32 errors of the dot products, exp() and the running sums stay near a few 1e-7
    /// (measured up to 3e-7 at kv_len 1024, head_dim 256).
    ///
    /// The cooperative kernel multiplies the weights by v in f16: rounding a weight moves it
    /// by at most 2⁻¹¹ of itself, so with weights summing to the row sum and |v| ≤ 1 the
    /// output moves by at most 2⁻¹¹.
    fn compute_tolerance(&self) -> Tolerance {
        let f16_weights = if self.kernel == AttentionKernel::FlashCoop {
            2f64.powi(-11)
        } else {
            0.0
        };
        Tolerance {
            atol: 1e-6 + f16_weights,
            rtol: 2e-6,
        }
    }

    fn cooperative(&self) -> bool {
        self.kernel == AttentionKernel::FlashCoop
    }

    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let q = [self.batch, self.q_len, self.n_heads, self.head_dim];
        let kv = [self.batch, self.kv_capacity, self.n_kv_heads, self.head_dim];
        Ok(vec![
            random(&q, -1.5, 1.5),
            random(&kv, -1.5, 1.5),
            random(&kv, -1.0, 1.0),
        ])
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let [q, k, v] = [&inputs[0].data, &inputs[1].data, &inputs[2].data];
        let softcap = self.softcap.map(f64::from);
        attention::reference(
            &self.dims(),
            q,
            k,
            v,
            self.causal,
            self.scale(),
            softcap,
            self.window,
        )
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let [q, k, v] = [&inputs[0], &inputs[1], &inputs[2]];
        let scale = attention::Scores {
            scale: self.scale() as f32,
            softcap: self.softcap,
            window: self.window,
        };
        let past = Position::Fixed(self.kv_len - self.q_len);
        match self.kernel {
            AttentionKernel::Flash | AttentionKernel::FlashCoop => {
                let path = if self.kernel == AttentionKernel::Flash {
                    FlashPath::Scalar
                } else {
                    FlashPath::Coop
                };
                attention::flash_attention_with(gpu, q, k, v, past, self.causal, scale, out, path)
            }
            AttentionKernel::Decode => attention::decode_attention(gpu, q, k, v, past, scale, out),
        }
    }
}

/// A RoPE case: `x` `[batch, seq, n_heads, config.head_dim]` rotated in place, token `s` at
/// position `position + s`.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeSpec {
    pub batch: usize,
    pub seq: usize,
    pub n_heads: usize,
    pub position: usize,
    pub config: RopeConfig,
    /// RoPE's gradient (the same kernel with [`rope::backward_table`]) instead.
    pub backward: bool,
}

impl RopeSpec {
    fn x_shape(&self) -> [usize; 4] {
        [self.batch, self.seq, self.n_heads, self.config.head_dim]
    }
}

impl CaseSpec for RopeSpec {
    fn kernel(&self) -> &'static str {
        if self.backward { "rope_grad" } else { "rope" }
    }

    fn shape(&self) -> String {
        let scaling = match &self.config.scaling {
            RopeScaling::None => "default".to_string(),
            RopeScaling::Linear { factor } => format!("linear x{factor}"),
            RopeScaling::Llama3 { factor, .. } => format!("llama3 x{factor}"),
            RopeScaling::Factors(_) => "per-frequency factors".to_string(),
            RopeScaling::LongRope {
                original_max_position_embeddings,
                ..
            } => format!("longrope from {original_max_position_embeddings}"),
        };
        let mut s = format!(
            "s={} h={} d={} pos={} {scaling}",
            self.seq, self.n_heads, self.config.head_dim, self.position
        );
        if self.batch > 1 {
            s += &format!(" b={}", self.batch);
        }
        s
    }

    fn traffic(&self) -> usize {
        2 * self.x_shape().iter().product::<usize>()
    }

    /// Table entries are f32 roundings of exact values (half an ulp each) and each output a
    /// two-term sum of products of magnitude at most 1: a few f32 ulp of 1 at most.
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 4e-7,
            rtol: 0.0,
        }
    }

    fn in_place(&self) -> bool {
        true
    }

    /// `x`, then the cos/sin table (always f32).
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let positions = self.position + self.seq;
        let mut table = self.config.table(positions)?;
        if self.backward {
            table = rope::backward_table(&table, self.config.head_dim);
        }
        Ok(vec![
            random(&self.x_shape(), -1.0, 1.0),
            HostTensor::f32_table(
                vec![positions, self.config.head_dim],
                table.into_iter().map(f64::from).collect(),
            ),
        ])
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let reference = if self.backward {
            rope::reference_backward
        } else {
            rope::reference
        };
        reference(
            &self.config,
            &inputs[0].data,
            self.seq,
            self.n_heads,
            self.position,
        )
    }

    /// `out` holds `x` (the kernel works in place); `inputs[1]` is the table.
    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        rope::rope(gpu, out, &inputs[1], Position::Fixed(self.position))
    }
}

/// A KV-cache append: `new_len` positions written at `position` into a cache of `capacity`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KvAppendSpec {
    pub batch: usize,
    pub capacity: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub position: usize,
    pub new_len: usize,
}

impl KvAppendSpec {
    fn new_shape(&self) -> [usize; 4] {
        [self.batch, self.new_len, self.n_kv_heads, self.head_dim]
    }
}

impl CaseSpec for KvAppendSpec {
    fn kernel(&self) -> &'static str {
        "kv_append"
    }

    fn shape(&self) -> String {
        format!(
            "b={} cap={} h={} d={} at {} +{}",
            self.batch, self.capacity, self.n_kv_heads, self.head_dim, self.position, self.new_len
        )
    }

    fn traffic(&self) -> usize {
        2 * self.new_shape().iter().product::<usize>()
    }

    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 0.0,
            rtol: 0.0,
        }
    }

    fn exact(&self) -> bool {
        true
    }

    fn in_place(&self) -> bool {
        true
    }

    /// The old cache contents (written over in place), then the new rows.
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let cache = [self.batch, self.capacity, self.n_kv_heads, self.head_dim];
        Ok(vec![
            random(&cache, -1.0, 1.0),
            random(&self.new_shape(), 2.0, 3.0),
        ])
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let mut cache = inputs[0].data.clone();
        let row = self.n_kv_heads * self.head_dim;
        for (i, chunk) in inputs[1].data.chunks_exact(row).enumerate() {
            let (b, s) = (i / self.new_len, i % self.new_len);
            let at = (b * self.capacity + self.position + s) * row;
            cache[at..at + row].copy_from_slice(chunk);
        }
        cache
    }

    /// `out` holds the old cache (the kernel works in place); `inputs[1]` the new rows.
    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        kv_cache::write_rows(gpu, &inputs[1], out, Position::Fixed(self.position))
    }
}
