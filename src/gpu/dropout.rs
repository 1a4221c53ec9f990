//! Launchers of `shaders/dropout.wgsl`: inverted dropout whose mask is recomputed
//! from (seed, stream, index) with the hash of `cpu::dropout`, forward and backward.

use super::context::{GpuContext, GpuError};
use super::launch::Launch;
use super::pipelines::{grid_1d, Bind, Shader};
use crate::cpu::dropout::threshold;

pub const WORKGROUP: u32 = 256;

/// Mirrors `DropoutParams` in dropout.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DropoutParams {
    /// Elements per segment.
    pub n: u32,
    pub seed: u32,
    /// Segments (grid z, <= 4): segment z lies z * n past the offsets.
    pub segments: u32,
    pub threshold: u32,
    pub scale: f32,
    /// Element offset of x (forward input) / dx (backward output) in its buffer.
    pub x_off: u32,
    /// Element offset of y (forward output) / dy (backward input) in its buffer.
    pub y_off: u32,
    pub _pad: u32,
    /// Stream of segment z.
    pub stream: [u32; 4],
}

impl DropoutParams {
    /// `n` elements of stream `stream` under step seed `seed`, drop probability `p`.
    pub fn new(n: usize, seed: u32, stream: u32, p: f64) -> DropoutParams {
        DropoutParams {
            n: u32::try_from(n).unwrap_or(u32::MAX),
            seed,
            segments: 1,
            threshold: threshold(p),
            scale: (1.0 / (1.0 - p)) as f32,
            x_off: 0,
            y_off: 0,
            _pad: 0,
            stream: [stream, 0, 0, 0],
        }
    }

    /// `streams.len()` (<= 4) consecutive segments of n elements, one stream each.
    pub fn segments(mut self, streams: &[u32]) -> DropoutParams {
        self.segments = u32::try_from(streams.len()).unwrap_or(u32::MAX);
        self.stream[..streams.len()].copy_from_slice(streams);
        self
    }

    /// The same mask applied to blocks at element offsets of larger buffers.
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

const BINDS: [Bind; 3] = [Bind::Uniform, Bind::Read, Bind::Write];

/// y = x * mask, (n) each.
pub fn dropout_forward(
    ctx: &GpuContext,
    y: &wgpu::Buffer,
    x: &wgpu::Buffer,
    p: DropoutParams,
) -> Result<Launch<DropoutParams>, GpuError> {
    let k = ctx.pipelines.get(ctx, Shader::Dropout, "dropout_forward", &BINDS)?;
    Launch::new(ctx, k, &[x, y], p, grid)
}

/// dx = dy * mask (written), (n) each.
pub fn dropout_backward(
    ctx: &GpuContext,
    dx: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    p: DropoutParams,
) -> Result<Launch<DropoutParams>, GpuError> {
    let k = ctx.pipelines.get(ctx, Shader::Dropout, "dropout_backward", &BINDS)?;
    Launch::new(ctx, k, &[dy, dx], p, grid)
}
