//! Training a grid's runs: side by side in groups on one device (src/train/group.rs),
//! as many at once as the device's memory budget and `--group N` allow.

use std::path::Path;

use super::super::engine::Device;
use super::super::group::{run_group, GroupLimits, Job};
use super::super::pipeline::{self, EngineSource, PipelineError, ResumeChanges, RunSpec, Start};
use super::super::report::Report;
use super::super::run::{Progress, RunDir, TrainConfig};
use super::super::source::Fingerprint;
use super::{GridSpec, RunKey};
use crate::data::Dataset;

/// Train (or reuse) one run of the grid, its engine from `engine`.
fn one_run(
    spec: &GridSpec,
    data: &(Dataset, Fingerprint),
    out: &Path,
    key: RunKey,
    engine: &mut EngineSource,
    progress: &mut dyn Progress,
) -> Result<Report, PipelineError> {
    let dir = &key.dir(out);
    let rd = RunDir::new(dir);
    if !spec.force {
        if let Ok(text) = std::fs::read_to_string(rd.report_json()) {
            if let Ok(r) = serde_json::from_str::<Report>(&text) {
                progress.message(&format!("{}: finished earlier, reused", dir.display()));
                return Ok(r);
            }
        }
    }
    let (prepared, start) = if rd.config().exists() && !spec.force {
        (pipeline::reopen(dir, &ResumeChanges::default())?, Start::Resume)
    } else {
        let run_spec = RunSpec {
            source: spec.source.clone(),
            modalities: key.set,
            attention: key.attention,
            tasks: Some(key.tasks),
            hidden: spec.hidden,
            dense: spec.dense,
            dropout: spec.dropout,
            train: TrainConfig { seed: key.seed, ..spec.train.clone() },
        };
        (pipeline::prepare(&run_spec, data.0.clone(), data.1.clone())?, Start::New { force: spec.force })
    };
    pipeline::execute_with(prepared, dir, start, progress, engine)
}

/// Train (or reuse) `keys`, side by side in groups (src/train/group.rs) as the
/// device and `spec.group` allow; their reports in the order of `keys`. The
/// first failure stops the group (runs in flight stop at an epoch boundary,
/// resumable) and is returned.
pub fn train_runs(
    spec: &GridSpec,
    data: &(Dataset, Fingerprint),
    out: &Path,
    keys: &[RunKey],
    progress: &mut dyn Progress,
) -> Result<Vec<Report>, PipelineError> {
    let mut device = Device::new(spec.engine.adapter.clone());
    let gpu = match spec.train.backend.as_str() {
        "cpu" => None,
        _ => device.get().ok(),
    };
    let limits = match &gpu {
        Some(ctx) => GroupLimits { width: spec.group.unwrap_or(keys.len()), memory: Some(ctx.profile.group_memory()) },
        None => GroupLimits { width: spec.group.unwrap_or(1), memory: None },
    };
    if let Some(ctx) = &gpu {
        progress.message(&format!(
            "grid: {} runs, up to {} at once on {} (GPU memory budget {} MiB)",
            keys.len(),
            limits.width,
            ctx.describe(),
            ctx.profile.group_memory() >> 20
        ));
    }
    let jobs: Vec<Job<Report>> = keys
        .iter()
        .map(|&key| Job {
            label: format!("{}-{}-{}/seed{}", key.set, key.attention, key.tasks, key.seed),
            work: Box::new(move |engine: &mut EngineSource, progress: &mut dyn Progress| {
                one_run(spec, data, out, key, engine, progress)
            }),
        })
        .collect();
    let (results, stats) = run_group(jobs, limits, &mut device, spec.engine.tune, progress);
    if stats.rounds > 0 {
        progress.message(&format!(
            "grid: {} grouped training steps, up to {} models per step, {} fused GPU engine(s)",
            stats.rounds, stats.widest, stats.engines
        ));
    }
    let mut reports = Vec::with_capacity(keys.len());
    let mut first_error = None;
    for (key, r) in keys.iter().zip(results) {
        match r {
            Some(Ok(rep)) => reports.push(rep),
            Some(Err(e)) => {
                first_error.get_or_insert(e);
            }
            None => {
                first_error.get_or_insert_with(|| {
                    PipelineError::Grid(format!(
                        "{} was not trained: the grid stopped first; rerun the same command to resume",
                        key.dir(out).display()
                    ))
                });
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(reports),
    }
}
