//! `--test-curve`: the test split after every epoch, the published protocol's
//! row (best test value per metric over the epochs) beside an honest result
//! that the curve leaves untouched, and exact resume of the curve.

use std::path::Path;
use std::process::Command;

use cimnet::config::{Attention, ModalitySet, Tasks};
use cimnet::data::{native, synth};
use cimnet::engine::EngineOptions;
use cimnet::params::ParamStore;
use cimnet::train::pipeline::{self, ResumeChanges, RunSpec, Start};
use cimnet::train::report::Report;
use cimnet::train::run::{train, EpochRecord, Progress, RunDir, TrainConfig};
use cimnet::train::source::DataSource;

const EPOCHS: usize = 4;

fn spec(dir: &Path, test_curve: bool, backend: &str) -> RunSpec {
    let path = dir.join("tiny.npz");
    if !path.exists() {
        native::write(&synth::tiny(5), &path).unwrap();
    }
    RunSpec {
        source: DataSource::Path { path },
        modalities: ModalitySet::TAV,
        attention: Attention::Cim,
        tasks: Some(Tasks::Mtl),
        hidden: 6,
        dense: 5,
        dropout: 0.3,
        train: TrainConfig {
            epochs: EPOCHS,
            batch: 4,
            backend: backend.into(),
            seed: 3,
            // No early stop, so every epoch is on the curve.
            patience: 100,
            test_curve,
            ..TrainConfig::default()
        },
    }
}

fn run(dir: &Path, test_curve: bool, backend: &str) -> Report {
    let s = spec(dir.parent().unwrap(), test_curve, backend);
    let (data, fingerprint) = s.source.load_fingerprinted().unwrap();
    let prepared = pipeline::prepare(&s, data, fingerprint).unwrap();
    pipeline::execute(prepared, dir, Start::New { force: false }, &EngineOptions::default(), &mut ()).unwrap()
}

fn curve_lines(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(RunDir::new(dir).test_curve()).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Validation metrics of every epoch, without the wall-clock fields.
fn valid_lines(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(RunDir::new(dir).metrics()).unwrap();
    text.lines()
        .map(|l| {
            let r: EpochRecord = serde_json::from_str(l).unwrap();
            format!("{} {} {} {:?}", r.epoch, r.train_loss.to_bits(), r.best, r.valid)
        })
        .collect()
}

#[test]
fn the_curve_has_one_line_per_epoch_and_the_honest_result_is_unchanged() {
    honest_result_unchanged("cpu");
}

/// The GPU engine's extra test-split passes leave its training untouched too.
#[test]
fn on_the_gpu_the_honest_result_is_unchanged() {
    honest_result_unchanged("gpu");
}

fn honest_result_unchanged(backend: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (plain_dir, curve_dir) = (tmp.path().join("plain"), tmp.path().join("curve"));
    let plain = run(&plain_dir, false, backend);
    let curved = run(&curve_dir, true, backend);

    assert!(!RunDir::new(&plain_dir).test_curve().exists(), "no curve without --test-curve");
    assert!(plain.published_protocol.is_none());
    let lines = curve_lines(&curve_dir);
    assert_eq!(lines.len(), EPOCHS);
    for (e, l) in lines.iter().enumerate() {
        assert_eq!(l["epoch"], e);
        assert_eq!(l["test"]["split"], "test");
    }

    // The honest protocol: same seed with and without the curve, identical numbers.
    assert_eq!(plain.result, curved.result, "final metrics (valid and test) are bit-identical");
    assert_eq!(valid_lines(&plain_dir), valid_lines(&curve_dir), "every epoch's validation metrics");
    let weights = |d: &Path| ParamStore::load(&RunDir::new(d).model()).unwrap();
    assert!(weights(&plain_dir) == weights(&curve_dir), "the kept checkpoint is the same, bit for bit");

    // The optimistic row is the best over the curve, read independently from test_curve.jsonl.
    let p = curved.published_protocol.as_ref().expect("a published-protocol row");
    assert_eq!(p.epochs, EPOCHS);
    let over_curve = |path: &[&str], lower: bool| -> (f64, usize) {
        let vals: Vec<f64> = lines
            .iter()
            .map(|l| path.iter().fold(l, |v, k| &v[*k]).as_f64().expect("a number on every line"))
            .collect();
        let pick = if lower { f64::min } else { f64::max };
        let best = vals.iter().copied().fold(vals[0], pick);
        (best, vals.iter().position(|&v| v == best).unwrap())
    };
    for (key, path, lower) in [
        ("loss", &["test", "loss"][..], true),
        ("sentiment_accuracy", &["test", "sentiment", "accuracy"][..], false),
        ("sentiment_weighted_f1", &["test", "sentiment", "weighted_f1"][..], false),
        ("emotion_weighted_f1", &["test", "emotion_at_f1", "mean_weighted_f1"][..], false),
        ("emotion_accuracy", &["test", "emotion_at_f1", "mean_accuracy"][..], false),
        ("emotion_wa", &["test", "emotion_at_wa", "mean_weighted_accuracy"][..], false),
    ] {
        let (value, epoch) = over_curve(path, lower);
        let b = p.best.iter().find(|b| b.metric == key).unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!((b.value, b.epoch), (value, epoch), "{key}");
    }
    // It is never below the honest test value (which is one of the curve's epochs).
    let honest_acc = curved.result.test.sentiment.unwrap().accuracy;
    assert!(p.get("sentiment_accuracy").unwrap() >= honest_acc);
    // The report shows both rows, and report.json carries the row.
    let md = std::fs::read_to_string(RunDir::new(&curve_dir).report_md()).unwrap();
    assert!(md.contains("| published protocol: epoch chosen on test (optimistic) |"), "{md}");
    assert!(md.contains("| honest: epoch and thresholds chosen on validation |"), "{md}");
    let json = std::fs::read_to_string(RunDir::new(&curve_dir).report_json()).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back.published_protocol, curved.published_protocol);
}

/// Stops the run after `after` epochs (a Ctrl-C at an epoch boundary).
struct StopAfter(usize);
impl Progress for StopAfter {
    fn epoch_end(&mut self, _r: &EpochRecord) {
        self.0 -= 1;
    }
    fn should_stop(&mut self) -> bool {
        self.0 == 0
    }
}

#[test]
fn a_resumed_run_continues_the_curve_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let full_dir = tmp.path().join("full");
    run(&full_dir, true, "cpu");

    let dir = tmp.path().join("stopped");
    let s = spec(tmp.path(), true, "cpu");
    let (data, fingerprint) = s.source.load_fingerprinted().unwrap();
    let prepared = pipeline::prepare(&s, data, fingerprint).unwrap();
    let mut run_cfg = prepared.run.clone();
    let params = prepared.params.clone();
    let mut engine =
        cimnet::train::engine::choose_engine(&mut run_cfg, params, &prepared.data, &Default::default(), &mut |_| {})
            .unwrap()
            .engine;
    let rd = RunDir::new(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    train(engine.as_mut(), &prepared.data, &prepared.run, &rd, &mut StopAfter(2)).unwrap();
    assert_eq!(curve_lines(&dir).len(), 2);
    // A kill after the curve line of epoch 3 but before its checkpoint: the stray line is dropped on resume.
    let stray =
        std::fs::read_to_string(rd.test_curve()).unwrap().lines().last().unwrap().replace("\"epoch\":1", "\"epoch\":2");
    let mut text = std::fs::read_to_string(rd.test_curve()).unwrap();
    text.push_str(&stray);
    text.push('\n');
    std::fs::write(rd.test_curve(), text).unwrap();

    let reopened = pipeline::reopen(&dir, &ResumeChanges::default()).unwrap();
    let resumed = pipeline::execute(reopened, &dir, Start::Resume, &Default::default(), &mut ()).unwrap();
    let read = |d: &Path| std::fs::read_to_string(RunDir::new(d).test_curve()).unwrap();
    assert_eq!(read(&dir), read(&full_dir), "test_curve.jsonl is byte-identical to the uninterrupted run's");
    let full: Report =
        serde_json::from_str(&std::fs::read_to_string(RunDir::new(&full_dir).report_json()).unwrap()).unwrap();
    assert_eq!(resumed.published_protocol, full.published_protocol);
    assert_eq!(resumed.result, full.result);
}

fn cimnet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cimnet")).args(args).output().expect("run cimnet")
}

#[test]
fn cli_train_and_grid_report_both_protocols() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tiny.npz");
    native::write(&synth::tiny(2), &data).unwrap();
    let d = data.to_str().unwrap();
    let common = ["--data", d, "--epochs", "2", "--hidden", "4", "--dense", "3", "--backend", "cpu", "--test-curve"];
    let out_dir = tmp.path().join("run");
    let o = cimnet(&[&["train", "--out", out_dir.to_str().unwrap()][..], &common[..]].concat());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("published protocol: epoch chosen on test (optimistic)"), "{stdout}");
    assert_eq!(curve_lines(&out_dir).len(), 2);

    let grid = tmp.path().join("grid");
    let o = cimnet(
        &[&["grid", "--seeds", "1", "--modalities", "T", "--out", grid.to_str().unwrap()][..], &common[..]].concat(),
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("## attention: cim, published protocol: epoch chosen on test (optimistic)"), "{stdout}");
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(grid.join("report.json")).unwrap()).unwrap();
    let published = rep["published_cells"].as_array().expect("published cells");
    assert_eq!(published.len(), 1);
    // Each published value is the run's own best-on-test value.
    let run_report = |tasks: &str| -> serde_json::Value {
        let p = grid.join(format!("T-cim-{tasks}")).join("seed1").join("report.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let best = |r: &serde_json::Value, key: &str| -> f64 {
        let b = r["published_protocol"]["best"].as_array().unwrap();
        b.iter().find(|x| x["metric"] == key).unwrap()["value"].as_f64().unwrap()
    };
    let cmp = &published[0]["comparisons"];
    assert_eq!(cmp[0]["multi_values"][0].as_f64().unwrap(), best(&run_report("mtl"), "sentiment_accuracy"));
    assert_eq!(cmp[3]["single_values"][0].as_f64().unwrap(), best(&run_report("emotion"), "emotion_wa"));
}
