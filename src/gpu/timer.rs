//! Timing GPU work: pass-level timestamp queries where the adapter has `TIMESTAMP_QUERY`,
//! the wall clock around submit + wait otherwise.

#[cfg(not(target_arch = "wasm32"))]
use std::time::Instant;
#[cfg(target_arch = "wasm32")]
use web_time::Instant;

use serde::Serialize;

use super::Gpu;
use crate::error::Result;

/// The most timestamp samples one query set holds (wgpu allows 4096 queries, two per sample).
const MAX_SAMPLES: u32 = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TimingMethod {
    /// Timestamps written by the GPU at the start and end of each compute pass.
    GpuTimestamps,
    /// Host clock around one submit + wait per sample (includes submission overhead).
    WallClock,
}

/// Per-call times of one timed run.
#[derive(Clone, Debug)]
pub struct Timings {
    pub method: TimingMethod,
    /// Seconds per call, one entry per sample.
    pub samples: Vec<f64>,
}

impl Timings {
    /// The median sample in seconds.
    pub fn median(&self) -> f64 {
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        if n == 0 {
            return f64::NAN;
        }
        if n % 2 == 1 {
            sorted[n / 2]
        } else {
            0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
        }
    }
}

impl Gpu {
    /// Whether [`Gpu::time`] can use GPU timestamps on this device.
    pub fn timing_method(&self) -> TimingMethod {
        if self.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            TimingMethod::GpuTimestamps
        } else {
            TimingMethod::WallClock
        }
    }

    /// Times `samples` compute passes, each of which `record`s the work `calls` times, and
    /// returns the time per call of each sample.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn time(
        &self,
        op: &str,
        calls: u32,
        samples: u32,
        record: &dyn Fn(&mut wgpu::ComputePass<'_>),
    ) -> Result<Timings> {
        super::block_on(self.time_async(op, calls, samples, record))
    }

    /// [`Gpu::time`], awaited. In a browser the wall clock cannot wait for the GPU, so
    /// there the timestamps are the one method.
    pub async fn time_async(
        &self,
        op: &str,
        calls: u32,
        samples: u32,
        record: &dyn Fn(&mut wgpu::ComputePass<'_>),
    ) -> Result<Timings> {
        let calls = calls.max(1);
        let samples = samples.clamp(1, MAX_SAMPLES);
        let per_pass = match self.timing_method() {
            TimingMethod::GpuTimestamps => {
                self.time_with_timestamps(op, calls, samples, record)
                    .await?
            }
            TimingMethod::WallClock => self.time_with_clock(op, calls, samples, record).await?,
        };
        Ok(Timings {
            method: self.timing_method(),
            samples: per_pass.into_iter().map(|t| t / f64::from(calls)).collect(),
        })
    }

    async fn time_with_clock(
        &self,
        op: &str,
        calls: u32,
        samples: u32,
        record: &dyn Fn(&mut wgpu::ComputePass<'_>),
    ) -> Result<Vec<f64>> {
        if cfg!(target_arch = "wasm32") {
            return Err(crate::error::Error::MissingFeature {
                what: format!("timing {op} in a browser"),
                feature: "TIMESTAMP_QUERY",
                adapter: self.report().name.clone(),
            });
        }
        let mut out = Vec::with_capacity(samples as usize);
        for _ in 0..samples {
            let start = Instant::now();
            self.submit(op, |encoder| record_pass(encoder, op, None, calls, record))?;
            out.push(start.elapsed().as_secs_f64());
        }
        Ok(out)
    }

    async fn time_with_timestamps(
        &self,
        op: &str,
        calls: u32,
        samples: u32,
        record: &dyn Fn(&mut wgpu::ComputePass<'_>),
    ) -> Result<Vec<f64>> {
        let queries = samples * 2;
        let query_set = self.scoped(op, |device| {
            device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: queries,
            })
        })?;
        let bytes = u64::from(queries) * 8;
        let resolved = self.buffer(
            bytes,
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            "timestamp results",
        )?;
        let submitted = self.submit(op, |encoder| {
            for s in 0..samples {
                let stamps = wgpu::ComputePassTimestampWrites {
                    query_set: &query_set,
                    beginning_of_pass_write_index: Some(2 * s),
                    end_of_pass_write_index: Some(2 * s + 1),
                };
                record_pass(encoder, op, Some(stamps), calls, record);
            }
            encoder.resolve_query_set(&query_set, 0..queries, &resolved, 0);
        });
        let raw = match submitted {
            Ok(()) => {
                self.read_buffer_async(&resolved, 0, bytes, "timestamps")
                    .await
            }
            Err(e) => Err(e),
        };
        self.recycle(resolved);
        let ticks: Vec<u64> = raw?
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("chunks of 8 bytes")))
            .collect();
        let period_ns = f64::from(self.queue().get_timestamp_period());
        Ok(ticks
            .chunks_exact(2)
            .map(|pair| pair[1].wrapping_sub(pair[0]) as f64 * period_ns * 1e-9)
            .collect())
    }
}

/// One compute pass holding `calls` repetitions of `record`.
fn record_pass(
    encoder: &mut wgpu::CommandEncoder,
    op: &str,
    timestamp_writes: Option<wgpu::ComputePassTimestampWrites<'_>>,
    calls: u32,
    record: &dyn Fn(&mut wgpu::ComputePass<'_>),
) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(op),
        timestamp_writes,
    });
    for _ in 0..calls {
        record(&mut pass);
    }
}
