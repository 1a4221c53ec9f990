//! shaders/gru.wgsl against the CPU reference src/cpu/gru.rs: forward (h, r, z,
//! n, hn and the bi-GRU output) and backward (gi, completed on the CPU into
//! dW_ih, db_ih and dx, plus dW_hh and db_hh accumulated on the GPU), on odd
//! shapes: B = 5 and 17 (not multiples of the 16 sequences a workgroup owns),
//! U = 1 and 98, lengths including 1 and U, H = 200 and 7, odd K, one to three
//! modalities per launch. Letters: B batch, U padded utterances, K input dim,
//! H hidden, M modalities, P = 2M (modality, direction) problems.
//!
//! Needs a GPU adapter (Mesa llvmpipe is enough: WGPU_BACKEND=vulkan); without
//! one the tests FAIL unless CIMNET_SKIP_GPU_TESTS=1. The WGSL validation and
//! the GruParams layout test live in tests/shaders.rs with the other shaders.

mod common;

use cimnet::config::{Attention, Modality, ModalitySet, ModelConfig, Tasks};
use cimnet::cpu::gru::{bigru_concat, bigru_split, gru_backward, gru_forward, GruCache, GruGrads, GruShape, GruWeights};
use cimnet::gpu::buffers::{read, upload};
use cimnet::gpu::gru::{self as g, GruKernel, GruParams, GruSchedule};
use cimnet::gpu::{run, GpuContext};
use cimnet::params::{Layout, ParamStore};
use common::close::{assert_close, max_abs};
use common::gpu::context;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// Tolerances, relative to the largest magnitude of the tensor compared
// (|got - want| <= TOL * max|want|).
//
// Forward: each step is a length-H f32 dot product (H <= 200: rounding
// ~ sqrt(H) * 6e-8 relative to the terms) followed by gates whose derivatives
// are <= 1; with orthogonal W_hh and z in (0, 1) the recurrence does not
// amplify earlier errors, so after up to 98 steps the error stays ~1e-6.
// 1e-4 leaves two decades of margin and still catches any indexing or gate
// mistake (those give errors of order 1).
const FWD_TOL: f64 = 1e-4;
// Backward: the same recurrence run backwards (W_hh^T gh, length 3H = 600) on
// f32 inputs that already carry the forward's ~1e-6 error, and dW_hh / db_hh /
// dW_ih sums over up to B*U = 1666 rows in f32: sequential accumulation error
// ~ n * 6e-8 relative to the sum of |terms| in the worst case, ~1e-5 for
// these sizes in practice. Held to the same 1e-4.
const BWD_TOL: f64 = 1e-4;

/// assert_close with atol = tol * max|want| (tolerances relative to the tensor's scale).
fn assert_scaled(name: &str, got: &[f32], want: &[f64], tol: f64) {
    let atol = tol * max_abs(want).max(f64::MIN_POSITIVE);
    let err = assert_close(name, got, want, atol, 0.0);
    eprintln!("{name}: max error {err:.2e} ({:.3} of the tolerance)", err / atol);
}

/// A buffer of NaN, so that an element a kernel forgets to write shows.
fn nans(ctx: &GpuContext, label: &str, bytes: u64) -> wgpu::Buffer {
    upload(ctx, label, &vec![f32::NAN; (bytes / 4) as usize]).unwrap()
}

fn read_all(ctx: &GpuContext, buf: &wgpu::Buffer, bytes: u64) -> Vec<f32> {
    read::<f32>(ctx, buf, 0, (bytes / 4) as usize).unwrap()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

struct Case {
    name: &'static str,
    lens: Vec<usize>,
    dims: [usize; 3], // K per modality in T, A, V order (0 = absent)
    h: usize,
}

impl Case {
    fn u(&self) -> usize {
        *self.lens.iter().max().unwrap()
    }
}

fn modality_set(dims: [usize; 3]) -> ModalitySet {
    let letters: String = Modality::ALL.iter().filter(|m| dims[m.index()] > 0).map(|m| m.letter()).collect();
    letters.parse().unwrap()
}

/// Runs one case through the CPU reference and the GPU kernels and compares.
fn check_case(ctx: &GpuContext, c: &Case, schedule: GruSchedule, kernel: GruKernel) {
    eprintln!("== {} {schedule:?} {kernel:?}", c.name);
    let mut cfg = ModelConfig::new(modality_set(c.dims), Attention::None, Tasks::Mtl, c.dims);
    cfg.hidden = c.h;
    let mods = cfg.modalities.modalities();
    let mut store = ParamStore::init(&cfg, 7);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for s in store.layout.slices.clone() {
        if s.name.contains("bias") {
            for v in store.get_mut(&s.name) {
                *v = rng.gen_range(-0.5..0.5);
            }
        }
    }
    let layout: &Layout = &store.layout;
    let wv = store.to_f64();
    let (b, u, h) = (c.lens.len(), c.u(), c.h);
    let params = GruParams::new(layout, &mods, b, u, h).unwrap();

    // CPU: forward, a random output gradient (also at padding, which must be
    // ignored), backward with zeroed gradients.
    let mut xs = Vec::new();
    let mut caches: Vec<GruCache> = Vec::new();
    let mut out_want = Vec::new();
    let mut dout = Vec::new();
    let mut grads_want = vec![0.0; layout.len];
    let mut dx_want = Vec::new();
    for (mi, m) in mods.iter().enumerate() {
        let k = cfg.dim(*m);
        let s = GruShape { b, u, k, h };
        let x: Vec<f64> = (0..b * u * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let weights = |dir: &str| {
            let get = |t: &str| &wv[layout.slice(&format!("{}.gru.{t}{dir}", m.name())).range()];
            GruWeights { w_ih: get("weight_ih_l0"), w_hh: get("weight_hh_l0"), b_ih: get("bias_ih_l0"), b_hh: get("bias_hh_l0") }
        };
        let fwd = gru_forward(&x, &weights(""), &c.lens, s, false);
        let rev = gru_forward(&x, &weights("_reverse"), &c.lens, s, true);
        out_want.extend(bigru_concat(&fwd.h, &rev.h, s));
        let dm: Vec<f64> = (0..b * u * 2 * h).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let (dfwd, drev) = bigru_split(&dm, s);
        let mut dx = vec![0.0; b * u * k];
        for (dir, cache, dh, reverse) in [("", &fwd, &dfwd, false), ("_reverse", &rev, &drev, true)] {
            let mut gw: Vec<Vec<f64>> =
                ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"].iter().map(|t| vec![0.0; layout.slice(&format!("{}.gru.{t}{dir}", m.name())).len()]).collect();
            let (a, rest) = gw.split_at_mut(1);
            let (bb, rest) = rest.split_at_mut(1);
            let (cc, dd) = rest.split_at_mut(1);
            let mut grads = GruGrads { w_ih: &mut a[0], w_hh: &mut bb[0], b_ih: &mut cc[0], b_hh: &mut dd[0] };
            gru_backward(&mut dx, &mut grads, dh, &x, &weights(dir), cache, &c.lens, s, reverse);
            for (t, v) in ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"].iter().zip(&gw) {
                grads_want[layout.slice(&format!("{}.gru.{t}{dir}", m.name())).range()].copy_from_slice(v);
            }
        }
        assert_eq!(mi, xs.len());
        xs.push(x);
        caches.push(fwd);
        caches.push(rev);
        dout.extend(dm);
        dx_want.push(dx);
    }

    // GPU.
    let xp: Vec<f64> = caches.iter().flat_map(|c| c.xp.iter().copied()).collect();
    let lens_u32: Vec<u32> = c.lens.iter().map(|&l| l as u32).collect();
    let lens_buf = upload(ctx, "lens", &lens_u32).unwrap();
    let weights_buf = upload(ctx, "weights", &store.values).unwrap();
    let xp_buf = upload(ctx, "xp", &f32s(&xp)).unwrap();
    let cache_buf = nans(ctx, "cache", params.cache_bytes());
    let out_buf = nans(ctx, "out", params.out_bytes());
    let dout_buf = upload(ctx, "dout", &f32s(&dout)).unwrap();
    let gi_buf = nans(ctx, "gi", params.gates_bytes());
    let gh_buf = nans(ctx, "gh", params.gates_bytes());
    let carry_buf = nans(ctx, "carry", params.carry_bytes());
    // Gradients start non-zero to check that dW_hh / db_hh accumulate.
    let grads0: Vec<f64> = (0..layout.len).map(|_| rng.gen_range(-0.1..0.1)).collect();
    let grads_buf = upload(ctx, "grads", &f32s(&grads0)).unwrap();
    let fwd = g::gru_forward_variant(ctx, &out_buf, &cache_buf, &xp_buf, &weights_buf, &lens_buf, &params, schedule, kernel).unwrap();
    let bwd = g::gru_backward_variant(
        ctx, &gi_buf, &gh_buf, &carry_buf, &grads_buf, &dout_buf, &cache_buf, &weights_buf, &lens_buf, &params, schedule, kernel,
    )
    .unwrap();
    let t = std::time::Instant::now();
    let nf = run(ctx, &[&fwd]).unwrap();
    let tf = t.elapsed();
    let t = std::time::Instant::now();
    let nb = run(ctx, &[&bwd]).unwrap();
    eprintln!("forward {nf} dispatches {tf:?}, backward {nb} dispatches {:?}", t.elapsed());

    // Forward: each saved tensor of each problem, and the bi-GRU output.
    let cache_got = read_all(ctx, &cache_buf, params.cache_bytes());
    let plane = b * u * h;
    for (p, cache) in caches.iter().enumerate() {
        let m = mods[p / 2].name();
        let dir = ["fwd", "rev"][p % 2];
        for (k, (t, want)) in [("h", &cache.h), ("r", &cache.r), ("z", &cache.z), ("n", &cache.n), ("hn", &cache.hn)].into_iter().enumerate() {
            let off = (p * 5 + k) * plane;
            assert_scaled(&format!("{m} {dir} {t}"), &cache_got[off..off + plane], want, FWD_TOL);
        }
    }
    assert_scaled("out", &read_all(ctx, &out_buf, params.out_bytes()), &out_want, FWD_TOL);

    // Backward: gi at padding is zero; gi completed on the CPU into the
    // input-side gradients, which the reference computes directly.
    let gi = read_all(ctx, &gi_buf, params.gates_bytes());
    let g3 = 3 * h;
    for p in 0..2 * mods.len() {
        for (bi, &l) in c.lens.iter().enumerate() {
            for i in l..u {
                let o = ((p * b + bi) * u + i) * g3;
                assert!(gi[o..o + g3].iter().all(|&v| v == 0.0), "gi not zero at padding p={p} b={bi} i={i}");
            }
        }
    }
    let mut grads_got: Vec<f64> = read_all(ctx, &grads_buf, 4 * layout.len as u64).iter().map(|&v| f64::from(v)).collect();
    for (mi, m) in mods.iter().enumerate() {
        let k = cfg.dim(*m);
        let mut dx = vec![0.0; b * u * k];
        for (d, dir) in ["", "_reverse"].iter().enumerate() {
            let p = 2 * mi + d;
            let w_ih = &wv[layout.slice(&format!("{}.gru.weight_ih_l0{dir}", m.name())).range()];
            let dw = layout.slice(&format!("{}.gru.weight_ih_l0{dir}", m.name())).range();
            let db = layout.slice(&format!("{}.gru.bias_ih_l0{dir}", m.name())).range();
            for t in 0..b * u {
                let gr = &gi[(p * b * u + t) * g3..][..g3];
                let xr = &xs[mi][t * k..(t + 1) * k];
                for row in 0..g3 {
                    let gv = f64::from(gr[row]);
                    grads_got[db.start + row] += gv;
                    for col in 0..k {
                        grads_got[dw.start + row * k + col] += gv * xr[col];
                        dx[t * k + col] += gv * w_ih[row * k + col];
                    }
                }
            }
        }
        assert_scaled(&format!("{} dx (from gi)", m.name()), &f32s(&dx), &dx_want[mi], BWD_TOL);
    }
    // The GPU added its dW_hh / db_hh to grads0, the CPU loop above its gi-derived
    // dW_ih / db_ih (to the f32 values read back): compare got - grads0 per tensor.
    for s in &layout.slices {
        if !s.name.contains(".gru.") {
            continue;
        }
        let got: Vec<f32> = s.range().map(|i| (grads_got[i] - f64::from(grads0[i] as f32)) as f32).collect();
        let want = &grads_want[s.range()];
        let what = if s.name.contains("_hh") { "(GPU)" } else { "(from gi)" };
        assert_scaled(&format!("d {} {what}", s.name), &got, want, BWD_TOL);
    }
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
    let cases = [
        Case { name: "B=5 U=98 H=200 K=35 (video only)", lens: vec![98, 1, 50, 97, 23], dims: [0, 0, 35], h: 200 },
        Case { name: "B=17 U=13 H=7 TAV K=5,3,9", lens: lens17(13), dims: [5, 3, 9], h: 7 },
        Case { name: "B=17 U=1 H=200 K=9", lens: vec![1; 17], dims: [0, 9, 0], h: 200 },
        Case { name: "B=17 U=40 H=200 TA K=75,11", lens: lens17(40), dims: [75, 11, 0], h: 200 },
        // H % 8 == 4: the bias column of gru_backward_weights_t8 is the second
        // half of a tile, and the last row tile is half empty.
        Case { name: "B=17 U=9 H=36 TAV K=5,3,9", lens: lens17(9), dims: [5, 3, 9], h: 36 },
    ];
    for c in &cases {
        // The default kernels (Wide, or Scalar for H % 4 != 0) on both
        // schedules; the v4 kernels they replaced on one.
        for schedule in [GruSchedule::Persistent, GruSchedule::PerStep] {
            check_case(ctx, c, schedule, GruKernel::Wide);
        }
        if c.h % 4 == 0 {
            check_case(ctx, c, GruSchedule::Persistent, GruKernel::Vec4);
        }
    }
}

#[test]
fn gru_params_reject_unsupported_sizes() {
    let mut cfg = ModelConfig::new(ModalitySet::V, Attention::None, Tasks::Mtl, [0, 0, 5]);
    cfg.hidden = 300;
    let layout = Layout::new(&cfg);
    assert_eq!(GruParams::new(&layout, &[Modality::Video], 2, 3, 300), Err(g::GruError::Hidden { h: 300, max: g::MAX_H }));
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
    for schedule in [GruSchedule::PerStep, GruSchedule::Persistent] {
        let mut f = g::gru_forward(ctx, &out, &cache, &xp, &weights, &lens_buf, &full, schedule).unwrap();
        let mut bw =
            g::gru_backward(ctx, &gi, &gh, &carry, &grads, &dout, &cache, &weights, &lens_buf, &full, schedule).unwrap();
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
                "{schedule:?} B={b} U={u} H={h} P={}: forward {:?} ({} dispatches, {:.2} GFLOP/s), backward {:?} ({} dispatches, {:.2} GFLOP/s)",
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
