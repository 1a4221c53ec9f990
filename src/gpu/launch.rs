//! A launch: one kernel bound to its buffers with its params struct in a uniform
//! buffer, recordable into any compute pass any number of times. Built once per
//! dispatch site (bind group cached); `update` rewrites the params (e.g. a new
//! batch's U) without rebuilding anything.

use std::sync::Arc;

use super::buffers;
use super::context::{GpuContext, GpuError};
use super::pipelines::{Dispatch, Kernel, Recorder};

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
        let uniform = buffers::uniform(ctx, &format!("{} params", kernel.label), &params);
        let mut res = vec![uniform.as_entire_binding()];
        res.extend(buffers.iter().map(|b| b.as_entire_binding()));
        let bind_group = kernel.bind_group(ctx, &res)?;
        let groups = grid(&params);
        Ok(Launch { params, uniform, dispatch: Dispatch { kernel, bind_group, groups }, grid })
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

/// Record `launches` into one compute pass of a new encoder, submit, wait; returns
/// the number of dispatches (tests and benchmarks).
pub fn run(ctx: &GpuContext, launches: &[&dyn Recordable]) -> Result<u32, GpuError> {
    let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("cimnet run") });
    let n = {
        let mut pass =
            enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("cimnet run"), timestamp_writes: None });
        let mut rec = Recorder::new(&mut pass);
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
