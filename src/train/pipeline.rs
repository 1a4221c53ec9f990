//! One experiment from start to report: set a run up (data, variant, task
//! setup following the labels), train or resume it, evaluate the kept
//! checkpoint and write report.md / report.json. `cimnet train` and
//! `cimnet grid` both go through here.

use std::path::{Path, PathBuf};

use super::curve::{CurvePoint, PublishedProtocol};
use super::engine::{choose_engine, Chosen};
use super::report::Report;
use super::run::{
    check_splits, final_evaluation, read_metrics, train, Progress, RunConfig, RunDir, TrainConfig, TrainError,
    TrainState,
};
use super::source::{DataSource, Fingerprint};
use crate::config::{Attention, ConfigError, ModalitySet, ModelConfig, Tasks};
use crate::data::{DataError, Dataset, Normalizer};
use crate::engine::{EngineError, EngineOptions};
use crate::output::{DirLock, OutputError};
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
    #[error(
        "{0} already holds a run; continue it with --resume {0}, replace it with --force, or choose another --out"
    )]
    Exists(String),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("{data} is not the data this run was trained on (recorded: {recorded}; now: {found}): it changed or was replaced since. Restore it, or pass --data explicitly to evaluate on this data anyway")]
    DataChanged { data: String, recorded: Fingerprint, found: Fingerprint },
    #[error("{path}, the data this run was trained on, no longer exists; if it moved, give its new place with --data")]
    DataMissing { path: PathBuf },
    #[error("{0}")]
    Grid(String),
    #[error("--resume {dir} --{option}: {why}")]
    Resume { dir: PathBuf, option: String, why: String },
    #[error("{0} is not a cimnet run directory (no config.json)")]
    NotARun(String),
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

/// Set up a new run from a spec and already-loaded data (with its fingerprint).
pub fn prepare(spec: &RunSpec, mut data: Dataset, fingerprint: Fingerprint) -> Result<Prepared, PipelineError> {
    spec.train.validate().map_err(TrainError::from)?;
    check_splits(&data)?;
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
    let normalizer = spec.train.normalize.then(|| Normalizer::fit(&data));
    if let Some(n) = &normalizer {
        n.apply(&mut data)?;
    }
    let params = ParamStore::init(&model, spec.train.seed);
    Ok(Prepared {
        run: RunConfig {
            model,
            train: spec.train.clone(),
            data: spec.source.clone(),
            fingerprint: Some(fingerprint),
            normalizer,
            kernels: None,
        },
        data,
        params,
        notice,
    })
}

/// A run's data for eval / predict / attention / --resume, normalised as the run
/// was. Without `explicit` the recorded source is loaded and must still have the
/// recorded fingerprint; an `explicit` source is used as given, with a notice when
/// its fingerprint differs. Returns the data, its source, and the notice.
pub fn load_for_run(
    run: &RunConfig,
    explicit: Option<DataSource>,
) -> Result<(Dataset, DataSource, Option<String>), PipelineError> {
    let given = explicit.is_some();
    let source = explicit.unwrap_or_else(|| run.data.clone());
    if let (false, DataSource::Path { path }) = (given, &source) {
        if std::fs::symlink_metadata(path).is_err() {
            return Err(PipelineError::DataMissing { path: path.clone() });
        }
    }
    let (mut data, found) = source.load_fingerprinted()?;
    let mut notice = None;
    if let Some(recorded) = &run.fingerprint {
        if *recorded != found {
            if !given {
                return Err(PipelineError::DataChanged { data: source.describe(), recorded: recorded.clone(), found });
            }
            notice = Some(format!(
                "note: {} is not the data the run was trained on ({}; recorded: {} of {})",
                source.describe(),
                found,
                recorded,
                run.data.describe()
            ));
        }
    }
    if let Some(n) = &run.normalizer {
        n.apply(&mut data)?;
    }
    Ok((data, source, notice))
}

/// What a --resume may change: a larger epoch budget, and where the data now is
/// (the same content, moved).
#[derive(Debug, Clone, Default)]
pub struct ResumeChanges {
    pub epochs: Option<usize>,
    pub data: Option<DataSource>,
}

/// Reload a run directory for --resume: its config, its data (normalised the same way)
/// and the initial parameters (the checkpoint replaces them).
pub fn reopen(dir: &Path, changes: &ResumeChanges) -> Result<Prepared, PipelineError> {
    let rd = RunDir::new(dir);
    if !rd.config().exists() {
        return Err(PipelineError::NotARun(dir.display().to_string()));
    }
    let mut run = rd.read_config()?;
    let refuse =
        |option: &str, why: String| PipelineError::Resume { dir: dir.to_path_buf(), option: option.into(), why };
    let mut notes = Vec::new();
    if let Some(epochs) = changes.epochs {
        // A loose read: train() verifies state.json fully before using it.
        let state: Option<TrainState> =
            std::fs::read_to_string(rd.state()).ok().and_then(|t| serde_json::from_str(&t).ok());
        let done = state.as_ref().map_or(0, |s| s.epochs_done);
        if epochs == 0 || epochs < done {
            return Err(refuse("epochs", format!("{epochs} is fewer than the {done} epochs the run has finished")));
        }
        if state.as_ref().is_some_and(|s| s.stopped_early) && epochs > run.train.epochs {
            return Err(refuse(
                "epochs",
                format!(
                    "the run stopped early after {done} epochs (validation loss did not improve for {} epochs); more epochs would not train further",
                    run.train.patience
                ),
            ));
        }
        if epochs != run.train.epochs {
            notes.push(format!("epochs: {} -> {epochs}", run.train.epochs));
            run.train.epochs = epochs;
        }
    }
    let given = changes.data.is_some();
    let (data, source, notice) = load_for_run(&run, changes.data.clone())?;
    if notice.is_some() {
        return Err(refuse(
            "data",
            format!(
                "{} is not the data the run was trained on; a resumed run continues on the same data",
                source.describe()
            ),
        ));
    }
    if given && source != run.data {
        notes.push(format!("data moved: {} -> {} (same content)", run.data.describe(), source.describe()));
        run.data = source;
    }
    let params = ParamStore::init(&run.model, run.train.seed);
    let notice = (!notes.is_empty()).then(|| format!("resume with {}", notes.join("; ")));
    Ok(Prepared { run, data, params, notice })
}

/// How `execute` may treat the directory it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A new run: the directory must be new or empty; `force` replaces a run
    /// (or writes beside other files) there instead.
    New { force: bool },
    /// Continue the run in the directory.
    Resume,
}

/// The files of a run, removed when a new run replaces it (`--force`); other files stay.
fn remove_run(rd: &RunDir) -> Result<(), PipelineError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| PipelineError::Io { path: p.display().to_string(), source }
    };
    for p in [rd.config(), rd.model(), rd.metrics(), rd.report_md(), rd.report_json()] {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&p)(e)),
            _ => {}
        }
    }
    let ck = rd.checkpoint();
    if ck.exists() {
        std::fs::remove_dir_all(&ck).map_err(io(&ck))?;
    }
    Ok(())
}

/// Check a directory may take a new run (before any work, and again under the lock).
pub fn check_new_dir(dir: &Path, force: bool) -> Result<(), PipelineError> {
    if force {
        return Ok(());
    }
    if RunDir::new(dir).config().exists() {
        return Err(PipelineError::Exists(dir.display().to_string()));
    }
    if dir.exists() && !dir.is_dir() {
        return Err(OutputError::Exists(dir.to_path_buf()).into());
    }
    Ok(crate::output::require_empty(dir, "run")?)
}

/// Train (resuming if `start` says so), evaluate the kept checkpoint, write the
/// report; `dir` is locked against other cimnet processes throughout.
pub fn execute(
    p: Prepared,
    dir: &Path,
    start: Start,
    opts: &EngineOptions,
    progress: &mut dyn Progress,
) -> Result<Report, PipelineError> {
    execute_with(p, dir, start, progress, &mut |run, params, data, progress| {
        choose_engine(run, params, data, opts, &mut |e| progress.tune(e))
    })
}

/// Where `execute_with` gets its engine: from the run's config (which it may
/// complete with the kernel members chosen), its initial parameters and data.
pub type EngineSource<'a> =
    dyn FnMut(&mut RunConfig, ParamStore, &Dataset, &mut dyn Progress) -> Result<Chosen, EngineError> + 'a;

/// `execute` with the engine from `engine` (a grid's group hands out members of
/// a shared engine this way).
pub fn execute_with(
    mut p: Prepared,
    dir: &Path,
    start: Start,
    progress: &mut dyn Progress,
    engine: &mut EngineSource,
) -> Result<Report, PipelineError> {
    // The engine first: a missing GPU leaves no half-made run directory behind.
    let chosen = engine(&mut p.run, p.params, &p.data, progress)?;
    let mut engine = chosen.engine;
    if let Some(n) = &chosen.notice {
        progress.message(n);
    }
    p.run.train.backend = chosen.backend.to_string();
    let _lock = DirLock::acquire(dir)?;
    let rd = RunDir::new(dir);
    match start {
        Start::New { force } => {
            check_new_dir(dir, force)?;
            if force {
                remove_run(&rd)?;
            }
        }
        Start::Resume if !rd.config().exists() => return Err(PipelineError::NotARun(dir.display().to_string())),
        Start::Resume => {}
    }
    crate::output::remove_stale_temps(dir)?;
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
    let best = ParamStore::load_for(&rd.model(), &p.run.model)?;
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
