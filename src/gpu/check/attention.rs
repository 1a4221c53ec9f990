//! `cimnet check` rows for attention: the GPU kernels against src/cpu.

use super::*;
use gpu::attention::{AttentionParams, AttentionProblem};

// ---- attention.wgsl ----

/// The fused CIM unit [att(X, Y), att(Y, X)] (`pair`) or self-attention att(X, X)
/// over several problems in one launch, as models of different seeds with that
/// pair would give: each its own batch (one of `batches`, all of one B, their
/// lengths packed into one length buffer in reverse order with gaps), so its own
/// u; its own X, Y blocks of one feat arena (and dX, dY of one dfeat arena, laid
/// out differently), its own R block of width 9D or 5D + 3 (alternating) with the
/// attention columns at different places, its own blocks of the saved M, N, O and
/// the dM scratch, every block sized for the launch's U_max; by the members
/// `forward` and `backward` (which may differ: the backward reads only the saved
/// N and O).
#[derive(Debug, Clone)]
pub struct AttentionCase {
    /// Each batch's lengths (one B); a batch's u is its longest video.
    pub batches: Vec<Vec<usize>>,
    /// Problem k's batch: an index into `batches`.
    pub problems: Vec<usize>,
    pub d: usize,
    pub pair: bool,
    pub forward: AttentionKernel,
    pub backward: AttentionKernel,
    pub seed: u64,
    /// Every block, R row width and R column a multiple of 4 (where D is), so
    /// the flat member runs its `_v4` entries; otherwise odd gaps and widths.
    pub aligned: bool,
}

impl AttentionCase {
    /// Both directions by one member, five problems on the batches 0, 1, 2, 1, 0
    /// (cycled over however many `batches` there are).
    pub fn new(batches: Vec<Vec<usize>>, d: usize, pair: bool, kernel: AttentionKernel, seed: u64) -> AttentionCase {
        let nb = batches.len().max(1);
        let problems = [0, 1, 2, 1, 0].iter().map(|&k| k % nb).collect();
        AttentionCase { batches, problems, d, pair, forward: kernel, backward: kernel, seed, aligned: false }
    }

    /// The same case laid out 4-aligned (see `aligned`).
    pub fn aligned(self) -> AttentionCase {
        AttentionCase { aligned: true, ..self }
    }

    /// Alignment of the blocks in every arena.
    fn align(&self) -> usize {
        if self.aligned {
            4
        } else {
            1
        }
    }

    fn b(&self) -> usize {
        self.batches.first().map_or(0, |l| l.len())
    }

    /// Problem k's u.
    fn u(&self, k: usize) -> usize {
        padded_u(&self.batches[self.problems[k]])
    }

    /// The launch's U: the largest u of the problems.
    fn u_max(&self) -> usize {
        (0..self.problems.len()).map(|k| self.u(k)).max().unwrap_or(0)
    }

    fn params(&self) -> AttentionParams {
        let p = AttentionParams::new(self.b(), self.u_max(), self.d, self.pair);
        AttentionParams { problems: u32::try_from(self.problems.len()).unwrap_or(u32::MAX), ..p }
    }

    /// Problem k's R row: (rw, r_xy, r_yx).
    fn row(&self, k: usize) -> (usize, usize, usize) {
        let d = self.d;
        if k.is_multiple_of(2) {
            (9 * d, 2 * d, 5 * d)
        } else if self.aligned {
            (5 * d + 4, d + 4, 3 * d + 4)
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
/// of different widths (`salt` varies them), each block at a multiple of
/// `align`, and the buffer's length.
fn arena(sizes: &[usize], salt: usize, align: usize) -> (Vec<usize>, usize) {
    let mut offs = vec![0; sizes.len()];
    let mut at = 0;
    for k in (0..sizes.len()).rev() {
        at = (at + 1 + (7 * k + salt) % 11).next_multiple_of(align);
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

/// One problem's CPU reference at its (B, u): the outputs per direction (with
/// their R columns), the caches, and dX, dY accumulated onto dx0, dy0.
struct Reference {
    outs: Vec<(Vec<f64>, usize)>,
    caches: Vec<cpu::attention::AttentionCache>,
    dx: Vec<f64>,
    dy: Vec<f64>,
}

#[allow(clippy::too_many_arguments)]
fn reference(c: &AttentionCase, k: usize, x: &[f64], y: &[f64], dr: &[f64], dx0: &[f64], dy0: &[f64]) -> Reference {
    let (lens, d) = (&c.batches[c.problems[k]], c.d);
    let (b, u) = (lens.len(), c.u(k));
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

/// The buffers one run writes: R, the saved M, N, O, the dM scratch and dfeat,
/// with their lengths.
struct Outputs {
    bufs: [wgpu::Buffer; 6],
    lens: [usize; 6],
}

impl Outputs {
    /// R from `r0`, dfeat from `dfeat0`, M, N, O, dM of `saved` lengths, NaN.
    fn new(ctx: &GpuContext, r0: &[f32], dfeat0: &[f32], saved: [usize; 4]) -> Result<Outputs, GpuError> {
        let nans = |label: &str, len: usize| upload(ctx, label, &vec![SENTINEL; len]);
        let [m, n, o, dm] = saved;
        Ok(Outputs {
            bufs: [
                upload(ctx, "R", r0)?,
                nans("M", m)?,
                nans("N", n)?,
                nans("O", o)?,
                nans("dM", dm)?,
                upload(ctx, "dfeat", dfeat0)?,
            ],
            lens: [r0.len(), m, n, o, dm, dfeat0.len()],
        })
    }

    fn saved(&self) -> gpu::attention::AttentionSaved<'_> {
        gpu::attention::AttentionSaved { m: &self.bufs[1], n: &self.bufs[2], o: &self.bufs[3] }
    }

    /// Every buffer read back: [R, M, N, O, dM, dfeat].
    fn read(&self, ctx: &GpuContext) -> Result<Vec<Vec<f32>>, GpuError> {
        self.bufs.iter().zip(self.lens).map(|(b, n)| read_f32(ctx, b, n)).collect()
    }
}

/// attention_forward over the case's problems in one launch (per problem its R
/// slices, its saved N and O of each direction, at its own u; every other element
/// of R and of the saved buffers, NaN-filled or random, untouched bit for bit: the
/// tail of each problem's block past its B * u rows too) and attention_backward (per
/// problem dX, dY accumulated onto non-zero values; the dfeat arena outside them
/// untouched, self-attention's dY block too; bit for bit again on a rerun; the dM
/// scratch starts NaN); and every problem launched alone at U = u with its lengths at
/// 0 writes the same bits into every buffer (cases of two problems or more). X and Y carry garbage at padded rows
/// and the gaps of the feat arena; the length buffer holds each batch's lengths in
/// reverse order with garbage between. Rows name the members that ran.
pub fn check_attention(ctx: &GpuContext, c: &AttentionCase) -> Result<Vec<CheckRow>, GpuError> {
    use gpu::attention::{attention_backward_variant, attention_forward_variant};
    let (d, pair, n) = (c.d, c.pair, c.problems.len());
    let (b, u_max) = (c.b(), c.u_max());
    let dirs = if pair { 2 } else { 1 };
    // Problem k's blocks as a launch at U = U_max sizes them; it uses the first B * u_k rows.
    let (bu_max, block_max) = (b * u_max, b * u_max * d);
    let us: Vec<usize> = (0..n).map(|k| c.u(k)).collect();

    // The lengths: batch j's B lengths at len_offs[j] (the last batch first), garbage between.
    let (len_offs, len_len) = arena(&vec![b; c.batches.len()], 5, 1);
    let mut len_all = vec![7777u32; len_len];
    for (j, lens) in c.batches.iter().enumerate() {
        len_all[len_offs[j]..len_offs[j] + b].copy_from_slice(&u32s(lens));
    }

    // The arenas: feat and dfeat hold X_k, Y_k per problem (laid out differently),
    // R problem k's (B, U_max, rw_k), the saved tensors one block per problem.
    let (feat_offs, feat_len) = arena(&vec![block_max; 2 * n], 3, c.align());
    let (dfeat_offs, dfeat_len) = arena(&vec![block_max; 2 * n], 8, c.align());
    let rws: Vec<usize> = (0..n).map(|k| c.row(k).0).collect();
    let (r_offs, r_len) = arena(&rws.iter().map(|rw| bu_max * rw).collect::<Vec<_>>(), 1, c.align());
    let (m_offs, m_len) = arena(&vec![bu_max * u_max; n], 2, c.align());
    let (n_offs, n_len) = arena(&vec![2 * bu_max * u_max; n], 4, c.align());
    let (o_offs, o_len) = arena(&vec![2 * block_max; n], 5, c.align());
    let (dm_offs, dm_len) = arena(&vec![2 * bu_max * u_max; n], 6, c.align());

    let mut feat = f32s(&random_vec(feat_len, c.seed + 10));
    feat.iter_mut().for_each(|v| *v *= GARBAGE as f32);
    let mut dfeat0 = vec![SENTINEL; dfeat_len];
    let mut r0 = f32s(&random_vec(r_len, c.seed + 3));
    let dr = f64s(&f32s(&random_vec(r_len, c.seed + 2)));
    let mut problems = Vec::with_capacity(n);
    let mut refs = Vec::with_capacity(n);
    let mut written_r = Vec::new();
    for k in 0..n {
        let (lens, u) = (&c.batches[c.problems[k]], us[k]);
        let (bu, block) = (b * u, b * u * d);
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
        let rf = reference(c, k, &x, &y, &dr[ro..ro + bu * rw], &dx0, &dy0);
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
            .saved(m_offs[k], n_offs[k], o_offs[k], dm_offs[k])
            .batch(u, len_offs[c.problems[k]]);
        problems.push(q);
        refs.push(rf);
    }

    let fb = upload(ctx, "feat", &feat)?;
    let len = upload(ctx, "len", &len_all)?;
    let drb = up(ctx, "dR", &dr)?;
    let saved_lens = [m_len, n_len, o_len, dm_len];
    let mixed = Outputs::new(ctx, &r0, &dfeat0, saved_lens)?;
    let [r, _, _, _, dm, dfb] = &mixed.bufs;
    let saved = mixed.saved();
    let p = c.params();
    let fwd = attention_forward_variant(ctx, r, &saved, &fb, &len, p, &problems, n, c.forward)?;
    let bwd = attention_backward_variant(ctx, dfb, dm, &drb, &saved, &fb, &len, p, &problems, n, c.backward)?;
    run(ctx, &[&fwd, &bwd])?;
    let got = mixed.read(ctx)?;
    // The backward again from the same start: the same bits (no atomics, fixed sum order).
    ctx.queue.write_buffer(dfb, 0, bytemuck::cast_slice(&dfeat0));
    ctx.queue.write_buffer(dm, 0, bytemuck::cast_slice(&vec![SENTINEL; dm_len]));
    run(ctx, &[&bwd])?;
    let again = read_f32(ctx, dfb, dfeat_len)?;

    // Each problem alone (U = its u, its lengths at 0), into buffers of their own
    // (a one-problem case is its own alone run: skipped, it is the suite's slowest).
    let alone = Outputs::new(ctx, &r0, &dfeat0, saved_lens)?;
    let [ar, _, _, _, adm, adf] = &alone.bufs;
    let asaved = alone.saved();
    let alone_runs = if n > 1 { &problems[..] } else { &[] };
    for (k, q) in alone_runs.iter().enumerate() {
        let lk = upload(ctx, "len alone", &u32s(&c.batches[c.problems[k]]))?;
        let pk = AttentionParams::new(b, us[k], d, pair);
        let qk = [q.batch(us[k], 0)];
        let f = attention_forward_variant(ctx, ar, &asaved, &fb, &lk, pk, &qk, 1, c.forward)?;
        let g = attention_backward_variant(ctx, adf, adm, &drb, &asaved, &fb, &lk, pk, &qk, 1, c.backward)?;
        run(ctx, &[&f, &g])?;
    }
    let got_alone = if n > 1 { Some(alone.read(ctx)?) } else { None };

    let [got_r, got_m, got_n, got_o, got_dm, got_df] = [0, 1, 2, 3, 4, 5].map(|i| &got[i]);
    let mut forward = Vec::new();
    let mut backward = Vec::new();
    let dir_names = ["att(X,Y)", "att(Y,X)"];
    let mut dfeat_blocks = Vec::new();
    for (k, rf) in refs.iter().enumerate() {
        let (rw, ro, u) = (rws[k], r_offs[k], us[k]);
        let (bu, block) = (b * u, b * u * d);
        let rk = &got_r[ro..ro + bu * rw];
        for (dir, ((out, col), cache)) in rf.outs.iter().zip(&rf.caches).enumerate() {
            let name = if pair { dir_names[dir] } else { "att(X,X)" };
            let nk = &got_n[n_offs[k] + dir * bu * u..n_offs[k] + (dir + 1) * bu * u];
            let ok = &got_o[o_offs[k] + dir * block..o_offs[k] + (dir + 1) * block];
            let of = format!("of problem {k} (u {u})");
            forward.push(compare(&format!("R {name} {of}"), &columns(rk, rw, *col, d), out, ATTENTION_TOL));
            forward.push(compare(&format!("N {name} {of}"), nk, &cache.n, ATTENTION_TOL));
            forward.push(compare(&format!("O {name} {of}"), ok, &cache.o, ATTENTION_TOL));
        }
        let (dxo, dyo) = (dfeat_offs[2 * k], dfeat_offs[2 * k + 1]);
        backward.push(compare(&format!("dX of problem {k} (u {u})"), &got_df[dxo..dxo + block], &rf.dx, ATTENTION_TOL));
        dfeat_blocks.push((dxo, block));
        if pair {
            let dy = &got_df[dyo..dyo + block];
            backward.push(compare(&format!("dY of problem {k} (u {u})"), dy, &rf.dy, ATTENTION_TOL));
            dfeat_blocks.push((dyo, block));
        }
    }
    // Every element no problem owns keeps its value (self-attention's dY blocks, and
    // each block's tail past the problem's B * u rows, too).
    forward.push(compare_bits(
        "R outside the problems' attention columns",
        &outside_blocks(got_r, &written_r),
        &outside_blocks(&r0, &written_r),
    ));
    let own = |offs: &[usize], per_u: &dyn Fn(usize) -> usize| {
        offs.iter().zip(&us).map(|(&o, &u)| (o, per_u(u))).collect::<Vec<_>>()
    };
    let nan_gaps = |name: &str, got: &[f32], blocks: &[(usize, usize)]| {
        let g = outside_blocks(got, blocks);
        compare_bits(name, &g, &vec![SENTINEL; g.len()])
    };
    let mats = |u: usize| dirs * b * u * u;
    forward.push(nan_gaps("M outside the problems' rows", got_m, &own(&m_offs, &|u| b * u * u)));
    forward.push(nan_gaps("N outside the problems' rows", got_n, &own(&n_offs, &mats)));
    forward.push(nan_gaps("O outside the problems' rows", got_o, &own(&o_offs, &|u| dirs * b * u * d)));
    backward.push(nan_gaps("dM outside the problems' rows", got_dm, &own(&dm_offs, &mats)));
    backward.push(compare_bits(
        "dfeat outside the problems' dX, dY rows",
        &outside_blocks(got_df, &dfeat_blocks),
        &outside_blocks(&dfeat0, &dfeat_blocks),
    ));
    backward.push(compare_bits("dfeat of a rerun (determinism)", &again, got_df));
    // The acceptance criterion of a mixed launch: each problem computes what it computes alone.
    if let Some(got_alone) = &got_alone {
        for (i, name) in [(0, "R"), (1, "M"), (2, "N"), (3, "O")] {
            forward.push(compare_bits(&format!("{name}: every problem alone at U = u"), &got_alone[i], &got[i]));
        }
        for (i, name) in [(4, "dM"), (5, "dfeat")] {
            backward.push(compare_bits(&format!("{name}: every problem alone at U = u"), &got_alone[i], &got[i]));
        }
    }
    let kind = if pair { "pair" } else { "self" };
    let mut uniq: Vec<usize> = us.clone();
    uniq.sort_unstable();
    uniq.dedup();
    let u_list: Vec<String> = uniq.iter().map(|u| u.to_string()).collect();
    let shape = format!("B={b} u={} D={d} R={}/{} problems={n}", u_list.join("/"), c.row(0).0, c.row(1).0);
    // The flat member's vec4 entries say so.
    let v4 = |l: &gpu::attention::AttentionLaunches| if l.vec4() { " v4" } else { "" };
    let (kf, kb) = (format!("{}{}", fwd.kernel.name(), v4(&fwd)), format!("{}{}", bwd.kernel.name(), v4(&bwd)));
    // A backward after the other member's forward says so.
    let after = if kf == kb { String::new() } else { format!(" after {kf}") };
    Ok(vec![
        CheckRow::new(format!("attention_forward [{kf}] ({kind})"), shape.clone(), forward),
        CheckRow::new(format!("attention_backward [{kb}{after}] ({kind})"), shape, backward),
    ])
}
