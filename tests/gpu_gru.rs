//! shaders/gru.wgsl against the CPU reference src/cpu/gru.rs: forward (h, r, z,
//! n, hn and the bi-GRU output) and backward (gi, completed on the CPU into
//! dW_ih, db_ih and dx, plus dW_hh and db_hh accumulated on the GPU), on odd
//! shapes: B = 5 and 17 (not multiples of the 16 sequences a workgroup owns),
//! U = 1 and 98, lengths including 1 and U, H = 200, 36, 12 and 7, odd K, one
//! to three modalities per model, and fused launches of two or three models'
//! GRUs (P = 10 problems over one weight arena, non-contiguous offsets). The
//! comparison (`cimnet::gpu::check::check_gru`, with its tolerances
//! GRU_FWD_TOL / GRU_BWD_TOL) is shared with `cimnet check`.
//! Letters: B batch, U padded utterances, K input dim, H hidden, M branches
//! ((model, modality) pairs), P = 2M (branch, direction) problems.
//!
//! Needs a GPU adapter (Mesa llvmpipe is enough: WGPU_BACKEND=vulkan); without
//! one the tests FAIL unless CIMNET_SKIP_GPU_TESTS=1. The WGSL validation and
//! the GruParams layout test live in tests/shaders.rs with the other shaders.

mod common;

use cimnet::config::{Attention, Modality, ModalitySet, ModelConfig, Tasks};
use cimnet::gpu::buffers::upload;
use cimnet::gpu::check::{check_gru, check_gru_batches, gru_batch_members, gru_members, GruBatchCase, GruCase};
use cimnet::gpu::gru::{self as g, GruKernel, GruMember, GruParams, GruProblem};
use cimnet::gpu::{run, GpuContext};
use cimnet::params::{Layout, ParamStore};
use common::close::assert_rows;
use common::gpu::{context, on_both_lane_tiles};
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
    // One model: (B=5 U=98 H=200 video only K=35), (B=17 U=40 H=200 TA K=75,11).
    // Fused, P = 10 (5 branches of two or three models, their stores in one
    // arena): (B=17 U=13 H=7), (B=17 U=1 H=200), (B=5 U=98 H=12),
    // (B=17 U=9 H=36: H % 8 == 4, half-empty 8x8 weight-gradient tiles of the wide kernels).
    let lens98 = vec![98, 1, 50, 97, 23];
    let cases = [
        GruCase::single(lens98.clone(), [0, 0, 35], 200, 7),
        GruCase::single(lens17(40), [75, 11, 0], 200, 7),
        GruCase { lens: lens17(13), models: vec![[5, 3, 9], [4, 0, 6]], h: 7, seed: 7 },
        GruCase { lens: vec![1; 17], models: vec![[0, 9, 0], [3, 5, 7], [2, 0, 0]], h: 200, seed: 7 },
        GruCase { lens: lens98, models: vec![[3, 0, 5], [2, 4, 6]], h: 12, seed: 7 },
        GruCase { lens: lens17(9), models: vec![[0, 7, 11], [5, 3, 9]], h: 36, seed: 7 },
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

/// Problems of different batches in one launch (models of different seeds):
/// each branch on its own batch (u = 1, a middle one and U_max, lengths of 3
/// batches packed in one buffer out of order), every member, against the CPU
/// at its own (B, q.u) and bit for bit against the branch launched alone at
/// U = q.u with its lengths at offset 0; each block's rows past B * q.u stay NaN.
#[test]
fn gru_problems_of_different_batches_match_cpu_and_alone() {
    let Some(ctx) = context() else { return };
    let cases = [
        GruBatchCase {
            batches: vec![vec![98, 1, 50, 97, 23], vec![1; 5], vec![23, 7, 1, 23, 15]],
            branch_batch: vec![2, 0, 1, 1, 2],
            models: vec![[3, 4, 5], [2, 0, 6]],
            h: 12,
            seed: 9,
        },
        GruBatchCase {
            batches: vec![
                (0..17).map(|i| [40, 3, 17, 1][i % 4]).collect(),
                vec![1; 17],
                (1..=17).map(|i| i % 9 + 1).collect(),
            ],
            branch_batch: vec![0, 2, 1, 0, 2],
            models: vec![[0, 7, 11], [5, 3, 9]],
            h: 36,
            seed: 9,
        },
    ];
    let mut worst = 0.0f64;
    for c in &cases {
        let members = gru_batch_members(ctx, c).unwrap();
        assert_eq!(members.len(), GruMember::ALL.len(), "{members:?}");
        for member in members {
            let rows = check_gru_batches(ctx, c, member).unwrap();
            assert!(rows.iter().any(|r| r.kernel.contains("alone")), "no alone row");
            worst = worst.max(assert_rows(&rows));
        }
    }
    eprintln!("gru (mixed batches) max |err| / max|want|: {worst:.2e}");
}

/// Long sequences at the largest H, so that on a device with a loop budget
/// (llvmpipe: 63,000 iterations) the persistent schedules split the recurrence
/// into chunks: cells-persistent runs 240 forward steps (H + 6 iterations
/// each) and 81 backward steps (3H + 6) per launch, so U = 250 crosses a
/// forward chunk boundary once and backward ones three times, each chunk
/// starting from what the previous one saved (h; gh of the step after and the
/// carried g z). Every member the tuner can pick, against the CPU reference.
#[test]
fn persistent_chunk_boundaries_match_cpu() {
    let Some(ctx) = context() else { return };
    let u = 250;
    let c = GruCase::single(vec![u, 1, 241, u - 1, 82], [0, 0, 9], g::MAX_H as usize, 11);
    let members = gru_members(ctx, &c).unwrap();
    assert!(members.contains(&GruMember::from_name("cells-persistent").unwrap()), "{members:?}");
    if let Some(budget) = ctx.profile.loop_budget {
        let h = g::MAX_H;
        assert!(u as u32 * g::cells_persistent::forward_iters_per_step(h) > budget, "forward not chunked");
        assert!(u as u32 * g::cells_persistent::backward_iters_per_step(h) > 3 * budget, "backward not chunked");
    }
    let mut worst = 0.0f64;
    for member in members {
        worst = worst.max(assert_rows(&check_gru(ctx, &c, member).unwrap()));
    }
    eprintln!("gru (long, H {}) max |err| / max|want|: {worst:.2e}", g::MAX_H);
}

#[test]
fn gru_params_reject_unsupported_sizes() {
    assert_eq!(GruParams::new(2, 3, 300, 2), Err(g::GruError::Hidden { h: 300, max: g::MAX_H }));
    assert_eq!(GruParams::new(0, 3, 4, 2), Err(g::GruError::Empty { b: 0, u: 3 }));
    for p in [0, 1, 3, 7] {
        assert_eq!(GruParams::new(2, 3, 4, p), Err(g::GruError::Problems { problems: p }));
    }
    let gp = GruParams::new(2, 3, 4, 10).unwrap();
    assert_eq!((gp.b, gp.u, gp.h, gp.problems, gp.t0, gp.t1), (2, 3, 4, 10, 0, 3));
}

#[test]
fn gru_problems_are_the_layout_offsets_shifted_by_the_base() {
    let mut cfg = ModelConfig::new(ModalitySet::TV, Attention::None, Tasks::Mtl, [3, 0, 5]);
    cfg.hidden = 4;
    let layout = Layout::new(&cfg);
    let mods = [Modality::Video, Modality::Text];
    let at = |name: &str, base: usize| (layout.get(name).unwrap().offset + base) as u32;
    for base in [0, 1000] {
        let q = g::gru_problems(&layout, &mods, base).unwrap();
        let want: Vec<GruProblem> = ["video", "text"]
            .iter()
            .flat_map(|m| ["", "_reverse"].map(|d| (m, d)))
            .map(|(m, d)| GruProblem {
                w_hh_offset: at(&format!("{m}.gru.weight_hh_l0{d}"), base),
                b_hh_offset: at(&format!("{m}.gru.bias_hh_l0{d}"), base),
                u: 0,
                len_off: 0,
            })
            .collect();
        assert_eq!(q, want);
        let q = q[1].batch(7, 40);
        assert_eq!((q.w_hh_offset, q.b_hh_offset, q.u, q.len_off), (want[1].w_hh_offset, want[1].b_hh_offset, 7, 40));
    }
    // Problems of two models concatenate; every offset is distinct.
    let mut both = g::gru_problems(&layout, &mods, 0).unwrap();
    both.extend(g::gru_problems(&layout, &[Modality::Text], layout.len + 12).unwrap());
    let mut offsets: Vec<u32> = both.iter().map(|q| q.w_hh_offset).collect();
    offsets.sort_unstable();
    offsets.dedup();
    assert_eq!(offsets.len(), 6);
    assert!(matches!(g::gru_problems(&layout, &[Modality::Audio], 0), Err(g::GruError::MissingTensor { .. })));
    assert!(matches!(g::gru_problems(&layout, &mods, usize::MAX), Err(g::GruError::Offset { .. })));
    let mut bad = layout.clone();
    for s in bad.slices.iter_mut().filter(|s| s.name == "text.gru.bias_hh_l0_reverse") {
        s.shape = vec![13];
    }
    assert!(matches!(g::gru_problems(&bad, &mods, 0), Err(g::GruError::TensorShape { .. })));
}

/// Output buffers of a launch of `p`: cache, out, gi, gh, carry (NaN) and grads (zero).
fn outputs(ctx: &GpuContext, p: &GruParams, arena: usize) -> [wgpu::Buffer; 6] {
    [
        nans(ctx, "cache", p.cache_bytes()),
        nans(ctx, "out", p.out_bytes()),
        nans(ctx, "gi", p.gates_bytes()),
        nans(ctx, "gh", p.gates_bytes()),
        nans(ctx, "carry", p.carry_bytes()),
        upload(ctx, "grads", &vec![0f32; arena]).unwrap(),
    ]
}

/// A launch built for 10 problems (two models in one arena) at U = 20, then
/// updated to 4 other problems in another order at U = 7, computes bit for bit
/// what a launch built for those 4 does (that one is checked against the CPU
/// above); updates past the problem capacity, U, the buffers or Wide's
/// alignment are refused with typed errors.
#[test]
fn an_updated_launch_equals_a_launch_built_for_its_problems() {
    let Some(ctx) = context() else { return };
    let (b, h, umax, u) = (17, 12, 20, 7);
    let mut cfg = ModelConfig::new(ModalitySet::TAV, Attention::None, Tasks::Mtl, [3, 4, 5]);
    cfg.hidden = h;
    let store = ParamStore::init(&cfg, 3);
    let mods = cfg.modalities.modalities();
    let base = store.layout.len.next_multiple_of(4) + 8;
    let mut arena = store.values.clone();
    arena.resize(base, 0.5);
    arena.extend(store.values.iter().map(|v| -0.5 * v));
    let mut big = g::gru_problems(&store.layout, &mods, 0).unwrap();
    big.extend(g::gru_problems(&store.layout, &mods[..2], base).unwrap());
    assert_eq!(big.len(), 10);
    let big: Vec<GruProblem> = big.iter().map(|q| q.batch(umax, 0)).collect();
    // Model 1's audio branch, then model 0's text branch.
    let small = [big[8], big[9], big[0], big[1]].map(|q| q.batch(u, 0));
    let (pb, ps) = (GruParams::new(b, umax, h, 10).unwrap(), GruParams::new(b, u, h, 4).unwrap());
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let mut rand = |n: u64| (0..n / 4).map(|_| rng.gen_range(-1.0f32..1.0)).collect::<Vec<f32>>();
    let lens: Vec<u32> = (0..b as u32).map(|i| [u as u32, 1, 4, 6][i as usize % 4]).collect();
    let lens = upload(ctx, "lens", &lens).unwrap();
    let weights = upload(ctx, "weights", &arena).unwrap();
    // Sized for the big launch (its build checks them), read as the small one's layout.
    let xp = upload(ctx, "xp", &rand(pb.gates_bytes())).unwrap();
    let dout = upload(ctx, "dout", &rand(pb.out_bytes())).unwrap();
    let read = |buf: &wgpu::Buffer, bytes: u64| -> Vec<u32> {
        let v = cimnet::gpu::buffers::read::<f32>(ctx, buf, 0, (bytes / 4) as usize).unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    };
    for member in GruMember::ALL {
        let runs = [(pb, &big[..], 10), (ps, &small[..], 4)].map(|(p, q, capacity)| {
            let [cache, out, gi, gh, carry, grads] = outputs(ctx, &p, arena.len());
            let mut f = g::gru_forward(ctx, &out, &cache, &xp, &weights, &lens, &p, q, capacity, member).unwrap();
            let mut bw =
                g::gru_backward(ctx, &gi, &gh, &carry, &grads, &dout, &cache, &weights, &lens, &p, q, capacity, member)
                    .unwrap();
            f.update(ctx, &ps, &small).unwrap();
            bw.update(ctx, &ps, &small).unwrap();
            run(ctx, &[&f, &bw]).unwrap();
            let got = [
                read(&cache, ps.cache_bytes()),
                read(&out, ps.out_bytes()),
                read(&gi, ps.gates_bytes()),
                read(&gh, ps.gates_bytes()),
                read(&grads, 4 * arena.len() as u64),
            ];
            (got, f, bw)
        });
        let [(updated, mut f, mut bw), (built, mut fs, _)] = runs;
        for (t, (a, b)) in ["cache", "out", "gi", "gh", "grads"].iter().zip(updated.iter().zip(&built)) {
            assert!(a == b, "{}: {t} of the updated launch differs from the built one", member.name());
        }
        assert!(built[4].iter().any(|&x| x != 0), "{}: no weight gradient", member.name());

        let p12 = GruParams::new(b, u, h, 12).unwrap();
        let twelve: Vec<GruProblem> = big.iter().chain(&big[..2]).map(|q| q.batch(u, 0)).collect();
        assert_eq!(f.update(ctx, &p12, &twelve), Err(g::GruError::ProblemCapacity { problems: 12, capacity: 10 }));
        assert_eq!(bw.update(ctx, &ps, &twelve[..6]), Err(g::GruError::ProblemCount { params: 4, listed: 6 }));
        // A problem's batch: 1 <= u <= the launch's U, its lengths inside the
        // buffer (B = 17 of them at offset 0), both directions of a branch one U.
        // with(k, ..): branch k / 2 (both directions) padded to qu, its lengths at off.
        let with = |k: usize, qu: usize, off: usize| {
            let mut v = small;
            v[k] = v[k].batch(qu, off);
            v[k + 1] = v[k + 1].batch(qu, off);
            v
        };
        let (bu, bb) = (u as u32, b as u32);
        for (k, qu, off, want) in [
            (0, 0, 0, g::GruError::ProblemSteps { problem: 0, u: 0, max: bu }),
            (2, u + 1, 0, g::GruError::ProblemSteps { problem: 2, u: bu + 1, max: bu }),
            (2, u, 1, g::GruError::ProblemLens { problem: 2, len_off: 1, b: bb, len: b as u64 }),
        ] {
            assert_eq!(f.update(ctx, &ps, &with(k, qu, off)), Err(want.clone()));
            assert_eq!(bw.update(ctx, &ps, &with(k, qu, off)), Err(want));
        }
        let mut split = small;
        split[1] = split[1].batch(u - 1, 0);
        assert_eq!(
            f.update(ctx, &ps, &split),
            Err(g::GruError::BranchSteps { problem: 0, u: u as u32, other: u as u32 - 1 })
        );
        let long = GruParams::new(b, umax + 1, h, 4).unwrap();
        assert_eq!(
            f.update(ctx, &long, &small),
            Err(g::GruError::Capacity { u: umax as u32 + 1, capacity: umax as u32 })
        );
        // The small launch's list holds 4 problems.
        let p6 = GruParams::new(b, u, h, 6).unwrap();
        assert!(matches!(fs.update(ctx, &p6, &twelve[..6]), Err(g::GruError::ProblemCapacity { .. })));
        let mut shifted = small;
        shifted[3].b_hh_offset = (arena.len() / 4 * 4 - 4) as u32; // 4-aligned, its 3H past the arena
        assert!(matches!(f.update(ctx, &ps, &shifted), Err(g::GruError::BufferSize { name: "weights", .. })));
        shifted[3].b_hh_offset = small[3].b_hh_offset + 1;
        if f.kernel().is_wide() {
            assert!(matches!(f.update(ctx, &ps, &shifted), Err(g::GruError::Misaligned { problem: 3, .. })));
        } else {
            f.update(ctx, &ps, &shifted).unwrap();
        }
    }
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
    let full = GruParams::new(b, umax, h, 2 * mods.len()).unwrap();
    let problems = g::gru_problems(&store.layout, &mods, 0).unwrap();
    let batch = |u: usize| -> Vec<GruProblem> { problems.iter().map(|q| q.batch(u, 0)).collect() };
    let (q, n) = (batch(umax), problems.len());
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
        let mut f = g::gru_forward(ctx, &out, &cache, &xp, &weights, &lens_buf, &full, &q, n, member).unwrap();
        let mut bw =
            g::gru_backward(ctx, &gi, &gh, &carry, &grads, &dout, &cache, &weights, &lens_buf, &full, &q, n, member)
                .unwrap();
        for u in [40usize, 10] {
            let lens: Vec<u32> = (0..b).map(|i| if i == 0 { u as u32 } else { rng.gen_range(1..=u as u32) }).collect();
            ctx.queue.write_buffer(&lens_buf, 0, bytemuck::cast_slice(&lens));
            let p = GruParams::new(b, u, h, n).unwrap();
            f.update(ctx, &p, &batch(u)).unwrap();
            bw.update(ctx, &p, &batch(u)).unwrap();
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

/// WideSg is Wide with loads replaced by subgroup shuffles, and WideSgTex is
/// WideSg reading W_hh / b_hh from a texture copy of the weights: the same
/// arithmetic in the same order, so every output (cache, out, gi, gh and the
/// accumulated dW_hh / db_hh) must equal Wide's bit for bit, on both schedules,
/// at B = 17 (a partial second workgroup), H = 36 (half-owned lanes, a
/// half-empty dW_hh tile) and H = 200 (idle lanes in the last octet), U with
/// lengths 1 .. U. Where the device has no subgroups of 8 lanes, a WideSg
/// launch runs Wide (and says so). Both lane tiles of the weight gradient
/// (8 x 8, the GPU's, and 32 x 8, the software device's): the shared context
/// runs its profile's, a second one the other.
#[test]
fn wide_sg_equals_wide_bit_for_bit() {
    on_both_lane_tiles(wide_sg_cases);
}

fn wide_sg_cases(ctx: &GpuContext) {
    let read = |buf: &wgpu::Buffer, bytes: u64| -> Vec<u32> {
        let v = cimnet::gpu::buffers::read::<f32>(ctx, buf, 0, (bytes / 4) as usize).unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    };
    for (b, h, u) in [(17, 36, 9), (5, 200, 13)] {
        let mut cfg = ModelConfig::new(ModalitySet::TAV, Attention::None, Tasks::Mtl, [3, 4, 5]);
        cfg.hidden = h;
        let store = ParamStore::init(&cfg, 5);
        let mods = cfg.modalities.modalities();
        let q: Vec<GruProblem> =
            g::gru_problems(&store.layout, &mods, 0).unwrap().iter().map(|q| q.batch(u, 0)).collect();
        let p = GruParams::new(b, u, h, q.len()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(h as u64);
        let mut rand = |n: u64| (0..n / 4).map(|_| rng.gen_range(-1.0f32..1.0)).collect::<Vec<f32>>();
        let lens: Vec<u32> = (0..b as u32).map(|i| if i == 3 { u as u32 } else { i % u as u32 + 1 }).collect();
        let lens = upload(ctx, "lens", &lens).unwrap();
        let weights = upload(ctx, "weights", &store.values).unwrap();
        let xp = upload(ctx, "xp", &rand(p.gates_bytes())).unwrap();
        let dout = upload(ctx, "dout", &rand(p.out_bytes())).unwrap();
        for schedule in [g::GruSchedule::Persistent, g::GruSchedule::PerStep] {
            let results = [GruKernel::Wide, GruKernel::WideSg, GruKernel::WideSgTex].map(|kernel| {
                let member = GruMember { kernel, schedule };
                let [cache, out, gi, gh, carry, grads] = outputs(ctx, &p, store.values.len());
                let f = g::gru_forward(ctx, &out, &cache, &xp, &weights, &lens, &p, &q, q.len(), member).unwrap();
                let bw = g::gru_backward(
                    ctx,
                    &gi,
                    &gh,
                    &carry,
                    &grads,
                    &dout,
                    &cache,
                    &weights,
                    &lens,
                    &p,
                    &q,
                    q.len(),
                    member,
                )
                .unwrap();
                let want = if ctx.profile.subgroup_octets() { kernel } else { GruKernel::Wide };
                assert_eq!((f.kernel(), bw.kernel()), (want, want), "{}", member.name());
                run(ctx, &[&f, &bw]).unwrap();
                let got = [
                    read(&cache, p.cache_bytes()),
                    read(&out, p.out_bytes()),
                    read(&gi, p.gates_bytes()),
                    read(&gh, p.gates_bytes()),
                    read(&grads, 4 * store.values.len() as u64),
                ];
                assert!(got[4].iter().any(|&x| x != 0), "{}: no weight gradient", member.name());
                got
            });
            for (name, other) in [("wide-sg", &results[1]), ("wide-sg-tex", &results[2])] {
                for (t, (a, s)) in ["cache", "out", "gi", "gh", "grads"].iter().zip(results[0].iter().zip(other)) {
                    let diff = a.iter().zip(s.iter()).filter(|(x, y)| x != y).count();
                    assert!(
                        diff == 0,
                        "B {b} H {h} {} (wide lane tiles {}): {t} of {name} differs from wide in {diff} elements",
                        schedule.name(),
                        ctx.profile.wide_lane_tiles
                    );
                }
            }
        }
    }
}
