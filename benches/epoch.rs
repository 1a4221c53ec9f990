//! End-to-end training benchmark: whole epochs of the GPU engine on the
//! MOSEI-shaped synthetic set (the same measurement as `cimnet bench`), with a
//! full wait at the end of each epoch, and the CPU reference for comparison.
//!
//!     WGPU_BACKEND=vulkan cargo bench --bench epoch [-- --scale 1.0 --epochs 2 --json]
//!
//! `--scale` shrinks every split's video count (default 0.1, so that the
//! default run stays short on a software rasteriser; use 1.0 for the real
//! MOSEI shape). The whole model is checked against the CPU reference on one
//! batch before anything is timed.

use cimnet::config::AdamConfig;
use cimnet::config::{Attention, ModalitySet, ModelConfig, Tasks};
use cimnet::cpu::model::{backward, forward};
use cimnet::data::{synth, SplitName};
use cimnet::gpu::model::GpuEngine;
use cimnet::gpu::tune::KernelChoice;
use cimnet::gpu::{GpuContext, GpuOptions};
use cimnet::params::ParamStore;

/// Whole-model gradient agreement required before timing (f32 vs f64), as in tests/gpu_model.rs.
const MODEL_RTOL: f64 = 1e-4;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let scale: f64 = arg("--scale").and_then(|s| s.parse().ok()).unwrap_or(0.1);
    let epochs: usize = arg("--epochs").and_then(|s| s.parse().ok()).unwrap_or(1);
    let json = std::env::args().any(|a| a == "--json");
    let data = synth::generate(&synth::SynthSpec::scaled(scale), 0).0;
    let cfg = ModelConfig::new(ModalitySet::TAV, Attention::Cim, Tasks::Mtl, data.dims);
    let params = ParamStore::init(&cfg, 1);

    // Correctness first: one batch's gradients on the GPU against the CPU reference.
    let ctx = GpuContext::new(&GpuOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let mut eng = GpuEngine::new(ctx, &params, &data, AdamConfig::default(), 1, 16, &KernelChoice::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let videos: Vec<usize> = (0..16.min(data.split(SplitName::Train).len())).collect();
    let g = eng.compute_gradients(&videos, None).unwrap_or_else(|e| panic!("{e}"));
    let batch = data.batch(SplitName::Train, &videos);
    let p = params.to_f64();
    let f = forward(&cfg, &params.layout, &p, &batch, None).expect("batch fits the model");
    let want = backward(&cfg, &params.layout, &p, &batch, &f);
    for s in &params.layout.slices {
        let w = &want.params[s.range()];
        let scale = w.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-30);
        let err = g.grads[s.range()].iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max) / scale;
        assert!(err <= MODEL_RTOL, "{}: GPU gradient differs from the CPU reference by {err:.2e} of its scale", s.name);
    }
    drop(eng);

    let tune = cimnet::gpu::tune::TuneOptions::new(cimnet::engine::TuneMode::Auto);
    let report = cimnet::bench::run(&data, &params, 16, epochs, 2, &GpuOptions::default(), &tune, &mut |_| {})
        .unwrap_or_else(|e| panic!("{e}"));
    if json {
        println!("{}", serde_json::to_string_pretty(&report).expect("serialisable"));
    } else {
        println!("whole-model gradients agree with the CPU reference (<= {MODEL_RTOL:e} of each tensor's scale)\n");
        println!("{}", report.markdown());
    }
}
