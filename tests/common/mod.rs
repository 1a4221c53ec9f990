//! Shared helpers for the integration tests: random masked batches and random
//! parameters (non-zero biases), from a seed.
#![allow(dead_code)]

use cimnet::batch::Batch;
use cimnet::config::ModelConfig;
use cimnet::params::Layout;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Lengths used by most tests: includes 1 and the padded maximum U = 12.
pub const LENS: [usize; 4] = [12, 1, 7, 4];

/// A small configuration of the given variant (tiny H, D and dims so that a
/// finite-difference check over every parameter stays fast).
pub fn tiny_config(set: &str, attention: &str, tasks: &str) -> ModelConfig {
    let mut c = ModelConfig::new(set.parse().unwrap(), attention.parse().unwrap(), tasks.parse().unwrap(), [5, 4, 3]);
    c.hidden = 3;
    c.dense = 4;
    c.w_sentiment = 0.7; // not 1, so that a missing weight factor shows
    c.w_emotion = 1.3;
    c
}

/// Random batch with features in [-1, 1], sentiment in [-3, 3] and emotion
/// intensities that are 0 a third of the time (so the no-emotion label occurs).
pub fn random_batch(dims: [usize; 3], lens: &[usize], seed: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let b = lens.len();
    let u = *lens.iter().max().unwrap();
    let features = [0, 1, 2]
        .map(|m| (dims[m] > 0).then(|| (0..b * u * dims[m]).map(|_| rng.gen_range(-1.0..1.0)).collect::<Vec<f64>>()));
    let sentiment = (0..b * u).map(|_| rng.gen_range(-3.0..3.0)).collect();
    let emotion = (0..b * u * 6).map(|_| if rng.gen_bool(0.6) { 0.0 } else { rng.gen_range(0.1..3.0) }).collect();
    Batch { b, u, features, dims, len: lens.to_vec(), sentiment, emotion: Some(emotion) }
}

/// Random parameters in the layout, including biases; alignment gaps stay zero.
pub fn random_params(layout: &Layout, seed: u64, scale: f64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut p = vec![0.0; layout.len];
    for s in &layout.slices {
        for v in &mut p[s.range()] {
            *v = rng.gen_range(-scale..scale);
        }
    }
    p
}

/// Random vector of length n in [-1, 1].
pub fn random_vec(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// Relative error used by every gradient check:
///     err = |analytic - numeric| / max(|analytic|, |numeric|, GRAD_FLOOR)
/// The floor keeps gradients that are (almost) exactly zero from dividing by
/// zero; above it the error is purely relative.
pub const GRAD_FLOOR: f64 = 1e-4;
/// Required relative accuracy of every analytic gradient.
pub const GRAD_RTOL: f64 = 1e-6;
/// Central-difference step. Truncation error ~ FD_STEP^2 * |f'''| / 6 ~ 2e-11 and
/// round-off ~ 1e-16 * |L| / FD_STEP ~ 3e-11 for losses of order 1: together well
/// under GRAD_RTOL * GRAD_FLOOR = 1e-10.
pub const FD_STEP: f64 = 1e-5;

pub fn rel_err(a: f64, n: f64) -> f64 {
    (a - n).abs() / a.abs().max(n.abs()).max(GRAD_FLOOR)
}

/// Central difference of `f` with respect to `x[i]`.
pub fn numeric<F: FnMut(&[f64]) -> f64>(x: &mut [f64], i: usize, f: &mut F) -> f64 {
    let orig = x[i];
    x[i] = orig + FD_STEP;
    let up = f(x);
    x[i] = orig - FD_STEP;
    let down = f(x);
    x[i] = orig;
    (up - down) / (2.0 * FD_STEP)
}

/// Check every element of `analytic` against central differences of `f` around `x`.
/// Panics naming the tensor, the index and both values of the worst element.
pub fn check_all<F: FnMut(&[f64]) -> f64>(name: &str, x: &[f64], analytic: &[f64], indices: &[usize], mut f: F) {
    let mut x = x.to_vec();
    let mut worst = (0.0, 0usize, 0.0, 0.0);
    for &i in indices {
        let n = numeric(&mut x, i, &mut f);
        let e = rel_err(analytic[i], n);
        if e > worst.0 {
            worst = (e, i, analytic[i], n);
        }
    }
    assert!(
        worst.0 <= GRAD_RTOL,
        "{name}: gradient check failed at element {}: analytic {:.12e}, numeric {:.12e}, rel err {:.3e} > {GRAD_RTOL:e}",
        worst.1,
        worst.2,
        worst.3,
        worst.0
    );
}

/// Indices of the real (unpadded) positions of a (B, U, W) tensor.
pub fn real_indices(lens: &[usize], u: usize, w: usize) -> Vec<usize> {
    let mut v = Vec::new();
    for (b, &l) in lens.iter().enumerate() {
        for i in 0..l {
            for c in 0..w {
                v.push((b * u + i) * w + c);
            }
        }
    }
    v
}

pub mod close;
pub mod gpu;
