//! `cimnet grid --merge DIR... --out DIR`: the one report of a grid from its N
//! finished shard directories. Every input must be a shard of the same grid
//! (grid.json: same data, options and N), shards 1..=N must each be given
//! exactly once, and every run of every shard must have finished as the run
//! the grid puts there; the report is then built exactly as the unsharded
//! grid builds it, so the two agree in everything but the wall time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::super::pipeline::PipelineError;
use super::super::report::Report;
use super::super::run::{RunDir, TrainError};
use super::identity::{read_marker, GridMarker, Shard};
use super::report::{build_report, FinishedRun, GridReport, ShardTime};
use super::{grid_runs, write_report, RunKey};

/// A shard directory given to --merge and its grid.json.
struct ShardDir {
    dir: PathBuf,
    marker: GridMarker,
    shard: Shard,
}

fn grid_err(msg: String) -> PipelineError {
    PipelineError::Grid(msg)
}

/// Read `dir`'s grid.json as a shard's.
fn open_shard(dir: &Path) -> Result<ShardDir, PipelineError> {
    let Some(marker) = read_marker(dir)? else {
        return Err(grid_err(format!(
            "{} is not a grid directory (no grid.json): give the --out directories of `cimnet grid --shard I/N`",
            dir.display()
        )));
    };
    let Some(shard) = marker.shard else {
        return Err(grid_err(format!(
            "{} holds a whole grid, not a shard (its grid.json has no shard); its report.md is already the grid's report",
            dir.display()
        )));
    };
    if marker.grid.is_none() {
        return Err(grid_err(format!("{}: grid.json records no grid options", dir.display())));
    }
    Ok(ShardDir { dir: dir.to_path_buf(), marker, shard })
}

/// The same grid, split the same way: what differs between two shards' grid.json, besides the index.
fn grid_differences(a: &ShardDir, b: &ShardDir) -> Vec<String> {
    let whole = |s: &ShardDir| GridMarker { shard: None, ..s.marker.clone() };
    let mut d = whole(a).differences(&whole(b));
    if a.shard.count != b.shard.count {
        d.push(format!("split into {} vs {} shards", a.shard.count, b.shard.count));
    }
    d
}

/// Check every input against the first and that 1..=N each come exactly once; the shards by index.
fn check_shards(shards: Vec<ShardDir>) -> Result<Vec<ShardDir>, PipelineError> {
    let first = shards.first().ok_or_else(|| grid_err("--merge needs the shard directories to merge".into()))?;
    for s in &shards[1..] {
        let d = grid_differences(first, s);
        if !d.is_empty() {
            return Err(grid_err(format!(
                "{} and {} are shards of different grids ({}, then {}): {}",
                first.dir.display(),
                s.dir.display(),
                first.dir.display(),
                s.dir.display(),
                d.join("; ")
            )));
        }
    }
    let count = first.shard.count;
    let mut by_index: BTreeMap<usize, ShardDir> = BTreeMap::new();
    for s in shards {
        if let Some(earlier) = by_index.get(&s.shard.index) {
            return Err(grid_err(format!(
                "shard {} is given twice: {} and {}",
                s.shard,
                earlier.dir.display(),
                s.dir.display()
            )));
        }
        by_index.insert(s.shard.index, s);
    }
    let missing: Vec<String> =
        (1..=count).filter(|i| !by_index.contains_key(i)).map(|i| format!("{i}/{count}")).collect();
    if !missing.is_empty() {
        let given: Vec<String> = by_index.values().map(|s| format!("{} in {}", s.shard, s.dir.display())).collect();
        return Err(grid_err(format!(
            "shard {} of the grid {} missing (given: {}); merge all {count} shards",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            given.join(", ")
        )));
    }
    Ok(by_index.into_values().collect())
}

/// A shard's run `key`, finished, as the grid's run there.
fn finished_run(s: &ShardDir, key: RunKey) -> Result<FinishedRun, PipelineError> {
    let dir = key.dir(&s.dir);
    let rd = RunDir::new(&dir);
    let path = rd.report_json();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(grid_err(format!(
                "run {} of shard {} ({}) has not finished (no report.json); rerun the shard's `cimnet grid ... \
                 --shard {} --out {}` to finish it",
                key.name(),
                s.shard,
                dir.display(),
                s.shard,
                s.dir.display()
            )))
        }
        Err(source) => return Err(TrainError::Io { path, source }.into()),
    };
    let corrupt = |msg: String| PipelineError::from(TrainError::Corrupt { path: path.clone(), msg });
    let report: Report = serde_json::from_str(&text)
        .map_err(|e| corrupt(format!("run {} of shard {} has no readable report: {e}", key.name(), s.shard)))?;
    if report.variant != key.variant() {
        return Err(corrupt(format!(
            "reports the run {}, but the grid's run here is {}",
            report.variant,
            key.variant()
        )));
    }
    let config = rd.read_config()?;
    if config.train.seed != key.seed {
        return Err(TrainError::Corrupt {
            path: rd.config(),
            msg: format!("the run has seed {}, but the grid's run here has seed {}", config.train.seed, key.seed),
        }
        .into());
    }
    if config.fingerprint.as_ref().is_some_and(|f| *f != s.marker.fingerprint) {
        return Err(TrainError::Corrupt {
            path: rd.config(),
            msg: format!("the run was trained on other data than the grid's ({})", s.marker.fingerprint),
        }
        .into());
    }
    Ok(FinishedRun::read(&s.dir, key, report)?)
}

/// Merge the shard directories `dirs` into report.md / report.json in `out`
/// (new or empty, unless `force`); the shards are only read.
pub fn merge(dirs: &[PathBuf], out: &Path, force: bool) -> Result<GridReport, PipelineError> {
    let shards = check_shards(dirs.iter().map(|d| open_shard(d)).collect::<Result<Vec<_>, _>>()?)?;
    let out_real = std::fs::canonicalize(out).ok();
    if let Some(s) = shards.iter().find(|s| out_real.is_some() && std::fs::canonicalize(&s.dir).ok() == out_real) {
        return Err(grid_err(format!(
            "--out {} is shard {}'s directory: write the merge elsewhere",
            out.display(),
            s.shard
        )));
    }
    let first = &shards[0];
    let grid = first.marker.grid.clone().ok_or_else(|| grid_err("grid.json records no grid options".into()))?;
    let all = grid_runs(&grid);
    let mut runs = Vec::with_capacity(all.len());
    for s in &shards {
        for key in s.shard.select(&all) {
            runs.push(finished_run(s, key)?);
        }
    }
    let _lock = crate::output::DirLock::acquire(out)?;
    let existing = crate::output::entries(out)?;
    if !force && !existing.is_empty() {
        return Err(grid_err(format!(
            "{} is not empty ({} and {} more); a merge writes into a new or empty directory: choose another --out, or \
             pass --force to write report.md and report.json into it",
            out.display(),
            existing[0],
            existing.len() - 1
        )));
    }
    let times: Vec<ShardTime> = shards
        .iter()
        .map(|s| ShardTime { shard: s.shard, dir: s.dir.display().to_string(), wall_seconds: s.marker.wall_seconds })
        .collect();
    let wall = times.iter().map(|t| t.wall_seconds).sum();
    let report = build_report(&first.marker.data, &grid, &runs, wall, times)?;
    crate::output::remove_stale_temps(out)?;
    write_report(out, &report)?;
    Ok(report)
}
