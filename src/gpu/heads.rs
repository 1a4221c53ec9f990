//! Launchers of `shaders/heads.wgsl`: both heads fused with the masked loss,
//! forward (probabilities, dL/dlogits, per-row losses, deterministic loss sums) and
//! backward (dR written, head gradients accumulated). CPU reference: `cpu::heads`.
//! Letters: B, U, R representation width.

use super::context::{GpuContext, GpuError};
use super::launch::{Launch, Recordable};
use super::pipelines::{grid_1d, Bind, Recorder, Shader};
use crate::config::ModelConfig;
use crate::params::Layout;

/// Columns of `probs` and `dz`: 2 sentiment classes, then 7 emotion labels.
pub const CLASSES: usize = 9;
/// Entries of the loss buffer: [L, sum CE, sum mean-BCE, real utterances].
pub const LOSS_LEN: usize = 4;

/// Mirrors `HeadsParams` in heads.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct HeadsParams {
    pub b: u32,
    pub u: u32,
    pub rw: u32,
    pub has_sentiment: u32,
    pub has_emotion: u32,
    pub ws_off: u32,
    pub bs_off: u32,
    pub we_off: u32,
    pub be_off: u32,
    pub w_s: f32,
    pub w_e: f32,
    pub accumulate: u32,
    /// Block width D.
    pub d: u32,
    pub _pad: [u32; 3],
    /// Column in R of modality slot s's plain block ([`NO_BLOCK`]: none): heads_backward
    /// also adds that block of dR into the slot's block gradient.
    pub plain: [u32; 4],
}

/// `HeadsParams::plain` entry of a slot without a plain block.
pub const NO_BLOCK: u32 = u32::MAX;

impl HeadsParams {
    /// The heads of `cfg` in `layout`, for a (B, U) batch.
    pub fn new(cfg: &ModelConfig, layout: &Layout, b: usize, u: usize) -> HeadsParams {
        let c = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        let off = |n: &str| layout.get(n).map(|s| c(s.offset)).unwrap_or(0);
        HeadsParams {
            b: c(b),
            u: c(u),
            rw: c(cfg.repr_width()),
            has_sentiment: u32::from(cfg.tasks.has_sentiment()),
            has_emotion: u32::from(cfg.tasks.has_emotion()),
            ws_off: off("sentiment.weight"),
            bs_off: off("sentiment.bias"),
            we_off: off("emotion.weight"),
            be_off: off("emotion.bias"),
            w_s: cfg.w_sentiment as f32,
            w_e: cfg.w_emotion as f32,
            accumulate: 0,
            d: c(cfg.dense),
            _pad: [0; 3],
            plain: [NO_BLOCK; 4],
        }
    }

    /// Plain-block columns per modality slot (`None`: no plain block), for the fused
    /// block-gradient copy of heads_backward.
    pub fn with_plain(mut self, plain: &[Option<usize>]) -> HeadsParams {
        for (s, off) in plain.iter().enumerate().take(3) {
            self.plain[s] = off.map_or(NO_BLOCK, |o| u32::try_from(o).unwrap_or(NO_BLOCK));
        }
        self
    }
}

/// The forward: per-row heads, then the loss reduction (2 dispatches).
pub struct HeadsForward {
    pub rows: Launch<HeadsParams>,
    pub loss: Launch<HeadsParams>,
}

impl HeadsForward {
    pub fn update(&mut self, ctx: &GpuContext, p: HeadsParams) {
        self.rows.update(ctx, p);
        self.loss.update(ctx, p);
    }
}

impl Recordable for HeadsForward {
    fn record_into(&self, rec: &mut Recorder) {
        self.rows.record(rec);
        self.loss.record(rec);
    }
}

/// probs (B, U, 9), dz (B, U, 9), row_loss (B, U, 2) and loss (4) from r (B, U, R),
/// the flat parameters `w`, labels (B, U, 7) and len (B) u32.
#[allow(clippy::too_many_arguments)]
pub fn heads_forward(
    ctx: &GpuContext,
    probs: &wgpu::Buffer,
    dz: &wgpu::Buffer,
    row_loss: &wgpu::Buffer,
    loss: &wgpu::Buffer,
    r: &wgpu::Buffer,
    w: &wgpu::Buffer,
    labels: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: HeadsParams,
) -> Result<HeadsForward, GpuError> {
    use Bind::*;
    let k = ctx.pipelines.get(
        ctx,
        Shader::Heads,
        "heads_forward",
        &[Uniform, Read, Read, Read, Read, Write, Write, Write],
    )?;
    let rows = Launch::new(ctx, k, &[r, w, labels, len, probs, dz, row_loss], p, |p| {
        grid_1d(p.b as usize * p.u as usize, 64)
    })?;
    let k = ctx.pipelines.get(ctx, Shader::Heads, "heads_loss", &[Uniform, Read, Read, Write])?;
    let loss = Launch::new(ctx, k, &[row_loss, len, loss], p, |_| [1, 1, 1])?;
    Ok(HeadsForward { rows, loss })
}

/// The backward: dR, then the head gradients (2 dispatches).
pub struct HeadsBackward {
    pub input: Launch<HeadsParams>,
    pub weights: Launch<HeadsParams>,
}

impl HeadsBackward {
    pub fn update(&mut self, ctx: &GpuContext, p: HeadsParams) {
        self.input.update(ctx, p);
        self.weights.update(ctx, p);
    }
}

impl Recordable for HeadsBackward {
    fn record_into(&self, rec: &mut Recorder) {
        self.input.record(rec);
        self.weights.record(rec);
    }
}

/// dr (B, U, R) written, and each plain block of it added into `dblocks[s]` (B, U, D),
/// the block gradient of modality slot s (`HeadsParams::with_plain`; bind any buffer
/// for a slot without one); the head slices of `grads` (flat) accumulated; from dz
/// (B, U, 9) saved by the forward, r (B, U, R), the flat parameters `w` and len (B).
#[allow(clippy::too_many_arguments)]
pub fn heads_backward(
    ctx: &GpuContext,
    dr: &wgpu::Buffer,
    dblocks: [&wgpu::Buffer; 3],
    grads: &wgpu::Buffer,
    dz: &wgpu::Buffer,
    r: &wgpu::Buffer,
    w: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: HeadsParams,
) -> Result<HeadsBackward, GpuError> {
    use Bind::*;
    let k = ctx.pipelines.get(
        ctx,
        Shader::Heads,
        "heads_backward",
        &[Uniform, Read, Read, Read, Write, Write, Write, Write],
    )?;
    let [d0, d1, d2] = dblocks;
    let input = Launch::new(ctx, k, &[dz, w, len, dr, d0, d1, d2], p, |p| {
        grid_1d(p.b as usize * p.u as usize * p.rw as usize, 256)
    })?;
    let k = ctx.pipelines.get(ctx, Shader::Heads, "heads_backward_weights", &[Uniform, Read, Read, Read, Write])?;
    let weights = Launch::new(ctx, k, &[dz, r, len, grads], p, |p| grid_1d(CLASSES * (p.rw as usize + 1), 64))?;
    Ok(HeadsBackward { input, weights })
}
