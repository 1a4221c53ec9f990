//! The grid's report: per cell, mean +/- std over seeds of single-task and
//! multi-task runs and a paired t-test between them (report.json, and the
//! paper's Table 4 layout in report.md), plus the training and wall times.
//! One builder for the unsharded grid and for a merge of its shards, so that
//! the two reports agree in everything but the wall time.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::super::curve::METRICS;
use super::super::pipeline::PipelineError;
use super::super::report::Report;
use super::super::run::{read_metrics, EpochRecord, RunDir, TrainError};
use super::super::source::DataSource;
use super::identity::{GridConfig, Shard};
use super::{grid_runs, RunKey};
use crate::config::Tasks;

/// mean +/- sample standard deviation over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl Stat {
    pub fn of(xs: &[f64]) -> Stat {
        let n = xs.len();
        let mean = xs.iter().sum::<f64>() / n.max(1) as f64;
        let var = if n > 1 { xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        Stat { mean, std: var.sqrt(), n }
    }
}

/// Paired t-test of `a` against `b` (same seeds): t statistic and two-sided p.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedT {
    pub t: Option<f64>,
    pub p: Option<f64>,
    pub mean_difference: f64,
}

pub fn paired_t(a: &[f64], b: &[f64]) -> PairedT {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let s = Stat::of(&d);
    if s.n < 2 || s.std == 0.0 {
        return PairedT { t: None, p: None, mean_difference: s.mean };
    }
    let t = s.mean / (s.std / (s.n as f64).sqrt());
    let dist = StudentsT::new(0.0, 1.0, (s.n - 1) as f64).expect("n - 1 >= 1 degrees of freedom");
    let p = 2.0 * (1.0 - dist.cdf(t.abs()));
    PairedT { t: Some(t), p: Some(p), mean_difference: s.mean }
}

/// One metric of one cell: single-task vs multi-task over the seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub metric: String,
    pub single: Stat,
    pub multi: Stat,
    pub single_values: Vec<f64>,
    pub multi_values: Vec<f64>,
    pub test: PairedT,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub modalities: String,
    pub attention: String,
    pub comparisons: Vec<Comparison>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridReport {
    pub data: String,
    pub seeds: Vec<u64>,
    pub epochs: usize,
    /// Honest: each run's checkpoint and thresholds chosen on validation.
    pub cells: Vec<Cell>,
    /// With --test-curve: the same cells under the published protocol (epoch chosen on test, optimistic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_cells: Option<Vec<Cell>>,
    /// Training and wall-clock times (absent in reports written before they were kept); the one
    /// part of the report in which a sharded and merged grid differs from the same grid unsharded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<GridTiming>,
}

/// Whose test numbers a table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// The kept checkpoint (chosen on validation).
    Honest,
    /// Per metric, the best test value over the epochs.
    Published,
}

/// A run's test value of the metric `key` (a key of `curve::METRICS`) under a protocol.
fn value(r: &Report, protocol: Protocol, key: &str) -> Option<f64> {
    match protocol {
        Protocol::Honest => METRICS.iter().find(|m| m.key == key).and_then(|m| (m.get)(&r.result.test)),
        Protocol::Published => r.published_protocol.as_ref()?.get(key),
    }
}

/// The grid's four comparisons of one cell under a protocol.
fn compare(protocol: Protocol, st_sent: &[Report], st_emo: &[Report], mt: &[Report]) -> Vec<Comparison> {
    let metrics: [(&str, &[Report], &str); 4] = [
        ("sentiment accuracy", st_sent, "sentiment_accuracy"),
        ("sentiment weighted F1", st_sent, "sentiment_weighted_f1"),
        ("emotion weighted F1", st_emo, "emotion_weighted_f1"),
        ("emotion WA", st_emo, "emotion_wa"),
    ];
    metrics
        .iter()
        .map(|(name, single, key)| {
            let sv: Vec<f64> = single.iter().filter_map(|r| value(r, protocol, key)).collect();
            let mv: Vec<f64> = mt.iter().filter_map(|r| value(r, protocol, key)).collect();
            Comparison {
                metric: name.to_string(),
                single: Stat::of(&sv),
                multi: Stat::of(&mv),
                test: paired_t(&mv, &sv),
                single_values: sv,
                multi_values: mv,
            }
        })
        .collect()
}

/// A finished run of the grid: its report and its own training time.
#[derive(Debug, Clone)]
pub struct FinishedRun {
    pub key: RunKey,
    pub report: Report,
    /// The sum of its epochs' seconds in metrics.jsonl (resumed epochs included).
    pub train_seconds: f64,
}

impl FinishedRun {
    /// The run in `grid_dir` with `report`, timed from its metrics.jsonl.
    pub fn read(grid_dir: &Path, key: RunKey, report: Report) -> Result<FinishedRun, TrainError> {
        let records: Vec<EpochRecord> = read_metrics(&RunDir::new(&key.dir(grid_dir)).metrics())?;
        Ok(FinishedRun { key, report, train_seconds: records.iter().map(|r| r.seconds).sum() })
    }
}

/// A run's own training time, for report.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTime {
    /// The run's directory inside the grid directory, e.g. "T-cim-mtl/seed1".
    pub run: String,
    pub train_seconds: f64,
}

/// A cell's training time: the sum of its runs' own training time (every task setup and seed).
/// Runs that train at the same time overlap, so this is not wall-clock time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellTime {
    pub modalities: String,
    pub attention: String,
    pub runs: usize,
    pub train_seconds: f64,
}

/// One shard's wall-clock time, in a merged report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardTime {
    pub shard: Shard,
    /// The shard's directory as given to --merge.
    pub dir: String,
    pub wall_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridTiming {
    /// Every run, in the grid's run order.
    pub runs: Vec<RunTime>,
    /// Every cell, in the order of `cells`.
    pub cells: Vec<CellTime>,
    /// The sum over all runs.
    pub train_seconds: f64,
    /// Wall-clock seconds of every `cimnet grid` on the grid directory, summed;
    /// for a merge, summed over its shards.
    pub wall_seconds: f64,
    /// A merge: each shard's wall time (grid.json's), in shard order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardTime>,
    /// A merge: the longest shard's wall time (the elapsed time when every shard runs at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_shard_wall_seconds: Option<f64>,
}

/// The grid report of the runs in `runs` (every run of `grid`, in any order):
/// the cells in the order of `grid_runs`, then the times.
pub fn build_report(
    data: &DataSource,
    grid: &GridConfig,
    runs: &[FinishedRun],
    wall_seconds: f64,
    shards: Vec<ShardTime>,
) -> Result<GridReport, PipelineError> {
    let by_key: HashMap<RunKey, &FinishedRun> = runs.iter().map(|r| (r.key, r)).collect();
    let all = grid_runs(grid);
    let find = |key: &RunKey| {
        by_key
            .get(key)
            .copied()
            .ok_or_else(|| PipelineError::Grid(format!("the grid has no finished run {}", key.name())))
    };
    let mut cells = Vec::new();
    let mut published = Vec::new();
    let mut cell_times = Vec::new();
    for &attention in &grid.attentions {
        for &set in &grid.modalities {
            let of_cell: Vec<&RunKey> = all.iter().filter(|k| k.set == set && k.attention == attention).collect();
            let reports = |tasks: Tasks| -> Result<Vec<Report>, PipelineError> {
                of_cell.iter().filter(|k| k.tasks == tasks).map(|k| Ok(find(k)?.report.clone())).collect()
            };
            let (st_sent, st_emo, mt) = (reports(Tasks::Sentiment)?, reports(Tasks::Emotion)?, reports(Tasks::Mtl)?);
            let cell = |protocol| Cell {
                modalities: set.to_string(),
                attention: attention.to_string(),
                comparisons: compare(protocol, &st_sent, &st_emo, &mt),
            };
            cells.push(cell(Protocol::Honest));
            published.push(cell(Protocol::Published));
            let seconds = of_cell.iter().map(|k| Ok(find(k)?.train_seconds)).sum::<Result<f64, PipelineError>>()?;
            cell_times.push(CellTime {
                modalities: set.to_string(),
                attention: attention.to_string(),
                runs: of_cell.len(),
                train_seconds: seconds,
            });
        }
    }
    let run_times = all
        .iter()
        .map(|k| Ok(RunTime { run: k.name(), train_seconds: find(k)?.train_seconds }))
        .collect::<Result<Vec<_>, PipelineError>>()?;
    let longest = shards.iter().map(|s| s.wall_seconds).reduce(f64::max);
    let timing = GridTiming {
        train_seconds: run_times.iter().map(|r| r.train_seconds).sum(),
        runs: run_times,
        cells: cell_times,
        wall_seconds,
        shards,
        longest_shard_wall_seconds: longest,
    };
    Ok(GridReport {
        data: data.describe(),
        seeds: (1..=grid.seeds).collect(),
        epochs: grid.epochs,
        cells,
        published_cells: grid.test_curve.then_some(published),
        timing: Some(timing),
    })
}

/// The paper's Table 4 layout: rows are modality sets; sentiment (accuracy, F1)
/// and emotion (F1, WA) for single-task and multi-task; test-split means +/- std
/// over seeds, with the paired t-test's p for multi-task vs single-task.
pub fn grid_markdown(r: &GridReport) -> String {
    let mut s = format!(
        "# cimnet grid: single-task vs multi-task\n\nData: {}. Seeds: {:?}. Test-split metrics (%), mean +/- std over seeds; \
         each run's checkpoint and emotion thresholds were chosen on validation. p: two-sided paired t-test of multi-task \
         against single-task over the same seeds (n/a when the differences have no spread).\n",
        r.data, r.seeds
    );
    s.push_str(&cells_markdown(&r.cells, ""));
    if let Some(p) = &r.published_cells {
        s.push_str(
            "\nPublished protocol: each run's test split evaluated after every epoch and, per metric, the best value \
             over the epochs (test data chooses the epoch, so these are optimistic; it is how published numbers of this \
             model family were selected).\n",
        );
        s.push_str(&cells_markdown(p, ", published protocol: epoch chosen on test (optimistic)"));
    }
    if let Some(t) = &r.timing {
        s.push_str(&timing_markdown(t));
    }
    s
}

/// One table per attention kind; `title` is appended to each heading.
fn cells_markdown(cells: &[Cell], title: &str) -> String {
    let mut s = String::new();
    let mut attentions: Vec<&str> = cells.iter().map(|c| c.attention.as_str()).collect();
    attentions.dedup();
    for att in attentions {
        s.push_str(&format!(
            "\n## attention: {att}{title}\n\n| modalities | sent. acc ST | sent. acc MT | p | sent. F1 ST | sent. F1 MT | p | emo. F1 ST | emo. F1 MT | p | emo. WA ST | emo. WA MT | p |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        ));
        for c in cells.iter().filter(|c| c.attention == att) {
            s.push_str(&format!("| {} |", c.modalities));
            for cmp in &c.comparisons {
                // n = 0: no run has the metric (e.g. runs reused from a grid without --test-curve).
                let f = |x: &Stat| {
                    if x.n == 0 {
                        "n/a".to_string()
                    } else {
                        format!("{:.2} +/- {:.2}", 100.0 * x.mean, 100.0 * x.std)
                    }
                };
                let p = cmp.test.p.map_or("n/a".to_string(), |p| format!("{p:.3}"));
                s.push_str(&format!(" {} | {} | {} |", f(&cmp.single), f(&cmp.multi), p));
            }
            s.push('\n');
        }
    }
    s
}

/// Seconds as "12.3 s", with h:mm:ss beside from a minute on.
fn seconds_text(s: f64) -> String {
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let whole = s.round() as u64;
    format!("{s:.0} s ({}:{:02}:{:02})", whole / 3600, whole / 60 % 60, whole % 60)
}

/// The "## Time" section: a line per cell and the totals.
fn timing_markdown(t: &GridTiming) -> String {
    let mut s = String::from(
        "\n## Time\n\nTraining time: each run's own (the sum of its epochs' seconds in its metrics.jsonl, resumed \
         epochs included), summed over the cell's runs; runs that train at the same time overlap, so these are not \
         wall-clock times.\n\n| attention | modalities | runs | training time |\n|---|---|---|---|\n",
    );
    for c in &t.cells {
        s.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            c.attention,
            c.modalities,
            c.runs,
            seconds_text(c.train_seconds)
        ));
    }
    s.push_str(&format!("\nTraining time of all {} runs: {}.\n", t.runs.len(), seconds_text(t.train_seconds)));
    if t.shards.is_empty() {
        s.push_str(&format!(
            "Wall time of the grid: {} (every `cimnet grid` on its directory, summed).\n",
            seconds_text(t.wall_seconds)
        ));
    } else {
        let each: Vec<String> =
            t.shards.iter().map(|x| format!("{}: {}", x.shard, seconds_text(x.wall_seconds))).collect();
        s.push_str(&format!(
            "Wall time of the grid: {} summed over {} shards ({}); the longest shard took {}.\n",
            seconds_text(t.wall_seconds),
            t.shards.len(),
            each.join(", "),
            seconds_text(t.longest_shard_wall_seconds.unwrap_or(0.0))
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_t_matches_a_hand_computed_example() {
        // d = [1, 2, 3]: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.4641; df 2 -> p = 0.0742.
        let t = paired_t(&[2.0, 4.0, 6.0], &[1.0, 2.0, 3.0]);
        assert!((t.t.unwrap() - 3.464_101_6).abs() < 1e-6);
        assert!((t.p.unwrap() - 0.074_180).abs() < 1e-5, "{:?}", t.p);
        assert_eq!(paired_t(&[1.0, 2.0], &[0.0, 1.0]).p, None, "constant differences have no test");
    }

    #[test]
    fn stat_uses_the_sample_standard_deviation() {
        let s = Stat::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.mean, 2.5);
        assert!((s.std - (5.0f64 / 3.0).sqrt()).abs() < 1e-15);
    }

    #[test]
    fn seconds_read_as_seconds_then_hours_minutes_seconds() {
        assert_eq!(seconds_text(12.34), "12.3 s");
        assert_eq!(seconds_text(3725.4), "3725 s (1:02:05)");
    }
}
