//! `cimnet bench --models K,...`: K models trained side by side on one device, as
//! `cimnet grid` groups them: the paper's Table 4 variants (7 modality sets x 3
//! task setups, cim attention) cycled, each variant again with the next seed
//! after 21. For each K the same steps are timed twice in one run, side by side:
//! grouped (all K models, of every seed, fused into one engine,
//! `GpuEngine::new_group`, every launch covering all of them, each model on its
//! own batch, `gpu::model::train_steps`; split in halves where the device
//! refuses one engine's buffers) and one by one (an engine and a submit per model
//! and step, as `--group 1` trains), with the same kernel members. Each timing
//! ends with a full wait (every model's loss read back). Reported: seconds per
//! step of all K models, model-epochs per second, dispatches per step and
//! invocations per dispatch of the grouped step (the parallelism a GPU is
//! offered), and the GPU memory each way holds.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::{AdamConfig, Attention, ModalitySet, ModelConfig, Tasks};
use crate::data::{make_batches, BatchMode, Dataset, SplitName};
use crate::engine::{Engine, EngineError};
use crate::gpu::model::{train_steps, GpuEngine, ModelStep};
use crate::gpu::tune::{TuneEvent, TuneOptions};
use crate::gpu::GpuOptions;
use crate::params::ParamStore;
use crate::train::engine::Device;

#[derive(Debug, thiserror::Error)]
pub enum ModelsBenchError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl From<crate::gpu::GpuError> for ModelsBenchError {
    fn from(e: crate::gpu::GpuError) -> Self {
        ModelsBenchError::Engine(e.into())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelsBench {
    pub adapter: String,
    pub data: String,
    pub batch: usize,
    pub hidden: usize,
    pub dense: usize,
    /// Training steps timed per model, each way (in two passes; the faster counts).
    pub steps: usize,
    pub steps_per_epoch: usize,
    pub rows: Vec<ModelsRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelsRow {
    pub models: usize,
    /// Seconds for one training step of every model, grouped (one submit).
    pub grouped_step_seconds: f64,
    /// The same steps one model per submit.
    pub one_by_one_step_seconds: f64,
    /// one_by_one / grouped (above 1: grouping is faster).
    pub speedup: f64,
    pub model_epochs_per_second: f64,
    /// Fused engines of the grouped step (one unless the device's buffer limits split it).
    pub engines: usize,
    /// Grouped: dispatches of one step of all K models, and their mean invocations.
    pub dispatches_per_step: u64,
    pub invocations_per_dispatch: f64,
    /// One by one: the same, summed over the K engines.
    pub one_by_one_dispatches_per_step: u64,
    pub gpu_bytes: u64,
    pub one_by_one_gpu_bytes: u64,
}

/// The k-th model of a bench group: Table 4's variants in order, then again with the next seed.
pub fn table4_variant(k: usize, emotions: bool) -> (ModalitySet, Tasks, u64) {
    let tasks: &[Tasks] = if emotions { &[Tasks::Sentiment, Tasks::Emotion, Tasks::Mtl] } else { &[Tasks::Sentiment] };
    let per_set = tasks.len();
    let n = ModalitySet::ALL.len() * per_set;
    let v = k % n;
    (ModalitySet::ALL[v / per_set], tasks[v % per_set], 1 + (k / n) as u64)
}

/// Time `steps` training steps of K models, grouped and one by one, for each K in `models`.
// The bench's knobs are independent inputs; a struct for them would only be unpacked here.
#[allow(clippy::too_many_arguments)]
pub fn run(
    data: &Dataset,
    models: &[usize],
    batch: usize,
    hidden: usize,
    dense: usize,
    steps: usize,
    opts: &GpuOptions,
    tune_opts: &TuneOptions,
    on_tune: &mut dyn FnMut(&TuneEvent),
) -> Result<ModelsBench, ModelsBenchError> {
    let mut device = Device::new(opts.adapter.clone());
    let ctx = device.get()?;
    let lens = data.lens(SplitName::Train);
    let steps_per_epoch = make_batches(&lens, batch, BatchMode::Bucketed, 0).len();
    let shape = crate::train::engine::tune_shape(data, batch);
    let mut rows = Vec::new();
    for &k in models {
        // Per model: its params, seed and batch order; per seed: the members.
        let mut made = Vec::with_capacity(k);
        let mut orders = Vec::with_capacity(k);
        for i in 0..k {
            let (set, tasks, seed) = table4_variant(i, data.has_emotion);
            let mut cfg = ModelConfig::new(set, Attention::Cim, tasks, data.dims);
            cfg.hidden = hidden;
            cfg.dense = dense;
            cfg.validate()?;
            made.push((ParamStore::init(&cfg, seed), seed));
            orders.push(make_batches(&lens, batch, BatchMode::Bucketed, seed));
        }
        // Every model runs the members raced for the richest one (most modalities,
        // then attention pairs: valid for every smaller model), both ways, as a grid's cohort does.
        let richest = (0..k)
            .max_by_key(|&i| {
                let c = &made[i].0.config;
                (c.modalities.modalities().len(), c.attention_pairs().len(), std::cmp::Reverse(i))
            })
            .unwrap_or(0);
        let kernels = device.kernels(&ctx, &made[richest].0.config, shape, tune_opts, on_tune)?;
        let members: Vec<(&ParamStore, AdamConfig, u64)> =
            made.iter().map(|(p, seed)| (p, AdamConfig::default(), *seed)).collect();
        let ids: Vec<usize> = (0..k).collect();
        let mut fused = fuse(&ctx, &members, &ids, data, batch, &kernels)?;
        let mut alone = Vec::with_capacity(k);
        for (p, seed) in &made {
            alone.push(GpuEngine::new(ctx.clone(), p, data, AdamConfig::default(), *seed, batch, &kernels)?);
        }
        // Model i's videos at step s (its seed's batch order).
        let videos = |i: usize, s: usize| orders[i][s % orders[i].len()].as_slice();
        let grouped_step = |fused: &mut [(GpuEngine, Vec<usize>)], s: usize| -> Result<(), EngineError> {
            let lists: Vec<Vec<ModelStep>> = fused
                .iter()
                .map(|(_, of)| {
                    of.iter()
                        .enumerate()
                        .map(|(model, &i)| ModelStep { model, videos: videos(i, s), step: s as u64 })
                        .collect()
                })
                .collect();
            let mut group: Vec<(&mut GpuEngine, &[ModelStep])> =
                fused.iter_mut().zip(&lists).map(|((e, _), l)| (e, l.as_slice())).collect();
            train_steps(&mut group)
        };
        // Warm-up (pipelines, first-use allocations) both ways.
        grouped_step(&mut fused, 0)?;
        wait(fused.iter_mut().map(|f| &mut f.0))?;
        for (i, e) in alone.iter_mut().enumerate() {
            e.train_step(videos(i, 0), 0)?;
        }
        wait(&mut alone)?;
        // The same batches both ways (a step's cost follows its batch's U), twice
        // each way in turn; the faster pass of each way counts.
        let (mut grouped, mut one_by_one) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..2 {
            let t0 = Instant::now();
            for s in 1..=steps {
                grouped_step(&mut fused, s)?;
            }
            wait(fused.iter_mut().map(|f| &mut f.0))?;
            grouped = grouped.min(t0.elapsed().as_secs_f64() / steps as f64);
            let t0 = Instant::now();
            for s in 1..=steps {
                for (i, e) in alone.iter_mut().enumerate() {
                    e.train_step(videos(i, s), s as u64)?;
                }
            }
            wait(&mut alone)?;
            one_by_one = one_by_one.min(t0.elapsed().as_secs_f64() / steps as f64);
        }
        let dispatches: u64 = fused.iter().map(|(e, _)| u64::from(e.dispatches_per_step())).sum();
        let invocations: u64 = fused.iter().map(|(e, _)| e.invocations_per_step()).sum();
        rows.push(ModelsRow {
            models: k,
            grouped_step_seconds: grouped,
            one_by_one_step_seconds: one_by_one,
            speedup: one_by_one / grouped.max(1e-12),
            model_epochs_per_second: k as f64 / (grouped * steps_per_epoch as f64).max(1e-12),
            engines: fused.len(),
            dispatches_per_step: dispatches,
            invocations_per_dispatch: invocations as f64 / dispatches.max(1) as f64,
            one_by_one_dispatches_per_step: alone.iter().map(|e| u64::from(e.dispatches_per_step())).sum(),
            gpu_bytes: fused.iter().map(|(e, _)| e.bytes()).sum(),
            one_by_one_gpu_bytes: alone.iter().map(GpuEngine::bytes).sum(),
        });
    }
    Ok(ModelsBench {
        adapter: ctx.describe(),
        data: data.source.clone(),
        batch,
        hidden,
        dense,
        steps,
        steps_per_epoch,
        rows,
    })
}

/// One engine for the models `ids` of `members`, or, where the device refuses
/// it (a buffer past its limits), engines for the halves, as a grid's cohort
/// splits; each with the models it holds.
fn fuse(
    ctx: &std::sync::Arc<crate::gpu::GpuContext>,
    members: &[(&ParamStore, AdamConfig, u64)],
    ids: &[usize],
    data: &Dataset,
    batch: usize,
    kernels: &crate::gpu::tune::KernelChoice,
) -> Result<Vec<(GpuEngine, Vec<usize>)>, EngineError> {
    let these: Vec<_> = ids.iter().map(|&i| members[i]).collect();
    match GpuEngine::new_group(ctx.clone(), &these, data, batch, kernels) {
        Ok(e) => Ok(vec![(e, ids.to_vec())]),
        Err(_) if ids.len() > 1 => {
            let (a, b) = ids.split_at(ids.len() / 2);
            let mut out = fuse(ctx, members, a, data, batch, kernels)?;
            out.extend(fuse(ctx, members, b, data, batch, kernels)?);
            Ok(out)
        }
        Err(e) => Err(e),
    }
}

/// Full wait: every model's loss read back (each read waits for its submits).
fn wait<'a>(engines: impl IntoIterator<Item = &'a mut GpuEngine>) -> Result<(), EngineError> {
    for e in engines {
        for k in 0..e.models() {
            e.take_train_loss_of(k)?;
        }
    }
    Ok(())
}

impl ModelsBench {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "{} on {}; batch {}, H {}, D {}; {} steps per model timed each way ({} steps per epoch)\n\n\
             | models | engines | grouped s/step | one-by-one s/step | speedup | model-epochs/s | dispatches/step grouped | one by one | invocations/dispatch | GPU MiB grouped | one by one |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n",
            self.data, self.adapter, self.batch, self.hidden, self.dense, self.steps, self.steps_per_epoch
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {:.3} | {:.3} | {:.2}x | {:.4} | {} | {} | {:.0} | {:.0} | {:.0} |\n",
                r.models,
                r.engines,
                r.grouped_step_seconds,
                r.one_by_one_step_seconds,
                r.speedup,
                r.model_epochs_per_second,
                r.dispatches_per_step,
                r.one_by_one_dispatches_per_step,
                r.invocations_per_dispatch,
                r.gpu_bytes as f64 / (1 << 20) as f64,
                r.one_by_one_gpu_bytes as f64 / (1 << 20) as f64
            ));
        }
        s
    }
}
