//! The one list of kernel cases (kernel × shape × dtype) behind `tessera check`,
//! `tessera bench`, the integration tests and `cargo bench`.
//!
//! A [`Case`] pairs a [`CaseSpec`] (what is computed, at which sizes) with a dtype. A spec
//! knows how to draw seeded inputs, compute its f64 reference, call its kernel, how much
//! error the computation may add, and how many FLOPs and bytes one call is worth. The specs
//! live beside their kernel family: `basic` (elementwise, softmax, norms, copy), `matmul`,
//! `attention` (attention, RoPE, KV cache) and `unet` (conv, GroupNorm, resampling, time
//! embedding).

mod attention;
mod basic;
pub mod bench;
mod cases;
pub mod check;
pub mod compare;
mod matmul;
#[cfg(not(target_arch = "wasm32"))]
pub mod models;
mod moe;
mod paged;
pub mod plot;
mod quant;
pub mod spatial_backward;
pub mod training;
#[cfg(not(target_arch = "wasm32"))]
pub mod tune;
mod unet;

/// The seeded generator of test inputs (also used by sampling).
pub use crate::rng;

use std::any::Any;
use std::sync::Arc;

pub use attention::{AttentionKernel, AttentionSpec, KvAppendSpec, RopeSpec};
pub use basic::{
    BinarySpec, CopySpec, FmaPeakSpec, GatherSpec, LayerNormSpec, RmsNormSpec, SoftmaxSpec,
    TransposeSpec, UnarySpec,
};
pub use cases::cases;
pub use matmul::MatmulSpec;
pub use moe::{MoeGemvSpec, MoeRouteSpec};
pub use paged::{PagedAttentionSpec, PagedWriteSpec};
pub use quant::{PackedExpertSpec, PackedGatherSpec, PackedLinearSpec};
pub use unet::{Conv2dSpec, GroupNormSpec, SchedulerStepSpec, SpatialSpec, TimestepSpec};

use crate::error::Result;
use crate::gpu::Gpu;
use crate::kernels::KernelCall;
use crate::rng::Rng;
use crate::tensor::{DType, Tensor};
use compare::Tolerance;

/// The seed used when none is given.
pub const DEFAULT_SEED: u64 = 0x7e55_e4a0;

/// Draws a host tensor of the given shape, uniform in `[lo, hi)`, rounded to the case's dtype.
pub type Random<'r> = &'r mut dyn FnMut(&[usize], f64, f64) -> HostTensor;

/// What a case computes, at which sizes.
pub trait CaseSpec: std::fmt::Debug + Send + Sync + Any {
    /// The kernel's short name, the first column of the tables.
    fn kernel(&self) -> &'static str;
    /// The sizes, in a form that reads well in a table.
    fn shape(&self) -> String;
    /// Floating-point operations in one call; 0 where bandwidth is what matters.
    fn flops(&self) -> f64 {
        0.0
    }
    /// Elements one call must move at the least: each input read once, the output written
    /// once.
    fn traffic(&self) -> usize;
    /// Bytes one call must move at the least, for the given case dtype: the traffic in
    /// elements of that dtype, unless the case moves data of another size (packed weights).
    fn traffic_bytes(&self, dtype: DType) -> f64 {
        self.traffic() as f64 * dtype.size() as f64
    }
    /// The error the computation may add in f32, on top of rounding the output to its dtype.
    fn compute_tolerance(&self) -> Tolerance;
    /// Whether the case runs a cooperative-matrix (tensor-core) path: such cases skip, with
    /// the reason, on adapters without cooperative matrices.
    fn cooperative(&self) -> bool {
        false
    }
    /// Whether the result must match bit for bit (pure data movement).
    fn exact(&self) -> bool {
        false
    }
    /// Whether the kernel updates its output in place: the output then starts as the first
    /// input rather than as NaN.
    fn in_place(&self) -> bool {
        false
    }
    /// The inputs, drawn with `random` (or computed, for tables).
    fn inputs(&self, random: Random<'_>) -> Result<Vec<HostTensor>>;
    fn output_shape(&self, inputs: &[HostTensor]) -> Vec<usize> {
        inputs[0].shape.clone()
    }
    /// The f64 reference output for `inputs`.
    fn reference(&self, inputs: &[HostTensor]) -> Vec<f64>;
    /// The kernel call on device copies of the inputs.
    fn call<'a>(&self, gpu: &Gpu, inputs: &'a [Tensor], out: &'a Tensor) -> Result<KernelCall<'a>>;
}

/// Whether and when `tessera bench` times a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchTier {
    /// Too small to time meaningfully; checked only.
    No,
    /// Timed by `bench --quick` and `bench`.
    Quick,
    /// Timed by `bench` only.
    Full,
    /// Timed by `bench` on GPUs only: on a CPU adapter one call takes minutes.
    Large,
}

#[derive(Clone, Debug)]
pub struct Case {
    pub spec: Arc<dyn CaseSpec>,
    pub dtype: DType,
    /// Part of the subset `cargo test` runs (small and fast on a CPU adapter).
    pub ci: bool,
    pub bench: BenchTier,
}

/// Host-side values of one input, already rounded to the dtype it is uploaded in.
#[derive(Clone, Debug)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
    /// Uploaded in this dtype rather than the case's (tables that are always f32).
    pub dtype: Option<DType>,
}

impl HostTensor {
    fn random(rng: &mut Rng, dtype: DType, shape: &[usize], lo: f64, hi: f64) -> Self {
        let len = shape.iter().product();
        let data = (0..len).map(|_| dtype.round(rng.uniform(lo, hi))).collect();
        HostTensor {
            shape: shape.to_vec(),
            data,
            dtype: None,
        }
    }

    /// A computed f32 input (a table), uploaded as f32 whatever the case's dtype.
    pub fn f32_table(shape: Vec<usize>, data: Vec<f64>) -> Self {
        HostTensor {
            shape,
            data,
            dtype: Some(DType::F32),
        }
    }
}

impl Case {
    pub fn kernel(&self) -> &'static str {
        self.spec.kernel()
    }

    pub fn shape(&self) -> String {
        self.spec.shape()
    }

    /// `kernel dtype shape`: unique within the list.
    pub fn name(&self) -> String {
        format!("{} {} {}", self.kernel(), self.dtype, self.shape())
    }

    /// The spec as its concrete type, if it is a `T`.
    pub fn spec_as<T: CaseSpec>(&self) -> Option<&T> {
        let any: &dyn Any = self.spec.as_ref();
        any.downcast_ref()
    }

    pub fn in_place(&self) -> bool {
        self.spec.in_place()
    }

    pub fn flops(&self) -> f64 {
        self.spec.flops()
    }

    pub fn bytes(&self) -> f64 {
        self.spec.traffic_bytes(self.dtype)
    }

    /// The error allowed against the f64 reference: the rounding of the output to its dtype
    /// plus what the computation itself may add in f32.
    pub fn tolerance(&self) -> Tolerance {
        if self.spec.exact() {
            return Tolerance {
                atol: 0.0,
                rtol: 0.0,
            };
        }
        // One unit in the last place of the output, whatever the rounding mode; for f16 also
        // the smallest normal number, since f16 subnormals may be flushed to zero.
        let out = match self.dtype {
            DType::F32 => Tolerance {
                atol: 0.0,
                rtol: DType::F32.epsilon(),
            },
            DType::F16 => Tolerance {
                atol: 2f64.powi(-14),
                rtol: DType::F16.epsilon(),
            },
            DType::U32 => Tolerance {
                atol: 0.0,
                rtol: 0.0,
            },
        };
        let compute = self.spec.compute_tolerance();
        Tolerance {
            atol: out.atol + compute.atol,
            rtol: out.rtol + compute.rtol,
        }
    }

    /// Seeded inputs for this case.
    pub fn inputs(&self, seed: u64) -> Result<Vec<HostTensor>> {
        let mut rng = Rng::for_case(seed, &self.name());
        let dtype = self.dtype;
        let mut random =
            |shape: &[usize], lo: f64, hi: f64| HostTensor::random(&mut rng, dtype, shape, lo, hi);
        self.spec.inputs(&mut random)
    }

    pub fn output_shape(&self, inputs: &[HostTensor]) -> Vec<usize> {
        self.spec.output_shape(inputs)
    }

    pub fn reference(&self, inputs: &[HostTensor]) -> Vec<f64> {
        self.spec.reference(inputs)
    }

    pub fn call<'a>(
        &self,
        gpu: &Gpu,
        inputs: &'a [Tensor],
        out: &'a Tensor,
    ) -> Result<KernelCall<'a>> {
        self.spec.call(gpu, inputs, out)
    }
}

/// A case made ready on a device: inputs uploaded, output allocated. For an in-place case
/// the output starts as a copy of the first input.
pub struct Prepared {
    pub host: Vec<HostTensor>,
    pub inputs: Vec<Tensor>,
    pub out: Tensor,
}

impl Prepared {
    pub fn new(gpu: &Gpu, case: &Case, seed: u64) -> Result<Prepared> {
        let host = case.inputs(seed)?;
        let upload = |h: &HostTensor| {
            if h.dtype == Some(DType::U32) {
                // Words (packed weights): exact in f64, not in f32.
                let words: Vec<u32> = h.data.iter().map(|&v| v as u32).collect();
                return Tensor::from_u32(gpu, &h.shape, &words);
            }
            let values: Vec<f32> = h.data.iter().map(|&v| v as f32).collect();
            Tensor::from_f32(gpu, &h.shape, &values, h.dtype.unwrap_or(case.dtype))
        };
        let inputs = host.iter().map(upload).collect::<Result<Vec<_>>>()?;
        let out = if case.in_place() {
            upload(&host[0])?
        } else {
            Tensor::empty(gpu, &case.output_shape(&host), case.dtype)?
        };
        Ok(Prepared { host, inputs, out })
    }
}

/// The case-name suffix of a fused matmul epilogue (" +residual", " swiglu", " geglu").
pub(crate) fn epilogue_suffix(kind: crate::kernels::matmul::EpilogueKind) -> &'static str {
    use crate::kernels::matmul::EpilogueKind;
    match kind {
        EpilogueKind::None => "",
        EpilogueKind::Add => " +residual",
        EpilogueKind::SiluMul => " swiglu",
        EpilogueKind::GeluTanhMul => " geglu",
    }
}
