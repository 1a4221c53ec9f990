//! The training loop: epochs of bucketed batches, validation metrics each
//! epoch, early stopping on validation loss, the best checkpoint kept by a
//! selectable validation metric, emotion thresholds chosen on validation and
//! applied unchanged to test, and exact resume from the last checkpoint.
//!
//! A run directory holds:
//!     config.json            model + training configuration (+ normaliser)
//!     model.safetensors      the best checkpoint (MODEL.md names)
//!     checkpoint/            state of the last finished epoch, for --resume
//!         state.json         epoch, step, selection and early-stopping state
//!         optimizer-NNNN.safetensors  working parameters, Adam m and v (f64)
//!     metrics.jsonl          one line per epoch
//!     test_curve.jsonl       with --test-curve: the test split after each epoch (never used for a choice)
//!     report.md, report.json the paper's metrics on valid and test

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::curve::CurvePoint;
use super::evaluate::{evaluate, SplitMetrics};
use super::metrics::Thresholds;
use crate::config::ModelConfig;
use crate::data::{make_batches, BatchMode, Dataset, Normalizer, SplitName};
use crate::engine::{Engine, EngineError, EngineState};
use crate::params::{write_atomic, ParamError, ParamStore};

/// Validation metric that picks the kept checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectMetric {
    /// Total validation loss (lower is better): MODEL.md's default.
    Loss,
    SentimentAccuracy,
    SentimentF1,
    EmotionF1,
    EmotionWa,
}

impl SelectMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            SelectMetric::Loss => "loss",
            SelectMetric::SentimentAccuracy => "sentiment-accuracy",
            SelectMetric::SentimentF1 => "sentiment-f1",
            SelectMetric::EmotionF1 => "emotion-f1",
            SelectMetric::EmotionWa => "emotion-wa",
        }
    }

    /// The metric's value, oriented so that larger is better; None if this run lacks it.
    pub fn score(self, m: &SplitMetrics) -> Option<f64> {
        match self {
            SelectMetric::Loss => Some(-m.loss),
            SelectMetric::SentimentAccuracy => m.sentiment.map(|s| s.accuracy),
            SelectMetric::SentimentF1 => m.sentiment.map(|s| s.weighted_f1),
            SelectMetric::EmotionF1 => m.emotion_at_f1.as_ref().map(|e| e.mean_weighted_f1),
            SelectMetric::EmotionWa => m.emotion_at_wa.as_ref().and_then(|e| e.mean_weighted_accuracy),
        }
    }
}

impl FromStr for SelectMetric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "loss" => SelectMetric::Loss,
            "sentiment-accuracy" | "sentiment-acc" => SelectMetric::SentimentAccuracy,
            "sentiment-f1" => SelectMetric::SentimentF1,
            "emotion-f1" => SelectMetric::EmotionF1,
            "emotion-wa" => SelectMetric::EmotionWa,
            _ => {
                return Err(format!(
                    "unknown selection metric '{s}': allowed are loss, sentiment-accuracy, sentiment-f1, emotion-f1, emotion-wa"
                ))
            }
        })
    }
}

/// Training hyper-parameters (MODEL.md defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub patience: usize,
    pub seed: u64,
    pub select: SelectMetric,
    pub batching: BatchMode,
    /// Per-modality z-score normalisation fitted on the training split.
    pub normalize: bool,
    /// "gpu", "cpu", or "auto" (the GPU when an adapter exists, else the CPU);
    /// a run records the backend that "auto" chose.
    pub backend: String,
    /// Also evaluate the test split after every epoch into test_curve.jsonl
    /// (for the published protocol's row of the report; never used for a choice).
    #[serde(default)]
    pub test_curve: bool,
}

/// A training option outside its range: the option's name, its value, and the range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("--{name} {value}: {why}")]
pub struct OptionError {
    pub name: &'static str,
    pub value: String,
    pub why: &'static str,
}

impl TrainConfig {
    /// Every field in range (the CLI checks the same rules when it parses).
    pub fn validate(&self) -> Result<(), OptionError> {
        let bad = |name, value: String, why| Err(OptionError { name, value, why });
        if self.epochs == 0 {
            return bad("epochs", "0".into(), "must be at least 1");
        }
        if self.batch == 0 {
            return bad("batch", "0".into(), "must be at least 1");
        }
        if self.patience == 0 {
            return bad("patience", "0".into(), "must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", self.lr.to_string(), "must be a finite number greater than 0");
        }
        if !["gpu", "cpu", "auto"].contains(&self.backend.as_str()) {
            return bad("backend", self.backend.clone(), "allowed are auto, gpu, cpu");
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 50,
            batch: 16,
            lr: 1e-3,
            patience: 20,
            seed: 1,
            select: SelectMetric::Loss,
            batching: BatchMode::Bucketed,
            normalize: false,
            backend: "auto".into(),
            test_curve: false,
        }
    }
}

/// config.json of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub model: ModelConfig,
    pub train: TrainConfig,
    /// Where the data came from.
    pub data: super::source::DataSource,
    /// Size and hash of that data when the run was set up (absent in runs
    /// written before fingerprints existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<super::source::Fingerprint>,
    pub normalizer: Option<Normalizer>,
    /// The GPU kernel members the run was trained with (none on the CPU, or in
    /// runs made before the tuner); --resume, eval and predict use the same ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<crate::gpu::tune::KernelChoice>,
}

/// One line of metrics.jsonl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub steps: u64,
    pub train_loss: f64,
    pub train_loss_sentiment: Option<f64>,
    pub train_loss_emotion: Option<f64>,
    pub valid: SplitMetrics,
    pub seconds: f64,
    pub utterances_per_second: f64,
    /// This epoch became the kept checkpoint.
    pub best: bool,
}

/// checkpoint/state.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs finished (the next epoch to run is this number, 0-based).
    pub epochs_done: usize,
    pub step: u64,
    pub best_epoch: Option<usize>,
    pub best_score: Option<f64>,
    pub best_valid_loss: f64,
    pub epochs_without_improvement: usize,
    pub stopped_early: bool,
    /// File in checkpoint/ holding the optimizer state of `epochs_done`.
    pub optimizer_file: String,
}

impl Default for TrainState {
    fn default() -> Self {
        TrainState {
            epochs_done: 0,
            step: 0,
            best_epoch: None,
            best_score: None,
            // Not infinity: JSON has no infinity (serde_json would write null).
            best_valid_loss: f64::MAX,
            epochs_without_improvement: 0,
            stopped_early: false,
            optimizer_file: String::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Params(#[from] ParamError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {msg}")]
    Corrupt { path: PathBuf, msg: String },
    #[error("training diverged: the {what} loss is {value} at epoch {epoch}; the last good checkpoint (epoch {last_good}) is kept in {dir}. Try a lower --lr or --normalize")]
    Diverged { what: &'static str, value: f64, epoch: usize, last_good: String, dir: PathBuf },
    #[error("selection metric {metric} needs the {task} head, which the {tasks} model lacks")]
    SelectMetric { metric: &'static str, task: &'static str, tasks: String },
    #[error("{state} is missing but {dir} holds results of a run ({found}); refusing to start over them: move them away, or start the run afresh with `cimnet train --force --out {dir}`")]
    MissingState { state: PathBuf, dir: PathBuf, found: String },
    #[error("the {split} split of {data} is empty: training needs videos in train (to fit the model) and in valid (to choose the checkpoint)")]
    EmptySplit { split: SplitName, data: String },
    #[error(transparent)]
    Option(#[from] OptionError),
}

/// Refuse data whose train or valid split has no videos (it would "train" to losses of 0).
pub fn check_splits(data: &Dataset) -> Result<(), TrainError> {
    for split in [SplitName::Train, SplitName::Valid] {
        if data.split(split).is_empty() {
            return Err(TrainError::EmptySplit { split, data: data.source.clone() });
        }
    }
    Ok(())
}

/// Optimizer files are named by the epoch they follow; state.json must name one so.
fn optimizer_name(epochs_done: usize) -> String {
    format!("optimizer-{epochs_done:04}.safetensors")
}

/// Read checkpoint/state.json and check it against the run: the optimizer file is
/// a plain name inside checkpoint/ (never a path), and every count is within what
/// exists (the run's epochs, the epochs recorded in metrics.jsonl).
pub fn read_state(dir: &RunDir, run: &RunConfig, records: &[EpochRecord]) -> Result<TrainState, TrainError> {
    let p = dir.state();
    let text = fs::read_to_string(&p).map_err(io_err(&p))?;
    let state: TrainState =
        serde_json::from_str(&text).map_err(|e| TrainError::Corrupt { path: p.clone(), msg: e.to_string() })?;
    let corrupt = |msg: String| Err(TrainError::Corrupt { path: p.clone(), msg });
    if state.epochs_done == 0 {
        // Written when the run starts: nothing done yet, no optimizer file.
        if state != TrainState::default() {
            return corrupt("epochs_done is 0 but other fields are not those of a fresh run".into());
        }
        return Ok(state);
    }
    let expected = optimizer_name(state.epochs_done);
    if state.optimizer_file != expected {
        return corrupt(format!(
            "optimizer_file is {:?}; after epoch {} it must be the file name {expected:?} inside {}",
            state.optimizer_file,
            state.epochs_done,
            dir.checkpoint().display()
        ));
    }
    if state.epochs_done > run.train.epochs {
        return corrupt(format!(
            "epochs_done is {}, more than the run's {} epochs",
            state.epochs_done, run.train.epochs
        ));
    }
    let recorded = records.iter().filter(|r| r.epoch < state.epochs_done).count();
    if recorded != state.epochs_done {
        return corrupt(format!(
            "epochs_done is {} but {} has {recorded} of those epochs",
            state.epochs_done,
            dir.metrics().display()
        ));
    }
    match state.best_epoch {
        Some(b) if b < state.epochs_done => {}
        other => return corrupt(format!("best_epoch is {other:?}, not one of the {} epochs done", state.epochs_done)),
    }
    if state.epochs_without_improvement > state.epochs_done {
        return corrupt(format!(
            "epochs_without_improvement is {}, more than the {} epochs done",
            state.epochs_without_improvement, state.epochs_done
        ));
    }
    let last_step = records.iter().filter(|r| r.epoch < state.epochs_done).map(|r| r.steps).max().unwrap_or(0);
    if state.step != last_step {
        return corrupt(format!("step is {} but metrics.jsonl ends at step {last_step}", state.step));
    }
    Ok(state)
}

/// The results a directory holds although it has no state.json (None if none).
fn results_without_state(dir: &RunDir) -> Result<Option<String>, TrainError> {
    let mut found = Vec::new();
    if dir.model().exists() {
        found.push("model.safetensors".to_string());
    }
    let n = read_metrics::<EpochRecord>(&dir.metrics())?.len();
    if n > 0 {
        found.push(format!("{n} epochs in metrics.jsonl"));
    }
    for p in [dir.report_json(), dir.report_md()] {
        if p.exists() {
            found.push(p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        }
    }
    Ok((!found.is_empty()).then(|| found.join(", ")))
}

/// Remove what a killed run left in checkpoint/: temporaries, and optimizer files
/// that state.json does not name (written just before a kill, or not yet removed).
fn clean_checkpoint(dir: &RunDir, keep: &str) -> Result<(), TrainError> {
    crate::output::remove_stale_temps(&dir.checkpoint())
        .map_err(|e| TrainError::Corrupt { path: dir.checkpoint(), msg: e.to_string() })?;
    let ck = dir.checkpoint();
    for entry in fs::read_dir(&ck).map_err(io_err(&ck))? {
        let entry = entry.map_err(io_err(&ck))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("optimizer-") && name.ends_with(".safetensors") && name != keep {
            fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?;
        }
    }
    Ok(())
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}

/// Progress callbacks; the CLI draws a bar, tests pass `()`.
pub trait Progress {
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _steps: usize) {}
    fn step(&mut self, _done: usize, _utterances: usize) {}
    fn epoch_end(&mut self, _record: &EpochRecord) {}
    fn message(&mut self, _text: &str) {}
    /// The kernel tuner's progress and notices.
    fn tune(&mut self, _event: &crate::gpu::tune::TuneEvent) {}
    /// Where a group of runs trained side by side stands (`cimnet grid`).
    fn group(&mut self, _status: &super::group::GroupStatus) {}
    /// Checked after each epoch's checkpoint: true ends the run there (resumable).
    fn should_stop(&mut self) -> bool {
        false
    }
}

impl Progress for () {}

/// Per-epoch batching seed (independent of the dropout seeds).
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (epoch as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// Paths inside a run directory.
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: &Path) -> RunDir {
        RunDir { root: root.to_path_buf() }
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    pub fn model(&self) -> PathBuf {
        self.root.join("model.safetensors")
    }
    pub fn checkpoint(&self) -> PathBuf {
        self.root.join("checkpoint")
    }
    pub fn state(&self) -> PathBuf {
        self.checkpoint().join("state.json")
    }
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    pub fn test_curve(&self) -> PathBuf {
        self.root.join("test_curve.jsonl")
    }
    pub fn report_md(&self) -> PathBuf {
        self.root.join("report.md")
    }
    pub fn report_json(&self) -> PathBuf {
        self.root.join("report.json")
    }

    pub fn read_config(&self) -> Result<RunConfig, TrainError> {
        let p = self.config();
        let text = fs::read_to_string(&p).map_err(io_err(&p))?;
        serde_json::from_str(&text).map_err(|e| TrainError::Corrupt { path: p, msg: e.to_string() })
    }

    pub fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), TrainError> {
        let text = serde_json::to_string_pretty(value).expect("serialisable");
        write_atomic(path, text.as_bytes()).map_err(io_err(path))
    }
}

/// Save the optimizer state (f64 working parameters, m, v) atomically.
fn save_engine_state(path: &Path, s: &EngineState) -> Result<(), TrainError> {
    use safetensors::tensor::TensorView;
    let bytes: Vec<(&str, Vec<u8>)> = vec![
        ("master", bytemuck::cast_slice(&s.master).to_vec()),
        ("m", bytemuck::cast_slice(&s.m).to_vec()),
        ("v", bytemuck::cast_slice(&s.v).to_vec()),
    ];
    let views: Vec<(&str, TensorView)> = bytes
        .iter()
        .map(|(n, b)| (*n, TensorView::new(safetensors::Dtype::F64, vec![b.len() / 8], b).expect("f64 bytes")))
        .collect();
    let meta = HashMap::from([("adam_step".to_string(), s.adam_step.to_string())]);
    let data = safetensors::serialize(views, Some(meta)).expect("serialising f64 vectors cannot fail");
    write_atomic(path, &data).map_err(io_err(path))
}

fn load_engine_state(path: &Path, params: &ParamStore) -> Result<EngineState, TrainError> {
    let corrupt = |msg: String| TrainError::Corrupt { path: path.to_path_buf(), msg };
    let bytes = fs::read(path).map_err(io_err(path))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let get = |name: &str| -> Result<Vec<f64>, TrainError> {
        let t = st.tensor(name).map_err(|e| corrupt(format!("{name}: {e}")))?;
        let v: Vec<f64> =
            t.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        if v.len() != params.layout.len {
            return Err(corrupt(format!("{name} has {} values, the model {}", v.len(), params.layout.len)));
        }
        Ok(v)
    };
    let adam_step = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("adam_step"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt("adam_step missing".into()))?;
    let master = get("master")?;
    let mut p = params.clone();
    for (x, &m) in p.values.iter_mut().zip(&master) {
        *x = m as f32;
    }
    Ok(EngineState { params: p, master, m: get("m")?, v: get("v")?, adam_step })
}

/// Result of a whole run.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub state: TrainState,
    pub records: Vec<EpochRecord>,
}

/// Train (or resume) in `dir`. The dataset must already be normalised if the
/// run config says so. The engine must start from the run's initial parameters.
pub fn train(
    engine: &mut dyn Engine,
    data: &Dataset,
    run: &RunConfig,
    dir: &RunDir,
    progress: &mut dyn Progress,
) -> Result<RunOutcome, TrainError> {
    let tc = &run.train;
    tc.validate()?;
    check_splits(data)?;
    let tasks = run.model.tasks;
    for (metric, task, ok) in [
        (SelectMetric::SentimentAccuracy, "sentiment", tasks.has_sentiment()),
        (SelectMetric::SentimentF1, "sentiment", tasks.has_sentiment()),
        (SelectMetric::EmotionF1, "emotion", tasks.has_emotion()),
        (SelectMetric::EmotionWa, "emotion", tasks.has_emotion()),
    ] {
        if tc.select == metric && !ok {
            return Err(TrainError::SelectMetric { metric: metric.as_str(), task, tasks: tasks.to_string() });
        }
    }
    fs::create_dir_all(dir.checkpoint()).map_err(io_err(&dir.checkpoint()))?;

    // Resume from the last finished epoch, or start.
    let mut state = TrainState::default();
    let mut records: Vec<EpochRecord> = Vec::new();
    if dir.state().exists() {
        let all: Vec<EpochRecord> = read_metrics(&dir.metrics())?;
        state = read_state(dir, run, &all)?;
        clean_checkpoint(dir, &state.optimizer_file)?;
        if state.epochs_done > 0 {
            let params = ParamStore::zeros(&run.model);
            engine.set_state(&load_engine_state(&dir.checkpoint().join(&state.optimizer_file), &params)?)?;
        }
        records = all.into_iter().filter(|r| r.epoch < state.epochs_done).collect();
        rewrite_metrics(&dir.metrics(), &records)?;
        // The config again: a resume may have raised --epochs.
        dir.write_json(&dir.config(), run)?;
        if tc.test_curve {
            let curve: Vec<CurvePoint> = read_metrics(&dir.test_curve())?;
            let kept: Vec<CurvePoint> = curve.into_iter().filter(|p| p.epoch < state.epochs_done).collect();
            rewrite_metrics(&dir.test_curve(), &kept)?;
        }
        progress.message(&format!("resuming after epoch {} (step {})", state.epochs_done, state.step));
    } else {
        if let Some(found) = results_without_state(dir)? {
            return Err(TrainError::MissingState { state: dir.state(), dir: dir.root.clone(), found });
        }
        clean_checkpoint(dir, "")?;
        dir.write_json(&dir.config(), run)?;
        rewrite_metrics::<EpochRecord>(&dir.metrics(), &[])?;
        if tc.test_curve {
            rewrite_metrics::<CurvePoint>(&dir.test_curve(), &[])?;
        }
        // From here on a missing state.json means damage, never "not started".
        dir.write_json(&dir.state(), &state)?;
    }

    let lens = data.lens(SplitName::Train);
    let valid_batches = make_batches(&data.lens(SplitName::Valid), tc.batch, BatchMode::Bucketed, 0);
    let test_batches = make_batches(&data.lens(SplitName::Test), tc.batch, BatchMode::Bucketed, 0);
    while state.epochs_done < tc.epochs && !state.stopped_early {
        let epoch = state.epochs_done;
        let batches = make_batches(&lens, tc.batch, tc.batching, epoch_seed(tc.seed, epoch));
        progress.epoch_start(epoch, tc.epochs, batches.len());
        let t0 = Instant::now();
        let mut utterances = 0usize;
        for (k, videos) in batches.iter().enumerate() {
            engine.train_step(videos, state.step)?;
            state.step += 1;
            utterances += videos.iter().map(|&v| lens[v]).sum::<usize>();
            progress.step(k + 1, utterances);
        }
        let train_loss = engine.take_train_loss()?;
        let seconds = t0.elapsed().as_secs_f64();
        let last_good = state.best_epoch.map_or("none: no epoch finished".to_string(), |e| (e + 1).to_string());
        if !train_loss.mean().is_finite() {
            return Err(TrainError::Diverged {
                what: "training",
                value: train_loss.mean(),
                epoch: epoch + 1,
                last_good,
                dir: dir.root.clone(),
            });
        }
        let preds = engine.predict(SplitName::Valid, &valid_batches)?;
        let valid = evaluate(data, SplitName::Valid, &preds, None);
        if !valid.loss.is_finite() {
            return Err(TrainError::Diverged {
                what: "validation",
                value: valid.loss,
                epoch: epoch + 1,
                last_good,
                dir: dir.root.clone(),
            });
        }
        // Only recorded: nothing below looks at the test split.
        let test_point = if tc.test_curve {
            let pt = engine.predict(SplitName::Test, &test_batches)?;
            Some(CurvePoint { epoch, test: evaluate(data, SplitName::Test, &pt, valid.thresholds) })
        } else {
            None
        };
        let score = tc.select.score(&valid).unwrap_or(f64::NEG_INFINITY);
        let best = state.best_score.is_none_or(|b| score > b);
        let engine_state = engine.state()?;
        if best {
            engine_state.params.save(&dir.model())?;
            state.best_epoch = Some(epoch);
            state.best_score = Some(score);
        }
        if valid.loss < state.best_valid_loss {
            state.best_valid_loss = valid.loss;
            state.epochs_without_improvement = 0;
        } else {
            state.epochs_without_improvement += 1;
        }
        state.stopped_early = state.epochs_without_improvement >= tc.patience;
        let n = train_loss.utterances.max(1) as f64;
        let record = EpochRecord {
            epoch,
            steps: state.step,
            train_loss: train_loss.mean(),
            train_loss_sentiment: tasks.has_sentiment().then(|| train_loss.sentiment / n),
            train_loss_emotion: tasks.has_emotion().then(|| train_loss.emotion / n),
            valid,
            seconds,
            utterances_per_second: utterances as f64 / seconds.max(1e-9),
            best,
        };
        append_metrics(&dir.metrics(), &record)?;
        if let Some(p) = &test_point {
            append_metrics(&dir.test_curve(), p)?;
        }
        state.epochs_done += 1;
        // state.json is the commit point: the optimizer file it names is written
        // (atomically) first, under a name of its own, and older ones are removed
        // only after state.json points past them. A kill anywhere resumes from a
        // consistent epoch boundary.
        let opt_name = optimizer_name(state.epochs_done);
        save_engine_state(&dir.checkpoint().join(&opt_name), &engine_state)?;
        let previous = std::mem::replace(&mut state.optimizer_file, opt_name);
        dir.write_json(&dir.state(), &state)?;
        if !previous.is_empty() && previous != state.optimizer_file {
            let _ = fs::remove_file(dir.checkpoint().join(previous));
        }
        progress.epoch_end(&record);
        records.push(record);
        if progress.should_stop() {
            break;
        }
    }
    Ok(RunOutcome { state, records })
}

/// The lines of a JSON-lines file of the run (metrics.jsonl, test_curve.jsonl); empty if it is absent.
pub(super) fn read_metrics<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, TrainError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| TrainError::Corrupt { path: path.to_path_buf(), msg: format!("line {}: {e}", i + 1) })
        })
        .collect()
}

fn rewrite_metrics<T: Serialize>(path: &Path, records: &[T]) -> Result<(), TrainError> {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r).expect("serialisable"));
        text.push('\n');
    }
    write_atomic(path, text.as_bytes()).map_err(io_err(path))
}

fn append_metrics<T: Serialize>(path: &Path, r: &T) -> Result<(), TrainError> {
    let mut f = fs::OpenOptions::new().create(true).append(true).open(path).map_err(io_err(path))?;
    writeln!(f, "{}", serde_json::to_string(r).expect("serialisable")).map_err(io_err(path))
}

/// Final evaluation of the kept checkpoint: thresholds chosen on validation,
/// applied unchanged to test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalMetrics {
    pub best_epoch: Option<usize>,
    pub epochs_trained: usize,
    pub thresholds: Option<Thresholds>,
    pub valid: SplitMetrics,
    pub test: SplitMetrics,
}

/// Evaluate the parameters `best` on valid (choosing thresholds) and test.
pub fn final_evaluation(
    engine: &mut dyn Engine,
    data: &Dataset,
    run: &RunConfig,
    best: &ParamStore,
    state: &TrainState,
) -> Result<FinalMetrics, TrainError> {
    let master = best.to_f64();
    let n = master.len();
    engine.set_state(&EngineState { params: best.clone(), master, m: vec![0.0; n], v: vec![0.0; n], adam_step: 0 })?;
    let batches = |s: SplitName| make_batches(&data.lens(s), run.train.batch, BatchMode::Bucketed, 0);
    let pv = engine.predict(SplitName::Valid, &batches(SplitName::Valid))?;
    let valid = evaluate(data, SplitName::Valid, &pv, None);
    let pt = engine.predict(SplitName::Test, &batches(SplitName::Test))?;
    let test = evaluate(data, SplitName::Test, &pt, valid.thresholds);
    Ok(FinalMetrics {
        best_epoch: state.best_epoch,
        epochs_trained: state.epochs_done,
        thresholds: valid.thresholds,
        valid,
        test,
    })
}
