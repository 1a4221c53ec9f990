//! `cimnet train`, `cimnet eval`, `cimnet predict`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use cimnet::config::{Attention, ModalitySet, Tasks, EMOTION_LABELS, EMOTION_NAMES};
use cimnet::data::{make_batches, BatchMode, Dataset, SplitName};
use cimnet::engine::{Engine, EngineOptions, TuneMode};
use cimnet::gpu::tune::TuneEvent;
use cimnet::output::refuse_existing;
use cimnet::params::ParamStore;
use cimnet::train::evaluate::evaluate;
use cimnet::train::grid::{self, GridOutcome, GridSpec, Shard};
use cimnet::train::group::GroupStatus;
use cimnet::train::pipeline::{self, ResumeChanges, RunSpec, Start};
use cimnet::train::report::Report;
use cimnet::train::run::{EpochRecord, Progress, RunConfig, RunDir, SelectMetric, TrainConfig};
use cimnet::train::source::DataSource;

use super::parse;

/// Where the data comes from (shared by train / eval / predict).
#[derive(Debug, Args, Clone)]
pub struct DataArgs {
    /// A native .npz dataset or a directory in the authors' format (text.npz, audio.npz, video.npz).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use synthetic MOSEI-shaped data instead of a file.
    #[arg(long, conflicts_with = "data")]
    pub synthetic: bool,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 0, requires = "synthetic")]
    pub synth_seed: u64,
    /// Scale of the synthetic data (1.0 = MOSEI's split sizes).
    #[arg(long, default_value_t = 1.0, requires = "synthetic", value_parser = parse::synth_scale)]
    pub synth_scale: f64,
}

impl DataArgs {
    /// The source named on the command line, or the bundled MOSI.
    pub fn source_or_mosi(&self) -> DataSource {
        self.source().unwrap_or(DataSource::Mosi)
    }

    /// The source named on the command line, if any.
    pub fn source(&self) -> Option<DataSource> {
        if let Some(p) = &self.data {
            Some(DataSource::from_path(p))
        } else if self.synthetic {
            Some(DataSource::Synthetic { seed: self.synth_seed, scale: self.synth_scale })
        } else {
            None
        }
    }
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Modality set: T, A, V, TV, TA, AV or TAV.
    #[arg(long, default_value = "TAV")]
    pub modalities: ModalitySet,
    /// Attention: cim, self or none.
    #[arg(long, default_value = "cim")]
    pub attention: Attention,
    /// Tasks: mtl, sentiment or emotion (default: mtl when the data has emotion labels, else sentiment).
    #[arg(long)]
    pub tasks: Option<Tasks>,
    /// Epochs to train (with --resume: a larger number continues the run further).
    #[arg(long, default_value_t = 50, value_parser = parse::at_least_one)]
    pub epochs: usize,
    /// Videos per batch.
    #[arg(long, default_value_t = 16, value_parser = parse::at_least_one)]
    pub batch: usize,
    #[arg(long, default_value_t = 1e-3, value_parser = parse::learning_rate)]
    pub lr: f64,
    /// Stop after this many epochs without a lower validation loss.
    #[arg(long, default_value_t = 20, value_parser = parse::at_least_one)]
    pub patience: usize,
    /// Seed of initialisation, batching and dropout.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Validation metric that picks the kept checkpoint: loss, sentiment-accuracy, sentiment-f1, emotion-f1, emotion-wa.
    #[arg(long, default_value = "loss")]
    pub select: SelectMetric,
    /// Batching: bucketed (by length) or random (the authors').
    #[arg(long, default_value = "bucketed")]
    pub batching: BatchMode,
    /// Z-score every feature with statistics of the training split.
    #[arg(long)]
    pub normalize: bool,
    /// Also evaluate the test split after every epoch (test_curve.jsonl) and add the published
    /// protocol's row (per metric, the best test value over the epochs; optimistic) to the report.
    /// Never used for a choice.
    #[arg(long)]
    pub test_curve: bool,
    #[arg(long, default_value_t = 200, value_parser = parse::width)]
    pub hidden: usize,
    #[arg(long, default_value_t = 100, value_parser = parse::width)]
    pub dense: usize,
    #[arg(long, default_value_t = 0.3, value_parser = parse::dropout)]
    pub dropout: f64,
    /// Engine: auto (the GPU when an adapter exists, else the CPU), gpu (WGSL kernels through wgpu) or cpu (the f64 reference).
    #[arg(long, default_value = "auto", value_parser = ["auto", "gpu", "cpu"])]
    pub backend: String,
    /// GPU adapter to use, by (part of) its name (default: CIMNET_ADAPTER, else discrete, integrated, software).
    #[arg(long)]
    pub adapter: Option<String>,
    /// Kernel members: auto (the cached race for this adapter, else race now, <= 10 s),
    /// off (each family's default), fresh (race again). A run records its members
    /// in config.json; --resume, eval and predict use those.
    #[arg(long, default_value = "auto")]
    pub tune: TuneMode,
    /// Run directory (created; must be new or empty).
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Replace the run in --out (its files; other files there stay), or write into a non-empty directory.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
}

/// Progress bar: epoch, loss and utterances/s.
pub struct Bar {
    bar: Option<ProgressBar>,
    /// A grid's group line: runs finished of all, running with their epochs, queued.
    group: Option<ProgressBar>,
    epochs: usize,
    start: std::time::Instant,
}

impl Progress for Bar {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, steps: usize) {
        self.epochs = epochs;
        self.start = std::time::Instant::now();
        let bar = ProgressBar::new(steps as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} batches {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, epochs));
        self.bar = Some(bar);
    }
    fn step(&mut self, done: usize, utterances: usize) {
        if let Some(b) = &self.bar {
            b.set_position(done as u64);
            let rate = utterances as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
            b.set_message(format!("{rate:.0} utt/s"));
        }
    }
    fn epoch_end(&mut self, r: &EpochRecord) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        let v = &r.valid;
        let mut line = format!(
            "epoch {:>3}/{}  train loss {:.4}  valid loss {:.4}",
            r.epoch + 1,
            self.epochs,
            r.train_loss,
            v.loss
        );
        if let Some(s) = v.sentiment {
            line += &format!("  sent acc {:.2} F1 {:.2}", 100.0 * s.accuracy, 100.0 * s.weighted_f1);
        }
        if let (Some(f), Some(w)) = (&v.emotion_at_f1, &v.emotion_at_wa) {
            line += &format!(
                "  emo F1 {:.2} WA {}",
                100.0 * f.mean_weighted_f1,
                w.mean_weighted_accuracy.map_or("n/a".into(), |x| format!("{:.2}", 100.0 * x))
            );
        }
        line += &format!("  {:.1}s {:.0} utt/s{}", r.seconds, r.utterances_per_second, if r.best { "  *" } else { "" });
        println!("{line}");
    }
    fn message(&mut self, text: &str) {
        match &self.group {
            // Not `println` on the bar: a hidden bar (output not a terminal) drops it.
            Some(g) => g.suspend(|| println!("{text}")),
            None => println!("{text}"),
        }
    }
    fn group(&mut self, s: &GroupStatus) {
        if s.finished == s.total {
            if let Some(g) = self.group.take() {
                g.finish_and_clear();
            }
            return;
        }
        let g = self.group.get_or_insert_with(|| {
            let g = ProgressBar::new(s.total as u64);
            g.set_style(
                ProgressStyle::with_template("runs [{bar:30}] {pos}/{len} finished, {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            g
        });
        g.set_position(s.finished as u64);
        let (lo, hi) = s.running.iter().fold((usize::MAX, 0), |(lo, hi), r| (lo.min(r.1), hi.max(r.1)));
        let of = s.running.first().map_or(0, |r| r.2);
        let epochs = if s.running.is_empty() {
            String::new()
        } else if lo == hi {
            format!(" at epoch {lo}/{of}")
        } else {
            format!(" at epochs {lo}-{hi}/{of}")
        };
        g.set_message(format!("{} training{epochs}, {} queued, {} grouped steps", s.running.len(), s.queued, s.rounds));
    }
    fn tune(&mut self, event: &TuneEvent) {
        super::print_tune(event);
    }
}

impl TrainArgs {
    fn spec(&self) -> RunSpec {
        RunSpec {
            source: self.data.source().unwrap_or(DataSource::Mosi),
            modalities: self.modalities,
            attention: self.attention,
            tasks: self.tasks,
            hidden: self.hidden,
            dense: self.dense,
            dropout: self.dropout,
            train: TrainConfig {
                epochs: self.epochs,
                batch: self.batch,
                lr: self.lr,
                patience: self.patience,
                seed: self.seed,
                select: self.select,
                batching: self.batching,
                normalize: self.normalize,
                backend: self.backend.clone(),
                test_curve: self.test_curve,
            },
        }
    }
}

pub fn new_bar() -> Bar {
    Bar { bar: None, group: None, epochs: 0, start: std::time::Instant::now() }
}

/// Options a --resume may take; every other option given with it is refused.
const RESUME_OPTIONS: [&str; 4] = ["resume", "epochs", "data", "adapter"];

/// What the options given beside --resume ask to change, or why they cannot.
fn resume_changes(a: &TrainArgs, given: &[String], dir: &Path) -> Result<ResumeChanges> {
    let refused: Vec<String> = given
        .iter()
        .filter(|id| !RESUME_OPTIONS.contains(&id.as_str()))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    if !refused.is_empty() {
        bail!(
            "{} cannot be given with --resume: a resumed run keeps the configuration in {} (changing it mid-run would mix two setups in one result). With --resume only --epochs (more epochs), --data (the same data, moved) and --adapter may be given; start a new run with --out to change the rest",
            refused.join(", "),
            RunDir::new(dir).config().display()
        );
    }
    let has = |id: &str| given.iter().any(|g| g == id);
    Ok(ResumeChanges {
        epochs: has("epochs").then_some(a.epochs),
        data: if has("data") { a.data.source() } else { None },
    })
}

pub fn train_cmd(a: TrainArgs, given: &[String]) -> Result<()> {
    let (dir, prepared, start) = if let Some(dir) = &a.resume {
        let changes = resume_changes(&a, given, dir)?;
        (dir.clone(), pipeline::reopen(dir, &changes)?, Start::Resume)
    } else {
        let dir = a.out.clone().context("--out is required without --resume")?;
        pipeline::check_new_dir(&dir, a.force)?;
        let spec = a.spec();
        let (data, fingerprint) = spec.source.load_fingerprinted()?;
        (dir, pipeline::prepare(&spec, data, fingerprint)?, Start::New { force: a.force })
    };
    if let Some(n) = &prepared.notice {
        println!("{n}");
    }
    let opts = EngineOptions { adapter: a.adapter.clone(), tune: a.tune };
    let report = pipeline::execute(prepared, &dir, start, &opts, &mut new_bar())?;
    let rd = RunDir::new(&dir);
    println!("\n{}", report.markdown());
    println!("wrote {}, {}, {}", rd.model().display(), rd.report_md().display(), rd.report_json().display());
    Ok(())
}

/// The engine that evaluates a finished run (eval, predict).
#[derive(Debug, Args, Clone)]
pub struct EngineChoice {
    /// Engine: auto, gpu or cpu (default: the run's own).
    #[arg(long, value_parser = ["auto", "gpu", "cpu"])]
    pub backend: Option<String>,
    /// GPU adapter to use, by (part of) its name.
    #[arg(long)]
    pub adapter: Option<String>,
    /// Kernel members where the run recorded none: auto (the cached race for this adapter, else race now, <= 10 s),
    /// off (each family's default), fresh (race again). A run records its members
    /// in config.json; --resume, eval and predict use those.
    #[arg(long, default_value = "auto")]
    pub tune: TuneMode,
}

fn make_engine(params: ParamStore, data: Dataset, run: &RunConfig, choice: &EngineChoice) -> Result<Box<dyn Engine>> {
    let mut run = run.clone();
    if let Some(b) = &choice.backend {
        run.train.backend = b.clone();
    }
    let opts = EngineOptions { adapter: choice.adapter.clone(), tune: choice.tune };
    let chosen = cimnet::train::engine::choose_engine(&mut run, params, &data, &opts, &mut super::print_tune)?;
    if let Some(n) = &chosen.notice {
        eprintln!("{n}");
    }
    Ok(chosen.engine)
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run directory written by `cimnet train`.
    #[arg(long)]
    pub run: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Split to evaluate: train, valid or test.
    #[arg(long, default_value = "test")]
    pub split: SplitName,
    /// Print the metrics as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub engine: EngineChoice,
}

/// Load a finished run: its config, kept weights, thresholds and data.
fn open_run(run_dir: &Path, data: &DataArgs) -> Result<(RunConfig, ParamStore, Report, Dataset)> {
    let rd = RunDir::new(run_dir);
    let run = rd.read_config().with_context(|| format!("{} is not a cimnet run directory", run_dir.display()))?;
    // The weights must be the run's model on either engine (the GPU engine builds
    // itself from the weights' own shapes and would not notice on its own).
    let params = ParamStore::load_for(&rd.model(), &run.model)?;
    let report: Report = serde_json::from_str(
        &fs::read_to_string(rd.report_json())
            .with_context(|| format!("{} has no report.json: the run has not finished", run_dir.display()))?,
    )
    .with_context(|| format!("reading {}", rd.report_json().display()))?;
    let (ds, source, notice) = pipeline::load_for_run(&run, data.source())?;
    if let Some(n) = &notice {
        eprintln!("{n}");
    }
    ds.require(run.model.modalities)?;
    for mm in run.model.modalities.modalities() {
        if ds.dims[mm.index()] != run.model.dim(mm) {
            bail!(
                "{} has {}-dimensional {} features but the run's model was trained on {}",
                source.describe(),
                ds.dims[mm.index()],
                mm.name(),
                run.model.dim(mm)
            );
        }
    }
    if run.model.tasks.has_emotion() && !ds.has_emotion {
        bail!("the run's model has an emotion head but {} has no emotion labels", source.describe());
    }
    Ok((run, params, report, ds))
}

/// A finished run's predictions on a split (with the run's config and report).
fn predict_run(
    dir: &Path,
    data: &DataArgs,
    split: SplitName,
    choice: &EngineChoice,
) -> Result<(RunConfig, Report, Dataset, cimnet::engine::Predictions)> {
    let (run, params, report, ds) = open_run(dir, data)?;
    let mut engine = make_engine(params, ds.clone(), &run, choice)?;
    let batches = make_batches(&ds.lens(split), run.train.batch, BatchMode::Bucketed, 0);
    let preds = engine.predict(split, &batches)?;
    Ok((run, report, ds, preds))
}

pub fn eval_cmd(a: EvalArgs) -> Result<()> {
    let (_, report, ds, preds) = predict_run(&a.run, &a.data, a.split, &a.engine)?;
    // Thresholds come from the run's validation split, never from the evaluated data.
    let m = evaluate(&ds, a.split, &preds, report.result.thresholds);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&m)?);
        return Ok(());
    }
    println!("{} on the {} split ({} utterances): loss {:.4}", report.variant, a.split, preds.loss.utterances, m.loss);
    if let Some(s) = m.sentiment {
        println!("sentiment: accuracy {:.2}, weighted F1 {:.2}", 100.0 * s.accuracy, 100.0 * s.weighted_f1);
    }
    if let (Some(f), Some(w)) = (&m.emotion_at_f1, &m.emotion_at_wa) {
        println!(
            "emotion: mean weighted F1 {:.2} (t = {:.2}), mean WA {} (t = {:.2})",
            100.0 * f.mean_weighted_f1,
            f.threshold,
            w.mean_weighted_accuracy.map_or("n/a".into(), |x| format!("{:.2}", 100.0 * x)),
            w.threshold
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    #[arg(long)]
    pub run: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value = "test")]
    pub split: SplitName,
    /// Output file: .jsonl (one JSON object per utterance) or .csv.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub engine: EngineChoice,
}

pub fn predict_cmd(a: PredictArgs) -> Result<()> {
    let ext = a.out.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if ext != "jsonl" && ext != "csv" {
        bail!("--out must end in .jsonl or .csv (got {})", a.out.display());
    }
    refuse_existing(&a.out, a.force)?;
    let (_, report, ds, preds) = predict_run(&a.run, &a.data, a.split, &a.engine)?;
    let thresholds = report.result.thresholds.unwrap_or_default();
    let mut rows: Vec<serde_json::Value> = Vec::new();
    for (vi, v) in ds.split(a.split).iter().enumerate() {
        for i in 0..v.len {
            let mut row = serde_json::json!({ "video": v.id, "position": i });
            if let Some(s) = &preds.sentiment {
                let p = s[vi][i];
                row["sentiment_negative"] = p[0].into();
                row["sentiment_positive"] = p[1].into();
                row["sentiment_label"] = (if p[1] >= p[0] { "positive" } else { "negative" }).into();
            }
            if let Some(e) = &preds.emotion {
                let p = e[vi][i];
                for k in 0..EMOTION_LABELS {
                    row[format!("{}_prob", EMOTION_NAMES[k])] = p[k].into();
                    row[format!("{}_label_f1", EMOTION_NAMES[k])] = u8::from(p[k] >= thresholds.f1).into();
                    row[format!("{}_label_wa", EMOTION_NAMES[k])] = u8::from(p[k] >= thresholds.wa).into();
                }
            }
            rows.push(row);
        }
    }
    let mut text = Vec::new();
    if ext == "jsonl" {
        for r in &rows {
            writeln!(text, "{r}")?;
        }
    } else {
        let mut w = csv::Writer::from_writer(&mut text);
        let keys: Vec<String> =
            rows.first().and_then(|r| r.as_object()).map(|o| o.keys().cloned().collect()).unwrap_or_default();
        w.write_record(&keys)?;
        for r in &rows {
            w.write_record(keys.iter().map(|k| match &r[k] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            }))?;
        }
        w.flush()?;
        drop(w);
    }
    cimnet::params::write_atomic(&a.out, &text).with_context(|| format!("writing {}", a.out.display()))?;
    println!("wrote {} predictions for the {} split to {}", rows.len(), a.split, a.out.display());
    Ok(())
}

#[derive(Debug, Args)]
pub struct AttentionArgs {
    /// Run directory written by `cimnet train`.
    #[arg(long)]
    pub run: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Video id (as in the data's ids); searched in --split, or in every split if not given.
    #[arg(long)]
    pub video: String,
    #[arg(long)]
    pub split: Option<SplitName>,
    /// Output PNG file.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn attention_cmd(a: AttentionArgs) -> Result<()> {
    let rd = RunDir::new(&a.run);
    let run = rd.read_config().with_context(|| format!("{} is not a cimnet run directory", a.run.display()))?;
    if run.model.attention == Attention::None {
        bail!("the run's model uses --attention none: it has no attention to draw");
    }
    refuse_existing(&a.out, a.force)?;
    let params = ParamStore::load_for(&rd.model(), &run.model)?;
    let (ds, source, notice) = pipeline::load_for_run(&run, a.data.source())?;
    if let Some(n) = &notice {
        eprintln!("{n}");
    }
    ds.require(run.model.modalities)?;
    let splits: Vec<SplitName> = a.split.map_or(SplitName::ALL.to_vec(), |s| vec![s]);
    let found = splits.iter().find_map(|&s| ds.split(s).iter().position(|v| v.id == a.video).map(|i| (s, i)));
    let Some((split, index)) = found else {
        let some: Vec<&str> = splits.iter().flat_map(|&s| ds.split(s).iter().take(3).map(|v| v.id.as_str())).collect();
        bail!("video '{}' is not in {} (ids look like: {})", a.video, source.describe(), some.join(", "));
    };
    let mut batch = ds.batch(split, &[index]);
    cimnet::grads::restrict_to_model(&mut batch, &params);
    let maps = cimnet::train::heatmap::attention_maps(&params, &batch)?;
    let caption = format!("{} video {} ({} split, {} utterances)", run.model.modalities, a.video, split, batch.u);
    let (w, h, rgb) = cimnet::train::heatmap::render(&maps, &caption);
    cimnet::train::heatmap::write_png(&a.out, w, h, &rgb).with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "wrote {} ({} attention matrices of {}x{} for video {})",
        a.out.display(),
        maps.len(),
        batch.u,
        batch.u,
        a.video
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct GridArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Seeds per cell (1..=N).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub seeds: u64,
    /// Modality sets (comma-separated).
    #[arg(long, default_value = "T,A,V,TA,TV,AV,TAV", value_delimiter = ',')]
    pub modalities: Vec<ModalitySet>,
    /// Attention kinds (comma-separated).
    #[arg(long, default_value = "cim", value_delimiter = ',')]
    pub attention: Vec<Attention>,
    #[arg(long, default_value_t = 50, value_parser = parse::at_least_one)]
    pub epochs: usize,
    #[arg(long, default_value_t = 16, value_parser = parse::at_least_one)]
    pub batch: usize,
    #[arg(long, default_value_t = 1e-3, value_parser = parse::learning_rate)]
    pub lr: f64,
    #[arg(long, default_value_t = 20, value_parser = parse::at_least_one)]
    pub patience: usize,
    #[arg(long, default_value = "loss")]
    pub select: SelectMetric,
    #[arg(long)]
    pub normalize: bool,
    /// Also evaluate each run's test split after every epoch and report the published protocol
    /// (epoch chosen on test, optimistic) beside the honest one.
    #[arg(long)]
    pub test_curve: bool,
    #[arg(long, default_value_t = 200, value_parser = parse::width)]
    pub hidden: usize,
    #[arg(long, default_value_t = 100, value_parser = parse::width)]
    pub dense: usize,
    #[arg(long, default_value_t = 0.3, value_parser = parse::dropout)]
    pub dropout: f64,
    /// Engine: auto (the GPU when an adapter exists, else the CPU), gpu or cpu.
    #[arg(long, default_value = "auto", value_parser = ["auto", "gpu", "cpu"])]
    pub backend: String,
    /// GPU adapter to use, by (part of) its name.
    #[arg(long)]
    pub adapter: Option<String>,
    /// Kernel members: auto (the cached race for this adapter, else race now, <= 10 s),
    /// off (each family's default), fresh (race again). A run records its members
    /// in config.json; --resume, eval and predict use those.
    #[arg(long, default_value = "auto")]
    pub tune: TuneMode,
    /// Grid directory (one run directory per cell and seed; rerunning resumes); with --merge, where the report goes.
    #[arg(long)]
    pub out: PathBuf,
    /// Start the grid afresh: replace the runs already in --out (or write into a non-empty directory);
    /// with --merge: write the report into a non-empty --out.
    #[arg(long)]
    pub force: bool,
    /// Train at most N runs at once, side by side on one device (1: one by one). Default: on a GPU
    /// as many as fit its memory budget; on the CPU one (the CPU engine gains nothing from grouping).
    #[arg(long, value_parser = parse::at_least_one)]
    pub group: Option<usize>,
    /// Train only the I-th of N slices of the grid's runs (1-based; run k, counted from 0 in the grid's
    /// fixed order, goes to shard k mod N + 1), e.g. one per SLURM array task; then --merge the N directories.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Build the grid's report.md / report.json in --out from the directories of its finished
    /// shards (--shard 1/N .. N/N, each once); the grid's options come from their grid.json.
    #[arg(long, num_args = 1.., value_name = "DIR", conflicts_with = "shard")]
    pub merge: Vec<PathBuf>,
}

/// Options --merge may take; every other option given with it is refused.
const MERGE_OPTIONS: [&str; 3] = ["merge", "out", "force"];

pub fn grid_cmd(a: GridArgs, given: &[String]) -> Result<()> {
    if !a.merge.is_empty() {
        return merge_cmd(&a, given);
    }
    let Some(source) = a.data.source() else {
        bail!("the grid compares multi-task with single-task, so it needs emotion labels: give --data FILE|DIR or --synthetic (the bundled MOSI has none)");
    };
    let spec = GridSpec {
        source,
        sets: a.modalities.clone(),
        attentions: a.attention.clone(),
        seeds: a.seeds,
        hidden: a.hidden,
        dense: a.dense,
        dropout: a.dropout,
        train: TrainConfig {
            epochs: a.epochs,
            batch: a.batch,
            lr: a.lr,
            patience: a.patience,
            seed: 1,
            select: a.select,
            batching: BatchMode::Bucketed,
            normalize: a.normalize,
            backend: a.backend.clone(),
            test_curve: a.test_curve,
        },
        engine: EngineOptions { adapter: a.adapter.clone(), tune: a.tune },
        shard: a.shard,
        force: a.force,
        group: a.group,
    };
    match grid::run_grid(&spec, &a.out, &mut new_bar())? {
        GridOutcome::Report(report) => {
            println!("\n{}", grid::grid_markdown(&report));
            println!("wrote {} and {}", a.out.join("report.md").display(), a.out.join("report.json").display());
        }
        GridOutcome::Shard { shard, runs, wall_seconds } => {
            let train: f64 = runs.iter().map(|r| r.train_seconds).sum();
            println!(
                "shard {shard}: all {} of its runs have finished in {} ({train:.1} s of training; {wall_seconds:.1} s wall, \
                 every invocation). The report comes once all {} shards have: cimnet grid --merge DIR... --out DIR",
                runs.len(),
                a.out.display(),
                shard.count
            );
        }
    }
    Ok(())
}

/// `cimnet grid --merge DIR... --out DIR`.
fn merge_cmd(a: &GridArgs, given: &[String]) -> Result<()> {
    let refused: Vec<String> = given
        .iter()
        .filter(|id| !MERGE_OPTIONS.contains(&id.as_str()))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    if !refused.is_empty() {
        bail!(
            "{} cannot be given with --merge: a merge takes the grid's options from the shards' grid.json (training them otherwise would be another grid); only --out and --force go with --merge",
            refused.join(", ")
        );
    }
    let report = grid::merge(&a.merge, &a.out, a.force)?;
    println!("{}", grid::grid_markdown(&report));
    println!(
        "merged {} shards into {} and {}",
        a.merge.len(),
        a.out.join("report.md").display(),
        a.out.join("report.json").display()
    );
    Ok(())
}
