//! Timing recorded work on the GPU, for benches/ and `cimnet bench`: GPU
//! timestamp queries around one compute pass where the device offers them
//! (`TIMESTAMP_QUERY`), else wall time around submit + a full wait. Either way
//! the result is the median of `reps` runs after `warmup` untimed ones (the
//! first run compiles pipelines and touches memory).

use super::buffers;
use super::context::{GpuContext, GpuError};
use super::launch::Recordable;
use super::pipelines::Recorder;

/// How a time was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimingMethod {
    /// GPU timestamps at the beginning and end of the compute pass.
    Timestamps,
    /// Host clock around submit and wait (includes submit and wake-up cost).
    WallClock,
}

impl TimingMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            TimingMethod::Timestamps => "timestamps",
            TimingMethod::WallClock => "wall",
        }
    }
}

/// Times of `reps` runs of one piece of work, in milliseconds.
#[derive(Debug, Clone)]
pub struct Timing {
    pub method: TimingMethod,
    /// Per run, in run order.
    pub samples_ms: Vec<f64>,
    /// Wall time per run (submit + wait), whatever `method` is.
    pub wall_ms: Vec<f64>,
    /// Dispatches recorded per run.
    pub dispatches: u32,
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

impl Timing {
    pub fn median_ms(&self) -> f64 {
        median(&self.samples_ms)
    }

    pub fn min_ms(&self) -> f64 {
        self.samples_ms.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn wall_median_ms(&self) -> f64 {
        median(&self.wall_ms)
    }

    /// Achieved rate for `flop` floating-point operations per run.
    pub fn gflops(&self, flop: f64) -> f64 {
        flop / (self.median_ms() * 1e-3) / 1e9
    }

    /// Achieved bandwidth for `bytes` moved per run.
    pub fn gbps(&self, bytes: f64) -> f64 {
        bytes / (self.median_ms() * 1e-3) / 1e9
    }
}

/// Reusable timing resources (a 2-entry timestamp query set and its resolve
/// buffer when the device has timestamps).
pub struct Timer {
    queries: Option<(wgpu::QuerySet, wgpu::Buffer)>,
    period_ns: f64,
}

impl Timer {
    /// Timestamps when `ctx` offers them, unless `force_wall`.
    pub fn new(ctx: &GpuContext, force_wall: bool) -> Timer {
        let queries = (ctx.has_timestamps() && !force_wall).then(|| {
            let qs = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("timer queries"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            let buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timer resolve"),
                size: 2 * wgpu::QUERY_SIZE as u64,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            (qs, buf)
        });
        Timer { queries, period_ns: f64::from(ctx.queue.get_timestamp_period()) }
    }

    pub fn method(&self) -> TimingMethod {
        if self.queries.is_some() {
            TimingMethod::Timestamps
        } else {
            TimingMethod::WallClock
        }
    }

    /// One run of `work` in one compute pass: (GPU ms if timestamps, wall ms, dispatches).
    fn run_once(&self, ctx: &GpuContext, work: &[&dyn Recordable]) -> Result<(Option<f64>, f64, u32), GpuError> {
        let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("timed run") });
        // Empty passes write the timestamps before and after the work, which
        // may open several passes (copies between them: `Recorder::between_passes`).
        let stamp = |enc: &mut wgpu::CommandEncoder, at: u32| {
            if let Some((qs, _)) = &self.queries {
                let tw = wgpu::ComputePassTimestampWrites {
                    query_set: qs,
                    beginning_of_pass_write_index: Some(at),
                    end_of_pass_write_index: None,
                };
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("timer"),
                    timestamp_writes: Some(tw),
                });
            }
        };
        stamp(&mut enc, 0);
        let n = {
            let mut rec = Recorder::new(&mut enc, "timed run");
            for w in work {
                w.record_into(&mut rec);
            }
            rec.dispatches
        };
        stamp(&mut enc, 1);
        if let Some((qs, buf)) = &self.queries {
            enc.resolve_query_set(qs, 0..2, buf, 0);
        }
        let t0 = std::time::Instant::now();
        buffers::submit_and_wait(ctx, enc)?;
        let wall = t0.elapsed().as_secs_f64() * 1e3;
        let gpu = match &self.queries {
            Some((_, buf)) => {
                let ticks = buffers::read::<u64>(ctx, buf, 0, 2)?;
                Some(ticks[1].wrapping_sub(ticks[0]) as f64 * self.period_ns * 1e-6)
            }
            None => None,
        };
        Ok((gpu, wall, n))
    }

    /// `warmup` untimed runs, then `reps` timed ones.
    pub fn time(
        &self,
        ctx: &GpuContext,
        work: &[&dyn Recordable],
        warmup: usize,
        reps: usize,
    ) -> Result<Timing, GpuError> {
        let mut dispatches = 0;
        for _ in 0..warmup {
            dispatches = self.run_once(ctx, work)?.2;
        }
        let mut samples_ms = Vec::with_capacity(reps);
        let mut wall_ms = Vec::with_capacity(reps);
        for _ in 0..reps {
            let (gpu, wall, n) = self.run_once(ctx, work)?;
            dispatches = n;
            samples_ms.push(gpu.unwrap_or(wall));
            wall_ms.push(wall);
        }
        Ok(Timing { method: self.method(), samples_ms, wall_ms, dispatches })
    }
}
