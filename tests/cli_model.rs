//! `cimnet init` and `cimnet grads` end to end through the binary.

mod common;
use common::*;

use std::process::Command;

use cimnet::grads::cpu_grads;
use cimnet::npz::NpzIn;
use cimnet::params::ParamStore;

fn cimnet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cimnet")).args(args).output().expect("run cimnet")
}

#[test]
fn init_then_grads_writes_every_gradient_named_as_its_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.safetensors");
    let o = cimnet(&[
        "init",
        "--modalities",
        "TV",
        "--attention",
        "cim",
        "--tasks",
        "mtl",
        "--dims",
        "6,5,4",
        "--hidden",
        "5",
        "--dense",
        "3",
        "--seed",
        "3",
        "--out",
        w.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let params = ParamStore::load(&w).unwrap();
    assert_eq!(params.config.dims, [6, 0, 4], "only the set's modalities are used");
    assert_eq!((params.config.hidden, params.config.dense), (5, 3));

    // A batch with all three modalities: audio is ignored by a TV model.
    let batch = random_batch([6, 5, 4], &LENS, 9);
    let bpath = dir.path().join("b.npz");
    batch.write_npz(&bpath).unwrap();
    let g = dir.path().join("g.npz");
    let o = cimnet(&[
        "grads",
        "--weights",
        w.to_str().unwrap(),
        "--batch",
        bpath.to_str().unwrap(),
        "--out",
        g.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The file agrees with the library run on the f32-rounded batch that was written.
    let mut reread = cimnet::batch::Batch::read_npz(&bpath).unwrap();
    cimnet::grads::restrict_to_model(&mut reread, &params);
    let want = cpu_grads(&params, &reread).unwrap();
    let mut npz = NpzIn::open(&g).unwrap();
    assert_eq!(npz.read_float("loss").unwrap().data, vec![want.loss]);
    assert_eq!(npz.read_float("loss_sentiment").unwrap().data, vec![want.loss_sentiment.unwrap()]);
    assert_eq!(npz.read_float("loss_emotion").unwrap().data, vec![want.loss_emotion.unwrap()]);
    let sp = npz.read_float("sentiment_prob").unwrap();
    assert_eq!(sp.shape, vec![4, 12, 2]);
    assert_eq!(npz.read_float("emotion_prob").unwrap().shape, vec![4, 12, 7]);
    assert_eq!(npz.read_float("grad_input.text").unwrap().data, want.grad_inputs[0].clone().unwrap());
    assert!(!npz.has("grad_input.audio"), "a TV model has no audio gradient");
    assert_eq!(npz.read_float("grad_input.video").unwrap().shape, vec![4, 12, 4]);
    for s in &params.layout.slices {
        let a = npz.read_float(&s.name).unwrap();
        assert_eq!(a.shape, s.shape, "{}", s.name);
        assert_eq!(a.data, want.grad_params[s.range()].to_vec(), "{}", s.name);
    }
}

#[test]
fn bad_input_gives_a_clear_error_and_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.safetensors");
    let ws = w.to_str().unwrap();
    // Unknown option values name what is allowed.
    let o = cimnet(&["init", "--modalities", "TX", "--dims", "3,3,3", "--out", ws]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("allowed are T, A, V, TV, TA, AV, TAV"));
    let o = cimnet(&["init", "--modalities", "TA", "--dims", "3,0,3", "--out", ws]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("audio dimension"));
    assert!(!w.exists(), "nothing written on error");

    assert!(cimnet(&["init", "--modalities", "TAV", "--dims", "3,3,3", "--hidden", "4", "--dense", "2", "--out", ws])
        .status
        .success());
    let before = std::fs::read(&w).unwrap();
    let o = cimnet(&["init", "--dims", "3,3,3", "--out", ws]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_eq!(std::fs::read(&w).unwrap(), before, "existing file untouched");

    // A batch whose video 2 has len 0: the error names the file and the video.
    let mut batch = random_batch([3, 3, 3], &[3, 2, 1], 5);
    batch.len[2] = 0;
    let bpath = dir.path().join("bad.npz");
    batch.write_npz(&bpath).unwrap();
    let g = dir.path().join("g.npz");
    let o = cimnet(&["grads", "--weights", ws, "--batch", bpath.to_str().unwrap(), "--out", g.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("bad.npz") && err.contains("video 2"), "{err}");
    assert!(!g.exists());

    // NaN feature at a real position: named down to the utterance.
    let mut batch = random_batch([3, 3, 3], &[3, 2, 1], 5);
    // video 1, utterance 1 of a (B 3, U 3, D 3) tensor, feature 2.
    batch.features[2].as_mut().unwrap()[(3 + 1) * 3 + 2] = f64::NAN;
    batch.write_npz(&bpath).unwrap();
    let o = cimnet(&["grads", "--weights", ws, "--batch", bpath.to_str().unwrap(), "--out", g.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("video") && err.contains("video 1 utterance 1"), "{err}");

    // Missing modality the model needs.
    let mut batch = random_batch([3, 3, 0], &[3, 2, 1], 5);
    batch.dims[2] = 0;
    batch.write_npz(&bpath).unwrap();
    let o = cimnet(&["grads", "--weights", ws, "--batch", bpath.to_str().unwrap(), "--out", g.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("video features"), "{err}");

    // Missing weights file.
    let o = cimnet(&[
        "grads",
        "--weights",
        "/nonexistent/w.safetensors",
        "--batch",
        bpath.to_str().unwrap(),
        "--out",
        g.to_str().unwrap(),
    ]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("/nonexistent/w.safetensors"));
}

/// `grads --backend gpu` writes the same arrays as the CPU path, to f32 accuracy.
#[test]
fn grads_on_the_gpu_match_the_cpu_file() {
    if std::env::var("CIMNET_SKIP_GPU_TESTS").as_deref() == Ok("1") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.safetensors");
    let ws = w.to_str().unwrap();
    assert!(cimnet(&["init", "--dims", "6,5,4", "--hidden", "5", "--dense", "3", "--seed", "2", "--out", ws])
        .status
        .success());
    let batch = random_batch([6, 5, 4], &LENS, 4);
    let bpath = dir.path().join("b.npz");
    batch.write_npz(&bpath).unwrap();
    let (gc, gg) = (dir.path().join("cpu.npz"), dir.path().join("gpu.npz"));
    for (backend, out) in [("cpu", &gc), ("gpu", &gg)] {
        let o = cimnet(&[
            "grads",
            "--weights",
            ws,
            "--batch",
            bpath.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--backend",
            backend,
        ]);
        assert!(o.status.success(), "{backend}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let (mut c, mut g) = (NpzIn::open(&gc).unwrap(), NpzIn::open(&gg).unwrap());
    assert_eq!(c.names(), g.names(), "same arrays");
    let params = ParamStore::load(&w).unwrap();
    for name in c.names() {
        let (a, b) = (c.read_float(&name).unwrap(), g.read_float(&name).unwrap());
        assert_eq!(a.shape, b.shape, "{name}");
        let scale = a.data.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-30);
        // Probabilities are undefined at padded positions: compare real ones only.
        let real = |i: usize| -> bool {
            if !name.ends_with("_prob") {
                return true;
            }
            let w = a.shape[2];
            let (bi, t) = (i / (batch.u * w), (i / w) % batch.u);
            t < LENS[bi]
        };
        for (i, (x, y)) in a.data.iter().zip(&b.data).enumerate() {
            if real(i) {
                assert!((x - y).abs() <= 1e-4 * scale, "{name}[{i}]: cpu {x} gpu {y}");
            }
        }
    }
    assert!(params.layout.slices.iter().all(|s| c.has(&s.name)));
}
