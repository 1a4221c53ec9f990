//! A launch: one kernel bound to its buffers with its params struct in a uniform
//! buffer, recordable into any compute pass any number of times. Built once per
//! dispatch site (bind group cached); `update` rewrites the params (e.g. a new
//! batch's U) without rebuilding anything.

use std::sync::Arc;

use super::buffers;
use super::context::{GpuContext, GpuError};
use super::pipelines::{Bind, Dispatch, Kernel, Recorder};

pub struct Launch<P: bytemuck::Pod> {
    pub params: P,
    uniform: wgpu::Buffer,
    dispatch: Dispatch,
    grid: fn(&P) -> [u32; 3],
}

impl<P: bytemuck::Pod> Launch<P> {
    /// `buffers` are bound at 1..=n after the params uniform at binding 0.
    pub fn new(
        ctx: &GpuContext,
        kernel: Arc<Kernel>,
        buffers: &[&wgpu::Buffer],
        params: P,
        grid: fn(&P) -> [u32; 3],
    ) -> Result<Launch<P>, GpuError> {
        let res: Vec<wgpu::BindingResource> = buffers.iter().map(|b| b.as_entire_binding()).collect();
        Self::with_resources(ctx, kernel, &res, params, grid)
    }

    /// `resources` (buffers, texture views) bound at 1..=n after the params uniform at binding 0.
    pub fn with_resources(
        ctx: &GpuContext,
        kernel: Arc<Kernel>,
        resources: &[wgpu::BindingResource],
        params: P,
        grid: fn(&P) -> [u32; 3],
    ) -> Result<Launch<P>, GpuError> {
        let uniform = buffers::uniform(ctx, &format!("{} params", kernel.label), &params);
        let mut res = vec![uniform.as_entire_binding()];
        res.extend(resources.iter().cloned());
        let bind_group = kernel.bind_group(ctx, &res)?;
        let groups = grid(&params);
        let writes = (kernel.binds.iter().zip(&res))
            .filter_map(|(b, r)| match (b, r) {
                (Bind::Write, wgpu::BindingResource::Buffer(bb)) => Some(bb.buffer.clone()),
                _ => None,
            })
            .collect();
        Ok(Launch { params, uniform, dispatch: Dispatch { kernel, bind_group, groups, writes }, grid })
    }

    /// New params for the next submit (takes effect for every recording of this
    /// launch in that submit: use one launch per dispatch site).
    pub fn update(&mut self, ctx: &GpuContext, params: P) {
        self.params = params;
        ctx.queue.write_buffer(&self.uniform, 0, bytemuck::bytes_of(&params));
        self.dispatch.groups = (self.grid)(&params);
    }

    pub fn record(&self, rec: &mut Recorder) {
        self.dispatch.record(rec);
    }

    pub fn groups(&self) -> [u32; 3] {
        self.dispatch.groups
    }

    pub fn label(&self) -> &str {
        &self.dispatch.kernel.label
    }
}

/// Record `launches` into a new encoder, submit, wait; returns the number of
/// dispatches (tests and benchmarks).
pub fn run(ctx: &GpuContext, launches: &[&dyn Recordable]) -> Result<u32, GpuError> {
    let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("cimnet run") });
    let n = {
        let mut rec = Recorder::new(&mut enc, "cimnet run");
        for l in launches {
            l.record_into(&mut rec);
        }
        rec.dispatches
    };
    buffers::submit_and_wait(ctx, enc)?;
    Ok(n)
}

/// Anything that records dispatches (a launch, or a group of them).
pub trait Recordable {
    fn record_into(&self, rec: &mut Recorder);
}

impl<P: bytemuck::Pod> Recordable for Launch<P> {
    fn record_into(&self, rec: &mut Recorder) {
        self.record(rec);
    }
}

/// A launch's problems as a list in a storage buffer (CUTLASS's grouped-GEMM
/// problem list): one entry per problem, holding whatever may differ between the
/// problems of one launch (offsets into the bound buffers, per-problem widths,
/// dropout streams, loss slots). Shared scalars (B, U, the dims) stay in the
/// launch's uniform. A launch built for `capacity` problems takes any 1..=capacity
/// at `write`, so one dispatch covers every model of a group at a site.
pub struct ProblemList<Q: bytemuck::Pod> {
    pub buffer: wgpu::Buffer,
    capacity: usize,
    len: usize,
    _entry: std::marker::PhantomData<Q>,
}

impl<Q: bytemuck::Pod> ProblemList<Q> {
    /// A list with room for `capacity` entries (at least `items.len()`), holding `items`.
    pub fn new(ctx: &GpuContext, label: &str, items: &[Q], capacity: usize) -> Result<ProblemList<Q>, GpuError> {
        let capacity = capacity.max(items.len()).max(1);
        let buffer = buffers::storage::<Q>(ctx, &format!("{label} problem list"), capacity)?;
        let mut list = ProblemList { buffer, capacity, len: 0, _entry: std::marker::PhantomData };
        list.write(ctx, items)?;
        Ok(list)
    }

    /// A list whose entries are the launch's grid z (one workgroup layer per
    /// entry), so `capacity` may not pass the device's workgroups along z.
    pub fn along_z(ctx: &GpuContext, label: &str, items: &[Q], capacity: usize) -> Result<ProblemList<Q>, GpuError> {
        let max_z = ctx.profile.limits.max_compute_workgroups_per_dimension as usize;
        let n = capacity.max(items.len());
        if n > max_z {
            return Err(GpuError::Validation(format!(
                "{label}: {n} problems in one launch, more than the device's {max_z} workgroups along grid z"
            )));
        }
        ProblemList::new(ctx, label, items, capacity)
    }

    /// Replace the entries (takes effect at the next submit, like a uniform write).
    pub fn write(&mut self, ctx: &GpuContext, items: &[Q]) -> Result<(), GpuError> {
        if items.is_empty() || items.len() > self.capacity {
            return Err(GpuError::Validation(format!(
                "a problem list built for 1..={} entries was given {}",
                self.capacity,
                items.len()
            )));
        }
        ctx.queue.write_buffer(&self.buffer, 0, bytemuck::cast_slice(items));
        self.len = items.len();
        Ok(())
    }

    /// Entries written last.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a list holds at least one entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Problem `index` of launch `launch` takes its own batch of the launch's B videos:
/// `1 <= u <= u_max` (the launch's U) and its lengths `len[len_off..len_off + b]`
/// inside the bound length buffer of `len_elems` entries; else which problem and why.
pub fn check_batch(
    launch: &str,
    index: usize,
    (u, len_off): (u32, u32),
    (b, u_max): (u32, u32),
    len_elems: u64,
) -> Result<(), GpuError> {
    let why = if u == 0 || u > u_max {
        format!("has u = {u}, outside 1..={u_max} (the launch's U)")
    } else if u64::from(len_off) + u64::from(b) > len_elems {
        format!("has its {b} lengths at {len_off}, past the {len_elems} of the length buffer")
    } else {
        return Ok(());
    };
    Err(GpuError::BadProblem { launch: launch.to_string(), problem: index, why })
}
