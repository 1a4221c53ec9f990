//! Which engine a run gets: the CPU reference or the GPU engine.

use crate::config::AdamConfig;
use crate::cpu::engine::CpuEngine;
use crate::data::Dataset;
use crate::engine::{Engine, EngineError, EngineOptions};
use crate::params::ParamStore;

/// The backend a run asks for ("gpu" or "cpu").
pub fn make_engine(
    run: &super::run::RunConfig,
    params: ParamStore,
    data: &Dataset,
    opts: &EngineOptions,
) -> Result<Box<dyn Engine>, EngineError> {
    let adam = AdamConfig { lr: run.train.lr, ..AdamConfig::default() };
    match run.train.backend.as_str() {
        "cpu" => Ok(Box::new(CpuEngine::new(params, data.clone(), adam, run.train.seed))),
        "gpu" => {
            let ctx = crate::gpu::GpuContext::new(&crate::gpu::GpuOptions { adapter: opts.adapter.clone() })?;
            Ok(Box::new(crate::gpu::model::GpuEngine::new(ctx, &params, data, adam, run.train.seed, run.train.batch)?))
        }
        other => Err(EngineError::Backend(other.to_string())),
    }
}
