//! `cimnet check` rows for attention: the GPU kernels against src/cpu.

use super::*;
use gpu::attention::{AttentionParams, AttentionProblem};

// ---- attention.wgsl ----

/// The fused CIM unit [att(X, Y), att(Y, X)] (`pair`) or self-attention att(X, X)
/// over `problems` problems in one launch, as `problems` models with that pair
/// would give: each its own X, Y blocks of one feat arena (and dX, dY of one dfeat
/// arena, laid out differently), its own R block of width 9D or 5D + 3 (alternating)
/// with the attention columns at different places, its own blocks of the saved M,
/// N, O and the dM scratch; by the members `forward` and `backward` (which may
/// differ: the backward reads only the saved N and O).
#[derive(Debug, Clone)]
pub struct AttentionCase {
    pub lens: Vec<usize>,
    pub d: usize,
    pub pair: bool,
    pub problems: usize,
    pub forward: AttentionKernel,
    pub backward: AttentionKernel,
    pub seed: u64,
}

impl AttentionCase {
    /// Both directions by one member, five problems.
    pub fn new(lens: Vec<usize>, d: usize, pair: bool, kernel: AttentionKernel, seed: u64) -> AttentionCase {
        AttentionCase { lens, d, pair, problems: 5, forward: kernel, backward: kernel, seed }
    }

    fn params(&self) -> AttentionParams {
        let p = AttentionParams::new(self.lens.len(), padded_u(&self.lens), self.d, self.pair);
        AttentionParams { problems: u32::try_from(self.problems).unwrap_or(u32::MAX), ..p }
    }

    /// Problem k's R row: (rw, r_xy, r_yx).
    fn row(&self, k: usize) -> (usize, usize, usize) {
        let d = self.d;
        if k.is_multiple_of(2) {
            (9 * d, 2 * d, 5 * d)
        } else {
            (5 * d + 3, d + 1, 3 * d + 2)
        }
    }
}

/// The attention members this device runs as themselves at the case's shape.
pub fn attention_members(ctx: &GpuContext, c: &AttentionCase) -> Vec<AttentionKernel> {
    AttentionKernel::ALL.into_iter().filter(|k| k.runs(&ctx.profile, &c.params())).collect()
}

/// Offsets of blocks of `sizes` in one buffer, placed last block first with gaps
/// of different widths (`salt` varies them), and the buffer's length.
fn arena(sizes: &[usize], salt: usize) -> (Vec<usize>, usize) {
    let mut offs = vec![0; sizes.len()];
    let mut at = 0;
    for k in (0..sizes.len()).rev() {
        at += 1 + (7 * k + salt) % 11;
        offs[k] = at;
        at += sizes[k];
    }
    (offs, at + 5)
}

/// Elements of `v` outside the blocks [off, off + len).
fn outside_blocks(v: &[f32], blocks: &[(usize, usize)]) -> Vec<f32> {
    let ranges: Vec<std::ops::Range<usize>> = blocks.iter().map(|&(o, n)| o..o + n).collect();
    outside(v, &ranges)
}

/// One problem's CPU reference: the outputs per direction (with their R
/// columns), the caches, and dX, dY accumulated onto dx0, dy0.
struct Reference {
    outs: Vec<(Vec<f64>, usize)>,
    caches: Vec<cpu::attention::AttentionCache>,
    dx: Vec<f64>,
    dy: Vec<f64>,
}

fn reference(c: &AttentionCase, k: usize, x: &[f64], y: &[f64], dr: &[f64], dx0: &[f64], dy0: &[f64]) -> Reference {
    let (lens, d) = (&c.lens, c.d);
    let (b, u) = (lens.len(), padded_u(lens));
    let (rw, r_xy, r_yx) = c.row(k);
    let (out_xy, cache_xy) = cpu::attention::attention_forward(x, y, lens, b, u, d);
    let mut dx = dx0.to_vec();
    let mut dy = dy0.to_vec();
    let dr_xy = columns(dr, rw, r_xy, d);
    if c.pair {
        let (out_yx, cache_yx) = cpu::attention::attention_forward(y, x, lens, b, u, d);
        cpu::attention::attention_backward(&mut dx, &mut dy, &dr_xy, x, y, &cache_xy, lens, b, u, d);
        let dr_yx = columns(dr, rw, r_yx, d);
        cpu::attention::attention_backward(&mut dy, &mut dx, &dr_yx, y, x, &cache_yx, lens, b, u, d);
        Reference { outs: vec![(out_xy, r_xy), (out_yx, r_yx)], caches: vec![cache_xy, cache_yx], dx, dy }
    } else {
        let mut other = vec![0.0; b * u * d];
        cpu::attention::attention_backward(&mut dx, &mut other, &dr_xy, x, x, &cache_xy, lens, b, u, d);
        for (a, o) in dx.iter_mut().zip(&other) {
            *a += o;
        }
        Reference { outs: vec![(out_xy, r_xy)], caches: vec![cache_xy], dx, dy }
    }
}

/// attention_forward over the case's problems in one launch (per problem its R
/// slices, its saved N and O of each direction; every other element of R and of
/// the saved buffers, NaN-filled or random, untouched bit for bit) and
/// attention_backward (per problem dX, dY accumulated onto non-zero values; the
/// dfeat arena outside them untouched, self-attention's dY block too; bit for bit
/// again on a rerun; the dM scratch starts NaN). X and Y carry garbage at padded
/// rows and the gaps of the feat arena. Rows name the members that ran.
pub fn check_attention(ctx: &GpuContext, c: &AttentionCase) -> Result<Vec<CheckRow>, GpuError> {
    use gpu::attention::{attention_backward_variant, attention_forward_variant, AttentionSaved};
    let (lens, d, pair, n) = (&c.lens, c.d, c.pair, c.problems.max(1));
    let (b, u) = (lens.len(), padded_u(lens));
    let (bu, block) = (b * u, b * u * d);
    let dirs = if pair { 2 } else { 1 };

    // The arenas: feat and dfeat hold X_k, Y_k per problem (laid out differently),
    // R problem k's (B, U, rw_k), the saved tensors one block per problem.
    let (feat_offs, feat_len) = arena(&vec![block; 2 * n], 3);
    let (dfeat_offs, dfeat_len) = arena(&vec![block; 2 * n], 8);
    let rws: Vec<usize> = (0..n).map(|k| c.row(k).0).collect();
    let (r_offs, r_len) = arena(&rws.iter().map(|rw| bu * rw).collect::<Vec<_>>(), 1);
    let (m_offs, m_len) = arena(&vec![bu * u; n], 2);
    let (n_offs, n_len) = arena(&vec![2 * bu * u; n], 4);
    let (o_offs, o_len) = arena(&vec![2 * block; n], 5);
    let (dm_offs, dm_len) = arena(&vec![2 * bu * u; n], 6);

    let mut feat = f32s(&random_vec(feat_len, c.seed + 10));
    feat.iter_mut().for_each(|v| *v *= GARBAGE as f32);
    let mut dfeat0 = vec![SENTINEL; dfeat_len];
    let mut r0 = f32s(&random_vec(r_len, c.seed + 3));
    let dr = f64s(&f32s(&random_vec(r_len, c.seed + 2)));
    let mut problems = Vec::with_capacity(n);
    let mut refs = Vec::with_capacity(n);
    let mut written_r = Vec::new();
    for k in 0..n {
        let seed = c.seed + 100 * k as u64;
        let mut x = random_vec(block, seed);
        fill_padding(&mut x, lens, u, d, GARBAGE);
        let y = if pair {
            let mut y = random_vec(block, seed + 1);
            fill_padding(&mut y, lens, u, d, -GARBAGE);
            y
        } else {
            x.clone()
        };
        let (x, y) = (f64s(&f32s(&x)), f64s(&f32s(&y)));
        let (xo, yo) = (feat_offs[2 * k], if pair { feat_offs[2 * k + 1] } else { feat_offs[2 * k] });
        feat[xo..xo + block].copy_from_slice(&f32s(&x));
        feat[yo..yo + block].copy_from_slice(&f32s(&y));
        let (dxo, dyo) = (dfeat_offs[2 * k], dfeat_offs[2 * k + 1]);
        let dx0 = f64s(&f32s(&random_vec(block, seed + 4)));
        let dy0 = f64s(&f32s(&random_vec(block, seed + 5)));
        dfeat0[dxo..dxo + block].copy_from_slice(&f32s(&dx0));
        dfeat0[dyo..dyo + block].copy_from_slice(&f32s(&dy0));
        let (rw, r_xy, r_yx) = c.row(k);
        let ro = r_offs[k];
        let drk = &dr[ro..ro + bu * rw];
        let rf = reference(c, k, &x, &y, drk, &dx0, &dy0);
        for (_, col) in &rf.outs {
            for t in 0..bu {
                let at = ro + t * rw + col;
                r0[at..at + d].fill(SENTINEL);
                written_r.push((at, d));
            }
        }
        let q = AttentionProblem::new(rw, r_xy, pair.then_some(r_yx))
            .feat(xo, yo, dxo, if pair { dyo } else { dxo })
            .r(ro)
            .saved(m_offs[k], n_offs[k], o_offs[k], dm_offs[k]);
        problems.push(q);
        refs.push(rf);
    }

    let fb = upload(ctx, "feat", &feat)?;
    let len = upload(ctx, "len", &u32s(lens))?;
    let r = upload(ctx, "R", &r0)?;
    let drb = up(ctx, "dR", &dr)?;
    let dfb = upload(ctx, "dfeat", &dfeat0)?;
    let nans = |label: &str, len: usize| upload(ctx, label, &vec![SENTINEL; len]);
    let m = nans("M", m_len)?;
    let nb = nans("N", n_len)?;
    let o = nans("O", o_len)?;
    let dm = nans("dM", dm_len)?;
    let saved = AttentionSaved { m: &m, n: &nb, o: &o };
    let p = c.params();
    let fwd = attention_forward_variant(ctx, &r, &saved, &fb, &len, p, &problems, n, c.forward)?;
    let bwd = attention_backward_variant(ctx, &dfb, &dm, &drb, &saved, &fb, &len, p, &problems, n, c.backward)?;
    run(ctx, &[&fwd, &bwd])?;
    let got_df = read_f32(ctx, &dfb, dfeat_len)?;
    // The backward again from the same start: the same bits (no atomics, fixed sum order).
    ctx.queue.write_buffer(&dfb, 0, bytemuck::cast_slice(&dfeat0));
    ctx.queue.write_buffer(&dm, 0, bytemuck::cast_slice(&vec![SENTINEL; dm_len]));
    run(ctx, &[&bwd])?;
    let again = read_f32(ctx, &dfb, dfeat_len)?;

    let got_r = read_f32(ctx, &r, r_len)?;
    let got_n = read_f32(ctx, &nb, n_len)?;
    let got_o = read_f32(ctx, &o, o_len)?;
    let got_m = read_f32(ctx, &m, m_len)?;
    let got_dm = read_f32(ctx, &dm, dm_len)?;
    let mut forward = Vec::new();
    let mut backward = Vec::new();
    let dir_names = ["att(X,Y)", "att(Y,X)"];
    let mut dfeat_blocks = Vec::new();
    for (k, rf) in refs.iter().enumerate() {
        let (rw, ro) = (rws[k], r_offs[k]);
        let rk = &got_r[ro..ro + bu * rw];
        for (dir, ((out, col), cache)) in rf.outs.iter().zip(&rf.caches).enumerate() {
            let name = if pair { dir_names[dir] } else { "att(X,X)" };
            let nk = &got_n[n_offs[k] + dir * bu * u..n_offs[k] + (dir + 1) * bu * u];
            let ok = &got_o[o_offs[k] + dir * block..o_offs[k] + (dir + 1) * block];
            forward.push(compare(&format!("R {name} of problem {k}"), &columns(rk, rw, *col, d), out, ATTENTION_TOL));
            forward.push(compare(&format!("N {name} of problem {k}"), nk, &cache.n, ATTENTION_TOL));
            forward.push(compare(&format!("O {name} of problem {k}"), ok, &cache.o, ATTENTION_TOL));
        }
        let (dxo, dyo) = (dfeat_offs[2 * k], dfeat_offs[2 * k + 1]);
        backward.push(compare(&format!("dX of problem {k}"), &got_df[dxo..dxo + block], &rf.dx, ATTENTION_TOL));
        dfeat_blocks.push((dxo, block));
        if pair {
            backward.push(compare(&format!("dY of problem {k}"), &got_df[dyo..dyo + block], &rf.dy, ATTENTION_TOL));
            dfeat_blocks.push((dyo, block));
        }
    }
    // Every element no problem owns keeps its value (self-attention's dY blocks too).
    forward.push(compare_bits(
        "R outside the problems' attention columns",
        &outside_blocks(&got_r, &written_r),
        &outside_blocks(&r0, &written_r),
    ));
    let own = |offs: &[usize], len: usize| offs.iter().map(|&o| (o, len)).collect::<Vec<_>>();
    let nan_gaps = |name: &str, got: &[f32], blocks: &[(usize, usize)]| {
        let g = outside_blocks(got, blocks);
        compare_bits(name, &g, &vec![SENTINEL; g.len()])
    };
    forward.push(nan_gaps("M outside the problems' blocks", &got_m, &own(&m_offs, bu * u)));
    forward.push(nan_gaps("N outside the problems' blocks", &got_n, &own(&n_offs, dirs * bu * u)));
    forward.push(nan_gaps("O outside the problems' blocks", &got_o, &own(&o_offs, dirs * block)));
    backward.push(nan_gaps("dM outside the problems' blocks", &got_dm, &own(&dm_offs, dirs * bu * u)));
    backward.push(compare_bits(
        "dfeat outside the problems' dX, dY",
        &outside_blocks(&got_df, &dfeat_blocks),
        &outside_blocks(&dfeat0, &dfeat_blocks),
    ));
    backward.push(compare_bits("dfeat of a rerun (determinism)", &again, &got_df));
    let kind = if pair { "pair" } else { "self" };
    let shape = format!("{} D={d} R={}/{} problems={n}", lens_shape(lens), c.row(0).0, c.row(1).0);
    let (kf, kb) = (fwd.kernel.name(), bwd.kernel.name());
    // A backward after the other member's forward says so.
    let after = if kf == kb { String::new() } else { format!(" after {kf}") };
    Ok(vec![
        CheckRow::new(format!("attention_forward [{kf}] ({kind})"), shape.clone(), forward),
        CheckRow::new(format!("attention_backward [{kb}{after}] ({kind})"), shape, backward),
    ])
}
