//! A grid trained side by side (`--group N`) gives every run exactly what it
//! gives one by one (`--group 1`, today's sequential grid): the same losses per
//! epoch, checkpoints, thresholds and reports, bit for bit, on the CPU reference
//! and on the GPU engine (llvmpipe in CI), for a mixed group (modality sets x
//! task setups x two seeds, all in one fused engine) with early-stopped runs
//! (self-attention's fused runs: tests/gpu_model.rs); and a grouped grid
//! killed with SIGKILL and rerun ends where the uninterrupted one does.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cimnet::data::{native, synth};

fn cimnet(args: &[String], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cimnet")).args(args).env("CIMNET_CACHE_DIR", cache).output().expect("run cimnet")
}

fn ok(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{err}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// 2 modality sets x 2 attention kinds x 3 task setups = 12 runs; patience 1 so
/// that runs stop early at different epochs.
fn grid_args(data: &Path, out: &Path, backend: &str, group: usize) -> Vec<String> {
    let mut a: Vec<String> = [
        "grid",
        "--data",
        data.to_str().unwrap(),
        "--modalities",
        "T,TAV",
        "--attention",
        "cim",
        "--seeds",
        "2",
        "--epochs",
        "6",
        "--patience",
        "1",
        "--lr",
        "0.03",
        "--batch",
        "4",
        "--hidden",
        "5",
        "--dense",
        "3",
        "--backend",
        backend,
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    if backend == "gpu" {
        a.extend(["--tune", "off"].map(String::from));
    }
    a.extend(["--group".to_string(), group.to_string()]);
    a
}

/// Every file of every run directory under `grid` (relative path -> content),
/// with the wall-clock fields of JSON (lines) removed.
fn run_files(grid: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![grid.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(grid).unwrap().to_path_buf();
            let name = rel.to_string_lossy().to_string();
            if name.ends_with(".lock") || name == "grid.json" || name.contains(".tmp") {
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            let content = if name.ends_with(".json") || name.ends_with(".jsonl") {
                let text = String::from_utf8(bytes).unwrap();
                let lines: Vec<String> = text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| {
                        let mut v: serde_json::Value = serde_json::from_str(l).unwrap_or(serde_json::Value::Null);
                        strip_times(&mut v);
                        v.to_string()
                    })
                    .collect();
                // A whole-file JSON document parses as one value only when read whole.
                let whole: Result<serde_json::Value, _> = serde_json::from_str(&text);
                match whole {
                    Ok(mut v) => {
                        strip_times(&mut v);
                        v.to_string().into_bytes()
                    }
                    Err(_) => lines.join("\n").into_bytes(),
                }
            } else if name.ends_with(".md") {
                // The grid report's "## Time" section is wall-clock.
                let text = String::from_utf8(bytes).unwrap();
                let until_time = text.split("\n## Time").next().unwrap_or("");
                let kept: Vec<&str> =
                    until_time.lines().filter(|l| !l.contains("seconds") && !l.contains("wall")).collect();
                kept.join("\n").into_bytes()
            } else {
                bytes
            };
            out.push((rel, content));
        }
    }
    out.sort();
    out
}

fn strip_times(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|k, _| !k.contains("second") && !k.contains("wall") && k != "timing");
            m.values_mut().for_each(strip_times);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_times),
        _ => {}
    }
}

fn assert_same_runs(a: &Path, b: &Path) {
    let (fa, fb) = (run_files(a), run_files(b));
    let names = |f: &[(PathBuf, Vec<u8>)]| f.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&fa), names(&fb), "the two grids hold different files");
    for ((name, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(x == y, "{} differs between {} and {}", name.display(), a.display(), b.display());
    }
}

fn early_stopped(grid: &Path) -> usize {
    run_files(grid)
        .iter()
        .filter(|(n, _)| n.ends_with("state.json"))
        .filter(|(_, c)| String::from_utf8_lossy(c).contains("\"stopped_early\":true"))
        .count()
}

fn grouped_equals_one_by_one(backend: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tiny.npz");
    native::write(&synth::tiny(5), &data).unwrap();
    let cache = tmp.path().join("cache");
    let (one, many) = (tmp.path().join("one"), tmp.path().join("many"));
    let alone = ok(&cimnet(&grid_args(&data, &one, backend, 1), &cache));
    assert!(alone.contains("up to 1 models per step"), "{alone}");
    let out = ok(&cimnet(&grid_args(&data, &many, backend, 12), &cache));
    assert!(out.contains("up to 12 models per step"), "the runs did not train side by side: {out}");
    if backend == "gpu" {
        // Both seeds' runs in one engine: each model on its own seed's batches.
        assert!(out.contains(", 1 fused GPU engine(s)"), "the two seeds' runs were not fused: {out}");
    }
    assert_same_runs(&one, &many);
    // And one member against the same run trained by `cimnet train`.
    let single = tmp.path().join("single");
    let mut t = grid_args(&data, &single, backend, 1);
    t[0] = "train".into();
    for (k, v) in [("--modalities", "TAV"), ("--attention", "cim")] {
        let i = t.iter().position(|a| a == k).unwrap();
        t[i + 1] = v.into();
    }
    let i = t.iter().position(|a| a == "--seeds").unwrap();
    t.splice(i..i + 2, ["--tasks".to_string(), "mtl".to_string(), "--seed".to_string(), "2".to_string()]);
    let i = t.iter().position(|a| a == "--group").unwrap();
    t.truncate(i);
    ok(&cimnet(&t, &cache));
    assert_same_runs(&single, &many.join("TAV-cim-mtl").join("seed2"));
    // Runs stopped early at different epochs: the group went on without them.
    let stopped = early_stopped(&many);
    let epochs: Vec<usize> = run_files(&many)
        .iter()
        .filter(|(n, _)| n.ends_with("metrics.jsonl"))
        .map(|(_, c)| String::from_utf8_lossy(c).lines().count())
        .collect();
    let (lo, hi) = (epochs.iter().min().unwrap(), epochs.iter().max().unwrap());
    assert!(
        stopped >= 1 && lo < hi,
        "want runs stopped early at different epochs: {stopped} stopped, epochs {epochs:?}"
    );
    assert!(out.contains("| TAV |"), "{out}");
}

#[test]
fn a_grouped_grid_on_the_cpu_equals_the_runs_one_by_one() {
    grouped_equals_one_by_one("cpu");
}

#[test]
fn a_grouped_grid_on_the_gpu_equals_the_runs_one_by_one() {
    if std::env::var("CIMNET_SKIP_GPU_TESTS").as_deref() == Ok("1") {
        return;
    }
    grouped_equals_one_by_one("gpu");
}

/// Some run of the grid finished an epoch (a metrics line written); read while
/// the grid writes, so a missing file is "not yet".
fn some_epoch_done(grid: &Path) -> bool {
    let Ok(cells) = std::fs::read_dir(grid) else { return false };
    cells.flatten().any(|c| {
        std::fs::read_to_string(c.path().join("seed1").join("metrics.jsonl")).is_ok_and(|t| !t.trim().is_empty())
    })
}

fn killed_and_rerun(backend: &str, epochs: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tiny.npz");
    native::write(&synth::tiny(6), &data).unwrap();
    let cache = tmp.path().join("cache");
    let (whole, killed) = (tmp.path().join("whole"), tmp.path().join("killed"));
    let mut args = grid_args(&data, &whole, backend, 12);
    // More epochs and patience so the grid is still training when killed.
    for (k, v) in [("--epochs", epochs), ("--patience", epochs), ("--hidden", "8")] {
        let i = args.iter().position(|a| a == k).unwrap();
        args[i + 1] = v.to_string();
    }
    ok(&cimnet(&args, &cache));
    let mut kargs = args.clone();
    let i = kargs.iter().position(|a| a == "--out").unwrap();
    kargs[i + 1] = killed.to_str().unwrap().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cimnet"))
        .args(&kargs)
        .env("CIMNET_CACHE_DIR", &cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !some_epoch_done(&killed) && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!killed.join("report.json").exists(), "the grid finished before it was killed: the test proves nothing");
    let again = ok(&cimnet(&kargs, &cache));
    assert!(again.contains("resuming after epoch"), "nothing was resumed: {again}");
    assert_same_runs(&whole, &killed);
}

#[test]
fn a_grouped_grid_killed_and_rerun_ends_as_the_uninterrupted_one_on_the_cpu() {
    killed_and_rerun("cpu", "40");
}

#[test]
fn a_grouped_grid_killed_and_rerun_ends_as_the_uninterrupted_one_on_the_gpu() {
    if std::env::var("CIMNET_SKIP_GPU_TESTS").as_deref() == Ok("1") {
        return;
    }
    killed_and_rerun("gpu", "12");
}

/// `cimnet bench --models`: per K, the grouped step fuses the models of a seed
/// into one engine, whose dispatches are one model's plus those of the sites the
/// others add (here one more modality), while one by one they sum; both timings
/// are measured.
#[test]
fn bench_models_reports_each_group_and_its_dispatches() {
    if std::env::var("CIMNET_SKIP_GPU_TESTS").as_deref() == Ok("1") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tiny.npz");
    native::write(&synth::tiny(3), &data).unwrap();
    let cache = tmp.path().join("cache");
    let args = |ks: &str| -> Vec<String> {
        ["bench", "--data", data.to_str().unwrap(), "--models", ks, "--steps", "1", "--hidden", "6", "--dense", "4"]
            .map(String::from)
            .to_vec()
            .into_iter()
            .chain(["--tune", "off", "--json"].map(String::from))
            .collect()
    };
    let out = ok(&cimnet(&args("1,3,4"), &cache));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.iter().map(|r| r["models"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 3, 4]);
    // Models 0..4 of the cycle are T/sentiment, T/emotion, T/mtl, A/sentiment. The
    // three text models fused record the launches of one (the dispatches do not
    // grow with K); the fourth adds only the audio sites; one by one they sum.
    let one = rows[0]["dispatches_per_step"].as_u64().unwrap();
    assert!(one > 0);
    assert_eq!(rows[0]["one_by_one_dispatches_per_step"].as_u64().unwrap(), one);
    assert_eq!(rows[1]["engines"].as_u64().unwrap(), 1);
    assert_eq!(rows[1]["dispatches_per_step"].as_u64().unwrap(), one);
    assert_eq!(rows[1]["one_by_one_dispatches_per_step"].as_u64().unwrap(), 3 * one);
    let four = rows[2]["dispatches_per_step"].as_u64().unwrap();
    assert!(four > one && four < 2 * one, "4 fused models: {four} dispatches, one model {one}");
    assert_eq!(rows[2]["one_by_one_dispatches_per_step"].as_u64().unwrap(), 4 * one);
    for r in rows {
        assert!(r["grouped_step_seconds"].as_f64().unwrap() > 0.0);
        assert!(r["one_by_one_step_seconds"].as_f64().unwrap() > 0.0);
        assert!(r["invocations_per_dispatch"].as_f64().unwrap() >= 1.0);
        assert!(r["gpu_bytes"].as_u64().unwrap() > 0);
    }
}
