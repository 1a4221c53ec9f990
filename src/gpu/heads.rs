//! Launchers of `shaders/heads.wgsl`: both heads fused with the masked loss,
//! forward (probabilities, dL/dlogits, per-row losses, deterministic loss sums) and
//! backward (dR written, head gradients accumulated). CPU reference: `cpu::heads`.
//! One launch covers a list of models ([`HeadsProblem`], one per model: its R
//! block and width, tasks, head offsets in the parameter arenas, output blocks and
//! loss slot), each computed exactly as a one-model launch computes it. Each
//! problem carries its own batch (u, the offsets of its lengths and labels), so
//! models of different seeds share one launch; the launch's U is the largest u
//! (U_max) and sizes the grids, every problem's blocks are laid out with its own u.
//! Letters: B, U (a problem's own u), R representation width.

use std::sync::Arc;

use super::context::{GpuContext, GpuError};
use super::launch::{check_batch, Launch, ProblemList, Recordable};
use super::pipelines::{grid_1d, Bind, Recorder, Shader};
use super::texture::{self, BufferTexture};
use super::wgsl::Const;

mod views;
use crate::config::{ModelConfig, EMOTION_LABELS, SENTIMENT_CLASSES};
use crate::params::Layout;
pub use views::{tex_body, views};

/// Columns of `probs` and `dz`: 2 sentiment classes, then 7 emotion labels.
pub const CLASSES: usize = SENTIMENT_CLASSES + EMOTION_LABELS;
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
    /// U_max: the largest `u` of the problems (the grids' extent).
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
    /// Models on batches of `b` videos, `u` = U_max (the longest batch of the problems),
    /// block width `d`.
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

/// Columns of dR one heads_backward invocation computes (its problem entry,
/// length and dz row read once for them, the weights as quads: a multiple of 4).
pub const BACKWARD_COLS: u32 = 8;
const _: () = assert!(BACKWARD_COLS.is_multiple_of(4));

/// The constants of shaders/heads.wgsl, written into its module from these values.
pub const WGSL_CONSTS: [Const; 5] = [
    Const::new("C", CLASSES as u32, "columns of probs and dz: sentiment classes, then emotion labels"),
    Const::new("S", SENTIMENT_CLASSES as u32, "sentiment classes"),
    Const::new("E", EMOTION_LABELS as u32, "emotion labels (six emotions and 'any emotion')"),
    Const::new("NO_BLOCK", NO_BLOCK, "plain entry of a slot without a plain block"),
    Const::new("BW_COLS", BACKWARD_COLS, "columns of dR per heads_backward invocation"),
];

/// Mirrors `HeadsProblem` in heads.wgsl: one model's heads, as element offsets into
/// the bound buffers unless said, and its batch. Every block is laid out with the
/// problem's own `u` (rows b * u + i), as in a launch of its own at U = u.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct HeadsProblem {
    /// The model's R (B, u, rw) in the R arena (the same offset in dR).
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
    /// probs (B, u, 9), dz (B, u, 9), row_loss (B, u, 2) in their buffers.
    pub probs_off: u32,
    pub dz_off: u32,
    pub row_loss_off: u32,
    /// The model's [`LOSS_LEN`]-float loss slot in the loss buffer.
    pub loss_off: u32,
    /// Column in R of modality slot s's plain block ([`NO_BLOCK`]: none): heads_backward
    /// also adds that block of dR into the slot's block gradient.
    pub plain: [u32; SLOTS],
    /// Slot s's block gradient (B, u, D) in the dfeat arena.
    pub dfeat_off: [u32; SLOTS],
    /// The problem's own U (its batch's longest video), 1..=the launch's U.
    pub u: u32,
    /// Its B lengths at `len[len_off + b]`.
    pub len_off: u32,
    /// Its labels (B, u, 7) at this element of the labels binding (the batch inputs).
    pub lab_off: u32,
    pub _pad: u32,
}

impl HeadsProblem {
    /// The heads of `cfg` in `layout`, its parameters at `w_base` of the parameter
    /// arena; every other offset 0, no plain block and no batch yet (set them with the
    /// builder methods; a launch refuses u = 0).
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
            u: 0,
            len_off: 0,
            lab_off: 0,
            _pad: 0,
        }
    }

    /// Its batch: `u` (the batch's longest video, <= the launch's U) and its lengths
    /// at `len_off` of the bound length buffer.
    pub fn batch(self, u: usize, len_off: usize) -> HeadsProblem {
        HeadsProblem { u: c32(u), len_off: c32(len_off), ..self }
    }

    /// Its batch's labels (B, u, 7) at element `lab_off` of the labels binding.
    pub fn labels(self, lab_off: usize) -> HeadsProblem {
        HeadsProblem { lab_off: c32(lab_off), ..self }
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

/// Every problem's batch fits the launch `p`, the length buffer (`len_elems`
/// entries) and, for the forward, the labels binding (`labels`: its entries).
fn check_problems(
    what: &str,
    p: &HeadsParams,
    problems: &[HeadsProblem],
    len_elems: u64,
    labels: Option<u64>,
) -> Result<(), GpuError> {
    for (i, q) in problems.iter().enumerate() {
        check_batch(what, i, (q.u, q.len_off), (p.b, p.u), len_elems)?;
        let need = u64::from(q.lab_off) + u64::from(p.b) * u64::from(q.u) * 7;
        if let Some(have) = labels.filter(|&have| need > have) {
            let why = format!("has its labels at {} to {need}, past the {have} of the labels binding", q.lab_off);
            return Err(GpuError::BadProblem { launch: what.to_string(), problem: i, why });
        }
    }
    Ok(())
}

/// Entries of a 4-byte-element buffer.
fn elems(buf: &wgpu::Buffer) -> u64 {
    buf.size() / 4
}

/// The texture form's operand: its texture, the buffer it copies, and which
/// part of the buffer the problems read (`Part`), in bytes from its start.
struct Operand {
    texture: Arc<BufferTexture>,
    part: Part,
    bytes: u64,
}

/// What of an operand's buffer the problems read.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// The parameter arena: all of it (the heads sit anywhere).
    Whole,
    /// Each problem's R block (B, u, rw) at r_off.
    R,
    /// Each problem's dz block (B, u, C) at dz_off.
    Dz,
}

impl Operand {
    fn new(ctx: &GpuContext, buffer: &wgpu::Buffer, part: Part) -> Result<Operand, GpuError> {
        let texture = BufferTexture::shared(ctx, "heads operand texture", buffer)?;
        Ok(Operand { texture, part, bytes: buffer.size() })
    }

    fn resize(&mut self, p: &HeadsParams, problems: &[HeadsProblem]) {
        let end = |off: fn(&HeadsProblem) -> u32, width: fn(&HeadsProblem) -> u32| {
            let rows = |q: &HeadsProblem| u64::from(p.b) * u64::from(q.u);
            problems.iter().map(|q| u64::from(off(q)) + rows(q) * u64::from(width(q))).max().unwrap_or(0)
        };
        let size = self.texture.buffer().size();
        self.bytes = match self.part {
            Part::Whole => size,
            Part::R => (4 * end(|q| q.r_off, |q| q.rw)).min(size),
            Part::Dz => (4 * end(|q| q.dz_off, |_| CLASSES as u32)).min(size),
        };
    }

    fn view(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::TextureView(&self.texture.view)
    }

    fn refresh(&self, rec: &mut Recorder) {
        if self.bytes > 0 {
            self.texture.refresh_prefix(rec, self.bytes);
        }
    }
}

/// The texture form where the device prefers it (`texture::preferred`) and
/// every operand fits a texture; else the storage form.
fn texture_form(ctx: &GpuContext, textures: bool, buffers: &[&wgpu::Buffer]) -> bool {
    textures && buffers.iter().all(|b| texture::fits(ctx, b))
}

/// The forward: per-row heads, then the loss reductions (2 dispatches).
pub struct HeadsForward {
    pub rows: Launch<HeadsParams>,
    pub loss: Launch<HeadsParams>,
    list: ProblemList<HeadsProblem>,
    /// Entries of the bound length and labels buffers.
    len_elems: u64,
    label_elems: u64,
    /// The texture form's R and parameter textures (none in the storage form).
    operands: Vec<Operand>,
}

impl HeadsForward {
    /// New shared params and models (1..=capacity) for the next submit.
    pub fn update(&mut self, ctx: &GpuContext, p: HeadsParams, problems: &[HeadsProblem]) -> Result<(), GpuError> {
        check_problems("heads forward", &p, problems, self.len_elems, Some(self.label_elems))?;
        self.list.write(ctx, problems)?;
        let p = p.for_list(problems);
        self.rows.update(ctx, p);
        self.loss.update(ctx, p);
        self.operands.iter_mut().for_each(|o| o.resize(&p, problems));
        Ok(())
    }

    /// Whether this launch runs the texture form (`heads_tex_*`).
    pub fn reads_textures(&self) -> bool {
        !self.operands.is_empty()
    }
}

impl Recordable for HeadsForward {
    fn record_into(&self, rec: &mut Recorder) {
        self.operands.iter().for_each(|o| o.refresh(rec));
        self.rows.record(rec);
        self.loss.record(rec);
    }
}

/// Per model: probs (B, u, 9), dz (B, u, 9), row_loss (B, u, 2) and its loss slot
/// (4) from its R block, the parameter arena `w`, its labels (B, u, 7) at `lab_off`
/// of `inputs` and its B lengths (u32) at `len_off` of `len`. `capacity`: the most
/// models a later `update` may give.
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
    let textures = texture::preferred(&ctx.profile);
    heads_forward_form(ctx, [probs, dz, row_loss, loss], [r, w, inputs, len], p, problems, capacity, textures)
}

/// `heads_forward` in the form asked for: with `textures`, the texture form
/// (R and the parameters through texture copies, where they fit one).
/// `cimnet check` and the tests run both forms on any device.
pub fn heads_forward_form(
    ctx: &GpuContext,
    [probs, dz, row_loss, loss]: [&wgpu::Buffer; 4],
    [r, w, inputs, len]: [&wgpu::Buffer; 4],
    p: HeadsParams,
    problems: &[HeadsProblem],
    capacity: usize,
    textures: bool,
) -> Result<HeadsForward, GpuError> {
    use Bind::*;
    check_problems("heads forward", &p, problems, elems(len), Some(elems(inputs)))?;
    let list = ProblemList::new(ctx, "heads forward", problems, capacity)?;
    let p = p.for_list(problems);
    let q = &list.buffer;
    let tex = texture_form(ctx, textures, &[r, w]);
    let (shader, t) = if tex { (Shader::HeadsTex, Texture) } else { (Shader::Heads, Read) };
    let mut operands =
        if tex { vec![Operand::new(ctx, r, Part::R)?, Operand::new(ctx, w, Part::Whole)?] } else { Vec::new() };
    let binds = [Uniform, Read, t, t, Read, Read, Write, Write, Write];
    let k = ctx.pipelines.get(ctx, shader, if tex { "heads_tex_forward" } else { "heads_forward" }, &binds)?;
    let grid = |p: &HeadsParams| {
        let [x, y, _] = grid_1d(p.b as usize * p.u as usize, 64);
        [x, y, p.problems]
    };
    let rows = match &operands[..] {
        [r, w] => {
            let res = [q.as_entire_binding(), r.view(), w.view()];
            let rest = [inputs, len, probs, dz, row_loss].map(|b| b.as_entire_binding());
            Launch::with_resources(ctx, k, &[&res[..], &rest].concat(), p, grid)?
        }
        _ => Launch::new(ctx, k, &[q, r, w, inputs, len, probs, dz, row_loss], p, grid)?,
    };
    let k = ctx.pipelines.get(
        ctx,
        shader,
        if tex { "heads_tex_loss" } else { "heads_loss" },
        &[Uniform, Read, Read, Read, Write],
    )?;
    let loss = Launch::new(ctx, k, &[q, row_loss, len, loss], p, |p| [1, 1, p.problems])?;
    operands.iter_mut().for_each(|o| o.resize(&p, problems));
    Ok(HeadsForward { rows, loss, list, len_elems: elems(len), label_elems: elems(inputs), operands })
}

/// The backward: dR, then the head gradients (2 dispatches).
pub struct HeadsBackward {
    pub input: Launch<HeadsParams>,
    pub weights: Launch<HeadsParams>,
    list: ProblemList<HeadsProblem>,
    /// Entries of the bound length buffer.
    len_elems: u64,
    /// The texture form's dz, parameter and R textures (none in the storage form).
    operands: Vec<Operand>,
}

impl HeadsBackward {
    /// New shared params and models (1..=capacity) for the next submit.
    pub fn update(&mut self, ctx: &GpuContext, p: HeadsParams, problems: &[HeadsProblem]) -> Result<(), GpuError> {
        check_problems("heads backward", &p, problems, self.len_elems, None)?;
        self.list.write(ctx, problems)?;
        let p = p.for_list(problems);
        self.input.update(ctx, p);
        self.weights.update(ctx, p);
        self.operands.iter_mut().for_each(|o| o.resize(&p, problems));
        Ok(())
    }

    /// Whether this launch runs the texture form (`heads_tex_*`).
    pub fn reads_textures(&self) -> bool {
        !self.operands.is_empty()
    }
}

impl Recordable for HeadsBackward {
    fn record_into(&self, rec: &mut Recorder) {
        self.operands.iter().for_each(|o| o.refresh(rec));
        self.input.record(rec);
        self.weights.record(rec);
    }
}

/// Per model: its dR block written, and each plain block of it added into the
/// slot's block gradient in `dfeat` (`HeadsProblem::with_plain`); its head slices
/// of `grads` accumulated; from its dz block saved by the forward, its R block, the
/// parameter arena `w` and its B lengths at `len_off` of `len`.
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
    let textures = texture::preferred(&ctx.profile);
    heads_backward_form(ctx, [dr, dfeat, grads], [dz, r, w, len], p, problems, capacity, textures)
}

/// `heads_backward` in the form asked for: with `textures`, the texture form
/// (dz, the parameters and R through texture copies, where they fit one).
pub fn heads_backward_form(
    ctx: &GpuContext,
    [dr, dfeat, grads]: [&wgpu::Buffer; 3],
    [dz, r, w, len]: [&wgpu::Buffer; 4],
    p: HeadsParams,
    problems: &[HeadsProblem],
    capacity: usize,
    textures: bool,
) -> Result<HeadsBackward, GpuError> {
    use Bind::*;
    check_problems("heads backward", &p, problems, elems(len), None)?;
    let list = ProblemList::new(ctx, "heads backward", problems, capacity)?;
    let p = p.for_list(problems);
    let q = &list.buffer;
    let tex = texture_form(ctx, textures, &[dz, r, w]);
    let (shader, t) = if tex { (Shader::HeadsTex, Texture) } else { (Shader::Heads, Read) };
    let mut operands = if tex {
        vec![Operand::new(ctx, dz, Part::Dz)?, Operand::new(ctx, w, Part::Whole)?, Operand::new(ctx, r, Part::R)?]
    } else {
        Vec::new()
    };
    let binds = [Uniform, Read, t, t, Read, Write, Write];
    let k = ctx.pipelines.get(ctx, shader, if tex { "heads_tex_backward" } else { "heads_backward" }, &binds)?;
    let grid = |p: &HeadsParams| {
        let groups = p.rw_max.div_ceil(BACKWARD_COLS) as usize;
        let [x, y, _] = grid_1d(p.b as usize * p.u as usize * groups, 256);
        [x, y, p.problems]
    };
    let rest = [len, dr, dfeat].map(|b| b.as_entire_binding());
    let input = match &operands[..] {
        [dz, w, _] => Launch::with_resources(
            ctx,
            k,
            &[&[q.as_entire_binding(), dz.view(), w.view()][..], &rest].concat(),
            p,
            grid,
        )?,
        _ => Launch::new(ctx, k, &[q, dz, w, len, dr, dfeat], p, grid)?,
    };
    let binds = [Uniform, Read, t, t, Read, Write];
    let entry = if tex { "heads_tex_backward_weights" } else { "heads_backward_weights" };
    let k = ctx.pipelines.get(ctx, shader, entry, &binds)?;
    let grid = |p: &HeadsParams| {
        let [x, y, _] = grid_1d((p.rw_max as usize + 1).div_ceil(4), 64);
        [x, y, p.problems]
    };
    let rest = [len, grads].map(|b| b.as_entire_binding());
    let weights = match &operands[..] {
        [dz, _, r] => Launch::with_resources(
            ctx,
            k,
            &[&[q.as_entire_binding(), dz.view(), r.view()][..], &rest].concat(),
            p,
            grid,
        )?,
        _ => Launch::new(ctx, k, &[q, dz, r, len, grads], p, grid)?,
    };
    operands.iter_mut().for_each(|o| o.resize(&p, problems));
    Ok(HeadsBackward { input, weights, list, len_elems: elems(len), operands })
}
