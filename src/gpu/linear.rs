//! Launchers of `shaders/linear.wgsl`: the batched per-utterance matmul (GRU input
//! projection, dense + ReLU), forward and backward. CPU references:
//! `cpu::gru::gru_input_projection`, `cpu::dense::{dense_forward, dense_backward}`.
//! Letters: B, U, N = B*U rows, K input width, O output width.

use super::context::{GpuContext, GpuError};
use super::launch::Launch;
use super::pipelines::{Bind, Shader};

/// Register tile edge of one invocation (rows x columns), as in the shader.
pub const TILE: u32 = 4;
/// Workgroup shape (x over output-column tiles, y over row tiles), as in the shader.
pub const WORKGROUP: [u32; 2] = [8, 8];

/// Mirrors `LinearParams` in linear.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LinearParams {
    pub b: u32,
    pub u: u32,
    pub k: u32,
    pub o: u32,
    /// 1: y = relu(.), gradients masked by y > 0.
    pub relu: u32,
    /// Element offset of W (O, K) in the weight (and gradient) buffer.
    pub w_off: u32,
    /// Element offset of the bias (O).
    pub b_off: u32,
    /// Element offset of y / dy in their buffers (0 unless they are one block of a larger buffer).
    pub y_off: u32,
}

impl LinearParams {
    pub fn new(b: usize, u: usize, k: usize, o: usize, relu: bool, w_off: usize, b_off: usize) -> LinearParams {
        let c = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        LinearParams { b: c(b), u: c(u), k: c(k), o: c(o), relu: u32::from(relu), w_off: c(w_off), b_off: c(b_off), y_off: 0 }
    }
}

impl LinearParams {
    /// The same launch writing y (reading dy) at element `y_off` of its buffer.
    pub fn at(mut self, y_off: usize) -> LinearParams {
        self.y_off = u32::try_from(y_off).unwrap_or(u32::MAX);
        self
    }
}

/// Which kernels of linear.wgsl a launch uses, so that versions can race.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinearKernel {
    /// Scalar loads along the reduction (any widths and offsets).
    Scalar,
    /// vec4 loads along K (and O): 2.5-4x faster on llvmpipe; needs the widths
    /// read along to be multiples of 4 and 4-aligned offsets (see linear.wgsl).
    Vec4,
}

impl LinearKernel {
    pub fn best_forward(p: &LinearParams) -> LinearKernel {
        Self::when(p.k % 4 == 0 && p.w_off % 4 == 0)
    }

    pub fn best_backward(p: &LinearParams) -> LinearKernel {
        Self::when(p.k % 4 == 0 && p.o % 4 == 0 && p.w_off % 4 == 0 && p.y_off % 4 == 0)
    }

    pub fn best_backward_weights(p: &LinearParams) -> LinearKernel {
        Self::when(p.k % 4 == 0 && p.o % 4 == 0 && p.y_off % 4 == 0)
    }

    fn when(ok: bool) -> LinearKernel {
        if ok {
            LinearKernel::Vec4
        } else {
            LinearKernel::Scalar
        }
    }

    /// `self`, unless the shapes only allow the scalar kernel.
    fn within(self, best: LinearKernel) -> LinearKernel {
        if best == LinearKernel::Scalar {
            LinearKernel::Scalar
        } else {
            self
        }
    }

    fn entry(self, scalar: &'static str, v4: &'static str) -> &'static str {
        match self {
            LinearKernel::Scalar => scalar,
            LinearKernel::Vec4 => v4,
        }
    }
}

fn tiles(n: u32, wg: u32) -> u32 {
    n.div_ceil(TILE).div_ceil(wg)
}

/// y (B, U, O) = act(x (B, U, K) W^T + b), zero at padded rows. `w` holds W at
/// `w_off` and b at `b_off` (the flat parameter buffer). `len` (B) u32.
pub fn linear_forward(
    ctx: &GpuContext,
    y: &wgpu::Buffer,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: LinearParams,
) -> Result<Launch<LinearParams>, GpuError> {
    linear_forward_variant(ctx, y, x, w, len, p, LinearKernel::best_forward(&p))
}

/// [`linear_forward`] with the kernel chosen by the caller (benchmarks); falls
/// back to Scalar where the shapes do not allow Vec4.
pub fn linear_forward_variant(
    ctx: &GpuContext,
    y: &wgpu::Buffer,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: LinearParams,
    kernel: LinearKernel,
) -> Result<Launch<LinearParams>, GpuError> {
    let kernel = kernel.within(LinearKernel::best_forward(&p));
    let binds = [Bind::Uniform, Bind::Read, Bind::Read, Bind::Read, Bind::Write];
    let k = ctx.pipelines.get(ctx, Shader::Linear, kernel.entry("linear_forward", "linear_forward_v4"), &binds)?;
    Launch::new(ctx, k, &[x, w, len, y], p, |p| [tiles(p.o, WORKGROUP[0]), tiles(p.b * p.u, WORKGROUP[1]), 1])
}

/// dx (B, U, K) = g W, g = dy * (y > 0) with ReLU else dy; zero at padded rows (written).
/// `y` is the forward output (bind `dy` again when there is no ReLU).
pub fn linear_backward(
    ctx: &GpuContext,
    dx: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    y: &wgpu::Buffer,
    w: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: LinearParams,
) -> Result<Launch<LinearParams>, GpuError> {
    linear_backward_variant(ctx, dx, dy, y, w, len, p, LinearKernel::best_backward(&p))
}

/// [`linear_backward`] with the kernel chosen by the caller (benchmarks).
#[allow(clippy::too_many_arguments)]
pub fn linear_backward_variant(
    ctx: &GpuContext,
    dx: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    y: &wgpu::Buffer,
    w: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: LinearParams,
    kernel: LinearKernel,
) -> Result<Launch<LinearParams>, GpuError> {
    let kernel = kernel.within(LinearKernel::best_backward(&p));
    let binds = [Bind::Uniform, Bind::Read, Bind::Read, Bind::Read, Bind::Read, Bind::Write];
    let k = ctx.pipelines.get(ctx, Shader::Linear, kernel.entry("linear_backward", "linear_backward_v4"), &binds)?;
    Launch::new(ctx, k, &[dy, y, w, len, dx], p, |p| [tiles(p.k, WORKGROUP[0]), tiles(p.b * p.u, WORKGROUP[1]), 1])
}

/// grads[W] += g^T x and grads[b] += sum g over real rows (deterministic: each
/// invocation owns a 4x4 tile of dW and walks the rows in order).
pub fn linear_backward_weights(
    ctx: &GpuContext,
    grads: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    y: &wgpu::Buffer,
    x: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: LinearParams,
) -> Result<Launch<LinearParams>, GpuError> {
    linear_backward_weights_variant(ctx, grads, dy, y, x, len, p, LinearKernel::best_backward_weights(&p))
}

/// [`linear_backward_weights`] with the kernel chosen by the caller (benchmarks).
#[allow(clippy::too_many_arguments)]
pub fn linear_backward_weights_variant(
    ctx: &GpuContext,
    grads: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    y: &wgpu::Buffer,
    x: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: LinearParams,
    kernel: LinearKernel,
) -> Result<Launch<LinearParams>, GpuError> {
    let kernel = kernel.within(LinearKernel::best_backward_weights(&p));
    let binds = [Bind::Uniform, Bind::Read, Bind::Read, Bind::Read, Bind::Read, Bind::Write];
    let k = ctx.pipelines.get(ctx, Shader::Linear, kernel.entry("linear_backward_weights", "linear_backward_weights_v4"), &binds)?;
    Launch::new(ctx, k, &[dy, y, x, len, grads], p, |p| [tiles(p.k, WORKGROUP[0]), tiles(p.o, WORKGROUP[1]), 1])
}
