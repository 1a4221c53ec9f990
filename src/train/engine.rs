//! Which engine a run gets: the CPU reference or the GPU engine, with the GPU
//! kernel members the run recorded, else the tuner's choice (recorded then).

use crate::config::AdamConfig;
use crate::cpu::engine::CpuEngine;
use crate::data::{Dataset, SplitName};
use crate::engine::{Engine, EngineError, EngineOptions};
use crate::gpu::model::{max_len, GpuEngine, Shape};
use crate::gpu::tune::{self, KernelChoice, TuneEvent, TuneOptions};
use crate::params::ParamStore;

/// The backend a run asks for ("gpu" or "cpu"). A GPU engine uses the kernel
/// members in `run.kernels`; where there are none, it asks the tuner (by
/// `opts.tune`) and records its choice there, so that the config written next
/// carries it.
pub fn make_engine(
    run: &mut super::run::RunConfig,
    params: ParamStore,
    data: &Dataset,
    opts: &EngineOptions,
    on_tune: &mut dyn FnMut(&TuneEvent),
) -> Result<Box<dyn Engine>, EngineError> {
    let adam = AdamConfig { lr: run.train.lr, ..AdamConfig::default() };
    match run.train.backend.as_str() {
        "cpu" => Ok(Box::new(CpuEngine::new(params, data.clone(), adam, run.train.seed))),
        "gpu" => {
            let ctx = crate::gpu::GpuContext::new(&crate::gpu::GpuOptions { adapter: opts.adapter.clone() })?;
            let kernels = match run.kernels {
                Some(k) => k,
                None => {
                    let shape = tune_shape(data, run.train.batch);
                    tune::choose(&ctx, &params.config, shape, &TuneOptions::new(opts.tune), on_tune)?.choice
                }
            };
            run.kernels = Some(kernels);
            let engine = GpuEngine::new(ctx, &params, data, adam, run.train.seed, run.train.batch, &kernels)?;
            Ok(Box::new(engine))
        }
        other => Err(EngineError::Backend(other.to_string())),
    }
}

/// The shape a run's race runs at: the batch, and U the bucket of the median
/// training video (bucketed batches are mostly near it), at most the longest video.
pub fn tune_shape(data: &Dataset, batch: usize) -> Shape {
    let mut lens = data.lens(SplitName::Train);
    lens.sort_unstable();
    let median = lens.get(lens.len() / 2).copied().unwrap_or(1);
    Shape { b: batch.max(1), u: tune::u_bucket(median, max_len(data)) }
}

/// The members a GPU engine would use without a race (tests, `cimnet grads`).
pub fn default_kernels() -> KernelChoice {
    KernelChoice::default()
}
