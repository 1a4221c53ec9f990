//! Which engine a run gets: the CPU reference or the GPU engine; "auto" takes
//! the GPU when an adapter exists and falls back to the CPU with a notice. A GPU
//! engine uses the kernel members the run recorded, else the tuner's choice
//! (recorded then).

use crate::config::AdamConfig;
use crate::cpu::engine::CpuEngine;
use crate::data::{Dataset, SplitName};
use crate::engine::{Engine, EngineError, EngineOptions};
use crate::gpu::model::{max_len, GpuEngine, Shape};
use crate::gpu::tune::{self, TuneEvent, TuneOptions};
use crate::gpu::GpuError;
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
    let adam = AdamConfig { lr: run.train.lr, ..AdamConfig::default() };
    let seed = run.train.seed;
    let cpu = |params, notice| Chosen {
        engine: Box::new(CpuEngine::new(params, data.clone(), adam, seed)),
        backend: "cpu",
        notice,
    };
    let backend = run.train.backend.as_str();
    if !["auto", "gpu", "cpu"].contains(&backend) {
        return Err(EngineError::Backend(backend.to_string()));
    }
    if backend == "cpu" {
        return Ok(cpu(params, None));
    }
    let ctx = match crate::gpu::GpuContext::new(&crate::gpu::GpuOptions { adapter: opts.adapter.clone() }) {
        Ok(ctx) => ctx,
        Err(GpuError::NoAdapter { requested, .. }) if backend == "auto" => {
            let which = requested.map(|r| format!(" matching '{r}'")).unwrap_or_default();
            let notice =
                format!("note: no GPU adapter{which} found, so training runs on the CPU reference (slow); {GPU_HINT}");
            return Ok(cpu(params, Some(notice)));
        }
        Err(e) => return Err(e.into()),
    };
    let kernels = match run.kernels {
        Some(k) => k,
        None => {
            let shape = tune_shape(data, run.train.batch);
            tune::choose(&ctx, &params.config, shape, &TuneOptions::new(opts.tune), on_tune)?.choice
        }
    };
    run.kernels = Some(kernels);
    let engine = GpuEngine::new(ctx, &params, data, adam, run.train.seed, run.train.batch, &kernels)?;
    Ok(Chosen { engine: Box::new(engine), backend: "gpu", notice: None })
}

/// The shape a run's race runs at: the batch, and U the bucket of the median
/// training video (bucketed batches are mostly near it), at most the longest video.
pub fn tune_shape(data: &Dataset, batch: usize) -> Shape {
    let mut lens = data.lens(SplitName::Train);
    lens.sort_unstable();
    let median = lens.get(lens.len() / 2).copied().unwrap_or(1);
    Shape { b: batch.max(1), u: tune::u_bucket(median, max_len(data)) }
}
