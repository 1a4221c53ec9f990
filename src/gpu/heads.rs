//! Launchers of `shaders/heads.wgsl`: both heads fused with the masked loss,
//! forward (probabilities, dL/dlogits, per-row losses, deterministic loss sums) and
//! backward (dR written, head gradients accumulated). CPU reference: `cpu::heads`.
//! One launch covers a list of models ([`HeadsProblem`], one per model: its R
//! block and width, tasks, head offsets in the parameter arenas, output blocks and
//! loss slot), each computed exactly as a one-model launch computes it.
//! Letters: B, U, R representation width.

use super::context::{GpuContext, GpuError};
use super::launch::{Launch, ProblemList, Recordable};
use super::pipelines::{grid_1d, Bind, Recorder, Shader};
use crate::config::ModelConfig;
use crate::params::Layout;

/// Columns of `probs` and `dz`: 2 sentiment classes, then 7 emotion labels.
pub const CLASSES: usize = 9;
/// Entries of a loss slot: [L, sum CE, sum mean-BCE, real utterances].
pub const LOSS_LEN: usize = 4;
/// Modality slots of a model (T, A, V order of its modalities).
pub const SLOTS: usize = 3;

fn c32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Mirrors `HeadsParams` in heads.wgsl: what the models of a launch share.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct HeadsParams {
    pub b: u32,
    pub u: u32,
    /// Block width D.
    pub d: u32,
    /// heads_loss: 1 adds into each loss slot instead of writing it.
    pub accumulate: u32,
    /// Entries of the problem list (set by the launchers from the list they are given).
    pub problems: u32,
    /// The largest rw of the problems (set by the launchers): the backward grids' width.
    pub rw_max: u32,
    pub _pad: [u32; 2],
}

impl HeadsParams {
    /// A (B, U) batch of models with block width `d`.
    pub fn new(b: usize, u: usize, d: usize, accumulate: bool) -> HeadsParams {
        HeadsParams {
            b: c32(b),
            u: c32(u),
            d: c32(d),
            accumulate: u32::from(accumulate),
            problems: 1,
            rw_max: 0,
            _pad: [0; 2],
        }
    }

    fn for_list(self, problems: &[HeadsProblem]) -> HeadsParams {
        let rw_max = problems.iter().map(|q| q.rw).max().unwrap_or(0);
        HeadsParams { problems: c32(problems.len()), rw_max, ..self }
    }
}

/// `HeadsProblem::plain` entry of a slot without a plain block.
pub const NO_BLOCK: u32 = u32::MAX;

/// Mirrors `HeadsProblem` in heads.wgsl: one model's heads, as element offsets into
/// the bound buffers unless said.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct HeadsProblem {
    /// The model's R (B, U, rw) in the R arena (the same offset in dR).
    pub r_off: u32,
    /// Its representation width.
    pub rw: u32,
    pub has_sentiment: u32,
    pub has_emotion: u32,
    /// sentiment.weight (2, R), sentiment.bias (2), emotion.weight (7, R),
    /// emotion.bias (7) in the parameter (and gradient) arena.
    pub ws_off: u32,
    pub bs_off: u32,
    pub we_off: u32,
    pub be_off: u32,
    /// Loss weights.
    pub w_s: f32,
    pub w_e: f32,
    /// probs (B, U, 9), dz (B, U, 9), row_loss (B, U, 2) in their buffers.
    pub probs_off: u32,
    pub dz_off: u32,
    pub row_loss_off: u32,
    /// The model's [`LOSS_LEN`]-float loss slot in the loss buffer.
    pub loss_off: u32,
    /// Column in R of modality slot s's plain block ([`NO_BLOCK`]: none): heads_backward
    /// also adds that block of dR into the slot's block gradient.
    pub plain: [u32; SLOTS],
    /// Slot s's block gradient (B, U, D) in the dfeat arena.
    pub dfeat_off: [u32; SLOTS],
}

impl HeadsProblem {
    /// The heads of `cfg` in `layout`, its parameters at `w_base` of the parameter
    /// arena; every other offset 0 and no plain block (set them with the builder methods).
    pub fn new(cfg: &ModelConfig, layout: &Layout, w_base: usize) -> HeadsProblem {
        let off = |n: &str| layout.get(n).map(|s| c32(w_base + s.offset)).unwrap_or(0);
        HeadsProblem {
            r_off: 0,
            rw: c32(cfg.repr_width()),
            has_sentiment: u32::from(cfg.tasks.has_sentiment()),
            has_emotion: u32::from(cfg.tasks.has_emotion()),
            ws_off: off("sentiment.weight"),
            bs_off: off("sentiment.bias"),
            we_off: off("emotion.weight"),
            be_off: off("emotion.bias"),
            w_s: cfg.w_sentiment as f32,
            w_e: cfg.w_emotion as f32,
            probs_off: 0,
            dz_off: 0,
            row_loss_off: 0,
            loss_off: 0,
            plain: [NO_BLOCK; SLOTS],
            dfeat_off: [0; SLOTS],
        }
    }

    /// The model's R (and dR) block at element `r_off`.
    pub fn r(self, r_off: usize) -> HeadsProblem {
        HeadsProblem { r_off: c32(r_off), ..self }
    }

    /// Its probs, dz, row_loss blocks and loss slot at these elements of their buffers.
    pub fn outputs(self, probs: usize, dz: usize, row_loss: usize, loss: usize) -> HeadsProblem {
        HeadsProblem {
            probs_off: c32(probs),
            dz_off: c32(dz),
            row_loss_off: c32(row_loss),
            loss_off: c32(loss),
            ..self
        }
    }

    /// Per modality slot: the plain block's column in R (`None`: no plain block)
    /// and the slot's block gradient in the dfeat arena, for the fused block-gradient
    /// copy of heads_backward.
    pub fn with_plain(mut self, plain: &[(Option<usize>, usize)]) -> HeadsProblem {
        for (s, &(col, dfeat)) in plain.iter().enumerate().take(SLOTS) {
            self.plain[s] = col.map_or(NO_BLOCK, |o| u32::try_from(o).unwrap_or(NO_BLOCK));
            self.dfeat_off[s] = c32(dfeat);
        }
        self
    }
}

/// The forward: per-row heads, then the loss reductions (2 dispatches).
pub struct HeadsForward {
    pub rows: Launch<HeadsParams>,
    pub loss: Launch<HeadsParams>,
    list: ProblemList<HeadsProblem>,
}

impl HeadsForward {
    /// New shared params and models (1..=capacity) for the next submit.
    pub fn update(&mut self, ctx: &GpuContext, p: HeadsParams, problems: &[HeadsProblem]) -> Result<(), GpuError> {
        self.list.write(ctx, problems)?;
        let p = p.for_list(problems);
        self.rows.update(ctx, p);
        self.loss.update(ctx, p);
        Ok(())
    }
}

impl Recordable for HeadsForward {
    fn record_into(&self, rec: &mut Recorder) {
        self.rows.record(rec);
        self.loss.record(rec);
    }
}

/// Per model: probs (B, U, 9), dz (B, U, 9), row_loss (B, U, 2) and its loss slot
/// (4) from its R block, the parameter arena `w`, the labels (B, U, 7) at 0 of the
/// shared batch `inputs` and len (B) u32. `capacity`: the most models a later
/// `update` may give.
#[allow(clippy::too_many_arguments)]
pub fn heads_forward(
    ctx: &GpuContext,
    probs: &wgpu::Buffer,
    dz: &wgpu::Buffer,
    row_loss: &wgpu::Buffer,
    loss: &wgpu::Buffer,
    r: &wgpu::Buffer,
    w: &wgpu::Buffer,
    inputs: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: HeadsParams,
    problems: &[HeadsProblem],
    capacity: usize,
) -> Result<HeadsForward, GpuError> {
    use Bind::*;
    let list = ProblemList::new(ctx, "heads forward", problems, capacity)?;
    let p = p.for_list(problems);
    let q = &list.buffer;
    let binds = [Uniform, Read, Read, Read, Read, Read, Write, Write, Write];
    let k = ctx.pipelines.get(ctx, Shader::Heads, "heads_forward", &binds)?;
    let rows = Launch::new(ctx, k, &[q, r, w, inputs, len, probs, dz, row_loss], p, |p| {
        let [x, y, _] = grid_1d(p.b as usize * p.u as usize, 64);
        [x, y, p.problems]
    })?;
    let k = ctx.pipelines.get(ctx, Shader::Heads, "heads_loss", &[Uniform, Read, Read, Read, Write])?;
    let loss = Launch::new(ctx, k, &[q, row_loss, len, loss], p, |p| [1, 1, p.problems])?;
    Ok(HeadsForward { rows, loss, list })
}

/// The backward: dR, then the head gradients (2 dispatches).
pub struct HeadsBackward {
    pub input: Launch<HeadsParams>,
    pub weights: Launch<HeadsParams>,
    list: ProblemList<HeadsProblem>,
}

impl HeadsBackward {
    /// New shared params and models (1..=capacity) for the next submit.
    pub fn update(&mut self, ctx: &GpuContext, p: HeadsParams, problems: &[HeadsProblem]) -> Result<(), GpuError> {
        self.list.write(ctx, problems)?;
        let p = p.for_list(problems);
        self.input.update(ctx, p);
        self.weights.update(ctx, p);
        Ok(())
    }
}

impl Recordable for HeadsBackward {
    fn record_into(&self, rec: &mut Recorder) {
        self.input.record(rec);
        self.weights.record(rec);
    }
}

/// Per model: its dR block written, and each plain block of it added into the
/// slot's block gradient in `dfeat` (`HeadsProblem::with_plain`); its head slices
/// of `grads` accumulated; from its dz block saved by the forward, its R block, the
/// parameter arena `w` and len (B).
#[allow(clippy::too_many_arguments)]
pub fn heads_backward(
    ctx: &GpuContext,
    dr: &wgpu::Buffer,
    dfeat: &wgpu::Buffer,
    grads: &wgpu::Buffer,
    dz: &wgpu::Buffer,
    r: &wgpu::Buffer,
    w: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: HeadsParams,
    problems: &[HeadsProblem],
    capacity: usize,
) -> Result<HeadsBackward, GpuError> {
    use Bind::*;
    let list = ProblemList::new(ctx, "heads backward", problems, capacity)?;
    let p = p.for_list(problems);
    let q = &list.buffer;
    let binds = [Uniform, Read, Read, Read, Read, Write, Write];
    let k = ctx.pipelines.get(ctx, Shader::Heads, "heads_backward", &binds)?;
    let input = Launch::new(ctx, k, &[q, dz, w, len, dr, dfeat], p, |p| {
        let [x, y, _] = grid_1d(p.b as usize * p.u as usize * p.rw_max as usize, 256);
        [x, y, p.problems]
    })?;
    let binds = [Uniform, Read, Read, Read, Read, Write];
    let k = ctx.pipelines.get(ctx, Shader::Heads, "heads_backward_weights", &binds)?;
    let weights = Launch::new(ctx, k, &[q, dz, r, len, grads], p, |p| {
        let [x, y, _] = grid_1d(CLASSES * (p.rw_max as usize + 1), 64);
        [x, y, p.problems]
    })?;
    Ok(HeadsBackward { input, weights, list })
}
