//! Launchers of the attention family: the fused CIM unit [att(X,Y), att(Y,X)]
//! over one M = X Y^T (or self-attention att(X,X)), outputs written straight into
//! their slices of R; backward accumulates into dX and dY. Two members
//! ([`AttentionKernel`]): `flat` (shaders/attention.wgsl) and `tiled` (generated
//! by `attention/wgsl.rs`). CPU reference: `cpu::attention` (called once per
//! direction there). Letters: B, U (a problem's own u), D, R (row width of R).
//!
//! One launch is one pair kind (or self-attention) over a list of problems
//! ([`AttentionProblem`], one per model with that pair): X, Y are blocks of ONE
//! feat arena and dX, dY blocks of ONE dfeat arena, each model's R a block of the
//! R arena, the saved tensors blocks of theirs; each problem is computed exactly
//! as a one-problem launch computes it. Each problem carries its own batch (its u
//! and the offset of its lengths), so models of different seeds, whose batches of
//! the same B differ, share one launch; the launch's U is the largest u (U_max)
//! and sizes the grid, and every problem's blocks are laid out with its own u.

use super::context::{GpuContext, GpuError};
use super::launch::{check_batch, Launch, ProblemList, Recordable};
use super::pipelines::{grid_1d, Bind, Recorder, Shader};
use super::profile::DeviceProfile;
use super::wgsl::Const;

mod wgsl;
pub use wgsl::{tiled_body, with_structs, AttentionTile, TILED};

/// Workgroup size of the flat member (shaders/attention.wgsl).
pub const WORKGROUP: u32 = 64;
/// The constants of shaders/attention.wgsl, written into its module from these values.
pub const WGSL_CONSTS: [Const; 1] = [Const::new("WG", WORKGROUP, "workgroup size")];

fn c32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Mirrors `AttentionParams` (attention/wgsl.rs `STRUCTS`): what the problems of a launch share.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttentionParams {
    pub b: u32,
    /// U_max: the largest `u` of the problems (the grid's extent).
    pub u: u32,
    pub d: u32,
    /// 1: a pair X != Y (both directions); 0: self-attention att(X, X).
    pub pair: u32,
    /// Entries of the problem list (set by the launchers from the list they are given).
    pub problems: u32,
    pub _pad: [u32; 3],
}

impl AttentionParams {
    /// B videos per batch, `u` = U_max (the longest batch of the problems), width `d`.
    pub fn new(b: usize, u: usize, d: usize, pair: bool) -> AttentionParams {
        AttentionParams { b: c32(b), u: c32(u), d: c32(d), pair: u32::from(pair), problems: 1, _pad: [0; 3] }
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

    fn with_problems(self, n: usize) -> AttentionParams {
        AttentionParams { problems: c32(n), ..self }
    }
}

/// Mirrors `AttentionProblem` (attention/wgsl.rs `STRUCTS`): one model's instance of
/// the launch's pair, as element offsets into the bound buffers (its R row layout in
/// columns), and its batch. Every block is laid out with the problem's own `u`
/// (rows b * u + i), as in a launch of its own at U = u.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttentionProblem {
    /// X (B, u, D) in the feat arena.
    pub x_off: u32,
    /// Y (B, u, D) in the feat arena (= x_off for self-attention).
    pub y_off: u32,
    /// The model's R (B, u, rw) in the R arena (the same offset in dR).
    pub r_off: u32,
    /// Row width of the model's R.
    pub rw: u32,
    /// Column of att(X, Y) within a row of R.
    pub r_xy: u32,
    /// Column of att(Y, X) (unused for self-attention).
    pub r_yx: u32,
    /// M (B, u, u) (the flat member's scratch).
    pub m_off: u32,
    /// N (2, B, u, u).
    pub n_off: u32,
    /// O (2, B, u, D).
    pub o_off: u32,
    /// The dM scratch (2, B, u, u).
    pub dm_off: u32,
    /// dX (B, u, D) in the dfeat arena.
    pub dx_off: u32,
    /// dY (B, u, D) in the dfeat arena (unused for self-attention).
    pub dy_off: u32,
    /// The problem's own U (its batch's longest video), 1..=the launch's U.
    pub u: u32,
    /// Its B lengths at `len[len_off + b]`.
    pub len_off: u32,
    pub _pad: [u32; 2],
}

impl AttentionProblem {
    /// A problem whose R has row width `rw` with att(X, Y) at column `r_xy` and
    /// att(Y, X) at `r_yx` (`None`: self-attention); every offset 0 (set them with
    /// the builder methods) and no batch yet (`batch` sets it; a launch refuses u = 0).
    pub fn new(rw: usize, r_xy: usize, r_yx: Option<usize>) -> AttentionProblem {
        AttentionProblem { rw: c32(rw), r_xy: c32(r_xy), r_yx: c32(r_yx.unwrap_or(0)), ..bytemuck::Zeroable::zeroed() }
    }

    /// X and Y in the feat arena, dX and dY in the dfeat arena (self-attention:
    /// `y = x`, `dy = dx`).
    pub fn feat(self, x: usize, y: usize, dx: usize, dy: usize) -> AttentionProblem {
        AttentionProblem { x_off: c32(x), y_off: c32(y), dx_off: c32(dx), dy_off: c32(dy), ..self }
    }

    /// The model's R block (and dR block) at element `r`.
    pub fn r(self, r: usize) -> AttentionProblem {
        AttentionProblem { r_off: c32(r), ..self }
    }

    /// Its batch: `u` (the batch's longest video, <= the launch's U) and its lengths
    /// at `len_off` of the bound length buffer.
    pub fn batch(self, u: usize, len_off: usize) -> AttentionProblem {
        AttentionProblem { u: c32(u), len_off: c32(len_off), ..self }
    }

    /// The saved M, N, O and the dM scratch at these elements of their buffers.
    pub fn saved(self, m: usize, n: usize, o: usize, dm: usize) -> AttentionProblem {
        AttentionProblem { m_off: c32(m), n_off: c32(n), o_off: c32(o), dm_off: c32(dm), ..self }
    }
}

/// A member of the attention family (the tuner races them; `candidates` lists them).
/// Both read and write the same buffers (the saved N and O, the dM scratch), so a
/// forward of one member and a backward of the other compose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttentionKernel {
    /// shaders/attention.wgsl: one invocation per score, per softmax row, per output
    /// element, 1-D grids of 64, no workgroup memory (3 forward + 2 backward launches).
    /// Any U and D; the member every run used before the family had two.
    Flat,
    /// shaders/generated/attention_tiled.wgsl ([`TILED`]): a workgroup per 8 query rows
    /// of one (video, direction), key rows staged in workgroup memory, softmax by a
    /// workgroup reduction (1 forward + 2 backward launches). U <= 128. The GPU-shaped member.
    Tiled,
}

impl AttentionKernel {
    pub const ALL: [AttentionKernel; 2] = [AttentionKernel::Flat, AttentionKernel::Tiled];

    pub fn name(self) -> &'static str {
        match self {
            AttentionKernel::Flat => "flat",
            AttentionKernel::Tiled => "tiled",
        }
    }

    pub fn from_name(name: &str) -> Option<AttentionKernel> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this member runs shape `p` on `profile` as itself (forward and
    /// backward: they stage the same tiles). The bound holds for every smaller U
    /// too, so a launch built for a run's longest video may take any batch.
    pub fn runs(self, profile: &DeviceProfile, p: &AttentionParams) -> bool {
        match self {
            AttentionKernel::Flat => true,
            AttentionKernel::Tiled => {
                let t = TILED;
                let l = &profile.limits;
                p.u <= t.keys
                    && l.max_compute_invocations_per_workgroup >= t.wg
                    && l.max_compute_workgroup_size_x >= t.wg
                    && l.max_compute_workgroup_storage_size >= t.shared_bytes()
                    && l.max_compute_workgroups_per_dimension
                        >= p.b.max(p.u.div_ceil(t.rows)).max(p.problems.saturating_mul(p.dirs() as u32))
                    && t.loop_iterations(p.u, p.d) < profile.loop_budget_or_max()
            }
        }
    }

    /// The member a launch of shape `p` runs when `self` is asked for: itself, or
    /// Flat where the shape or device does not allow it.
    pub fn resolve(self, profile: &DeviceProfile, p: &AttentionParams) -> AttentionKernel {
        if self.runs(profile, p) {
            self
        } else {
            AttentionKernel::Flat
        }
    }
}

/// The members valid for shape `p` on `profile`, the default first (`--tune off`
/// runs `candidates(..)[0]`). Software devices (llvmpipe) lead with `flat`,
/// measured faster there (docs/perf-notes.md); hardware with `tiled`, by design
/// (no hardware measurement yet).
pub fn candidates(profile: &DeviceProfile, p: &AttentionParams) -> Vec<AttentionKernel> {
    let order = if profile.is_software() {
        [AttentionKernel::Flat, AttentionKernel::Tiled]
    } else {
        [AttentionKernel::Tiled, AttentionKernel::Flat]
    };
    order.into_iter().filter(|k| k.runs(profile, p)).collect()
}

/// The default member at shape `p`: `candidates(profile, p)[0]`.
pub fn default_kernel(profile: &DeviceProfile, p: &AttentionParams) -> AttentionKernel {
    candidates(profile, p).first().copied().unwrap_or(AttentionKernel::Flat)
}

/// The tiled member's grid: (query-row tiles, videos, problems x directions).
fn tiled_grid(p: &AttentionParams) -> [u32; 3] {
    [p.u.div_ceil(TILED.rows), p.b, p.problems.saturating_mul(p.dirs() as u32)]
}

/// A flat member's 1-D grid over `n` items per problem, z = problem.
fn flat_grid(n: usize, p: &AttentionParams) -> [u32; 3] {
    let [x, y, _] = grid_1d(n, WORKGROUP);
    [x, y, p.problems]
}

/// Buffers the forward saves for the backward (each problem's blocks at its offsets).
pub struct AttentionSaved<'a> {
    /// (B, u, u) M = X Y^T per problem (the flat member's scratch between its
    /// launches; the tiled member keeps the scores in workgroup memory and leaves M alone)
    pub m: &'a wgpu::Buffer,
    /// (2, B, u, u) softmax weights of both directions, per problem
    pub n: &'a wgpu::Buffer,
    /// (2, B, u, D) weighted sums N Y and N' X, per problem
    pub o: &'a wgpu::Buffer,
}

/// The launches of one member's forward or backward over one problem list,
/// recorded in order.
pub struct AttentionLaunches {
    pub kernel: AttentionKernel,
    pub launches: Vec<Launch<AttentionParams>>,
    list: ProblemList<AttentionProblem>,
    /// Entries of the bound length buffer (each problem's lengths must lie inside).
    len_elems: u64,
    /// The flat member runs its `_v4` entries (every problem must stay [`aligned4`]).
    v4: bool,
}

/// Whether D and every problem's offsets, R row width and R columns are
/// multiples of 4, so the flat member may read and write them as vec4 (its
/// `_v4` entries: the same sums in the same order, 2-4x fewer storage loads).
/// The engine's arenas are laid out in multiples of D, so this holds wherever
/// D % 4 == 0 (D 100 by default).
pub fn aligned4(p: &AttentionParams, problems: &[AttentionProblem]) -> bool {
    p.d.is_multiple_of(4)
        && problems.iter().all(|q| {
            [q.x_off, q.y_off, q.r_off, q.rw, q.r_xy, q.r_yx, q.o_off, q.dx_off, q.dy_off]
                .iter()
                .all(|v| v.is_multiple_of(4))
        })
}

/// The flat member's entry `name`, or its `_v4` twin.
fn flat_entry(name: &'static str, v4: bool) -> &'static str {
    match (name, v4) {
        ("attention_forward_scores", true) => "attention_forward_scores_v4",
        ("attention_forward", true) => "attention_forward_v4",
        ("attention_backward_scores", true) => "attention_backward_scores_v4",
        ("attention_backward", true) => "attention_backward_v4",
        _ => name,
    }
}

/// Every problem's batch fits the launch `p` and the length buffer.
fn check_problems(
    what: &str,
    p: &AttentionParams,
    problems: &[AttentionProblem],
    len_elems: u64,
) -> Result<(), GpuError> {
    for (i, q) in problems.iter().enumerate() {
        check_batch(what, i, (q.u, q.len_off), (p.b, p.u), len_elems)?;
    }
    Ok(())
}

/// Entries of a u32 buffer.
fn elems(buf: &wgpu::Buffer) -> u64 {
    buf.size() / 4
}

impl AttentionLaunches {
    /// New shared params and problems (1..=capacity) for the next submit;
    /// `p.problems` is set from `problems`.
    pub fn update(
        &mut self,
        ctx: &GpuContext,
        p: AttentionParams,
        problems: &[AttentionProblem],
    ) -> Result<(), GpuError> {
        check_problems("attention", &p, problems, self.len_elems)?;
        if self.v4 && !aligned4(&p, problems) {
            let bad = problems.iter().position(|q| !aligned4(&p, std::slice::from_ref(q))).unwrap_or(0);
            let why =
                "is not 4-aligned (D, offsets, R row width and columns), which the vec4 entries it was built with need"
                    .to_string();
            return Err(GpuError::BadProblem { launch: "attention".into(), problem: bad, why });
        }
        self.list.write(ctx, problems)?;
        let p = p.with_problems(problems.len());
        for l in &mut self.launches {
            l.update(ctx, p);
        }
        Ok(())
    }

    /// Whether the flat member runs its `_v4` entries ([`aligned4`]).
    pub fn vec4(&self) -> bool {
        self.v4
    }

    /// Problems the launches cover now.
    pub fn problems(&self) -> usize {
        self.list.len()
    }
}

impl Recordable for AttentionLaunches {
    fn record_into(&self, rec: &mut Recorder) {
        for l in &self.launches {
            l.record(rec);
        }
    }
}

/// Flat: scores, softmax, weighted sum + gate into R (3 launches); tiled: one.
pub type AttentionForward = AttentionLaunches;
/// Flat and tiled: softmax backward into dM, then dX / dY (2 launches).
pub type AttentionBackward = AttentionLaunches;

/// Per problem: R slices (B, u, D at columns r_xy / r_yx of the problem's R block)
/// and the saved N, O (and M, flat only) from its X, Y blocks of `feat` and its B
/// lengths at `len_off` of `len`, by the device's default member. `capacity`: the most problems a later
/// `update` may give.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    ctx: &GpuContext,
    r: &wgpu::Buffer,
    saved: &AttentionSaved,
    feat: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: AttentionParams,
    problems: &[AttentionProblem],
    capacity: usize,
) -> Result<AttentionForward, GpuError> {
    let kernel = default_kernel(&ctx.profile, &p.with_problems(capacity.max(problems.len())));
    attention_forward_variant(ctx, r, saved, feat, len, p, problems, capacity, kernel)
}

/// [`attention_forward`] by the member `kernel` (Flat where it cannot run `p` at `capacity`).
#[allow(clippy::too_many_arguments)]
pub fn attention_forward_variant(
    ctx: &GpuContext,
    r: &wgpu::Buffer,
    saved: &AttentionSaved,
    feat: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: AttentionParams,
    problems: &[AttentionProblem],
    capacity: usize,
    kernel: AttentionKernel,
) -> Result<AttentionForward, GpuError> {
    use Bind::*;
    let pc = &ctx.pipelines;
    check_problems("attention forward", &p, problems, elems(len))?;
    let list = ProblemList::new(ctx, "attention forward", problems, capacity)?;
    let kernel = kernel.resolve(&ctx.profile, &p.with_problems(list.capacity()));
    let p = p.with_problems(problems.len());
    let q = &list.buffer;
    let launches = match kernel {
        AttentionKernel::Flat => {
            let v4 = aligned4(&p, problems);
            let binds = [Uniform, Read, Read, Read, Write];
            let k = pc.get(ctx, Shader::Attention, flat_entry("attention_forward_scores", v4), &binds)?;
            let scores = Launch::new(ctx, k, &[q, feat, len, saved.m], p, |p| flat_grid(p.bu() * p.u as usize, p))?;
            let k = pc.get(ctx, Shader::Attention, "attention_forward_softmax", &binds)?;
            let softmax = Launch::new(ctx, k, &[q, saved.m, len, saved.n], p, |p| flat_grid(p.dirs() * p.bu(), p))?;
            let binds = [Uniform, Read, Read, Read, Read, Write, Write];
            let k = pc.get(ctx, Shader::Attention, flat_entry("attention_forward", v4), &binds)?;
            let grid: fn(&AttentionParams) -> [u32; 3] = if v4 {
                |p| flat_grid(p.dirs() * p.bu() * (p.d / 4) as usize, p)
            } else {
                |p| flat_grid(p.dirs() * p.bu() * p.d as usize, p)
            };
            let output = Launch::new(ctx, k, &[q, feat, saved.n, len, saved.o, r], p, grid)?;
            (vec![scores, softmax, output], v4)
        }
        AttentionKernel::Tiled => {
            let binds = [Uniform, Read, Read, Read, Write, Write, Write];
            let k = pc.get(ctx, Shader::AttentionTiled, "attention_tiled_forward", &binds)?;
            (vec![Launch::new(ctx, k, &[q, feat, len, saved.n, saved.o, r], p, tiled_grid)?], false)
        }
    };
    let (launches, v4) = launches;
    Ok(AttentionLaunches { kernel, launches, list, len_elems: elems(len), v4 })
}

/// Per problem: its dX, dY blocks of `dfeat` accumulated (+=) from its dR block
/// (the slices at r_xy, r_yx), by the device's default member; `dm` holds each
/// problem's (2, B, u, u) scratch. Self-attention accumulates both halves into dX.
/// `feat` and `dfeat` are different buffers (one is read, the other written).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    ctx: &GpuContext,
    dfeat: &wgpu::Buffer,
    dm: &wgpu::Buffer,
    dr: &wgpu::Buffer,
    saved: &AttentionSaved,
    feat: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: AttentionParams,
    problems: &[AttentionProblem],
    capacity: usize,
) -> Result<AttentionBackward, GpuError> {
    let kernel = default_kernel(&ctx.profile, &p.with_problems(capacity.max(problems.len())));
    attention_backward_variant(ctx, dfeat, dm, dr, saved, feat, len, p, problems, capacity, kernel)
}

/// [`attention_backward`] by the member `kernel` (Flat where it cannot run `p` at
/// `capacity`). Reads only N and O of the saved forward, so it follows either
/// member's forward.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward_variant(
    ctx: &GpuContext,
    dfeat: &wgpu::Buffer,
    dm: &wgpu::Buffer,
    dr: &wgpu::Buffer,
    saved: &AttentionSaved,
    feat: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: AttentionParams,
    problems: &[AttentionProblem],
    capacity: usize,
    kernel: AttentionKernel,
) -> Result<AttentionBackward, GpuError> {
    use Bind::*;
    let pc = &ctx.pipelines;
    check_problems("attention backward", &p, problems, elems(len))?;
    let list = ProblemList::new(ctx, "attention backward", problems, capacity)?;
    let kernel = kernel.resolve(&ctx.profile, &p.with_problems(list.capacity()));
    let p = p.with_problems(problems.len());
    let v4 = kernel == AttentionKernel::Flat && aligned4(&p, problems);
    let (shader, scores_entry, input_entry) = match kernel {
        AttentionKernel::Flat => {
            (Shader::Attention, flat_entry("attention_backward_scores", v4), flat_entry("attention_backward", v4))
        }
        AttentionKernel::Tiled => {
            (Shader::AttentionTiled, "attention_tiled_backward_scores", "attention_tiled_backward")
        }
    };
    let q = &list.buffer;
    let k = pc.get(ctx, shader, scores_entry, &[Uniform, Read, Read, Read, Read, Read, Write])?;
    let scores_grid: fn(&AttentionParams) -> [u32; 3] = match kernel {
        AttentionKernel::Flat => |p| flat_grid(p.dirs() * p.bu(), p),
        AttentionKernel::Tiled => tiled_grid,
    };
    let scores = Launch::new(ctx, k, &[q, feat, saved.n, dr, len, dm], p, scores_grid)?;
    let binds = [Uniform, Read, Read, Read, Read, Read, Read, Read, Write];
    let k = pc.get(ctx, shader, input_entry, &binds)?;
    let input_grid: fn(&AttentionParams) -> [u32; 3] = match kernel {
        AttentionKernel::Flat if v4 => |p| flat_grid(p.bu() * (p.d / 4) as usize, p),
        AttentionKernel::Flat => |p| flat_grid(p.bu() * p.d as usize, p),
        AttentionKernel::Tiled => tiled_grid,
    };
    let input = Launch::new(ctx, k, &[q, feat, saved.n, saved.o, dr, dm, len, dfeat], p, input_grid)?;
    Ok(AttentionLaunches { kernel, launches: vec![scores, input], list, len_elems: elems(len), v4 })
}
