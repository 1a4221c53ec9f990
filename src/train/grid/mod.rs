//! `cimnet grid`: the paper's Table 4 — every modality set, single-task vs
//! multi-task (attention kinds optional), each cell trained with every seed;
//! mean +/- std per cell and a paired t-test of multi-task against single-task.
//! Finished runs (report.json present) are never rerun; interrupted ones resume.
//! With `--test-curve` the report adds the same table under the published
//! protocol (per metric, the best test value over the epochs; optimistic).
//!
//! A grid is a fixed list of runs (`grid_runs`); `--shard I/N` trains the I-th
//! round-robin slice of it into its own directory, and `merge` builds the one
//! report from the N finished shard directories (merge.rs).

mod identity;
mod merge;
mod report;
mod train;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use identity::{marker_path, read_marker, GridConfig, GridMarker, Shard};
pub use merge::merge;
pub use report::{
    build_report, grid_markdown, paired_t, Cell, CellTime, Comparison, FinishedRun, GridReport, GridTiming, PairedT,
    RunTime, ShardTime, Stat,
};
pub use train::train_runs;

use super::pipeline::PipelineError;
use super::run::{Progress, RunDir, TrainConfig};
use super::source::DataSource;
use crate::config::{Attention, ModalitySet, Tasks};

#[derive(Debug, Clone)]
pub struct GridSpec {
    pub source: DataSource,
    pub sets: Vec<ModalitySet>,
    pub attentions: Vec<Attention>,
    /// Seeds 1..=seeds.
    pub seeds: u64,
    pub hidden: usize,
    pub dense: usize,
    pub dropout: f64,
    pub train: TrainConfig,
    pub engine: crate::engine::EngineOptions,
    /// Train only this slice of the grid's runs (None: all of them, and write the report).
    pub shard: Option<Shard>,
    /// Start afresh: replace the runs already in the grid directory.
    pub force: bool,
    /// At most this many runs train at once (`--group N`; 1 = one by one).
    /// None: on a GPU as many as fit in its memory budget, on the CPU one.
    pub group: Option<usize>,
}

impl GridSpec {
    /// What makes this grid the grid it is (recorded in grid.json).
    pub fn config(&self) -> GridConfig {
        GridConfig::new(&self.sets, &self.attentions, self.seeds, (self.hidden, self.dense, self.dropout), &self.train)
    }
}

/// One run of the grid: a cell's variant and task setup, and a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunKey {
    pub set: ModalitySet,
    pub attention: Attention,
    pub tasks: Tasks,
    pub seed: u64,
}

impl RunKey {
    /// The run's directory inside the grid directory, e.g. "T-cim-mtl/seed1".
    pub fn name(&self) -> String {
        format!("{}-{}-{}/seed{}", self.set, self.attention, self.tasks, self.seed)
    }

    pub fn dir(&self, out: &Path) -> PathBuf {
        out.join(format!("{}-{}-{}", self.set, self.attention, self.tasks)).join(format!("seed{}", self.seed))
    }

    /// The variant a run's report.json names ("T/cim/mtl").
    pub fn variant(&self) -> String {
        format!("{}/{}/{}", self.set, self.attention, self.tasks)
    }
}

/// The task setups of a cell, in run order: single-task sentiment, single-task emotion, multi-task.
pub const CELL_TASKS: [Tasks; 3] = [Tasks::Sentiment, Tasks::Emotion, Tasks::Mtl];

/// Every run of the grid, in the fixed order that shards slice: attention
/// kinds (as given), then modality sets (as given), then `CELL_TASKS`, then seeds 1..=N.
pub fn grid_runs(grid: &GridConfig) -> Vec<RunKey> {
    let mut runs = Vec::new();
    for &attention in &grid.attentions {
        for &set in &grid.modalities {
            for tasks in CELL_TASKS {
                for seed in 1..=grid.seeds {
                    runs.push(RunKey { set, attention, tasks, seed });
                }
            }
        }
    }
    runs
}

/// What `run_grid` produced.
#[derive(Debug, Clone)]
pub enum GridOutcome {
    /// The whole grid: its report (also in report.md / report.json).
    Report(GridReport),
    /// A shard: its slice is trained; the report comes from `merge` once every shard is.
    Shard { shard: Shard, runs: Vec<FinishedRun>, wall_seconds: f64 },
}

/// Run every cell and seed (or a shard's slice of them); for the whole grid, aggregate
/// into report.md / report.json in `out`. The grid directory is locked for the whole
/// grid; it must be new, empty, or the same grid's (grid.json: the same data, options
/// and shard) unless `spec.force`.
pub fn run_grid(spec: &GridSpec, out: &Path, progress: &mut dyn Progress) -> Result<GridOutcome, PipelineError> {
    let started = Instant::now();
    spec.train.validate().map_err(super::run::TrainError::from)?;
    let marker_file = marker_path(out);
    if !spec.force && !marker_file.exists() {
        crate::output::require_empty(out, "grid")?;
    }
    let data = spec.source.load_fingerprinted()?;
    if !data.0.has_emotion {
        return Err(PipelineError::NoEmotions { tasks: Tasks::Mtl, data: spec.source.describe() });
    }
    let _lock = crate::output::DirLock::acquire(out)?;
    crate::output::remove_stale_temps(out)?;
    let config = spec.config();
    let mut marker = GridMarker {
        data: spec.source.clone(),
        fingerprint: data.1.clone(),
        grid: Some(config.clone()),
        shard: spec.shard,
        wall_seconds: 0.0,
    };
    if !spec.force {
        match read_marker(out)? {
            Some(old) => {
                let differences = old.differences(&marker);
                if !differences.is_empty() {
                    return Err(PipelineError::Grid(format!(
                        "{} holds another grid ({}, then this command's): {}; choose another --out, or pass --force \
                         to replace it",
                        out.display(),
                        marker_file.display(),
                        differences.join("; ")
                    )));
                }
                marker.wall_seconds = old.wall_seconds;
            }
            None => crate::output::require_empty(out, "grid")?,
        }
    }
    let rd = RunDir::new(out);
    rd.write_json(&marker_file, &marker)?;
    let all = grid_runs(&config);
    let keys = spec.shard.map_or_else(|| all.clone(), |s| s.select(&all));
    if let Some(s) = spec.shard {
        progress.message(&format!("shard {s}: {} of the grid's {} runs", keys.len(), all.len()));
    }
    let trained = train_runs(spec, &data, out, &keys, progress);
    // Counted whether or not every run finished, so that a resumed grid adds up.
    marker.wall_seconds += started.elapsed().as_secs_f64();
    rd.write_json(&marker_file, &marker)?;
    let runs = keys
        .iter()
        .zip(trained?)
        .map(|(&key, report)| FinishedRun::read(out, key, report))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(shard) = spec.shard {
        return Ok(GridOutcome::Shard { shard, runs, wall_seconds: marker.wall_seconds });
    }
    let report = build_report(&spec.source, &config, &runs, marker.wall_seconds, Vec::new())?;
    write_report(out, &report)?;
    Ok(GridOutcome::Report(report))
}

/// report.json and report.md of a grid into `dir`.
fn write_report(dir: &Path, report: &GridReport) -> Result<(), PipelineError> {
    let rd = RunDir::new(dir);
    rd.write_json(&rd.report_json(), report)?;
    let md = rd.report_md();
    crate::output::write_atomic(&md, grid_markdown(report).as_bytes())
        .map_err(|source| PipelineError::Io { path: md.display().to_string(), source })
}
