//! Launchers of the attention family: the fused CIM unit [att(X,Y), att(Y,X)]
//! over one M = X Y^T (or self-attention att(X,X)), outputs written straight into
//! their slices of R; backward accumulates into dX and dY. Two members
//! ([`AttentionKernel`]): `flat` (shaders/attention.wgsl) and `tiled` (generated
//! by `attention/wgsl.rs`). CPU reference: `cpu::attention` (called once per
//! direction there). Letters: B, U, D, R (row width of R).

use super::context::{GpuContext, GpuError};
use super::launch::{Launch, Recordable};
use super::pipelines::{grid_1d, Bind, Recorder, Shader};
use super::profile::DeviceProfile;

mod wgsl;
pub use wgsl::{tiled_body, AttentionTile, TILED};

/// Workgroup size of the flat member (shaders/attention.wgsl).
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
                    && l.max_compute_workgroups_per_dimension >= p.b.max(p.u.div_ceil(t.rows))
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

/// The tiled member's grid: (query-row tiles, videos, directions).
fn tiled_grid(p: &AttentionParams) -> [u32; 3] {
    [p.u.div_ceil(TILED.rows), p.b, p.dirs() as u32]
}

/// Buffers the forward saves for the backward.
pub struct AttentionSaved<'a> {
    /// (B, U, U) M = X Y^T (the flat member's scratch between its launches; the
    /// tiled member keeps the scores in workgroup memory and leaves M alone)
    pub m: &'a wgpu::Buffer,
    /// (2, B, U, U) softmax weights of both directions
    pub n: &'a wgpu::Buffer,
    /// (2, B, U, D) weighted sums N Y and N' X
    pub o: &'a wgpu::Buffer,
}

/// The launches of one member's forward or backward, recorded in order.
pub struct AttentionLaunches {
    pub kernel: AttentionKernel,
    pub launches: Vec<Launch<AttentionParams>>,
}

impl AttentionLaunches {
    pub fn update(&mut self, ctx: &GpuContext, p: AttentionParams) {
        for l in &mut self.launches {
            l.update(ctx, p);
        }
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

/// R slices (B, U, D at columns r_xy / r_yx of R (B, U, rw)) and the saved N, O
/// (and M, flat only) from x, y (B, U, D) and len (B), by the device's default
/// member. For self-attention pass `y = x`.
pub fn attention_forward(
    ctx: &GpuContext,
    r: &wgpu::Buffer,
    saved: &AttentionSaved,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: AttentionParams,
) -> Result<AttentionForward, GpuError> {
    attention_forward_variant(ctx, r, saved, x, y, len, p, default_kernel(&ctx.profile, &p))
}

/// [`attention_forward`] by the member `kernel` (Flat where it cannot run `p`).
#[allow(clippy::too_many_arguments)]
pub fn attention_forward_variant(
    ctx: &GpuContext,
    r: &wgpu::Buffer,
    saved: &AttentionSaved,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: AttentionParams,
    kernel: AttentionKernel,
) -> Result<AttentionForward, GpuError> {
    use Bind::*;
    let pc = &ctx.pipelines;
    let kernel = kernel.resolve(&ctx.profile, &p);
    let launches = match kernel {
        AttentionKernel::Flat => {
            let k = pc.get(ctx, Shader::Attention, "attention_forward_scores", &[Uniform, Read, Read, Read, Write])?;
            let scores = Launch::new(ctx, k, &[x, y, len, saved.m], p, |p| grid_1d(p.bu() * p.u as usize, WORKGROUP))?;
            let k = pc.get(ctx, Shader::Attention, "attention_forward_softmax", &[Uniform, Read, Read, Write])?;
            let softmax = Launch::new(ctx, k, &[saved.m, len, saved.n], p, |p| grid_1d(p.dirs() * p.bu(), WORKGROUP))?;
            let binds = [Uniform, Read, Read, Read, Read, Write, Write];
            let k = pc.get(ctx, Shader::Attention, "attention_forward", &binds)?;
            let output = Launch::new(ctx, k, &[x, y, saved.n, len, saved.o, r], p, |p| {
                grid_1d(p.dirs() * p.bu() * p.d as usize, WORKGROUP)
            })?;
            vec![scores, softmax, output]
        }
        AttentionKernel::Tiled => {
            let binds = [Uniform, Read, Read, Read, Write, Write, Write];
            let k = pc.get(ctx, Shader::AttentionTiled, "attention_tiled_forward", &binds)?;
            vec![Launch::new(ctx, k, &[x, y, len, saved.n, saved.o, r], p, tiled_grid)?]
        }
    };
    Ok(AttentionLaunches { kernel, launches })
}

/// dx, dy (B, U, D) accumulated (+=) from dr (B, U, rw) (the slices at r_xy, r_yx),
/// by the device's default member; `dm` (2, B, U, U) is scratch. For
/// self-attention pass `y = x` and `dy: None` (both halves go to dx).
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
    let kernel = default_kernel(&ctx.profile, &p);
    attention_backward_variant(ctx, dx, dy, dm, dr, saved, x, y, len, p, kernel)
}

/// [`attention_backward`] by the member `kernel` (Flat where it cannot run `p`).
/// Reads only N and O of the saved forward, so it follows either member's forward.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward_variant(
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
    kernel: AttentionKernel,
) -> Result<AttentionBackward, GpuError> {
    use Bind::*;
    if (p.pair != 0) != dy.is_some() {
        return Err(GpuError::Validation("attention_backward: dy must be given exactly for a pair (X != Y)".into()));
    }
    let pc = &ctx.pipelines;
    let kernel = kernel.resolve(&ctx.profile, &p);
    let (shader, scores_entry, input_entry) = match kernel {
        AttentionKernel::Flat => (Shader::Attention, "attention_backward_scores", "attention_backward"),
        AttentionKernel::Tiled => {
            (Shader::AttentionTiled, "attention_tiled_backward_scores", "attention_tiled_backward")
        }
    };
    let k = pc.get(ctx, shader, scores_entry, &[Uniform, Read, Read, Read, Read, Read, Write])?;
    let scores_grid: fn(&AttentionParams) -> [u32; 3] = match kernel {
        AttentionKernel::Flat => |p| grid_1d(p.dirs() * p.bu(), WORKGROUP),
        AttentionKernel::Tiled => tiled_grid,
    };
    let scores = Launch::new(ctx, k, &[x, y, saved.n, dr, len, dm], p, scores_grid)?;
    let binds = [Uniform, Read, Read, Read, Read, Read, Read, Read, Write, Write];
    let k = pc.get(ctx, shader, input_entry, &binds)?;
    let dy = dy.unwrap_or(&ctx.dummy);
    let input_grid: fn(&AttentionParams) -> [u32; 3] = match kernel {
        AttentionKernel::Flat => |p| grid_1d(p.bu() * p.d as usize, WORKGROUP),
        AttentionKernel::Tiled => tiled_grid,
    };
    let input = Launch::new(ctx, k, &[x, y, saved.n, saved.o, dr, dm, len, dx, dy], p, input_grid)?;
    Ok(AttentionLaunches { kernel, launches: vec![scores, input] })
}
