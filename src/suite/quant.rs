//! Case specification for the packed quantized GEMV.

use super::compare::Tolerance;
use super::{CaseSpec, HostTensor, Random};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::KernelCall;
use crate::kernels::gemv_quant::{self, PackedView};
use crate::kernels::quant::{self, GgmlType, Relaid};
use crate::tensor::{DType, Tensor};

/// `y = x · Wᵀ` with `W` `[n, k]` in `ggml_type` blocks (random quants, finite scales) and
/// `x` `[m, k]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantGemvSpec {
    pub ggml_type: GgmlType,
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// The scales of the random blocks: |d| ≤ 1/64 keeps |w| ≤ 2 for Q8_0, and Q4_K's
/// d·6-bit scale·15 + dmin·6-bit minimum within 16.
const MAX_SCALE: f64 = 1.0 / 64.0;

impl QuantGemvSpec {
    /// Random blocks with finite f16 scales, re-laid: (scales, quants) as u32 host tensors.
    fn blocks(&self, random: Random<'_>) -> (HostTensor, HostTensor) {
        let (block, block_bytes) = self.ggml_type.block();
        let blocks = self.n * self.k / block as usize;
        // Bytes from a uniform draw (the case's generator), the scale field overwritten.
        let bytes_draw = random(&[blocks * block_bytes as usize], 0.0, 256.0);
        let scale_draw = random(&[blocks], -MAX_SCALE, MAX_SCALE);
        let mut bytes: Vec<u8> = bytes_draw.data.iter().map(|&v| v.floor() as u8).collect();
        for (b, block) in bytes.chunks_exact_mut(block_bytes as usize).enumerate() {
            let d = half::f16::from_f64(scale_draw.data[b]).to_le_bytes();
            // Q6_K keeps d last; the others first.
            let at = if self.ggml_type == GgmlType::Q6_K {
                208
            } else {
                0
            };
            block[at..at + 2].copy_from_slice(&d);
            if self.ggml_type == GgmlType::Q4_K {
                // dmin, a small positive minimum scale.
                let dmin = half::f16::from_f64(scale_draw.data[b].abs() / 4.0).to_le_bytes();
                block[2..4].copy_from_slice(&dmin);
            }
        }
        let r = quant::relay(self.ggml_type, &bytes, self.n, self.k).expect("whole blocks");
        let words = |shape: Vec<usize>, w: &[u32]| HostTensor {
            shape,
            data: w.iter().map(|&v| f64::from(v)).collect(),
            dtype: Some(DType::U32),
        };
        (
            words(
                vec![self.n, quant::scale_words(self.ggml_type, self.k)],
                &r.scales,
            ),
            words(vec![r.quants.len()], &r.quants),
        )
    }
}

impl CaseSpec for QuantGemvSpec {
    fn kernel(&self) -> &'static str {
        "gemv_quant"
    }

    fn shape(&self) -> String {
        let rows = if self.m > 1 {
            format!("M={} ", self.m)
        } else {
            String::new()
        };
        format!("{:?} {rows}N={} K={}", self.ggml_type, self.n, self.k)
    }

    fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k) as f64
    }

    /// In elements of the case dtype: x, y, and the packed weight's bytes over the element
    /// size (see [`CaseSpec::traffic_bytes`]).
    fn traffic(&self) -> usize {
        self.m * (self.k + self.n)
    }

    fn traffic_bytes(&self, dtype: DType) -> f64 {
        let (block, block_bytes) = self.ggml_type.block();
        let weight = (self.n * self.k) as f64 / block as f64 * block_bytes as f64;
        weight + (self.traffic() * dtype.size()) as f64
    }

    /// f32 accumulation of K products each below 2 in magnitude (16 for Q4_K).
    fn compute_tolerance(&self) -> Tolerance {
        let bound = if self.ggml_type == GgmlType::Q4_K {
            16.0
        } else {
            2.0
        };
        Tolerance {
            atol: bound * DType::F32.epsilon() * self.k as f64,
            rtol: 1e-6,
        }
    }

    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let x = random(&[self.m, self.k], -1.0, 1.0);
        let (scales, quants) = self.blocks(random);
        Ok(vec![x, scales, quants])
    }

    fn output_shape(&self, _: &[HostTensor]) -> Vec<usize> {
        vec![self.m, self.n]
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let words = |h: &HostTensor| h.data.iter().map(|&v| v as u32).collect::<Vec<u32>>();
        let relaid = Relaid {
            rows: self.n,
            cols: self.k,
            scales: words(&inputs[1]),
            quants: words(&inputs[2]),
        };
        let bytes = quant::unrelay(self.ggml_type, &relaid).expect("relaid by inputs()");
        let w = quant::dequantize(self.ggml_type, &bytes, self.n * self.k).expect("whole blocks");
        gemv_quant::reference(&w, &inputs[0].data, self.n, self.k)
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let w = PackedView {
            ggml_type: self.ggml_type,
            rows: self.n,
            cols: self.k,
            scales: &inputs[1],
            quants: &inputs[2],
        };
        gemv_quant::gemv_quant(gpu, &inputs[0], w, out)
    }
}
