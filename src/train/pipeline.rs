//! One experiment from start to report: set a run up (data, variant, task
//! setup following the labels), train or resume it, evaluate the kept
//! checkpoint and write report.md / report.json. `cimnet train` and
//! `cimnet grid` both go through here.

use std::path::Path;

use super::curve::{CurvePoint, PublishedProtocol};
use super::engine::make_engine;
use super::report::Report;
use super::run::{final_evaluation, read_metrics, train, Progress, RunConfig, RunDir, TrainConfig, TrainError};
use super::source::DataSource;
use crate::config::{Attention, ConfigError, ModalitySet, ModelConfig, Tasks};
use crate::data::{DataError, Dataset, Normalizer};
use crate::engine::{EngineError, EngineOptions};
use crate::params::{write_atomic, ParamError, ParamStore};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    /// Boxed: DataError carries a full location (file, split, video, utterance).
    Data(Box<DataError>),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Params(#[from] ParamError),
    #[error("--tasks {tasks} needs emotion labels, but {data} has none; use --tasks sentiment")]
    NoEmotions { tasks: Tasks, data: String },
    #[error("{0} already holds a run; continue it with --resume {0}, or choose another --out")]
    Exists(String),
    #[error("{0} is not a cimnet run directory (no config.json)")]
    NotARun(String),
    #[error("--batch and --epochs must be at least 1")]
    Sizes,
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl From<DataError> for PipelineError {
    fn from(e: DataError) -> Self {
        PipelineError::Data(Box::new(e))
    }
}

/// What a new run is asked to be.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub source: DataSource,
    pub modalities: ModalitySet,
    pub attention: Attention,
    /// None: multi-task when the data has emotion labels, else sentiment.
    pub tasks: Option<Tasks>,
    pub hidden: usize,
    pub dense: usize,
    pub dropout: f64,
    pub train: TrainConfig,
}

/// A run ready to train: its configuration, (normalised) data and initial parameters.
pub struct Prepared {
    pub run: RunConfig,
    pub data: Dataset,
    pub params: ParamStore,
    /// A one-line notice for the user (e.g. the task setup that followed the labels).
    pub notice: Option<String>,
}

/// Set up a new run from a spec and already-loaded data.
pub fn prepare(spec: &RunSpec, mut data: Dataset) -> Result<Prepared, PipelineError> {
    data.require(spec.modalities)?;
    let mut notice = None;
    let tasks = match spec.tasks {
        Some(t) if t.has_emotion() && !data.has_emotion => {
            return Err(PipelineError::NoEmotions { tasks: t, data: spec.source.describe() })
        }
        Some(t) => t,
        None if data.has_emotion => Tasks::Mtl,
        None => {
            notice = Some(format!(
                "note: {} has no emotion labels, so the model is single-task sentiment",
                spec.source.describe()
            ));
            Tasks::Sentiment
        }
    };
    let mut model = ModelConfig::new(spec.modalities, spec.attention, tasks, data.dims);
    model.hidden = spec.hidden;
    model.dense = spec.dense;
    model.dropout = spec.dropout;
    model.validate()?;
    if spec.train.batch == 0 || spec.train.epochs == 0 {
        return Err(PipelineError::Sizes);
    }
    let normalizer = spec.train.normalize.then(|| Normalizer::fit(&data));
    if let Some(n) = &normalizer {
        n.apply(&mut data)?;
    }
    let params = ParamStore::init(&model, spec.train.seed);
    Ok(Prepared {
        run: RunConfig { model, train: spec.train.clone(), data: spec.source.clone(), normalizer },
        data,
        params,
        notice,
    })
}

/// Reload a run directory for --resume: its config, its data (normalised the same way)
/// and the initial parameters (the checkpoint replaces them).
pub fn reopen(dir: &Path) -> Result<Prepared, PipelineError> {
    let rd = RunDir::new(dir);
    if !rd.config().exists() {
        return Err(PipelineError::NotARun(dir.display().to_string()));
    }
    let run = rd.read_config()?;
    let mut data = run.data.load()?;
    if let Some(n) = &run.normalizer {
        n.apply(&mut data)?;
    }
    let params = ParamStore::init(&run.model, run.train.seed);
    Ok(Prepared { run, data, params, notice: None })
}

/// Train (resuming if `dir` has a checkpoint), evaluate the kept checkpoint, write the report.
pub fn execute(
    p: Prepared,
    dir: &Path,
    opts: &EngineOptions,
    progress: &mut dyn Progress,
) -> Result<Report, PipelineError> {
    // The engine first: a missing GPU leaves no half-made run directory behind.
    let mut engine = make_engine(&p.run, p.params, &p.data, opts)?;
    std::fs::create_dir_all(dir).map_err(|source| PipelineError::Io { path: dir.display().to_string(), source })?;
    let rd = RunDir::new(dir);
    progress.message(&format!(
        "training {}/{}/{} on {} with {}; run directory {}",
        p.run.model.modalities,
        p.run.model.attention,
        p.run.model.tasks,
        p.run.data.describe(),
        engine.describe(),
        dir.display()
    ));
    let outcome = train(engine.as_mut(), &p.data, &p.run, &rd, progress)?;
    if outcome.state.stopped_early {
        progress.message(&format!("early stop: validation loss did not improve for {} epochs", p.run.train.patience));
    }
    let best = ParamStore::load(&rd.model())?;
    let fin = final_evaluation(engine.as_mut(), &p.data, &p.run, &best, &outcome.state)?;
    let mut report = Report::new(&p.run, &engine.describe(), fin);
    if p.run.train.test_curve {
        let curve: Vec<CurvePoint> = read_metrics(&rd.test_curve())?;
        report.published_protocol = PublishedProtocol::from_curve(&curve);
    }
    rd.write_json(&rd.report_json(), &report)?;
    let md = rd.report_md();
    write_atomic(&md, report.markdown().as_bytes())
        .map_err(|source| PipelineError::Io { path: md.display().to_string(), source })?;
    Ok(report)
}
