//! Launchers of `shaders/dropout.wgsl`: inverted dropout whose mask is recomputed
//! from (seed, stream, index) with the hash of `cpu::dropout`, forward and backward.
//! One launch covers a list of segments (grid z): blocks at a stride of n elements
//! (the launch's n, at U_max), each with its own stream, step seed and element
//! count (e.g. the GRU output of every branch of every model, each of its own
//! batch: models of different seeds share the launch, so a 5-seed grid's step is
//! one schedule, not five).

use super::context::{GpuContext, GpuError};
use super::launch::{Launch, ProblemList, Recordable};
use super::pipelines::{grid_1d, Bind, Recorder, Shader};
use super::wgsl::Const;
use crate::cpu::dropout::threshold;

pub const WORKGROUP: u32 = 256;
/// The constants of shaders/dropout.wgsl, written into its module from these values.
pub const WGSL_CONSTS: [Const; 1] = [Const::new("WG", WORKGROUP, "workgroup size")];

/// Mirrors `DropoutParams` in dropout.wgsl: what the segments of a launch share.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DropoutParams {
    /// The segment stride: elements per segment at the launch's U_max (the
    /// largest segment's n); it sizes the grid.
    pub n: u32,
    /// Segments (grid z): segment z lies z * n past the offsets; the launchers
    /// set it from the segment list.
    pub segments: u32,
    pub threshold: u32,
    pub scale: f32,
    /// Element offset of x (forward input) / dx (backward output) in its buffer.
    pub x_off: u32,
    /// Element offset of y (forward output) / dy (backward input) in its buffer.
    pub y_off: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// Mirrors `DropoutSegment` in dropout.wgsl: one entry of a launch's segment list.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DropoutSegment {
    /// Dropout stream of its mask (cpu::dropout::stream).
    pub stream: u32,
    /// Step seed of its mask (its batch's).
    pub seed: u32,
    /// Its own element count (1..=the launch's n): elements past it are untouched.
    pub n: u32,
    pub _pad: u32,
}

fn c32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl DropoutSegment {
    /// `n` elements masked by stream `stream` under step seed `seed`.
    pub fn new(stream: u32, seed: u32, n: usize) -> DropoutSegment {
        DropoutSegment { stream, seed, n: c32(n), _pad: 0 }
    }
}

impl DropoutParams {
    /// Segments at a stride of `n` elements, drop probability `p`.
    pub fn new(n: usize, p: f64) -> DropoutParams {
        DropoutParams {
            n: c32(n),
            segments: 1,
            threshold: threshold(p),
            scale: (1.0 / (1.0 - p)) as f32,
            x_off: 0,
            y_off: 0,
            _pad0: 0,
            _pad1: 0,
        }
    }

    /// The same masks applied to blocks at element offsets of larger buffers.
    pub fn at(mut self, x_off: usize, y_off: usize) -> DropoutParams {
        self.x_off = c32(x_off);
        self.y_off = c32(y_off);
        self
    }
}

fn grid(p: &DropoutParams) -> [u32; 3] {
    let [x, y, _] = grid_1d(p.n as usize, WORKGROUP);
    [x, y, p.segments]
}

/// A dropout launch over a segment list, built for up to `capacity` segments.
pub struct DropoutLaunch {
    launch: Launch<DropoutParams>,
    list: ProblemList<DropoutSegment>,
}

impl DropoutLaunch {
    /// New params and segments (1..=capacity) for the next submit; refuses a
    /// segment of no elements or of more than the stride `p.n`.
    pub fn update(&mut self, ctx: &GpuContext, p: DropoutParams, segments: &[DropoutSegment]) -> Result<(), GpuError> {
        check_segments(self.launch.label(), &p, segments)?;
        self.list.write(ctx, segments)?;
        self.launch.update(ctx, with_segments(p, segments));
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

fn with_segments(p: DropoutParams, segments: &[DropoutSegment]) -> DropoutParams {
    DropoutParams { segments: c32(segments.len()), ..p }
}

/// A segment must hold 1..=p.n elements: more would run into the next segment's block.
fn check_segments(label: &str, p: &DropoutParams, segments: &[DropoutSegment]) -> Result<(), GpuError> {
    match segments.iter().position(|s| s.n == 0 || s.n > p.n) {
        Some(z) => Err(GpuError::Validation(format!(
            "{label}: segment {z} has n = {}, outside 1..={} (the launch's segment stride)",
            segments[z].n, p.n
        ))),
        None => Ok(()),
    }
}

const BINDS: [Bind; 4] = [Bind::Uniform, Bind::Read, Bind::Write, Bind::Read];

fn launch(
    ctx: &GpuContext,
    entry: &'static str,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    p: DropoutParams,
    segments: &[DropoutSegment],
    capacity: usize,
) -> Result<DropoutLaunch, GpuError> {
    check_segments(entry, &p, segments)?;
    let list = ProblemList::along_z(ctx, entry, segments, capacity)?;
    let k = ctx.pipelines.get(ctx, Shader::Dropout, entry, &BINDS)?;
    let launch = Launch::new(ctx, k, &[src, dst, &list.buffer], with_segments(p, segments), grid)?;
    Ok(DropoutLaunch { launch, list })
}

/// y = x * mask, per segment z (its n elements at z * p.n, the mask of its seed and stream).
pub fn dropout_forward(
    ctx: &GpuContext,
    y: &wgpu::Buffer,
    x: &wgpu::Buffer,
    p: DropoutParams,
    segments: &[DropoutSegment],
    capacity: usize,
) -> Result<DropoutLaunch, GpuError> {
    launch(ctx, "dropout_forward", x, y, p, segments, capacity)
}

/// dx = dy * mask (written), per segment z (its n elements at z * p.n, the mask of its seed and stream).
pub fn dropout_backward(
    ctx: &GpuContext,
    dx: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    p: DropoutParams,
    segments: &[DropoutSegment],
    capacity: usize,
) -> Result<DropoutLaunch, GpuError> {
    launch(ctx, "dropout_backward", dy, dx, p, segments, capacity)
}
