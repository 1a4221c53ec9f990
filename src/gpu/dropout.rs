//! Launchers of `shaders/dropout.wgsl`: inverted dropout whose mask is recomputed
//! from (seed, stream, index) with the hash of `cpu::dropout`, forward and backward.
//! One launch covers a list of segments (grid z): consecutive blocks of n elements,
//! each with its own stream (e.g. the GRU output of every branch of every model).

use super::context::{GpuContext, GpuError};
use super::launch::{Launch, ProblemList, Recordable};
use super::pipelines::{grid_1d, Bind, Recorder, Shader};
use crate::cpu::dropout::threshold;

pub const WORKGROUP: u32 = 256;

/// Mirrors `DropoutParams` in dropout.wgsl: what the segments of a launch share.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DropoutParams {
    /// Elements per segment.
    pub n: u32,
    pub seed: u32,
    /// Segments (grid z): segment z lies z * n past the offsets; the launchers
    /// set it from the stream list.
    pub segments: u32,
    pub threshold: u32,
    pub scale: f32,
    /// Element offset of x (forward input) / dx (backward output) in its buffer.
    pub x_off: u32,
    /// Element offset of y (forward output) / dy (backward input) in its buffer.
    pub y_off: u32,
    pub _pad: u32,
}

impl DropoutParams {
    /// Segments of `n` elements under step seed `seed`, drop probability `p`.
    pub fn new(n: usize, seed: u32, p: f64) -> DropoutParams {
        DropoutParams {
            n: u32::try_from(n).unwrap_or(u32::MAX),
            seed,
            segments: 1,
            threshold: threshold(p),
            scale: (1.0 / (1.0 - p)) as f32,
            x_off: 0,
            y_off: 0,
            _pad: 0,
        }
    }

    /// The same masks applied to blocks at element offsets of larger buffers.
    pub fn at(mut self, x_off: usize, y_off: usize) -> DropoutParams {
        self.x_off = u32::try_from(x_off).unwrap_or(u32::MAX);
        self.y_off = u32::try_from(y_off).unwrap_or(u32::MAX);
        self
    }
}

fn grid(p: &DropoutParams) -> [u32; 3] {
    let [x, y, _] = grid_1d(p.n as usize, WORKGROUP);
    [x, y, p.segments]
}

/// A dropout launch over a stream list (one entry per segment, the stream of
/// cpu::dropout::stream), built for up to `capacity` segments.
pub struct DropoutLaunch {
    launch: Launch<DropoutParams>,
    list: ProblemList<u32>,
}

impl DropoutLaunch {
    /// New params and one stream per segment (1..=capacity) for the next submit.
    pub fn update(&mut self, ctx: &GpuContext, p: DropoutParams, streams: &[u32]) -> Result<(), GpuError> {
        self.list.write(ctx, streams)?;
        self.launch.update(ctx, with_segments(p, streams));
        Ok(())
    }

    pub fn params(&self) -> DropoutParams {
        self.launch.params
    }

    pub fn groups(&self) -> [u32; 3] {
        self.launch.groups()
    }

    pub fn record(&self, rec: &mut Recorder) {
        self.launch.record(rec);
    }
}

impl Recordable for DropoutLaunch {
    fn record_into(&self, rec: &mut Recorder) {
        self.launch.record(rec);
    }
}

fn with_segments(p: DropoutParams, streams: &[u32]) -> DropoutParams {
    DropoutParams { segments: u32::try_from(streams.len()).unwrap_or(u32::MAX), ..p }
}

const BINDS: [Bind; 4] = [Bind::Uniform, Bind::Read, Bind::Write, Bind::Read];

fn launch(
    ctx: &GpuContext,
    entry: &'static str,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    p: DropoutParams,
    streams: &[u32],
    capacity: usize,
) -> Result<DropoutLaunch, GpuError> {
    let max_z = ctx.profile.limits.max_compute_workgroups_per_dimension as usize;
    if capacity.max(streams.len()) > max_z {
        return Err(GpuError::Validation(format!(
            "{entry}: {} segments in one launch, more than the device's {max_z} workgroups along grid z",
            capacity.max(streams.len())
        )));
    }
    let list = ProblemList::new(ctx, entry, streams, capacity)?;
    let k = ctx.pipelines.get(ctx, Shader::Dropout, entry, &BINDS)?;
    let launch = Launch::new(ctx, k, &[src, dst, &list.buffer], with_segments(p, streams), grid)?;
    Ok(DropoutLaunch { launch, list })
}

/// y = x * mask, per segment z (n elements, mask of `streams[z]`).
pub fn dropout_forward(
    ctx: &GpuContext,
    y: &wgpu::Buffer,
    x: &wgpu::Buffer,
    p: DropoutParams,
    streams: &[u32],
    capacity: usize,
) -> Result<DropoutLaunch, GpuError> {
    launch(ctx, "dropout_forward", x, y, p, streams, capacity)
}

/// dx = dy * mask (written), per segment z (n elements, mask of `streams[z]`).
pub fn dropout_backward(
    ctx: &GpuContext,
    dx: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    p: DropoutParams,
    streams: &[u32],
    capacity: usize,
) -> Result<DropoutLaunch, GpuError> {
    launch(ctx, "dropout_backward", dy, dx, p, streams, capacity)
}
