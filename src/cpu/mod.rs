//! The CPU reference: forward and hand-written backward of every layer of
//! MODEL.md, in f64, plain and readable. It is the definition of correct that
//! the GPU kernels are tested against, not a second engine to optimise.
//! One file per layer, forward and backward side by side; model.rs composes them.
// Loops index (B, U, ...) tensors by video and position on purpose: `for b in
// 0..B` with `len[b]` reads like MODEL.md; iterator chains would hide the shapes.
#![allow(clippy::needless_range_loop)]

pub mod adam;
pub mod attention;
pub mod dense;
pub mod dropout;
pub mod engine;
pub mod gru;
pub mod heads;
pub mod model;

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
