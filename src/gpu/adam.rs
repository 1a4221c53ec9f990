//! Launcher of `shaders/adam.wgsl`: one Adam step over flat parameter stores in
//! one dispatch, one problem per model (the models of a group share one arena).
//! CPU reference: `cpu::adam`.

use super::context::{GpuContext, GpuError};
use super::launch::{Launch, ProblemList, Recordable};
use super::pipelines::{grid_1d, Bind, Recorder, Shader};
use super::profile::DeviceProfile;
use super::wgsl::Const;
pub use crate::config::AdamConfig;

pub const WORKGROUP: u32 = 256;
/// The constants of shaders/adam.wgsl, written into its module from these values.
pub const WGSL_CONSTS: [Const; 1] = [Const::new("WG", WORKGROUP, "workgroup size")];

/// Mirrors `AdamParams` in adam.wgsl: what the problems of a launch share.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdamParams {
    pub problems: u32,
    pub zero_grad: u32,
    pub n_max: u32,
    /// Quads (vec4) each invocation updates, WORKGROUP apart ([`quads_per_invocation`]).
    pub per_inv: u32,
}

/// Mirrors `AdamProblem` in adam.wgsl: one model's block and its step.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdamProblem {
    pub offset: u32,
    pub n: u32,
    pub step: u32,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub bias1: f32,
    pub bias2: f32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    pub _pad: u32,
}

impl AdamProblem {
    /// Step `step` (1-based) over the `n` elements at `offset`; bias corrections in f64.
    pub fn new(offset: usize, n: usize, step: u32, cfg: &AdamConfig) -> AdamProblem {
        let t = i32::try_from(step).unwrap_or(i32::MAX);
        let c = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        AdamProblem {
            offset: c(offset),
            n: c(n),
            step,
            lr: cfg.lr as f32,
            beta1: cfg.beta1 as f32,
            beta2: cfg.beta2 as f32,
            eps: cfg.eps as f32,
            bias1: (1.0 - cfg.beta1.powi(t)) as f32,
            bias2: (1.0 - cfg.beta2.powi(t)) as f32,
            one_minus_beta1: (1.0 - cfg.beta1) as f32,
            one_minus_beta2: (1.0 - cfg.beta2) as f32,
            _pad: 0,
        }
    }
}

/// Quads one invocation updates on `profile`'s device: 1 on a GPU (every quad
/// its own lane, all in flight); 8 on a software device, where an invocation's
/// fixed cost (the problem entry, index arithmetic) is as large as a quad's
/// loads: 6.7 -> 5.7 ms per step on llvmpipe at 1.35M parameters (1: 6.7,
/// 4: 6.4, 16: 5.6; `cargo bench --bench kernels -- adam`).
pub fn quads_per_invocation(profile: &DeviceProfile) -> u32 {
    if profile.is_software() {
        8
    } else {
        1
    }
}

fn shared(problems: &[AdamProblem], zero_grad: bool, per_inv: u32) -> AdamParams {
    let n_max = problems.iter().map(|q| q.n).max().unwrap_or(0);
    AdamParams {
        problems: u32::try_from(problems.len()).unwrap_or(u32::MAX),
        zero_grad: u32::from(zero_grad),
        n_max,
        per_inv,
    }
}

/// An Adam launch over a list of blocks.
pub struct AdamLaunch {
    launch: Launch<AdamParams>,
    list: ProblemList<AdamProblem>,
    per_inv: u32,
}

impl AdamLaunch {
    /// The blocks (1..=capacity) the next submit updates.
    pub fn update(&mut self, ctx: &GpuContext, problems: &[AdamProblem], zero_grad: bool) -> Result<(), GpuError> {
        self.list.write(ctx, problems)?;
        self.launch.update(ctx, shared(problems, zero_grad, self.per_inv));
        Ok(())
    }

    /// Quads per invocation from the next `update` on (instead of the device
    /// profile's): `cimnet check` runs both forms on any device.
    pub fn set_quads_per_invocation(&mut self, per_inv: u32) {
        self.per_inv = per_inv.max(1);
    }
}

impl Recordable for AdamLaunch {
    fn record_into(&self, rec: &mut Recorder) {
        self.launch.record(rec);
    }
}

/// `[params, grads, m, v]`: params -= Adam(grads); m, v updated; grads zeroed if
/// `zero_grad`; over every block of `problems` (room for `capacity` blocks).
pub fn adam_step(
    ctx: &GpuContext,
    [params, grads, m, v]: [&wgpu::Buffer; 4],
    problems: &[AdamProblem],
    capacity: usize,
    zero_grad: bool,
) -> Result<AdamLaunch, GpuError> {
    let binds = [Bind::Uniform, Bind::Read, Bind::Write, Bind::Write, Bind::Write, Bind::Write];
    let k = ctx.pipelines.get(ctx, Shader::Adam, "adam_step", &binds)?;
    let list = ProblemList::new(ctx, "adam", problems, capacity)?;
    // The kernel binds the four as arrays of vec4 quads: a tail past the last
    // whole quad would be out of its reach.
    let quads = |b: &wgpu::Buffer| b.size().is_multiple_of(16);
    if ![params, grads, m, v].into_iter().all(quads) {
        return Err(GpuError::Validation(
            "adam_step: params, grads, m and v must each hold a multiple of 4 f32 (vec4 quads)".into(),
        ));
    }
    let per_inv = quads_per_invocation(&ctx.profile);
    let launch =
        Launch::new(ctx, k, &[&list.buffer, params, grads, m, v], shared(problems, zero_grad, per_inv), |p| {
            // A block of n elements at any offset touches at most n / 4 + 2 quads.
            let [x, y, _] = grid_1d(p.n_max as usize / 4 + 2, WORKGROUP * p.per_inv);
            [x, y, p.problems]
        })?;
    Ok(AdamLaunch { launch, list, per_inv })
}
