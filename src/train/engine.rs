//! Which engine a run gets: the CPU reference or the GPU engine; "auto" takes
//! the GPU when an adapter exists and falls back to the CPU with a notice.

use crate::config::AdamConfig;
use crate::cpu::engine::CpuEngine;
use crate::data::Dataset;
use crate::engine::{Engine, EngineError, EngineOptions};
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

/// The backend a run asks for ("auto", "gpu" or "cpu").
pub fn choose_engine(
    run: &super::run::RunConfig,
    params: ParamStore,
    data: &Dataset,
    opts: &EngineOptions,
) -> Result<Chosen, EngineError> {
    let adam = AdamConfig { lr: run.train.lr, ..AdamConfig::default() };
    let cpu = |params, notice| Chosen {
        engine: Box::new(CpuEngine::new(params, data.clone(), adam, run.train.seed)),
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
    let engine = crate::gpu::model::GpuEngine::new(ctx, &params, data, adam, run.train.seed, run.train.batch)?;
    Ok(Chosen { engine: Box::new(engine), backend: "gpu", notice: None })
}
