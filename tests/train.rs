//! The training loop: exact resume, atomic checkpoints, the divergence guard,
//! honest model selection; and the train / eval / predict CLI end to end.

use std::path::Path;
use std::process::Command;

use cimnet::config::AdamConfig;
use cimnet::config::{Attention, ModalitySet, ModelConfig, Tasks};
use cimnet::cpu::engine::CpuEngine;
use cimnet::data::{native, synth, Dataset, SplitName};
use cimnet::engine::{Engine, EngineError, EngineState, LossSums, Predictions};
use cimnet::params::ParamStore;
use cimnet::train::run::{train, EpochRecord, Progress, RunConfig, RunDir, TrainConfig, TrainError};
use cimnet::train::source::DataSource;

fn tiny_run(dir: &Path, tasks: Tasks, epochs: usize) -> (RunConfig, Dataset) {
    let data = synth::tiny(3);
    let path = dir.join("tiny.npz");
    if !path.exists() {
        native::write(&data, &path).unwrap();
    }
    let mut model = ModelConfig::new(ModalitySet::TAV, Attention::Cim, tasks, data.dims);
    model.hidden = 6;
    model.dense = 5;
    let train = TrainConfig { epochs, batch: 4, backend: "cpu".into(), seed: 11, ..TrainConfig::default() };
    let data_src = DataSource::Path { path };
    (RunConfig { model, train, data: data_src, fingerprint: None, normalizer: None, kernels: None }, data)
}

fn engine(run: &RunConfig, data: &Dataset) -> CpuEngine {
    let p = ParamStore::init(&run.model, run.train.seed);
    CpuEngine::new(p, data.clone(), AdamConfig { lr: run.train.lr, ..AdamConfig::default() }, run.train.seed)
}

/// Stops the run after `after` epochs, like a user's Ctrl-C at an epoch boundary.
struct StopAfter(usize, usize);
impl Progress for StopAfter {
    fn epoch_end(&mut self, _r: &EpochRecord) {
        self.1 += 1;
    }
    fn should_stop(&mut self) -> bool {
        self.1 >= self.0
    }
}

fn losses(records: &[EpochRecord]) -> Vec<(u64, u64)> {
    records.iter().map(|r| (r.train_loss.to_bits(), r.valid.loss.to_bits())).collect()
}

#[test]
fn a_resumed_run_gives_bit_identical_losses() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, data) = tiny_run(tmp.path(), Tasks::Mtl, 5);
    let full_dir = RunDir::new(&tmp.path().join("full"));
    let full = train(&mut engine(&run, &data), &data, &run, &full_dir, &mut ()).unwrap();
    assert_eq!(full.records.len(), 5);
    assert!(full.records[4].train_loss < full.records[0].train_loss, "training reduces the loss");

    let dir = RunDir::new(&tmp.path().join("stopped"));
    let part = train(&mut engine(&run, &data), &data, &run, &dir, &mut StopAfter(2, 0)).unwrap();
    assert_eq!(part.records.len(), 2);
    // A fresh engine (fresh initial parameters) resumes from the checkpoint.
    let rest = train(&mut engine(&run, &data), &data, &run, &dir, &mut ()).unwrap();
    assert_eq!(rest.state.epochs_done, 5);
    // The resumed outcome holds the earlier epochs (read back from metrics.jsonl) and the new ones.
    assert_eq!(losses(&rest.records[..2]), losses(&part.records), "metrics.jsonl round-trips exactly");
    assert_eq!(losses(&rest.records), losses(&full.records), "every epoch's train and valid loss, bit for bit");
    // metrics.jsonl has one line per epoch, no duplicates.
    let lines = std::fs::read_to_string(dir.metrics()).unwrap();
    assert_eq!(lines.lines().count(), 5);
    let (a, b) = (ParamStore::load(&dir.model()).unwrap(), ParamStore::load(&full_dir.model()).unwrap());
    assert!(a == b, "the resumed run keeps the same weights, bit for bit");
    // Only the newest optimizer file remains, and no temporary file anywhere.
    let names: Vec<String> =
        std::fs::read_dir(dir.checkpoint()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| !n.contains(".tmp")));
}

/// Wraps the CPU engine and makes the loss non-finite from a given epoch on.
struct Diverging {
    inner: CpuEngine,
    steps_per_epoch: u64,
    from_epoch: u64,
    last_step: u64,
}
impl Engine for Diverging {
    fn describe(&self) -> String {
        "diverging test engine".into()
    }
    fn train_step(&mut self, v: &[usize], step: u64) -> Result<(), EngineError> {
        self.last_step = step;
        self.inner.train_step(v, step)
    }
    fn take_train_loss(&mut self) -> Result<LossSums, EngineError> {
        let mut l = self.inner.take_train_loss()?;
        if self.last_step / self.steps_per_epoch >= self.from_epoch {
            l.loss = f64::NAN;
        }
        Ok(l)
    }
    fn predict(&mut self, s: SplitName, b: &[Vec<usize>]) -> Result<Predictions, EngineError> {
        self.inner.predict(s, b)
    }
    fn state(&mut self) -> Result<EngineState, EngineError> {
        self.inner.state()
    }
    fn set_state(&mut self, s: &EngineState) -> Result<(), EngineError> {
        self.inner.set_state(s)
    }
}

#[test]
fn a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, data) = tiny_run(tmp.path(), Tasks::Sentiment, 6);
    let steps = data.split(SplitName::Train).len().div_ceil(run.train.batch) as u64;
    let dir = RunDir::new(&tmp.path().join("run"));
    let mut e = Diverging { inner: engine(&run, &data), steps_per_epoch: steps, from_epoch: 2, last_step: 0 };
    let err = train(&mut e, &data, &run, &dir, &mut ()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TrainError::Diverged { epoch: 3, .. }), "{msg}");
    assert!(msg.contains("NaN") && msg.contains("last good checkpoint"), "{msg}");
    // The kept weights and the checkpoint are those of a finished epoch, and load.
    ParamStore::load(&dir.model()).unwrap();
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.state()).unwrap()).unwrap();
    assert_eq!(state["epochs_done"], 2);
}

#[test]
fn selection_uses_validation_only() {
    // The kept epoch is the one with the best validation score, whatever test says.
    let tmp = tempfile::tempdir().unwrap();
    let (run, data) = tiny_run(tmp.path(), Tasks::Mtl, 4);
    let dir = RunDir::new(&tmp.path().join("sel"));
    let out = train(&mut engine(&run, &data), &data, &run, &dir, &mut ()).unwrap();
    let best = out.records.iter().enumerate().min_by(|a, b| a.1.valid.loss.total_cmp(&b.1.valid.loss)).unwrap().0;
    assert_eq!(out.state.best_epoch, Some(best));
    let marked: Vec<usize> = out.records.iter().filter(|r| r.best).map(|r| r.epoch).collect();
    assert_eq!(marked.last(), Some(&best));
}

// ---- the CLI end to end ----

fn cimnet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cimnet")).args(args).output().expect("run cimnet")
}

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn cli_train_eval_predict_on_tiny_synthetic_data() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tiny.npz");
    native::write(&synth::tiny(5), &data).unwrap();
    let run = tmp.path().join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    let out = ok(&cimnet(&[
        "train",
        "--data",
        d,
        "--epochs",
        "2",
        "--batch",
        "4",
        "--hidden",
        "8",
        "--dense",
        "6",
        "--backend",
        "cpu",
        "--out",
        r,
    ]));
    assert!(out.contains("epoch   2/2"), "{out}");
    for f in ["config.json", "model.safetensors", "metrics.jsonl", "report.md", "report.json"] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("## Sentiment") && report.contains("## Emotion, test split"), "{report}");
    assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().count(), 2);

    let ev = ok(&cimnet(&["eval", "--run", r, "--split", "test", "--json"]));
    let m: serde_json::Value = serde_json::from_str(&ev).unwrap();
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(m["sentiment"], rep["result"]["test"]["sentiment"], "eval reproduces the report's test metrics");
    assert_eq!(m["thresholds"], rep["result"]["thresholds"], "test uses the thresholds chosen on validation");

    let preds = tmp.path().join("p.jsonl");
    ok(&cimnet(&["predict", "--run", r, "--out", preds.to_str().unwrap()]));
    let text = std::fs::read_to_string(&preds).unwrap();
    let test_utts: usize = synth::tiny(5).utterances(SplitName::Test);
    assert_eq!(text.lines().count(), test_utts);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(first["sentiment_positive"].as_f64().is_some() && first["no-emotion_prob"].as_f64().is_some());
    let csv_path = tmp.path().join("p.csv");
    ok(&cimnet(&["predict", "--run", r, "--out", csv_path.to_str().unwrap()]));
    let csv_text = std::fs::read_to_string(&csv_path).unwrap();
    assert!(csv_text.starts_with("video,position,"), "{}", &csv_text[..80.min(csv_text.len())]);
    assert_eq!(csv_text.lines().count(), test_utts + 1);

    // Resume of a finished run does no more epochs and keeps its files.
    let before = std::fs::read(run.join("model.safetensors")).unwrap();
    ok(&cimnet(&["train", "--resume", r]));
    assert!(std::fs::read(run.join("model.safetensors")).unwrap() == before, "a finished run's weights are untouched");
}

#[test]
fn cli_errors_name_what_to_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let r = run.to_str().unwrap();
    // Missing data file.
    let o = cimnet(&["train", "--data", "/nonexistent/d.npz", "--backend", "cpu", "--out", r]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("/nonexistent/d.npz"));
    // Unknown option values.
    let o = cimnet(&["train", "--attention", "cross", "--out", r]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("allowed are cim, self, none"));
    let o = cimnet(&["train", "--select", "auc", "--out", r]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("emotion-wa"));
    // Emotion task on data without emotions (the bundled MOSI).
    let o = cimnet(&["train", "--tasks", "emotion", "--backend", "cpu", "--out", r]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no emotion labels")
            || String::from_utf8_lossy(&o.stderr).contains("has none")
    );
    // Eval of something that is not a run.
    let o = cimnet(&["eval", "--run", tmp.path().to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("not a cimnet run"));
    // Run and data that do not fit: a text-only run evaluated on data without the same dims.
    let data = tmp.path().join("tiny.npz");
    native::write(&synth::tiny(5), &data).unwrap();
    ok(&cimnet(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--modalities",
        "T",
        "--tasks",
        "sentiment",
        "--epochs",
        "1",
        "--hidden",
        "4",
        "--dense",
        "3",
        "--backend",
        "cpu",
        "--out",
        r,
    ]));
    let o = cimnet(&["eval", "--run", r]);
    ok(&o);
    let o = cimnet(&["eval", "--run", r, "--synthetic", "--synth-scale", "0.01"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("300-dimensional text") && err.contains("trained on 12"), "{err}");
    // An existing run is never overwritten.
    let o = cimnet(&["train", "--data", data.to_str().unwrap(), "--backend", "cpu", "--out", r]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--resume"));
}

#[test]
fn cli_attention_png_and_grid_with_two_cells_and_two_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tiny.npz");
    let ds = synth::tiny(7);
    native::write(&ds, &data).unwrap();
    let d = data.to_str().unwrap();
    let run = tmp.path().join("run");
    let r = run.to_str().unwrap();
    ok(&cimnet(&[
        "train",
        "--data",
        d,
        "--epochs",
        "1",
        "--hidden",
        "6",
        "--dense",
        "4",
        "--backend",
        "cpu",
        "--out",
        r,
    ]));
    let video = ds.split(SplitName::Test).iter().max_by_key(|v| v.len).unwrap();
    let png_path = tmp.path().join("att.png");
    ok(&cimnet(&["attention", "--run", r, "--video", &video.id, "--out", png_path.to_str().unwrap()]));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png_path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert!(info.width > 200 && info.height > 200, "{}x{}", info.width, info.height);
    assert!(buf.iter().any(|&b| b != 255), "the image is not blank");
    // The maps the PNG shows are real softmax rows.
    let params = ParamStore::load(&run.join("model.safetensors")).unwrap();
    let idx = ds.split(SplitName::Test).iter().position(|v| v.id == video.id).unwrap();
    let maps = cimnet::train::heatmap::attention_maps(&params, &ds.batch(SplitName::Test, &[idx])).unwrap();
    assert_eq!(maps.len(), 6, "TAV cim has three pairs, two matrices each");
    for m in &maps {
        for i in 0..m.u {
            let s: f64 = m.weights[i * m.u..(i + 1) * m.u].iter().sum();
            assert!((s - 1.0).abs() < 1e-12);
        }
    }
    let o =
        cimnet(&["attention", "--run", r, "--video", "no-such-video", "--out", png_path.to_str().unwrap(), "--force"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no-such-video"));

    // Grid: 2 modality sets x {ST, MT} x 2 seeds.
    let grid = tmp.path().join("grid");
    let g = grid.to_str().unwrap();
    let args = [
        "grid",
        "--data",
        d,
        "--seeds",
        "2",
        "--modalities",
        "T,TV",
        "--epochs",
        "1",
        "--hidden",
        "4",
        "--dense",
        "3",
        "--out",
        g,
    ];
    let out = ok(&cimnet(&args));
    assert!(out.contains("| TV |") && out.contains("| T |"), "{out}");
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(grid.join("report.json")).unwrap()).unwrap();
    let cells = rep["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for c in cells {
        for cmp in c["comparisons"].as_array().unwrap() {
            assert_eq!(cmp["single_values"].as_array().unwrap().len(), 2);
            assert_eq!(cmp["multi_values"].as_array().unwrap().len(), 2);
        }
    }
    // 2 sets x 3 task setups (ST sentiment, ST emotion, MT) x 2 seeds run directories.
    let runs = std::fs::read_dir(&grid).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir()).count();
    assert_eq!(runs, 6);
    // Rerunning reuses every finished run.
    let again = ok(&cimnet(&args));
    assert_eq!(again.matches("finished earlier, reused").count(), 12, "{again}");
}

#[test]
fn kill_dash_nine_then_resume_gives_the_same_losses() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tiny.npz");
    native::write(&synth::tiny(9), &data).unwrap();
    let d = data.to_str().unwrap();
    let args = |out: &str| -> Vec<String> {
        [
            "train",
            "--data",
            d,
            "--epochs",
            "30",
            "--patience",
            "100",
            "--batch",
            "4",
            "--hidden",
            "12",
            "--dense",
            "6",
            "--backend",
            "cpu",
            "--out",
            out,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let full = tmp.path().join("full");
    ok(&Command::new(env!("CARGO_BIN_EXE_cimnet")).args(args(full.to_str().unwrap())).output().unwrap());

    let killed = tmp.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cimnet"))
        .args(args(killed.to_str().unwrap()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once a few epochs have been checkpointed (or after 20 s at most).
    let start = std::time::Instant::now();
    loop {
        let done = std::fs::read_to_string(killed.join("metrics.jsonl")).map(|t| t.lines().count()).unwrap_or(0);
        if done >= 3 || start.elapsed().as_secs() > 20 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = std::fs::read_to_string(killed.join("metrics.jsonl")).unwrap().lines().count();
    assert!(before < 30, "the run was stopped before its end ({before} epochs)");
    ok(&cimnet(&["train", "--resume", killed.to_str().unwrap()]));
    let read = |dir: &Path| -> Vec<(u64, u64)> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let r: EpochRecord = serde_json::from_str(l).unwrap();
                (r.train_loss.to_bits(), r.valid.loss.to_bits())
            })
            .collect()
    };
    assert_eq!(read(&killed), read(&full), "every epoch's losses after kill -9 and resume, bit for bit");
    let (a, b) = (
        ParamStore::load(&killed.join("model.safetensors")).unwrap(),
        ParamStore::load(&full.join("model.safetensors")).unwrap(),
    );
    assert!(a == b, "same kept weights");
}
