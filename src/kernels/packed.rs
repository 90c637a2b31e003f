//! Linear layers with block-quantized weights kept packed on the GPU: a GEMV for decode
//! (`shaders/gemv_quant.wgsl`) and a tiled matmul for prompts (`shaders/matmul_quant.wgsl`),
//! both decoding the blocks in registers (`shaders/lib/quant_blocks.wgsl`) and fusing the
//! bias and the matmul epilogues. Every block type [`quant::packed_format`] lays out reads
//! through them: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K — a quarter to a half of
//! f16's bytes. The weight is a [`PackedWeight`]: the re-laid blocks of [`quant::relay`].
//! An embedding kept packed is read by [`gather`] (`shaders/gather_quant.wgsl`).

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::matmul::Epilogue;
use crate::kernels::moe::{check_expert_operands, spares};
use crate::kernels::quant::{self, GgmlType, PackedFormat, Relaid};
use crate::kernels::{KernelCall, expect_shape, prepare, same_dtype, to_u32};
use crate::tensor::{DType, Tensor};

const QUANT_BLOCKS: &str = include_str!("../../shaders/lib/quant_blocks.wgsl");
const EPILOGUE: &str = include_str!("../../shaders/lib/epilogue.wgsl");
const LINEAR: &str = include_str!("../../shaders/lib/packed_linear.wgsl");
const ROW: &str = include_str!("../../shaders/lib/packed_row.wgsl");

const GEMV: ShaderSource = ShaderSource {
    name: "gemv_quant.wgsl",
    body: include_str!("../../shaders/gemv_quant.wgsl"),
    library: &[LINEAR, QUANT_BLOCKS, ROW, EPILOGUE],
};
const MATMUL: ShaderSource = ShaderSource {
    name: "matmul_quant.wgsl",
    body: include_str!("../../shaders/matmul_quant.wgsl"),
    library: &[LINEAR, QUANT_BLOCKS, EPILOGUE],
};
const GATHER: ShaderSource = ShaderSource {
    name: "gather_quant.wgsl",
    body: include_str!("../../shaders/gather_quant.wgsl"),
    library: &[QUANT_BLOCKS],
};
const EXPERTS: ShaderSource = ShaderSource {
    name: "moe_quant.wgsl",
    body: include_str!("../../shaders/moe_quant.wgsl"),
    library: &[QUANT_BLOCKS, ROW, EPILOGUE],
};
const GEMV_WG: u32 = 256;
const GATHER_WG: u32 = 256;
/// Output rows per GEMV workgroup (the workgroup over the shader's LANES).
const GEMV_ROWS: u32 = GEMV_WG / 32;
/// The matmul's output tile edge.
const TILE: u32 = 64;
/// Rows of x from which [`linear`] takes the matmul: below it, re-reading W once per row
/// costs less than the matmul's mostly empty tiles.
pub const MATMUL_FROM_ROWS: usize = 4;

/// The kernel a packed linear layer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackedKernel {
    /// One GEMV per row of x, fused in one dispatch (grid z).
    Gemv,
    /// The tiled matmul.
    Matmul,
}

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
        quant::packed_format(t)?;
        Ok(PackedWeight {
            ggml_type: t,
            rows: r.rows,
            cols: r.cols,
            scales: Tensor::from_u32(gpu, &[r.rows, quant::scale_words(t, r.cols)], &r.scales)?,
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

/// A packed weight's tensors, borrowed: what the kernels bind.
#[derive(Clone, Copy)]
pub struct PackedView<'a> {
    pub ggml_type: GgmlType,
    pub rows: usize,
    pub cols: usize,
    /// `[rows, scale_words(cols)]` u32
    pub scales: &'a Tensor,
    /// `[rows · blocks · quant words]` u32
    pub quants: &'a Tensor,
}

/// `shaders/lib/packed_linear.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LinearParams {
    m: u32,
    n: u32,
    k: u32,
    blocks: u32,
    scale_words: u32,
    has_bias: u32,
    epilogue: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GatherParams {
    n: u32,
    width: u32,
    row_start: u32,
    table_rows: u32,
    blocks: u32,
    scale_words: u32,
    pad: [u32; 2],
}

/// The override constants that tell `quant_blocks.wgsl` the block type.
fn format_overrides(t: GgmlType) -> Result<[(&'static str, u32); 4]> {
    let f = quant::packed_format(t)?;
    Ok([
        ("QTYPE", t.id()),
        ("QK", f.block as u32),
        ("HEAD", f.head_bytes as u32),
        ("QWORDS", f.quant_words as u32),
    ])
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ExpertParams {
    n: u32,
    k: u32,
    blocks: u32,
    scale_words: u32,
    x_div: u32,
    weighted: u32,
    epilogue: u32,
    pad: u32,
}

fn expert_key(t: GgmlType, dtype: DType) -> Result<PipelineKey> {
    let mut overrides = format_overrides(t)?.to_vec();
    overrides.push(("WG", GEMV_WG));
    Ok(PipelineKey::new(
        EXPERTS,
        "moe_gemv_quant",
        dtype,
        &overrides,
    ))
}

fn gather_key(t: GgmlType, dtype: DType) -> Result<PipelineKey> {
    let mut overrides = format_overrides(t)?.to_vec();
    overrides.push(("WG", GATHER_WG));
    Ok(PipelineKey::new(GATHER, "gather_quant", dtype, &overrides))
}

fn key(kernel: PackedKernel, t: GgmlType, dtype: DType) -> Result<PipelineKey> {
    let format = format_overrides(t)?;
    Ok(match kernel {
        PackedKernel::Gemv => {
            let mut overrides = format.to_vec();
            overrides.push(("WG", GEMV_WG));
            PipelineKey::new(GEMV, "gemv_quant", dtype, &overrides)
        }
        PackedKernel::Matmul => PipelineKey::new(MATMUL, "matmul_quant", dtype, &format),
    })
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    let mut keys = Vec::new();
    for t in GgmlType::PACKED {
        for kernel in [PackedKernel::Gemv, PackedKernel::Matmul] {
            for dtype in [DType::F32, DType::F16] {
                keys.push(key(kernel, t, dtype).expect("packed types have a format"));
            }
        }
        for dtype in [DType::F32, DType::F16] {
            keys.push(gather_key(t, dtype).expect("packed types have a format"));
            keys.push(expert_key(t, dtype).expect("packed types have a format"));
        }
    }
    keys
}

/// Checks `w`'s tensors against its type and shape; the format and sizes the kernels take.
fn check_weight(op: &'static str, w: &PackedView<'_>) -> Result<(PackedFormat, u32, u32)> {
    let f = quant::packed_format(w.ggml_type)?;
    let scale_words = quant::scale_words(w.ggml_type, w.cols);
    let quant_words = w.rows * (w.cols / f.block) * f.quant_words;
    if !w.cols.is_multiple_of(f.block)
        || w.scales.dtype() != DType::U32
        || w.quants.dtype() != DType::U32
        || w.scales.shape() != [w.rows, scale_words]
        || w.quants.len() != quant_words
    {
        return Err(Error::shape(
            op,
            format!(
                "a packed [{}, {}] {:?} weight needs whole {}-element blocks, u32 scales \
                 [{}, {scale_words}] and {quant_words} quant words",
                w.rows, w.cols, w.ggml_type, f.block, w.rows
            ),
        ));
    }
    let blocks = to_u32(op, "blocks", w.cols / f.block)?;
    let scale_words = to_u32(op, "scale words", scale_words)?;
    // Word offsets within the bound tensors must fit the shaders' u32 indices.
    to_u32(op, "quant words", quant_words)?;
    Ok((f, blocks, scale_words))
}

/// `y = x · Wᵀ (+ bias)`, then `epilogue`, for a packed `[N, K]` weight: `x` `[M, K]`, `y`
/// `[M, N]` (and the epilogue's operand), `bias` `[N]`, all in one float dtype. `kernel`
/// picks the GEMV or the matmul (see [`linear`] for the usual choice).
#[allow(clippy::too_many_arguments)]
pub fn packed_linear<'a>(
    gpu: &Gpu,
    kernel: PackedKernel,
    x: &'a Tensor,
    w: PackedView<'a>,
    bias: Option<&'a Tensor>,
    epilogue: Epilogue<'a>,
    y: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = match kernel {
        PackedKernel::Gemv => "quantized gemv",
        PackedKernel::Matmul => "quantized matmul",
    };
    let mut operands = vec![x, y];
    operands.extend(bias);
    operands.extend(epilogue.tensor());
    let dtype = same_dtype(op, &operands)?;
    if dtype == DType::U32 {
        return Err(Error::DType {
            op,
            detail: "x and y must be f32 or f16, not u32".into(),
        });
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
    if let Some(bias) = bias {
        expect_shape(op, "bias", bias, &[w.rows])?;
    }
    if let Some(other) = epilogue.tensor() {
        expect_shape(op, "epilogue operand", other, &[m, w.rows])?;
    }
    let (_, blocks, scale_words) = check_weight(op, &w)?;
    let n = to_u32(op, "N", w.rows)?;
    let k = to_u32(op, "K", w.cols)?;
    let rows = to_u32(op, "rows of x", m)?;
    to_u32(op, "output length", m * w.rows)?;
    // Unused bindings (bias, the epilogue's operand) are bound to a spare the shaders never
    // read.
    let spare = if bias.is_none() || epilogue.tensor().is_none() {
        Some(Tensor::empty(gpu, &[1], dtype)?)
    } else {
        None
    };
    let spare_or = |t: Option<&'a Tensor>| t.or(spare.as_ref()).expect("spare made when needed");
    let tensors = [
        (1, x),
        (2, w.scales),
        (3, w.quants),
        (4, y),
        (5, spare_or(bias)),
        (6, spare_or(epilogue.tensor())),
    ];
    let params = LinearParams {
        m: rows,
        n,
        k,
        blocks,
        scale_words,
        has_bias: u32::from(bias.is_some()),
        epilogue: epilogue.kind().code(),
        pad: 0,
    };
    let max_groups = gpu.limits().max_compute_workgroups_per_dimension;
    let call = match kernel {
        PackedKernel::Gemv => {
            let [gx, gy, _] = gpu.grid(op, u64::from(n.div_ceil(GEMV_ROWS)))?;
            if rows > max_groups {
                return Err(Error::TooManyWorkgroups {
                    what: format!("{op} over {rows} rows"),
                    groups: u64::from(rows),
                    limit: max_groups,
                });
            }
            let key = key(kernel, w.ggml_type, dtype)?;
            prepare(gpu, &key, &params, &tensors, [gx, gy, rows])?
        }
        PackedKernel::Matmul => {
            let (col_tiles, row_tiles) = (n.div_ceil(TILE), rows.div_ceil(TILE));
            if col_tiles > max_groups || row_tiles > max_groups {
                return Err(Error::TooManyWorkgroups {
                    what: format!("{op} of [{m}, {}]", w.rows),
                    groups: u64::from(col_tiles.max(row_tiles)),
                    limit: max_groups,
                });
            }
            let key = key(kernel, w.ggml_type, dtype)?;
            prepare(gpu, &key, &params, &tensors, [col_tiles, row_tiles, 1])?
        }
    };
    Ok(call.owning(spare))
}

/// [`packed_linear`] with the kernel chosen by the rows of x: the GEMV below
/// [`MATMUL_FROM_ROWS`], the matmul from there.
pub fn linear<'a>(
    gpu: &Gpu,
    x: &'a Tensor,
    w: PackedView<'a>,
    bias: Option<&'a Tensor>,
    epilogue: Epilogue<'a>,
    y: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let rows = x.shape().first().copied().unwrap_or(0);
    let kernel = if rows >= MATMUL_FROM_ROWS {
        PackedKernel::Matmul
    } else {
        PackedKernel::Gemv
    };
    packed_linear(gpu, kernel, x, w, bias, epilogue, y)
}

/// `out[r] = table[ids[r] - row_start]`, dequantized, for the ids that fall in this part of
/// a packed table (`row_start .. row_start + table.rows`); other rows of `out` are left as
/// they are. `ids`: `[n]` u32; `out`: `[n, table.cols]` (f32 or f16).
pub fn gather<'a>(
    gpu: &Gpu,
    ids: &'a Tensor,
    table: PackedView<'a>,
    row_start: usize,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "quantized gather";
    if ids.dtype() != DType::U32 {
        return Err(Error::DType {
            op,
            detail: format!("ids must be u32, not {}", ids.dtype()),
        });
    }
    let dtype = out.dtype();
    if dtype == DType::U32 {
        return Err(Error::DType {
            op,
            detail: "the output must be f32 or f16, not u32".into(),
        });
    }
    let n = ids.len();
    let width = table.cols;
    if out.len() != n * width {
        return Err(Error::shape(
            op,
            format!(
                "{n} ids of rows of {width} need {} outputs, {out:?} has {}",
                n * width,
                out.len()
            ),
        ));
    }
    let (_, blocks, scale_words) = check_weight(op, &table)?;
    let params = GatherParams {
        n: to_u32(op, "ids", n)?,
        width: to_u32(op, "width", width)?,
        row_start: to_u32(op, "row_start", row_start)?,
        table_rows: to_u32(op, "rows", table.rows)?,
        blocks,
        scale_words,
        pad: [0; 2],
    };
    to_u32(op, "output length", n * width)?;
    let chunks = (n * width / 8) as u64;
    let grid = gpu.grid(op, chunks.div_ceil(u64::from(GATHER_WG)))?;
    let tensors = [(1, ids), (2, table.scales), (3, table.quants), (4, out)];
    prepare(
        gpu,
        &gather_key(table.ggml_type, dtype)?,
        &params,
        &tensors,
        grid,
    )
}

/// The mixture-of-experts expert GEMV ([`crate::kernels::moe::expert_gemv`]) with the
/// experts kept packed: `w` is the experts' `[n, k]` matrices stacked as one packed
/// `[experts · n, k]` weight; per pair `p`, `y[p] = W_{ids[p]} · x[p / x_div]`, times
/// `weights[p]` where given, then `epilogue`. Only the chosen experts' blocks are read.
#[allow(clippy::too_many_arguments)]
pub fn expert_gemv<'a>(
    gpu: &Gpu,
    w: PackedView<'a>,
    experts: usize,
    ids: &'a Tensor,
    x: &'a Tensor,
    x_div: usize,
    weights: Option<&'a Tensor>,
    epilogue: Epilogue<'a>,
    y: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let op = "quantized moe expert gemv";
    let mut operands = vec![x, y];
    operands.extend(epilogue.tensor());
    let dtype = same_dtype(op, &operands)?;
    if dtype == DType::U32 {
        return Err(Error::DType {
            op,
            detail: "x and y must be f32 or f16".into(),
        });
    }
    let (f, blocks, scale_words) = check_weight(op, &w)?;
    let k = w.cols;
    let n = check_expert_operands(
        op,
        experts,
        (w.rows, k),
        ids,
        x_div,
        x,
        weights,
        &epilogue,
        y,
    )?;
    let pairs = ids.len();
    let pairs_u32 = to_u32(op, "pairs", pairs)?;
    let limit = gpu.limits().max_compute_workgroups_per_dimension;
    if pairs_u32 > limit {
        return Err(Error::TooManyWorkgroups {
            what: format!("{op} over {pairs} pairs"),
            groups: u64::from(pairs_u32),
            limit,
        });
    }
    let params = ExpertParams {
        n: to_u32(op, "n", n)?,
        k: to_u32(op, "k", k)?,
        blocks,
        scale_words,
        x_div: to_u32(op, "x_div", x_div)?,
        weighted: u32::from(weights.is_some()),
        epilogue: epilogue.kind().code(),
        pad: 0,
    };
    let (spare_f32, spare) = spares(gpu, dtype, weights, &epilogue)?;
    let weights = weights
        .or(spare_f32.as_ref())
        .expect("a spare when no weights");
    let other = epilogue
        .tensor()
        .or(spare.as_ref())
        .expect("a spare when no operand");
    let [gx, gy, _] = gpu.grid(op, u64::from(params.n.div_ceil(GEMV_ROWS)))?;
    let tensors = [
        (1, x),
        (2, w.scales),
        (3, w.quants),
        (4, y),
        (5, ids),
        (6, other),
        (7, weights),
    ];
    let key = expert_key(w.ggml_type, dtype)?;
    let call = prepare(gpu, &key, &params, &tensors, [gx, gy, pairs_u32])?;
    // Each pair reads its expert's n rows of blocks.
    let block_bytes = w.ggml_type.block().1;
    let read = (pairs * n * (k / f.block)) as u64 * block_bytes;
    Ok(call
        .owning(spare_f32.into_iter().chain(spare))
        .reading(read))
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
