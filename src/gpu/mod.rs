//! The only code that talks to wgpu: adapter and device, limits and features, error capture,
//! buffers, the pipeline cache and timing.

mod adapter;
mod health;
mod pipelines;
mod pool;
mod timer;
pub mod tuning;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use adapter::{
    AdapterReport, FeatureReport, LimitReport, list_adapters_async, select_adapter_async,
};
#[cfg(not(target_arch = "wasm32"))]
pub use adapter::{list_adapters, select_adapter};
pub use pipelines::{PipelineKey, ShaderSource};
pub use timer::{TimingMethod, Timings};
pub use tuning::{Tunable, TunedChoice, Tuning};

use crate::error::{Error, Result};
use crate::tensor::DType;
use health::Health;
use pipelines::PipelineCache;
use pool::BufferPool;

/// Optional features requested whenever the adapter has them.
const WANTED_FEATURES: wgpu::Features = wgpu::Features::SHADER_F16
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::TIMESTAMP_QUERY)
    .union(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);

/// How long one wait for the GPU may last: `TESSERA_GPU_TIMEOUT` seconds, else 600 (a CPU
/// adapter runs a large model's prefill in one submission for minutes).
pub fn wait_limit() -> std::time::Duration {
    let seconds = std::env::var("TESSERA_GPU_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(600.0);
    std::time::Duration::from_secs_f64(seconds.min(1e9))
}

/// The most bytes of idle buffers the pool keeps (capped by the device's `max_buffer_size`).
const POOL_CAPACITY_BYTES: u64 = 1 << 30;

/// The adapter's cooperative-matrix configuration for f16 inputs and f32 accumulation
/// ([`Gpu::cooperative_f16`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoopFacts {
    /// F of the F × F × F fragments.
    pub fragment: u32,
    /// The adapter's one subgroup size.
    pub subgroup: u32,
}

/// An open device on one adapter. Cheap to clone; all clones share the device, the pipeline
/// cache and the buffer pool.
#[derive(Clone)]
pub struct Gpu {
    inner: Arc<Inner>,
}

struct Inner {
    adapter: wgpu::Adapter,
    device: wgpu::Device,
    queue: wgpu::Queue,
    report: AdapterReport,
    health: Arc<Health>,
    pipelines: PipelineCache,
    pool: BufferPool,
    /// Bytes of every buffer handed out since the device opened, pooled or new.
    requested: AtomicU64,
    /// Bytes of the buffers the driver was asked to create (pool misses and uniforms).
    created: AtomicU64,
    /// The measured path choices (see [`tuning`]), loaded from the cache when the device
    /// opens.
    tuning: RwLock<Tuning>,
    /// A path forced for every tunable choice (`--path`), overriding the measurements.
    forced_path: RwLock<Option<String>>,
}

/// Runs `future` to completion on this thread: the synchronous native API over the runtime's
/// async core. (A browser cannot block; there the async functions are called and awaited.)
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    pollster::block_on(future)
}

impl Gpu {
    /// Opens the adapter chosen by `choice` (see [`select_adapter`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(choice: Option<&str>) -> Result<Gpu> {
        block_on(Gpu::request(choice))
    }

    /// [`Gpu::new`], awaited (the one way to open a device in a browser).
    pub async fn request(choice: Option<&str>) -> Result<Gpu> {
        Gpu::open_async(adapter::select_adapter_async(choice).await?, |_| {}).await
    }

    /// Opens a device on `adapter` with the adapter's own limits and every optional feature
    /// tessera can use that the adapter has.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(adapter: wgpu::Adapter) -> Result<Gpu> {
        Gpu::open_with_limits(adapter, |_| {})
    }

    /// [`Gpu::open`] with limits lowered by `restrict` (to exercise the paths that large
    /// models take on small devices, such as tensors split across bindings).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open_with_limits(
        adapter: wgpu::Adapter,
        restrict: impl FnOnce(&mut wgpu::Limits),
    ) -> Result<Gpu> {
        block_on(Gpu::open_async(adapter, restrict))
    }

    /// [`Gpu::open_with_limits`], awaited.
    // In a browser wgpu's handles are neither Send nor Sync (its wasm is single-threaded),
    // so neither is the shared device state; natively they are both.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub async fn open_async(
        adapter: wgpu::Adapter,
        restrict: impl FnOnce(&mut wgpu::Limits),
    ) -> Result<Gpu> {
        let report = AdapterReport::of(&adapter);
        let mut limits = adapter.limits();
        restrict(&mut limits);
        let features = adapter.features() & WANTED_FEATURES;
        let experimental = if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            // SAFETY: cooperative-matrix shaders are only created for configurations the
            // adapter lists in `cooperative_matrix_properties`, as wgpu requires.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("tessera"),
                required_features: features,
                required_limits: limits,
                experimental_features: experimental,
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::RequestDevice {
                adapter: report.name.clone(),
                message: e.to_string(),
            })?;
        let health = Arc::new(Health::default());
        health.watch(&device);
        let pool_capacity = POOL_CAPACITY_BYTES.min(device.limits().max_buffer_size);
        let tuning = RwLock::new(tuning::load(&report));
        Ok(Gpu {
            inner: Arc::new(Inner {
                adapter,
                device,
                queue,
                report,
                health,
                pipelines: PipelineCache::default(),
                pool: BufferPool::new(pool_capacity),
                requested: AtomicU64::new(0),
                created: AtomicU64::new(0),
                tuning,
                forced_path: RwLock::new(None),
            }),
        })
    }

    pub fn adapter(&self) -> &wgpu::Adapter {
        &self.inner.adapter
    }
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }
    pub fn report(&self) -> &AdapterReport {
        &self.inner.report
    }
    pub fn limits(&self) -> wgpu::Limits {
        self.inner.device.limits()
    }
    pub fn features(&self) -> wgpu::Features {
        self.inner.device.features()
    }

    /// What the adapter offers cooperative-matrix (tensor-core) kernels with f16 inputs and
    /// f32 accumulation, or what it lacks. Facts only: each kernel checks its own workgroup
    /// size and memory against [`Gpu::limits`].
    pub fn cooperative_f16(&self) -> std::result::Result<CoopFacts, &'static str> {
        let needed = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
            | wgpu::Features::SUBGROUP
            | wgpu::Features::SHADER_F16;
        if !self.features().contains(needed) {
            return Err("cooperative matrices, subgroups and f16");
        }
        // The largest square f16 -> f32 configuration listed: 16 on most GPUs, 8 on lavapipe.
        let fragment = self
            .inner
            .adapter
            .cooperative_matrix_properties()
            .iter()
            .filter(|p| {
                p.m_size == p.n_size
                    && p.n_size == p.k_size
                    && p.ab_type == wgpu::CooperativeScalarType::F16
                    && p.cr_type == wgpu::CooperativeScalarType::F32
            })
            .map(|p| p.m_size)
            .max()
            .ok_or("a square F x F x F f16->f32 cooperative-matrix configuration")?;
        let [min, max] = self.inner.report.subgroup_size;
        if min != max || min == 0 {
            // The kernels size their workgroups in whole subgroups.
            return Err("one fixed subgroup size");
        }
        Ok(CoopFacts {
            fragment,
            subgroup: min,
        })
    }

    /// The path a timing run chose for `what` on this adapter (`--path` overrides it), or
    /// `None` where it was never measured: the kernel then takes its portable path.
    pub fn tuned_choice(&self, what: Tunable) -> Option<String> {
        let forced = self
            .inner
            .forced_path
            .read()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(path) = forced.as_ref() {
            return Some(path.clone());
        }
        let tuning = self.inner.tuning.read().unwrap_or_else(|p| p.into_inner());
        tuning.get(&what).map(|c| c.choice.clone())
    }

    /// The measured choices in force on this device.
    pub fn tuning(&self) -> Tuning {
        self.inner
            .tuning
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the measured choices (after a timing run).
    pub fn set_tuning(&self, tuning: Tuning) {
        *self.inner.tuning.write().unwrap_or_else(|p| p.into_inner()) = tuning;
    }

    /// Makes every tunable choice take `path` (`scalar`, `wide`, `coop`) where it is one of
    /// its candidates, or lifts that with `None`.
    pub fn force_path(&self, path: Option<&str>) {
        *self
            .inner
            .forced_path
            .write()
            .unwrap_or_else(|p| p.into_inner()) = path.map(str::to_string);
    }

    /// The path `--path` forced, if any ([`Gpu::force_path`]).
    pub fn forced_path(&self) -> Option<String> {
        self.inner
            .forced_path
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether kernels can store tensors of `dtype` on this device.
    pub fn supports(&self, dtype: DType) -> bool {
        match dtype {
            DType::F32 | DType::U32 => true,
            DType::F16 => self.features().contains(wgpu::Features::SHADER_F16),
        }
    }

    /// `Err(MissingFeature)` unless [`Gpu::supports`] `dtype`.
    pub fn require(&self, dtype: DType, what: &str) -> Result<()> {
        if self.supports(dtype) {
            Ok(())
        } else {
            Err(Error::MissingFeature {
                what: format!("{what} in {dtype}"),
                feature: "SHADER_F16",
                adapter: self.inner.report.name.clone(),
            })
        }
    }

    /// Runs `f` inside error scopes for validation, out-of-memory and internal errors, and
    /// returns what they caught as `Err`. Device loss is reported first. In a browser the
    /// scopes resolve later (it cannot block): what they catch is recorded and surfaces as
    /// `Err` at the next operation that checks, at the latest the next readback.
    pub fn scoped<T>(&self, op: &str, f: impl FnOnce(&wgpu::Device) -> T) -> Result<T> {
        self.inner.health.check(op)?;
        self.inner.health.begin(op);
        let device = &self.inner.device;
        let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f(device);
        let pops = [validation, oom, internal].map(|scope| scope.pop());
        #[cfg(target_arch = "wasm32")]
        {
            for pop in pops {
                let health = self.inner.health.clone();
                let op = op.to_string();
                wasm_bindgen_futures::spawn_local(async move {
                    if let Some(error) = pop.await {
                        health.record(&op, error.to_string());
                    }
                });
            }
            self.inner.health.check(op)?;
            Ok(value)
        }
        #[cfg(not(target_arch = "wasm32"))]
        self.caught(op, value, pops.map(block_on))
    }

    /// `value`, or the errors the scopes around the operation that made it caught.
    #[cfg(not(target_arch = "wasm32"))]
    fn caught<T>(&self, op: &str, value: T, caught: [Option<wgpu::Error>; 3]) -> Result<T> {
        let errors: Vec<String> = caught.iter().flatten().map(|e| e.to_string()).collect();
        if errors.is_empty() {
            self.inner.health.check(op)?;
            Ok(value)
        } else {
            Err(Error::Gpu {
                op: op.to_string(),
                message: errors.join("; "),
            })
        }
    }

    /// The compiled pipeline for `key`, created on first use.
    pub fn pipeline(&self, key: &PipelineKey) -> Result<Arc<wgpu::ComputePipeline>> {
        if let Some(pipeline) = self.inner.pipelines.get(key) {
            return Ok(pipeline);
        }
        self.require(key.dtype, &key.label())?;
        let op = format!("compiling {}", key.label());
        let pipeline = Arc::new(self.scoped(&op, |device| pipelines::create(device, key))?);
        self.inner.pipelines.insert(key.clone(), pipeline.clone());
        Ok(pipeline)
    }

    /// Number of pipelines compiled so far.
    pub fn cached_pipelines(&self) -> usize {
        self.inner.pipelines.len()
    }

    /// A buffer of at least `bytes` bytes, from the pool when one of that size is idle.
    pub(crate) fn buffer(
        &self,
        bytes: u64,
        usage: wgpu::BufferUsages,
        what: &str,
    ) -> Result<wgpu::Buffer> {
        let limit = self.inner.device.limits().max_buffer_size;
        let bucket = BufferPool::bucket(bytes);
        if bucket > limit {
            return Err(Error::TooLarge {
                what: what.to_string(),
                bytes,
                limit_name: "max_buffer_size",
                limit,
            });
        }
        self.inner.requested.fetch_add(bucket, Ordering::Relaxed);
        if let Some(buffer) = self.inner.pool.take(bucket, usage) {
            return Ok(buffer);
        }
        self.inner.created.fetch_add(bucket, Ordering::Relaxed);
        self.scoped(&format!("allocating {what} ({bytes} bytes)"), |device| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size: bucket,
                usage,
                mapped_at_creation: false,
            })
        })
    }

    /// Hands a buffer back to the pool.
    pub(crate) fn recycle(&self, buffer: wgpu::Buffer) {
        self.inner.pool.give(buffer);
    }

    /// Frees every idle pooled buffer.
    pub fn trim_pool(&self) {
        self.inner.pool.clear();
    }

    /// Bytes held by idle pooled buffers.
    pub fn pooled_bytes(&self) -> u64 {
        self.inner.pool.idle_bytes()
    }

    /// `Err(TooLarge)` if a storage binding of `bytes` exceeds the device limit.
    pub fn check_binding(&self, what: &str, bytes: u64) -> Result<()> {
        let limit = self.inner.device.limits().max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(Error::TooLarge {
                what: what.to_string(),
                bytes,
                limit_name: "max_storage_buffer_binding_size",
                limit,
            });
        }
        Ok(())
    }

    /// Bytes of all buffers requested since the device opened (tensors, staging, parameters),
    /// whether the pool or the driver supplied them: what a piece of code asks for is the
    /// difference across it.
    pub fn requested_bytes(&self) -> u64 {
        self.inner.requested.load(Ordering::Relaxed)
    }

    /// Bytes of the buffers created by the driver since the device opened: what a piece of
    /// code allocates is the difference across it (pool reuse does not count).
    pub fn created_bytes(&self) -> u64 {
        self.inner.created.load(Ordering::Relaxed)
    }

    /// A uniform buffer holding `value` (kernel parameters, the step position); it can be
    /// rewritten with `queue.write_buffer`.
    pub fn uniform<T: bytemuck::Pod>(&self, what: &str, value: &T) -> Result<wgpu::Buffer> {
        use wgpu::util::DeviceExt;
        let bytes = std::mem::size_of::<T>() as u64;
        self.inner.requested.fetch_add(bytes, Ordering::Relaxed);
        self.inner.created.fetch_add(bytes, Ordering::Relaxed);
        self.scoped(&format!("creating {what}"), |device| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(what),
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
        })
    }

    /// Splits `groups` workgroups into an `[x, y, 1]` grid within the per-dimension limit.
    /// Shaders recover the flat index as `x + y * num_workgroups.x` and skip the excess.
    pub fn grid(&self, what: &str, groups: u64) -> Result<[u32; 3]> {
        let limit = self
            .inner
            .device
            .limits()
            .max_compute_workgroups_per_dimension;
        let groups = groups.max(1);
        let x = groups.min(u64::from(limit));
        let y = groups.div_ceil(x);
        if y > u64::from(limit) {
            return Err(Error::TooManyWorkgroups {
                what: what.to_string(),
                groups,
                limit,
            });
        }
        Ok([x as u32, y as u32, 1])
    }

    /// Encodes with `record`, submits once, and waits for the GPU to finish. Validation
    /// errors from encoding and submission come back as `Err`.
    pub fn submit(&self, op: &str, record: impl FnOnce(&mut wgpu::CommandEncoder)) -> Result<()> {
        let index = self.scoped(op, |device| {
            let mut encoder =
                device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) });
            record(&mut encoder);
            self.inner.queue.submit([encoder.finish()])
        })?;
        self.wait_for(op, Some(index))
    }

    /// Blocks until submission `index` (or all submitted work) has finished, for at most
    /// [`wait_limit`]: a hung GPU is an error naming `op`, not a hang.
    fn wait_for(&self, op: &str, index: Option<wgpu::SubmissionIndex>) -> Result<()> {
        let limit = wait_limit();
        let polled = self.inner.device.poll(wgpu::PollType::Wait {
            submission_index: index,
            timeout: Some(limit),
        });
        // A lost device or an uncaptured error explains a failed poll better than the poll.
        self.inner.health.check(op)?;
        polled.map(drop).map_err(|e| match e {
            wgpu::PollError::Timeout => Error::Gpu {
                op: op.to_string(),
                message: format!(
                    "the GPU did not finish within {} s (TESSERA_GPU_TIMEOUT, in seconds, \
                     sets the limit)",
                    limit.as_secs_f64()
                ),
            },
            other => Error::DeviceLost(other.to_string()),
        })
    }

    /// Copies `bytes` bytes from `offset` in `buffer` back to the host.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_buffer(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
        what: &str,
    ) -> Result<Vec<u8>> {
        block_on(self.read_buffer_async(buffer, offset, bytes, what))
    }

    /// [`Gpu::read_buffer`], awaited: natively the wait for the GPU happens inside and the
    /// future is ready when polled; in a browser it resolves when the copy has been mapped.
    pub async fn read_buffer_async(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
        what: &str,
    ) -> Result<Vec<u8>> {
        let copy_bytes = bytes.div_ceil(wgpu::COPY_BUFFER_ALIGNMENT) * wgpu::COPY_BUFFER_ALIGNMENT;
        let staging = self.buffer(
            copy_bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            "readback staging",
        )?;
        let result = self
            .map_and_read(buffer, offset, &staging, bytes, copy_bytes, what)
            .await;
        // A staging buffer whose map failed may still be mapped or pending: it is dropped,
        // never handed out again.
        if result.is_ok() {
            self.recycle(staging);
        }
        result
    }

    async fn map_and_read(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        staging: &wgpu::Buffer,
        bytes: u64,
        copy_bytes: u64,
        what: &str,
    ) -> Result<Vec<u8>> {
        let op = format!("reading back {what}");
        self.submit(&op, |encoder| {
            encoder.copy_buffer_to_buffer(buffer, offset, staging, 0, copy_bytes);
        })?;
        let slice = staging.slice(..copy_bytes);
        let (sender, mapped) = futures_channel::oneshot::channel();
        self.scoped(&op, |_| {
            slice.map_async(wgpu::MapMode::Read, move |r| {
                // The receiver is only gone if the read was abandoned: nothing to tell.
                let _ = sender.send(r);
            });
        })?;
        // Natively this waits and the callback has run by its end; a browser's poll returns
        // at once and the callback runs when the mapping is done.
        self.wait_for(&op, None)?;
        let status = mapped.await;
        self.inner.health.check(&op)?;
        match status {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(Error::Readback {
                    what: what.to_string(),
                    message: e.to_string(),
                });
            }
            Err(futures_channel::oneshot::Canceled) => {
                return Err(Error::Readback {
                    what: what.to_string(),
                    message: "the map callback was dropped without running".into(),
                });
            }
        }
        let data = slice
            .get_mapped_range()
            .map_err(|e| Error::Readback {
                what: what.to_string(),
                message: e.to_string(),
            })?
            .get(..bytes as usize)
            .map(<[u8]>::to_vec);
        staging.unmap();
        data.ok_or_else(|| Error::Readback {
            what: what.to_string(),
            message: "mapped range shorter than requested".into(),
        })
    }
}
