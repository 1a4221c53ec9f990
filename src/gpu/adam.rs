//! Launcher of `shaders/adam.wgsl`: one Adam step over the flat parameter buffer in
//! one dispatch. CPU reference: `cpu::adam`.

use super::context::{GpuContext, GpuError};
use super::launch::Launch;
use super::pipelines::{grid_1d, Bind, Shader};
pub use crate::config::AdamConfig;

pub const WORKGROUP: u32 = 256;

/// Mirrors `AdamParams` in adam.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AdamParams {
    pub n: u32,
    pub step: u32,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub bias1: f32,
    pub bias2: f32,
    pub zero_grad: u32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    pub _pad: u32,
}

impl AdamParams {
    /// Step `step` (1-based) over `n` elements; bias corrections computed in f64.
    pub fn new(n: usize, step: u32, cfg: &AdamConfig, zero_grad: bool) -> AdamParams {
        let t = i32::try_from(step).unwrap_or(i32::MAX);
        AdamParams {
            n: u32::try_from(n).unwrap_or(u32::MAX),
            step,
            lr: cfg.lr as f32,
            beta1: cfg.beta1 as f32,
            beta2: cfg.beta2 as f32,
            eps: cfg.eps as f32,
            bias1: (1.0 - cfg.beta1.powi(t)) as f32,
            bias2: (1.0 - cfg.beta2.powi(t)) as f32,
            zero_grad: u32::from(zero_grad),
            one_minus_beta1: (1.0 - cfg.beta1) as f32,
            one_minus_beta2: (1.0 - cfg.beta2) as f32,
            _pad: 0,
        }
    }
}

/// params -= Adam(grads); m, v updated; grads zeroed if `zero_grad`. All (n).
pub fn adam_step(
    ctx: &GpuContext,
    params: &wgpu::Buffer,
    grads: &wgpu::Buffer,
    m: &wgpu::Buffer,
    v: &wgpu::Buffer,
    p: AdamParams,
) -> Result<Launch<AdamParams>, GpuError> {
    let binds = [Bind::Uniform, Bind::Write, Bind::Write, Bind::Write, Bind::Write];
    let k = ctx.pipelines.get(ctx, Shader::Adam, "adam_step", &binds)?;
    Launch::new(ctx, k, &[params, grads, m, v], p, |p| grid_1d(p.n as usize, WORKGROUP))
}
