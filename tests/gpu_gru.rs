//! shaders/gru.wgsl against the CPU reference src/cpu/gru.rs: forward (h, r, z,
//! n, hn and the bi-GRU output) and backward (gi, completed on the CPU into
//! dW_ih, db_ih and dx, plus dW_hh and db_hh accumulated on the GPU), on odd
//! shapes: B = 5 and 17 (not multiples of the 16 sequences a workgroup owns),
//! U = 1 and 98, lengths including 1 and U, H = 200 and 7, odd K, one to three
//! modalities per launch. The comparison (`cimnet::gpu::check::check_gru`, with
//! its tolerances GRU_FWD_TOL / GRU_BWD_TOL) is shared with `cimnet check`.
//! Letters: B batch, U padded utterances, K input dim, H hidden, M modalities,
//! P = 2M (modality, direction) problems.
//!
//! Needs a GPU adapter (Mesa llvmpipe is enough: WGPU_BACKEND=vulkan); without
//! one the tests FAIL unless CIMNET_SKIP_GPU_TESTS=1. The WGSL validation and
//! the GruParams layout test live in tests/shaders.rs with the other shaders.

mod common;

use cimnet::config::{Attention, Modality, ModalitySet, ModelConfig, Tasks};
use cimnet::gpu::buffers::upload;
use cimnet::gpu::check::{check_gru, gru_members, GruCase};
use cimnet::gpu::gru::{self as g, GruKernel, GruMember, GruParams};
use cimnet::gpu::{run, GpuContext};
use cimnet::params::{Layout, ParamStore};
use common::close::assert_rows;
use common::gpu::context;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A buffer of NaN, so that an element a kernel forgets to write shows.
fn nans(ctx: &GpuContext, label: &str, bytes: u64) -> wgpu::Buffer {
    upload(ctx, label, &vec![f32::NAN; (bytes / 4) as usize]).unwrap()
}

#[test]
fn gru_forward_backward_match_cpu() {
    let Some(ctx) = context() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut lens17 = |u: usize| -> Vec<usize> {
        let mut l: Vec<usize> = (0..17).map(|_| rng.gen_range(1..=u)).collect();
        l[3] = 1;
        l[16] = u; // the longest video is in the second workgroup's group
        l
    };
    // (B=5 U=98 H=200 video only K=35), (B=17 U=13 H=7 TAV K=5,3,9),
    // (B=17 U=1 H=200 audio K=9), (B=17 U=40 H=200 TA K=75,11).
    let cases = [
        GruCase { lens: vec![98, 1, 50, 97, 23], dims: [0, 0, 35], h: 200, seed: 7 },
        GruCase { lens: lens17(13), dims: [5, 3, 9], h: 7, seed: 7 },
        GruCase { lens: vec![1; 17], dims: [0, 9, 0], h: 200, seed: 7 },
        GruCase { lens: lens17(40), dims: [75, 11, 0], h: 200, seed: 7 },
        // H % 8 == 4: half-empty 8x8 weight-gradient tiles of the wide kernels.
        GruCase { lens: lens17(9), dims: [5, 3, 9], h: 36, seed: 7 },
    ];
    let mut worst = 0.0f64;
    for c in &cases {
        // Every member the tuner can pick for the case (Wide where H and the offsets allow it).
        let members = gru_members(ctx, c).unwrap();
        assert!(members.iter().any(|m| m.kernel == GruKernel::Cells) && members.len() >= 3, "{members:?}");
        for member in members {
            worst = worst.max(assert_rows(&check_gru(ctx, c, member).unwrap()));
        }
    }
    eprintln!("gru max |err| / max|want|: {worst:.2e}");
}

#[test]
fn gru_params_reject_unsupported_sizes() {
    let mut cfg = ModelConfig::new(ModalitySet::V, Attention::None, Tasks::Mtl, [0, 0, 5]);
    cfg.hidden = 300;
    let layout = Layout::new(&cfg);
    assert_eq!(
        GruParams::new(&layout, &[Modality::Video], 2, 3, 300),
        Err(g::GruError::Hidden { h: 300, max: g::MAX_H })
    );
    cfg.hidden = 4;
    let layout = Layout::new(&cfg);
    assert!(matches!(GruParams::new(&layout, &[Modality::Text], 2, 3, 4), Err(g::GruError::MissingTensor { .. })));
    assert!(matches!(GruParams::new(&layout, &[Modality::Video], 2, 3, 5), Err(g::GruError::TensorShape { .. })));
    assert_eq!(GruParams::new(&layout, &[Modality::Video], 0, 3, 4), Err(g::GruError::Empty { b: 0, u: 3 }));
    assert!(GruParams::new(&layout, &[Modality::Video], 2, 3, 4).is_ok());
}

/// Timing at the MOSEI shape (B = 16, H = 200, T, A, V in one launch; U = 10 and
/// 40 as bucketed batches), per-step vs persistent; also runs `update` (launches
/// built for U = 40 reused for U = 10). Not a correctness test:
///     WGPU_BACKEND=vulkan cargo test --release --test gpu_gru -- --ignored --nocapture
#[test]
#[ignore]
fn gru_timing_mosei_shape() {
    let Some(ctx) = context() else { return };
    let (b, h, umax) = (16, 200, 40);
    let mut cfg = ModelConfig::new(ModalitySet::TAV, Attention::Cim, Tasks::Mtl, [300, 74, 35]);
    cfg.hidden = h;
    let store = ParamStore::init(&cfg, 1);
    let mods = cfg.modalities.modalities();
    let full = GruParams::new(&store.layout, &mods, b, umax, h).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let rand = |n: u64, rng: &mut ChaCha8Rng| (0..n / 4).map(|_| rng.gen_range(-1.0f32..1.0)).collect::<Vec<f32>>();
    let lens_buf = upload(ctx, "lens", &vec![umax as u32; b]).unwrap();
    let weights = upload(ctx, "weights", &store.values).unwrap();
    let grads = upload(ctx, "grads", &vec![0f32; store.layout.len]).unwrap();
    let xp = upload(ctx, "xp", &rand(full.gates_bytes(), &mut rng)).unwrap();
    let dout = upload(ctx, "dout", &rand(full.out_bytes(), &mut rng)).unwrap();
    let cache = nans(ctx, "cache", full.cache_bytes());
    let out = nans(ctx, "out", full.out_bytes());
    let gi = nans(ctx, "gi", full.gates_bytes());
    let gh = nans(ctx, "gh", full.gates_bytes());
    let carry = nans(ctx, "carry", full.carry_bytes());
    for member in GruMember::ALL {
        let mut f = g::gru_forward(ctx, &out, &cache, &xp, &weights, &lens_buf, &full, member).unwrap();
        let mut bw =
            g::gru_backward(ctx, &gi, &gh, &carry, &grads, &dout, &cache, &weights, &lens_buf, &full, member).unwrap();
        for u in [40usize, 10] {
            let lens: Vec<u32> = (0..b).map(|i| if i == 0 { u as u32 } else { rng.gen_range(1..=u as u32) }).collect();
            ctx.queue.write_buffer(&lens_buf, 0, bytemuck::cast_slice(&lens));
            let p = GruParams::new(&store.layout, &mods, b, u, h).unwrap();
            f.update(ctx, &p).unwrap();
            bw.update(ctx, &p).unwrap();
            run(ctx, &[&f, &bw]).unwrap(); // warm-up (pipeline compilation)
            let reps = 3;
            let t = std::time::Instant::now();
            for _ in 0..reps {
                run(ctx, &[&f]).unwrap();
            }
            let tf = t.elapsed() / reps;
            let t = std::time::Instant::now();
            for _ in 0..reps {
                run(ctx, &[&bw]).unwrap();
            }
            let tb = t.elapsed() / reps;
            // W_hh h per real step and problem: 3H x H MACs (backward: W_hh^T gh and gh^T h_prev).
            let steps: u32 = lens.iter().sum();
            let flop = 2.0 * (3 * h * h) as f64 * f64::from(steps) * (2 * mods.len()) as f64;
            eprintln!(
                "{} B={b} U={u} H={h} P={}: forward {:?} ({} dispatches, {:.2} GFLOP/s), backward {:?} ({} dispatches, {:.2} GFLOP/s)",
                member.name(),
                2 * mods.len(),
                tf,
                f.dispatches(),
                flop / tf.as_secs_f64() / 1e9,
                tb,
                bw.dispatches(),
                2.0 * flop / tb.as_secs_f64() / 1e9
            );
        }
    }
}
