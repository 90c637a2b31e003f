//! Matrix-vector products with block-quantized weights kept packed on the GPU
//! (`shaders/gemv_quant.wgsl`): the decode projection when a checkpoint's weights are Q8_0,
//! Q4_0, Q4_K or Q6_K, reading about a quarter to a half of f16's bytes. The weight is a [`PackedWeight`]: the
//! re-laid blocks of [`super::quant::relay`].

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::quant::{GgmlType, Relaid, packed_quant_words, scale_words};
use crate::kernels::{KernelCall, expect_shape, prepare, to_u32};
use crate::tensor::{DType, Tensor};

const SHADER: ShaderSource = ShaderSource {
    name: "gemv_quant.wgsl",
    body: include_str!("../../shaders/gemv_quant.wgsl"),
    library: &[],
};
const WG: u32 = 256;
/// Output rows per workgroup (WG / the shader's LANES).
const ROWS: u32 = WG / 32;

/// A `[rows, cols]` quantized weight on the device.
pub struct PackedWeight {
    pub ggml_type: GgmlType,
    pub rows: usize,
    pub cols: usize,
    /// `[rows, scale_words]` u32
    pub scales: Tensor,
    /// `[rows · blocks · quant_words]` u32
    pub quants: Tensor,
}

impl PackedWeight {
    /// Uploads re-laid blocks of type `t`.
    pub fn upload(gpu: &Gpu, t: GgmlType, r: &Relaid) -> Result<PackedWeight> {
        packed_quant_words(t)
            .ok_or_else(|| Error::Invalid(format!("no packed kernel reads {t:?} yet")))?;
        Ok(PackedWeight {
            ggml_type: t,
            rows: r.rows,
            cols: r.cols,
            scales: Tensor::from_u32(gpu, &[r.rows, scale_words(t, r.cols)], &r.scales)?,
            quants: Tensor::from_u32(gpu, &[r.quants.len()], &r.quants)?,
        })
    }

    pub fn view(&self) -> PackedView<'_> {
        PackedView {
            ggml_type: self.ggml_type,
            rows: self.rows,
            cols: self.cols,
            scales: &self.scales,
            quants: &self.quants,
        }
    }
}

/// A packed weight's tensors, borrowed: what [`gemv_quant`] binds.
#[derive(Clone, Copy)]
pub struct PackedView<'a> {
    pub ggml_type: GgmlType,
    pub rows: usize,
    pub cols: usize,
    /// `[rows, scale_words(cols)]` u32
    pub scales: &'a Tensor,
    /// `[rows · cols / 32 · quant words]` u32
    pub quants: &'a Tensor,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    k: u32,
    blocks: u32,
    scale_words: u32,
}

fn entry(t: GgmlType) -> Option<&'static str> {
    match t {
        GgmlType::Q8_0 => Some("gemv_q8_0"),
        GgmlType::Q4_0 => Some("gemv_q4_0"),
        GgmlType::Q4_K => Some("gemv_q4_k"),
        GgmlType::Q6_K => Some("gemv_q6_k"),
        _ => None,
    }
}

fn key(t: GgmlType, dtype: DType) -> Option<PipelineKey> {
    entry(t).map(|e| PipelineKey::new(SHADER, e, dtype, &[("WG", WG)]))
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ]
    .into_iter()
    .flat_map(|t| [DType::F32, DType::F16].map(|d| key(t, d).expect("packed types")))
    .collect()
}

/// `y = x · Wᵀ` for a packed `[N, K]` weight: `x` `[M, K]`, `y` `[M, N]`, both in the same
/// float dtype. Each of the M rows is one GEMV (decode has M = 1; a prefill re-reads W per
/// token, which a packed matmul would not).
pub fn gemv_quant<'a>(
    gpu: &Gpu,
    x: &'a Tensor,
    w: PackedView<'a>,
    y: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "quantized gemv";
    let dtype = x.dtype();
    if dtype == DType::U32 || y.dtype() != dtype {
        return Err(Error::shape(
            op,
            format!(
                "x and y must share a float dtype, not {dtype} and {}",
                y.dtype()
            ),
        ));
    }
    let m = match x.shape() {
        [m, k] if *k == w.cols => *m,
        other => {
            return Err(Error::shape(
                op,
                format!("x is {other:?}; the weight takes [rows, {}]", w.cols),
            ));
        }
    };
    expect_shape(op, "y", y, &[m, w.rows])?;
    let key = key(w.ggml_type, dtype)
        .ok_or_else(|| Error::Invalid(format!("no packed kernel reads {:?}", w.ggml_type)))?;
    let words = packed_quant_words(w.ggml_type).unwrap_or(0);
    let block = w.ggml_type.block().0 as usize;
    let scale_words = scale_words(w.ggml_type, w.cols);
    if !w.cols.is_multiple_of(block)
        || w.scales.dtype() != DType::U32
        || w.quants.dtype() != DType::U32
        || w.scales.shape() != [w.rows, scale_words]
        || w.quants.len() != w.rows * (w.cols / block) * words
    {
        return Err(Error::shape(
            op,
            format!(
                "a packed [{}, {}] {:?} weight needs u32 scales [{}, {}] and {} quant words",
                w.rows,
                w.cols,
                w.ggml_type,
                w.rows,
                scale_words,
                w.rows * (w.cols / block) * words
            ),
        ));
    }
    let params = Params {
        n: to_u32(op, "N", w.rows)?,
        k: to_u32(op, "K", w.cols)?,
        blocks: to_u32(op, "blocks", w.cols / block)?,
        scale_words: to_u32(op, "scale words", scale_words)?,
    };
    let [gx, gy, _] = gpu.grid(op, u64::from(params.n.div_ceil(ROWS)))?;
    let rows = to_u32(op, "rows of x", m)?;
    let max_z = gpu.limits().max_compute_workgroups_per_dimension;
    if rows > max_z {
        return Err(Error::TooManyWorkgroups {
            what: format!("{op} over {rows} rows"),
            groups: u64::from(rows),
            limit: max_z,
        });
    }
    let tensors = [(1, x), (2, w.scales), (3, w.quants), (4, y)];
    prepare(gpu, &key, &params, &tensors, [gx, gy, rows])
}

/// f64 reference: `x · Wᵀ` with `W` the dequantized `[n, k]` weight and `x` `[m, k]`
/// (row-major).
pub fn reference(w: &[f64], x: &[f64], n: usize, k: usize) -> Vec<f64> {
    x.chunks(k)
        .flat_map(|x| {
            (0..n).map(move |row| {
                w[row * k..(row + 1) * k]
                    .iter()
                    .zip(x)
                    .map(|(a, b)| a * b)
                    .sum()
            })
        })
        .collect()
}
