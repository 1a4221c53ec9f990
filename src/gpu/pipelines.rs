//! Compute pipelines cached by (shader, entry point), over the WGSL files of
//! `shaders/` compiled in with `include_str!` behind the shared prelude
//! (src/gpu/wgsl.rs). Each entry point has an explicit
//! bind group layout (group 0, bindings 0..n in the order its launcher lists them),
//! so one bind group per dispatch site can be built once and reused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::context::{GpuContext, GpuError};

/// One WGSL file of `shaders/` (an op family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shader {
    Linear,
    Dropout,
    Adam,
    Gather,
    Heads,
    Gru,
    Attention,
}

impl Shader {
    pub const ALL: [Shader; 7] =
        [Shader::Linear, Shader::Dropout, Shader::Adam, Shader::Gather, Shader::Heads, Shader::Gru, Shader::Attention];

    pub fn name(self) -> &'static str {
        match self {
            Shader::Linear => "linear",
            Shader::Dropout => "dropout",
            Shader::Adam => "adam",
            Shader::Gather => "gather",
            Shader::Heads => "heads",
            Shader::Gru => "gru",
            Shader::Attention => "attention",
        }
    }

    /// The family's body (without the prelude): the file of shaders/, or for a
    /// family generated from Rust (GRU) the generator's output, which is also
    /// committed as its file of shaders/.
    pub fn body(self) -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed(match self {
            Shader::Linear => include_str!("../../shaders/linear.wgsl"),
            Shader::Dropout => include_str!("../../shaders/dropout.wgsl"),
            Shader::Adam => include_str!("../../shaders/adam.wgsl"),
            Shader::Gather => include_str!("../../shaders/gather.wgsl"),
            Shader::Heads => include_str!("../../shaders/heads.wgsl"),
            Shader::Gru => return std::borrow::Cow::Owned(super::gru::wgsl::module_body()),
            Shader::Attention => include_str!("../../shaders/attention.wgsl"),
        })
    }

    /// The module the driver compiles: the shared prelude and the body (src/gpu/wgsl.rs).
    pub fn source(self) -> String {
        super::wgsl::module(&self.body())
    }
}

/// What a binding holds, in binding order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bind {
    /// `var<uniform>`: the kernel's params struct.
    Uniform,
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    Write,
}

/// A compiled entry point and the layout of its bind group.
#[derive(Debug)]
pub struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub binds: Vec<Bind>,
    pub label: String,
}

impl Kernel {
    /// A bind group with `resources[i]` at binding i.
    pub fn bind_group(
        &self,
        ctx: &GpuContext,
        resources: &[wgpu::BindingResource],
    ) -> Result<wgpu::BindGroup, GpuError> {
        if resources.len() != self.binds.len() {
            return Err(GpuError::Validation(format!(
                "{}: {} resources given for {} bindings",
                self.label,
                resources.len(),
                self.binds.len()
            )));
        }
        let entries: Vec<wgpu::BindGroupEntry> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| wgpu::BindGroupEntry { binding: i as u32, resource: r.clone() })
            .collect();
        ctx.scoped(|| {
            ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&self.label),
                layout: &self.layout,
                entries: &entries,
            })
        })
    }
}

/// Pipelines and shader modules, created on first use.
#[derive(Default)]
pub struct PipelineCache {
    modules: Mutex<HashMap<Shader, wgpu::ShaderModule>>,
    kernels: Mutex<HashMap<(Shader, &'static str), Arc<Kernel>>>,
}

impl PipelineCache {
    /// The pipeline of `shader`'s entry point `entry`, whose bindings are `binds`.
    pub fn get(
        &self,
        ctx: &GpuContext,
        shader: Shader,
        entry: &'static str,
        binds: &[Bind],
    ) -> Result<Arc<Kernel>, GpuError> {
        let mut kernels = self.kernels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = kernels.get(&(shader, entry)) {
            if k.binds != binds {
                return Err(GpuError::Validation(format!(
                    "{}: asked with bindings {binds:?}, cached with {:?}",
                    k.label, k.binds
                )));
            }
            return Ok(k.clone());
        }
        let module = {
            let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
            match modules.get(&shader) {
                Some(m) => m.clone(),
                None => {
                    let m = ctx.scoped(|| {
                        ctx.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                            label: Some(shader.name()),
                            source: wgpu::ShaderSource::Wgsl(shader.source().into()),
                        })
                    })?;
                    modules.insert(shader, m.clone());
                    m
                }
            }
        };
        let label = format!("{}.wgsl:{entry}", shader.name());
        let entries: Vec<wgpu::BindGroupLayoutEntry> = binds
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match b {
                    Bind::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Bind::Read | Bind::Write => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: *b == Bind::Read },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let kernel = ctx.scoped(|| {
            let layout = ctx
                .device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(&label), entries: &entries });
            let pl = ctx.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&label),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let pipeline = ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: Some(&pl),
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
            Kernel { pipeline, layout, binds: binds.to_vec(), label: label.clone() }
        })?;
        let kernel = Arc::new(kernel);
        kernels.insert((shader, entry), kernel.clone());
        Ok(kernel)
    }
}

/// One recorded dispatch: a kernel, its bind group and its grid. Launchers build
/// these once (bind groups cached) and record them into any compute pass.
#[derive(Debug)]
pub struct Dispatch {
    pub kernel: Arc<Kernel>,
    pub bind_group: wgpu::BindGroup,
    pub groups: [u32; 3],
}

impl Dispatch {
    pub fn record(&self, rec: &mut Recorder) {
        if self.groups.contains(&0) {
            return;
        }
        rec.pass.set_pipeline(&self.kernel.pipeline);
        rec.pass.set_bind_group(0, &self.bind_group, &[]);
        rec.pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
        rec.dispatches += 1;
    }
}

/// A compute pass that counts the dispatches recorded into it, so a whole
/// training step can be one command buffer and say how many kernels it ran.
pub struct Recorder<'p, 'e> {
    pub pass: &'p mut wgpu::ComputePass<'e>,
    pub dispatches: u32,
}

impl<'p, 'e> Recorder<'p, 'e> {
    pub fn new(pass: &'p mut wgpu::ComputePass<'e>) -> Self {
        Recorder { pass, dispatches: 0 }
    }
}

/// Workgroup grid for `n` one-dimensional items in groups of `size`, folded into
/// y when x would pass the 65535-per-dimension limit. Kernels recover the flat
/// index as `(wg.y * num_wg.x + wg.x) * size + local`.
pub fn grid_1d(n: usize, size: u32) -> [u32; 3] {
    let groups = n.div_ceil(size as usize) as u64;
    const MAX: u64 = 65_535;
    if groups <= MAX {
        [groups as u32, 1, 1]
    } else {
        [MAX as u32, groups.div_ceil(MAX) as u32, 1]
    }
}
