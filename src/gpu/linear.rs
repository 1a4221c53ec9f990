//! Launchers of `shaders/linear.wgsl`: the batched per-utterance matmul (GRU input
//! projection, dense + ReLU), forward and backward. CPU references:
//! `cpu::gru::gru_input_projection`, `cpu::dense::{dense_forward, dense_backward}`.
//! Letters: B, U, N = B*U rows, K input width, O output width.

use super::context::{GpuContext, GpuError};
use super::launch::Launch;
use super::pipelines::{Bind, Shader};
use super::profile::DeviceProfile;

/// Register tile edge of one invocation (rows x columns), as in the shader.
pub const TILE: u32 = 4;
/// Workgroup shape (x over output-column tiles, y over row tiles), as in the shader.
pub const WORKGROUP: [u32; 2] = [8, 8];

/// Mirrors `LinearParams` in linear.wgsl. Up to 4 problems per launch (grid z),
/// each with its own offsets; optional dropout mask on the output and a copy of
/// the forward output into a column block of R (see the shader's header).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LinearParams {
    pub b: u32,
    pub u: u32,
    pub k: u32,
    pub o: u32,
    /// 1: y = relu(.), gradients masked by y > 0 (and times `scale`).
    pub relu: u32,
    /// Problems in the launch (grid z), 1..=4.
    pub problems: u32,
    /// 1: dropout mask (stream[z]) on the output: forward y, backward dx.
    pub drop: u32,
    pub seed: u32,
    pub threshold: u32,
    /// 1 / (1 - p); 1 without dropout.
    pub scale: f32,
    /// Forward: row width of R, 0 = no copy into R.
    pub rw: u32,
    pub _pad0: u32,
    /// Per problem: element offset of W (O, K) in the weight (and gradient) buffer.
    pub w_off: [u32; 4],
    /// Per problem: element offset of the bias (O).
    pub b_off: [u32; 4],
    /// Per problem: element offset of x (forward, weights) / dx (backward) in its buffer.
    pub x_off: [u32; 4],
    /// Per problem: element offset of y / dy in their buffers.
    pub y_off: [u32; 4],
    /// Per problem: dropout stream (cpu::dropout::stream).
    pub stream: [u32; 4],
    /// Per problem: column offset of the block in R.
    pub r_off: [u32; 4],
}

/// Most problems one launch takes.
pub const MAX_PROBLEMS: usize = 4;

fn c32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

impl LinearParams {
    pub fn new(b: usize, u: usize, k: usize, o: usize, relu: bool, w_off: usize, b_off: usize) -> LinearParams {
        LinearParams {
            b: c32(b),
            u: c32(u),
            k: c32(k),
            o: c32(o),
            relu: u32::from(relu),
            problems: 1,
            drop: 0,
            seed: 0,
            threshold: 0,
            scale: 1.0,
            rw: 0,
            _pad0: 0,
            w_off: [c32(w_off), 0, 0, 0],
            b_off: [c32(b_off), 0, 0, 0],
            x_off: [0; 4],
            y_off: [0; 4],
            stream: [0; 4],
            r_off: [0; 4],
        }
    }

    /// The same launch writing y (reading dy) at element `y_off` of its buffer.
    pub fn at(mut self, y_off: usize) -> LinearParams {
        self.y_off[0] = c32(y_off);
        self
    }

    /// Problem z (< 4) of the launch: its W, b, x (dx) and y (dy) offsets; same shapes.
    pub fn problem(mut self, z: usize, w_off: usize, b_off: usize, x_off: usize, y_off: usize) -> LinearParams {
        self.w_off[z] = c32(w_off);
        self.b_off[z] = c32(b_off);
        self.x_off[z] = c32(x_off);
        self.y_off[z] = c32(y_off);
        self.problems = self.problems.max(c32(z + 1));
        self
    }

    /// Inverted dropout of probability `p` on the output (forward y, backward dx),
    /// problem z's mask from stream `streams[z]` under step seed `seed`.
    pub fn dropout(mut self, seed: u32, p: f64, streams: [u32; 4]) -> LinearParams {
        self.drop = 1;
        self.seed = seed;
        self.threshold = crate::cpu::dropout::threshold(p);
        self.scale = (1.0 / (1.0 - p)) as f32;
        self.stream = streams;
        self
    }

    /// The forward also writes y into R (B, U, rw) at column `r_off[z]`.
    pub fn repr(mut self, rw: usize, r_off: [usize; 4]) -> LinearParams {
        self.rw = c32(rw);
        self.r_off = r_off.map(c32);
        self
    }

    fn all(&self, f: impl Fn(usize) -> bool) -> bool {
        (0..self.problems as usize).all(f)
    }
}

/// Which kernels of linear.wgsl a launch uses, so that versions can race.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinearKernel {
    /// Scalar loads along the reduction (any widths and offsets).
    Scalar,
    /// vec4 loads along K (and O): 2.5-4x faster on llvmpipe; needs the widths
    /// read along to be multiples of 4 and 4-aligned offsets (see linear.wgsl).
    Vec4,
}

/// The members valid for `p` on this device, the default first (a launcher
/// still falls back to Scalar for a direction whose widths do not allow Vec4).
pub fn candidates(_profile: &DeviceProfile, p: &LinearParams) -> Vec<LinearKernel> {
    let best = [LinearKernel::best_forward(p), LinearKernel::best_backward(p), LinearKernel::best_backward_weights(p)];
    if best.contains(&LinearKernel::Vec4) {
        vec![LinearKernel::Vec4, LinearKernel::Scalar]
    } else {
        vec![LinearKernel::Scalar]
    }
}

impl LinearKernel {
    pub const ALL: [LinearKernel; 2] = [LinearKernel::Scalar, LinearKernel::Vec4];

    /// Stable name (config.json, the tuner's cache, `cimnet bench`).
    pub fn name(self) -> &'static str {
        match self {
            LinearKernel::Scalar => "scalar",
            LinearKernel::Vec4 => "vec4",
        }
    }

    pub fn from_name(name: &str) -> Option<LinearKernel> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn best_forward(p: &LinearParams) -> LinearKernel {
        Self::when(p.k.is_multiple_of(4) && p.all(|z| p.w_off[z].is_multiple_of(4) && p.x_off[z].is_multiple_of(4)))
    }

    pub fn best_backward(p: &LinearParams) -> LinearKernel {
        Self::when(
            p.k.is_multiple_of(4)
                && p.o.is_multiple_of(4)
                && p.all(|z| p.w_off[z].is_multiple_of(4) && p.y_off[z].is_multiple_of(4)),
        )
    }

    pub fn best_backward_weights(p: &LinearParams) -> LinearKernel {
        Self::when(
            p.k.is_multiple_of(4)
                && p.o.is_multiple_of(4)
                && p.all(|z| p.y_off[z].is_multiple_of(4) && p.x_off[z].is_multiple_of(4)),
        )
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
    linear_forward_variant(ctx, y, &ctx.dummy, x, w, len, p, LinearKernel::best_forward(&p))
}

/// [`linear_forward`] that also writes y into the representation `r` (B, U, rw)
/// at columns `r_off[z]..` (the plain blocks, `LinearParams::repr`).
pub fn linear_forward_repr(
    ctx: &GpuContext,
    y: &wgpu::Buffer,
    r: &wgpu::Buffer,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: LinearParams,
) -> Result<Launch<LinearParams>, GpuError> {
    linear_forward_variant(ctx, y, r, x, w, len, p, LinearKernel::best_forward(&p))
}

/// [`linear_forward`] with the kernel chosen by the caller (benchmarks); falls
/// back to Scalar where the shapes do not allow Vec4.
#[allow(clippy::too_many_arguments)]
pub fn linear_forward_variant(
    ctx: &GpuContext,
    y: &wgpu::Buffer,
    r: &wgpu::Buffer,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    len: &wgpu::Buffer,
    p: LinearParams,
    kernel: LinearKernel,
) -> Result<Launch<LinearParams>, GpuError> {
    let kernel = kernel.within(LinearKernel::best_forward(&p));
    let binds = [Bind::Uniform, Bind::Read, Bind::Read, Bind::Read, Bind::Write, Bind::Write];
    let k = ctx.pipelines.get(ctx, Shader::Linear, kernel.entry("linear_forward", "linear_forward_v4"), &binds)?;
    Launch::new(ctx, k, &[x, w, len, y, r], p, |p| {
        [tiles(p.o, WORKGROUP[0]), tiles(p.b * p.u, WORKGROUP[1]), p.problems]
    })
}

/// dx (B, U, K) = g W, g = dy * scale * (y > 0) with ReLU else dy; zero at padded
/// rows, times the dropout mask with `drop` (written).
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
    Launch::new(ctx, k, &[dy, y, w, len, dx], p, |p| {
        [tiles(p.k, WORKGROUP[0]), tiles(p.b * p.u, WORKGROUP[1]), p.problems]
    })
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
    let k = ctx.pipelines.get(
        ctx,
        Shader::Linear,
        kernel.entry("linear_backward_weights", "linear_backward_weights_v4"),
        &binds,
    )?;
    Launch::new(ctx, k, &[dy, y, x, len, grads], p, |p| {
        [tiles(p.k, WORKGROUP[0]), tiles(p.o, WORKGROUP[1]), p.problems]
    })
}
