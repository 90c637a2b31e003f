//! A pool of released buffers, so that repeated allocations of the same sizes (benchmark
//! repeats, per-call staging buffers, temporaries of equal shape) reuse GPU memory instead of
//! asking the driver each time.
//!
//! Buffers are bucketed by (size rounded up to 256 bytes, usage). The pool keeps at most
//! `capacity` bytes of idle buffers; beyond that a released buffer is freed.

use std::collections::HashMap;
use std::sync::Mutex;

use super::health::lock;

const GRANULE: u64 = 256;

pub(crate) struct BufferPool {
    idle: Mutex<Idle>,
    capacity: u64,
}

#[derive(Default)]
struct Idle {
    buffers: HashMap<(u64, wgpu::BufferUsages), Vec<wgpu::Buffer>>,
    bytes: u64,
}

impl BufferPool {
    pub(crate) fn new(capacity: u64) -> Self {
        BufferPool {
            idle: Mutex::new(Idle::default()),
            capacity,
        }
    }

    /// The size a request for `bytes` is rounded up to.
    pub(crate) fn bucket(bytes: u64) -> u64 {
        bytes.max(1).div_ceil(GRANULE) * GRANULE
    }

    /// An idle buffer of exactly this bucket and usage, if one is held.
    pub(crate) fn take(&self, bucket: u64, usage: wgpu::BufferUsages) -> Option<wgpu::Buffer> {
        let mut idle = lock(&self.idle);
        let buffer = idle.buffers.get_mut(&(bucket, usage))?.pop()?;
        idle.bytes -= bucket;
        Some(buffer)
    }

    /// Returns a buffer to the pool, or frees it when the pool is full.
    pub(crate) fn give(&self, buffer: wgpu::Buffer) {
        let bucket = buffer.size();
        let mut idle = lock(&self.idle);
        if idle.bytes + bucket > self.capacity {
            drop(idle);
            buffer.destroy();
            return;
        }
        idle.bytes += bucket;
        idle.buffers
            .entry((bucket, buffer.usage()))
            .or_default()
            .push(buffer);
    }

    /// Frees every idle buffer.
    pub(crate) fn clear(&self) {
        let mut idle = lock(&self.idle);
        for buffer in idle.buffers.drain().flat_map(|(_, v)| v) {
            buffer.destroy();
        }
        idle.bytes = 0;
    }

    pub(crate) fn idle_bytes(&self) -> u64 {
        lock(&self.idle).bytes
    }
}
