//! Case specifications for the kernels that read packed quantized weights: the linear
//! kernels (GEMV and matmul) and the embedding gather.

use super::compare::Tolerance;
use super::epilogue_suffix;
use super::{CaseSpec, HostTensor, Random};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::KernelCall;
use crate::kernels::matmul::{Epilogue, EpilogueKind};
use crate::kernels::packed::{self, PackedKernel, PackedView};
use crate::kernels::quant::{self, GgmlType, Relaid};
use crate::tensor::{DType, Tensor};

/// `y = x · Wᵀ (+ bias)`, then `epilogue`, with `W` `[n, k]` in `ggml_type` blocks (random
/// quants, finite scales) and `x` `[m, k]`, through `kernel`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PackedLinearSpec {
    pub ggml_type: GgmlType,
    pub kernel: PackedKernel,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub bias: bool,
    pub epilogue: EpilogueKind,
}

/// The scales of the random blocks: |d| ≤ 1/64 (and minimums ≤ 1/64) keep |w| within
/// [`max_weight`].
const MAX_SCALE: f64 = 1.0 / 64.0;

impl PackedLinearSpec {
    /// A plain product (no bias, no epilogue).
    pub fn new(ggml_type: GgmlType, kernel: PackedKernel, m: usize, n: usize, k: usize) -> Self {
        PackedLinearSpec {
            ggml_type,
            kernel,
            m,
            n,
            k,
            bias: false,
            epilogue: EpilogueKind::None,
        }
    }

    fn max_weight(&self) -> f64 {
        max_weight(self.ggml_type)
    }
}

/// The largest |w| a block of `t` can hold with scales and minimums ≤ MAX_SCALE.
fn max_weight(t: GgmlType) -> f64 {
    use GgmlType::*;
    MAX_SCALE
        * match t {
            Q8_0 => 128.0,
            Q4_0 => 8.0,
            Q4_1 => 16.0,
            Q5_0 => 16.0,
            Q5_1 => 32.0,
            // 6-bit sub-block scales and minimums.
            Q4_K => 63.0 * 15.0 + 63.0,
            Q5_K => 63.0 * 31.0 + 63.0,
            // int8 sub-block scales, quants centred on 32.
            Q6_K => 128.0 * 32.0,
            _ => 128.0,
        }
}

/// Random `[rows, cols]` blocks of `t` with finite f16 scales, re-laid: (scales, quants) as
/// u32 host tensors.
fn random_blocks(
    t: GgmlType,
    rows: usize,
    cols: usize,
    random: Random<'_>,
) -> (HostTensor, HostTensor) {
    let (block, block_bytes) = t.block();
    let blocks = rows * cols / block as usize;
    // Bytes from a uniform draw (the case's generator), the scale fields overwritten.
    let bytes_draw = random(&[blocks * block_bytes as usize], 0.0, 256.0);
    let scale_draw = random(&[blocks], -MAX_SCALE, MAX_SCALE);
    let min_draw = random(&[blocks], -MAX_SCALE, MAX_SCALE);
    let mut bytes: Vec<u8> = bytes_draw.data.iter().map(|&v| v.floor() as u8).collect();
    let f16 = |v: f64| half::f16::from_f64(v).to_le_bytes();
    for (b, block) in bytes.chunks_exact_mut(block_bytes as usize).enumerate() {
        let (d, m) = (scale_draw.data[b], min_draw.data[b]);
        match t {
            // Q6_K keeps d last.
            GgmlType::Q6_K => block[208..210].copy_from_slice(&f16(d)),
            // d, then the minimum (K-quants: dmin, a positive scale of the minimums).
            GgmlType::Q4_1 | GgmlType::Q5_1 => {
                block[0..2].copy_from_slice(&f16(d));
                block[2..4].copy_from_slice(&f16(m));
            }
            GgmlType::Q4_K | GgmlType::Q5_K => {
                block[0..2].copy_from_slice(&f16(d));
                block[2..4].copy_from_slice(&f16(m.abs()));
            }
            _ => block[0..2].copy_from_slice(&f16(d)),
        }
    }
    let r = quant::relay(t, &bytes, rows, cols).expect("whole blocks");
    let words = |shape: Vec<usize>, w: &[u32]| HostTensor {
        shape,
        data: w.iter().map(|&v| f64::from(v)).collect(),
        dtype: Some(DType::U32),
    };
    (
        words(vec![rows, quant::scale_words(t, cols)], &r.scales),
        words(vec![r.quants.len()], &r.quants),
    )
}

/// The dequantized `[rows, cols]` weight behind re-laid (scales, quants) host tensors.
fn dequantized(
    t: GgmlType,
    rows: usize,
    cols: usize,
    scales: &HostTensor,
    quants: &HostTensor,
) -> Vec<f64> {
    let words = |h: &HostTensor| h.data.iter().map(|&v| v as u32).collect::<Vec<u32>>();
    let relaid = Relaid {
        rows,
        cols,
        scales: words(scales),
        quants: words(quants),
    };
    let bytes = quant::unrelay(t, &relaid).expect("relaid by random_blocks");
    quant::dequantize(t, &bytes, rows * cols).expect("whole blocks")
}

impl CaseSpec for PackedLinearSpec {
    fn kernel(&self) -> &'static str {
        match self.kernel {
            PackedKernel::Gemv => "gemv_quant",
            PackedKernel::Matmul => "matmul_quant",
        }
    }

    fn shape(&self) -> String {
        let rows = if self.m > 1 {
            format!("M={} ", self.m)
        } else {
            String::new()
        };
        let mut s = format!("{:?} {rows}N={} K={}", self.ggml_type, self.n, self.k);
        if self.bias {
            s += " +bias";
        }
        s += epilogue_suffix(self.epilogue);
        s
    }

    fn flops(&self) -> f64 {
        2.0 * crate::kernels::product_f64(&[self.m, self.n, self.k])
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

    /// f32 accumulation of K products, each below the type's largest weight (|x| ≤ 1).
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: self.max_weight() * DType::F32.epsilon() * self.k as f64,
            rtol: 1e-6,
        }
    }

    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let x = random(&[self.m, self.k], -1.0, 1.0);
        let (scales, quants) = random_blocks(self.ggml_type, self.n, self.k, random);
        let mut inputs = vec![x, scales, quants];
        if self.bias {
            inputs.push(random(&[self.n], -1.0, 1.0));
        }
        if self.epilogue != EpilogueKind::None {
            inputs.push(random(&[self.m, self.n], -4.0, 4.0));
        }
        Ok(inputs)
    }

    fn output_shape(&self, _: &[HostTensor]) -> Vec<usize> {
        vec![self.m, self.n]
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let w = dequantized(self.ggml_type, self.n, self.k, &inputs[1], &inputs[2]);
        let mut y = packed::reference(&w, &inputs[0].data, self.n, self.k);
        if self.bias {
            for row in y.chunks_mut(self.n) {
                for (v, b) in row.iter_mut().zip(&inputs[3].data) {
                    *v += b;
                }
            }
        }
        if self.epilogue != EpilogueKind::None {
            let other = &inputs[inputs.len() - 1].data;
            for (v, &o) in y.iter_mut().zip(other) {
                *v = self.epilogue.reference(*v, o);
            }
        }
        y
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let w = PackedView {
            ggml_type: self.ggml_type,
            rows: self.n,
            cols: self.k,
            scales: &inputs[1],
            quants: &inputs[2],
        };
        let bias = self.bias.then(|| &inputs[3]);
        let epilogue = Epilogue::new(self.epilogue, &inputs[inputs.len() - 1]);
        packed::packed_linear(gpu, self.kernel, &inputs[0], w, bias, epilogue, out)
    }
}

/// An embedding lookup of `n` ids into a packed `[rows, width]` table of `ggml_type` that is
/// the part of a larger table starting at row `row_start` (the ids lie in that part).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PackedGatherSpec {
    pub ggml_type: GgmlType,
    pub n: usize,
    pub rows: usize,
    pub width: usize,
    pub row_start: usize,
}

impl CaseSpec for PackedGatherSpec {
    fn kernel(&self) -> &'static str {
        "gather_quant"
    }

    fn shape(&self) -> String {
        let mut s = format!(
            "{:?} {} of {}x{}",
            self.ggml_type, self.n, self.rows, self.width
        );
        if self.row_start > 0 {
            s += &format!(" from row {}", self.row_start);
        }
        s
    }

    fn traffic(&self) -> usize {
        self.n * self.width
    }

    /// One f32 rounding of a dequantized weight (d·q - m).
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 4.0 * max_weight(self.ggml_type) * DType::F32.epsilon(),
            rtol: 1e-6,
        }
    }

    /// The ids (u32, in row_start .. row_start + rows), then the table's scales and quants.
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let draws = random(&[self.n], 0.0, self.rows as f64);
        let ids = draws
            .data
            .iter()
            .map(|&x| (self.row_start + (x.floor() as usize).min(self.rows - 1)) as f64)
            .collect();
        let ids = HostTensor {
            shape: vec![self.n],
            data: ids,
            dtype: Some(DType::U32),
        };
        let (scales, quants) = random_blocks(self.ggml_type, self.rows, self.width, random);
        Ok(vec![ids, scales, quants])
    }

    fn output_shape(&self, _: &[HostTensor]) -> Vec<usize> {
        vec![self.n, self.width]
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let table = dequantized(
            self.ggml_type,
            self.rows,
            self.width,
            &inputs[1],
            &inputs[2],
        );
        let ids: Vec<usize> = inputs[0]
            .data
            .iter()
            .map(|&x| x as usize - self.row_start)
            .collect();
        crate::kernels::gather::reference(&ids, &table, self.width)
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let table = PackedView {
            ggml_type: self.ggml_type,
            rows: self.rows,
            cols: self.width,
            scales: &inputs[1],
            quants: &inputs[2],
        };
        packed::gather(gpu, &inputs[0], table, self.row_start, out)
    }
}

/// The mixture-of-experts expert GEMV with packed experts: `tokens · top_k` pairs, each
/// against its expert's `[n, k]` block rows of `experts` stacked, x per token, optionally
/// weighted and with an epilogue. A token's experts are distinct, as routing gives them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PackedExpertSpec {
    pub ggml_type: GgmlType,
    pub experts: usize,
    pub tokens: usize,
    pub top_k: usize,
    pub n: usize,
    pub k: usize,
    pub weighted: bool,
    pub epilogue: EpilogueKind,
}

impl PackedExpertSpec {
    fn pairs(&self) -> usize {
        self.tokens * self.top_k
    }
}

impl CaseSpec for PackedExpertSpec {
    fn kernel(&self) -> &'static str {
        "moe_gemv_quant"
    }

    fn shape(&self) -> String {
        let mut s = format!(
            "{:?} E={} pairs={}x{} N={} K={}",
            self.ggml_type, self.experts, self.tokens, self.top_k, self.n, self.k
        );
        if self.weighted {
            s += " weighted";
        }
        s += epilogue_suffix(self.epilogue);
        s
    }

    fn flops(&self) -> f64 {
        2.0 * crate::kernels::product_f64(&[self.pairs(), self.n, self.k])
    }

    fn traffic(&self) -> usize {
        self.pairs() * (self.k + self.n)
    }

    /// The chosen experts' packed rows, x and y.
    fn traffic_bytes(&self, dtype: DType) -> f64 {
        let (block, block_bytes) = self.ggml_type.block();
        let weights = (self.pairs() * self.n * self.k) as f64 / block as f64 * block_bytes as f64;
        weights + (self.traffic() * dtype.size()) as f64
    }

    /// As the packed GEMV's, with a gate of |g| ≤ 4 on the gated epilogues.
    fn compute_tolerance(&self) -> Tolerance {
        Tolerance {
            atol: 4.0 * max_weight(self.ggml_type) * DType::F32.epsilon() * self.k as f64,
            rtol: 4e-6,
        }
    }

    /// Stacked blocks (scales, quants), ids, x, weights (f32), the epilogue's operand.
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>> {
        let (scales, quants) = random_blocks(self.ggml_type, self.experts * self.n, self.k, random);
        let ids = super::moe::routed_ids(self.tokens, self.top_k, self.experts, random);
        let x = random(&[self.tokens, self.k], -1.0, 1.0);
        let mut weights = random(&[self.pairs()], 0.0, 1.0);
        weights.dtype = Some(DType::F32);
        let other = random(&[self.pairs(), self.n], -4.0, 4.0);
        Ok(vec![scales, quants, ids, x, weights, other])
    }

    fn output_shape(&self, _: &[HostTensor]) -> Vec<usize> {
        vec![self.pairs(), self.n]
    }

    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        let rows = self.experts * self.n;
        let w = dequantized(self.ggml_type, rows, self.k, &inputs[0], &inputs[1]);
        let (ids, x, weights, other) = (
            &inputs[2].data,
            &inputs[3].data,
            &inputs[4].data,
            &inputs[5].data,
        );
        let shape = (self.n, self.k, self.top_k);
        let weights = self.weighted.then_some(weights.as_slice());
        super::moe::expert_reference(&w, ids, x, shape, weights, self.epilogue, other)
    }

    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>> {
        let w = PackedView {
            ggml_type: self.ggml_type,
            rows: self.experts * self.n,
            cols: self.k,
            scales: &inputs[0],
            quants: &inputs[1],
        };
        let weights = self.weighted.then(|| &inputs[4]);
        let epilogue = Epilogue::new(self.epilogue, &inputs[5]);
        packed::expert_gemv(
            gpu,
            w,
            self.experts,
            &inputs[2],
            &inputs[3],
            self.top_k,
            weights,
            epilogue,
            out,
        )
    }
}
