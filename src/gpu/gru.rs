//! Launchers of shaders/gru.wgsl: the recurrent part of the bidirectional GRU
//! (reference: src/cpu/gru.rs). The input projection xp = W_ih x + b_ih and the
//! gradients dW_ih = gi^T x, db_ih = sum gi, dx = gi W_ih are matmuls done by
//! the linear kernels; these launchers consume xp and produce gi.
//!
//! Letters: B batch, U padded utterances, H hidden, M modalities in one launch,
//! P = 2M problems, one per (modality m, direction d), p = 2m + d (d = 0
//! forward, 1 reverse). Every per-problem buffer holds P blocks, each in the
//! (B, U, ...) layout of `cpu::gru::GruCache` for that direction.
//!
//! Buffers (f32 unless said otherwise):
//!   lens     (B) u32, 1 <= len <= U
//!   weights  the flat parameter store (`params::ParamStore` layout)
//!   grads    the flat gradient store, same layout, accumulated (`+=`)
//!   xp       (P, B, U, 3H)
//!   cache    (P, 5, B, U, H)  [h, r, z, n, hn] per problem, zero at padding
//!   out      (M, B, U, 2H)    bi-GRU output [fwd | rev], zero at padding
//!   dout     (M, B, U, 2H)    gradient wrt out
//!   gi, gh   (P, B, U, 3H)    input / hidden-side pre-activation gradients,
//!                             written (zero at padding)
//!
//! Every launcher returns a `Recordable` built once per dispatch site (bind
//! groups cached, `update` for a new batch's sizes); recording reads nothing
//! back, so a whole training step can be chained into one command buffer.

use bytemuck::{Pod, Zeroable};

use super::context::{GpuContext, GpuError};
use super::launch::{Launch, Recordable};
use super::pipelines::{Bind, Kernel, Recorder, Shader};
use super::profile::DeviceProfile;
use crate::config::Modality;
use crate::params::Layout;

/// Sequences one workgroup of gru_forward / gru_backward owns (WGSL SEQ_PER_WG).
pub const SEQ_PER_WG: u32 = 16;
/// Largest hidden size the workgroup memory of gru_forward holds (WGSL MAX_H).
pub const MAX_H: u32 = 256;
/// At most this many (modality, direction) problems per launch (3 modalities x 2).
pub const MAX_PROBLEMS: u32 = 8;
/// Output tile of one gru_backward_weights(_v4) workgroup: 8x8 invocations x 4x4 each.
const WEIGHTS_TILE: u32 = 32;
/// Output tile of one gru_backward_weights_t8 workgroup: 8x8 invocations x 8x8 each.
const WEIGHTS_TILE_T8: u32 = 64;
/// Tensors saved per problem in the cache: h, r, z, n, hn.
pub const CACHE_TENSORS: u64 = 5;
/// Hidden units one invocation of gru_forward / gru_backward loops over (WGSL UNIT_ITERS).
pub const UNIT_ITERS: u32 = 4;

/// Mesa's llvmpipe (the CPU Vulkan driver the tests run on) silently ends an
/// invocation after 65535 loop iterations in total (gallivm's
/// LP_MAX_TGSI_LOOP_ITERATIONS: one counter shared by every loop of the
/// shader, never reset), leaving the later steps unwritten. A dispatch runs
/// as many steps as keep an upper bound of its iterations under this budget;
/// the remaining ~2500 cover the loops outside the steps.
pub const LOOP_BUDGET: u32 = 63_000;

/// Upper bound of the loop iterations one gru_forward invocation runs per step:
/// per unit iteration, the dot products unrolled by 4, their remainder and the
/// loop over 4 sequences; then the loop that stores the new h.
fn forward_iters_per_step(h: u32) -> u32 {
    UNIT_ITERS * (1 + h / 4 + 3 + 4) + UNIT_ITERS + 1
}

/// Upper bound for gru_backward: row offsets (4), phase A (units x sequences),
/// phase B (units x (3H unrolled by 4 + remainder)).
fn backward_iters_per_step(h: u32) -> u32 {
    4 + UNIT_ITERS * (1 + 4) + UNIT_ITERS * (1 + 3 * h / 4 + 3) + 1
}

/// Upper bounds for gru_forward_v4 / gru_backward_v4 and the wide kernels (4
/// units per invocation, columns or rows of W_hh 4 at a time; the 16 sequences
/// of the wide kernels are unrolled, no loop).
fn forward_iters_per_step_v4(h: u32) -> u32 {
    h / 4 + 2
}

fn backward_iters_per_step_v4(h: u32) -> u32 {
    3 * h / 4 + 2
}

/// Which kernels of gru.wgsl a launch uses, so that versions can race.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GruKernel {
    /// One invocation per unit lane, lane + 64, ..; scalar loads (any H).
    Scalar,
    /// 4 consecutive units per invocation, vec4 loads (H % 4 == 0 and 4-aligned
    /// W_hh / b_hh offsets). 3-5x faster on llvmpipe (docs/perf-notes.md).
    Vec4,
    /// As Vec4, but one invocation owns 8 units for
    /// all 16 sequences of the workgroup (each W_hh load feeds 16 sequences),
    /// and the weight gradient uses 8x8 tiles; same shape requirements as Vec4;
    /// 2.0-2.4x faster than Vec4 on llvmpipe at U 5 / 16 (docs/gru-notes.md).
    Wide,
}

/// The schedules valid for a launch on this device, the default first.
pub fn schedule_candidates(_profile: &DeviceProfile, _p: &GruParams) -> Vec<GruSchedule> {
    GruSchedule::ALL.to_vec()
}

/// The kernel members valid for `p` on this device, the default first.
pub fn candidates(_profile: &DeviceProfile, p: &GruParams) -> Vec<GruKernel> {
    match GruKernel::best(p) {
        GruKernel::Scalar => vec![GruKernel::Scalar],
        _ => vec![GruKernel::Wide, GruKernel::Vec4, GruKernel::Scalar],
    }
}

impl GruKernel {
    pub const ALL: [GruKernel; 3] = [GruKernel::Scalar, GruKernel::Vec4, GruKernel::Wide];

    /// Stable name (config.json, the tuner's cache, `cimnet bench`).
    pub fn name(self) -> &'static str {
        match self {
            GruKernel::Scalar => "scalar",
            GruKernel::Vec4 => "vec4",
            GruKernel::Wide => "wide",
        }
    }

    pub fn from_name(name: &str) -> Option<GruKernel> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Wide where the shapes allow it, else Scalar.
    pub fn best(params: &GruParams) -> GruKernel {
        let p = params.problems as usize;
        let aligned = params.w_hh_offset[..p].iter().chain(&params.b_hh_offset[..p]).all(|o| o % 4 == 0);
        if params.h.is_multiple_of(4) && aligned {
            GruKernel::Wide
        } else {
            GruKernel::Scalar
        }
    }

    fn entry(self, base: &'static str) -> &'static str {
        match (self, base) {
            (GruKernel::Scalar, b) => b,
            (GruKernel::Vec4, "gru_forward") => "gru_forward_v4",
            (GruKernel::Vec4, "gru_backward") => "gru_backward_v4",
            (GruKernel::Vec4, _) => "gru_backward_weights_v4",
            (GruKernel::Wide, "gru_forward") => "gru_forward_wide",
            (GruKernel::Wide, "gru_backward") => "gru_backward_wide",
            (GruKernel::Wide, _) => "gru_backward_weights_t8",
        }
    }

    fn weights_grid(self) -> fn(&GruParams) -> [u32; 3] {
        match self {
            GruKernel::Wide => weights_grid_t8,
            _ => weights_grid,
        }
    }
}

/// How the time steps are split into dispatches, so that versions can race.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GruSchedule {
    /// One dispatch per time step.
    PerStep,
    /// As many steps per dispatch as LOOP_BUDGET allows (all of them for the
    /// forward at H = 200 and U <= 250; the backward takes ~94 per dispatch).
    Persistent,
}

impl GruSchedule {
    pub const ALL: [GruSchedule; 2] = [GruSchedule::Persistent, GruSchedule::PerStep];

    /// Stable name (config.json, the tuner's cache, `cimnet bench`).
    pub fn name(self) -> &'static str {
        match self {
            GruSchedule::PerStep => "per-step",
            GruSchedule::Persistent => "persistent",
        }
    }

    pub fn from_name(name: &str) -> Option<GruSchedule> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    fn steps_per_dispatch(self, iters_per_step: u32) -> u32 {
        match self {
            GruSchedule::PerStep => 1,
            GruSchedule::Persistent => (LOOP_BUDGET / iters_per_step).max(1),
        }
    }
}

/// Sizes and parameter offsets of one launch; mirrors WGSL `GruParams`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
pub struct GruParams {
    pub b: u32,
    pub u: u32,
    pub h: u32,
    /// P = 2M, the number of (modality, direction) problems.
    pub problems: u32,
    /// Steps [t0, t1) run by one dispatch; set per chunk by the launchers.
    pub t0: u32,
    pub t1: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    /// Element offset of problem p's W_hh (3H, H) in the weights / grads stores.
    pub w_hh_offset: [u32; 8],
    /// Element offset of problem p's b_hh (3H).
    pub b_hh_offset: [u32; 8],
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum GruError {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("GRU launches built for U <= {capacity} cannot run U = {u}; build them for the longest batch")]
    Capacity { u: u32, capacity: u32 },
    #[error("GRU hidden size {h} is not supported by gru.wgsl (1 <= H <= {max})")]
    Hidden { h: usize, max: u32 },
    #[error("GRU launch with {modalities} modalities; 1 to {max} are supported")]
    Modalities { modalities: usize, max: u32 },
    #[error("GRU launch with B = {b}, U = {u}; both must be at least 1")]
    Empty { b: usize, u: usize },
    #[error("GRU launch with B = {b}, U = {u}: B * (U + 1) must stay under {max} (llvmpipe's loop limit); use smaller batches")]
    TooLong { b: usize, u: usize, max: usize },
    #[error("parameter layout has no tensor '{name}'")]
    MissingTensor { name: String },
    #[error("tensor '{name}' has shape {got:?}, the GRU launch needs {want:?}")]
    TensorShape { name: String, got: Vec<usize>, want: Vec<usize> },
    #[error("offset {offset} of tensor '{name}' does not fit in u32")]
    Offset { name: String, offset: usize },
    #[error("GRU buffer '{name}' holds {got} bytes, the launch needs {need} ({shape})")]
    BufferSize { name: &'static str, got: u64, need: u64, shape: String },
}

impl GruParams {
    /// The launch over `modalities` (in that order: problem p = 2m + d uses
    /// modality `modalities[m]`) of a batch of B videos padded to U, with the
    /// W_hh / b_hh offsets taken from the parameter layout.
    pub fn new(layout: &Layout, modalities: &[Modality], b: usize, u: usize, h: usize) -> Result<GruParams, GruError> {
        if h == 0 || h > MAX_H as usize {
            return Err(GruError::Hidden { h, max: MAX_H });
        }
        if modalities.is_empty() || 2 * modalities.len() > MAX_PROBLEMS as usize {
            return Err(GruError::Modalities { modalities: modalities.len(), max: MAX_PROBLEMS / 2 });
        }
        if b == 0 || u == 0 {
            return Err(GruError::Empty { b, u });
        }
        // gru_backward_weights loops over every (b, i) in one invocation.
        if b * (u + 1) > LOOP_BUDGET as usize {
            return Err(GruError::TooLong { b, u, max: LOOP_BUDGET as usize });
        }
        let mut p = GruParams {
            b: b as u32,
            u: u as u32,
            h: h as u32,
            problems: 2 * modalities.len() as u32,
            t0: 0,
            t1: u as u32,
            _pad0: 0,
            _pad1: 0,
            w_hh_offset: [0; 8],
            b_hh_offset: [0; 8],
        };
        for (mi, m) in modalities.iter().enumerate() {
            for (d, dir) in ["", "_reverse"].iter().enumerate() {
                let w = format!("{}.gru.weight_hh_l0{dir}", m.name());
                let bias = format!("{}.gru.bias_hh_l0{dir}", m.name());
                p.w_hh_offset[2 * mi + d] = offset_of(layout, &w, &[3 * h, h])?;
                p.b_hh_offset[2 * mi + d] = offset_of(layout, &bias, &[3 * h])?;
            }
        }
        Ok(p)
    }

    fn modalities(&self) -> u64 {
        u64::from(self.problems / 2)
    }

    /// Elements of one (B, U) plane.
    fn rows(&self) -> u64 {
        u64::from(self.b) * u64::from(self.u)
    }

    /// Bytes of xp, gi and gh: (P, B, U, 3H).
    pub fn gates_bytes(&self) -> u64 {
        4 * u64::from(self.problems) * self.rows() * 3 * u64::from(self.h)
    }

    /// Bytes of the cache: (P, 5, B, U, H).
    pub fn cache_bytes(&self) -> u64 {
        4 * u64::from(self.problems) * CACHE_TENSORS * self.rows() * u64::from(self.h)
    }

    /// Bytes of out and dout: (M, B, U, 2H).
    pub fn out_bytes(&self) -> u64 {
        4 * self.modalities() * self.rows() * 2 * u64::from(self.h)
    }

    /// Bytes the weights / grads store must hold for every W_hh and b_hh.
    fn store_bytes(&self) -> u64 {
        let (h, p) = (u64::from(self.h), self.problems as usize);
        let w = self.w_hh_offset[..p].iter().map(|&o| u64::from(o) + 3 * h * h);
        let b = self.b_hh_offset[..p].iter().map(|&o| u64::from(o) + 3 * h);
        4 * w.chain(b).max().unwrap_or(0)
    }

    /// Bytes of the backward's carry: (P, B, H).
    pub fn carry_bytes(&self) -> u64 {
        4 * u64::from(self.problems) * u64::from(self.b) * u64::from(self.h)
    }

    /// The step ranges [t0, t1) of the dispatches, in time order.
    fn chunks(&self, steps: u32) -> Vec<(u32, u32)> {
        (0..self.u.div_ceil(steps)).map(|k| (k * steps, ((k + 1) * steps).min(self.u))).collect()
    }

    fn shape(&self, dims: &str) -> String {
        format!("{dims} with B={} U={} H={} P={}", self.b, self.u, self.h, self.problems)
    }
}

fn offset_of(layout: &Layout, name: &str, want: &[usize]) -> Result<u32, GruError> {
    let s = layout.get(name).ok_or_else(|| GruError::MissingTensor { name: name.to_string() })?;
    if s.shape != want {
        return Err(GruError::TensorShape { name: name.to_string(), got: s.shape.clone(), want: want.to_vec() });
    }
    u32::try_from(s.offset).map_err(|_| GruError::Offset { name: name.to_string(), offset: s.offset })
}

fn check(name: &'static str, buf: &wgpu::Buffer, need: u64, shape: String) -> Result<(), GruError> {
    if buf.size() < need {
        return Err(GruError::BufferSize { name, got: buf.size(), need, shape });
    }
    Ok(())
}

/// Workgroups of one chunk of gru_forward / gru_backward; none for an empty chunk
/// (a launch kept for a longer batch than the current one).
fn chunk_grid(p: &GruParams) -> [u32; 3] {
    if p.t0 >= p.t1 {
        return [0, 0, 0];
    }
    [p.b.div_ceil(SEQ_PER_WG), p.problems, 1]
}

fn weights_grid(p: &GruParams) -> [u32; 3] {
    [(p.h + 1).div_ceil(WEIGHTS_TILE), (3 * p.h).div_ceil(WEIGHTS_TILE), p.problems]
}

fn weights_grid_t8(p: &GruParams) -> [u32; 3] {
    [(p.h + 1).div_ceil(WEIGHTS_TILE_T8), (3 * p.h).div_ceil(WEIGHTS_TILE_T8), p.problems]
}

/// One launch per chunk of steps, built for up to `params.u` steps; `update`
/// reuses them for any U up to that (the chunks it does not need dispatch nothing).
struct Chunks {
    launches: Vec<Launch<GruParams>>,
    steps_per_dispatch: u32,
    capacity: u32,
}

impl Chunks {
    fn new(
        ctx: &GpuContext,
        kernel: std::sync::Arc<Kernel>,
        buffers: &[&wgpu::Buffer],
        params: &GruParams,
        steps_per_dispatch: u32,
    ) -> Result<Chunks, GruError> {
        let launches = params
            .chunks(steps_per_dispatch)
            .into_iter()
            .map(|(t0, t1)| Launch::new(ctx, kernel.clone(), buffers, GruParams { t0, t1, ..*params }, chunk_grid))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Chunks { launches, steps_per_dispatch, capacity: params.u })
    }

    fn update(&mut self, ctx: &GpuContext, params: &GruParams) -> Result<(), GruError> {
        if params.u > self.capacity {
            return Err(GruError::Capacity { u: params.u, capacity: self.capacity });
        }
        let chunks = params.chunks(self.steps_per_dispatch);
        for (k, l) in self.launches.iter_mut().enumerate() {
            let (t0, t1) = chunks.get(k).copied().unwrap_or((params.u, params.u));
            l.update(ctx, GruParams { t0, t1, ..*params });
        }
        Ok(())
    }
}

/// The forward of every problem, as recordable launches (one per chunk).
pub struct GruForward {
    chunks: Chunks,
}

/// Forward of every problem: writes `cache` (P, 5, B, U, H) and `out`
/// (M, B, U, 2H), both zero at padding, from `xp` (P, B, U, 3H).
#[allow(clippy::too_many_arguments)]
pub fn gru_forward(
    ctx: &GpuContext,
    out: &wgpu::Buffer,
    cache: &wgpu::Buffer,
    xp: &wgpu::Buffer,
    weights: &wgpu::Buffer,
    lens: &wgpu::Buffer,
    params: &GruParams,
    schedule: GruSchedule,
) -> Result<GruForward, GruError> {
    gru_forward_variant(ctx, out, cache, xp, weights, lens, params, schedule, GruKernel::best(params))
}

/// [`gru_forward`] with the kernel variant chosen by the caller (benchmarks);
/// `GruKernel::Vec4` / `Wide` fall back to Scalar where the shapes do not allow it.
#[allow(clippy::too_many_arguments)]
pub fn gru_forward_variant(
    ctx: &GpuContext,
    out: &wgpu::Buffer,
    cache: &wgpu::Buffer,
    xp: &wgpu::Buffer,
    weights: &wgpu::Buffer,
    lens: &wgpu::Buffer,
    params: &GruParams,
    schedule: GruSchedule,
    kernel: GruKernel,
) -> Result<GruForward, GruError> {
    let kernel = if GruKernel::best(params) == GruKernel::Scalar { GruKernel::Scalar } else { kernel };
    check("out", out, params.out_bytes(), params.shape("(M, B, U, 2H)"))?;
    check("cache", cache, params.cache_bytes(), params.shape("(P, 5, B, U, H)"))?;
    check("xp", xp, params.gates_bytes(), params.shape("(P, B, U, 3H)"))?;
    check("weights", weights, params.store_bytes(), params.shape("W_hh, b_hh offsets"))?;
    check("lens", lens, 4 * u64::from(params.b), params.shape("(B)"))?;
    let binds = [Bind::Uniform, Bind::Read, Bind::Read, Bind::Read, Bind::Write, Bind::Write];
    let k = ctx.pipelines.get(ctx, Shader::Gru, kernel.entry("gru_forward"), &binds)?;
    let iters = match kernel {
        GruKernel::Scalar => forward_iters_per_step(params.h),
        GruKernel::Vec4 | GruKernel::Wide => forward_iters_per_step_v4(params.h),
    };
    let steps = schedule.steps_per_dispatch(iters);
    Ok(GruForward { chunks: Chunks::new(ctx, k, &[lens, weights, xp, cache, out], params, steps)? })
}

impl GruForward {
    /// New sizes (a batch with U up to the one built for, same buffers).
    pub fn update(&mut self, ctx: &GpuContext, params: &GruParams) -> Result<(), GruError> {
        self.chunks.update(ctx, params)
    }

    /// Dispatches recorded per run.
    pub fn dispatches(&self) -> usize {
        self.chunks.launches.iter().filter(|l| !l.groups().contains(&0)).count()
    }
}

impl Recordable for GruForward {
    fn record_into(&self, rec: &mut Recorder) {
        for l in &self.chunks.launches {
            l.record(rec);
        }
    }
}

/// The backward of every problem: its chunks (recorded last to first), then the
/// weight-gradient reduction.
pub struct GruBackward {
    chunks: Chunks,
    weights: Launch<GruParams>,
}

/// Backward through time of every problem from `dout` (M, B, U, 2H): writes
/// `gi` and `gh` (P, B, U, 3H) (and uses `carry` (P, B, H) as scratch), then
/// accumulates dW_hh += gh^T h_prev and db_hh += sum gh into `grads`
/// (deterministic order, no atomics). The caller completes dW_ih, db_ih and dx
/// from `gi` with the linear kernels.
#[allow(clippy::too_many_arguments)]
pub fn gru_backward(
    ctx: &GpuContext,
    gi: &wgpu::Buffer,
    gh: &wgpu::Buffer,
    carry: &wgpu::Buffer,
    grads: &wgpu::Buffer,
    dout: &wgpu::Buffer,
    cache: &wgpu::Buffer,
    weights: &wgpu::Buffer,
    lens: &wgpu::Buffer,
    params: &GruParams,
    schedule: GruSchedule,
) -> Result<GruBackward, GruError> {
    gru_backward_variant(
        ctx,
        gi,
        gh,
        carry,
        grads,
        dout,
        cache,
        weights,
        lens,
        params,
        schedule,
        GruKernel::best(params),
    )
}

/// [`gru_backward`] with the kernel variant chosen by the caller (benchmarks);
/// `GruKernel::Vec4` / `Wide` fall back to Scalar where the shapes do not allow it.
#[allow(clippy::too_many_arguments)]
pub fn gru_backward_variant(
    ctx: &GpuContext,
    gi: &wgpu::Buffer,
    gh: &wgpu::Buffer,
    carry: &wgpu::Buffer,
    grads: &wgpu::Buffer,
    dout: &wgpu::Buffer,
    cache: &wgpu::Buffer,
    weights: &wgpu::Buffer,
    lens: &wgpu::Buffer,
    params: &GruParams,
    schedule: GruSchedule,
    kernel: GruKernel,
) -> Result<GruBackward, GruError> {
    let kernel = if GruKernel::best(params) == GruKernel::Scalar { GruKernel::Scalar } else { kernel };
    check("gi", gi, params.gates_bytes(), params.shape("(P, B, U, 3H)"))?;
    check("gh", gh, params.gates_bytes(), params.shape("(P, B, U, 3H)"))?;
    check("carry", carry, params.carry_bytes(), params.shape("(P, B, H)"))?;
    check("grads", grads, params.store_bytes(), params.shape("W_hh, b_hh offsets"))?;
    check("dout", dout, params.out_bytes(), params.shape("(M, B, U, 2H)"))?;
    check("cache", cache, params.cache_bytes(), params.shape("(P, 5, B, U, H)"))?;
    check("weights", weights, params.store_bytes(), params.shape("W_hh, b_hh offsets"))?;
    check("lens", lens, 4 * u64::from(params.b), params.shape("(B)"))?;
    let (r, w) = (Bind::Read, Bind::Write);
    let k = ctx.pipelines.get(ctx, Shader::Gru, kernel.entry("gru_backward"), &[Bind::Uniform, r, r, r, r, w, w, w])?;
    let iters = match kernel {
        GruKernel::Scalar => backward_iters_per_step(params.h),
        GruKernel::Vec4 | GruKernel::Wide => backward_iters_per_step_v4(params.h),
    };
    let steps = schedule.steps_per_dispatch(iters);
    let chunks = Chunks::new(ctx, k, &[lens, weights, cache, dout, gi, gh, carry], params, steps)?;
    let k = ctx.pipelines.get(ctx, Shader::Gru, kernel.entry("gru_backward_weights"), &[Bind::Uniform, r, r, r, w])?;
    let weights = Launch::new(ctx, k, &[lens, cache, gh, grads], *params, kernel.weights_grid())?;
    Ok(GruBackward { chunks, weights })
}

impl GruBackward {
    /// New sizes (a batch with U up to the one built for, same buffers).
    pub fn update(&mut self, ctx: &GpuContext, params: &GruParams) -> Result<(), GruError> {
        self.chunks.update(ctx, params)?;
        self.weights.update(ctx, *params);
        Ok(())
    }

    /// Dispatches recorded per run.
    pub fn dispatches(&self) -> usize {
        1 + self.chunks.launches.iter().filter(|l| !l.groups().contains(&0)).count()
    }
}

impl Recordable for GruBackward {
    fn record_into(&self, rec: &mut Recorder) {
        for l in self.chunks.launches.iter().rev() {
            l.record(rec);
        }
        self.weights.record(rec);
    }
}
