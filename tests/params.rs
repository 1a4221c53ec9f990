//! The flat parameter store: MODEL.md's names and shapes for every variant,
//! initialisation, and safetensors save / load / rejection.

mod common;
use common::*;

use std::collections::BTreeMap;

use cimnet::config::{Attention, ModalitySet, ModelConfig, Tasks};
use cimnet::params::{Layout, ParamError, ParamStore, SLICE_ALIGN};
use safetensors::{tensor::TensorView, Dtype};

/// MODEL.md's weight table, written out independently of `Layout::new`.
fn model_md_table(cfg: &ModelConfig) -> BTreeMap<String, Vec<usize>> {
    let (h, d) = (cfg.hidden, cfg.dense);
    let n = cfg.modalities.as_str().len();
    let blocks = match (cfg.attention, n) {
        (Attention::Cim, 3) => 9,
        (Attention::Cim, 2) => 4,
        (Attention::Cim, _) => 2,
        (Attention::SelfAttn, n) => 2 * n,
        (Attention::None, n) => n,
    };
    let r = blocks * d;
    let mut t = BTreeMap::new();
    for (letter, name, k) in [('T', "text", cfg.dims[0]), ('A', "audio", cfg.dims[1]), ('V', "video", cfg.dims[2])] {
        if !cfg.modalities.as_str().contains(letter) {
            continue;
        }
        for sfx in ["", "_reverse"] {
            t.insert(format!("{name}.gru.weight_ih_l0{sfx}"), vec![3 * h, k]);
            t.insert(format!("{name}.gru.weight_hh_l0{sfx}"), vec![3 * h, h]);
            t.insert(format!("{name}.gru.bias_ih_l0{sfx}"), vec![3 * h]);
            t.insert(format!("{name}.gru.bias_hh_l0{sfx}"), vec![3 * h]);
        }
        t.insert(format!("{name}.dense.weight"), vec![d, 2 * h]);
        t.insert(format!("{name}.dense.bias"), vec![d]);
    }
    if cfg.tasks != Tasks::Emotion {
        t.insert("sentiment.weight".into(), vec![2, r]);
        t.insert("sentiment.bias".into(), vec![2]);
    }
    if cfg.tasks != Tasks::Sentiment {
        t.insert("emotion.weight".into(), vec![7, r]);
        t.insert("emotion.bias".into(), vec![7]);
    }
    t
}

fn all_variants() -> Vec<ModelConfig> {
    let mut v = Vec::new();
    for set in ModalitySet::ALL {
        for a in Attention::ALL {
            for t in Tasks::ALL {
                v.push(ModelConfig::new(set, a, t, [300, 74, 35]));
            }
        }
    }
    v
}

#[test]
fn names_and_shapes_written_for_each_variant_equal_model_md() {
    let dir = tempfile::tempdir().unwrap();
    for cfg in all_variants() {
        let p = ParamStore::init(&cfg, 1);
        let path = dir.path().join("w.safetensors");
        p.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let written: BTreeMap<String, Vec<usize>> =
            st.tensors().into_iter().map(|(n, t)| (n, t.shape().to_vec())).collect();
        assert_eq!(written, model_md_table(&cfg), "{}/{}/{}", cfg.modalities, cfg.attention, cfg.tasks);
        for (_, t) in st.tensors() {
            assert_eq!(t.dtype(), Dtype::F32);
        }
    }
}

#[test]
fn slices_are_aligned_and_disjoint() {
    for cfg in all_variants() {
        let l = Layout::new(&cfg);
        let mut end = 0;
        for s in &l.slices {
            assert_eq!(s.offset % SLICE_ALIGN, 0, "{} misaligned", s.name);
            assert!(s.offset >= end, "{} overlaps its predecessor", s.name);
            end = s.offset + s.len();
        }
        assert!(end <= l.len);
    }
}

#[test]
fn init_is_glorot_orthogonal_and_zero_bias_and_seeded() {
    let cfg = ModelConfig::new(ModalitySet::TAV, Attention::Cim, Tasks::Mtl, [300, 74, 35]);
    let p = ParamStore::init(&cfg, 7);
    assert_eq!(p, ParamStore::init(&cfg, 7), "same seed, same parameters");
    assert_ne!(p.values, ParamStore::init(&cfg, 8).values, "another seed, other parameters");
    for s in &p.layout.slices {
        let v = p.get(&s.name);
        if s.name.contains("bias") {
            assert!(v.iter().all(|&x| x == 0.0), "{} not zero", s.name);
        } else if s.name.contains("weight_hh") {
            // Columns orthonormal: W^T W = I (H x H).
            let (rows, cols) = (s.shape[0], s.shape[1]);
            for a in (0..cols).step_by(37) {
                for b in (0..cols).step_by(23) {
                    let dot: f64 = (0..rows).map(|r| f64::from(v[r * cols + a]) * f64::from(v[r * cols + b])).sum();
                    let want = if a == b { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-5, "{}: column {a}.{b} = {dot}", s.name);
                }
            }
        } else {
            let limit = (6.0 / (s.shape[0] + s.shape[1]) as f64).sqrt() as f32;
            assert!(v.iter().all(|x| x.abs() <= limit), "{} exceeds the Glorot limit", s.name);
            let var: f64 = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / v.len() as f64;
            let want = f64::from(limit).powi(2) / 3.0; // variance of U(-a, a)
            assert!((var / want - 1.0).abs() < 0.1, "{}: variance {var} vs {want}", s.name);
        }
    }
}

#[test]
fn safetensors_round_trip_rebuilds_the_model_from_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    for cfg in all_variants().into_iter().step_by(5) {
        let mut cfg = cfg;
        cfg.hidden = 6;
        cfg.dense = 5;
        cfg.dims = [7, 0, 3].map(|d| d);
        cfg.dims[1] = if cfg.modalities.as_str().contains('A') { 4 } else { 0 };
        if !cfg.modalities.as_str().contains('T') {
            cfg.dims[0] = 0;
        }
        if !cfg.modalities.as_str().contains('V') {
            cfg.dims[2] = 0;
        }
        let mut p = ParamStore::init(&cfg, 3);
        let layout = p.layout.clone();
        for (v, r) in p.values.iter_mut().zip(random_params(&layout, 4, 1.0)) {
            *v = r as f32; // non-zero biases too
        }
        let path = dir.path().join("m.safetensors");
        p.save(&path).unwrap();
        let q = ParamStore::load(&path).unwrap();
        assert_eq!(q, p);
    }
}

/// Write a safetensors file from (name, shape, f32 values) with cimnet metadata.
fn write_custom(path: &std::path::Path, tensors: &[(String, Vec<usize>, Vec<u8>, Dtype)], meta: &ParamStore) {
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, s, b, dt)| (n.clone(), TensorView::new(*dt, s.clone(), b).unwrap())).collect();
    let bytes = safetensors::serialize(views, Some(meta.metadata().into_iter().collect())).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn tensors_of(p: &ParamStore) -> Vec<(String, Vec<usize>, Vec<u8>, Dtype)> {
    p.layout
        .slices
        .iter()
        .map(|s| (s.name.clone(), s.shape.clone(), bytemuck::cast_slice(p.get(&s.name)).to_vec(), Dtype::F32))
        .collect()
}

#[test]
fn f16_and_bf16_files_load() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config("TV", "cim", "mtl");
    let p = ParamStore::init(&cfg, 5);
    for (dt, conv) in [
        (Dtype::F16, (|x: f32| half::f16::from_f32(x).to_bits()) as fn(f32) -> u16),
        (Dtype::BF16, |x: f32| half::bf16::from_f32(x).to_bits()),
    ] {
        let t: Vec<_> = p
            .layout
            .slices
            .iter()
            .map(|s| {
                let b: Vec<u8> = p.get(&s.name).iter().flat_map(|&x| conv(x).to_le_bytes()).collect();
                (s.name.clone(), s.shape.clone(), b, dt)
            })
            .collect();
        let path = dir.path().join("h.safetensors");
        write_custom(&path, &t, &p);
        let q = ParamStore::load(&path).unwrap();
        assert_eq!(q.config, p.config);
        let tol = if dt == Dtype::F16 { 1e-3 } else { 1e-2 }; // half-precision rounding of values below 1
        for (a, b) in q.values.iter().zip(&p.values) {
            assert!((a - b).abs() <= tol * b.abs().max(1e-2), "{dt:?}: {a} vs {b}");
        }
        assert_ne!(q.values, p.values, "{dt:?} values were rounded, so they differ from f32");
    }
}

#[test]
fn bad_files_are_rejected_naming_the_tensor_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config("TAV", "cim", "mtl");
    let p = ParamStore::init(&cfg, 5);
    let path = dir.path().join("bad.safetensors");
    let msg = |e: ParamError| e.to_string();

    // Missing tensor.
    let mut t = tensors_of(&p);
    t.retain(|x| x.0 != "audio.dense.bias");
    write_custom(&path, &t, &p);
    let e = msg(ParamStore::load(&path).unwrap_err());
    assert!(e.contains("audio.dense.bias") && e.contains("missing"), "{e}");

    // Extra tensor.
    let mut t = tensors_of(&p);
    t.push(("extra.weight".into(), vec![2], vec![0; 8], Dtype::F32));
    write_custom(&path, &t, &p);
    let e = msg(ParamStore::load(&path).unwrap_err());
    assert!(e.contains("extra.weight") && e.contains("unexpected"), "{e}");

    // Mis-shaped tensor: both shapes named.
    let mut t = tensors_of(&p);
    let i = t.iter().position(|x| x.0 == "emotion.weight").unwrap();
    let r = t[i].1[1];
    t[i].1 = vec![6, r];
    t[i].2.truncate(6 * r * 4);
    write_custom(&path, &t, &p);
    let e = msg(ParamStore::load(&path).unwrap_err());
    assert!(
        e.contains("emotion.weight") && e.contains(&format!("[6, {r}]")) && e.contains(&format!("[7, {r}]")),
        "{e}"
    );

    // Missing metadata.
    let owned = tensors_of(&p);
    let views: Vec<(String, TensorView)> =
        owned.iter().map(|(n, s, b, dt)| (n.clone(), TensorView::new(*dt, s.clone(), b).unwrap())).collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let e = msg(ParamStore::load(&path).unwrap_err());
    assert!(e.contains("modalities"), "{e}");

    // Not a safetensors file at all, and a truncated one.
    std::fs::write(&path, b"hello").unwrap();
    assert!(msg(ParamStore::load(&path).unwrap_err()).contains("not a valid safetensors"));
    p.save(&path).unwrap();
    let full = std::fs::read(&path).unwrap();
    std::fs::write(&path, &full[..full.len() - 10]).unwrap();
    assert!(msg(ParamStore::load(&path).unwrap_err()).contains("bad.safetensors"));

    // Non-finite values.
    let mut t = tensors_of(&p);
    t[0].2[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
    write_custom(&path, &t, &p);
    assert!(msg(ParamStore::load(&path).unwrap_err()).contains("non-finite"));
}

#[test]
fn saving_is_atomic_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config("T", "none", "sentiment");
    let p = ParamStore::init(&cfg, 1);
    let path = dir.path().join("w.safetensors");
    p.save(&path).unwrap();
    p.save(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "only the final file remains: {names:?}");
}
