//! `cimnet check` rows for linear: the GPU kernels against src/cpu.

use super::*;
use crate::gpu::launch::Recordable;
use crate::gpu::linear::{LinearOp, LinearParams, LinearProblem};

// ---- linear.wgsl ----

/// A linear launch (input projection or dense + ReLU) on a batch of `lens`.
#[derive(Debug, Clone)]
pub struct LinearCase {
    pub lens: Vec<usize>,
    pub k: usize,
    pub o: usize,
    pub relu: bool,
    /// Element offset of y / dy in their buffers.
    pub y_off: usize,
    /// The variant asked for; each entry point falls back to Scalar where the
    /// shapes do not allow Vec4 (the rows name the kernel that ran).
    pub kernel: LinearKernel,
    pub seed: u64,
}

/// The shape of a linear case and its one problem: where W and b sit in the flat
/// parameter buffer, y at `y_off`.
fn linear_params(c: &LinearCase) -> (LinearParams, LinearProblem) {
    let w_off = 64;
    let b_off = (w_off + c.o * c.k).div_ceil(64) * 64;
    let u = padded_u(&c.lens);
    let p = LinearParams::new(c.lens.len(), u, c.k, c.o, c.relu);
    (p, LinearProblem::new(w_off, b_off, 0, c.y_off).batch(u, 0))
}

/// The members a case can run on this device: every one the tuner may pick
/// (`gpu::linear::candidates`).
pub fn linear_kernels(ctx: &GpuContext, c: &LinearCase) -> Vec<LinearKernel> {
    let (p, q) = linear_params(c);
    gpu::linear::candidates(&ctx.profile, &p, &[q])
}

/// The member each of the three launches runs when `asked` is asked for (rows name it).
fn linear_kernel_names(
    ctx: &GpuContext,
    asked: LinearKernel,
    p: &LinearParams,
    problems: &[LinearProblem],
) -> [&'static str; 3] {
    LinearOp::ALL.map(|op| asked.resolve(&ctx.profile, p, problems, op).name())
}

/// linear_forward (y), linear_backward (dx), linear_backward_weights (dW, db
/// accumulated, the rest of the gradient buffer untouched, a rerun bitwise equal).
/// W and b sit inside a flat buffer at non-zero offsets; x and dy carry garbage at
/// padded rows.
pub fn check_linear(ctx: &GpuContext, c: &LinearCase) -> Result<Vec<CheckRow>, GpuError> {
    let (b, u, k, o) = (c.lens.len(), padded_u(&c.lens), c.k, c.o);
    let n = b * u;
    let (p, q) = linear_params(c);
    let (w_off, b_off) = (q.w_off as usize, q.b_off as usize);
    let mut flat = random_vec(b_off + o + 64, c.seed);
    for v in &mut flat[..w_off] {
        *v = GARBAGE; // must never be read
    }
    let mut x = random_vec(n * k, c.seed + 1);
    fill_padding(&mut x, &c.lens, u, k, GARBAGE);
    let mut dy = random_vec(n * o, c.seed + 2);
    fill_padding(&mut dy, &c.lens, u, o, -GARBAGE);
    let grads0 = f64s(&f32s(&random_vec(flat.len(), c.seed + 3)));
    let (x, flat, dy) = (f64s(&f32s(&x)), f64s(&f32s(&flat)), f64s(&f32s(&dy)));

    // CPU: relu -> dense; none -> the GRU input projection, whose backward is the
    // dense backward with every unit "active" (y = 1).
    let w = &flat[w_off..w_off + o * k];
    let bias = &flat[b_off..b_off + o];
    let want_y = if c.relu {
        cpu::dense::dense_forward(&x, w, bias, &c.lens, b, u, k, o)
    } else {
        let s = cpu::gru::GruShape { b, u, k, h: o / 3 };
        let zeros = vec![0.0; o];
        let gw = cpu::gru::GruWeights { w_ih: w, w_hh: &[], b_ih: bias, b_hh: &zeros };
        cpu::gru::gru_input_projection(&x, &gw, &c.lens, s)
    };
    let mask_y = if c.relu { want_y.clone() } else { vec![1.0; want_y.len()] };
    let mut want_dx = vec![0.0; n * k];
    let mut want_dw = grads0[w_off..w_off + o * k].to_vec();
    let mut want_db = grads0[b_off..b_off + o].to_vec();
    cpu::dense::dense_backward(&mut want_dx, &mut want_dw, &mut want_db, &dy, &x, &mask_y, w, &c.lens, b, u, k, o);

    // y and dy are one block at y_off of larger buffers whose other elements are sentinels.
    let ylen = c.y_off + n * o + 16;
    let yblock = c.y_off..c.y_off + n * o;
    let mut dy_full = vec![f64::from(SENTINEL); ylen];
    dy_full[yblock.clone()].copy_from_slice(&dy);
    let xb = up(ctx, "x", &x)?;
    let flatb = up(ctx, "params", &flat)?;
    let len = upload(ctx, "len", &u32s(&c.lens))?;
    let dyb = up(ctx, "dy", &dy_full)?;
    let grads = up(ctx, "grads", &grads0)?;
    let yb = upload(ctx, "y", &vec![SENTINEL; ylen])?;
    let dx = upload(ctx, "dx", &vec![SENTINEL; n * k])?;
    let ybind = if c.relu { &yb } else { &dyb }; // y is read only for the ReLU mask
    let (q, kn) = (&[q], c.kernel);
    let fwd = gpu::linear::linear_forward_variant(ctx, &yb, &ctx.dummy, &xb, &flatb, &len, p, q, 1, kn)?;
    let bwd = gpu::linear::linear_backward_variant(ctx, &dx, &dyb, ybind, &flatb, &len, p, q, 1, kn)?;
    let bww = gpu::linear::linear_backward_weights_variant(ctx, &grads, &dyb, ybind, &xb, &len, p, q, 1, kn)?;
    run(ctx, &[&fwd, &bwd, &bww])?;
    let got_y = read_f32(ctx, &yb, ylen)?;
    let got_dx = read_f32(ctx, &dx, n * k)?;
    let got_g = read_f32(ctx, &grads, grads0.len())?;
    // The same weight gradient again from the same start: bitwise equal (no atomics).
    ctx.queue.write_buffer(&grads, 0, bytemuck::cast_slice(&f32s(&grads0)));
    run(ctx, &[&bww])?;
    let again = read_f32(ctx, &grads, grads0.len())?;

    let what = if c.relu { "dense+ReLU" } else { "input projection" };
    let [kf, kb, kw] = linear_kernel_names(ctx, c.kernel, &p, q);
    let shape = format!(
        "{} K={k} O={o}{}",
        lens_shape(&c.lens),
        if c.y_off > 0 { format!(" y_off={}", c.y_off) } else { String::new() }
    );
    let (wr, br) = (w_off..w_off + o * k, b_off..b_off + o);
    Ok(vec![
        CheckRow::new(
            format!("linear_forward [{kf}] ({what})"),
            shape.clone(),
            vec![
                // Padded rows are written as zero: compare the whole block.
                compare("y", &got_y[yblock.clone()], &want_y, MATMUL_TOL),
                compare_bits(
                    "y buffer outside the block",
                    &outside(&got_y, std::slice::from_ref(&yblock)),
                    &vec![SENTINEL; ylen - n * o],
                ),
            ],
        ),
        CheckRow::new(
            format!("linear_backward [{kb}] ({what})"),
            shape.clone(),
            vec![compare("dx", &got_dx, &want_dx, MATMUL_TOL)],
        ),
        CheckRow::new(
            format!("linear_backward_weights [{kw}] ({what})"),
            shape,
            vec![
                compare("dW", &got_g[wr.clone()], &want_dw, WGRAD_TOL),
                compare("db", &got_g[br.clone()], &want_db, WGRAD_TOL),
                compare_exact(
                    "grads outside dW, db",
                    &outside(&got_g, &[wr.clone(), br.clone()]),
                    &f32s(&outside(&grads0, &[wr, br])),
                ),
                compare_exact("dW, db of a rerun (determinism)", &again, &got_g),
            ],
        ),
    ])
}

// ---- linear.wgsl over a problem list (the sites of a group of models) ----

/// One launch per op over the problems of one width (K -> O), as a group of models
/// of different seeds gives them: each problem with its own W, b, x / y blocks (at
/// irregular, 4-aligned offsets, laid out in reverse problem order, each sized for
/// U_max rows), its own batch (U, lengths, dropout seed), dropout streams and R
/// layout (two R blocks of different row widths, or none).
#[derive(Debug, Clone)]
pub struct FusedLinearCase {
    /// The batches the problems come from (B lengths each, one B), packed into one
    /// length buffer in reverse order with garbage lengths between them.
    pub batches: Vec<Vec<usize>>,
    /// Per problem: (its batch, its u), u >= the batch's longest length; U_max is the largest u.
    pub problems: Vec<(usize, usize)>,
    pub k: usize,
    pub o: usize,
    /// true: the dense site (ReLU, dropout on y and dx); false: the input-projection
    /// site (no ReLU, no dropout; O must be a multiple of 3).
    pub dense: bool,
    /// The member asked for (falls back per launch as in [`LinearCase`]).
    pub kernel: LinearKernel,
    pub seed: u64,
}

impl FusedLinearCase {
    /// `problems` problems of one batch at u = its longest length (a group of one seed).
    pub fn same(lens: Vec<usize>, problems: usize, k: usize, o: usize, dense: bool, kernel: LinearKernel) -> Self {
        let u = padded_u(&lens);
        FusedLinearCase { batches: vec![lens], problems: vec![(0, u); problems], k, o, dense, kernel, seed: 0 }
    }

    /// Six problems of B videos from three batches (a group of several seeds), U_max
    /// = `u_max` (> 2): batch 0 with lengths 1..=u_max, batch 1 of single utterances,
    /// batch 2 of lengths up to u_max / 2; u = U_max, 1, u_max / 2, 3 and u_max / 2 + 2
    /// (padding rows past every length), U_max again.
    pub fn mixed(b: usize, u_max: usize, k: usize, o: usize, dense: bool, kernel: LinearKernel) -> Self {
        let mid = (u_max / 2).max(2);
        let lens = |top: usize, step: usize| -> Vec<usize> { (0..b).map(|i| 1 + (i * step + top - 1) % top).collect() };
        let batches = vec![lens(u_max, 7), vec![1; b], lens(mid, 3)];
        let problems = vec![(0, u_max), (1, 1), (2, mid), (1, 3), (2, mid + 2), (0, u_max)];
        FusedLinearCase { batches, problems, k, o, dense, kernel, seed: 0 }
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    fn u_max(&self) -> usize {
        self.problems.iter().map(|p| p.1).max().unwrap_or(1)
    }
}

/// Element offsets of `sizes.len()` blocks laid out from `start` in reverse order
/// (the last block first), with a gap of 4 (slot % 3 + 1) after each, 4-aligned.
fn reversed_blocks(start: usize, sizes: &[usize]) -> Vec<usize> {
    let mut off = vec![0; sizes.len()];
    let mut cur = start;
    for (slot, z) in (0..sizes.len()).rev().enumerate() {
        off[z] = cur;
        cur = (cur + sizes[z] + 4 * (slot % 3 + 1)).next_multiple_of(4);
    }
    off
}

/// Problem z's R block: (row width, element offset of its first column): problems
/// 0 and 3 in block A (2 O + 3 wide), problem 2 in block B (O + 5 wide), the others
/// none; `n` rows (B * U_max) each.
fn r_layout(z: usize, n: usize, o: usize) -> Option<(usize, usize)> {
    let (rw_a, rw_b) = (2 * o + 3, o + 5);
    let (ra, rb) = (5, 5 + n * rw_a + 7);
    match z {
        0 => Some((rw_a, ra + 1)),
        3 => Some((rw_a, ra + o + 2)),
        2 => Some((rw_b, rb + 4)),
        _ => None,
    }
}

/// Lengths garbage between the batches of the packed length buffer: a kernel
/// reading them (a wrong len_off) sees every row real.
const GARBAGE_LEN: u32 = 7777;

/// The batches packed in reverse order into one length buffer, two garbage lengths
/// before each: (the buffer, each batch's offset).
fn packed_lengths(batches: &[Vec<usize>]) -> (Vec<u32>, Vec<usize>) {
    let mut buf = Vec::new();
    let mut off = vec![0; batches.len()];
    for j in (0..batches.len()).rev() {
        buf.extend([GARBAGE_LEN; 2]);
        off[j] = buf.len();
        buf.extend(u32s(&batches[j]));
    }
    (buf, off)
}

/// The buffers one set of launches writes (read back after the run).
struct LinearOutputs {
    y: wgpu::Buffer,
    dx: wgpu::Buffer,
    grads: wgpu::Buffer,
    r: wgpu::Buffer,
}

/// linear_forward_variant (per problem y = act(x W^T + b), dropout(relu(.)) at the
/// dense site, also written into its R block), linear_backward_variant (dx; g = dy *
/// scale where y > 0 and the GRU-site mask at the dense site) and
/// linear_backward_weights_variant (dW, db accumulated), ONE dispatch each for all
/// problems, each problem of its own batch (u, lengths at len_off, seed). Reference
/// per problem: cpu::dense (cpu::gru's input projection without ReLU) at (B, u) with
/// cpu::dropout's masks, as cpu::model chains them; R blocks and masks exact; every
/// element outside the problems' B * u rows (the tail of each block up to U_max
/// rows, gaps, other buffers' regions) untouched, bit for bit. And each problem
/// launched alone (U = its u, its lengths at offset 0) gives the same bits.
pub fn check_linear_fused(ctx: &GpuContext, c: &FusedLinearCase) -> Result<Vec<CheckRow>, GpuError> {
    let (b, k, o, np) = (c.batches[0].len(), c.k, c.o, c.problems.len());
    let u_max = c.u_max();
    let n_max = b * u_max;
    let lens_of = |z: usize| &c.batches[c.problems[z].0];
    let u_of = |z: usize| c.problems[z].1;
    let p_drop = if c.dense { 0.3 } else { 0.0 };
    let step_seed = |z: usize| 977u32.wrapping_add(c.seed as u32).wrapping_add(1000 * z as u32);
    let fwd_stream = |z: usize| 3 * z as u32 + 1;
    let bwd_stream = |z: usize| 3 * z as u32 + 2;
    let w_off = reversed_blocks(64, &vec![o * k + o + 3; np]);
    let b_off: Vec<usize> = (0..np).map(|z| w_off[z] + o * k + z % 3).collect();
    // x / y blocks sized for U_max rows; problem z uses the first B * u_z of them.
    let x_off = reversed_blocks(4, &vec![n_max * k; np]);
    let y_off = reversed_blocks(0, &vec![n_max * o; np]);
    let (xlen, ylen) = (x_off[0] + n_max * k + 4, y_off[0] + n_max * o + 4);
    let rlen = 5 + n_max * (2 * o + 3) + 7 + n_max * (o + 5) + 3;
    // GARBAGE between blocks and at padded rows (read by some kernels, never used),
    // NaN past a problem's rows (never read).
    let fill = |len: usize, seed: u64, blocks: &[usize], w: usize, pad: f64| {
        let mut v = vec![GARBAGE; len];
        let r = random_vec(len, seed);
        for (z, &off) in blocks.iter().enumerate() {
            let (size, full) = (b * u_of(z) * w, n_max * w);
            v[off..off + size].copy_from_slice(&r[off..off + size]);
            fill_padding(&mut v[off..off + size], lens_of(z), u_of(z), w, pad);
            v[off + size..off + full].fill(f64::NAN);
        }
        v
    };
    let mut flat = vec![GARBAGE; b_off.iter().max().copied().unwrap_or(0) + o + 64];
    let rf = random_vec(flat.len(), c.seed);
    for z in 0..np {
        flat[w_off[z]..w_off[z] + o * k].copy_from_slice(&rf[w_off[z]..w_off[z] + o * k]);
        flat[b_off[z]..b_off[z] + o].copy_from_slice(&rf[b_off[z]..b_off[z] + o]);
    }
    let x = fill(xlen, c.seed + 1, &x_off, k, GARBAGE);
    let dy = fill(ylen, c.seed + 2, &y_off, o, -GARBAGE);
    let grads0 = f64s(&f32s(&random_vec(flat.len(), c.seed + 3)));
    let (x, flat, dy) = (f64s(&f32s(&x)), f64s(&f32s(&flat)), f64s(&f32s(&dy)));
    let (packed, len_off) = packed_lengths(&c.batches);

    let xb = up(ctx, "x", &x)?;
    let fb = up(ctx, "params", &flat)?;
    let dyb = up(ctx, "dy", &dy)?;
    let outputs = || -> Result<LinearOutputs, GpuError> {
        Ok(LinearOutputs {
            y: upload(ctx, "y", &vec![SENTINEL; ylen])?,
            dx: upload(ctx, "dx", &vec![SENTINEL; xlen])?,
            grads: up(ctx, "grads", &grads0)?,
            r: upload(ctx, "R", &vec![SENTINEL; rlen])?,
        })
    };
    let params = |u: usize| {
        let base = LinearParams::new(b, u, k, o, c.dense);
        if c.dense {
            base.dropout(p_drop)
        } else {
            base
        }
    };
    // Problem z's forward and backward entries, its lengths at `lo`.
    let entries = |z: usize, lo: usize| {
        let q = LinearProblem::new(w_off[z], b_off[z], x_off[z], y_off[z]).batch(u_of(z), lo).seed(step_seed(z));
        let f = q.stream(fwd_stream(z));
        (r_layout(z, n_max, o).map_or(f, |(rw, off)| f.repr(rw, off)), q.stream(bwd_stream(z)))
    };
    let kn = c.kernel;
    // The three launches over `qf` / `qb` with lengths `len`, into `out`.
    let launches =
        |out: &LinearOutputs, len: &wgpu::Buffer, p: LinearParams, qf: &[LinearProblem], qb: &[LinearProblem]| {
            let ybind = if c.dense { &out.y } else { &dyb }; // y is read only for the ReLU mask
            let m = qf.len();
            Ok::<_, GpuError>([
                gpu::linear::linear_forward_variant(ctx, &out.y, &out.r, &xb, &fb, len, p, qf, m, kn)?,
                gpu::linear::linear_backward_variant(ctx, &out.dx, &dyb, ybind, &fb, len, p, qb, m, kn)?,
                gpu::linear::linear_backward_weights_variant(ctx, &out.grads, &dyb, ybind, &xb, len, p, qb, m, kn)?,
            ])
        };
    let read_all = |out: &LinearOutputs| -> Result<[Vec<f32>; 4], GpuError> {
        Ok([
            read_f32(ctx, &out.y, ylen)?,
            read_f32(ctx, &out.dx, xlen)?,
            read_f32(ctx, &out.grads, grads0.len())?,
            read_f32(ctx, &out.r, rlen)?,
        ])
    };

    // The mixed launch: every problem at once.
    let fused = outputs()?;
    let len = upload(ctx, "len", &packed)?;
    let p = params(u_max);
    let (qf, qb): (Vec<LinearProblem>, Vec<LinearProblem>) =
        (0..np).map(|z| entries(z, len_off[c.problems[z].0])).unzip();
    let [lf, lb, lw] = launches(&fused, &len, p, &qf, &qb)?;
    let dispatches = run(ctx, &[&lf, &lb, &lw])?;
    let [got_y, got_dx, got_g, got_r] = read_all(&fused)?;
    // Each problem alone (U = its u, its lengths at 0), into one more set of outputs:
    // the problems' regions are disjoint, so the whole buffers must equal the mixed run's.
    let alone = outputs()?;
    let mut single = Vec::new();
    for z in 0..np {
        let lz = upload(ctx, "len", &u32s(lens_of(z)))?;
        let (f, g) = entries(z, 0);
        single.push(launches(&alone, &lz, params(u_of(z)), &[f], &[g])?);
    }
    // Forwards first: the backwards read y.
    let order: Vec<&dyn Recordable> =
        (0..3).flat_map(|op| single.iter().map(move |l| &l[op] as &dyn Recordable)).collect();
    run(ctx, &order)?;
    let [alone_y, alone_dx, alone_g, alone_r] = read_all(&alone)?;

    let (mut forward, mut backward, mut weights) = (Vec::new(), Vec::new(), Vec::new());
    let (mut yr, mut xr, mut gr) = (Vec::new(), Vec::new(), Vec::new());
    let mut r_written = vec![false; rlen];
    let ones = |m: usize| vec![1.0; m];
    for z in 0..np {
        let (lens, u) = (lens_of(z), u_of(z));
        let n = b * u;
        let w = &flat[w_off[z]..w_off[z] + o * k];
        let bias = &flat[b_off[z]..b_off[z] + o];
        let xz = &x[x_off[z]..x_off[z] + n * k];
        let dyz = &dy[y_off[z]..y_off[z] + n * o];
        let (mask_d, mask_g) = if c.dense {
            let d = cpu::dropout::dropout_mask(step_seed(z), fwd_stream(z), n * o, p_drop);
            (d, cpu::dropout::dropout_mask(step_seed(z), bwd_stream(z), n * k, p_drop))
        } else {
            (ones(n * o), ones(n * k))
        };
        // The pre-mask activation: relu(x W^T + b) at the dense site, x W^T + b otherwise.
        let act = if c.dense {
            cpu::dense::dense_forward(xz, w, bias, lens, b, u, k, o)
        } else {
            let zeros = vec![0.0; o];
            let gw = cpu::gru::GruWeights { w_ih: w, w_hh: &[], b_ih: bias, b_hh: &zeros };
            cpu::gru::gru_input_projection(xz, &gw, lens, cpu::gru::GruShape { b, u, k, h: o / 3 })
        };
        let want_y = cpu::dropout::dropout_forward(&act, &mask_d);
        let mut dact = vec![0.0; n * o];
        cpu::dropout::dropout_backward(&mut dact, dyz, &mask_d);
        let gate = if c.dense { act.clone() } else { ones(n * o) }; // dense_backward's ReLU mask
        let mut dxin = vec![0.0; n * k];
        let mut want_dw = grads0[w_off[z]..w_off[z] + o * k].to_vec();
        let mut want_db = grads0[b_off[z]..b_off[z] + o].to_vec();
        cpu::dense::dense_backward(&mut dxin, &mut want_dw, &mut want_db, &dact, xz, &gate, w, lens, b, u, k, o);
        let mut want_dx = vec![0.0; n * k];
        cpu::dropout::dropout_backward(&mut want_dx, &dxin, &mask_g);
        let (ys, xs) = (y_off[z]..y_off[z] + n * o, x_off[z]..x_off[z] + n * k);
        // Padded rows are written as zero: compare whole blocks.
        forward.push(compare(&format!("y[{z}] (u {u})"), &got_y[ys.clone()], &want_y, MATMUL_TOL));
        if let Some((rw, off)) = r_layout(z, n_max, o) {
            let idx: Vec<usize> = (0..n).flat_map(|t| (0..o).map(move |cc| off + t * rw + cc)).collect();
            let got: Vec<f32> = idx.iter().map(|&i| got_r[i]).collect();
            forward.push(compare_exact(
                &format!("R block of problem {z} (rw {rw}) = y[{z}]"),
                &got,
                &got_y[ys.clone()],
            ));
            idx.iter().for_each(|&i| r_written[i] = true);
        }
        backward.push(compare(&format!("dx[{z}] (u {u})"), &got_dx[xs.clone()], &want_dx, MATMUL_TOL));
        let (wr, br) = (w_off[z]..w_off[z] + o * k, b_off[z]..b_off[z] + o);
        weights.push(compare(&format!("dW[{z}] (u {u})"), &got_g[wr.clone()], &want_dw, WGRAD_TOL));
        weights.push(compare(&format!("db[{z}]"), &got_g[br.clone()], &want_db, WGRAD_TOL));
        yr.push(ys);
        xr.push(xs);
        gr.extend([wr, br]);
    }
    let sentinels = |v: &[f32]| vec![SENTINEL; v.len()];
    let rest_y = outside(&got_y, &yr);
    forward.push(compare_bits("y outside the problems' rows (block tails too)", &rest_y, &sentinels(&rest_y)));
    let rest_r: Vec<f32> = got_r.iter().zip(&r_written).filter(|(_, &w)| !w).map(|(&v, _)| v).collect();
    forward.push(compare_bits("R outside the problems' rows", &rest_r, &sentinels(&rest_r)));
    forward.push(compare_bits(
        "y, R = each problem alone at its u",
        &[got_y, got_r].concat(),
        &[alone_y, alone_r].concat(),
    ));
    let rest_dx = outside(&got_dx, &xr);
    backward.push(compare_bits("dx outside the problems' rows (block tails too)", &rest_dx, &sentinels(&rest_dx)));
    backward.push(compare_bits("dx = each problem alone at its u", &got_dx, &alone_dx));
    weights.push(compare_exact("grads outside dW, db", &outside(&got_g, &gr), &f32s(&outside(&grads0, &gr))));
    weights.push(compare_bits("dW, db = each problem alone at its u", &got_g, &alone_g));
    weights.push(compare_exact("dispatches for the three launches", &[dispatches as f32], &[3.0]));

    let us: Vec<String> = c.problems.iter().map(|(j, u)| format!("{u}@{j}")).collect();
    let shape = format!(
        "B={b} U_max={u_max} K={k} O={o} {np} problems u@batch {} p={p_drop} R widths {}/{}",
        us.join(","),
        2 * o + 3,
        o + 5
    );
    let [kf, _, _] = linear_kernel_names(ctx, kn, &p, &qf);
    let [_, kb, kw] = linear_kernel_names(ctx, kn, &p, &qb);
    let (what, fused) = if c.dense { ("fused dense", ": dropout") } else { ("fused projection", "") };
    Ok(vec![
        CheckRow::new(format!("linear_forward [{kf}] ({what}{fused}, R blocks)"), shape.clone(), forward),
        CheckRow::new(format!("linear_backward [{kb}] ({what}{fused})"), shape.clone(), backward),
        CheckRow::new(format!("linear_backward_weights [{kw}] ({what})"), shape, weights),
    ])
}
