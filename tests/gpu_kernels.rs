//! Every GPU kernel against the f64 CPU reference (src/cpu) on odd shapes: B not a
//! multiple of any workgroup size, U = 1, U = 98, mixed lengths, masked padding.
//! Run on a CPU-only machine with Mesa's llvmpipe:
//!     WGPU_BACKEND=vulkan cargo test --test gpu_kernels
//! Without an adapter these tests fail, unless CIMNET_SKIP_GPU_TESTS=1.

mod common;

use common::close::{assert_close, max_abs};
use common::gpu::context;
use common::{random_batch, random_vec};

use cimnet::cpu;
use cimnet::gpu::buffers::{read, storage, upload};
use cimnet::gpu::{adam, dropout, gather, heads, linear, run, GpuContext};

// Tolerances, relative to each tensor's largest magnitude (atol = TOL * max|want|).
/// f32 dot products of length up to ~900 with random signs: the rounding error grows
/// like sqrt(K) * 2^-24 * sum|terms| (~1e-6 of the largest output); 1e-5 leaves a
/// 10x margin and still catches any wrong index or missing term (errors of O(1e-2)).
const MATMUL_TOL: f64 = 1e-5;
/// Weight gradients sum over up to B*U = 1666 rows in f32: sqrt(1666) * 6e-8 * the
/// summed magnitude, ~1e-5 of the largest gradient in the worst case; 3e-5 margin.
const WGRAD_TOL: f64 = 3e-5;
/// Adam: p is stored in f32, so every step rounds it (half an ulp, 3e-8 of |p| <= 1):
/// ten steps drift by up to ~3e-7 of max|p| (measured 2.8e-7); the update itself and
/// the f64-computed bias corrections and (1 - beta) add far less. 1e-6 is a third of
/// one update step (lr = 1e-3 times |m_hat / sqrt(v_hat)| >= ~3e-3 here).
const ADAM_TOL: f64 = 1e-6;
/// Heads: logits are dots of length R = 900 (as MATMUL_TOL), then exp/log in f32
/// (a few ulp); probabilities, losses and dz inherit ~1e-6 relative error.
const HEADS_TOL: f64 = 2e-5;

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn u32s(v: &[usize]) -> Vec<u32> {
    v.iter().map(|&x| x as u32).collect()
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Lengths with U = 98 and U = 1, B = 17 and B = 5, mixed.
fn shapes() -> Vec<Vec<usize>> {
    vec![
        vec![1],
        vec![3, 1, 5, 2, 5],
        vec![98, 1, 40, 97, 3, 98, 12, 1, 55, 70, 2, 9, 98, 33, 64, 18, 7],
    ]
}

/// Values only at the real rows of a (B, U, W) tensor (padding is undefined output).
fn real_rows(v: &[f64], lens: &[usize], u: usize, w: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for (b, &l) in lens.iter().enumerate() {
        out.extend_from_slice(&v[b * u * w..(b * u + l) * w]);
    }
    out
}

fn real_rows32(v: &[f32], lens: &[usize], u: usize, w: usize) -> Vec<f32> {
    let mut out = Vec::new();
    for (b, &l) in lens.iter().enumerate() {
        out.extend_from_slice(&v[b * u * w..(b * u + l) * w]);
    }
    out
}

/// Inputs of one linear test: x with garbage (non-zero) padding, W and b inside a
/// flat buffer at non-zero, 256-byte-aligned offsets, upstream gradient dy.
struct LinearCase {
    lens: Vec<usize>,
    u: usize,
    k: usize,
    o: usize,
    x: Vec<f64>,
    flat: Vec<f64>,
    w_off: usize,
    b_off: usize,
    dy: Vec<f64>,
    grads0: Vec<f64>,
}

fn linear_case(lens: &[usize], k: usize, o: usize, seed: u64) -> LinearCase {
    let u = *lens.iter().max().unwrap();
    let n = lens.len() * u;
    let w_off = 64;
    let b_off = (w_off + o * k).div_ceil(64) * 64;
    let mut flat = random_vec(b_off + o + 64, seed);
    for v in &mut flat[..w_off] {
        *v = 1e3; // must never be read
    }
    LinearCase {
        lens: lens.to_vec(),
        u,
        k,
        o,
        x: random_vec(n * k, seed + 1),
        flat,
        w_off,
        b_off,
        dy: random_vec(n * o, seed + 2),
        grads0: random_vec(b_off + o + 64, seed + 3),
    }
}

fn check_linear(ctx: &GpuContext, c: &LinearCase, relu: bool) -> [f64; 4] {
    let (b, u, k, o) = (c.lens.len(), c.u, c.k, c.o);
    let w = &c.flat[c.w_off..c.w_off + o * k];
    let bias = &c.flat[c.b_off..c.b_off + o];
    // CPU: relu -> dense; none -> the GRU input projection, whose backward is the
    // dense backward with every unit "active" (y = 1).
    let want_y = if relu {
        cpu::dense::dense_forward(&c.x, w, bias, &c.lens, b, u, k, o)
    } else {
        let s = cpu::gru::GruShape { b, u, k, h: o / 3 };
        let zeros = vec![0.0; o];
        let gw = cpu::gru::GruWeights { w_ih: w, w_hh: &[], b_ih: bias, b_hh: &zeros };
        cpu::gru::gru_input_projection(&c.x, &gw, &c.lens, s)
    };
    let mask_y = if relu { want_y.clone() } else { vec![1.0; want_y.len()] };
    let mut want_dx = vec![0.0; b * u * k];
    let mut want_dw = c.grads0[c.w_off..c.w_off + o * k].to_vec();
    let mut want_db = c.grads0[c.b_off..c.b_off + o].to_vec();
    cpu::dense::dense_backward(&mut want_dx, &mut want_dw, &mut want_db, &c.dy, &c.x, &mask_y, w, &c.lens, b, u, k, o);

    let x = upload(ctx, "x", &f32s(&c.x)).unwrap();
    let flat = upload(ctx, "params", &f32s(&c.flat)).unwrap();
    let len = upload(ctx, "len", &u32s(&c.lens)).unwrap();
    let dy = upload(ctx, "dy", &f32s(&c.dy)).unwrap();
    let grads = upload(ctx, "grads", &f32s(&c.grads0)).unwrap();
    // Garbage in the outputs, so that "written" is tested, not assumed.
    let y = upload(ctx, "y", &vec![7.0f32; b * u * o]).unwrap();
    let dx = upload(ctx, "dx", &vec![7.0f32; b * u * k]).unwrap();
    let p = linear::LinearParams::new(b, u, k, o, relu, c.w_off, c.b_off);
    let fwd = linear::linear_forward(ctx, &y, &x, &flat, &len, p).unwrap();
    let bwd = linear::linear_backward(ctx, &dx, &dy, &y, &flat, &len, p).unwrap();
    let bww = linear::linear_backward_weights(ctx, &grads, &dy, &y, &x, &len, p).unwrap();
    assert_eq!(run(ctx, &[&fwd, &bwd, &bww]).unwrap(), 3);

    let got_y = read::<f32>(ctx, &y, 0, b * u * o).unwrap();
    let got_dx = read::<f32>(ctx, &dx, 0, b * u * k).unwrap();
    let got_g = read::<f32>(ctx, &grads, 0, c.grads0.len()).unwrap();
    let tag = format!("linear relu={relu} B={b} U={u} K={k} O={o}");
    // Padded rows are written as zero: compare the whole tensors.
    let ey = assert_close(&format!("{tag} y"), &got_y, &want_y, MATMUL_TOL * max_abs(&want_y), 0.0);
    let edx = assert_close(&format!("{tag} dx"), &got_dx, &want_dx, MATMUL_TOL * max_abs(&want_dx), 0.0);
    let edw = assert_close(&format!("{tag} dW"), &got_g[c.w_off..c.w_off + o * k], &want_dw, WGRAD_TOL * max_abs(&want_dw), 0.0);
    let edb = assert_close(&format!("{tag} db"), &got_g[c.b_off..c.b_off + o], &want_db, WGRAD_TOL * max_abs(&want_db), 0.0);
    // Everything outside dW and db is untouched.
    assert_eq!(&got_g[..c.w_off], &f32s(&c.grads0[..c.w_off])[..], "{tag}: grads before dW changed");
    assert_eq!(&got_g[c.b_off + o..], &f32s(&c.grads0[c.b_off + o..])[..], "{tag}: grads after db changed");
    [ey / max_abs(&want_y), edx / max_abs(&want_dx), edw / max_abs(&want_dw), edb / max_abs(&want_db)]
}

#[test]
fn linear_matches_dense_and_input_projection() {
    let Some(ctx) = context() else { return };
    let mut worst = [0.0f64; 4];
    for (s, lens) in shapes().iter().enumerate() {
        for (k, o, relu) in [(35, 600, false), (74, 99, false), (400, 100, true), (3, 5, true)] {
            let e = check_linear(ctx, &linear_case(lens, k, o, 100 + s as u64), relu);
            for i in 0..4 {
                worst[i] = worst[i].max(e[i]);
            }
        }
    }
    eprintln!("linear max |err| / max|want|: y {:.2e}, dx {:.2e}, dW {:.2e}, db {:.2e}", worst[0], worst[1], worst[2], worst[3]);
}

/// The fused dense site of a training step: two problems in one launch (grid z), each
/// with its own W, b and x / y blocks; forward y = dropout(relu(x W^T + b)) also
/// copied into a column block of R; backward g = dy * scale where y > 0, dx written
/// through the GRU-site mask. Against cpu::dense with cpu::dropout's masks.
fn check_linear_fused(ctx: &GpuContext, lens: &[usize], k: usize, o: usize, seed: u64) -> f64 {
    let (b, u) = (lens.len(), *lens.iter().max().unwrap());
    let n = b * u;
    let (step_seed, p_drop) = (977u32 + seed as u32, 0.3);
    let (fwd_streams, bwd_streams) = ([1u32, 5, 0, 0], [0u32, 4, 0, 0]);
    let rw = 3 * o + 1;
    let r_off = [o + 1, 2 * o + 1];
    // Problem z: W at w_off[z], b at b_off[z]; x / dx at x_off[z], y / dy at y_off[z].
    let w_off = [64, 64 + (o * k + o).div_ceil(64) * 64];
    let b_off = [w_off[0] + o * k, w_off[1] + o * k];
    let x_off = [4, 8 + (n * k).div_ceil(4) * 4];
    let y_off = [0, (n * o).div_ceil(4) * 4];
    let flat = random_vec(b_off[1] + o + 64, seed);
    let x = random_vec(x_off[1] + n * k, seed + 1);
    let dy = random_vec(y_off[1] + n * o, seed + 2);
    let grads0 = random_vec(flat.len(), seed + 3);
    let r0 = vec![9.0f32; n * rw];

    let xb = upload(ctx, "x", &f32s(&x)).unwrap();
    let fb = upload(ctx, "params", &f32s(&flat)).unwrap();
    let len = upload(ctx, "len", &u32s(lens)).unwrap();
    let dyb = upload(ctx, "dy", &f32s(&dy)).unwrap();
    let grads = upload(ctx, "grads", &f32s(&grads0)).unwrap();
    let y = upload(ctx, "y", &vec![7.0f32; y_off[1] + n * o]).unwrap();
    let dx = upload(ctx, "dx", &vec![7.0f32; x.len()]).unwrap();
    let r = upload(ctx, "R", &r0).unwrap();
    let mut p = linear::LinearParams::new(b, u, k, o, true, 0, 0);
    for z in 0..2 {
        p = p.problem(z, w_off[z], b_off[z], x_off[z], y_off[z]);
    }
    let pf = p.dropout(step_seed, p_drop, fwd_streams).repr(rw, [r_off[0], r_off[1], 0, 0]);
    let pb = p.dropout(step_seed, p_drop, bwd_streams);
    let fwd = linear::linear_forward_repr(ctx, &y, &r, &xb, &fb, &len, pf).unwrap();
    let bwd = linear::linear_backward(ctx, &dx, &dyb, &y, &fb, &len, pb).unwrap();
    let bww = linear::linear_backward_weights(ctx, &grads, &dyb, &y, &xb, &len, pb).unwrap();
    assert_eq!(run(ctx, &[&fwd, &bwd, &bww]).unwrap(), 3, "one dispatch per kernel for both problems");
    let got_y = read::<f32>(ctx, &y, 0, y_off[1] + n * o).unwrap();
    let got_dx = read::<f32>(ctx, &dx, 0, x.len()).unwrap();
    let got_g = read::<f32>(ctx, &grads, 0, grads0.len()).unwrap();
    let got_r = read::<f32>(ctx, &r, 0, n * rw).unwrap();

    let mut worst = 0.0f64;
    for z in 0..2 {
        let tag = format!("fused linear z={z} B={b} U={u} K={k} O={o}");
        let w = &flat[w_off[z]..w_off[z] + o * k];
        let bias = &flat[b_off[z]..b_off[z] + o];
        let xz = &x[x_off[z]..x_off[z] + n * k];
        let relu = cpu::dense::dense_forward(xz, w, bias, lens, b, u, k, o);
        let mask_d = cpu::dropout::dropout_mask(step_seed, fwd_streams[z], n * o, p_drop);
        let mask_g = cpu::dropout::dropout_mask(step_seed, bwd_streams[z], n * k, p_drop);
        let want_y = cpu::dropout::dropout_forward(&relu, &mask_d);
        let mut ddense = vec![0.0; n * o];
        cpu::dropout::dropout_backward(&mut ddense, &dy[y_off[z]..y_off[z] + n * o], &mask_d);
        let mut ddin = vec![0.0; n * k];
        let mut want_dw = grads0[w_off[z]..w_off[z] + o * k].to_vec();
        let mut want_db = grads0[b_off[z]..b_off[z] + o].to_vec();
        cpu::dense::dense_backward(&mut ddin, &mut want_dw, &mut want_db, &ddense, xz, &relu, w, lens, b, u, k, o);
        let mut want_dx = vec![0.0; n * k];
        cpu::dropout::dropout_backward(&mut want_dx, &ddin, &mask_g);
        let gy = &got_y[y_off[z]..y_off[z] + n * o];
        let ey = assert_close(&format!("{tag} y"), gy, &want_y, MATMUL_TOL * max_abs(&want_y), 0.0);
        let gr: Vec<f32> = (0..n * o).map(|e| got_r[(e / o) * rw + r_off[z] + e % o]).collect();
        assert_eq!(gr, gy, "{tag}: R's block is not y");
        let edx = assert_close(&format!("{tag} dx"), &got_dx[x_off[z]..x_off[z] + n * k], &want_dx, MATMUL_TOL * max_abs(&want_dx), 0.0);
        let edw = assert_close(&format!("{tag} dW"), &got_g[w_off[z]..w_off[z] + o * k], &want_dw, WGRAD_TOL * max_abs(&want_dw), 0.0);
        let edb = assert_close(&format!("{tag} db"), &got_g[b_off[z]..b_off[z] + o], &want_db, WGRAD_TOL * max_abs(&want_db), 0.0);
        worst = worst.max(ey / max_abs(&want_y)).max(edx / max_abs(&want_dx)).max(edw / max_abs(&want_dw)).max(edb / max_abs(&want_db));
    }
    // R outside the two blocks is untouched.
    for (e, &v) in got_r.iter().enumerate() {
        let c = e % rw;
        if !(r_off.iter().any(|&off| c >= off && c < off + o)) {
            assert_eq!(v, 9.0, "R column {c} outside the blocks was written");
        }
    }
    worst
}

#[test]
fn linear_fused_dropout_problems_and_repr_match_cpu() {
    let Some(ctx) = context() else { return };
    let mut worst = 0.0f64;
    for (s, lens) in shapes().iter().enumerate() {
        // (400, 100): the vec4 kernels; (6, 5): the scalar ones.
        for (k, o) in [(400, 100), (6, 5)] {
            worst = worst.max(check_linear_fused(ctx, lens, k, o, 300 + s as u64));
        }
    }
    eprintln!("fused linear max |err| / max|want|: {worst:.2e}");
}

#[test]
fn linear_weight_gradient_is_deterministic() {
    let Some(ctx) = context() else { return };
    let c = linear_case(&[98, 1, 40, 97, 3], 74, 99, 7);
    let (b, u) = (c.lens.len(), c.u);
    let run_once = || {
        let x = upload(ctx, "x", &f32s(&c.x)).unwrap();
        let len = upload(ctx, "len", &u32s(&c.lens)).unwrap();
        let dy = upload(ctx, "dy", &f32s(&c.dy)).unwrap();
        let grads = upload(ctx, "grads", &f32s(&c.grads0)).unwrap();
        let p = linear::LinearParams::new(b, u, c.k, c.o, false, c.w_off, c.b_off);
        let l = linear::linear_backward_weights(ctx, &grads, &dy, &dy, &x, &len, p).unwrap();
        run(ctx, &[&l]).unwrap();
        read::<u32>(ctx, &grads, 0, c.grads0.len()).unwrap()
    };
    assert_eq!(run_once(), run_once(), "bitwise different weight gradients from two identical runs");
}

#[test]
fn dropout_masks_match_cpu_bit_for_bit() {
    let Some(ctx) = context() else { return };
    let n = (1 << 20) + 3;
    for (seed, stream, p) in [(0u32, 0u32, 0.3), (12345, 5, 0.3), (u32::MAX, 1, 0.5), (7, 2, 0.1)] {
        let want = cpu::dropout::dropout_mask(seed, stream, n, p);
        let ones = upload(ctx, "ones", &vec![1.0f32; n]).unwrap();
        let x = random_vec(n, u64::from(seed) + 1);
        let xb = upload(ctx, "x", &f32s(&x)).unwrap();
        let mask = storage::<f32>(ctx, "mask", n).unwrap();
        let y = storage::<f32>(ctx, "y", n).unwrap();
        let dx = storage::<f32>(ctx, "dx", n).unwrap();
        let prm = dropout::DropoutParams::new(n, seed, stream, p);
        let a = dropout::dropout_forward(ctx, &mask, &ones, prm).unwrap();
        let f = dropout::dropout_forward(ctx, &y, &xb, prm).unwrap();
        let bw = dropout::dropout_backward(ctx, &dx, &xb, prm).unwrap();
        run(ctx, &[&a, &f, &bw]).unwrap();
        let got = read::<f32>(ctx, &mask, 0, n).unwrap();
        let want32 = f32s(&want);
        let diff = got.iter().zip(&want32).position(|(g, w)| g.to_bits() != w.to_bits());
        assert_eq!(diff, None, "seed {seed} stream {stream}: GPU mask differs from CPU at element {diff:?}");
        // y = x * mask in f32, exactly as the CPU computes it in f32.
        let want_y: Vec<f32> = x.iter().zip(&want32).map(|(&a, &m)| a as f32 * m).collect();
        assert_eq!(read::<f32>(ctx, &y, 0, n).unwrap(), want_y, "dropout_forward");
        assert_eq!(read::<f32>(ctx, &dx, 0, n).unwrap(), want_y, "dropout_backward");
        let kept = got.iter().filter(|&&m| m != 0.0).count() as f64 / n as f64;
        assert!((kept - (1.0 - p)).abs() < 0.01, "kept fraction {kept} for p {p}");
    }
}

#[test]
fn dropout_segments_use_their_own_streams() {
    let Some(ctx) = context() else { return };
    let (n, seed, p) = (10_001, 4242u32, 0.3);
    let streams = [0u32, 4, 2];
    let x = random_vec(3 * n + 5, 3);
    let xb = upload(ctx, "x", &f32s(&x)).unwrap();
    let y = upload(ctx, "y", &vec![7.0f32; 3 * n + 2]).unwrap();
    let prm = dropout::DropoutParams::new(n, seed, 0, p).segments(&streams).at(5, 2);
    let f = dropout::dropout_forward(ctx, &y, &xb, prm).unwrap();
    assert_eq!(run(ctx, &[&f]).unwrap(), 1);
    let got = read::<f32>(ctx, &y, 0, 3 * n + 2).unwrap();
    assert_eq!(&got[..2], &[7.0, 7.0], "written before y_off");
    for (z, &st) in streams.iter().enumerate() {
        let mask = f32s(&cpu::dropout::dropout_mask(seed, st, n, p));
        let want: Vec<f32> = (0..n).map(|i| x[5 + z * n + i] as f32 * mask[i]).collect();
        assert_eq!(&got[2 + z * n..2 + (z + 1) * n], &want[..], "segment {z} (stream {st})");
    }
}

#[test]
fn adam_matches_cpu_over_ten_steps() {
    let Some(ctx) = context() else { return };
    let n = 70_001;
    let cfg = adam::AdamConfig::default();
    let mut p = random_vec(n, 1);
    // Alignment-gap-like zeros: g = 0 always, p = 0 must stay exactly 0.
    for v in &mut p[..64] {
        *v = 0.0;
    }
    let params = upload(ctx, "params", &f32s(&p)).unwrap();
    let mut p = f64s(&f32s(&p));
    let grads = storage::<f32>(ctx, "grads", n).unwrap();
    let m = storage::<f32>(ctx, "adam m", n).unwrap();
    let v = storage::<f32>(ctx, "adam v", n).unwrap();
    let mut state = cpu::adam::AdamState::new(n);
    let mut launch = adam::adam_step(ctx, &params, &grads, &m, &v, adam::AdamParams::new(n, 1, &cfg, true)).unwrap();
    for step in 1..=10u32 {
        let mut g = random_vec(n, 100 + u64::from(step));
        for x in &mut g[..64] {
            *x = 0.0;
        }
        if step == 4 {
            for x in &mut g[64..1000] {
                *x *= 1e-4; // tiny gradients: the eps regime
            }
        }
        let g = f64s(&f32s(&g));
        ctx.queue.write_buffer(&grads, 0, bytemuck::cast_slice(&f32s(&g)));
        launch.update(ctx, adam::AdamParams::new(n, step, &cfg, true));
        run(ctx, &[&launch]).unwrap();
        cpu::adam::adam_step(&mut p, &mut state, &g, &cfg);
    }
    let got = read::<f32>(ctx, &params, 0, n).unwrap();
    let e = assert_close("adam params", &got, &p, ADAM_TOL * max_abs(&p), 0.0);
    assert_close("adam m", &read::<f32>(ctx, &m, 0, n).unwrap(), &state.m, ADAM_TOL * max_abs(&state.m), 0.0);
    assert_close("adam v", &read::<f32>(ctx, &v, 0, n).unwrap(), &state.v, ADAM_TOL * max_abs(&state.v), 0.0);
    assert!(got[..64].iter().all(|&x| x == 0.0), "zero-gradient zeros moved");
    assert!(read::<f32>(ctx, &grads, 0, n).unwrap().iter().all(|&x| x == 0.0), "zero_grad left gradients");
    eprintln!("adam max |err| / max|p| after 10 steps: {:.2e}", e / max_abs(&p));
}

#[test]
fn gather_builds_padded_batches() {
    let Some(ctx) = context() else { return };
    let lengths = [3usize, 1, 98, 7, 1, 12, 40, 2];
    let n_utt: usize = lengths.iter().sum();
    let dims = [300usize, 74, 35];
    let feats: Vec<Vec<f32>> = dims.iter().enumerate().map(|(m, &d)| f32s(&random_vec(n_utt * d, m as u64))).collect();
    let labels = f32s(&random_vec(n_utt * gather::LABEL_WIDTH, 9));
    let data = gather::GpuDataset::upload(
        ctx,
        [Some(&feats[0][..]), Some(&feats[1][..]), Some(&feats[2][..])],
        dims,
        &labels,
        &lengths,
    )
    .unwrap();
    let starts: Vec<usize> = lengths.iter().scan(0, |s, &l| {
        let o = *s;
        *s += l;
        Some(o)
    }).collect();
    for index in [vec![2usize, 0, 5, 2, 1], vec![4], vec![7, 6, 5, 4, 3, 2, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 3]] {
        let b = index.len();
        let u = index.iter().map(|&v| lengths[v]).max().unwrap();
        let idx = upload(ctx, "index", &u32s(&index)).unwrap();
        let out_len = upload(ctx, "len", &vec![999u32; b]).unwrap();
        // One launch for every tensor: labels first (writing the lengths), then T, A, V,
        // into blocks of one output buffer (one odd-sized block offset included).
        let mut p = gather::GatherParams::new(b, u, true);
        let mut blocks = Vec::new();
        let mut at = 3; // deliberately unaligned
        let src_offs = [data.labels_off, data.features_off[0].unwrap(), data.features_off[1].unwrap(), data.features_off[2].unwrap()];
        let widths = [gather::LABEL_WIDTH, dims[0], dims[1], dims[2]];
        for z in 0..4 {
            p = p.tensor(widths[z], src_offs[z], at);
            blocks.push((at, widths[z], if z == 0 { &labels } else { &feats[z - 1] }));
            at += b * u * widths[z] + 1;
        }
        let out = upload(ctx, "out", &vec![5.0f32; at]).unwrap();
        let launch = gather::gather_forward(ctx, &out, &out_len, &data, &idx, p).unwrap();
        assert_eq!(run(ctx, &[&launch]).unwrap(), 1, "one dispatch gathers every tensor");
        let got = read::<f32>(ctx, &out, 0, at).unwrap();
        for (off, d, src) in &blocks {
            let mut want = vec![0.0f32; b * u * d];
            for (bi, &v) in index.iter().enumerate() {
                for i in 0..lengths[v] {
                    want[(bi * u + i) * d..(bi * u + i + 1) * d].copy_from_slice(&src[(starts[v] + i) * d..(starts[v] + i + 1) * d]);
                }
            }
            assert_eq!(&got[*off..off + b * u * d], &want[..], "gather D={d} index {index:?}");
            assert_eq!(got[off + b * u * d], 5.0, "gather D={d} wrote past its block");
        }
        assert_eq!(read::<u32>(ctx, &out_len, 0, b).unwrap(), index.iter().map(|&v| lengths[v] as u32).collect::<Vec<_>>());
    }
}

#[test]
fn heads_match_cpu() {
    let Some(ctx) = context() else { return };
    let mut worst = 0.0f64;
    for tasks in ["mtl", "sentiment", "emotion"] {
        for lens in shapes() {
            worst = worst.max(check_heads(ctx, tasks, &lens));
        }
    }
    eprintln!("heads max |err| / max|want|: {worst:.2e}");
}

fn check_heads(ctx: &GpuContext, tasks: &str, lens: &[usize]) -> f64 {
    use cimnet::config::ModelConfig;
    let mut cfg = ModelConfig::new("TAV".parse().unwrap(), "cim".parse().unwrap(), tasks.parse().unwrap(), [6, 5, 4]);
    cfg.hidden = 4;
    cfg.w_sentiment = 0.7;
    cfg.w_emotion = 1.3;
    let layout = cimnet::params::Layout::new(&cfg);
    let rw = cfg.repr_width();
    let batch = random_batch([1, 0, 0], lens, 31);
    let (b, u) = (batch.b, batch.u);
    let params = common::random_params(&layout, 5, 0.1);
    let r = random_vec(b * u * rw, 17);
    let head = |n: &str| {
        layout.get(&format!("{n}.weight")).map(|w| cpu::heads::Head {
            w: &params[w.range()],
            b: &params[layout.slice(&format!("{n}.bias")).range()],
        })
    };
    let (hs, he) = (head("sentiment"), head("emotion"));
    let out = cpu::heads::heads_forward(&r, hs, he, &batch, rw, cfg.w_sentiment, cfg.w_emotion);
    let grads0 = random_vec(layout.len, 3);
    let mut want_grads = grads0.clone();
    let mut want_dr = vec![0.0; b * u * rw];
    {
        let mut ws = vec![];
        let mut we = vec![];
        let tmp = |n: &str, store: &mut Vec<(std::ops::Range<usize>, std::ops::Range<usize>, Vec<f64>, Vec<f64>)>| {
            if let (Some(w), Some(bb)) = (layout.get(&format!("{n}.weight")), layout.get(&format!("{n}.bias"))) {
                store.push((w.range(), bb.range(), grads0[w.range()].to_vec(), grads0[bb.range()].to_vec()));
            }
        };
        tmp("sentiment", &mut ws);
        tmp("emotion", &mut we);
        cpu::heads::heads_backward(
            &mut want_dr,
            ws.first_mut().map(|(_, _, w, b)| cpu::heads::HeadGrads { w, b }),
            we.first_mut().map(|(_, _, w, b)| cpu::heads::HeadGrads { w, b }),
            &r,
            hs,
            he,
            &out,
            &batch,
            rw,
            cfg.w_sentiment,
            cfg.w_emotion,
        );
        for (wr, br, w, bb) in ws.into_iter().chain(we) {
            want_grads[wr].copy_from_slice(&w);
            want_grads[br].copy_from_slice(&bb);
        }
    }

    // Labels (B, U, 7) = [score, six intensities], as gather builds them.
    let mut labels = vec![0.0f32; b * u * 7];
    let emo = batch.emotion.as_ref().unwrap();
    for t in 0..b * u {
        labels[t * 7] = batch.sentiment[t] as f32;
        for k in 0..6 {
            labels[t * 7 + 1 + k] = emo[t * 6 + k] as f32;
        }
    }
    let rb = upload(ctx, "R", &f32s(&r)).unwrap();
    let wb = upload(ctx, "params", &f32s(&params)).unwrap();
    let lb = upload(ctx, "labels", &labels).unwrap();
    let len = upload(ctx, "len", &u32s(lens)).unwrap();
    let probs = upload(ctx, "probs", &vec![9.0f32; b * u * heads::CLASSES]).unwrap();
    let dz = storage::<f32>(ctx, "dz", b * u * heads::CLASSES).unwrap();
    let row_loss = storage::<f32>(ctx, "row loss", b * u * 2).unwrap();
    let loss = storage::<f32>(ctx, "loss", heads::LOSS_LEN).unwrap();
    let dr = upload(ctx, "dR", &vec![9.0f32; b * u * rw]).unwrap();
    let grads = upload(ctx, "grads", &f32s(&grads0)).unwrap();
    let p = heads::HeadsParams::new(&cfg, &layout, b, u);
    let fwd = heads::heads_forward(ctx, &probs, &dz, &row_loss, &loss, &rb, &wb, &lb, &len, p).unwrap();
    // The plain blocks' gradients, fused into heads_backward: dX_s += dR[:, plain_s ..].
    let d = cfg.dense;
    let blocks = cfg.representation();
    let plain: Vec<Option<usize>> = cfg
        .modalities
        .modalities()
        .iter()
        .map(|&m| blocks.iter().position(|&bk| bk == cimnet::config::Block::Plain(m)).map(|k| k * d))
        .collect();
    assert!(plain.iter().all(Option::is_some), "TAV/cim has a plain block per modality");
    let dx0: Vec<Vec<f32>> = (0..3).map(|s| f32s(&random_vec(b * u * d, 40 + s as u64))).collect();
    let dxb: Vec<wgpu::Buffer> = dx0.iter().map(|v| upload(ctx, "dX", v).unwrap()).collect();
    let bwd = heads::heads_backward(ctx, &dr, [&dxb[0], &dxb[1], &dxb[2]], &grads, &dz, &rb, &wb, &len, p.with_plain(&plain)).unwrap();
    assert_eq!(run(ctx, &[&fwd, &bwd]).unwrap(), 4);
    let got_dr_all = read::<f32>(ctx, &dr, 0, b * u * rw).unwrap();
    for (s, off) in plain.iter().enumerate() {
        let off = off.unwrap();
        let want: Vec<f32> = (0..b * u * d).map(|e| dx0[s][e] + got_dr_all[(e / d) * rw + off + e % d]).collect();
        assert_eq!(read::<f32>(ctx, &dxb[s], 0, b * u * d).unwrap(), want, "{tasks}: plain block {s} gradient");
    }

    let tag = format!("heads {tasks} lens {lens:?}");
    let got_p = read::<f32>(ctx, &probs, 0, b * u * heads::CLASSES).unwrap();
    let mut worst = 0.0f64;
    let count = batch.real_count() as f64;
    if let Some(sp) = &out.sentiment_prob {
        let got: Vec<f32> = (0..b * u).flat_map(|t| got_p[t * 9..t * 9 + 2].to_vec()).collect();
        worst = worst.max(assert_close(&format!("{tag} sentiment prob"), &real_rows32(&got, lens, u, 2), &real_rows(sp, lens, u, 2), HEADS_TOL, 0.0));
    }
    if let Some(ep) = &out.emotion_prob {
        let got: Vec<f32> = (0..b * u).flat_map(|t| got_p[t * 9 + 2..t * 9 + 9].to_vec()).collect();
        worst = worst.max(assert_close(&format!("{tag} emotion prob"), &real_rows32(&got, lens, u, 7), &real_rows(ep, lens, u, 7), HEADS_TOL, 0.0));
    }
    let got_loss = read::<f32>(ctx, &loss, 0, heads::LOSS_LEN).unwrap();
    let want_loss = [
        out.loss,
        out.loss_sentiment.unwrap_or(0.0) * count,
        out.loss_emotion.unwrap_or(0.0) * count,
        count,
    ];
    for (i, name) in ["L", "sum CE", "sum BCE", "count"].iter().enumerate() {
        let e = assert_close(&format!("{tag} loss {name}"), &got_loss[i..=i], &want_loss[i..=i], 0.0, HEADS_TOL);
        worst = worst.max(e / want_loss[i].abs().max(1e-30));
    }
    let got_dr = read::<f32>(ctx, &dr, 0, b * u * rw).unwrap();
    worst = worst.max(assert_close(&format!("{tag} dR"), &got_dr, &want_dr, HEADS_TOL * max_abs(&want_dr), 0.0) / max_abs(&want_dr));
    let got_g = read::<f32>(ctx, &grads, 0, layout.len).unwrap();
    for n in ["sentiment.weight", "sentiment.bias", "emotion.weight", "emotion.bias"] {
        if let Some(s) = layout.get(n) {
            let want = &want_grads[s.range()];
            let e = assert_close(&format!("{tag} d{n}"), &got_g[s.range()], want, HEADS_TOL * max_abs(want), 0.0);
            worst = worst.max(e / max_abs(want));
        }
    }
    // The rest of the gradient buffer is untouched.
    let heads_ranges: Vec<_> = layout.slices.iter().filter(|s| s.name.starts_with("sentiment") || s.name.starts_with("emotion")).map(|s| s.range()).collect();
    for (i, (&g, &w)) in got_g.iter().zip(&grads0).enumerate() {
        if !heads_ranges.iter().any(|r| r.contains(&i)) {
            assert_eq!(g, w as f32, "{tag}: gradient element {i} outside the heads changed");
        }
    }
    worst
}

/// Attention: M is a dot of length D = 100 (as MATMUL_TOL), softmax exp in f32, then
/// sums of U <= 98 weighted rows; the backward chains three such sums.
const ATTENTION_TOL: f64 = 2e-5;

#[test]
fn attention_matches_cpu() {
    let Some(ctx) = context() else { return };
    let mut worst = 0.0f64;
    for lens in shapes() {
        for (d, pair) in [(100, true), (100, false), (7, true)] {
            worst = worst.max(check_attention(ctx, &lens, d, pair));
        }
    }
    eprintln!("attention max |err| / max|want|: {worst:.2e}");
}

fn check_attention(ctx: &GpuContext, lens: &[usize], d: usize, pair: bool) -> f64 {
    use cimnet::gpu::attention::{attention_backward, attention_forward, AttentionParams, AttentionSaved};
    let b = lens.len();
    let u = *lens.iter().max().unwrap();
    let rw = 9 * d;
    let (r_xy, r_yx) = (2 * d, 5 * d);
    // Garbage at padded rows: no kernel may read them.
    let mut x = random_vec(b * u * d, 41);
    let mut y = if pair { random_vec(b * u * d, 42) } else { x.clone() };
    for (bi, &l) in lens.iter().enumerate() {
        for v in &mut x[(bi * u + l) * d..(bi + 1) * u * d] {
            *v = 1e3;
        }
        for v in &mut y[(bi * u + l) * d..(bi + 1) * u * d] {
            *v = -1e3;
        }
    }
    if !pair {
        y = x.clone();
    }
    let dr = random_vec(b * u * rw, 43);
    let r0 = random_vec(b * u * rw, 44);
    let dx0 = random_vec(b * u * d, 45);
    let dy0 = random_vec(b * u * d, 46);
    let slice = |m: &[f64], off: usize| -> Vec<f64> { (0..b * u).flat_map(|t| m[t * rw + off..t * rw + off + d].to_vec()).collect() };

    let (out_xy, cache_xy) = cpu::attention::attention_forward(&x, &y, lens, b, u, d);
    let mut want_r = r0.clone();
    let mut want_dx = dx0.clone();
    let mut want_dy = dy0.clone();
    let put = |r: &mut Vec<f64>, v: &[f64], off: usize| {
        for t in 0..b * u {
            r[t * rw + off..t * rw + off + d].copy_from_slice(&v[t * d..(t + 1) * d]);
        }
    };
    put(&mut want_r, &out_xy, r_xy);
    let mut caches = vec![cache_xy.clone()];
    if pair {
        let (out_yx, cache_yx) = cpu::attention::attention_forward(&y, &x, lens, b, u, d);
        put(&mut want_r, &out_yx, r_yx);
        cpu::attention::attention_backward(&mut want_dx, &mut want_dy, &slice(&dr, r_xy), &x, &y, &cache_xy, lens, b, u, d);
        cpu::attention::attention_backward(&mut want_dy, &mut want_dx, &slice(&dr, r_yx), &y, &x, &cache_yx, lens, b, u, d);
        caches.push(cache_yx);
    } else {
        let mut other = vec![0.0; b * u * d];
        cpu::attention::attention_backward(&mut want_dx, &mut other, &slice(&dr, r_xy), &x, &x, &cache_xy, lens, b, u, d);
        for (a, o) in want_dx.iter_mut().zip(&other) {
            *a += o;
        }
    }

    let dirs = if pair { 2 } else { 1 };
    let xb = upload(ctx, "X", &f32s(&x)).unwrap();
    let yb = upload(ctx, "Y", &f32s(&y)).unwrap();
    let len = upload(ctx, "len", &u32s(lens)).unwrap();
    let r = upload(ctx, "R", &f32s(&r0)).unwrap();
    let drb = upload(ctx, "dR", &f32s(&dr)).unwrap();
    let dxb = upload(ctx, "dX", &f32s(&dx0)).unwrap();
    let dyb = upload(ctx, "dY", &f32s(&dy0)).unwrap();
    let m = storage::<f32>(ctx, "M", b * u * u).unwrap();
    let n = storage::<f32>(ctx, "N", 2 * b * u * u).unwrap();
    let o = storage::<f32>(ctx, "O", 2 * b * u * d).unwrap();
    let dm = storage::<f32>(ctx, "dM", 2 * b * u * u).unwrap();
    let saved = AttentionSaved { m: &m, n: &n, o: &o };
    let p = AttentionParams::new(b, u, d, rw, r_xy, pair.then_some(r_yx));
    let ybind = if pair { &yb } else { &xb };
    let fwd = attention_forward(ctx, &r, &saved, &xb, ybind, &len, p).unwrap();
    let bwd = attention_backward(ctx, &dxb, pair.then_some(&dyb), &dm, &drb, &saved, &xb, ybind, &len, p).unwrap();
    assert_eq!(run(ctx, &[&fwd, &bwd]).unwrap(), 5);

    let tag = format!("attention pair={pair} D={d} lens {lens:?}");
    let mut worst = 0.0f64;
    let mut cmp = |name: &str, got: &[f32], want: &[f64]| {
        let e = assert_close(&format!("{tag} {name}"), got, want, ATTENTION_TOL * max_abs(want), 0.0);
        worst = worst.max(e / max_abs(want));
    };
    cmp("R", &read::<f32>(ctx, &r, 0, b * u * rw).unwrap(), &want_r);
    let got_n = read::<f32>(ctx, &n, 0, dirs * b * u * u).unwrap();
    let got_o = read::<f32>(ctx, &o, 0, dirs * b * u * d).unwrap();
    for (k, c) in caches.iter().enumerate() {
        cmp(&format!("N dir {k}"), &got_n[k * b * u * u..(k + 1) * b * u * u], &c.n);
        cmp(&format!("O dir {k}"), &got_o[k * b * u * d..(k + 1) * b * u * d], &c.o);
    }
    cmp("dX", &read::<f32>(ctx, &dxb, 0, b * u * d).unwrap(), &want_dx);
    if pair {
        cmp("dY", &read::<f32>(ctx, &dyb, 0, b * u * d).unwrap(), &want_dy);
    } else {
        assert_eq!(read::<f32>(ctx, &dyb, 0, b * u * d).unwrap(), f32s(&dy0), "{tag}: dY touched by self-attention");
    }
    worst
}

#[test]
fn asking_for_a_missing_adapter_is_an_error_with_a_hint() {
    if std::env::var("CIMNET_SKIP_GPU_TESTS").as_deref() == Ok("1") {
        return;
    }
    let opts = cimnet::gpu::GpuOptions { adapter: Some("no-such-adapter-xyz".into()) };
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
    use cimnet::gpu::attention::{attention_backward, attention_forward, AttentionParams, AttentionSaved};
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
    let p = linear::LinearParams::new(b, u, k, 3 * h, false, 0, 3 * h * k);
    time("linear_forward xp (K 300 -> 3H 600)", 2.0 * n as f64 * (k * 3 * h) as f64, &linear::linear_forward(ctx, &xp, &x, &flat, &len, p).unwrap());
    time("linear_backward dx (3H -> K)", 2.0 * n as f64 * (k * 3 * h) as f64, &linear::linear_backward(ctx, &x, &xp, &xp, &flat, &len, p).unwrap());
    time("linear_backward_weights dW_ih", 2.0 * real * (k * 3 * h) as f64, &linear::linear_backward_weights(ctx, &grads, &xp, &xp, &x, &len, p).unwrap());
    let p = linear::LinearParams::new(b, u, 2 * h, d, true, 0, 2 * h * d);
    time("linear_forward dense (2H 400 -> D 100)", 2.0 * n as f64 * (2 * h * d) as f64, &linear::linear_forward(ctx, &dense, &gin, &flat, &len, p).unwrap());
    time("dropout_forward (B, U, 2H)", 0.0, &dropout::dropout_forward(ctx, &xp, &gin, dropout::DropoutParams::new(n * 2 * h, 1, 0, 0.3)).unwrap());
    let m = storage::<f32>(ctx, "adam m", 1 << 20).unwrap();
    let v = storage::<f32>(ctx, "adam v", 1 << 20).unwrap();
    let pf = flat_copy(ctx, &flat);
    time("adam_step (1M parameters)", 0.0, &adam::adam_step(ctx, &pf, &grads, &m, &v, adam::AdamParams::new(1 << 20, 1, &adam::AdamConfig::default(), false)).unwrap());
    let r = buf("R", n * rw);
    let am = storage::<f32>(ctx, "M", n * u).unwrap();
    let an = storage::<f32>(ctx, "N", 2 * n * u).unwrap();
    let ao = storage::<f32>(ctx, "O", 2 * n * d).unwrap();
    let dm = storage::<f32>(ctx, "dM", 2 * n * u).unwrap();
    let y = buf("y", n * d);
    let dx = buf("dx", n * d);
    let dy = buf("dy", n * d);
    let saved = AttentionSaved { m: &am, n: &an, o: &ao };
    let ap = AttentionParams::new(b, u, d, rw, 0, Some(d));
    time("attention_forward pair (3 dispatches)", 0.0, &attention_forward(ctx, &r, &saved, &dense, &y, &len, ap).unwrap());
    time("attention_backward pair (2 dispatches)", 0.0, &attention_backward(ctx, &dx, Some(&dy), &dm, &r, &saved, &dense, &y, &len, ap).unwrap());
    let mut cfg = cimnet::config::ModelConfig::new("TAV".parse().unwrap(), "cim".parse().unwrap(), "mtl".parse().unwrap(), [300, 74, 35]);
    cfg.dense = d;
    let layout = cimnet::params::Layout::new(&cfg);
    let hp = heads::HeadsParams::new(&cfg, &layout, b, u);
    let wl = buf("params", layout.len);
    let gl = buf("grads", layout.len);
    let labels = buf("labels", n * 7);
    let probs = storage::<f32>(ctx, "probs", n * 9).unwrap();
    let dz = storage::<f32>(ctx, "dz", n * 9).unwrap();
    let rl = storage::<f32>(ctx, "row loss", n * 2).unwrap();
    let loss = storage::<f32>(ctx, "loss", 4).unwrap();
    let dr = storage::<f32>(ctx, "dR", n * rw).unwrap();
    time("heads_forward + loss", 0.0, &heads::heads_forward(ctx, &probs, &dz, &rl, &loss, &r, &wl, &labels, &len, hp).unwrap());
    time("heads_backward (dR + dW)", 0.0, &heads::heads_backward(ctx, &dr, [&ctx.dummy; 3], &gl, &dz, &r, &wl, &len, hp).unwrap());
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
