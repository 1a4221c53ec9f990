//! `cimnet grid`: the paper's Table 4 — every modality set, single-task vs
//! multi-task (attention kinds optional), each cell trained with every seed;
//! mean +/- std per cell and a paired t-test of multi-task against single-task.
//! Finished runs (report.json present) are never rerun; interrupted ones resume.
//! With `--test-curve` the report adds the same table under the published
//! protocol (per metric, the best test value over the epochs; optimistic).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::curve::METRICS;
use super::pipeline::{self, PipelineError, ResumeChanges, RunSpec, Start};
use super::report::Report;
use super::run::{Progress, RunDir, TrainConfig};
use super::source::{DataSource, Fingerprint};
use crate::config::{Attention, ModalitySet, Tasks};
use crate::data::Dataset;

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
    /// Start afresh: replace the runs already in the grid directory.
    pub force: bool,
}

/// grid.json: marks a directory as a grid's (so a rerun may resume it) and says on what data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridMarker {
    pub data: DataSource,
    pub fingerprint: Fingerprint,
}

/// The marker file of a grid directory.
pub fn marker_path(out: &Path) -> PathBuf {
    out.join("grid.json")
}

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

/// One run of the grid: a cell's variant and task setup, and a seed.
#[derive(Debug, Clone, Copy)]
struct RunKey {
    set: ModalitySet,
    attention: Attention,
    tasks: Tasks,
    seed: u64,
}

impl RunKey {
    fn dir(&self, out: &Path) -> PathBuf {
        out.join(format!("{}-{}-{}", self.set, self.attention, self.tasks)).join(format!("seed{}", self.seed))
    }
}

/// Train (or reuse) one run of the grid.
fn one_run(
    spec: &GridSpec,
    data: &(Dataset, Fingerprint),
    out: &Path,
    key: RunKey,
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
    pipeline::execute(prepared, dir, start, &spec.engine, progress)
}

/// Run every cell and seed, then aggregate into report.md / report.json in `out`.
/// The grid directory is locked for the whole grid; it must be new, empty, or a
/// grid's (grid.json, on the same data) unless `spec.force`.
pub fn run_grid(spec: &GridSpec, out: &Path, progress: &mut dyn Progress) -> Result<GridReport, PipelineError> {
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
    let marker = GridMarker { data: spec.source.clone(), fingerprint: data.1.clone() };
    if !spec.force {
        if let Ok(text) = std::fs::read_to_string(&marker_file) {
            let old: GridMarker = serde_json::from_str(&text)
                .map_err(|e| super::run::TrainError::Corrupt { path: marker_file.clone(), msg: e.to_string() })?;
            if old != marker {
                return Err(PipelineError::Grid(format!(
                    "{} holds a grid on {} ({}), not on {} ({}); choose another --out, or pass --force to replace it",
                    out.display(),
                    old.data.describe(),
                    old.fingerprint,
                    marker.data.describe(),
                    marker.fingerprint
                )));
            }
        } else {
            crate::output::require_empty(out, "grid")?;
        }
    }
    let rd = RunDir::new(out);
    rd.write_json(&marker_file, &marker)?;
    let seeds: Vec<u64> = (1..=spec.seeds).collect();
    let mut cells = Vec::new();
    let mut published = Vec::new();
    for &attention in &spec.attentions {
        for &set in &spec.sets {
            let mut collect = |tasks: Tasks| -> Result<Vec<Report>, PipelineError> {
                seeds
                    .iter()
                    .map(|&seed| one_run(spec, &data, out, RunKey { set, attention, tasks, seed }, progress))
                    .collect()
            };
            let st_sent = collect(Tasks::Sentiment)?;
            let st_emo = collect(Tasks::Emotion)?;
            let mt = collect(Tasks::Mtl)?;
            let cell = |protocol| Cell {
                modalities: set.to_string(),
                attention: attention.to_string(),
                comparisons: compare(protocol, &st_sent, &st_emo, &mt),
            };
            cells.push(cell(Protocol::Honest));
            published.push(cell(Protocol::Published));
        }
    }
    let published_cells = spec.train.test_curve.then_some(published);
    let report = GridReport { data: spec.source.describe(), seeds, epochs: spec.train.epochs, cells, published_cells };
    rd.write_json(&rd.report_json(), &report)?;
    let md = rd.report_md();
    crate::params::write_atomic(&md, grid_markdown(&report).as_bytes())
        .map_err(|source| PipelineError::Io { path: md.display().to_string(), source })?;
    Ok(report)
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
}
