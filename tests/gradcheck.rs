//! Finite-difference gradient checks of the CPU reference, in f64: each layer
//! alone, then the whole model for all 63 variants (7 modality sets x 3
//! attention kinds x 3 task setups), on random masked batches with non-zero
//! biases. Error formula: see `common::rel_err`
//!     err = |analytic - numeric| / max(|analytic|, |numeric|, 1e-4) <= 1e-6.

mod common;
use common::*;

use cimnet::config::{Attention, ModalitySet, Tasks};
use cimnet::cpu::attention::{attention_backward, attention_forward};
use cimnet::cpu::dense::{dense_backward, dense_forward};
use cimnet::cpu::dropout::{dropout_backward, dropout_forward, dropout_mask};
use cimnet::cpu::gru::{gru_backward, gru_forward, GruGrads, GruShape, GruWeights};
use cimnet::cpu::heads::{heads_backward, heads_forward, Head, HeadGrads};
use cimnet::cpu::model::{backward, forward, DropoutMasks};
use cimnet::params::Layout;

fn weighted_sum(a: &[f64], c: &[f64]) -> f64 {
    a.iter().zip(c).map(|(x, y)| x * y).sum()
}

#[test]
fn gru_each_direction_matches_finite_differences() {
    let (k, h) = (5, 4);
    let lens = LENS;
    let u = 12;
    let s = GruShape { b: lens.len(), u, k, h };
    let x = random_vec(s.b * u * k, 1);
    let w_all = random_vec(3 * h * k + 3 * h * h + 6 * h, 2).iter().map(|v| v * 0.8).collect::<Vec<_>>();
    let c = random_vec(s.b * u * h, 3); // loss = sum(c * h_out)
    let split = |w: &[f64]| -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let (a, rest) = w.split_at(3 * h * k);
        let (bm, rest) = rest.split_at(3 * h * h);
        let (ci, d) = rest.split_at(3 * h);
        (a.to_vec(), bm.to_vec(), ci.to_vec(), d.to_vec())
    };
    for reverse in [false, true] {
        let loss = |x: &[f64], w: &[f64]| {
            let (a, bm, ci, d) = split(w);
            let gw = GruWeights { w_ih: &a, w_hh: &bm, b_ih: &ci, b_hh: &d };
            weighted_sum(&gru_forward(x, &gw, &lens, s, reverse).h, &c)
        };
        let (a, bm, ci, d) = split(&w_all);
        let gw = GruWeights { w_ih: &a, w_hh: &bm, b_ih: &ci, b_hh: &d };
        let cache = gru_forward(&x, &gw, &lens, s, reverse);
        // Padded outputs are zero.
        for (b, &l) in lens.iter().enumerate() {
            assert!(cache.h[(b * u + l) * h..(b + 1) * u * h].iter().all(|&v| v == 0.0));
        }
        let mut dx = vec![0.0; x.len()];
        let mut gbuf = [vec![0.0; a.len()], vec![0.0; bm.len()], vec![0.0; ci.len()], vec![0.0; d.len()]];
        {
            let [w_ih, w_hh, b_ih, b_hh] = &mut gbuf[..] else { unreachable!() };
            let mut g = GruGrads { w_ih, w_hh, b_ih, b_hh };
            gru_backward(&mut dx, &mut g, &c, &x, &gw, &cache, &lens, s, reverse);
        }
        let gw_flat: Vec<f64> = gbuf.concat();
        let tag = if reverse { "reverse" } else { "forward" };
        check_all(&format!("gru {tag} dx"), &x, &dx, &(0..x.len()).collect::<Vec<_>>(), |x| loss(x, &w_all));
        check_all(&format!("gru {tag} weights"), &w_all, &gw_flat, &(0..w_all.len()).collect::<Vec<_>>(), |w| {
            loss(&x, w)
        });
    }
}

#[test]
fn dense_relu_matches_finite_differences() {
    let (k, d, u) = (6, 5, 12);
    let lens = LENS;
    let b = lens.len();
    let x = random_vec(b * u * k, 4);
    let w = random_vec(d * k, 5);
    let bias = random_vec(d, 6);
    let c = random_vec(b * u * d, 7);
    let loss = |x: &[f64], w: &[f64], bias: &[f64]| weighted_sum(&dense_forward(x, w, bias, &lens, b, u, k, d), &c);
    let y = dense_forward(&x, &w, &bias, &lens, b, u, k, d);
    assert!(y.contains(&0.0) && y.iter().any(|&v| v > 0.0), "ReLU should be active and inactive somewhere");
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; d]);
    dense_backward(&mut dx, &mut dw, &mut db, &c, &x, &y, &w, &lens, b, u, k, d);
    check_all("dense dx", &x, &dx, &(0..x.len()).collect::<Vec<_>>(), |x| loss(x, &w, &bias));
    check_all("dense dw", &w, &dw, &(0..w.len()).collect::<Vec<_>>(), |w| loss(&x, w, &bias));
    check_all("dense db", &bias, &db, &(0..d).collect::<Vec<_>>(), |bb| loss(&x, &w, bb));
}

#[test]
fn dropout_applies_its_mask_both_ways() {
    let n = 1000;
    let p = 0.3;
    let mask = dropout_mask(7, 2, n, p);
    let kept = mask.iter().filter(|&&m| m != 0.0).count() as f64 / n as f64;
    assert!((kept - 0.7).abs() < 0.05, "keep rate {kept} far from 0.7");
    assert!(mask.iter().all(|&m| m == 0.0 || (m - 1.0 / 0.7).abs() < 1e-15));
    assert_ne!(mask, dropout_mask(8, 2, n, p), "another seed gives another mask");
    assert_ne!(mask, dropout_mask(7, 3, n, p), "another stream gives another mask");
    let x = random_vec(n, 8);
    let c = random_vec(n, 9);
    let mut dx = vec![0.0; n];
    dropout_backward(&mut dx, &c, &mask);
    check_all("dropout dx", &x, &dx, &(0..n).collect::<Vec<_>>(), |x| weighted_sum(&dropout_forward(x, &mask), &c));
}

#[test]
fn attention_matches_finite_differences_cross_and_self() {
    let (d, u) = (4, 12);
    let lens = LENS;
    let b = lens.len();
    let x = random_vec(b * u * d, 10);
    let y = random_vec(b * u * d, 11);
    let c = random_vec(b * u * d, 12);
    let all: Vec<usize> = (0..x.len()).collect();
    // Cross attention att(X, Y).
    let loss = |x: &[f64], y: &[f64]| weighted_sum(&attention_forward(x, y, &lens, b, u, d).0, &c);
    let (out, cache) = attention_forward(&x, &y, &lens, b, u, d);
    for (bi, &l) in lens.iter().enumerate() {
        assert!(out[(bi * u + l) * d..(bi + 1) * u * d].iter().all(|&v| v == 0.0), "padded rows are zero");
        for i in 0..l {
            let row: f64 = (0..u).map(|j| cache.n[(bi * u + i) * u + j]).sum();
            assert!((row - 1.0).abs() < 1e-12, "softmax rows sum to 1");
            assert!((l..u).all(|j| cache.n[(bi * u + i) * u + j] == 0.0), "padded columns get no weight");
        }
    }
    let (mut dx, mut dy) = (vec![0.0; x.len()], vec![0.0; y.len()]);
    attention_backward(&mut dx, &mut dy, &c, &x, &y, &cache, &lens, b, u, d);
    check_all("attention dX", &x, &dx, &all, |x| loss(x, &y));
    check_all("attention dY", &y, &dy, &all, |y| loss(&x, y));
    // Self attention att(X, X): both gradients land on X.
    let (_, cache) = attention_forward(&x, &x, &lens, b, u, d);
    let (mut dx1, mut dx2) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    attention_backward(&mut dx1, &mut dx2, &c, &x, &x, &cache, &lens, b, u, d);
    let dself: Vec<f64> = dx1.iter().zip(&dx2).map(|(a, b)| a + b).collect();
    check_all("self-attention dX", &x, &dself, &all, |x| loss(x, x));
}

#[test]
fn heads_and_masked_loss_match_finite_differences() {
    let (rw, u) = (6, 12);
    let lens = LENS;
    let batch = random_batch([1, 0, 0], &lens, 13);
    let b = lens.len();
    let r = random_vec(b * u * rw, 14);
    let ws = random_vec(2 * rw + 2, 15);
    let we = random_vec(7 * rw + 7, 16);
    let (w_s, w_e) = (0.7, 1.3);
    let run = |r: &[f64], ws: &[f64], we: &[f64]| {
        heads_forward(
            r,
            Some(Head { w: &ws[..2 * rw], b: &ws[2 * rw..] }),
            Some(Head { w: &we[..7 * rw], b: &we[7 * rw..] }),
            &batch,
            rw,
            w_s,
            w_e,
        )
    };
    let out = run(&r, &ws, &we);
    // Hand-computed loss from the probabilities.
    let mut ls = 0.0;
    let mut le = 0.0;
    for (bi, &l) in lens.iter().enumerate() {
        for i in 0..l {
            let t = bi * u + i;
            ls -= out.sentiment_prob.as_ref().unwrap()[t * 2 + batch.sentiment_class(bi, i)].ln();
            let tg = batch.emotion_targets(bi, i).unwrap();
            let p = &out.emotion_prob.as_ref().unwrap()[t * 7..t * 7 + 7];
            le -= (0..7).map(|k| tg[k] * p[k].ln() + (1.0 - tg[k]) * (1.0 - p[k]).ln()).sum::<f64>() / 7.0;
        }
    }
    let n = lens.iter().sum::<usize>() as f64;
    assert!((out.loss_sentiment.unwrap() - ls / n).abs() < 1e-12);
    assert!((out.loss_emotion.unwrap() - le / n).abs() < 1e-12);
    assert!((out.loss - (w_s * ls / n + w_e * le / n)).abs() < 1e-12);

    let mut dr = vec![0.0; r.len()];
    let (mut dws, mut dwe) = (vec![0.0; ws.len()], vec![0.0; we.len()]);
    {
        let (a, bb) = dws.split_at_mut(2 * rw);
        let (c, d) = dwe.split_at_mut(7 * rw);
        heads_backward(
            &mut dr,
            Some(HeadGrads { w: a, b: bb }),
            Some(HeadGrads { w: c, b: d }),
            &r,
            Some(Head { w: &ws[..2 * rw], b: &ws[2 * rw..] }),
            Some(Head { w: &we[..7 * rw], b: &we[7 * rw..] }),
            &out,
            &batch,
            rw,
            w_s,
            w_e,
        );
    }
    check_all("heads dR", &r, &dr, &(0..r.len()).collect::<Vec<_>>(), |r| run(r, &ws, &we).loss);
    check_all("sentiment head", &ws, &dws, &(0..ws.len()).collect::<Vec<_>>(), |ws| run(&r, ws, &we).loss);
    check_all("emotion head", &we, &dwe, &(0..we.len()).collect::<Vec<_>>(), |we| run(&r, &ws, we).loss);
    // Padded positions get no gradient.
    for (bi, &l) in lens.iter().enumerate() {
        assert!(dr[(bi * u + l) * rw..(bi + 1) * u * rw].iter().all(|&v| v == 0.0));
    }
}

/// Whole model: every parameter and every input gradient of one variant.
fn check_model(set: ModalitySet, attention: Attention, tasks: Tasks, with_dropout: bool) {
    let cfg = tiny_config(set.as_str(), attention.as_str(), tasks.as_str());
    let layout = Layout::new(&cfg);
    let params = random_params(&layout, 20, 0.5);
    let mut batch = random_batch(cfg.dims, &LENS, 21);
    let masks = with_dropout.then(|| DropoutMasks::generate(&cfg, batch.b, batch.u, 99));
    let variant = format!("{set}/{attention}/{tasks}{}", if with_dropout { " (dropout)" } else { "" });
    let fwd = forward(&cfg, &layout, &params, &batch, masks.as_ref()).unwrap();
    assert!(fwd.heads.loss.is_finite() && fwd.heads.loss > 0.0);
    let g = backward(&cfg, &layout, &params, &batch, &fwd);
    let real_params: Vec<usize> = layout.slices.iter().flat_map(|s| s.range()).collect();
    let loss_p = |p: &[f64]| forward(&cfg, &layout, p, &batch, masks.as_ref()).unwrap().heads.loss;
    check_all(&format!("{variant} parameters"), &params, &g.params, &real_params, loss_p);
    for m in set.modalities() {
        let x = batch.features[m.index()].clone().unwrap();
        let dx = g.inputs[m.index()].as_ref().unwrap();
        let idx = real_indices(&LENS, batch.u, cfg.dim(m));
        let mut b2 = batch.clone();
        check_all(&format!("{variant} input {}", m.name()), &x, dx, &idx, |x| {
            b2.features[m.index()] = Some(x.to_vec());
            forward(&cfg, &layout, &params, &b2, masks.as_ref()).unwrap().heads.loss
        });
        // Padded inputs get exactly zero gradient.
        let padded: Vec<usize> = (0..x.len()).filter(|i| !idx.contains(i)).collect();
        assert!(padded.iter().all(|&i| dx[i] == 0.0), "{variant}: padded input gradient not zero");
        batch.features[m.index()] = Some(x);
    }
}

#[test]
fn whole_model_all_63_variants_match_finite_differences() {
    for set in ModalitySet::ALL {
        for attention in Attention::ALL {
            for tasks in Tasks::ALL {
                check_model(set, attention, tasks, false);
            }
        }
    }
}

#[test]
fn whole_model_with_dropout_masks_matches_finite_differences() {
    for attention in Attention::ALL {
        check_model(ModalitySet::TAV, attention, Tasks::Mtl, true);
    }
    check_model(ModalitySet::AV, Attention::Cim, Tasks::Emotion, true);
}

#[test]
fn padding_changes_no_loss_and_no_gradient() {
    for attention in Attention::ALL {
        let cfg = tiny_config("TAV", attention.as_str(), "mtl");
        let layout = Layout::new(&cfg);
        let params = random_params(&layout, 30, 0.5);
        let batch = random_batch(cfg.dims, &LENS, 31);
        let mut noisy = batch.clone();
        for m in 0..3 {
            let d = cfg.dims[m];
            let f = noisy.features[m].as_mut().unwrap();
            for (b, &l) in LENS.iter().enumerate() {
                for i in l..batch.u {
                    for c in 0..d {
                        f[(b * batch.u + i) * d + c] = 1e3 * (c as f64 + 1.0);
                    }
                }
            }
        }
        // Labels at padded positions must not matter either.
        for (b, &l) in LENS.iter().enumerate() {
            for i in l..batch.u {
                noisy.sentiment[b * batch.u + i] = 3.0;
                for k in 0..6 {
                    noisy.emotion.as_mut().unwrap()[(b * batch.u + i) * 6 + k] = 2.0;
                }
            }
        }
        let masks = DropoutMasks::generate(&cfg, batch.b, batch.u, 5);
        for dm in [None, Some(&masks)] {
            let f1 = forward(&cfg, &layout, &params, &batch, dm).unwrap();
            let f2 = forward(&cfg, &layout, &params, &noisy, dm).unwrap();
            assert_eq!(f1.heads.loss, f2.heads.loss, "{attention}: padding changed the loss");
            let g1 = backward(&cfg, &layout, &params, &batch, &f1);
            let g2 = backward(&cfg, &layout, &params, &noisy, &f2);
            assert_eq!(g1, g2, "{attention}: padding changed a gradient");
        }
    }
}

#[test]
fn a_video_alone_gives_the_same_outputs_as_inside_a_padded_batch() {
    for attention in Attention::ALL {
        let cfg = tiny_config("TAV", attention.as_str(), "mtl");
        let layout = Layout::new(&cfg);
        let params = random_params(&layout, 40, 0.5);
        let batch = random_batch(cfg.dims, &LENS, 41);
        let full = forward(&cfg, &layout, &params, &batch, None).unwrap();
        for (b, &l) in LENS.iter().enumerate() {
            let alone = forward(&cfg, &layout, &params, &batch.single(b), None).unwrap();
            for (name, w, a, f) in [
                ("sentiment", 2, &alone.heads.sentiment_prob, &full.heads.sentiment_prob),
                ("emotion", 7, &alone.heads.emotion_prob, &full.heads.emotion_prob),
            ] {
                let (a, f) = (a.as_ref().unwrap(), f.as_ref().unwrap());
                for i in 0..l {
                    for c in 0..w {
                        let (x, y) = (a[i * w + c], f[(b * batch.u + i) * w + c]);
                        assert!(
                            (x - y).abs() <= 1e-14,
                            "{attention}: video {b} utterance {i} {name}[{c}]: alone {x} vs batch {y}"
                        );
                    }
                }
            }
        }
    }
}
