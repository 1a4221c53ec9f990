//! Launchers of `shaders/attention.wgsl`: the fused CIM unit [att(X,Y), att(Y,X)]
//! over one M = X Y^T (or self-attention att(X,X)), outputs written straight into
//! their slices of R; backward accumulates into dX and dY. CPU reference:
//! `cpu::attention` (called once per direction there).
//! Letters: B, U, D, R (row width of R).

use super::context::{GpuContext, GpuError};
use super::launch::{Launch, Recordable};
use super::pipelines::{grid_1d, Bind, Recorder, Shader};

pub const WORKGROUP: u32 = 64;

/// Mirrors `AttentionParams` in attention.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttentionParams {
    pub b: u32,
    pub u: u32,
    pub d: u32,
    /// 1: a pair X != Y (both directions); 0: self-attention att(X, X).
    pub pair: u32,
    /// Row stride of R and dR.
    pub rw: u32,
    /// Column offset of att(X, Y) in R.
    pub r_xy: u32,
    /// Column offset of att(Y, X) in R (unused for self-attention).
    pub r_yx: u32,
    pub _pad: u32,
}

impl AttentionParams {
    /// `r_yx: None` is self-attention.
    pub fn new(b: usize, u: usize, d: usize, rw: usize, r_xy: usize, r_yx: Option<usize>) -> AttentionParams {
        let c = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        AttentionParams {
            b: c(b),
            u: c(u),
            d: c(d),
            pair: u32::from(r_yx.is_some()),
            rw: c(rw),
            r_xy: c(r_xy),
            r_yx: c(r_yx.unwrap_or(0)),
            _pad: 0,
        }
    }

    fn dirs(&self) -> usize {
        if self.pair != 0 {
            2
        } else {
            1
        }
    }

    fn bu(&self) -> usize {
        self.b as usize * self.u as usize
    }
}

/// Buffers the forward saves for the backward.
pub struct AttentionSaved<'a> {
    /// (B, U, U) M = X Y^T
    pub m: &'a wgpu::Buffer,
    /// (2, B, U, U) softmax weights of both directions
    pub n: &'a wgpu::Buffer,
    /// (2, B, U, D) weighted sums N Y and N' X
    pub o: &'a wgpu::Buffer,
}

/// Three dispatches: scores, softmax, weighted sum + gate into R.
pub struct AttentionForward {
    pub scores: Launch<AttentionParams>,
    pub softmax: Launch<AttentionParams>,
    pub output: Launch<AttentionParams>,
}

impl AttentionForward {
    pub fn update(&mut self, ctx: &GpuContext, p: AttentionParams) {
        self.scores.update(ctx, p);
        self.softmax.update(ctx, p);
        self.output.update(ctx, p);
    }
}

impl Recordable for AttentionForward {
    fn record_into(&self, rec: &mut Recorder) {
        self.scores.record(rec);
        self.softmax.record(rec);
        self.output.record(rec);
    }
}

/// R slices (B, U, D at columns r_xy / r_yx of R (B, U, rw)) and the saved M, N, O
/// from x, y (B, U, D) and len (B). For self-attention pass `y = x`.
pub fn attention_forward(
    ctx: &GpuContext,
    r: &wgpu::Buffer,
    saved: &AttentionSaved,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: AttentionParams,
) -> Result<AttentionForward, GpuError> {
    use Bind::*;
    let pc = &ctx.pipelines;
    let k = pc.get(ctx, Shader::Attention, "attention_forward_scores", &[Uniform, Read, Read, Read, Write])?;
    let scores = Launch::new(ctx, k, &[x, y, len, saved.m], p, |p| grid_1d(p.bu() * p.u as usize, WORKGROUP))?;
    let k = pc.get(ctx, Shader::Attention, "attention_forward_softmax", &[Uniform, Read, Read, Write])?;
    let softmax = Launch::new(ctx, k, &[saved.m, len, saved.n], p, |p| grid_1d(p.dirs() * p.bu(), WORKGROUP))?;
    let k = pc.get(ctx, Shader::Attention, "attention_forward", &[Uniform, Read, Read, Read, Read, Write, Write])?;
    let output = Launch::new(ctx, k, &[x, y, saved.n, len, saved.o, r], p, |p| {
        grid_1d(p.dirs() * p.bu() * p.d as usize, WORKGROUP)
    })?;
    Ok(AttentionForward { scores, softmax, output })
}

/// Two dispatches: softmax backward into dM, then dX / dY.
pub struct AttentionBackward {
    pub scores: Launch<AttentionParams>,
    pub input: Launch<AttentionParams>,
}

impl AttentionBackward {
    pub fn update(&mut self, ctx: &GpuContext, p: AttentionParams) {
        self.scores.update(ctx, p);
        self.input.update(ctx, p);
    }
}

impl Recordable for AttentionBackward {
    fn record_into(&self, rec: &mut Recorder) {
        self.scores.record(rec);
        self.input.record(rec);
    }
}

/// dx, dy (B, U, D) accumulated (+=) from dr (B, U, rw) (the slices at r_xy, r_yx);
/// `dm` (2, B, U, U) is scratch. For self-attention pass `y = x` and `dy: None`
/// (both halves go to dx).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    ctx: &GpuContext,
    dx: &wgpu::Buffer,
    dy: Option<&wgpu::Buffer>,
    dm: &wgpu::Buffer,
    dr: &wgpu::Buffer,
    saved: &AttentionSaved,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: AttentionParams,
) -> Result<AttentionBackward, GpuError> {
    use Bind::*;
    if (p.pair != 0) != dy.is_some() {
        return Err(GpuError::Validation("attention_backward: dy must be given exactly for a pair (X != Y)".into()));
    }
    let pc = &ctx.pipelines;
    let k =
        pc.get(ctx, Shader::Attention, "attention_backward_scores", &[Uniform, Read, Read, Read, Read, Read, Write])?;
    let scores = Launch::new(ctx, k, &[x, y, saved.n, dr, len, dm], p, |p| grid_1d(p.dirs() * p.bu(), WORKGROUP))?;
    let binds = [Uniform, Read, Read, Read, Read, Read, Read, Read, Write, Write];
    let k = pc.get(ctx, Shader::Attention, "attention_backward", &binds)?;
    let dy = dy.unwrap_or(&ctx.dummy);
    let input = Launch::new(ctx, k, &[x, y, saved.n, saved.o, dr, dm, len, dx, dy], p, |p| {
        grid_1d(p.bu() * p.d as usize, WORKGROUP)
    })?;
    Ok(AttentionBackward { scores, input })
}
