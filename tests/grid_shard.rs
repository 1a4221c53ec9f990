//! `cimnet grid --shard I/N` and `--merge`: two shards merged give the report of
//! the same grid unsharded (all but the wall time); a merge refuses missing,
//! duplicated, foreign, unfinished and damaged shards; a shard directory resumes
//! only the same grid and slice; wall and training times add up.

use std::path::Path;
use std::process::{Command, Output};

use cimnet::data::{native, synth};
use serde_json::Value;

fn cimnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cimnet")).args(args).output().expect("run cimnet")
}

fn ok(args: &[&str]) -> String {
    let o = cimnet(args);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{args:?} failed:\n{out}\n{}", String::from_utf8_lossy(&o.stderr));
    out
}

/// The stderr of a command that must fail.
fn fails(args: &[&str]) -> String {
    let o = cimnet(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{args:?} succeeded:\n{}", String::from_utf8_lossy(&o.stdout));
    err
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// report.md without its time section (the one part that may differ).
fn md_without_time(dir: &Path) -> String {
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let (table, time) = md.split_once("\n## Time\n").expect("report.md has a time section");
    assert!(time.contains("Wall time of the grid"), "{time}");
    table.to_string()
}

/// The sum of the epochs' seconds in a run's metrics.jsonl.
fn metrics_seconds(run: &Path) -> f64 {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["seconds"].as_f64().unwrap()).sum()
}

#[test]
fn two_shards_merged_give_the_unsharded_grid_and_bad_merges_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tiny.npz");
    native::write(&synth::tiny(5), &data).unwrap();
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let (whole, s1, s2, merged) = (p("whole"), p("s1"), p("s2"), p("merged"));
    let grid = |extra: &[&str], out: &str| -> Vec<String> {
        let d = data.to_str().unwrap();
        let mut a = vec!["grid", "--data", d, "--modalities", "T,TA", "--seeds", "1"];
        a.extend(["--hidden", "4", "--dense", "3", "--backend", "cpu", "--test-curve", "--out", out]);
        if !extra.contains(&"--epochs") {
            a.extend(["--epochs", "1"]);
        }
        a.extend(extra);
        a.iter().map(|s| s.to_string()).collect()
    };
    let run = |args: &[String]| ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let refused = |args: &[String]| fails(&args.iter().map(String::as_str).collect::<Vec<_>>());

    run(&grid(&[], &whole));
    let out1 = run(&grid(&["--shard", "1/2"], &s1));
    run(&grid(&["--shard", "2/2"], &s2));
    assert!(out1.contains("shard 1/2: 3 of the grid's 6 runs"), "{out1}");
    // Round-robin over (T, TA) x (sentiment, emotion, mtl) x seed 1: shard 1 holds runs 0, 2, 4.
    for (run, in_s1) in [
        ("T-cim-sentiment", true),
        ("T-cim-emotion", false),
        ("T-cim-mtl", true),
        ("TA-cim-sentiment", false),
        ("TA-cim-emotion", true),
        ("TA-cim-mtl", false),
    ] {
        let done = |dir: &str| Path::new(dir).join(run).join("seed1").join("report.json").exists();
        assert_eq!((done(&s1), done(&s2)), (in_s1, !in_s1), "{run}");
    }
    assert!(!Path::new(&s1).join("report.json").exists(), "a shard writes no (partial) grid report");

    // Given in any order, the shards merge into the unsharded grid's report.
    ok(&["grid", "--merge", &s2, &s1, "--out", &merged]);
    let (mut a, mut b) = (json(&Path::new(&whole).join("report.json")), json(&Path::new(&merged).join("report.json")));
    let (ta, tb) =
        (a.as_object_mut().unwrap().remove("timing").unwrap(), b.as_object_mut().unwrap().remove("timing").unwrap());
    assert_eq!(a, b);
    assert_eq!(a["cells"].as_array().unwrap().len(), 2);
    assert_eq!(a["published_cells"].as_array().unwrap().len(), 2, "--test-curve: both protocols merged");
    assert_eq!(md_without_time(Path::new(&whole)), md_without_time(Path::new(&merged)));

    // Times: each run's own (its metrics.jsonl), summed per cell and in all; wall time per shard, summed.
    let runs = |t: &Value| t["runs"].as_array().unwrap().iter().map(|r| r["run"].clone()).collect::<Vec<_>>();
    assert_eq!(runs(&ta), runs(&tb));
    assert_eq!(ta["runs"][1]["run"], "T-cim-emotion/seed1");
    let own = metrics_seconds(&Path::new(&s2).join("T-cim-emotion/seed1"));
    assert!(own > 0.0 && (tb["runs"][1]["train_seconds"].as_f64().unwrap() - own).abs() < 1e-9);
    for t in [&ta, &tb] {
        let per_run: f64 = t["runs"].as_array().unwrap().iter().map(|r| r["train_seconds"].as_f64().unwrap()).sum();
        let per_cell: f64 = t["cells"].as_array().unwrap().iter().map(|c| c["train_seconds"].as_f64().unwrap()).sum();
        assert!((per_run - t["train_seconds"].as_f64().unwrap()).abs() < 1e-9);
        assert!((per_cell - per_run).abs() < 1e-9);
        assert_eq!(t["cells"][0]["runs"], 3);
    }
    let wall = |dir: &str| json(&Path::new(dir).join("grid.json"))["wall_seconds"].as_f64().unwrap();
    assert!(ta["wall_seconds"].as_f64().unwrap() >= ta["train_seconds"].as_f64().unwrap(), "{ta}");
    assert_eq!(tb["wall_seconds"].as_f64().unwrap(), wall(&s1) + wall(&s2));
    assert_eq!(tb["longest_shard_wall_seconds"].as_f64().unwrap(), wall(&s1).max(wall(&s2)));
    assert_eq!(tb["shards"].as_array().unwrap().len(), 2);
    assert!(std::fs::read_to_string(Path::new(&merged).join("report.md")).unwrap().contains("summed over 2 shards"));

    // A rerun reuses every run and adds its wall time.
    let before = wall(&whole);
    let again = run(&grid(&[], &whole));
    assert_eq!(again.matches("finished earlier, reused").count(), 6, "{again}");
    assert!(wall(&whole) > before);
    // A grid.json from before shards (data and fingerprint only) still resumes, and is completed.
    let old = json(&Path::new(&whole).join("grid.json"));
    let old = serde_json::json!({ "data": old["data"], "fingerprint": old["fingerprint"] });
    std::fs::write(Path::new(&whole).join("grid.json"), old.to_string()).unwrap();
    assert_eq!(run(&grid(&[], &whole)).matches("finished earlier, reused").count(), 6);
    assert_eq!(json(&Path::new(&whole).join("grid.json"))["grid"]["epochs"], 1);

    // A shard directory resumes only its own grid and slice; nothing in it changes.
    let marker = std::fs::read(Path::new(&s1).join("grid.json")).unwrap();
    let e = refused(&grid(&["--shard", "2/2"], &s1));
    assert!(e.contains("shard 1/2 vs shard 2/2") && e.contains("--force"), "{e}");
    let e = refused(&grid(&["--shard", "1/2", "--patience", "3"], &s1));
    assert!(e.contains("grid.patience: 20 vs 3"), "{e}");
    let e = refused(&grid(&[], &s1));
    assert!(e.contains("shard 1/2 vs the whole grid"), "{e}");
    assert_eq!(std::fs::read(Path::new(&s1).join("grid.json")).unwrap(), marker);

    // Merges that must be refused, each naming what is wrong.
    let m = p("m");
    let e = fails(&["grid", "--merge", &s1, "--out", &m]);
    assert!(e.contains("shard 2/2 of the grid is missing"), "{e}");
    let e = fails(&["grid", "--merge", &s1, &s2, &s1, "--out", &m]);
    assert!(e.contains("shard 1/2 is given twice"), "{e}");
    let e = fails(&["grid", "--merge", &whole, "--out", &m]);
    assert!(e.contains("holds a whole grid, not a shard"), "{e}");
    let e = fails(&["grid", "--merge", &s1, &s2, "--out", &m, "--epochs", "3"]);
    assert!(e.contains("--epochs cannot be given with --merge"), "{e}");
    let e = fails(&["grid", "--merge", &s1, &s2, "--out", &merged]);
    assert!(e.contains("is not empty"), "{e}");
    ok(&["grid", "--merge", &s1, &s2, "--out", &merged, "--force"]);
    // A shard of another grid (2 epochs, not 1).
    let other = p("other");
    run(&grid(&["--shard", "2/2", "--epochs", "2"], &other));
    let e = fails(&["grid", "--merge", &s1, &other, "--out", &m]);
    assert!(e.contains("shards of different grids") && e.contains("grid.epochs: 1 vs 2"), "{e}");
    // A shard split another way.
    let three = p("three");
    copy_dir(Path::new(&s2), Path::new(&three));
    let mut g = json(&Path::new(&three).join("grid.json"));
    g["shard"] = serde_json::json!({ "index": 2, "count": 3 });
    std::fs::write(Path::new(&three).join("grid.json"), g.to_string()).unwrap();
    let e = fails(&["grid", "--merge", &s1, &three, "--out", &m]);
    assert!(e.contains("split into 2 vs 3 shards"), "{e}");
    // An unfinished run, and a damaged report.
    let unfinished = p("unfinished");
    copy_dir(Path::new(&s2), Path::new(&unfinished));
    std::fs::remove_file(Path::new(&unfinished).join("TA-cim-mtl/seed1/report.json")).unwrap();
    let e = fails(&["grid", "--merge", &s1, &unfinished, "--out", &m]);
    assert!(e.contains("run TA-cim-mtl/seed1 of shard 2/2") && e.contains("has not finished"), "{e}");
    let damaged = p("damaged");
    copy_dir(Path::new(&s2), Path::new(&damaged));
    let report = Path::new(&damaged).join("T-cim-emotion/seed1/report.json");
    std::fs::write(&report, "{\"variant\": ").unwrap();
    let e = fails(&["grid", "--merge", &s1, &damaged, "--out", &m]);
    assert!(e.contains(report.to_str().unwrap()) && e.contains("no readable report"), "{e}");
    // A run moved to where another belongs.
    let swapped = p("swapped");
    copy_dir(Path::new(&s2), Path::new(&swapped));
    let run_dir = |r: &str| Path::new(&swapped).join(r).join("seed1");
    std::fs::copy(run_dir("TA-cim-mtl").join("report.json"), run_dir("TA-cim-sentiment").join("report.json")).unwrap();
    let e = fails(&["grid", "--merge", &s1, &swapped, "--out", &m]);
    assert!(e.contains("reports the run TA/cim/mtl, but the grid's run here is TA/cim/sentiment"), "{e}");
    assert!(!Path::new(&m).exists(), "a refused merge writes nothing");
}

#[test]
fn shard_values_that_are_not_a_slice_are_refused_when_parsed() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("g");
    for (bad, says) in [("0/2", "in 1..=2"), ("3/2", "in 1..=2"), ("1/0", "at least 1"), ("x/2", "'x' is not a whole")]
    {
        let e = fails(&["grid", "--synthetic", "--shard", bad, "--out", out.to_str().unwrap()]);
        assert!(e.contains("--shard") && e.contains(says) && e.contains("I/N"), "{bad}: {e}");
    }
    let e = fails(&["grid", "--synthetic", "--shard", "1/2", "--merge", "a", "--out", out.to_str().unwrap()]);
    assert!(e.contains("cannot be used with"), "{e}");
    assert!(!out.exists());
}
