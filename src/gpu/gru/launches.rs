//! The GRU family's launches: the forward and the backward of every problem
//! as recordable chunks of steps (`Chunks`), their bind groups built once,
//! and the WideSgTex member's texture operands (copied before its dispatches).

use std::sync::Arc;

use super::*;

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
        resources: &[wgpu::BindingResource],
        params: &GruParams,
        steps_per_dispatch: u32,
        grid: fn(&GruParams) -> [u32; 3],
    ) -> Result<Chunks, GruError> {
        let launches = params
            .chunks(steps_per_dispatch)
            .into_iter()
            .map(|(t0, t1)| {
                Launch::with_resources(ctx, kernel.clone(), resources, GruParams { t0, t1, ..*params }, grid)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Chunks { launches, steps_per_dispatch, capacity: params.u })
    }

    /// The chunks that dispatch work at the current params.
    fn dispatches(&self) -> usize {
        self.launches.iter().filter(|l| !l.groups().contains(&0)).count()
    }

    fn check(&self, params: &GruParams) -> Result<(), GruError> {
        if params.u > self.capacity {
            return Err(GruError::Capacity { u: params.u, capacity: self.capacity });
        }
        Ok(())
    }

    /// New params for every chunk (after `check`).
    fn update(&mut self, ctx: &GpuContext, params: &GruParams) {
        let chunks = params.chunks(self.steps_per_dispatch);
        for (k, l) in self.launches.iter_mut().enumerate() {
            let (t0, t1) = chunks.get(k).copied().unwrap_or((params.u, params.u));
            l.update(ctx, GruParams { t0, t1, ..*params });
        }
    }
}

/// The forward of every problem, as recordable launches (one per chunk).
pub struct GruForward {
    chunks: Chunks,
    bound: Bound,
    texture: WeightsTexture,
    /// WideSgTex: xp's texture.
    xp: Option<Arc<BufferTexture>>,
}

/// Forward of every problem with `member`'s kernels: writes `cache`
/// (P, 5, B, U, H) and `out` (M, B, U, 2H), both zero at padding, from `xp`
/// (P, B, U, 3H), problem p's W_hh / b_hh at `problems[p]`'s offsets in
/// `weights`. Built for up to `capacity` problems (at least `problems.len()`)
/// and U = `params.u` steps; `update` takes any others the buffers hold. A
/// kernel that does not fit the shapes (`GruKernel::fits`) runs as Scalar.
#[allow(clippy::too_many_arguments)]
pub fn gru_forward(
    ctx: &GpuContext,
    out: &wgpu::Buffer,
    cache: &wgpu::Buffer,
    xp: &wgpu::Buffer,
    weights: &wgpu::Buffer,
    lens: &wgpu::Buffer,
    params: &GruParams,
    problems: &[GruProblem],
    capacity: usize,
    member: GruMember,
) -> Result<GruForward, GruError> {
    let member = member.fitting(ctx, params, problems, &[weights, xp]);
    let buffers = [
        ("out", out, Need::Out),
        ("cache", cache, Need::Cache),
        ("xp", xp, Need::Gates),
        ("weights", weights, Need::Store),
        ("lens", lens, Need::Lens),
    ];
    let bound = Bound::new(ctx, &buffers, params, problems, capacity, member)?;
    let texture = WeightsTexture::new(ctx, member, weights)?;
    let xp_t = texture.operand(ctx, xp)?;
    let (r, w) = (Bind::Read, Bind::Write);
    let binds = [Bind::Uniform, r, r, texture.bind(), texture.bind(), w, w];
    let (shader, [entry, ..]) = member.entries(&ctx.profile);
    let k = ctx.pipelines.get(ctx, shader, entry, &binds)?;
    let (iters, _) = member.iters_per_step(params.h);
    let steps = member.schedule.steps_per_dispatch(&ctx.profile, iters);
    let list = &bound.problems.buffer;
    let grid = member.step_grid();
    let res = [list, lens].map(|b| b.as_entire_binding());
    let xp_res = xp_t.as_ref().map_or(xp.as_entire_binding(), |t| wgpu::BindingResource::TextureView(&t.view));
    let res = [&res[..], &[texture.resource(weights), xp_res], &[cache, out].map(|b| b.as_entire_binding())].concat();
    let chunks = Chunks::new(ctx, k, &res, params, steps, grid)?;
    Ok(GruForward { chunks, bound, texture, xp: xp_t })
}

/// The recurrence's view of the weights arena (binding 3): the storage buffer
/// itself, or for WideSgTex a texture copy of it, refreshed (between two
/// passes) each time the launch is recorded.
struct WeightsTexture(Option<Arc<BufferTexture>>);

impl WeightsTexture {
    fn new(ctx: &GpuContext, member: GruMember, weights: &wgpu::Buffer) -> Result<WeightsTexture, GruError> {
        if member.kernel != GruKernel::WideSgTex {
            return Ok(WeightsTexture(None));
        }
        Ok(WeightsTexture(Some(BufferTexture::shared(ctx, "weights texture", weights)?)))
    }

    fn bind(&self) -> Bind {
        if self.0.is_some() {
            Bind::Texture
        } else {
            Bind::Read
        }
    }

    fn resource<'a>(&'a self, weights: &'a wgpu::Buffer) -> wgpu::BindingResource<'a> {
        match &self.0 {
            Some(t) => wgpu::BindingResource::TextureView(&t.view),
            None => weights.as_entire_binding(),
        }
    }

    fn refresh(&self, rec: &mut Recorder) {
        if let Some(t) = &self.0 {
            t.refresh(rec);
        }
    }

    /// WideSgTex: the shared texture of another read-only operand.
    fn operand(&self, ctx: &GpuContext, buffer: &wgpu::Buffer) -> Result<Option<Arc<BufferTexture>>, GruError> {
        if self.0.is_none() {
            return Ok(None);
        }
        Ok(Some(BufferTexture::shared(ctx, "GRU operand texture", buffer)?))
    }
}

impl GruForward {
    /// New sizes and problems (a batch with U up to the one built for, up to
    /// the capacity's problems, same buffers).
    pub fn update(&mut self, ctx: &GpuContext, params: &GruParams, problems: &[GruProblem]) -> Result<(), GruError> {
        self.chunks.check(params)?;
        self.bound.write(ctx, params, problems)?;
        self.chunks.update(ctx, params);
        Ok(())
    }

    /// Dispatches recorded per run.
    pub fn dispatches(&self) -> usize {
        self.chunks.dispatches()
    }

    /// The kernel that runs (the member's, or Scalar where it did not fit).
    pub fn kernel(&self) -> GruKernel {
        self.bound.member.kernel
    }
}

impl Recordable for GruForward {
    fn record_into(&self, rec: &mut Recorder) {
        self.texture.refresh(rec);
        if let (Some(t), Some(l)) = (&self.xp, self.chunks.launches.first()) {
            t.refresh_prefix(rec, l.params.gates_bytes());
        }
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
    bound: Bound,
    texture: WeightsTexture,
    /// WideSgTex's weight gradient: the cache's and gh's textures.
    operands: Option<[Arc<BufferTexture>; 2]>,
    /// WideSgTex's recurrence: the cache's and dout's.
    inputs: Option<[Arc<BufferTexture>; 2]>,
}

/// Backward through time of every problem from `dout` (M, B, U, 2H) with
/// `member`'s kernels: writes `gi` and `gh` (P, B, U, 3H) (and uses `carry`
/// (P, B, H) as scratch), then accumulates dW_hh += gh^T h_prev and db_hh +=
/// sum gh into `grads` at each problem's offsets (deterministic order, no
/// atomics; two problems must not share a W_hh). The caller completes dW_ih,
/// db_ih and dx from `gi` with the linear kernels. Capacity and fallback as
/// `gru_forward`.
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
    problems: &[GruProblem],
    capacity: usize,
    member: GruMember,
) -> Result<GruBackward, GruError> {
    let member = member.fitting(ctx, params, problems, &[weights, cache, dout, gh]);
    let buffers = [
        ("gi", gi, Need::Gates),
        ("gh", gh, Need::Gates),
        ("carry", carry, Need::Carry),
        ("grads", grads, Need::Store),
        ("dout", dout, Need::Out),
        ("cache", cache, Need::Cache),
        ("weights", weights, Need::Store),
        ("lens", lens, Need::Lens),
    ];
    let bound = Bound::new(ctx, &buffers, params, problems, capacity, member)?;
    check_loop_budget(&ctx.profile, member.kernel, params)?;
    let texture = WeightsTexture::new(ctx, member, weights)?;
    let inputs = match (texture.operand(ctx, cache)?, texture.operand(ctx, dout)?) {
        (Some(c), Some(d)) => Some([c, d]),
        _ => None,
    };
    let (u, r, w) = (Bind::Uniform, Bind::Read, Bind::Write);
    let (shader, [_, step, dw]) = member.entries(&ctx.profile);
    let tb = texture.bind();
    let k = ctx.pipelines.get(ctx, shader, step, &[u, r, r, tb, tb, tb, w, w, w])?;
    let (_, iters) = member.iters_per_step(params.h);
    let steps = member.schedule.steps_per_dispatch(&ctx.profile, iters);
    let list = &bound.problems.buffer;
    let res = [list, lens].map(|b| b.as_entire_binding());
    let read = match &inputs {
        Some([c, d]) => [wgpu::BindingResource::TextureView(&c.view), wgpu::BindingResource::TextureView(&d.view)],
        None => [cache.as_entire_binding(), dout.as_entire_binding()],
    };
    let rest = [gi, gh, carry].map(|b| b.as_entire_binding());
    let res = [&res[..], &[texture.resource(weights)], &read, &rest].concat();
    let chunks = Chunks::new(ctx, k, &res, params, steps, member.step_grid())?;
    // WideSgTex's weight gradient reads gh and the cache through texture copies
    // (made after the recurrence wrote them, of what the batch uses; `fitting`
    // checked that both fit).
    let operands = match (texture.operand(ctx, cache)?, texture.operand(ctx, gh)?) {
        (Some(c), Some(g)) => Some([c, g]),
        _ => None,
    };
    let t = if operands.is_some() { Bind::Texture } else { r };
    let k = ctx.pipelines.get(ctx, shader, dw, &[u, r, r, t, t, w])?;
    let weights = match &operands {
        Some([c, g]) => {
            let (c, g) = (wgpu::BindingResource::TextureView(&c.view), wgpu::BindingResource::TextureView(&g.view));
            let res = [list.as_entire_binding(), lens.as_entire_binding(), c, g, grads.as_entire_binding()];
            Launch::with_resources(ctx, k, &res, *params, member.kernel.weights_grid())?
        }
        None => Launch::new(ctx, k, &[list, lens, cache, gh, grads], *params, member.kernel.weights_grid())?,
    };
    Ok(GruBackward { chunks, weights, bound, texture, operands, inputs })
}

impl GruBackward {
    /// New sizes and problems (as `GruForward::update`).
    pub fn update(&mut self, ctx: &GpuContext, params: &GruParams, problems: &[GruProblem]) -> Result<(), GruError> {
        self.chunks.check(params)?;
        check_loop_budget(&ctx.profile, self.bound.member.kernel, params)?;
        self.bound.write(ctx, params, problems)?;
        self.chunks.update(ctx, params);
        self.weights.update(ctx, *params);
        Ok(())
    }

    /// Dispatches recorded per run.
    pub fn dispatches(&self) -> usize {
        1 + self.chunks.dispatches()
    }

    /// The kernel that runs (the member's, or Scalar where it did not fit).
    pub fn kernel(&self) -> GruKernel {
        self.bound.member.kernel
    }
}

impl GruBackward {
    /// The dW_hh / db_hh launch, after WideSgTex's copies of what it reads.
    fn record_weights(&self, rec: &mut Recorder) {
        if let Some([c, g]) = &self.operands {
            let p = &self.weights.params;
            c.refresh_prefix(rec, p.cache_bytes());
            g.refresh_prefix(rec, p.gates_bytes());
        }
        self.weights.record(rec);
    }
}

impl Recordable for GruBackward {
    fn record_into(&self, rec: &mut Recorder) {
        self.texture.refresh(rec);
        if let Some([c, d]) = &self.inputs {
            let p = &self.weights.params;
            c.refresh_prefix(rec, p.cache_bytes());
            d.refresh_prefix(rec, p.out_bytes());
        }
        for l in self.chunks.launches.iter().rev() {
            l.record(rec);
        }
        self.record_weights(rec);
    }
}

/// The dW_hh / db_hh launch of a [`GruBackward`] alone, reading gh and the
/// cache as the recurrence left them: `cargo bench --bench kernels` times it
/// apart from the recurrence (it accumulates into the gradients again).
pub struct GruWeightsOnly<'a>(pub &'a GruBackward);

impl Recordable for GruWeightsOnly<'_> {
    fn record_into(&self, rec: &mut Recorder) {
        self.0.record_weights(rec);
    }
}
