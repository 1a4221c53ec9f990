//! `cimnet bench`: end-to-end training throughput of the GPU engine on a
//! dataset (by default the MOSEI-shaped synthetic set), inference time for the
//! test split, dispatches per training step, padding efficiency, the adapter,
//! and the CPU reference's throughput for comparison. Every time is measured
//! with a full wait for the GPU (the epoch ends with the loss readback).

pub mod models;

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::AdamConfig;
use crate::config::{Attention, ModelConfig};
use crate::cpu::engine::CpuEngine;
use crate::data::{make_batches, padding_efficiency, BatchMode, Dataset, SplitName};
use crate::engine::{Engine, EngineError};
use crate::gpu::model::{GpuEngine, StepProfile};
use crate::gpu::tune::{ChoiceSource, TuneEvent, TuneOptions, Tuned};
use crate::gpu::{GpuContext, GpuOptions};
use crate::params::ParamStore;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub adapter: String,
    pub data: String,
    pub variant: String,
    pub batch: usize,
    pub train_videos: usize,
    pub train_utterances: usize,
    pub steps_per_epoch: usize,
    /// Real utterance slots / padded slots of the bucketed training batches.
    pub padding_efficiency: f64,
    pub dispatches_per_step: u32,
    /// Wall seconds of each timed training epoch (full wait at the end).
    pub epoch_seconds: Vec<f64>,
    pub best_epoch_seconds: f64,
    pub utterances_per_second: f64,
    /// Forward-only pass over the test split, seconds.
    pub inference_test_seconds: f64,
    /// Estimated floating-point operations of one epoch (forward + backward).
    pub flops_per_epoch: f64,
    pub achieved_gflops: f64,
    /// Sequential floor: GRU time steps in one epoch (sum over batches of U).
    pub gru_steps_per_epoch: usize,
    /// The CPU reference (f64) on the first `cpu_batches` batches, extrapolated.
    pub cpu_reference: Option<CpuReference>,
    /// The kernel members the GPU engine ran with and the race that chose them.
    pub kernels: Tuned,
    /// Where a training step's time goes, site by site, at the median batch.
    #[serde(default)]
    pub step_profile: Option<StepProfile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuReference {
    pub batches: usize,
    pub utterances: usize,
    pub seconds: f64,
    pub utterances_per_second: f64,
    pub estimated_epoch_seconds: f64,
}

/// Forward + backward FLOPs of one real utterance (multiply-add = 2), ignoring
/// the O(u) attention terms, which `attention_flops` adds per video.
pub fn flops_per_utterance(cfg: &ModelConfig) -> f64 {
    let (h, d) = (cfg.hidden as f64, cfg.dense as f64);
    let mut f = 0.0;
    for m in cfg.modalities.modalities() {
        let k = cfg.dim(m) as f64;
        f += 2.0 * (2.0 * 3.0 * h * k + 2.0 * 3.0 * h * h); // both directions: input projection + recurrence
        f += 2.0 * 2.0 * h * d; // dense
    }
    let heads = if cfg.tasks.has_sentiment() { 2.0 } else { 0.0 } + if cfg.tasks.has_emotion() { 7.0 } else { 0.0 };
    f += 2.0 * heads * cfg.repr_width() as f64;
    3.0 * f // backward ~ twice the forward (activation and weight gradients)
}

/// Attention FLOPs of a video of u utterances (forward + backward).
pub fn attention_flops(cfg: &ModelConfig, u: usize) -> f64 {
    let blocks = cfg.representation().iter().filter(|b| matches!(b, crate::config::Block::Att(..))).count() as f64;
    let (u, d) = (u as f64, cfg.dense as f64);
    if cfg.attention == Attention::None {
        return 0.0;
    }
    3.0 * blocks * (2.0 * u * u * d + 2.0 * u * u * d + u * d)
}

/// Train `epochs` timed epochs on the GPU from `params`, then time inference on
/// test; measure the CPU reference on `cpu_batches` batches (0: skip).
// The bench's knobs are independent inputs; a struct for them would only be unpacked here.
#[allow(clippy::too_many_arguments)]
pub fn run(
    data: &Dataset,
    params: &ParamStore,
    batch: usize,
    epochs: usize,
    cpu_batches: usize,
    opts: &GpuOptions,
    tune: &TuneOptions,
    on_tune: &mut dyn FnMut(&TuneEvent),
) -> Result<BenchReport, EngineError> {
    let cfg = &params.config;
    let lens = data.lens(SplitName::Train);
    let first = make_batches(&lens, batch, BatchMode::Bucketed, 1);
    let ctx = GpuContext::new(opts)?;
    let adapter = ctx.describe();
    let shape = crate::train::engine::tune_shape(data, batch);
    let kernels = crate::gpu::tune::choose(&ctx, cfg, shape, tune, on_tune)?;
    let mut eng = GpuEngine::new(ctx, params, data, AdamConfig::default(), 1, batch, &kernels.choice)?;
    // One untimed step first (warm-up, as benchmarks of GPU code do: a driver
    // may finish compiling a pipeline at its first dispatch), not counted.
    if let Some(videos) = first.first() {
        eng.train_step(videos, 0)?;
        eng.take_train_loss()?;
    }
    let mut epoch_seconds = Vec::new();
    let mut step = 1u64;
    let mut dispatches = 0;
    for e in 0..epochs.max(1) {
        let batches = make_batches(&lens, batch, BatchMode::Bucketed, 1 + e as u64);
        let t0 = Instant::now();
        for videos in &batches {
            eng.train_step(videos, step)?;
            step += 1;
        }
        eng.take_train_loss()?; // reads back: waits for the whole epoch
        epoch_seconds.push(t0.elapsed().as_secs_f64());
        dispatches = eng.dispatches_per_step();
    }
    let test_batches = make_batches(&data.lens(SplitName::Test), batch, BatchMode::Bucketed, 0);
    let t0 = Instant::now();
    eng.predict(SplitName::Test, &test_batches)?;
    let inference_test_seconds = t0.elapsed().as_secs_f64();
    let step_profile = match median_batch(&first, &lens) {
        Some(videos) => Some(eng.profile_step(videos, step, PROFILE_REPS)?),
        None => None,
    };

    let utts: usize = lens.iter().sum();
    let best = epoch_seconds.iter().cloned().fold(f64::INFINITY, f64::min);
    let flops: f64 =
        flops_per_utterance(cfg) * utts as f64 + lens.iter().map(|&l| attention_flops(cfg, l)).sum::<f64>();
    let gru_steps: usize = first.iter().map(|b| b.iter().map(|&v| lens[v]).max().unwrap_or(0)).sum();

    let cpu_reference = if cpu_batches > 0 {
        let mut cpu = CpuEngine::new(params.clone(), data.clone(), AdamConfig::default(), 1);
        let take: Vec<&Vec<usize>> = first.iter().take(cpu_batches).collect();
        let n: usize = take.iter().map(|b| b.iter().map(|&v| lens[v]).sum::<usize>()).sum();
        let t0 = Instant::now();
        for (k, videos) in take.iter().enumerate() {
            cpu.train_step(videos, k as u64)?;
        }
        let s = t0.elapsed().as_secs_f64();
        let rate = n as f64 / s.max(1e-9);
        Some(CpuReference {
            batches: take.len(),
            utterances: n,
            seconds: s,
            utterances_per_second: rate,
            estimated_epoch_seconds: utts as f64 / rate,
        })
    } else {
        None
    };
    Ok(BenchReport {
        adapter,
        data: data.source.clone(),
        variant: format!("{}/{}/{} H {} D {}", cfg.modalities, cfg.attention, cfg.tasks, cfg.hidden, cfg.dense),
        batch,
        train_videos: lens.len(),
        train_utterances: utts,
        steps_per_epoch: first.len(),
        padding_efficiency: padding_efficiency(&lens, &first),
        dispatches_per_step: dispatches,
        epoch_seconds,
        best_epoch_seconds: best,
        utterances_per_second: utts as f64 / best,
        inference_test_seconds,
        flops_per_epoch: flops,
        achieved_gflops: flops / best / 1e9,
        gru_steps_per_epoch: gru_steps,
        cpu_reference,
        kernels,
        step_profile,
    })
}

/// Timed runs of each site in the step profile.
const PROFILE_REPS: usize = 3;

/// The batch of median longest video among the full ones (all of them when
/// none is full): the step the profile times.
fn median_batch<'a>(batches: &'a [Vec<usize>], lens: &[usize]) -> Option<&'a [usize]> {
    let b = batches.iter().map(Vec::len).max()?;
    let mut full: Vec<&Vec<usize>> = batches.iter().filter(|v| v.len() == b).collect();
    let longest = |v: &Vec<usize>| v.iter().map(|&i| lens[i]).max().unwrap_or(0);
    full.sort_by_key(|v| longest(v));
    full.get(full.len() / 2).map(|v| v.as_slice())
}

impl BenchReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "| quantity | value |\n|---|---|\n| adapter | {} |\n| data | {} |\n| model | {} |\n| batch | {} videos |\n\
             | train split | {} videos, {} utterances, {} steps |\n| padding efficiency (bucketed) | {:.3} |\n\
             | dispatches per training step | {} |\n| seconds per epoch (best of {}) | {:.3} |\n| utterances per second | {:.0} |\n\
             | inference, test split | {:.3} s |\n| FLOPs per epoch (estimate) | {:.2e} |\n| achieved | {:.2} GFLOP/s |\n\
             | GRU steps per epoch (sequential floor) | {} |\n",
            self.adapter,
            self.data,
            self.variant,
            self.batch,
            self.train_videos,
            self.train_utterances,
            self.steps_per_epoch,
            self.padding_efficiency,
            self.dispatches_per_step,
            self.epoch_seconds.len(),
            self.best_epoch_seconds,
            self.utterances_per_second,
            self.inference_test_seconds,
            self.flops_per_epoch,
            self.achieved_gflops,
            self.gru_steps_per_epoch
        );
        if let Some(c) = &self.cpu_reference {
            s.push_str(&format!(
                "| CPU reference (f64, {} batches, {} utterances) | {:.0} utterances/s, about {:.0} s per epoch |\n",
                c.batches, c.utterances, c.utterances_per_second, c.estimated_epoch_seconds
            ));
        }
        s.push_str(&self.kernels_markdown());
        if let Some(p) = &self.step_profile {
            s.push_str(&p.markdown());
        }
        s
    }

    /// The race per family (member, time, winner) and the members used.
    pub fn kernels_markdown(&self) -> String {
        let k = &self.kernels;
        let mut s = String::from("\n| kernel site | member used |\n|---|---|\n");
        for (site, member) in k.choice.members() {
            s.push_str(&format!("| {site} | {member} |\n"));
        }
        let Some(r) = &k.race else {
            s.push_str("\nmembers: each family's default (--tune off); no race\n");
            return s;
        };
        let from = if k.source == ChoiceSource::Cached { "cached race" } else { "race" };
        s.push_str(&format!(
            "\n{from} at {} ({} timing, {:.1} s{}):\n\n| site | member | ms | winner |\n|---|---|---|---|\n",
            r.shape,
            r.method,
            r.seconds,
            if r.complete { "" } else { ", budget ran out: untimed members lost" }
        ));
        for e in &r.entries {
            let ms = e.ms.map_or_else(|| e.skipped.clone().unwrap_or("-".into()), |t| format!("{t:.3}"));
            s.push_str(&format!("| {} | {} | {ms} | {} |\n", e.site, e.member, if e.winner { "*" } else { "" }));
        }
        s
    }
}
