//! Launcher of `shaders/adam.wgsl`: one Adam step over flat parameter stores in
//! one dispatch, one problem per model (the models of a group share one arena).
//! Two forms with the same arithmetic: `adam_step` reads its operands from the
//! storage buffers; `adam_step_tex` (software devices, `texture::preferred`)
//! from texture copies the launch records between two passes just before its
//! dispatch, and clears the gradient blocks there instead of storing zeros.
//! CPU reference: `cpu::adam`.

use super::context::{GpuContext, GpuError};
use super::launch::{Launch, ProblemList, Recordable};
use super::pipelines::{grid_1d, Bind, Recorder, Shader};
use super::profile::DeviceProfile;
use super::texture::{self, BufferTexture, TEXELS_PER_ROW};
use super::wgsl::Const;
pub use crate::config::AdamConfig;

pub const WORKGROUP: u32 = 256;
/// The constants of shaders/adam.wgsl, written into its module from these values.
pub const WGSL_CONSTS: [Const; 2] = [
    Const::new("WG", WORKGROUP, "workgroup size"),
    Const::new("TEX_ROW", TEXELS_PER_ROW, "texels per row of an operand's texture (src/gpu/texture.rs)"),
];

/// Mirrors `AdamParams` in adam.wgsl: what the problems of a launch share.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdamParams {
    pub problems: u32,
    pub zero_grad: u32,
    pub n_max: u32,
    /// Quads (vec4) each invocation updates, a run of consecutive ones ([`quads_per_invocation`]).
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
/// its own lane, all in flight); 32 on a software device, where an
/// invocation's fixed cost (the problem entry, a 12-field struct read as 12
/// storage loads that each loop over the SIMD lanes, and the index
/// arithmetic) is larger than a quad's own work. Measured on llvmpipe (2-core
/// EPYC, 1.35 M parameters, texture form, best of 20): 8 quads 16.0 ms, 32
/// 14.7, 64 14.7, 256 17.1; the storage form at 8 and 64: 24.8, 23.6.
pub fn quads_per_invocation(profile: &DeviceProfile) -> u32 {
    if profile.is_software() {
        32
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
    /// The texture form's copies (params, grads, m, v) and the gradient blocks it clears.
    textures: Option<Textures>,
}

/// The texture form's operands: each buffer's texture, in binding order of
/// `adam_step`'s buffers (params, grads, m, v); the gradient blocks to clear.
struct Textures {
    copies: Vec<std::sync::Arc<BufferTexture>>,
    clear: Vec<(u64, u64)>,
}

impl AdamLaunch {
    /// The blocks (1..=capacity) the next submit updates.
    pub fn update(&mut self, ctx: &GpuContext, problems: &[AdamProblem], zero_grad: bool) -> Result<(), GpuError> {
        self.list.write(ctx, problems)?;
        self.launch.update(ctx, shared(problems, zero_grad, self.per_inv));
        if let Some(t) = &mut self.textures {
            let bytes = |q: &AdamProblem| (4 * u64::from(q.offset), 4 * u64::from(q.n));
            t.clear = if zero_grad { problems.iter().map(bytes).filter(|b| b.1 > 0).collect() } else { Vec::new() };
        }
        Ok(())
    }

    /// Whether this launch runs the texture form (`adam_step_tex`).
    pub fn reads_textures(&self) -> bool {
        self.textures.is_some()
    }

    /// Quads per invocation from the next `update` on (instead of the device
    /// profile's): `cimnet check` runs both forms on any device.
    pub fn set_quads_per_invocation(&mut self, per_inv: u32) {
        self.per_inv = per_inv.max(1);
    }
}

impl Recordable for AdamLaunch {
    /// The texture form first records, between two passes, the operands'
    /// copies and then the gradient blocks' clear (zero_grad).
    fn record_into(&self, rec: &mut Recorder) {
        if let Some(t) = &self.textures {
            for tex in &t.copies {
                tex.refresh(rec);
            }
            let grads = t.copies[1].buffer();
            if !t.clear.is_empty() {
                rec.between_passes(|enc| {
                    for &(offset, size) in &t.clear {
                        enc.clear_buffer(grads, offset, Some(size));
                    }
                });
                rec.wrote(std::slice::from_ref(grads));
            }
        }
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
    // Software devices (`texture::preferred`): 4 texel fetches and 3 stores per
    // quad instead of 4 storage loads and 4 stores, plus memcpys and a clear.
    // GPUs keep the storage form (no copies; a streaming kernel's loads are
    // not their bottleneck).
    adam_step_form(ctx, [params, grads, m, v], problems, capacity, zero_grad, texture::preferred(&ctx.profile))
}

/// `adam_step` in the form asked for: with `textures`, `adam_step_tex`
/// (where the buffers fit the device's textures; else the storage form).
/// `cimnet check` and the tests run both forms on any device.
pub fn adam_step_form(
    ctx: &GpuContext,
    [params, grads, m, v]: [&wgpu::Buffer; 4],
    problems: &[AdamProblem],
    capacity: usize,
    zero_grad: bool,
    textures: bool,
) -> Result<AdamLaunch, GpuError> {
    let textures = textures && [params, grads, m, v].into_iter().all(|b| texture::fits(ctx, b));
    let (u, r, w, t) = (Bind::Uniform, Bind::Read, Bind::Write, Bind::Texture);
    let (entry, binds) = if textures {
        ("adam_step_tex", &[u, r, w, t, w, w, t, t, t][..])
    } else {
        ("adam_step", &[u, r, w, w, w, w][..])
    };
    let k = ctx.pipelines.get(ctx, Shader::Adam, entry, binds)?;
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
    let textures = if textures {
        let copy = |b: &wgpu::Buffer, label: &str| BufferTexture::shared(ctx, label, b);
        let copies = vec![
            copy(params, "weights texture")?,
            copy(grads, "gradients texture")?,
            copy(m, "adam m texture")?,
            copy(v, "adam v texture")?,
        ];
        Some(Textures { copies, clear: Vec::new() })
    } else {
        None
    };
    let mut res = vec![list.buffer.as_entire_binding(), params.as_entire_binding()];
    match &textures {
        Some(t) => {
            let view = |i: usize| wgpu::BindingResource::TextureView(&t.copies[i].view);
            res.extend([view(1), m.as_entire_binding(), v.as_entire_binding(), view(0), view(2), view(3)]);
        }
        None => res.extend([grads, m, v].map(|b| b.as_entire_binding())),
    }
    let launch = Launch::with_resources(ctx, k, &res, shared(problems, zero_grad, per_inv), |p| {
        // A block of n elements at any offset touches at most n / 4 + 2 quads.
        let [x, y, _] = grid_1d(p.n_max as usize / 4 + 2, WORKGROUP * p.per_inv);
        [x, y, p.problems]
    })?;
    let mut launch = AdamLaunch { launch, list, per_inv, textures };
    launch.update(ctx, problems, zero_grad)?;
    Ok(launch)
}
