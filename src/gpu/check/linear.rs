//! `cimnet check` rows for linear: the GPU kernels against src/cpu.

use super::*;
use crate::gpu::linear::{LinearOp, LinearParams};

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

/// Where W and b sit in the flat parameter buffer of a linear case.
fn linear_params(c: &LinearCase) -> gpu::linear::LinearParams {
    let w_off = 64;
    let b_off = (w_off + c.o * c.k).div_ceil(64) * 64;
    gpu::linear::LinearParams::new(c.lens.len(), padded_u(&c.lens), c.k, c.o, c.relu, w_off, b_off).at(c.y_off)
}

/// The members a case can run on this device: every one the tuner may pick
/// (`gpu::linear::candidates`).
pub fn linear_kernels(ctx: &GpuContext, c: &LinearCase) -> Vec<LinearKernel> {
    gpu::linear::candidates(&ctx.profile, &linear_params(c))
}

/// The member each of the three launches runs when `asked` is asked for (rows name it).
fn linear_kernel_names(ctx: &GpuContext, asked: LinearKernel, p: &LinearParams) -> [&'static str; 3] {
    LinearOp::ALL.map(|op| asked.resolve(&ctx.profile, p, op).name())
}

/// linear_forward (y), linear_backward (dx), linear_backward_weights (dW, db
/// accumulated, the rest of the gradient buffer untouched, a rerun bitwise equal).
/// W and b sit inside a flat buffer at non-zero offsets; x and dy carry garbage at
/// padded rows.
pub fn check_linear(ctx: &GpuContext, c: &LinearCase) -> Result<Vec<CheckRow>, GpuError> {
    let (b, u, k, o) = (c.lens.len(), padded_u(&c.lens), c.k, c.o);
    let n = b * u;
    let p = linear_params(c);
    let (w_off, b_off) = (p.w_off[0] as usize, p.b_off[0] as usize);
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
    let fwd = gpu::linear::linear_forward_variant(ctx, &yb, &ctx.dummy, &xb, &flatb, &len, p, c.kernel)?;
    let bwd = gpu::linear::linear_backward_variant(ctx, &dx, &dyb, ybind, &flatb, &len, p, c.kernel)?;
    let bww = gpu::linear::linear_backward_weights_variant(ctx, &grads, &dyb, ybind, &xb, &len, p, c.kernel)?;
    run(ctx, &[&fwd, &bwd, &bww])?;
    let got_y = read_f32(ctx, &yb, ylen)?;
    let got_dx = read_f32(ctx, &dx, n * k)?;
    let got_g = read_f32(ctx, &grads, grads0.len())?;
    // The same weight gradient again from the same start: bitwise equal (no atomics).
    ctx.queue.write_buffer(&grads, 0, bytemuck::cast_slice(&f32s(&grads0)));
    run(ctx, &[&bww])?;
    let again = read_f32(ctx, &grads, grads0.len())?;

    let what = if c.relu { "dense+ReLU" } else { "input projection" };
    let [kf, kb, kw] = linear_kernel_names(ctx, c.kernel, &p);
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

// ---- linear.wgsl, fused (the dense site of a training step) ----

/// Two dense problems (K -> O, ReLU) in one launch (grid z), each with its own W, b
/// and x / y blocks, with the step's dropout masks and the forward's copy into R.
#[derive(Debug, Clone)]
pub struct FusedLinearCase {
    pub lens: Vec<usize>,
    pub k: usize,
    pub o: usize,
    /// The member asked for (falls back per launch as in [`LinearCase`]).
    pub kernel: LinearKernel,
    pub seed: u64,
}

/// The fused launches of the dense site: linear_forward_repr (per problem
/// y = dropout(relu(x W^T + b)), also written into its column block of R, every
/// other column of R untouched), linear_backward (g = dy * scale where y > 0, dx through the
/// GRU-site mask) and linear_backward_weights (dW, db accumulated), one dispatch
/// each for both problems. Reference: cpu::dense with cpu::dropout's masks, as
/// cpu::model chains them; R's blocks and the masks are exact.
pub fn check_linear_fused(ctx: &GpuContext, c: &FusedLinearCase) -> Result<Vec<CheckRow>, GpuError> {
    let (b, u, k, o) = (c.lens.len(), padded_u(&c.lens), c.k, c.o);
    let lens = &c.lens;
    let n = b * u;
    let (step_seed, p_drop) = (977u32.wrapping_add(c.seed as u32), 0.3);
    let (fwd_streams, bwd_streams) = ([1u32, 5, 0, 0], [0u32, 4, 0, 0]);
    let rw = 3 * o + 1;
    let r_off = [o + 1, 2 * o + 1];
    // Problem z: W at w_off[z], b at b_off[z]; x / dx at x_off[z], y / dy at y_off[z].
    let w_off = [64, 64 + (o * k + o).div_ceil(64) * 64];
    let b_off = [w_off[0] + o * k, w_off[1] + o * k];
    let x_off = [4, 8 + (n * k).div_ceil(4) * 4];
    let y_off = [0, (n * o).div_ceil(4) * 4];
    let (xlen, ylen) = (x_off[1] + n * k + 4, y_off[1] + n * o + 4);
    let mut flat = random_vec(b_off[1] + o + 64, c.seed);
    for v in &mut flat[..w_off[0]] {
        *v = GARBAGE; // must never be read
    }
    let mut x = random_vec(xlen, c.seed + 1);
    let mut dy = random_vec(ylen, c.seed + 2);
    for z in 0..2 {
        fill_padding(&mut x[x_off[z]..x_off[z] + n * k], lens, u, k, GARBAGE);
        fill_padding(&mut dy[y_off[z]..y_off[z] + n * o], lens, u, o, -GARBAGE);
    }
    let grads0 = f64s(&f32s(&random_vec(flat.len(), c.seed + 3)));
    let (x, flat, dy) = (f64s(&f32s(&x)), f64s(&f32s(&flat)), f64s(&f32s(&dy)));

    let xb = up(ctx, "x", &x)?;
    let fb = up(ctx, "params", &flat)?;
    let len = upload(ctx, "len", &u32s(lens))?;
    let dyb = up(ctx, "dy", &dy)?;
    let grads = up(ctx, "grads", &grads0)?;
    let yb = upload(ctx, "y", &vec![SENTINEL; ylen])?;
    let dxb = upload(ctx, "dx", &vec![SENTINEL; xlen])?;
    let rb = upload(ctx, "R", &vec![SENTINEL; n * rw])?;
    let mut p = gpu::linear::LinearParams::new(b, u, k, o, true, 0, 0);
    for z in 0..2 {
        p = p.problem(z, w_off[z], b_off[z], x_off[z], y_off[z]);
    }
    let pf = p.dropout(step_seed, p_drop, fwd_streams).repr(rw, [r_off[0], r_off[1], 0, 0]);
    let pb = p.dropout(step_seed, p_drop, bwd_streams);
    let fwd = gpu::linear::linear_forward_variant(ctx, &yb, &rb, &xb, &fb, &len, pf, c.kernel)?;
    let bwd = gpu::linear::linear_backward_variant(ctx, &dxb, &dyb, &yb, &fb, &len, pb, c.kernel)?;
    let bww = gpu::linear::linear_backward_weights_variant(ctx, &grads, &dyb, &yb, &xb, &len, pb, c.kernel)?;
    let dispatches = run(ctx, &[&fwd, &bwd, &bww])?;
    let got_y = read_f32(ctx, &yb, ylen)?;
    let got_dx = read_f32(ctx, &dxb, xlen)?;
    let got_g = read_f32(ctx, &grads, grads0.len())?;
    let got_r = read_f32(ctx, &rb, n * rw)?;

    let (mut forward, mut backward, mut weights) = (Vec::new(), Vec::new(), Vec::new());
    let (mut yr, mut xr, mut gr) = (Vec::new(), Vec::new(), Vec::new());
    for z in 0..2 {
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
        let (ys, xs) = (y_off[z]..y_off[z] + n * o, x_off[z]..x_off[z] + n * k);
        // Padded rows are written as zero: compare whole blocks.
        forward.push(compare(&format!("y[{z}]"), &got_y[ys.clone()], &want_y, MATMUL_TOL));
        forward.push(compare_exact(
            &format!("R block {z} = y[{z}]"),
            &columns(&got_r, rw, r_off[z], o),
            &got_y[ys.clone()],
        ));
        backward.push(compare(&format!("dx[{z}]"), &got_dx[xs.clone()], &want_dx, MATMUL_TOL));
        let (wr, br) = (w_off[z]..w_off[z] + o * k, b_off[z]..b_off[z] + o);
        weights.push(compare(&format!("dW[{z}]"), &got_g[wr.clone()], &want_dw, WGRAD_TOL));
        weights.push(compare(&format!("db[{z}]"), &got_g[br.clone()], &want_db, WGRAD_TOL));
        yr.push(ys);
        xr.push(xs);
        gr.extend([wr, br]);
    }
    let sentinels = |v: &[f32]| vec![SENTINEL; v.len()];
    let rest_y = outside(&got_y, &yr);
    forward.push(compare_bits("y buffer outside the blocks", &rest_y, &sentinels(&rest_y)));
    let rest_r = other_columns(&got_r, rw, &[(r_off[0], o), (r_off[1], o)]);
    forward.push(compare_bits("R outside the blocks", &rest_r, &sentinels(&rest_r)));
    let rest_dx = outside(&got_dx, &xr);
    backward.push(compare_bits("dx buffer outside the blocks", &rest_dx, &sentinels(&rest_dx)));
    weights.push(compare_exact("grads outside dW, db", &outside(&got_g, &gr), &f32s(&outside(&grads0, &gr))));
    let one_each = [dispatches as f32];
    weights.push(compare_exact("dispatches for the three launches", &one_each, &[3.0]));

    let shape = format!("{} K={k} O={o} 2 problems p={p_drop} R={rw}", lens_shape(lens));
    let [kf, _, _] = linear_kernel_names(ctx, c.kernel, &pf);
    let [_, kb, kw] = linear_kernel_names(ctx, c.kernel, &pb);
    Ok(vec![
        CheckRow::new(format!("linear_forward [{kf}] (fused dense: dropout, R blocks)"), shape.clone(), forward),
        CheckRow::new(format!("linear_backward [{kb}] (fused dense: dropout)"), shape.clone(), backward),
        CheckRow::new(format!("linear_backward_weights [{kw}] (fused dense)"), shape, weights),
    ])
}
