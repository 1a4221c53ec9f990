//! Launchers of `shaders/representation.wgsl`: the plain blocks of R (a modality's
//! own D-wide matrix copied into its column slice) and their gradients.
//! The attention blocks are written by `attention.rs` directly. CPU reference:
//! the block loop of `cpu::model::{forward, backward}`. Letters: B, U, D, R.

use super::context::{GpuContext, GpuError};
use super::launch::Launch;
use super::pipelines::{grid_1d, Bind, Shader};

pub const WORKGROUP: u32 = 256;

/// Mirrors `ReprParams` in representation.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ReprParams {
    pub b: u32,
    pub u: u32,
    pub d: u32,
    /// Row stride of R.
    pub rw: u32,
    /// Column offset of the block in R.
    pub off: u32,
    pub _pad: [u32; 3],
}

impl ReprParams {
    pub fn new(b: usize, u: usize, d: usize, rw: usize, off: usize) -> ReprParams {
        let c = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        ReprParams { b: c(b), u: c(u), d: c(d), rw: c(rw), off: c(off), _pad: [0; 3] }
    }
}

fn grid(p: &ReprParams) -> [u32; 3] {
    grid_1d(p.b as usize * p.u as usize * p.d as usize, WORKGROUP)
}

/// R[:, off..off + D] (B, U, R) = x (B, U, D).
pub fn representation_forward(ctx: &GpuContext, r: &wgpu::Buffer, x: &wgpu::Buffer, p: ReprParams) -> Result<Launch<ReprParams>, GpuError> {
    let k = ctx.pipelines.get(ctx, Shader::Representation, "representation_forward", &[Bind::Uniform, Bind::Read, Bind::Write])?;
    Launch::new(ctx, k, &[x, r], p, grid)
}

/// dx (B, U, D) += dR[:, off..off + D].
pub fn representation_backward(ctx: &GpuContext, dx: &wgpu::Buffer, dr: &wgpu::Buffer, p: ReprParams) -> Result<Launch<ReprParams>, GpuError> {
    let k = ctx.pipelines.get(ctx, Shader::Representation, "representation_backward", &[Bind::Uniform, Bind::Read, Bind::Write])?;
    Launch::new(ctx, k, &[dr, dx], p, grid)
}
