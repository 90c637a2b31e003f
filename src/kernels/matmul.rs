//! Matrix multiplication `C = A·B (+ bias)`: a tiled, register-blocked kernel
//! (`shaders/matmul.wgsl`) and, for M = 1, a matrix-vector kernel (`shaders/gemv.wgsl`).
//!
//! Shapes: `a` is `[..., M, K]`. `b` is `[K, N]` or `[N, K]` ([`BLayout`]), either shared by
//! every matrix of `a` (rank 2) or one per matrix (`[..., K, N]` with `a`'s leading
//! dimensions). `bias` is `[N]`. `out` is `[..., M, N]`. A shared `b` folds `a`'s leading
//! dimensions into M, so `[batch, seq, K] · [N, K]ᵀ` is one `(batch·seq) × N × K` product.

use crate::error::{Error, Result};
use crate::gpu::{CoopFacts, Gpu, PipelineKey, ShaderSource, Tunable};
use crate::kernels::{
    CoopRequest, KernelCall, coop_choice, expect_shape, prepare, same_dtype, to_u32,
};
use crate::tensor::{DType, Tensor};

/// The fused epilogue every matmul kernel shares, and the tiled kernels' parameters.
const EPILOGUE: &str = include_str!("../../shaders/lib/epilogue.wgsl");
const TILED_PARAMS: &str = include_str!("../../shaders/lib/matmul_params.wgsl");
/// The cooperative-matrix GEMM tile the coop matmul and conv2d share.
pub(crate) const COOP_GEMM: &str = include_str!("../../shaders/lib/coop_gemm.wgsl");

const MATMUL: ShaderSource = ShaderSource {
    name: "matmul.wgsl",
    body: include_str!("../../shaders/matmul.wgsl"),
    library: &[TILED_PARAMS, EPILOGUE],
};
const MATMUL_WIDE: ShaderSource = ShaderSource {
    name: "matmul_wide.wgsl",
    body: include_str!("../../shaders/matmul_wide.wgsl"),
    library: &[TILED_PARAMS, EPILOGUE],
};
const MATMUL_COOP: ShaderSource = ShaderSource {
    name: "matmul_coop.wgsl",
    body: include_str!("../../shaders/matmul_coop.wgsl"),
    library: &[TILED_PARAMS, EPILOGUE, COOP_GEMM],
};
/// The output tile of `matmul_wide.wgsl` (16 × 16 invocations, 8 × 8 each).
const WIDE_TILE: u32 = 128;
const GEMV: ShaderSource = ShaderSource {
    name: "gemv.wgsl",
    body: include_str!("../../shaders/gemv.wgsl"),
    library: &[EPILOGUE],
};

/// Register block per invocation (the shader's `TM`, `TN`) and workgroup shape.
const TM: u32 = 4;
const TN: u32 = 4;
const WG_M: u32 = 16;
const WG_N: u32 = 16;
const TILE_K: u32 = 16;
const GEMV_WG: u32 = 256;
/// Outputs per workgroup of `gemv_nk` (WG / LANES) and `gemv_kn` (COLS).
const GEMV_NK_ROWS: u32 = GEMV_WG / 32;
const GEMV_KN_COLS: u32 = 64;

/// How the right-hand operand is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum BLayout {
    /// `[K, N]`, row-major.
    KN,
    /// `[N, K]`: the layout of a checkpoint's `Linear` weight (`[out, in]`).
    NK,
}

impl BLayout {
    pub fn name(self) -> &'static str {
        match self {
            BLayout::KN => "kn",
            BLayout::NK => "nk",
        }
    }
}

/// Which kernel computes the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// GEMV when M = 1; else, for products that fill a 128 × 128 tile, the wide kernel or
    /// (f16, where the adapter has cooperative matrices and `tessera tune` measured it
    /// faster) the cooperative one; else the tiled one.
    Auto,
    /// 64 × 64 tiles, 4 × 4 per invocation.
    Tiled,
    /// 128 × 128 tiles, 8 × 8 per invocation: fewer workgroup-memory reads per FMA.
    Wide,
    /// 8F × 8F tiles on the adapter's F × F cooperative matrices (tensor cores), f16 only,
    /// where [`Gpu::cooperative_f16`] finds them.
    Coop,
    /// Only for M = 1.
    Gemv,
    /// The tiled kernel with tiles of 4 × 256 (M ≤ 4) or 16 × 64 outputs: few rows.
    Short,
    /// The GEMV over several rows (M ≤ [`GEMV_ROWS_MAX`], a `[N, K]` weight, no batch): each
    /// group of four rows reads the weight once. [`Path::Auto`] takes it for 2 ≤ M ≤ 16.
    GemvRows,
}

/// The most rows [`Path::GemvRows`] takes (beyond, the tiled kernels' reuse wins).
pub const GEMV_ROWS_MAX: usize = 16;
/// Rows of x per `gemv_nk_rows` workgroup (the shader's `ROWS`).
const GEMV_ROWS_GROUP: usize = 4;

/// What a matmul does to each output value after the product and the bias, fused into its
/// store, without its operand: see [`Epilogue`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EpilogueKind {
    #[default]
    None,
    /// `out = other + v`: a residual connection.
    Add,
    /// `out = silu(other) · v`: SwiGLU, with the gate projection in `other`.
    SiluMul,
    /// `out = gelu_tanh(other) · v`: GeGLU (Gemma), with the gate projection in `other`.
    GeluTanhMul,
}

impl EpilogueKind {
    pub const ALL: [EpilogueKind; 4] = [
        EpilogueKind::None,
        EpilogueKind::Add,
        EpilogueKind::SiluMul,
        EpilogueKind::GeluTanhMul,
    ];

    /// The shaders' `p.epilogue` (shaders/lib/epilogue.wgsl).
    pub(crate) fn code(self) -> u32 {
        match self {
            EpilogueKind::None => 0,
            EpilogueKind::Add => 1,
            EpilogueKind::SiluMul => 2,
            EpilogueKind::GeluTanhMul => 3,
        }
    }

    /// f64 reference: `v` is the product plus bias, `other` the epilogue's operand there.
    pub fn reference(self, v: f64, other: f64) -> f64 {
        match self {
            EpilogueKind::None => v,
            EpilogueKind::Add => other + v,
            EpilogueKind::SiluMul => other / (1.0 + (-other).exp()) * v,
            EpilogueKind::GeluTanhMul => {
                let u = (2.0 / std::f64::consts::PI).sqrt() * (other + 0.044715 * other.powi(3));
                0.5 * other * (1.0 + u.tanh()) * v
            }
        }
    }
}

/// A fused epilogue with its operand, which has the output's shape.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    None,
    /// `out = other + a·b`: a residual connection.
    Add(&'a Tensor),
    /// `out = silu(other) · (a·b)`: SwiGLU, with the gate projection in `other`.
    SiluMul(&'a Tensor),
    /// `out = gelu_tanh(other) · (a·b)`: GeGLU, with the gate projection in `other`.
    GeluTanhMul(&'a Tensor),
}

impl<'a> Epilogue<'a> {
    /// `kind` applied with `other` (unused for [`EpilogueKind::None`]).
    pub fn new(kind: EpilogueKind, other: &'a Tensor) -> Self {
        match kind {
            EpilogueKind::None => Epilogue::None,
            EpilogueKind::Add => Epilogue::Add(other),
            EpilogueKind::SiluMul => Epilogue::SiluMul(other),
            EpilogueKind::GeluTanhMul => Epilogue::GeluTanhMul(other),
        }
    }

    pub fn kind(&self) -> EpilogueKind {
        match self {
            Epilogue::None => EpilogueKind::None,
            Epilogue::Add(_) => EpilogueKind::Add,
            Epilogue::SiluMul(_) => EpilogueKind::SiluMul,
            Epilogue::GeluTanhMul(_) => EpilogueKind::GeluTanhMul,
        }
    }

    fn code(&self) -> u32 {
        self.kind().code()
    }

    pub(crate) fn tensor(&self) -> Option<&'a Tensor> {
        match *self {
            Epilogue::None => None,
            Epilogue::Add(t) | Epilogue::SiluMul(t) | Epilogue::GeluTanhMul(t) => Some(t),
        }
    }
}

/// The tiled kernels, as chosen for one call.
enum TiledKernel {
    Small,
    /// 16 × 64 tiles: few rows (a decode step of several sequences).
    Short,
    Wide,
    /// On the adapter's cooperative matrices.
    Coop(CoopFacts),
}

/// The problem a matmul call solves, after shape checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// Number of independent products (1 when `b` is shared).
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub layout: BLayout,
    pub bias: bool,
}

impl Dims {
    /// Multiply-adds counted as two FLOPs each, plus the bias adds.
    pub fn flops(&self) -> f64 {
        let (b, m, n, k) = (
            self.batch as f64,
            self.m as f64,
            self.n as f64,
            self.k as f64,
        );
        b * m * n * (2.0 * k + if self.bias { 1.0 } else { 0.0 })
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct TiledParams {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    batch_stride_a: u32,
    batch_stride_b: u32,
    batch_stride_c: u32,
    epilogue: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GemvParams {
    n: u32,
    k: u32,
    has_bias: u32,
    epilogue: u32,
    batch_stride_x: u32,
    batch_stride_w: u32,
    batch_stride_y: u32,
    eps: f32,
    rows: u32,
    _pad: [u32; 3],
}

fn tiled_key(dtype: DType, layout: BLayout) -> PipelineKey {
    let b_nk = u32::from(layout == BLayout::NK);
    let overrides = [
        ("WG_M", WG_M),
        ("WG_N", WG_N),
        ("TILE_K", TILE_K),
        ("B_NK", b_nk),
    ];
    PipelineKey::new(MATMUL, "matmul", dtype, &overrides)
}

/// Invocation rows of the short tiled variant's 16-row tiles.
const SHORT_WG_M: u32 = 4;

/// The short tiles' invocation grid (rows, columns) for `m` rows: 4 × 256 tiles up to four
/// rows, 16 × 64 beyond.
fn short_wg(m: u32) -> (u32, u32) {
    if m <= TM { (1, 64) } else { (SHORT_WG_M, WG_N) }
}

/// Whether few-row products ([`Path::Auto`] with 2 ≤ M ≤ [`GEMV_ROWS_MAX`]) take the short
/// tiles rather than the multi-row GEMV: on CPU adapters, where arithmetic bounds a decode
/// step and the tiles' register blocking does more per load (on lavapipe, 16 rows cost 4×
/// one row with short tiles and 14× with the multi-row GEMV); on GPUs, where a decode step
/// is bound by reading the weights, the GEMV reads them once per four rows over N/8
/// workgroups.
fn few_rows_on_cpu(gpu: &Gpu) -> bool {
    gpu.report().device_type == "Cpu"
}

fn short_key(dtype: DType, layout: BLayout, (wg_m, wg_n): (u32, u32)) -> PipelineKey {
    let b_nk = u32::from(layout == BLayout::NK);
    let overrides = [
        ("WG_M", wg_m),
        ("WG_N", wg_n),
        ("TILE_K", TILE_K),
        ("B_NK", b_nk),
    ];
    PipelineKey::new(MATMUL, "matmul", dtype, &overrides)
}

fn wide_key(dtype: DType, layout: BLayout) -> PipelineKey {
    let b_nk = u32::from(layout == BLayout::NK);
    PipelineKey::new(MATMUL_WIDE, "matmul_wide", dtype, &[("B_NK", b_nk)])
}

/// The `gemv_nk` / `gemv_nk_norm` variant: `packed` reads W eight elements per load.
fn gemv_nk_key(entry: &'static str, dtype: DType, packed: bool) -> PipelineKey {
    let overrides = [("WG", GEMV_WG), ("PACKED", u32::from(packed))];
    PipelineKey::new(GEMV, entry, dtype, &overrides)
}

/// Elements per load of the packed GEMV (a `mat2x4`).
const GEMV_PACK: usize = 8;

/// Whether a GEMV can read `w` (`k` columns per row) eight elements at a time.
fn gemv_can_pack(w: &Tensor, k: usize) -> bool {
    k.is_multiple_of(GEMV_PACK) && w.offset().is_multiple_of(16)
}

fn coop_key(layout: BLayout, coop: CoopFacts) -> PipelineKey {
    let b_nk = u32::from(layout == BLayout::NK);
    coop_key_for(MATMUL_COOP, "matmul_coop", &[("B_NK", b_nk)], coop)
}

/// The f16 variant of a shader built on shaders/lib/coop_gemm.wgsl, for `coop`'s fragment
/// and subgroup sizes, with its own `overrides`.
pub(crate) fn coop_key_for(
    shader: ShaderSource,
    entry: &'static str,
    overrides: &[(&'static str, u32)],
    coop: CoopFacts,
) -> PipelineKey {
    let mut all = overrides.to_vec();
    all.push(("WG", COOP_SUBGROUPS * coop.subgroup));
    PipelineKey::new(shader, entry, DType::F16, &all).with_coop_fragment(coop.fragment)
}

/// Subgroups per workgroup of shaders/lib/coop_gemm.wgsl.
const COOP_SUBGROUPS: u32 = 8;

/// The output tile of shaders/lib/coop_gemm.wgsl for fragment size `f` (8 × 8 fragments).
pub(crate) fn coop_tile(f: u32) -> u32 {
    8 * f
}

/// The adapter's cooperative matrices, if shaders/lib/coop_gemm.wgsl fits its workgroup
/// limits: eight subgroups, and A, B (f16) and staging (f32) tiles of 96·F² bytes.
pub(crate) fn coop_gemm_facts(gpu: &Gpu) -> Result<CoopFacts> {
    let missing = |feature: &'static str| Error::MissingFeature {
        what: "the cooperative-matrix GEMM".into(),
        feature,
        adapter: gpu.report().name.clone(),
    };
    let coop = gpu.cooperative_f16().map_err(missing)?;
    let limits = gpu.limits();
    let invocations = COOP_SUBGROUPS * coop.subgroup;
    if invocations > limits.max_compute_invocations_per_workgroup
        || invocations > limits.max_compute_workgroup_size_x
        || 96 * coop.fragment * coop.fragment > limits.max_compute_workgroup_storage_size
    {
        return Err(missing(
            "eight subgroups and 96·F² bytes of workgroup memory per workgroup",
        ));
    }
    Ok(coop)
}

fn gemv_kn_key(dtype: DType) -> PipelineKey {
    PipelineKey::new(GEMV, "gemv_kn", dtype, &[("WG", GEMV_WG)])
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    let mut keys = Vec::new();
    for dtype in DType::ALL {
        for layout in [BLayout::KN, BLayout::NK] {
            keys.push(tiled_key(dtype, layout));
            for m in [TM, TM * SHORT_WG_M] {
                keys.push(short_key(dtype, layout, short_wg(m)));
            }
            keys.push(wide_key(dtype, layout));
        }
        keys.push(gemv_kn_key(dtype));
        for entry in ["gemv_nk", "gemv_nk_norm", "gemv_nk_rows"] {
            for packed in [false, true] {
                keys.push(gemv_nk_key(entry, dtype, packed));
            }
        }
    }
    for layout in [BLayout::KN, BLayout::NK] {
        for (fragment, subgroup) in [(8, 8), (16, 32)] {
            keys.push(coop_key(layout, CoopFacts { fragment, subgroup }));
        }
    }
    keys
}

/// Checks the operands' shapes and works out the problem size.
pub fn dims(
    a: &Tensor,
    b: &Tensor,
    layout: BLayout,
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<Dims> {
    let op = "matmul";
    let (a_shape, b_shape) = (a.shape(), b.shape());
    if a_shape.len() < 2 || b_shape.len() < 2 {
        return Err(Error::shape(
            op,
            format!("a {a_shape:?} and b {b_shape:?} must both have at least 2 dimensions"),
        ));
    }
    let (lead, [m, k]) = split_matrix(a_shape);
    let (b_lead, [b0, b1]) = split_matrix(b_shape);
    let (kb, n) = match layout {
        BLayout::KN => (b0, b1),
        BLayout::NK => (b1, b0),
    };
    if kb != k {
        return Err(Error::shape(
            op,
            format!("a {a_shape:?} has K = {k} but b {b_shape:?} ({layout:?}) has K = {kb}"),
        ));
    }
    let lead_count: usize = lead.iter().product();
    let (batch, m) = if b_lead.is_empty() {
        (1, lead_count * m)
    } else if b_lead == lead {
        (lead_count, m)
    } else {
        return Err(Error::shape(
            op,
            format!("batch dimensions of a {a_shape:?} and b {b_shape:?} differ"),
        ));
    };
    let mut out_shape = a_shape.to_vec();
    *out_shape.last_mut().expect("rank >= 2") = n;
    expect_shape(op, "output", out, &out_shape)?;
    if let Some(bias) = bias {
        expect_shape(op, "bias", bias, &[n])?;
    }
    Ok(Dims {
        batch,
        m,
        n,
        k,
        layout,
        bias: bias.is_some(),
    })
}

fn split_matrix(shape: &[usize]) -> (&[usize], [usize; 2]) {
    let r = shape.len();
    (&shape[..r - 2], [shape[r - 2], shape[r - 1]])
}

/// `out = a·b (+ bias)`, choosing GEMV for M = 1 and the tiled kernel otherwise.
pub fn matmul<'a>(
    gpu: &Gpu,
    a: &'a Tensor,
    b: &'a Tensor,
    layout: BLayout,
    bias: Option<&'a Tensor>,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    matmul_with(gpu, a, b, layout, bias, out, Path::Auto)
}

/// [`matmul`] with an explicit choice of kernel.
pub fn matmul_with<'a>(
    gpu: &Gpu,
    a: &'a Tensor,
    b: &'a Tensor,
    layout: BLayout,
    bias: Option<&'a Tensor>,
    out: &'a Tensor,
    path: Path,
) -> Result<KernelCall<'a>> {
    matmul_fused(gpu, a, b, layout, bias, Epilogue::None, out, path)
}

/// [`matmul_with`] followed by `epilogue`, in the same kernel.
#[allow(clippy::too_many_arguments)]
pub fn matmul_fused<'a>(
    gpu: &Gpu,
    a: &'a Tensor,
    b: &'a Tensor,
    layout: BLayout,
    bias: Option<&'a Tensor>,
    epilogue: Epilogue<'a>,
    out: &'a Tensor,
    path: Path,
) -> Result<KernelCall<'a>> {
    matmul_impl(gpu, a, None, b, layout, bias, epilogue, out, path)
}

/// `out = RMSNorm(x) · wᵀ (+ bias)`, then `epilogue`, in one GEMV: the decoder's norm fused into
/// the projection that follows it. `x` holds one row (`[1, K]`), `norm_weight` is `[K]`,
/// `w` a `[N, K]` Linear weight. The norm is computed in f32 and not rounded to the element
/// type before the product.
#[allow(clippy::too_many_arguments)]
pub fn norm_gemv<'a>(
    gpu: &Gpu,
    x: &'a Tensor,
    norm_weight: &'a Tensor,
    eps: f32,
    w: &'a Tensor,
    bias: Option<&'a Tensor>,
    epilogue: Epilogue<'a>,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let norm = Some((norm_weight, eps));
    matmul_impl(
        gpu,
        x,
        norm,
        w,
        BLayout::NK,
        bias,
        epilogue,
        out,
        Path::Gemv,
    )
}

#[allow(clippy::too_many_arguments)]
fn matmul_impl<'a>(
    gpu: &Gpu,
    a: &'a Tensor,
    norm: Option<(&'a Tensor, f32)>,
    b: &'a Tensor,
    layout: BLayout,
    bias: Option<&'a Tensor>,
    epilogue: Epilogue<'a>,
    out: &'a Tensor,
    path: Path,
) -> Result<KernelCall<'a>> {
    let op = "matmul";
    let mut operands = vec![a, b, out];
    operands.extend(bias);
    operands.extend(epilogue.tensor());
    operands.extend(norm.map(|(w, _)| w));
    let dtype = same_dtype(op, &operands)?;
    let d = dims(a, b, layout, bias, out)?;
    if let Some(other) = epilogue.tensor() {
        expect_shape(op, "epilogue operand", other, out.shape())?;
    }
    if let Some((norm_weight, _)) = norm {
        expect_shape(op, "norm weight", norm_weight, &[d.k])?;
        if d.m != 1 || d.batch != 1 || layout != BLayout::NK {
            return Err(Error::shape(
                op,
                format!(
                    "the fused RMSNorm takes one row and a [N, K] weight, not M = {} \
                     (batch {}) with {layout:?}",
                    d.m, d.batch
                ),
            ));
        }
    }
    let rows_fit = (1..=GEMV_ROWS_MAX).contains(&d.m)
        && d.batch == 1
        && layout == BLayout::NK
        && norm.is_none();
    let gemv_rows = match path {
        Path::Auto => rows_fit && d.m >= 2 && !few_rows_on_cpu(gpu),
        Path::GemvRows if rows_fit => true,
        Path::GemvRows => {
            return Err(Error::shape(
                op,
                format!(
                    "the multi-row GEMV takes 1 to {GEMV_ROWS_MAX} rows of one batch against \
                     a [N, K] weight, not M = {} (batch {}) with {layout:?}",
                    d.m, d.batch
                ),
            ));
        }
        _ => false,
    };
    let use_gemv = match path {
        _ if gemv_rows => true,
        Path::Auto => d.m == 1,
        Path::Tiled | Path::Wide | Path::Coop | Path::GemvRows | Path::Short => false,
        Path::Gemv if d.m == 1 => true,
        Path::Gemv => {
            return Err(Error::shape(
                op,
                format!("the GEMV path needs M = 1, not {}", d.m),
            ));
        }
    };
    let b_shared = b.shape().len() == 2;
    // The NK GEMVs also bind W as eight-element entries; only when they can read it so.
    let nk_gemv = use_gemv && layout == BLayout::NK;
    let packed = nk_gemv && gemv_can_pack(b, d.k);
    // Bindings a call does not use (bias, the epilogue's tensor, the norm weight, the packed
    // W) still need a tensor, which the shaders never read: one spare, large enough for a
    // packed entry, serves them all.
    let needs_spare =
        bias.is_none() || epilogue.tensor().is_none() || (nk_gemv && (norm.is_none() || !packed));
    let spare = if needs_spare {
        Some(Tensor::empty(gpu, &[GEMV_PACK], dtype)?)
    } else {
        None
    };
    let spare_or = |t: Option<&'a Tensor>| t.or(spare.as_ref()).expect("spare made when needed");
    let bias_tensor = spare_or(bias);
    let other = spare_or(epilogue.tensor());
    let batch = to_u32(op, "batch", d.batch)?;
    let max_z = gpu.limits().max_compute_workgroups_per_dimension;
    if batch > max_z {
        return Err(Error::TooManyWorkgroups {
            what: "matmul batch".into(),
            groups: u64::from(batch),
            limit: max_z,
        });
    }
    let (m, n, k) = (
        to_u32(op, "M", d.m)?,
        to_u32(op, "N", d.n)?,
        to_u32(op, "K", d.k)?,
    );
    let stride = |rows: u32, cols: u32| to_u32(op, "batch stride", rows as usize * cols as usize);
    let mut tensors = vec![(1, a), (2, b), (3, bias_tensor), (4, out), (5, other)];
    let call = if use_gemv {
        let params = GemvParams {
            n,
            k,
            has_bias: u32::from(d.bias),
            epilogue: epilogue.code(),
            batch_stride_x: k,
            batch_stride_w: if b_shared { 0 } else { stride(n, k)? },
            batch_stride_y: n,
            eps: norm.map_or(0.0, |(_, eps)| eps),
            rows: m,
            _pad: [0; 3],
        };
        let per_group = match layout {
            BLayout::NK => GEMV_NK_ROWS,
            BLayout::KN => GEMV_KN_COLS,
        };
        let [x, y, _] = gpu.grid("gemv", u64::from(n.div_ceil(per_group)))?;
        let key = match (layout, norm) {
            (BLayout::KN, _) => gemv_kn_key(dtype),
            (BLayout::NK, norm) => {
                let entry = if norm.is_some() {
                    "gemv_nk_norm"
                } else if gemv_rows {
                    "gemv_nk_rows"
                } else {
                    "gemv_nk"
                };
                let norm_w = spare_or(norm.map(|(w, _)| w));
                let w_packed = spare_or(packed.then_some(b));
                // The multi-row entry has no norm and no norm binding.
                if !gemv_rows {
                    tensors.push((6, norm_w));
                }
                tensors.push((7, w_packed));
                gemv_nk_key(entry, dtype, packed)
            }
        };
        let z = if gemv_rows {
            to_u32(op, "row groups", d.m.div_ceil(GEMV_ROWS_GROUP))?
        } else {
            batch
        };
        prepare(gpu, &key, &params, &tensors, [x, y, z])?
    } else {
        let params = TiledParams {
            m,
            n,
            k,
            has_bias: u32::from(d.bias),
            batch_stride_a: stride(m, k)?,
            batch_stride_b: if b_shared { 0 } else { stride(n, k)? },
            batch_stride_c: stride(m, n)?,
            epilogue: epilogue.code(),
        };
        let fills_wide_tile = m >= WIDE_TILE && n >= WIDE_TILE;
        let request = match path {
            Path::Coop => CoopRequest::Always,
            Path::Auto if fills_wide_tile => CoopRequest::IfTuned(Tunable::MatmulF16),
            _ => CoopRequest::Never,
        };
        let kernel = match coop_choice(gpu, op, dtype, request, || coop_gemm_facts(gpu))? {
            Some(coop) => TiledKernel::Coop(coop),
            None if path == Path::Wide || (path == Path::Auto && fills_wide_tile) => {
                TiledKernel::Wide
            }
            None if path == Path::Short
                || (path == Path::Auto && rows_fit && d.m >= 2 && few_rows_on_cpu(gpu)) =>
            {
                TiledKernel::Short
            }
            None => TiledKernel::Small,
        };
        let (tile_m, tile_n) = match kernel {
            TiledKernel::Coop(coop) => (coop_tile(coop.fragment), coop_tile(coop.fragment)),
            TiledKernel::Wide => (WIDE_TILE, WIDE_TILE),
            TiledKernel::Small => (WG_M * TM, WG_N * TN),
            TiledKernel::Short => (short_wg(m).0 * TM, short_wg(m).1 * TN),
        };
        let (col_tiles, row_tiles) = (n.div_ceil(tile_n), m.div_ceil(tile_m));
        if row_tiles > max_z || col_tiles > max_z {
            return Err(Error::TooManyWorkgroups {
                what: format!("matmul {m}x{n}"),
                groups: u64::from(row_tiles.max(col_tiles)),
                limit: max_z,
            });
        }
        let grid = [col_tiles, row_tiles, batch];
        let key = match kernel {
            TiledKernel::Coop(coop) => coop_key(layout, coop),
            TiledKernel::Wide => wide_key(dtype, layout),
            TiledKernel::Small => tiled_key(dtype, layout),
            TiledKernel::Short => short_key(dtype, layout, short_wg(m)),
        };
        prepare(gpu, &key, &params, &tensors, grid)?
    };
    Ok(call.owning(spare))
}

/// f64 reference of [`matmul`] for the problem `d`: `a` is `[batch, M, K]`, `b` is
/// `[K, N]` or `[N, K]` per batch (or once, shared, when it holds one matrix), `bias` `[N]`.
pub fn reference(d: &Dims, a: &[f64], b: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let (m, n, k) = (d.m, d.n, d.k);
    let b_shared = b.len() == n * k;
    let mut c = vec![0.0; d.batch * m * n];
    for batch in 0..d.batch {
        let a_mat = &a[batch * m * k..][..m * k];
        let b_mat = if b_shared {
            b
        } else {
            &b[batch * n * k..][..n * k]
        };
        for i in 0..m {
            for j in 0..n {
                let mut sum = bias.map_or(0.0, |bias| bias[j]);
                for kk in 0..k {
                    let b_val = match d.layout {
                        BLayout::KN => b_mat[kk * n + j],
                        BLayout::NK => b_mat[j * k + kk],
                    };
                    sum += a_mat[i * k + kk] * b_val;
                }
                c[(batch * m + i) * n + j] = sum;
            }
        }
    }
    c
}
