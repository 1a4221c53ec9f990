//! A run directory is owned, verified and tied to its data, and every option is
//! checked when parsed: the examples, each through the built binary on
//! tiny synthetic data with the CPU engine (fast, no GPU needed).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cimnet::data::{native, synth, Dataset};
use cimnet::output::DirLock;

fn cimnet_in(cwd: Option<&Path>, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cimnet"));
    c.args(args);
    if let Some(d) = cwd {
        c.current_dir(d);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run cimnet")
}

fn cimnet(args: &[&str]) -> Output {
    cimnet_in(None, &[], args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), stderr(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A refusal: exit 1 (our error) or 2 (clap's), never a panic (101), naming `needle`.
fn refused(o: &Output, needle: &str) -> String {
    let err = stderr(o);
    assert!(matches!(o.status.code(), Some(1) | Some(2)), "exit {:?}: {err}", o.status.code());
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Tiny data at `dir/tiny.npz` (seed picks the content).
fn tiny_data(dir: &Path, seed: u64) -> PathBuf {
    let p = dir.join("tiny.npz");
    native::write(&synth::tiny(seed), &p).unwrap();
    p
}

/// `train` on `data` into `out`, 2 epochs, tiny sizes, CPU; options in `extra` replace these.
fn train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let defaults = [("--epochs", "2"), ("--batch", "8"), ("--hidden", "4"), ("--dense", "3"), ("--backend", "cpu")];
    let mut args = vec!["train", "--data", s(data), "--out", s(out)];
    for (k, v) in defaults {
        if !extra.contains(&k) {
            args.extend([k, v]);
        }
    }
    args.extend_from_slice(extra);
    cimnet(&args)
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).unwrap().lines().count()
}

#[test]
fn a_second_process_on_a_locked_run_directory_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), 1);
    let run = tmp.path().join("run");
    ok(&train(&data, &run, &[]));
    // This test process holds the lock, as a running `train` would.
    let lock = DirLock::acquire(&run).unwrap();
    let pid = std::process::id().to_string();
    let err = refused(&cimnet(&["train", "--resume", s(&run), "--epochs", "3"]), "in use by another cimnet process");
    assert!(err.contains(s(&run)) && err.contains(&pid), "{err}");
    let fresh = tmp.path().join("fresh");
    let held = DirLock::acquire(&fresh).unwrap();
    refused(&train(&data, &fresh, &[]), "in use by another cimnet process");
    assert!(!fresh.join("config.json").exists(), "nothing written into a locked directory");
    drop((lock, held));
    ok(&cimnet(&["train", "--resume", s(&run), "--epochs", "3"]));
    assert_eq!(lines(&run.join("metrics.jsonl")), 3);
}

#[test]
fn out_on_a_directory_that_is_not_a_run_is_refused_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), 1);
    let dir = tmp.path().join("mine");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), b"keep me").unwrap();
    std::fs::write(dir.join("report.md"), b"my own report").unwrap();
    let err = refused(&train(&data, &dir, &[]), "is not empty");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(dir.join("report.md")).unwrap(), b"my own report");
    assert!(!dir.join("config.json").exists());
    // --force writes the run there; files cimnet does not write stay.
    ok(&train(&data, &dir, &["--force"]));
    assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), b"keep me");
    assert!(dir.join("config.json").exists());

    // An existing run: refused, then replaced with --force (a new run of 1 epoch).
    refused(&train(&data, &dir, &[]), "--resume");
    ok(&train(&data, &dir, &["--force", "--epochs", "1"]));
    assert_eq!(lines(&dir.join("metrics.jsonl")), 1, "the old run's epochs are gone");
    assert_eq!(json(&dir.join("checkpoint/state.json"))["epochs_done"], 1);
}

#[test]
fn a_missing_state_json_refuses_to_restart_over_the_results() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), 1);
    let run = tmp.path().join("run");
    ok(&train(&data, &run, &[]));
    let model = std::fs::read(run.join("model.safetensors")).unwrap();
    std::fs::remove_file(run.join("checkpoint/state.json")).unwrap();
    let err = refused(&cimnet(&["train", "--resume", s(&run)]), "state.json is missing");
    assert!(err.contains("model.safetensors") && err.contains("2 epochs in metrics.jsonl"), "{err}");
    assert_eq!(std::fs::read(run.join("model.safetensors")).unwrap(), model, "results untouched");
    assert_eq!(lines(&run.join("metrics.jsonl")), 2);
}

#[test]
fn state_json_naming_a_path_or_impossible_epochs_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), 1);
    let run = tmp.path().join("run");
    ok(&train(&data, &run, &[]));
    let state_path = run.join("checkpoint/state.json");
    let good = std::fs::read_to_string(&state_path).unwrap();
    // A file outside the run that a resume must never read nor delete.
    let victim = tmp.path().join("victim.safetensors");
    std::fs::copy(run.join("checkpoint/optimizer-0002.safetensors"), &victim).unwrap();
    let mut st: serde_json::Value = serde_json::from_str(&good).unwrap();
    st["optimizer_file"] = s(&victim).into();
    std::fs::write(&state_path, st.to_string()).unwrap();
    let err = refused(&cimnet(&["train", "--resume", s(&run), "--epochs", "3"]), "optimizer_file");
    assert!(err.contains("optimizer-0002.safetensors"), "{err}");
    assert!(victim.exists(), "a file outside the run is never deleted");
    assert_eq!(lines(&run.join("metrics.jsonl")), 2);

    for (field, value, needle) in [
        ("epochs_done", serde_json::json!(7), "epochs_done"),
        ("best_epoch", serde_json::json!(5), "best_epoch"),
        ("step", serde_json::json!(999), "step"),
    ] {
        let mut st: serde_json::Value = serde_json::from_str(&good).unwrap();
        st[field] = value;
        if field == "epochs_done" {
            st["optimizer_file"] = "optimizer-0007.safetensors".into();
        }
        std::fs::write(&state_path, st.to_string()).unwrap();
        refused(&cimnet(&["train", "--resume", s(&run)]), needle);
    }
    std::fs::write(&state_path, &good).unwrap();
    ok(&cimnet(&["train", "--resume", s(&run)]));
}

#[test]
fn stale_temporaries_and_orphan_optimizer_files_are_removed_by_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), 1);
    let run = tmp.path().join("run");
    ok(&train(&data, &run, &[]));
    let ck = run.join("checkpoint");
    let stale = [run.join(".model.safetensors.tmp-999999"), ck.join(".optimizer-0003.safetensors.tmp-999999")];
    for p in &stale {
        std::fs::write(p, b"half written").unwrap();
    }
    // Written just before a kill, never named by state.json.
    let orphan = ck.join("optimizer-0003.safetensors");
    std::fs::copy(ck.join("optimizer-0002.safetensors"), &orphan).unwrap();
    ok(&cimnet(&["train", "--resume", s(&run), "--epochs", "3"]));
    for p in &stale {
        assert!(!p.exists(), "{} left behind", p.display());
    }
    let mut names: Vec<String> =
        std::fs::read_dir(&ck).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["optimizer-0003.safetensors", "state.json"]);
    assert_eq!(lines(&run.join("metrics.jsonl")), 3);
}

#[test]
fn bad_option_values_are_refused_when_parsed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), 1);
    let run = tmp.path().join("run");
    for (opt, value) in [
        ("--lr", "nan"),
        ("--lr", "0"),
        ("--dropout", "1.5"),
        ("--epochs", "0"),
        ("--patience", "0"),
        ("--hidden", "0"),
        ("--dense", "100000"),
        ("--batch", "0"),
    ] {
        let err = refused(&train(&data, &run, &[opt, value]), opt);
        assert!(err.contains(value), "{err}");
        assert!(!run.exists(), "{opt} {value}: nothing written");
    }
    refused(&cimnet(&["bench", "--batch", "0"]), "--batch");
    let err = refused(&cimnet(&["data", "synth", "--scale", "1e6", "--out", s(&tmp.path().join("x.npz"))]), "GiB");
    assert!(err.contains("--scale"), "{err}");
    refused(&cimnet(&["eval", "--run", s(&run), "--synthetic", "--synth-scale", "1e6"]), "GiB");
    refused(&cimnet(&["data", "prepare-mosi", "--dir", ".", "--out", "x.npz", "--valid-fraction", "nan"]), "nan");
}

#[test]
fn an_empty_train_or_valid_split_is_an_error_naming_the_split() {
    let tmp = tempfile::tempdir().unwrap();
    for (split, index) in [("train", 0), ("valid", 1)] {
        let mut ds: Dataset = synth::tiny(1);
        ds.splits[index].clear();
        let data = tmp.path().join(format!("no-{split}.npz"));
        native::write(&ds, &data).unwrap();
        let run = tmp.path().join(format!("run-{split}"));
        let err = refused(&train(&data, &run, &[]), &format!("the {split} split"));
        assert!(err.contains("is empty"), "{err}");
        assert!(!run.exists(), "nothing written");
    }
}

#[test]
fn options_given_with_resume_are_honoured_or_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), 1);
    let run = tmp.path().join("run");
    ok(&train(&data, &run, &[]));
    let config = std::fs::read(run.join("config.json")).unwrap();
    let err = refused(&cimnet(&["train", "--resume", s(&run), "--lr", "0.5", "--hidden", "9"]), "--lr, --hidden");
    assert!(err.contains("cannot be given with --resume"), "{err}");
    refused(&cimnet(&["train", "--resume", s(&run), "--backend", "cpu"]), "--backend");
    refused(&cimnet(&["train", "--resume", s(&run), "--epochs", "1"]), "fewer than the 2 epochs");
    assert_eq!(std::fs::read(run.join("config.json")).unwrap(), config, "refusals change nothing");
    // A larger --epochs continues the run, and the config records it.
    let out = ok(&cimnet(&["train", "--resume", s(&run), "--epochs", "4"]));
    assert!(out.contains("epochs: 2 -> 4"), "{out}");
    assert_eq!(lines(&run.join("metrics.jsonl")), 4);
    assert_eq!(json(&run.join("config.json"))["train"]["epochs"], 4);
}

#[test]
fn a_run_records_its_data_and_refuses_it_changed_or_moved() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_data(tmp.path(), 1);
    // A relative --data, from the directory it is relative to.
    let args = ["train", "--data", "tiny.npz", "--epochs", "2", "--batch", "8", "--hidden", "4", "--dense", "3"];
    ok(&cimnet_in(Some(tmp.path()), &[], &[&args[..], &["--backend", "cpu", "--out", "run"]].concat()));
    let run = tmp.path().join("run");
    let cfg = json(&run.join("config.json"));
    let recorded = PathBuf::from(cfg["data"]["path"].as_str().unwrap());
    assert!(recorded.is_absolute() && recorded.ends_with("tiny.npz"), "{recorded:?}");
    assert_eq!(cfg["fingerprint"]["bytes"], std::fs::metadata(tmp.path().join("tiny.npz")).unwrap().len());

    // Eval from another directory finds the same file.
    ok(&cimnet(&["eval", "--run", s(&run), "--backend", "cpu"]));
    // The file changed under the run: refused, unless --data is given (then a notice).
    let original = std::fs::read(tmp.path().join("tiny.npz")).unwrap();
    tiny_data(tmp.path(), 2);
    let err = refused(&cimnet(&["eval", "--run", s(&run), "--backend", "cpu"]), "not the data this run was trained on");
    assert!(err.contains("--data"), "{err}");
    refused(&cimnet(&["train", "--resume", s(&run), "--epochs", "3"]), "not the data this run was trained on");
    let preds = tmp.path().join("p.jsonl");
    let o = cimnet(&["predict", "--run", s(&run), "--backend", "cpu", "--out", s(&preds)]);
    refused(&o, "not the data");
    let o = cimnet(&["predict", "--run", s(&run), "--backend", "cpu", "--data", s(&recorded), "--out", s(&preds)]);
    ok(&o);
    assert!(stderr(&o).contains("is not the data the run was trained on"), "{}", stderr(&o));
    // Moved: the old place is gone; --resume --data at the new place (same content) continues.
    std::fs::remove_file(&recorded).unwrap();
    let moved = tmp.path().join("moved.npz");
    std::fs::write(&moved, &original).unwrap();
    refused(&cimnet(&["eval", "--run", s(&run), "--backend", "cpu"]), "no longer exists");
    let out = ok(&cimnet(&["train", "--resume", s(&run), "--data", s(&moved), "--epochs", "3"]));
    assert!(out.contains("data moved"), "{out}");
    assert_eq!(json(&run.join("config.json"))["data"]["path"], s(&moved.canonicalize().unwrap()));
    ok(&cimnet(&["eval", "--run", s(&run), "--backend", "cpu"]));
}

#[test]
fn existing_output_files_are_kept_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), 1);
    let run = tmp.path().join("run");
    ok(&train(&data, &run, &["--epochs", "1"]));
    let taken = tmp.path().join("taken.jsonl");
    std::fs::write(&taken, b"precious").unwrap();
    let t = s(&taken);
    let npz = tmp.path().join("taken.npz");
    std::fs::write(&npz, b"precious").unwrap();
    let n = s(&npz);
    let cases: Vec<Vec<&str>> = vec![
        vec!["predict", "--run", s(&run), "--backend", "cpu", "--out", t],
        vec!["data", "synth", "--scale", "0.01", "--out", n],
        vec!["data", "convert", s(&data), "--out", n],
        vec!["init", "--dims", "4,3,2", "--out", n],
    ];
    for args in &cases {
        refused(&cimnet(args), "already exists; pass --force");
        assert_eq!(std::fs::read(&taken).unwrap(), b"precious");
        assert_eq!(std::fs::read(&npz).unwrap(), b"precious");
    }
    let mut forced = cases[1].clone();
    forced.push("--force");
    ok(&cimnet(&forced));
    assert!(Dataset::load(&npz).is_ok(), "--force replaced the file");
}

#[test]
fn backend_auto_falls_back_to_the_cpu_with_a_notice_when_no_adapter_matches() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path(), 1);
    let run = tmp.path().join("run");
    let xdg = tmp.path().join("xdg");
    std::fs::create_dir(&xdg).unwrap();
    let env = [("CIMNET_ADAPTER", "no-such-adapter-anywhere"), ("XDG_RUNTIME_DIR", s(&xdg))];
    let args = ["train", "--data", s(&data), "--epochs", "1", "--hidden", "4", "--dense", "3", "--out", s(&run)];
    let out = ok(&cimnet_in(None, &env, &args));
    assert!(out.contains("no GPU adapter matching 'no-such-adapter-anywhere' found"), "{out}");
    assert!(out.contains("apt-get install mesa-vulkan-drivers libvulkan1"), "{out}");
    assert_eq!(json(&run.join("config.json"))["train"]["backend"], "cpu", "the run records what auto chose");
    // An explicit --backend gpu does not fall back.
    let o = cimnet_in(None, &env, &["eval", "--run", s(&run), "--backend", "gpu"]);
    refused(&o, "no GPU adapter found matching 'no-such-adapter-anywhere'");
    // A misspelt WGPU_BACKEND is named, not turned into "no adapter".
    let o = cimnet_in(
        None,
        &[("WGPU_BACKEND", "vulkna"), ("XDG_RUNTIME_DIR", s(&xdg))],
        &["eval", "--run", s(&run), "--backend", "auto"],
    );
    refused(&o, "unknown backend 'vulkna'");
}
