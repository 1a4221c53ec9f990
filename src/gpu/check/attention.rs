//! `cimnet check` rows for attention: the GPU kernels against src/cpu.

use super::*;

// ---- attention.wgsl ----

/// The fused CIM unit [att(X, Y), att(Y, X)] (`pair`) or self-attention att(X, X),
/// writing slices of an R of width 9D, by the members `forward` and `backward`
/// (which may differ: the backward reads only the saved N and O).
#[derive(Debug, Clone)]
pub struct AttentionCase {
    pub lens: Vec<usize>,
    pub d: usize,
    pub pair: bool,
    pub forward: AttentionKernel,
    pub backward: AttentionKernel,
    pub seed: u64,
}

impl AttentionCase {
    /// Both directions by one member.
    pub fn new(lens: Vec<usize>, d: usize, pair: bool, kernel: AttentionKernel, seed: u64) -> AttentionCase {
        AttentionCase { lens, d, pair, forward: kernel, backward: kernel, seed }
    }

    fn params(&self) -> gpu::attention::AttentionParams {
        let (b, u, d) = (self.lens.len(), padded_u(&self.lens), self.d);
        gpu::attention::AttentionParams::new(b, u, d, 9 * d, 2 * d, self.pair.then_some(5 * d))
    }
}

/// The attention members this device runs as themselves at the case's shape.
pub fn attention_members(ctx: &GpuContext, c: &AttentionCase) -> Vec<AttentionKernel> {
    AttentionKernel::ALL.into_iter().filter(|k| k.runs(&ctx.profile, &c.params())).collect()
}

/// attention_forward (the R slices, the other columns of R untouched, the saved N
/// and O of each direction, every one of them pre-filled with NaN) and
/// attention_backward (dX, dY accumulated onto non-zero values, bit for bit again
/// on a rerun; self-attention leaves dY alone; the dM scratch starts NaN). X and Y
/// carry garbage at padded rows. Rows name the members that ran.
pub fn check_attention(ctx: &GpuContext, c: &AttentionCase) -> Result<Vec<CheckRow>, GpuError> {
    use gpu::attention::{attention_backward_variant, attention_forward_variant, AttentionSaved};
    let (lens, d, pair) = (&c.lens, c.d, c.pair);
    let (b, u) = (lens.len(), padded_u(lens));
    let rw = 9 * d;
    let (r_xy, r_yx) = (2 * d, 5 * d);
    let mut x = random_vec(b * u * d, c.seed);
    fill_padding(&mut x, lens, u, d, GARBAGE);
    let y = if pair {
        let mut y = random_vec(b * u * d, c.seed + 1);
        fill_padding(&mut y, lens, u, d, -GARBAGE);
        y
    } else {
        x.clone()
    };
    let (x, y) = (f64s(&f32s(&x)), f64s(&f32s(&y)));
    let dr = f64s(&f32s(&random_vec(b * u * rw, c.seed + 2)));
    let mut r0 = f32s(&random_vec(b * u * rw, c.seed + 3));
    for row in r0.chunks_mut(rw) {
        row[r_xy..r_xy + d].fill(SENTINEL);
        if pair {
            row[r_yx..r_yx + d].fill(SENTINEL);
        }
    }
    let dx0 = f64s(&f32s(&random_vec(b * u * d, c.seed + 4)));
    let dy0 = f64s(&f32s(&random_vec(b * u * d, c.seed + 5)));

    let (out_xy, cache_xy) = cpu::attention::attention_forward(&x, &y, lens, b, u, d);
    let mut want_dx = dx0.clone();
    let mut want_dy = dy0.clone();
    let mut outs = vec![(out_xy, r_xy)];
    let mut caches = vec![cache_xy.clone()];
    if pair {
        let (out_yx, cache_yx) = cpu::attention::attention_forward(&y, &x, lens, b, u, d);
        cpu::attention::attention_backward(
            &mut want_dx,
            &mut want_dy,
            &columns(&dr, rw, r_xy, d),
            &x,
            &y,
            &cache_xy,
            lens,
            b,
            u,
            d,
        );
        cpu::attention::attention_backward(
            &mut want_dy,
            &mut want_dx,
            &columns(&dr, rw, r_yx, d),
            &y,
            &x,
            &cache_yx,
            lens,
            b,
            u,
            d,
        );
        outs.push((out_yx, r_yx));
        caches.push(cache_yx);
    } else {
        let mut other = vec![0.0; b * u * d];
        cpu::attention::attention_backward(
            &mut want_dx,
            &mut other,
            &columns(&dr, rw, r_xy, d),
            &x,
            &x,
            &cache_xy,
            lens,
            b,
            u,
            d,
        );
        for (a, o) in want_dx.iter_mut().zip(&other) {
            *a += o;
        }
    }

    let dirs = outs.len();
    let xb = up(ctx, "X", &x)?;
    let yb = up(ctx, "Y", &y)?;
    let len = upload(ctx, "len", &u32s(lens))?;
    let r = upload(ctx, "R", &r0)?;
    let drb = up(ctx, "dR", &dr)?;
    let dxb = up(ctx, "dX", &dx0)?;
    let dyb = up(ctx, "dY", &dy0)?;
    let nans = |label: &str, n: usize| upload(ctx, label, &vec![SENTINEL; n]);
    let m = nans("M", b * u * u)?;
    let n = nans("N", 2 * b * u * u)?;
    let o = nans("O", 2 * b * u * d)?;
    let dm = nans("dM", 2 * b * u * u)?;
    let saved = AttentionSaved { m: &m, n: &n, o: &o };
    let p = c.params();
    let ybind = if pair { &yb } else { &xb };
    let fwd = attention_forward_variant(ctx, &r, &saved, &xb, ybind, &len, p, c.forward)?;
    let dyo = pair.then_some(&dyb);
    let bwd = attention_backward_variant(ctx, &dxb, dyo, &dm, &drb, &saved, &xb, ybind, &len, p, c.backward)?;
    run(ctx, &[&fwd, &bwd])?;
    let got_dx = read_f32(ctx, &dxb, b * u * d)?;
    let got_dy = read_f32(ctx, &dyb, b * u * d)?;
    // The backward again from the same start: the same bits (no atomics, fixed sum order).
    ctx.queue.write_buffer(&dxb, 0, bytemuck::cast_slice(&f32s(&dx0)));
    ctx.queue.write_buffer(&dyb, 0, bytemuck::cast_slice(&f32s(&dy0)));
    ctx.queue.write_buffer(&dm, 0, bytemuck::cast_slice(&vec![SENTINEL; 2 * b * u * u]));
    run(ctx, &[&bwd])?;
    let again = [read_f32(ctx, &dxb, b * u * d)?, read_f32(ctx, &dyb, b * u * d)?].concat();

    let got_r = read_f32(ctx, &r, b * u * rw)?;
    let got_n = read_f32(ctx, &n, dirs * b * u * u)?;
    let got_o = read_f32(ctx, &o, dirs * b * u * d)?;
    let mut forward = Vec::new();
    let dir_names = ["att(X,Y)", "att(Y,X)"];
    for (k, ((out, off), cache)) in outs.iter().zip(&caches).enumerate() {
        let name = if pair { dir_names[k] } else { "att(X,X)" };
        forward.push(compare(&format!("R {name}"), &columns(&got_r, rw, *off, d), out, ATTENTION_TOL));
        forward.push(compare(
            &format!("N {name}"),
            &got_n[k * b * u * u..(k + 1) * b * u * u],
            &cache.n,
            ATTENTION_TOL,
        ));
        forward.push(compare(
            &format!("O {name}"),
            &got_o[k * b * u * d..(k + 1) * b * u * d],
            &cache.o,
            ATTENTION_TOL,
        ));
    }
    let blocks: Vec<(usize, usize)> = outs.iter().map(|(_, off)| (*off, d)).collect();
    forward.push(compare_bits(
        "R outside the attention blocks",
        &other_columns(&got_r, rw, &blocks),
        &other_columns(&r0, rw, &blocks),
    ));
    let mut backward = vec![compare("dX", &got_dx, &want_dx, ATTENTION_TOL)];
    backward.push(if pair {
        compare("dY", &got_dy, &want_dy, ATTENTION_TOL)
    } else {
        compare_bits("dY (untouched by self-attention)", &got_dy, &f32s(&dy0))
    });
    backward.push(compare_bits("dX, dY of a rerun (determinism)", &again, &[got_dx, got_dy].concat()));
    let kind = if pair { "pair" } else { "self" };
    let shape = format!("{} D={d} R={rw}", lens_shape(lens));
    let (kf, kb) = (fwd.kernel.name(), bwd.kernel.name());
    // A backward after the other member's forward says so.
    let after = if kf == kb { String::new() } else { format!(" after {kf}") };
    Ok(vec![
        CheckRow::new(format!("attention_forward [{kf}] ({kind})"), shape.clone(), forward),
        CheckRow::new(format!("attention_backward [{kb}{after}] ({kind})"), shape, backward),
    ])
}
