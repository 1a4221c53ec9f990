//! `cimnet check` rows for gru: the GPU kernels against src/cpu.

use super::*;

// ---- gru.wgsl ----

/// A bi-GRU launch over the modalities with a non-zero width in `dims` (T, A, V).
#[derive(Debug, Clone)]
pub struct GruCase {
    pub lens: Vec<usize>,
    pub dims: [usize; 3],
    pub h: usize,
    pub seed: u64,
}

/// The model configuration (Attention::None, the case's modalities and H) and
/// its modalities in launch order.
fn gru_config(c: &GruCase) -> Result<(ModelConfig, Vec<Modality>), GpuError> {
    let set = ModalitySet::ALL
        .into_iter()
        .find(|s| Modality::ALL.iter().all(|&m| s.contains(m) == (c.dims[m.index()] > 0)))
        .ok_or_else(|| GpuError::Validation(format!("check: GRU case with no modality (dims {:?})", c.dims)))?;
    let mut cfg = ModelConfig::new(set, Attention::None, Tasks::Mtl, c.dims);
    cfg.hidden = c.h;
    let mods = cfg.modalities.modalities();
    Ok((cfg, mods))
}

/// The members a case can run on this device (`gru::candidates`: every one the tuner can pick).
pub fn gru_members(ctx: &GpuContext, c: &GruCase) -> Result<Vec<GruMember>, GpuError> {
    let (cfg, mods) = gru_config(c)?;
    let params = GruParams::new(&Layout::new(&cfg), &mods, c.lens.len(), padded_u(&c.lens), c.h).map_err(gru_err)?;
    Ok(gpu::gru::candidates(&ctx.profile, &params))
}

fn gru_err(e: GruError) -> GpuError {
    match e {
        GruError::Gpu(g) => g,
        other => GpuError::Validation(format!("check: {other}")),
    }
}

/// The GRU of every modality of `c` (both directions, one launch) against
/// cpu::gru: gru_forward (h, r, z, n, hn of every problem and the bi-GRU output),
/// gru_backward (gi, zero at padding, completed on the CPU into dx, dW_ih and
/// db_ih, which the reference computes directly) and gru_backward_weights
/// (dW_hh, db_hh accumulated onto non-zero gradients; nothing else touched).
/// Every GPU output buffer starts as NaN, so an element never written fails.
/// `member` is the member asked for (its kernel runs as Scalar where the shapes
/// do not fit it; the rows name the kernel that ran).
pub fn check_gru(ctx: &GpuContext, c: &GruCase, member: GruMember) -> Result<Vec<CheckRow>, GpuError> {
    let (cfg, mods) = gru_config(c)?;
    let mut store = ParamStore::init(&cfg, c.seed);
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed + 1);
    for s in store.layout.slices.clone() {
        if s.name.contains("bias") {
            for v in store.get_mut(&s.name) {
                *v = rng.gen_range(-0.5..0.5);
            }
        }
    }
    let layout: &Layout = &store.layout;
    let wv = store.to_f64();
    let (b, u, h) = (c.lens.len(), padded_u(&c.lens), c.h);
    let params = GruParams::new(layout, &mods, b, u, h).map_err(gru_err)?;
    let gru_slice =
        |m: Modality, t: &str, dir: &str| layout.get(&format!("{}.gru.{t}{dir}", m.name())).map(|s| s.range());
    let missing = |n: &str| GpuError::Validation(format!("check: layout has no {n}"));

    // CPU: forward, a random output gradient (also at padding, which must be
    // ignored), backward into zeroed gradients.
    let mut xs = Vec::new();
    let mut caches: Vec<cpu::gru::GruCache> = Vec::new();
    let mut out_want = Vec::new();
    let mut dout = Vec::new();
    let mut grads_want = vec![0.0; layout.len];
    let mut dx_want = Vec::new();
    const TENSORS: [&str; 4] = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"];
    for m in &mods {
        let k = cfg.dim(*m);
        let s = cpu::gru::GruShape { b, u, k, h };
        let mut x: Vec<f64> = (0..b * u * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
        fill_padding(&mut x, &c.lens, u, k, GARBAGE);
        let mut ranges = Vec::new();
        for dir in ["", "_reverse"] {
            let r: Vec<_> =
                TENSORS.iter().map(|t| gru_slice(*m, t, dir).ok_or_else(|| missing(t))).collect::<Result<_, _>>()?;
            ranges.push(r);
        }
        let weights = |d: usize| cpu::gru::GruWeights {
            w_ih: &wv[ranges[d][0].clone()],
            w_hh: &wv[ranges[d][1].clone()],
            b_ih: &wv[ranges[d][2].clone()],
            b_hh: &wv[ranges[d][3].clone()],
        };
        let fwd = cpu::gru::gru_forward(&x, &weights(0), &c.lens, s, false);
        let rev = cpu::gru::gru_forward(&x, &weights(1), &c.lens, s, true);
        out_want.extend(cpu::gru::bigru_concat(&fwd.h, &rev.h, s));
        let dm: Vec<f64> = (0..b * u * 2 * h).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let (dfwd, drev) = cpu::gru::bigru_split(&dm, s);
        let mut dx = vec![0.0; b * u * k];
        for (d, cache, dh) in [(0, &fwd, &dfwd), (1, &rev, &drev)] {
            let mut gw: Vec<Vec<f64>> = ranges[d].iter().map(|r| vec![0.0; r.len()]).collect();
            if let [w_ih, w_hh, b_ih, b_hh] = &mut gw[..] {
                let mut grads = cpu::gru::GruGrads { w_ih, w_hh, b_ih, b_hh };
                cpu::gru::gru_backward(&mut dx, &mut grads, dh, &x, &weights(d), cache, &c.lens, s, d == 1);
            }
            for (r, v) in ranges[d].iter().zip(&gw) {
                grads_want[r.clone()].copy_from_slice(v);
            }
        }
        xs.push(x);
        caches.push(fwd);
        caches.push(rev);
        dout.extend(dm);
        dx_want.push(dx);
    }

    // GPU.
    let nans = |label: &str, bytes: u64| upload(ctx, label, &vec![f32::NAN; (bytes / 4) as usize]);
    let xp: Vec<f64> = caches.iter().flat_map(|c| c.xp.iter().copied()).collect();
    let lens_buf = upload(ctx, "lens", &u32s(&c.lens))?;
    let weights_buf = upload(ctx, "weights", &store.values)?;
    let xp_buf = up(ctx, "xp", &xp)?;
    let cache_buf = nans("cache", params.cache_bytes())?;
    let out_buf = nans("out", params.out_bytes())?;
    let dout_buf = up(ctx, "dout", &dout)?;
    let gi_buf = nans("gi", params.gates_bytes())?;
    let gh_buf = nans("gh", params.gates_bytes())?;
    let carry_buf = nans("carry", params.carry_bytes())?;
    // Gradients start non-zero to check that dW_hh / db_hh accumulate.
    let grads0: Vec<f64> = f64s(&f32s(&(0..layout.len).map(|_| rng.gen_range(-0.1..0.1)).collect::<Vec<f64>>()));
    let grads_buf = up(ctx, "grads", &grads0)?;
    let fwd = gpu::gru::gru_forward(ctx, &out_buf, &cache_buf, &xp_buf, &weights_buf, &lens_buf, &params, member)
        .map_err(gru_err)?;
    let bwd = gpu::gru::gru_backward(
        ctx,
        &gi_buf,
        &gh_buf,
        &carry_buf,
        &grads_buf,
        &dout_buf,
        &cache_buf,
        &weights_buf,
        &lens_buf,
        &params,
        member,
    )
    .map_err(gru_err)?;
    run(ctx, &[&fwd, &bwd])?;

    // The launchers fall back to Scalar where the shapes do not fit the kernel.
    let ran = if member.kernel.fits(&params) { member } else { GruMember { kernel: GruKernel::Scalar, ..member } };
    let sched = ran.name();
    let names: Vec<&str> = mods.iter().map(|m| m.name()).collect();
    let shape = format!(
        "{} H={h} K={:?} ({})",
        lens_shape(&c.lens),
        mods.iter().map(|m| cfg.dim(*m)).collect::<Vec<_>>(),
        names.join("+")
    );

    // Forward: each saved tensor of each problem, and the bi-GRU output.
    let cache_got = read_f32(ctx, &cache_buf, (params.cache_bytes() / 4) as usize)?;
    let plane = b * u * h;
    let mut forward = Vec::new();
    for (p, cache) in caches.iter().enumerate() {
        let dir = ["fwd", "rev"][p % 2];
        for (k, (t, want)) in [("h", &cache.h), ("r", &cache.r), ("z", &cache.z), ("n", &cache.n), ("hn", &cache.hn)]
            .into_iter()
            .enumerate()
        {
            let off = (p * 5 + k) * plane;
            forward.push(compare(
                &format!("{} {dir} {t}", names[p / 2]),
                &cache_got[off..off + plane],
                want,
                GRU_FWD_TOL,
            ));
        }
    }
    forward.push(compare("out", &read_f32(ctx, &out_buf, (params.out_bytes() / 4) as usize)?, &out_want, GRU_FWD_TOL));

    // Backward: gi is zero at padding; completed on the CPU (in f64) into the
    // input-side gradients.
    let gi = read_f32(ctx, &gi_buf, (params.gates_bytes() / 4) as usize)?;
    let g3 = 3 * h;
    let mut backward = Vec::new();
    let mut gi_pad = Vec::new();
    for p in 0..2 * mods.len() {
        gi_pad.extend(outside(&gi[p * b * u * g3..(p + 1) * b * u * g3], &real_ranges(&c.lens, u, g3)));
    }
    backward.push(compare_exact("gi at padding", &gi_pad, &vec![0.0; gi_pad.len()]));
    for (mi, m) in mods.iter().enumerate() {
        let k = cfg.dim(*m);
        let mut dx = vec![0.0; b * u * k];
        for d in 0..2 {
            let dir = ["", "_reverse"][d];
            let p = 2 * mi + d;
            let w_ih = &wv[gru_slice(*m, "weight_ih_l0", dir).ok_or_else(|| missing("weight_ih_l0"))?];
            let mut dw = vec![0.0; g3 * k];
            let mut db = vec![0.0; g3];
            for (t, x) in xs[mi].chunks(k).enumerate() {
                let gr = &gi[(p * b * u + t) * g3..][..g3];
                for row in 0..g3 {
                    let gv = f64::from(gr[row]);
                    db[row] += gv;
                    for col in 0..k {
                        dw[row * k + col] += gv * x[col];
                        dx[t * k + col] += gv * w_ih[row * k + col];
                    }
                }
            }
            for (t, v) in [("weight_ih_l0", dw), ("bias_ih_l0", db)] {
                let r = gru_slice(*m, t, dir).ok_or_else(|| missing(t))?;
                backward.push(compare(
                    &format!("d {}.gru.{t}{dir} (from gi)", m.name()),
                    &f32s(&v),
                    &grads_want[r],
                    GRU_BWD_TOL,
                ));
            }
        }
        backward.push(compare(&format!("d {} x (from gi)", m.name()), &f32s(&dx), &dx_want[mi], GRU_BWD_TOL));
    }

    // gru_backward_weights added dW_hh / db_hh to grads0 and nothing else.
    let grads_got = read_f32(ctx, &grads_buf, layout.len)?;
    let mut weights = Vec::new();
    let mut hh = Vec::new();
    for s in layout.slices.iter().filter(|s| s.name.contains(".gru.") && s.name.contains("_hh")) {
        let got: Vec<f32> = s.range().map(|i| (f64::from(grads_got[i]) - grads0[i]) as f32).collect();
        weights.push(compare(&format!("d {}", s.name), &got, &grads_want[s.range()], GRU_BWD_TOL));
        hh.push(s.range());
    }
    weights.push(compare_exact("grads outside dW_hh, db_hh", &outside(&grads_got, &hh), &f32s(&outside(&grads0, &hh))));

    Ok(vec![
        CheckRow::new(format!("gru_forward [{sched}]"), shape.clone(), forward),
        CheckRow::new(format!("gru_backward [{sched}] (gi -> dx, dW_ih, db_ih)"), shape.clone(), backward),
        CheckRow::new(format!("gru_backward_weights [{sched}] (dW_hh, db_hh)"), shape, weights),
    ])
}
