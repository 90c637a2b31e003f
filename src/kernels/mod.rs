//! The kernels. One module per shader family: its typed parameters, its dispatch (shape
//! checks, workgroup counts, bind group) and `reference`, a plain f64 CPU implementation that
//! the tests and `tessera check` compare against.
//!
//! A kernel function validates its tensors and returns a [`KernelCall`]: a prepared dispatch
//! that can be encoded any number of times (once to compute, many times to benchmark).

pub mod attention;
pub mod conv2d;
pub mod copy;
pub mod elementwise;
pub mod gather;
pub mod group_norm;
pub mod kv_cache;
pub mod matmul;
pub mod moe;
pub mod norm;
pub mod packed;
pub mod paged_kv;
pub mod peak;
pub mod quant;
pub mod quantize;
pub mod rope;
pub mod scheduler_step;
pub mod softmax;
pub mod spatial;
pub mod spatial_backward;
pub mod timestep;
pub mod training;
pub mod transpose;

/// The product of `factors`, in f64: FLOP counts pass 2^32, the width of a wasm32 `usize`,
/// so they are never multiplied out in `usize`.
pub fn product_f64(factors: &[usize]) -> f64 {
    factors.iter().map(|&f| f as f64).product()
}

/// Two calls' stated weight bytes together (unknown only when neither states any).
pub(crate) fn sum_bytes(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

/// The per-run position uniform (`shaders/lib/step.wgsl`) of the kernels that read one.
pub(crate) const STEP: &str = include_str!("../../shaders/lib/step.wgsl");

/// The workgroup tree reductions (`shaders/lib/workgroup_sum.wgsl`) of the norm and
/// attention kernels.
pub(crate) const WORKGROUP_SUM: &str = include_str!("../../shaders/lib/workgroup_sum.wgsl");

/// The two GELUs and their derivatives (`shaders/lib/gelu.wgsl`) of the elementwise and
/// activation-gradient kernels.
pub(crate) const GELU: &str = include_str!("../../shaders/lib/gelu.wgsl");

/// The attention-logit soft-cap (`shaders/lib/softcap.wgsl`) of the attention kernels.
pub(crate) const SOFTCAP: &str = include_str!("../../shaders/lib/softcap.wgsl");

use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, Tunable};
use crate::tensor::{DType, Tensor};

/// A prepared kernel call: one or more dispatches (pipeline, bound tensors and parameters,
/// workgroup grid) to run in order. It borrows the tensors it binds, so none of them can be
/// dropped (and its buffer reused) while the call can still be encoded.
pub struct KernelCall<'a> {
    label: String,
    dispatches: Vec<Dispatch>,
    /// Tensors the call made for itself (placeholders, scratch), freed with it.
    owned: Vec<Tensor>,
    /// Bytes of weights the call reads, where the kernel states it (`--profile` shows them).
    weight_bytes: Option<u64>,
    borrows: PhantomData<&'a Tensor>,
}

struct Dispatch {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
}

impl<'a> KernelCall<'a> {
    /// Records the call's dispatches into `pass`. wgpu orders them: a dispatch sees what the
    /// ones before it wrote.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        for d in &self.dispatches {
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            let [x, y, z] = d.workgroups;
            pass.dispatch_workgroups(x, y, z);
        }
    }

    /// Runs this call alone: one pass, one submit, wait for completion.
    pub fn run(&self, gpu: &Gpu) -> Result<()> {
        run_all(gpu, &[self])
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Bytes of weights the call reads, where its kernel states them.
    pub fn weight_bytes(&self) -> Option<u64> {
        self.weight_bytes
    }

    /// The call, stating that it reads `bytes` of weights.
    pub(crate) fn reading(mut self, bytes: u64) -> Self {
        self.weight_bytes = Some(bytes);
        self
    }

    /// Keeps `tensor` alive as long as the call.
    pub(crate) fn owning(mut self, tensor: impl IntoIterator<Item = Tensor>) -> Self {
        self.owned.extend(tensor);
        self
    }

    /// The call with its borrow released, for an owner that keeps the bound tensors alive
    /// as long as the call (the graph executor's plans).
    pub(crate) fn detach(self) -> KernelCall<'static> {
        KernelCall {
            label: self.label,
            dispatches: self.dispatches,
            owned: self.owned,
            weight_bytes: self.weight_bytes,
            borrows: PhantomData,
        }
    }

    /// This call followed by `next`.
    pub(crate) fn then(mut self, next: KernelCall<'_>) -> Self {
        self.dispatches.extend(next.dispatches);
        self.owned.extend(next.owned);
        self.weight_bytes = sum_bytes(self.weight_bytes, next.weight_bytes);
        self
    }
}

/// Runs `calls` in order in one compute pass, submits once and waits.
pub fn run_all(gpu: &Gpu, calls: &[&KernelCall<'_>]) -> Result<()> {
    let label = calls.first().map_or("empty", |c| c.label.as_str());
    gpu.submit(label, |encoder| {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes: None,
        });
        for call in calls {
            call.encode(&mut pass);
        }
    })
}

/// Builds a [`KernelCall`]: the pipeline for `key`, the parameters as a uniform at binding
/// 0, and `tensors` as storage buffers at the given bindings. The public kernel functions tie
/// the call's lifetime `'a` to the tensors they bind.
pub(crate) fn prepare<'a, P: bytemuck::Pod>(
    gpu: &Gpu,
    key: &PipelineKey,
    params: &P,
    tensors: &[(u32, &Tensor)],
    workgroups: [u32; 3],
) -> Result<KernelCall<'a>> {
    prepare_with_step(gpu, key, params, tensors, None, workgroups)
}

/// [`prepare`] for the step-dependent kernels: `position` is bound at binding 15.
pub(crate) fn prepare_at<'a, P: bytemuck::Pod>(
    gpu: &Gpu,
    key: &PipelineKey,
    params: &P,
    tensors: &[(u32, &Tensor)],
    position: &Position<'_>,
    workgroups: [u32; 3],
) -> Result<KernelCall<'a>> {
    let fixed;
    let step = match position {
        Position::Fixed(p) => {
            fixed = StepBuffer::new(gpu)?;
            fixed.set(gpu, *p)?;
            &fixed.buffer
        }
        Position::Step { buffer, .. } => &buffer.buffer,
    };
    prepare_with_step(gpu, key, params, tensors, Some(step), workgroups)
}

fn prepare_with_step<'a, P: bytemuck::Pod>(
    gpu: &Gpu,
    key: &PipelineKey,
    params: &P,
    tensors: &[(u32, &Tensor)],
    step: Option<&wgpu::Buffer>,
    workgroups: [u32; 3],
) -> Result<KernelCall<'a>> {
    let uniform = gpu.uniform(&format!("{} params", key.label()), params)?;
    prepare_with_uniform(gpu, key, &uniform, tensors, step, workgroups)
}

/// [`prepare`] with a parameter buffer the caller owns and may rewrite between runs (see
/// [`ParamsBuffer`]).
pub(crate) fn prepare_with_uniform<'a>(
    gpu: &Gpu,
    key: &PipelineKey,
    uniform: &wgpu::Buffer,
    tensors: &[(u32, &Tensor)],
    step: Option<&wgpu::Buffer>,
    workgroups: [u32; 3],
) -> Result<KernelCall<'a>> {
    let label = key.label();
    let pipeline = gpu.pipeline(key)?;
    let mut entries = vec![wgpu::BindGroupEntry {
        binding: 0,
        resource: uniform.as_entire_binding(),
    }];
    if let Some(step) = step {
        entries.push(wgpu::BindGroupEntry {
            binding: STEP_BINDING,
            resource: step.as_entire_binding(),
        });
    }
    for &(binding, tensor) in tensors {
        // Shaders index with u32.
        to_u32(key.entry, "tensor length", tensor.len())?;
        entries.push(wgpu::BindGroupEntry {
            binding,
            resource: tensor.binding(&format!("{label} binding {binding}"))?,
        });
    }
    let bind_group = gpu.scoped(&format!("binding {label}"), |device| {
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    })?;
    Ok(KernelCall {
        label,
        dispatches: vec![Dispatch {
            pipeline,
            bind_group,
            workgroups,
        }],
        owned: Vec::new(),
        weight_bytes: None,
        borrows: PhantomData,
    })
}

/// Where the step-dependent kernels (RoPE, KV-cache append, attention) find the position of
/// the first token they process.
#[derive(Clone, Copy)]
pub enum Position<'a> {
    /// Known when the call is made.
    Fixed(usize),
    /// Read from `buffer` when the call runs, so one prepared call serves every step of a
    /// decode loop; `max` is the largest position it will be run at (bounds are checked and
    /// grids sized against it).
    Step { buffer: &'a StepBuffer, max: usize },
}

impl Position<'_> {
    /// The largest position the call may run at.
    pub fn max(&self) -> usize {
        match *self {
            Position::Fixed(p) => p,
            Position::Step { max, .. } => max,
        }
    }
}

/// The binding of the step uniform in the step-dependent shaders.
const STEP_BINDING: u32 = 15;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct StepData {
    position: u32,
    _pad: [u32; 3],
}

/// The small uniform buffer holding the per-run position (WGSL `struct Step`).
pub struct StepBuffer {
    buffer: wgpu::Buffer,
}

impl StepBuffer {
    pub fn new(gpu: &Gpu) -> Result<StepBuffer> {
        let step: StepData = bytemuck::Zeroable::zeroed();
        let buffer = gpu.uniform("step", &step)?;
        Ok(StepBuffer { buffer })
    }

    /// Sets the position the next submitted work reads.
    pub fn set(&self, gpu: &Gpu, position: usize) -> Result<()> {
        let data = StepData {
            position: to_u32("step", "position", position)?,
            _pad: [0; 3],
        };
        gpu.scoped("writing the step uniform", |_| {
            gpu.queue()
                .write_buffer(&self.buffer, 0, bytemuck::bytes_of(&data));
        })
    }
}

/// A kernel's parameters in a uniform buffer that is rewritten between runs of a prepared
/// call (the per-step coefficients of a diffusion sampler), instead of being fixed when the
/// call is made.
pub struct ParamsBuffer<P> {
    buffer: wgpu::Buffer,
    kind: PhantomData<P>,
}

impl<P: bytemuck::Pod> ParamsBuffer<P> {
    pub(crate) fn new(gpu: &Gpu, what: &str, initial: &P) -> Result<Self> {
        Ok(ParamsBuffer {
            buffer: gpu.uniform(what, initial)?,
            kind: PhantomData,
        })
    }

    /// Sets the parameters the next submitted run reads.
    pub(crate) fn set(&self, gpu: &Gpu, params: &P) -> Result<()> {
        gpu.scoped("writing kernel parameters", |_| {
            gpu.queue()
                .write_buffer(&self.buffer, 0, bytemuck::bytes_of(params));
        })
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

/// `Err` unless every tensor has the dtype of the first.
pub(crate) fn same_dtype(op: &'static str, tensors: &[&Tensor]) -> Result<DType> {
    let dtype = tensors[0].dtype();
    if let Some(other) = tensors.iter().find(|t| t.dtype() != dtype) {
        return Err(Error::DType {
            op,
            detail: format!("{other:?} mixed with {dtype} tensors"),
        });
    }
    Ok(dtype)
}

/// `Err` unless `tensor` has exactly `shape`.
pub(crate) fn expect_shape(
    op: &'static str,
    what: &str,
    tensor: &Tensor,
    shape: &[usize],
) -> Result<()> {
    if tensor.shape() != shape {
        return Err(Error::shape(
            op,
            format!("{what} is {:?}, expected {shape:?}", tensor.shape()),
        ));
    }
    Ok(())
}

/// The length of `tensor`'s last axis; `Err` for a scalar.
pub(crate) fn last_dim(op: &'static str, tensor: &Tensor) -> Result<usize> {
    tensor
        .shape()
        .last()
        .copied()
        .ok_or_else(|| Error::shape(op, format!("{tensor:?} is a scalar; a last axis is needed")))
}

/// `Err` unless `n` fits the u32 that shaders index with.
pub(crate) fn to_u32(op: &'static str, what: &str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::shape(op, format!("{what} = {n} exceeds u32")))
}

/// Every pipeline variant the library can create, for validation without a GPU.
pub fn all_pipeline_keys() -> Vec<PipelineKey> {
    let mut keys = Vec::new();
    keys.extend(copy::pipeline_keys());
    keys.extend(elementwise::pipeline_keys());
    keys.extend(softmax::pipeline_keys());
    keys.extend(norm::pipeline_keys());
    keys.extend(matmul::pipeline_keys());
    keys.extend(attention::pipeline_keys());
    keys.extend(rope::pipeline_keys());
    keys.extend(kv_cache::pipeline_keys());
    keys.extend(conv2d::pipeline_keys());
    keys.extend(group_norm::pipeline_keys());
    keys.extend(spatial::pipeline_keys());
    keys.extend(timestep::pipeline_keys());
    keys.extend(gather::pipeline_keys());
    keys.extend(transpose::pipeline_keys());
    keys.extend(scheduler_step::pipeline_keys());
    keys.extend(peak::pipeline_keys());
    keys.extend(packed::pipeline_keys());
    keys.extend(moe::pipeline_keys());
    keys.extend(paged_kv::pipeline_keys());
    keys.extend(training::pipeline_keys());
    keys.extend(spatial_backward::pipeline_keys());
    keys
}

/// How a kernel that has a cooperative-matrix variant was asked to run.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CoopRequest {
    /// The portable kernel.
    Never,
    /// The cooperative kernel, or an error saying why it cannot run.
    Always,
    /// The cooperative kernel if `tessera tune` measured it faster for this choice (or
    /// `--path coop` forced it) and it can run here; else the portable one.
    IfTuned(Tunable),
}

/// Whether a call of `op` in `dtype` runs its cooperative variant: `Some(facts)` from
/// `facts` (the variant's own check of the adapter), or `None` for the portable kernel.
pub(crate) fn coop_choice<T>(
    gpu: &Gpu,
    op: &'static str,
    dtype: DType,
    request: CoopRequest,
    facts: impl FnOnce() -> Result<T>,
) -> Result<Option<T>> {
    match request {
        CoopRequest::Never => Ok(None),
        CoopRequest::Always if dtype == DType::F16 => facts().map(Some),
        CoopRequest::Always => Err(Error::shape(
            op,
            format!("the cooperative-matrix path takes f16, not {dtype}"),
        )),
        CoopRequest::IfTuned(what) => {
            let measured = dtype == DType::F16 && gpu.tuned_choice(what).as_deref() == Some("coop");
            Ok(if measured { facts().ok() } else { None })
        }
    }
}
