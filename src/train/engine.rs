//! Which engine a run gets: the CPU reference or the GPU engine; "auto" takes
//! the GPU when an adapter exists and falls back to the CPU with a notice. A GPU
//! engine uses the kernel members the run recorded, else the tuner's choice
//! (recorded then).

use std::sync::Arc;

use crate::config::{AdamConfig, ModelConfig};
use crate::cpu::engine::CpuEngine;
use crate::data::{Dataset, SplitName};
use crate::engine::{Engine, EngineError, EngineOptions, TuneMode};
use crate::gpu::model::{max_len, GpuEngine, Shape};
use crate::gpu::tune::{self, KernelChoice, TuneEvent, TuneOptions};
use crate::gpu::{GpuContext, GpuError};
use crate::params::ParamStore;

/// How to get a GPU path where there is none (the notice of the CPU fallback).
pub const GPU_HINT: &str = "for a GPU path on Linux without a GPU driver install Mesa's Vulkan driver \
(`apt-get install mesa-vulkan-drivers libvulkan1`)";

/// The engine a run got, the backend that made it ("gpu" or "cpu"), and a
/// notice for the user when "auto" fell back to the CPU.
pub struct Chosen {
    pub engine: Box<dyn Engine>,
    pub backend: &'static str,
    pub notice: Option<String>,
}

/// The GPU device, opened on first use and then shared (the engines of a group
/// run on one device); remembers that there is none, so it is asked once, and
/// the kernel members chosen for each model and race shape, so that the runs of
/// a group (or a bench) race each shape class once, not once per run.
pub struct Device {
    adapter: Option<String>,
    opened: Option<Result<Arc<GpuContext>, GpuError>>,
    chosen: Vec<(ModelConfig, Shape, KernelChoice)>,
}

impl Device {
    pub fn new(adapter: Option<String>) -> Device {
        Device { adapter, opened: None, chosen: Vec::new() }
    }

    /// The tuner's members for `cfg` at `shape` on `ctx` (a device this one
    /// opened), chosen once per (config, shape) for the life of this value.
    pub fn kernels(
        &mut self,
        ctx: &GpuContext,
        cfg: &ModelConfig,
        shape: Shape,
        opts: &TuneOptions,
        on_tune: &mut dyn FnMut(&TuneEvent),
    ) -> Result<KernelChoice, EngineError> {
        if let Some((_, _, k)) = self.chosen.iter().find(|(c, s, _)| c == cfg && *s == shape) {
            return Ok(*k);
        }
        let k = tune::choose(ctx, cfg, shape, opts, on_tune)?.choice;
        self.chosen.push((cfg.clone(), shape, k));
        Ok(k)
    }

    pub fn get(&mut self) -> Result<Arc<GpuContext>, GpuError> {
        let adapter = self.adapter.clone();
        self.opened
            .get_or_insert_with(|| {
                crate::gpu::GpuContext::new(&crate::gpu::GpuOptions { adapter, ..Default::default() }).map(Arc::new)
            })
            .clone()
    }
}

/// The backend a run asks for ("auto", "gpu" or "cpu"). A GPU engine uses the
/// kernel members in `run.kernels`; where there are none, it asks the tuner (by
/// `opts.tune`) and records its choice there, so that the config written next
/// carries it.
pub fn choose_engine(
    run: &mut super::run::RunConfig,
    params: ParamStore,
    data: &Dataset,
    opts: &EngineOptions,
    on_tune: &mut dyn FnMut(&TuneEvent),
) -> Result<Chosen, EngineError> {
    let mut device = Device::new(opts.adapter.clone());
    let (adam, seed) = (adam_of(run), run.train.seed);
    Ok(match target_on(&mut device, run, &params.config, data, opts.tune, on_tune)? {
        Target::Cpu(notice) => {
            let engine = Box::new(CpuEngine::new(params, data.clone(), adam, seed));
            Chosen { engine, backend: "cpu", notice }
        }
        Target::Gpu(ctx, kernels) => {
            let engine = Box::new(GpuEngine::new(ctx, &params, data, adam, seed, run.train.batch, &kernels)?);
            Chosen { engine, backend: "gpu", notice: None }
        }
    })
}

/// Where a run trains: the CPU reference (with a notice when `auto` found no
/// GPU), or the device with the kernel members recorded in the run's config.
pub enum Target {
    Cpu(Option<String>),
    Gpu(Arc<GpuContext>, KernelChoice),
}

/// The target of `run` on a device that may already be open (shared by a
/// group); a GPU target's members are chosen now (by the tuner where the run
/// has none recorded) and recorded in `run.kernels`.
pub fn target_on(
    device: &mut Device,
    run: &mut super::run::RunConfig,
    cfg: &ModelConfig,
    data: &Dataset,
    tune_mode: TuneMode,
    on_tune: &mut dyn FnMut(&TuneEvent),
) -> Result<Target, EngineError> {
    let backend = run.train.backend.as_str();
    if !["auto", "gpu", "cpu"].contains(&backend) {
        return Err(EngineError::Backend(backend.to_string()));
    }
    if backend == "cpu" {
        return Ok(Target::Cpu(None));
    }
    let ctx = match device.get() {
        Ok(ctx) => ctx,
        Err(GpuError::NoAdapter { requested, .. }) if backend == "auto" => {
            let which = requested.map(|r| format!(" matching '{r}'")).unwrap_or_default();
            let notice =
                format!("note: no GPU adapter{which} found, so training runs on the CPU reference (slow); {GPU_HINT}");
            return Ok(Target::Cpu(Some(notice)));
        }
        Err(e) => return Err(e.into()),
    };
    let kernels = match run.kernels {
        Some(k) => k,
        None => {
            let shape = tune_shape(data, run.train.batch);
            device.kernels(&ctx, cfg, shape, &TuneOptions::new(tune_mode), on_tune)?
        }
    };
    run.kernels = Some(kernels);
    Ok(Target::Gpu(ctx, kernels))
}

/// The Adam settings of a run.
pub fn adam_of(run: &super::run::RunConfig) -> AdamConfig {
    AdamConfig { lr: run.train.lr, ..AdamConfig::default() }
}

/// The shape a run's race runs at: the batch, and U the bucket of the median
/// training video (bucketed batches are mostly near it), at most the longest video.
pub fn tune_shape(data: &Dataset, batch: usize) -> Shape {
    let mut lens = data.lens(SplitName::Train);
    lens.sort_unstable();
    let median = lens.get(lens.len() / 2).copied().unwrap_or(1);
    Shape { b: batch.max(1), u: tune::u_bucket(median, max_len(data)) }
}
