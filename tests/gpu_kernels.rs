//! Every GPU kernel against the f64 CPU reference (src/cpu) on odd shapes: B not a
//! multiple of any workgroup size, U = 1, U = 98, mixed lengths, masked padding.
//! The comparisons themselves (reference, garbage at padding, sentinels in outputs,
//! named tolerances) live in `cimnet::gpu::check`, shared with `cimnet check`; these
//! tests run them on larger shapes and assert that every row passes.
//! Run on a CPU-only machine with Mesa's llvmpipe:
//!     WGPU_BACKEND=vulkan cargo test --test gpu_kernels
//! Without an adapter these tests fail, unless CIMNET_SKIP_GPU_TESTS=1.

mod common;

use common::close::assert_rows;
use common::gpu::{context, on_both_lane_tiles};
use common::random_vec;

use cimnet::config::Tasks;
use cimnet::cpu;
use cimnet::gpu::attention::AttentionKernel;
use cimnet::gpu::buffers::{read, storage, upload};
use cimnet::gpu::check::{
    self, AdamCase, AttentionCase, DropoutCase, FusedLinearCase, GatherCase, HeadsCase, LinearCase,
};
use cimnet::gpu::linear::LinearKernel;
use cimnet::gpu::{adam, dropout, heads, linear, run, GpuContext};

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn u32s(v: &[usize]) -> Vec<u32> {
    v.iter().map(|&x| x as u32).collect()
}

/// Lengths with U = 98 and U = 1, B = 17 and B = 5, mixed.
fn shapes() -> Vec<Vec<usize>> {
    vec![vec![1], vec![3, 1, 5, 2, 5], vec![98, 1, 40, 97, 3, 98, 12, 1, 55, 70, 2, 9, 98, 33, 64, 18, 7]]
}

/// Per shape of `shapes()`, the batches that models of different seeds see at one
/// step: that shape's lengths (u = U_max), all ones (u = 1) and the lengths capped
/// below U_max (1 < u < U_max), where B allows.
fn batch_sets() -> Vec<Vec<Vec<usize>>> {
    shapes()
        .into_iter()
        .map(|lens| {
            let u = lens.iter().copied().max().unwrap_or(1);
            if u == 1 {
                return vec![lens];
            }
            let mid = (u * 2).div_ceil(5).max(2);
            let capped = lens.iter().map(|&l| l.min(mid)).collect();
            vec![lens.clone(), vec![1; lens.len()], capped]
        })
        .collect()
}

#[test]
fn linear_matches_dense_and_input_projection() {
    let Some(ctx) = context() else { return };
    let mut worst = 0.0f64;
    for (s, lens) in shapes().iter().enumerate() {
        let n = lens.len() * lens.iter().max().unwrap();
        // (K, O, ReLU, y_off): y at an offset is one problem's block of the GRU's xp.
        let cases = [
            (35, 600, false, 0),
            (300, 600, false, n * 600),
            (74, 99, false, 3 * n * 99),
            (400, 100, true, 0),
            (3, 5, true, 17),
        ];
        for (k, o, relu, y_off) in cases {
            let mut c = LinearCase {
                lens: lens.clone(),
                k,
                o,
                relu,
                y_off,
                kernel: LinearKernel::Scalar,
                seed: 100 + s as u64,
            };
            for kernel in check::linear_kernels(ctx, &c) {
                c.kernel = kernel;
                // Includes the weight gradient's determinism (a rerun is bitwise equal).
                worst = worst.max(assert_rows(&check::check_linear(ctx, &c).unwrap()));
            }
        }
    }
    eprintln!("linear max |err| / max|want|: {worst:.2e}");
}

/// The linear sites of a group of models of different seeds: six problems in one
/// launch (grid z), each with its own W, b and x / y blocks, its own batch (u = 1,
/// U_max and between, padding rows past every length; lengths of three batches
/// packed in one buffer; its dropout seed), streams and R layout (two widths, or
/// none), each bit for bit what it computes alone at its u. The dense site: forward
/// y = dropout(relu(x W^T + b)) also copied into the problem's R block; backward
/// g = dy * scale where y > 0, dx written through the GRU-site mask. The projection
/// site: no ReLU, no dropout. B = 5 and 17, U_max = 98 and 9, every member.
#[test]
fn linear_problem_lists_match_cpu_per_problem() {
    let Some(ctx) = context() else { return };
    let mut worst = 0.0f64;
    for (s, (b, u_max)) in [(5, 98), (17, 9), (17, 98)].into_iter().enumerate() {
        // (400, 100) dense and (36, 48) projection: every member; (6, 5) and (7, 9):
        // Vec4 cannot take them (it runs Scalar there). The widest only where
        // B * U_max is small (the test's time on llvmpipe).
        let wide = b * u_max <= 500;
        for (k, o, dense) in [(400, 100, true), (6, 5, true), (36, 48, false), (7, 9, false)] {
            if k == 400 && !wide {
                continue;
            }
            for kernel in LinearKernel::ALL {
                let c = FusedLinearCase::mixed(b, u_max, k, o, dense, kernel).seed(300 + s as u64);
                worst = worst.max(assert_rows(&check::check_linear_fused(ctx, &c).unwrap()));
            }
        }
    }
    // Five problems of one batch (a group of one seed) and one problem through the
    // same path (the single-model engine's dense site).
    for (lens, problems, k, o) in [(shapes()[2].clone(), 5, 8, 12), (shapes()[1].clone(), 1, 8, 12)] {
        for kernel in LinearKernel::ALL {
            let c = FusedLinearCase::same(lens.clone(), problems, k, o, true, kernel).seed(7);
            worst = worst.max(assert_rows(&check::check_linear_fused(ctx, &c).unwrap()));
        }
    }
    eprintln!("linear problem lists max |err| / max|want|: {worst:.2e}");
}

/// Whether launch `l` (built for Vec4Sg) runs the lane tile its device's
/// profile asks for: the generated wide kernels (named `*_wide*`) exactly
/// where the profile says so.
fn assert_lane_tile(ctx: &GpuContext, l: &linear::LinearLaunch) {
    if matches!(l.kernel(), LinearKernel::Vec4Sg | LinearKernel::Vec4SgTex) {
        assert_eq!(l.entry().contains("_wide"), ctx.profile.wide_lane_tiles, "{}", l.entry());
    }
}

/// B 17 lengths at U = u: video 5 the longest, the others cycling 1..=u.
fn lens_b17(u: usize) -> Vec<usize> {
    (0..17).map(|i| if i == 5 { u } else { i % u + 1 }).collect()
}

/// Run `l`, built for `kernel`, and read the first `len` values of `out` as
/// bits. `kernel` runs as asked where the device has subgroup octets (and,
/// for Vec4SgTex, wide lane tiles: else it runs Vec4Sg), else as `twin`, the
/// member whose loads Vec4Sg shares.
fn run_bits(
    ctx: &GpuContext,
    l: &linear::LinearLaunch,
    kernel: LinearKernel,
    twin: LinearKernel,
    out: &wgpu::Buffer,
    len: usize,
) -> Vec<u32> {
    let octets = ctx.profile.subgroup_octets();
    let runs_as = match kernel {
        LinearKernel::Vec4SgTex if octets && ctx.profile.wide_lane_tiles => kernel,
        LinearKernel::Vec4Sg | LinearKernel::Vec4SgTex if octets => LinearKernel::Vec4Sg,
        _ => twin,
    };
    assert_eq!(l.kernel(), runs_as);
    run(ctx, &[l]).unwrap();
    read::<f32>(ctx, out, 0, len).unwrap().iter().map(|v| v.to_bits()).collect()
}

/// Vec4Sg's forwards (and Vec4SgTex's, W through a texture) are Vec4's or Scalar's with loads shared by subgroup
/// shuffles: linear_sg_forward_v4 (K % 4 == 0, 4-aligned offsets) Vec4's 8 x 8
/// tiles, linear_sg_forward (any alignment) Scalar's 4 x 4; the same sums in
/// the same order, so y equals that member's bit for bit, on shapes that leave
/// octets half out of range (B 17, U 9 and 1, N not a multiple of 32 or 64, O
/// 99, 5, 600 and 100, K 74, 35, 3, 300, 400 and 8, ReLU, x at an odd offset,
/// y at an offset). Where the device has no subgroups of 8 lanes, Vec4Sg runs
/// the member it shares loads for (and says so). Both lane tiles of the
/// aligned forward (`on_both_lane_tiles`).
#[test]
fn linear_sg_forwards_equal_scalar_and_vec4_bit_for_bit() {
    on_both_lane_tiles(sg_forward_cases);
}

fn sg_forward_cases(ctx: &GpuContext) {
    let cases = [
        (74, 99, false, 9, 3),
        (35, 600, false, 9, 3),
        (3, 5, true, 1, 3),
        (74, 99, true, 1, 3),
        (300, 600, false, 9, 0),
        (400, 100, true, 9, 4),
        (8, 5, true, 1, 0),
    ];
    for (s, (k, o, relu, u, x_off)) in cases.into_iter().enumerate() {
        let lens = lens_b17(u);
        let (b, n) = (lens.len(), lens.len() * u);
        let aligned = k % 4 == 0 && x_off % 4 == 0;
        let (y_off, w_off) = (2 * n * o + 1, if aligned { 8 } else { 5 });
        let p = linear::LinearParams::new(b, u, k, o, relu);
        let q = [linear::LinearProblem::new(w_off, w_off + o * k, x_off, y_off).batch(u, 0)];
        // Whole vec4 quads, as the engine's arenas are (a texture mirrors whole texels).
        let x = upload(ctx, "x", &f32s(&random_vec((x_off + n * k).next_multiple_of(4), 40 + s as u64))).unwrap();
        let w = upload(ctx, "w", &f32s(&random_vec((w_off + o * k + o).next_multiple_of(4), 50 + s as u64))).unwrap();
        let len = upload(ctx, "len", &u32s(&lens)).unwrap();
        let twin = if aligned { LinearKernel::Vec4 } else { LinearKernel::Scalar };
        let ys = [twin, LinearKernel::Vec4Sg, LinearKernel::Vec4SgTex].map(|kernel| {
            let y = upload(ctx, "y", &vec![check::SENTINEL; y_off + n * o]).unwrap();
            let l = linear::linear_forward_variant(ctx, &y, &ctx.dummy, &x, &w, &len, p, &q, 1, kernel).unwrap();
            assert_lane_tile(ctx, &l);
            run_bits(ctx, &l, kernel, twin, &y, y_off + n * o)
        });
        assert!(ys[0][y_off..].iter().all(|&v| v != check::SENTINEL.to_bits()), "K {k} O {o}: y not all written");
        for (name, other) in [("vec4-sg", &ys[1]), ("vec4-sg-tex", &ys[2])] {
            let diff = ys[0].iter().zip(other).filter(|(a, b)| a != b).count();
            assert!(diff == 0, "K {k} O {o} U {u}: {name} differs from {} in {diff} elements", twin.name());
        }
    }
}

/// linear_sg_backward_v4 (Vec4Sg's input gradient dx = g W) is
/// linear_backward_v4 with the g rows shared by subgroup shuffles: dx equals
/// Vec4's bit for bit (K 400 -> O 100 with ReLU and a dropout mask on dx, K 300
/// -> O 600, K 8 -> O 4: tiles half out of range; B 17, U 9 and 1), with
/// both lane tiles (`on_both_lane_tiles`).
#[test]
fn linear_sg_backward_v4_equals_vec4_bit_for_bit() {
    on_both_lane_tiles(sg_backward_cases);
}

fn sg_backward_cases(ctx: &GpuContext) {
    for (s, (k, o, relu, u)) in [(400, 100, true, 9), (300, 600, false, 9), (8, 4, true, 1)].into_iter().enumerate() {
        let lens = lens_b17(u);
        let (b, n) = (lens.len(), lens.len() * u);
        let (x_off, y_off, w_off) = (4 * n, 8 * n * o, 12);
        let mut p = linear::LinearParams::new(b, u, k, o, relu);
        if relu {
            p = p.dropout(0.25);
        }
        let q = [linear::LinearProblem::new(w_off, w_off + o * k, x_off, y_off).batch(u, 0).seed(5 + s as u32)];
        let quads = |n: usize| n.next_multiple_of(4);
        let dy = upload(ctx, "dy", &f32s(&random_vec(quads(y_off + n * o), 20 + s as u64))).unwrap();
        let y = upload(ctx, "y", &f32s(&random_vec(quads(y_off + n * o), 30 + s as u64))).unwrap();
        let w = upload(ctx, "w", &f32s(&random_vec((w_off + o * k + o).next_multiple_of(4), 40 + s as u64))).unwrap();
        let len = upload(ctx, "len", &u32s(&lens)).unwrap();
        let dxs = [LinearKernel::Vec4, LinearKernel::Vec4Sg, LinearKernel::Vec4SgTex].map(|kernel| {
            let dx = upload(ctx, "dx", &vec![check::SENTINEL; x_off + n * k]).unwrap();
            let l = linear::linear_backward_variant(ctx, &dx, &dy, &y, &w, &len, p, &q, 1, kernel).unwrap();
            assert_lane_tile(ctx, &l);
            run_bits(ctx, &l, kernel, LinearKernel::Vec4, &dx, x_off + n * k)
        });
        assert!(dxs[0][x_off..].iter().all(|&v| v != check::SENTINEL.to_bits()), "K {k} O {o}: dx not all written");
        for (name, other) in [("vec4-sg", &dxs[1]), ("vec4-sg-tex", &dxs[2])] {
            let diff = dxs[0].iter().zip(other).filter(|(a, b)| a != b).count();
            assert!(diff == 0, "K {k} O {o} U {u}: {name}'s dx differs from vec4's in {diff} elements");
        }
    }
}

/// linear_sg_weights (Vec4Sg's weight gradient) is Vec4's
/// (linear_backward_weights_v4, or _v4g where K or x_off does not allow vec4
/// x) with loads shared by subgroup shuffles: the same sums in the same order,
/// so dW and db (accumulated onto the same random values) equal Vec4's bit for
/// bit: K 74 and 35 (_v4g), 300 and 36 at an odd x offset, 3 (fewer than 4
/// columns), O 600 and 8, ReLU, B 17 with U 9 and 1, tiles half out of range.
/// Both lane tiles (8 x 8, the GPU's, and 16 x 16, the software device's):
/// the shared context runs its profile's, a second one the other.
#[test]
fn linear_sg_backward_weights_equals_vec4_bit_for_bit() {
    on_both_lane_tiles(sg_weights_cases);
}

fn sg_weights_cases(ctx: &GpuContext) {
    let tile = linear::sg_lane_tile(&ctx.profile);
    let cases = [
        (74, 600, false, 9, 0),
        (300, 600, false, 9, 0),
        (36, 8, true, 9, 3),
        (3, 8, true, 1, 1),
        (35, 600, true, 1, 0),
    ];
    for (s, (k, o, relu, u, x_off)) in cases.into_iter().enumerate() {
        let lens = lens_b17(u);
        let (b, n) = (lens.len(), lens.len() * u);
        let (y_off, w_off, b_off) = (4 * n, 8, 8 + o * k + 1);
        let p = linear::LinearParams::new(b, u, k, o, relu);
        let q = [linear::LinearProblem::new(w_off, b_off, x_off, y_off).batch(u, 0)];
        // Whole vec4 quads, as the engine's arenas are (a texture mirrors whole texels).
        let quads = |n: usize| n.next_multiple_of(4);
        let x = upload(ctx, "x", &f32s(&random_vec(quads(x_off + n * k), 60 + s as u64))).unwrap();
        let dy = upload(ctx, "dy", &f32s(&random_vec(quads(y_off + n * o), 70 + s as u64))).unwrap();
        let y = upload(ctx, "y", &f32s(&random_vec(quads(y_off + n * o), 80 + s as u64))).unwrap();
        let len = upload(ctx, "len", &u32s(&lens)).unwrap();
        let init = f32s(&random_vec(b_off + o + 3, 90 + s as u64));
        let gs = [LinearKernel::Vec4, LinearKernel::Vec4Sg, LinearKernel::Vec4SgTex].map(|kernel| {
            let grads = upload(ctx, "grads", &init).unwrap();
            let l = linear::linear_backward_weights_variant(ctx, &grads, &dy, &y, &x, &len, p, &q, 1, kernel).unwrap();
            let quads = k % 4 == 0 && x_off % 4 == 0;
            match l.kernel() {
                LinearKernel::Vec4Sg => assert_eq!(l.entry(), tile.entry(quads), "K {k} x_off {x_off}"),
                LinearKernel::Vec4SgTex => assert_eq!(l.entry(), tile.entry_tex(quads), "K {k} x_off {x_off}"),
                _ => {}
            }
            run_bits(ctx, &l, kernel, LinearKernel::Vec4, &grads, init.len())
        });
        let changed = gs[0].iter().zip(&init).filter(|(a, b)| **a != b.to_bits()).count();
        assert!(changed > o * k / 2, "K {k} O {o}: the gradient barely moved ({changed})");
        for (name, other) in [("vec4-sg", &gs[1]), ("vec4-sg-tex", &gs[2])] {
            let diff = gs[0].iter().zip(other).filter(|(a, b)| a != b).count();
            assert!(diff == 0, "K {k} O {o} U {u} {tile:?}: {name}'s dW / db differ from vec4's in {diff} elements");
        }
    }
}

/// A launch built for 5 problems re-pointed at 2, then 5 others (the same
/// LinearLaunch, new list); more than its capacity, none, or a problem whose batch
/// does not fit (u 0 or past the launch's U, lengths past the length buffer) is an
/// error naming the problem, at build and at update.
#[test]
fn linear_launch_update_takes_any_problem_count_up_to_capacity() {
    let Some(ctx) = context() else { return };
    let (b, u, k, o) = (3usize, 2usize, 4usize, 4usize);
    let n = b * u;
    let x = random_vec(5 * n * k, 11);
    let flat = random_vec(5 * (o * k + o), 12);
    let xb = upload(ctx, "x", &f32s(&x)).unwrap();
    let fb = upload(ctx, "params", &f32s(&flat)).unwrap();
    let len = upload(ctx, "len", &[2u32, 1, 2]).unwrap();
    let yb = upload(ctx, "y", &vec![check::SENTINEL; 5 * n * o]).unwrap();
    let p = linear::LinearParams::new(b, u, k, o, true);
    let q = |z: usize, slot: usize| {
        linear::LinearProblem::new(z * (o * k + o), z * (o * k + o) + o * k, z * n * k, slot * n * o).batch(u, 0)
    };
    let five: Vec<_> = (0..5).map(|z| q(z, z)).collect();
    let mut l = linear::linear_forward(ctx, &yb, &xb, &fb, &len, p, &five[..2], 5).unwrap();
    assert_eq!(l.groups()[2], 2);
    let others: Vec<_> = (0..5).map(|z| q(z, 4 - z)).collect();
    l.update(ctx, p, &others).unwrap();
    assert_eq!(l.groups()[2], 5);
    run(ctx, &[&l]).unwrap();
    let got = read::<f32>(ctx, &yb, 0, 5 * n * o).unwrap();
    let r32 = |v: &[f64]| v.iter().map(|&a| a as f32 as f64).collect::<Vec<_>>();
    for z in 0..5 {
        let base = z * (o * k + o);
        let (w, bias) = (r32(&flat[base..base + o * k]), r32(&flat[base + o * k..base + o * k + o]));
        let want = cpu::dense::dense_forward(&r32(&x[z * n * k..(z + 1) * n * k]), &w, &bias, &[2, 1, 2], b, u, k, o);
        let slot = 4 - z;
        for (i, (&g, &w)) in got[slot * n * o..(slot + 1) * n * o].iter().zip(&want).enumerate() {
            assert!((f64::from(g) - w).abs() < 1e-5, "problem {z} element {i}: got {g}, want {w}");
        }
    }
    assert!(l.update(ctx, p, &[five.clone(), five.clone()].concat()).is_err(), "10 problems in a list of 5");
    assert!(l.update(ctx, p, &[]).is_err(), "no problems");
    for (bad, why) in
        [(q(1, 1).batch(0, 0), "u = 0"), (q(1, 1).batch(u + 1, 0), "u past U"), (q(1, 1).batch(u, 100), "len")]
    {
        let list = [q(0, 0), bad];
        let e = l.update(ctx, p, &list).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("problem 1"), "{why}: {e}");
        let e = linear::linear_forward(ctx, &yb, &xb, &fb, &len, p, &list, 5).err().map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("problem 1"), "{why} at build");
    }
}

#[test]
fn dropout_masks_match_cpu_bit_for_bit() {
    let Some(ctx) = context() else { return };
    let n = (1 << 20) + 3;
    for (seed, stream, p, x_off, y_off) in
        [(0u32, 0u32, 0.3, 0, 0), (12345, 5, 0.3, 400, 1200), (u32::MAX, 1, 0.5, 3, 0), (7, 2, 0.1, 0, 5)]
    {
        assert_rows(&check::check_dropout(ctx, &DropoutCase::same(n, seed, &[stream], p, x_off, y_off)).unwrap());
        // The hash itself keeps about 1 - p (the GPU reproduces it bit for bit above).
        let mask = cpu::dropout::dropout_mask(seed, stream, n, p);
        let kept = mask.iter().filter(|&&m| m != 0.0).count() as f64 / n as f64;
        assert!((kept - (1.0 - p)).abs() < 0.01, "kept fraction {kept} for p {p}");
    }
}

/// Segments of a group's branches of several seeds: one launch, each segment its
/// own stream, seed and element count (any number of them, out of order; a
/// segment's own n from 1 to the stride), on odd sizes, B = 5 and 17, U_max = 98;
/// and a launch re-pointed at fewer; a segment past the stride is an error.
#[test]
fn dropout_segments_use_their_own_streams() {
    let Some(ctx) = context() else { return };
    use dropout::DropoutSegment as S;
    assert_rows(&check::check_dropout(ctx, &DropoutCase::same(10_001, 4242, &[0, 4, 2], 0.3, 5, 2)).unwrap());
    for b in [5, 17] {
        // (B, U, 2H = 14) rows: u = 98, 1, 40 and 98 of three batches' seeds, one odd size.
        let (row, n) = (b * 14, b * 98 * 14 + 1);
        let segments = vec![
            S::new(9, 4242, n),
            S::new(0, 17, row),
            S::new(4, 4242, 40 * row),
            S::new(13, 99, n - 1),
            S::new(2, 17, 98 * row),
            S::new(7, 99, 1),
        ];
        assert_rows(&check::check_dropout(ctx, &DropoutCase { n, segments, p: 0.3, x_off: 5, y_off: 2 }).unwrap());
    }
    let (n, seed, p) = (1000, 77u32, 0.3);
    let x = random_vec(5 * n, 3);
    let xb = upload(ctx, "x", &f32s(&x)).unwrap();
    let y = upload(ctx, "y", &vec![check::SENTINEL; 5 * n]).unwrap();
    let prm = dropout::DropoutParams::new(n, p);
    let segs = |streams: &[u32]| streams.iter().map(|&st| S::new(st, seed, n)).collect::<Vec<_>>();
    let mut f = dropout::dropout_forward(ctx, &y, &xb, prm, &segs(&[1, 2, 3, 4, 5]), 5).unwrap();
    f.update(ctx, prm, &segs(&[8, 6])).unwrap();
    assert_eq!(run(ctx, &[&f]).unwrap(), 1);
    let got = read::<f32>(ctx, &y, 0, 5 * n).unwrap();
    for (z, st) in [8u32, 6].into_iter().enumerate() {
        let mask = f32s(&cpu::dropout::dropout_mask(seed, st, n, p));
        let want: Vec<f32> = (0..n).map(|i| x[z * n + i] as f32 * mask[i]).collect();
        assert_eq!(&got[z * n..(z + 1) * n], &want[..], "segment {z} (stream {st})");
    }
    assert!(got[2 * n..].iter().all(|v| v.is_nan()), "written past the 2 segments of the update");
    assert!(f.update(ctx, prm, &segs(&[0; 6])).is_err(), "6 segments in a list of 5");
    for bad in [S::new(1, seed, n + 1), S::new(1, seed, 0)] {
        let e = f.update(ctx, prm, &[S::new(0, seed, n), bad]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("segment 1"), "n = {}: {e}", bad.n);
        assert!(dropout::dropout_forward(ctx, &y, &xb, prm, &[bad], 1).is_err(), "n = {} at build", bad.n);
    }
}

#[test]
fn adam_matches_cpu_over_ten_steps() {
    let Some(ctx) = context() else { return };
    let e = assert_rows(&check::check_adam(ctx, &AdamCase { n: 70_001, steps: 10, seed: 1 }).unwrap());
    eprintln!("adam max |err| / max|p| after 10 steps: {e:.2e}");
}

/// The two forms of the Adam step (storage operands; texture copies with the
/// gradient blocks cleared before the pass) run the same adam_math on the same
/// values: params, m, v and the zeroed gradients equal bit for bit after three
/// steps over two blocks with a gap and partial quads at both ends.
#[test]
fn adam_texture_form_equals_storage_form_bit_for_bit() {
    let Some(ctx) = context() else { return };
    let n = 40_003;
    let cfg = adam::AdamConfig::default();
    let blocks =
        |step| [adam::AdamProblem::new(1, 20_000, step, &cfg), adam::AdamProblem::new(20_003, 19_998, step, &cfg)];
    let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    let p0 = f32s(random_vec(n + 1, 3));
    let gs: Vec<Vec<f32>> = (0..3).map(|k| f32s(random_vec(n + 1, 4 + k))).collect();
    let results = [false, true].map(|textures| {
        let up = |v: &[f32]| upload(ctx, "adam operand", v).unwrap();
        let (p, g, m, v) = (up(&p0), up(&gs[0]), up(&vec![0.0; n + 1]), up(&vec![0.0; n + 1]));
        let mut l = adam::adam_step_form(ctx, [&p, &g, &m, &v], &blocks(1), 2, true, textures).unwrap();
        assert_eq!(l.reads_textures(), textures);
        for (step, grad) in gs.iter().enumerate() {
            ctx.queue.write_buffer(&g, 0, bytemuck::cast_slice(grad));
            l.update(ctx, &blocks(step as u32 + 1), true).unwrap();
            run(ctx, &[&l]).unwrap();
        }
        let read = |b: &wgpu::Buffer| -> Vec<u32> {
            let v = read::<f32>(ctx, b, 0, n + 1).unwrap();
            v.iter().map(|x| x.to_bits()).collect()
        };
        [read(&p), read(&m), read(&v), read(&g)]
    });
    for (name, (a, b)) in ["params", "m", "v", "grads"].iter().zip(results[0].iter().zip(&results[1])) {
        let diff = a.iter().zip(b).filter(|(x, y)| x != y).count();
        assert_eq!(diff, 0, "{name}: the texture form differs from the storage form in {diff} elements");
    }
    // The gaps (element 0, 20_001..20_003, the tail) keep their values; the blocks were stepped.
    assert_eq!(results[0][0][0], p0[0].to_bits());
    assert_ne!(results[0][0][1], p0[1].to_bits());
    assert_eq!(results[0][3][20_002], gs[2][20_002].to_bits(), "a gap's gradient is not cleared");
    assert_eq!(results[0][3][5], 0, "a block's gradient is cleared");
}

/// A buffer's shared texture is copied once per recording until a dispatch
/// that binds the buffer read_write is recorded; then the next reader copies
/// it again (`Recorder` tracks fresh copies, `BufferTexture::refresh`).
#[test]
fn a_texture_copy_is_made_again_only_after_its_buffer_is_written() {
    use cimnet::gpu::launch::Recordable;
    use cimnet::gpu::pipelines::Recorder;
    use cimnet::gpu::texture::BufferTexture;
    let Some(ctx) = context() else { return };
    let n = 8192;
    let up = |v: &[f32]| upload(ctx, "operand", v).unwrap();
    let (p, g, m, v) = (up(&vec![0.5; n]), up(&vec![0.1; n]), up(&vec![0.0; n]), up(&vec![0.0; n]));
    let tex = BufferTexture::shared(ctx, "p texture", &p).unwrap();
    let again = BufferTexture::shared(ctx, "p texture", &p).unwrap();
    assert!(std::sync::Arc::ptr_eq(&tex, &again), "one texture per buffer");
    let q = [adam::AdamProblem::new(0, n, 1, &adam::AdamConfig::default())];
    let writer = adam::adam_step_form(ctx, [&p, &g, &m, &v], &q, 1, false, false).unwrap();
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut rec = Recorder::new(&mut enc, "test");
        tex.refresh(&mut rec);
        assert_eq!(rec.breaks, 1, "the first reader copies");
        tex.refresh(&mut rec);
        assert_eq!(rec.breaks, 1, "a second reader finds the copy fresh");
        writer.record_into(&mut rec);
        tex.refresh(&mut rec);
        assert_eq!(rec.breaks, 2, "a dispatch wrote the buffer: copied again");
    }
    ctx.queue.submit([enc.finish()]);
}

/// Labels and every modality gathered by one launch (check_gather asserts one
/// dispatch) into blocks of one output buffer at unaligned offsets.
#[test]
fn gather_builds_padded_batches_and_scatter_rows_inverts_it() {
    let Some(ctx) = context() else { return };
    let lengths = vec![3usize, 1, 98, 7, 1, 12, 40, 2];
    for index in [vec![2usize, 0, 5, 2, 1], vec![4], vec![7, 6, 5, 4, 3, 2, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 3]] {
        let c = GatherCase { lengths: lengths.clone(), dims: vec![300, 74, 35], index, seed: 9 };
        assert_rows(&check::check_gather(ctx, &c).unwrap());
    }
}

/// Includes heads_backward's fused plain-block gradients (dX_s += dR's block).
/// One model per task setup, then five models of mixed tasks and widths in one
/// launch, on batches of different u (each equal bit for bit to itself alone).
#[test]
fn heads_match_cpu() {
    let Some(ctx) = context() else { return };
    let mut worst = 0.0f64;
    for (lens, batches) in shapes().into_iter().zip(batch_sets()) {
        for tasks in Tasks::ALL {
            worst =
                worst.max(assert_rows(&check::check_heads(ctx, &HeadsCase::single(tasks, lens.clone(), 31)).unwrap()));
        }
        worst = worst.max(assert_rows(&check::check_heads(ctx, &HeadsCase::mixed(batches, 32)).unwrap()));
    }
    eprintln!("heads max |err| / max|want|: {worst:.2e}");
}

/// Every member forward and backward (and each member's backward after the
/// other's forward), pair and self, on B = 1, 5, 17: five problems (as five models
/// of different seeds with the pair: own batches of u = 1, a mid u and U_max = 5 or
/// 98, own blocks, two R widths) in one launch, each equal bit for bit to itself
/// launched alone at U = u. At U_max = 98 the mixed launches run at D = 7; D = 100
/// runs once per member there with the one problem of u = 98 (llvmpipe takes
/// minutes for more). D = 100 runs again on a 4-aligned layout (the engine's),
/// where the flat member runs its vec4 entries; the odd layouts keep it scalar.
#[test]
fn attention_matches_cpu() {
    let Some(ctx) = context() else { return };
    let mut worst = 0.0f64;
    let mut ran = Vec::new();
    for batches in batch_sets() {
        let short = batches[0].iter().max().is_some_and(|&u| u <= 5);
        for (d, pair, aligned) in [(100, true, false), (100, false, false), (7, true, false), (7, false, false)]
            .into_iter()
            .chain([(100, true, true), (100, false, true)])
        {
            let mut c = AttentionCase::new(batches.clone(), d, pair, AttentionKernel::Flat, 41);
            if aligned {
                c = c.aligned();
            }
            let mixed = c.problems.clone();
            // The 4-aligned layouts are for the flat member's vec4 entries (every
            // member where the batches are short, for the mixed pairs).
            let members =
                if aligned && !short { vec![AttentionKernel::Flat] } else { check::attention_members(ctx, &c) };
            let many = short || d == 7;
            for &f in &members {
                for &b in &members {
                    if !many && f != b {
                        continue;
                    }
                    (c.forward, c.backward) = (f, b);
                    c.problems = if many { mixed.clone() } else { vec![0] };
                    let rows = check::check_attention(ctx, &c).unwrap();
                    ran.extend(rows.iter().map(|r| r.kernel.clone()));
                    worst = worst.max(assert_rows(&rows));
                }
            }
        }
    }
    // llvmpipe's limits and loop budget admit the tiled member at every shape here;
    // the flat member runs its vec4 entries on the 4-aligned layouts only.
    for k in [
        "attention_forward [flat v4] (pair)",
        "attention_backward [flat v4] (self)",
        "attention_backward [flat v4 after tiled] (pair)",
        "attention_forward [flat] (pair)",
        "attention_backward [flat] (self)",
        "attention_forward [tiled] (pair)",
        "attention_backward [tiled] (self)",
        "attention_backward [flat after tiled] (pair)",
    ] {
        assert!(ran.iter().any(|r| r == k), "{k} did not run: {ran:?}");
    }
    eprintln!("attention max |err| / max|want|: {worst:.2e}");
}

#[test]
fn asking_for_a_missing_adapter_is_an_error_with_a_hint() {
    if std::env::var("CIMNET_SKIP_GPU_TESTS").as_deref() == Ok("1") {
        return;
    }
    let opts = cimnet::gpu::GpuOptions { adapter: Some("no-such-adapter-xyz".into()), ..Default::default() };
    match GpuContext::new(&opts) {
        Err(e @ cimnet::gpu::GpuError::NoAdapter { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("no-such-adapter-xyz") && msg.contains("mesa-vulkan-drivers"), "{msg}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(c) => panic!("got adapter {}", c.describe()),
    }
}

/// Wall-clock time of each kernel at the paper's shapes (B 16, U 98, H 200, D 100,
/// TAV cim: R = 900), after checking above that they are correct. Ignored by default:
///     cargo test --release --test gpu_kernels kernel_timings -- --ignored --nocapture
#[test]
#[ignore]
fn kernel_timings() {
    use cimnet::gpu::attention::{
        attention_backward, attention_forward, AttentionParams, AttentionProblem, AttentionSaved,
    };
    use cimnet::gpu::Recordable;
    let Some(ctx) = context() else { return };
    let (b, u, h, d, k, rw) = (16usize, 98usize, 200usize, 100usize, 300usize, 900usize);
    let lens: Vec<usize> = (0..b).map(|i| u - (i * 7) % 60).collect();
    let n = b * u;
    let buf = |name: &str, len: usize| upload(ctx, name, &f32s(&random_vec(len, len as u64))).unwrap();
    let len = upload(ctx, "len", &u32s(&lens)).unwrap();
    let x = buf("x", n * k);
    let flat = buf("params", 1 << 20);
    let grads = buf("grads", 1 << 20);
    let xp = buf("xp", n * 3 * h);
    let gin = buf("gru out", n * 2 * h);
    let dense = buf("dense", n * d);
    let time = |name: &str, flops: f64, l: &dyn Recordable| {
        run(ctx, &[l]).unwrap(); // warm-up (pipeline compile, first touch)
        let reps = 5;
        let t0 = std::time::Instant::now();
        for _ in 0..reps {
            run(ctx, &[l]).unwrap();
        }
        let s = t0.elapsed().as_secs_f64() / reps as f64;
        eprintln!("{name:<40} {:>9.3} ms {:>8.2} GFLOP/s", s * 1e3, flops / s / 1e9);
    };
    let real: f64 = lens.iter().sum::<usize>() as f64;
    let p = linear::LinearParams::new(b, u, k, 3 * h, false);
    let q = [linear::LinearProblem::new(0, 3 * h * k, 0, 0).batch(u, 0)];
    time(
        "linear_forward xp (K 300 -> 3H 600)",
        2.0 * n as f64 * (k * 3 * h) as f64,
        &linear::linear_forward(ctx, &xp, &x, &flat, &len, p, &q, 1).unwrap(),
    );
    time(
        "linear_backward dx (3H -> K)",
        2.0 * n as f64 * (k * 3 * h) as f64,
        &linear::linear_backward(ctx, &x, &xp, &xp, &flat, &len, p, &q, 1).unwrap(),
    );
    time(
        "linear_backward_weights dW_ih",
        2.0 * real * (k * 3 * h) as f64,
        &linear::linear_backward_weights(ctx, &grads, &xp, &xp, &x, &len, p, &q, 1).unwrap(),
    );
    let p = linear::LinearParams::new(b, u, 2 * h, d, true);
    let q = [linear::LinearProblem::new(0, 2 * h * d, 0, 0).batch(u, 0)];
    time(
        "linear_forward dense (2H 400 -> D 100)",
        2.0 * n as f64 * (2 * h * d) as f64,
        &linear::linear_forward(ctx, &dense, &gin, &flat, &len, p, &q, 1).unwrap(),
    );
    time(
        "dropout_forward (B, U, 2H)",
        0.0,
        &dropout::dropout_forward(
            ctx,
            &xp,
            &gin,
            dropout::DropoutParams::new(n * 2 * h, 0.3),
            &[dropout::DropoutSegment::new(0, 1, n * 2 * h)],
            1,
        )
        .unwrap(),
    );
    let m = storage::<f32>(ctx, "adam m", 1 << 20).unwrap();
    let v = storage::<f32>(ctx, "adam v", 1 << 20).unwrap();
    let pf = flat_copy(ctx, &flat);
    time(
        "adam_step (1M parameters)",
        0.0,
        &adam::adam_step(
            ctx,
            [&pf, &grads, &m, &v],
            &[adam::AdamProblem::new(0, 1 << 20, 1, &adam::AdamConfig::default())],
            1,
            false,
        )
        .unwrap(),
    );
    let r = buf("R", n * rw);
    let am = storage::<f32>(ctx, "M", n * u).unwrap();
    let an = storage::<f32>(ctx, "N", 2 * n * u).unwrap();
    let ao = storage::<f32>(ctx, "O", 2 * n * d).unwrap();
    let dm = storage::<f32>(ctx, "dM", 2 * n * u).unwrap();
    // One model's pair: X, Y the two blocks of a feat arena, dX, dY of a dfeat arena.
    let feat = buf("feat", 2 * n * d);
    let dfeat = buf("dfeat", 2 * n * d);
    let saved = AttentionSaved { m: &am, n: &an, o: &ao };
    let ap = AttentionParams::new(b, u, d, true);
    let aq = [AttentionProblem::new(rw, 0, Some(d)).feat(0, n * d, 0, n * d).batch(u, 0)];
    time(
        "attention_forward pair (default member)",
        0.0,
        &attention_forward(ctx, &r, &saved, &feat, &len, ap, &aq, 1).unwrap(),
    );
    time(
        "attention_backward pair (default member)",
        0.0,
        &attention_backward(ctx, &dfeat, &dm, &r, &saved, &feat, &len, ap, &aq, 1).unwrap(),
    );
    let mut cfg = cimnet::config::ModelConfig::new(
        "TAV".parse().unwrap(),
        "cim".parse().unwrap(),
        "mtl".parse().unwrap(),
        [300, 74, 35],
    );
    cfg.dense = d;
    let layout = cimnet::params::Layout::new(&cfg);
    let hp = heads::HeadsParams::new(b, u, d, false);
    let hq = [heads::HeadsProblem::new(&cfg, &layout, 0).batch(u, 0)];
    let wl = buf("params", layout.len);
    let gl = buf("grads", layout.len);
    let labels = buf("labels", n * 7);
    let probs = storage::<f32>(ctx, "probs", n * 9).unwrap();
    let dz = storage::<f32>(ctx, "dz", n * 9).unwrap();
    let rl = storage::<f32>(ctx, "row loss", n * 2).unwrap();
    let loss = storage::<f32>(ctx, "loss", 4).unwrap();
    let dr = storage::<f32>(ctx, "dR", n * rw).unwrap();
    time(
        "heads_forward + loss",
        0.0,
        &heads::heads_forward(ctx, &probs, &dz, &rl, &loss, &r, &wl, &labels, &len, hp, &hq, 1).unwrap(),
    );
    time(
        "heads_backward (dR + dW)",
        0.0,
        &heads::heads_backward(ctx, &dr, &ctx.dummy, &gl, &dz, &r, &wl, &len, hp, &hq, 1).unwrap(),
    );
    let empty: [&dyn Recordable; 0] = [];
    let t0 = std::time::Instant::now();
    for _ in 0..20 {
        run(ctx, &empty).unwrap();
    }
    eprintln!("{:<40} {:>9.3} ms", "empty submit + wait", t0.elapsed().as_secs_f64() / 20.0 * 1e3);
}

fn flat_copy(ctx: &GpuContext, src: &wgpu::Buffer) -> wgpu::Buffer {
    let dst = storage::<f32>(ctx, "params copy", (src.size() / 4) as usize).unwrap();
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(src, 0, &dst, 0, src.size());
    cimnet::gpu::buffers::submit_and_wait(ctx, enc).unwrap();
    dst
}

/// A problem whose batch does not fit the launch (u = 0, u > the launch's U, its
/// lengths past the length buffer) is refused with an error naming it, at build
/// and at update, by the attention and heads launchers.
#[test]
fn problem_batches_outside_the_launch_are_refused() {
    use cimnet::gpu::attention::{attention_forward, AttentionParams, AttentionProblem, AttentionSaved};
    use cimnet::gpu::GpuError;
    let Some(ctx) = context() else { return };
    let (b, u, d) = (3, 4, 2);
    let buf = |n: usize| storage::<f32>(ctx, "buf", n).unwrap();
    let (r, m, n, o, feat) = (buf(64), buf(64), buf(64), buf(64), buf(64));
    let len = upload(ctx, "len", &[1u32, 4, 2, 3]).unwrap();
    let saved = AttentionSaved { m: &m, n: &n, o: &o };
    let p = AttentionParams::new(b, u, d, true);
    let q = AttentionProblem::new(2 * d, 0, Some(d));
    let refused = |e: Result<(), GpuError>, problem: usize, why: &str| match e {
        Err(GpuError::BadProblem { problem: got, why: w, .. }) => {
            assert_eq!(got, problem);
            assert!(w.contains(why), "{w}");
        }
        other => panic!("not refused: {:?}", other.err()),
    };
    let build = |qs: &[AttentionProblem]| attention_forward(ctx, &r, &saved, &feat, &len, p, qs, 2).map(|_| ());
    refused(build(&[q.batch(u, 0), q]), 1, "u = 0");
    refused(build(&[q.batch(u + 1, 0)]), 0, "u = 5");
    refused(build(&[q.batch(2, 1), q.batch(u, 2)]), 1, "past the 4");
    let mut ok = attention_forward(ctx, &r, &saved, &feat, &len, p, &[q.batch(u, 1), q.batch(1, 0)], 2).unwrap();
    refused(ok.update(ctx, p, &[q.batch(1, 0), q.batch(u, 9)]), 1, "past the 4");

    let cfg = cimnet::config::ModelConfig::new(
        "T".parse().unwrap(),
        "none".parse().unwrap(),
        "mtl".parse().unwrap(),
        [4, 0, 0],
    );
    let layout = cimnet::params::Layout::new(&cfg);
    let hp = heads::HeadsParams::new(b, u, d, false);
    let hq = heads::HeadsProblem::new(&cfg, &layout, 0);
    let w = buf(layout.len + 64);
    let labels = buf(b * u * 7);
    let (probs, dz, rl, loss, dr, dfeat, grads) = (buf(64), buf(64), buf(64), buf(64), buf(64), buf(64), buf(64));
    let mut f =
        heads::heads_forward(ctx, &probs, &dz, &rl, &loss, &r, &w, &labels, &len, hp, &[hq.batch(u, 1)], 1).unwrap();
    refused(f.update(ctx, hp, &[hq.batch(0, 0)]), 0, "u = 0");
    refused(f.update(ctx, hp, &[hq.batch(2, 0).labels(60)]), 0, "labels");
    let mut g = heads::heads_backward(ctx, &dr, &dfeat, &grads, &dz, &r, &w, &len, hp, &[hq.batch(2, 0)], 1).unwrap();
    refused(g.update(ctx, hp, &[hq.batch(u, 2)]), 0, "past the 4");
}
