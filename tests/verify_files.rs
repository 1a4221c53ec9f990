//! Every file cimnet reads is verified before it is trusted: zip CRCs, sizes
//! declared in npz and safetensors headers, shape products, the weights of a
//! run against its config on both engines; safetensors files are byte-identical
//! between identical runs; an error is said once and names the right tensor.

mod fixtures;
use fixtures::*;

use std::path::Path;
use std::process::{Command, Output};

use cimnet::data::{native, synth, Dataset, SplitName};
use cimnet::npz::NpzIn;
use cimnet::params::{ParamError, ParamStore};

fn cimnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cimnet")).args(args).output().expect("run cimnet")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message lacks '{p}':\n{msg}");
    }
}

/// Offset of the central-directory record of member `name` (zip signature PK\1\2).
fn central_record(bytes: &[u8], name: &str) -> usize {
    let name = name.as_bytes();
    (0..bytes.len() - 46)
        .find(|&i| bytes[i..i + 4] == *b"PK\x01\x02" && bytes[i + 46..].starts_with(name))
        .expect("member in the central directory")
}

#[test]
fn a_corrupt_stored_member_fails_its_crc_naming_file_and_array() {
    let ds = small_dataset();
    let mut bytes = stored_native(&ds);
    // Flip one bit of the last value of train_text: the .npy stays well-formed,
    // only the zip CRC-32 can tell.
    let members = zip_members(&bytes);
    let text = &members.iter().find(|(n, _)| n == "train_text").unwrap().1;
    let tail = &text[text.len() - 8..];
    let at = (0..bytes.len() - 8).find(|&i| bytes[i..i + 8] == *tail).unwrap() + 7;
    bytes[at] ^= 0x10;
    let err = native::read_bytes("bad.npz", bytes.clone()).unwrap_err().to_string();
    assert_mentions(&err, &["bad.npz", "train_text", "CRC"]);
    let mut npz = NpzIn::from_bytes("bad.npz", bytes).unwrap();
    assert!(npz.read_f32("train_text").is_err(), "the raw reader refuses it too");
    assert!(npz.read_f32("train_audio").is_ok(), "other members are fine");
}

#[test]
fn data_convert_of_an_npz_with_a_bad_crc_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.npz");
    native::write(&small_dataset(), &good).unwrap();
    let mut bytes = std::fs::read(&good).unwrap();
    let rec = central_record(&bytes, "valid_sentiment.npy");
    bytes[rec + 16] ^= 0xff; // the recorded CRC-32 of a deflated member
    let bad = dir.path().join("bad.npz");
    std::fs::write(&bad, &bytes).unwrap();
    let out = dir.path().join("out.npz");
    let o = cimnet(&["data", "convert", bad.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(!o.status.success(), "convert must refuse a corrupt member");
    assert_mentions(&stderr(&o), &["bad.npz", "valid_sentiment", "CRC"]);
    assert!(!out.exists(), "nothing written");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 2, "no temporary file left: {leftovers:?}");
    // The intact file converts.
    let o = cimnet(&["data", "convert", good.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(Dataset::load(&out).unwrap().splits, small_dataset().splits);
}

/// A native archive from `small_dataset` with member `name` replaced.
fn with_member(name: &str, npy: Vec<u8>) -> Vec<u8> {
    let mut members = zip_members(&stored_native(&small_dataset()));
    members.iter_mut().find(|(n, _)| n == name).unwrap().1 = npy;
    stored_zip(&members)
}

#[test]
fn a_member_of_no_known_name_is_refused_so_an_optional_array_cannot_vanish() {
    let mut members = zip_members(&stored_native(&small_dataset()));
    members.iter_mut().find(|(n, _)| n == "valid_ids").unwrap().0 = "valid_idz".to_string();
    let err = native::read_bytes("renamed.npz", stored_zip(&members)).unwrap_err().to_string();
    assert_mentions(&err, &["renamed.npz", "unexpected member 'valid_idz.npy'"]);
}

#[test]
fn a_header_whose_shape_product_overflows_is_an_error_not_a_panic() {
    let big = 1usize << 32;
    let bytes = with_member("train_len", npy_bytes("<i4", &[big, big, big], &i32_bytes(&[1, 1])));
    let err = native::read_bytes("huge.npz", bytes).unwrap_err().to_string();
    assert_mentions(&err, &["huge.npz", "train_len", "shape [4294967296, 4294967296, 4294967296]"]);
}

#[test]
fn a_shape_larger_than_the_data_is_refused_before_allocating() {
    // 10^15 f32 values claimed, 8 bytes present: refused from the sizes alone.
    let bytes = with_member("test_audio", npy_bytes("<f4", &[1_000_000_000_000_000], &f32_bytes(&[1.0, 2.0])));
    let err = native::read_bytes("short.npz", bytes).unwrap_err().to_string();
    assert_mentions(&err, &["short.npz", "test_audio", "needs 4000000000000000 bytes", "holds 8"]);
    // A declared uncompressed size no deflate stream can reach.
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.npz");
    native::write(&small_dataset(), &good).unwrap();
    let mut b = std::fs::read(&good).unwrap();
    let rec = central_record(&b, "train_video.npy");
    b[rec + 24..rec + 28].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let err = native::read_bytes("bomb.npz", b).unwrap_err().to_string();
    assert_mentions(&err, &["bomb.npz", "train_video", "2147483647 bytes uncompressed"]);
}

#[test]
fn npy_headers_of_every_kind_of_damage_get_a_clear_error() {
    let data = f32_bytes(&[1.0, 2.0]);
    for (dict, expect) in [
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", None),
        ("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", Some("dtype '<c8' is not supported")),
        ("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", Some("structured")),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", Some("needs 12 bytes")),
        ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", Some("not a tuple")),
        ("{'descr': '<f4', 'fortran_order': maybe, 'shape': (2,), }", Some("fortran_order")),
        ("{'descr': '<f4', 'shape': (2,), }", Some("all required")),
        ("not a dict", Some("no opening brace")),
    ] {
        let bytes = with_member("train_sentiment", npy_with_header(dict, &data));
        let mut npz = NpzIn::from_bytes("h.npz", bytes).unwrap();
        let r = npz.read_float("train_sentiment");
        match expect {
            None => assert_eq!(r.unwrap().data, vec![1.0, 2.0]),
            Some(e) => assert_mentions(&r.unwrap_err().to_string(), &["h.npz", "train_sentiment", e]),
        }
    }
}

#[test]
fn safetensors_with_a_huge_empty_dimension_is_refused_not_a_panic() {
    let p = ParamStore::init(&small_config(), 1);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = p
        .layout
        .slices
        .iter()
        .map(|s| (s.name.clone(), s.shape.clone(), bytemuck::cast_slice(p.get(&s.name)).to_vec()))
        .collect();
    // weight_hh [0, 10^15]: no bytes, so safetensors itself accepts it; H = 10^15 would overflow the layout.
    tensors.iter_mut().find(|t| t.0 == "text.gru.weight_hh_l0").unwrap().1 = vec![0, 1_000_000_000_000_000];
    tensors.iter_mut().find(|t| t.0 == "text.gru.weight_hh_l0").unwrap().2.clear();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, b)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
        })
        .collect();
    let bytes = safetensors::serialize(views, Some(p.metadata().into_iter().collect())).unwrap();
    let err = ParamStore::from_safetensors(&bytes, Path::new("w.safetensors")).unwrap_err().to_string();
    assert_mentions(&err, &["w.safetensors", "hidden size H 1000000000000000", "larger than the file"]);
}

#[test]
fn several_unexpected_tensors_always_name_the_same_one() {
    let p = ParamStore::init(&small_config(), 1);
    let mut names: Vec<(String, Vec<f32>)> =
        p.layout.slices.iter().map(|s| (s.name.clone(), p.get(&s.name).to_vec())).collect();
    for extra in ["zeta.weight", "alpha.weight", "mid.bias"] {
        names.push((extra.to_string(), vec![1.0]));
    }
    let bytes_of: Vec<(String, Vec<u8>)> =
        names.iter().map(|(n, v)| (n.clone(), bytemuck::cast_slice(v).to_vec())).collect();
    for _ in 0..4 {
        let views: Vec<(String, safetensors::tensor::TensorView)> = bytes_of
            .iter()
            .map(|(n, b)| {
                let shape = vec![b.len() / 4];
                let shape = p.layout.get(n).map_or(shape, |s| s.shape.clone());
                (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, b).unwrap())
            })
            .collect();
        let bytes = safetensors::serialize(views, Some(p.metadata().into_iter().collect())).unwrap();
        match ParamStore::from_safetensors(&bytes, Path::new("x.safetensors")) {
            Err(ParamError::Extra { name, .. }) => assert_eq!(name, "alpha.weight"),
            other => panic!("expected an extra-tensor error, got {other:?}"),
        }
    }
}

#[test]
fn identical_saves_in_two_processes_are_byte_identical_with_sorted_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for k in 0..2 {
        let out = dir.path().join(format!("w{k}.safetensors"));
        let args = ["init", "--dims", "4,3,2", "--hidden", "3", "--dense", "2", "--seed", "7", "--out"];
        let o = cimnet(&[&args[..], &[out.to_str().unwrap()]].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        files.push(std::fs::read(&out).unwrap());
    }
    assert!(files[0] == files[1], "two processes (two HashMap seeds) wrote different bytes");
    let n = u64::from_le_bytes(files[0][..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&files[0][8..8 + n]).unwrap();
    assert!(header.starts_with(r#"{"__metadata__":{"attention":"cim","dropout":"#), "{header}");
    // The library writes the same bytes as the CLI and they read back.
    let p = ParamStore::load(&dir.path().join("w0.safetensors")).unwrap();
    assert!(p.to_safetensors() == files[0]);
}

/// A finished one-epoch CPU run on tiny data: (run dir, data path).
fn finished_run(dir: &Path) -> (String, String) {
    let data = dir.join("tiny.npz");
    native::write(&synth::tiny(2), &data).unwrap();
    let run = dir.join("run");
    let (d, r) = (data.to_str().unwrap().to_string(), run.to_str().unwrap().to_string());
    let args = ["train", "--data", &d, "--epochs", "1", "--batch", "8", "--hidden", "4", "--dense", "3"];
    let o = cimnet(&[&args[..], &["--backend", "cpu", "--out", &r]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    (r, d)
}

#[test]
fn eval_predict_attention_refuse_weights_that_are_not_the_runs_model_on_both_engines() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, _) = finished_run(tmp.path());
    let model = Path::new(&run).join("model.safetensors");
    let kept = ParamStore::load(&model).unwrap();
    let cfg = kept.config.clone();
    let ok = cimnet(&["eval", "--run", &run, "--backend", "cpu"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    // Other input dims; a different modality set; other tasks; another H.
    let mut variants = Vec::new();
    let mut c = cfg.clone();
    c.dims[0] += 1;
    variants.push((c, "input dims"));
    let mut c = cfg.clone();
    c.modalities = "TV".parse().unwrap();
    c.dims[1] = 0;
    variants.push((c, "modalities TV"));
    let mut c = cfg.clone();
    c.tasks = "sentiment".parse().unwrap();
    variants.push((c, "tasks sentiment"));
    let mut c = cfg.clone();
    c.hidden += 1;
    variants.push((c, "hidden size H"));
    let png = tmp.path().join("a.png");
    let preds = tmp.path().join("p.jsonl");
    for (c, what) in variants {
        ParamStore::init(&c, 3).save(&model).unwrap();
        for backend in ["cpu", "gpu"] {
            let o = cimnet(&["eval", "--run", &run, "--backend", backend]);
            assert!(!o.status.success(), "{backend} eval accepted weights with other {what}");
            let e = stderr(&o);
            assert_mentions(&e, &["model.safetensors", "not the run's model", what]);
            assert_eq!(e.matches("not the run's model").count(), 1, "said once: {e}");
            let o = cimnet(&["predict", "--run", &run, "--backend", backend, "--out", preds.to_str().unwrap()]);
            assert!(!o.status.success() && stderr(&o).contains(what), "{backend} predict: {}", stderr(&o));
        }
        let o = cimnet(&["attention", "--run", &run, "--video", "x", "--out", png.to_str().unwrap()]);
        assert!(!o.status.success() && stderr(&o).contains(what), "attention: {}", stderr(&o));
        assert!(!preds.exists() && !png.exists());
    }
}

#[test]
fn data_info_prints_totals_over_the_splits() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tiny.npz");
    let ds = synth::tiny(4);
    native::write(&ds, &path).unwrap();
    let o = cimnet(&["data", "info", path.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let videos: usize = SplitName::ALL.iter().map(|&s| ds.split(s).len()).sum();
    let utts: usize = SplitName::ALL.iter().map(|&s| ds.utterances(s)).sum();
    assert_eq!(j["total"]["videos"], videos);
    assert_eq!(j["total"]["utterances"], utts);
    let o = cimnet(&["data", "info", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = text.lines().find(|l| l.starts_with("total")).unwrap_or_else(|| panic!("no total row:\n{text}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((cols[1], cols[2]), (videos.to_string().as_str(), utts.to_string().as_str()), "{line}");
}

#[test]
fn a_missing_file_is_said_once() {
    let o = cimnet(&["data", "info", "/nonexistent/dir/x.npz"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert_eq!(e.matches("x.npz").count(), 1, "{e}");
    let o = cimnet(&["grads", "--weights", "/nonexistent/w.safetensors", "--batch", "b.npz", "--out", "g.npz"]);
    let e = stderr(&o);
    assert_eq!(e.matches("No such file").count(), 1, "{e}");
}
