//! `cimnet check` rows for gru: the GPU kernels against src/cpu.

use super::*;
use crate::gpu::gru::GruProblem;

// ---- gru.wgsl ----

/// A bi-GRU launch over the GRUs of one or more models at once (a fused
/// launch, as a group's engine runs it): every entry of `models` is one
/// model's input widths (T, A, V), its modalities those with a non-zero width.
/// Each (model, modality) is a branch, problems 2 x branch (+ 1 reverse) in
/// model order; the models' parameter stores lie in one weight arena, in
/// REVERSE order and with gaps of different sizes between them, so problem
/// offsets are neither contiguous nor increasing.
#[derive(Debug, Clone)]
pub struct GruCase {
    pub lens: Vec<usize>,
    pub models: Vec<[usize; 3]>,
    pub h: usize,
    pub seed: u64,
}

impl GruCase {
    /// A launch of one model's GRUs (today's single-model engine site).
    pub fn single(lens: Vec<usize>, dims: [usize; 3], h: usize, seed: u64) -> GruCase {
        GruCase { lens, models: vec![dims], h, seed }
    }
}

/// Sentinel elements after every output tensor's P blocks: no problem may write there.
const TAIL: usize = 37;

/// One model of a case: its configuration (Attention::None, the model's
/// modalities and H), modalities in launch order, and its block's start in the arena.
struct GruModel {
    cfg: ModelConfig,
    mods: Vec<Modality>,
    layout: Layout,
    base: usize,
}

/// The case's models and the arena's length: model k at `base`, the last model
/// first, a gap of 4 (k + 1) + 8 elements before each (4-aligned, so that Wide
/// still fits; every gap a different size).
fn gru_models(c: &GruCase) -> Result<(Vec<GruModel>, usize), GpuError> {
    let mut models = Vec::new();
    for dims in &c.models {
        let set = ModalitySet::ALL
            .into_iter()
            .find(|s| Modality::ALL.iter().all(|&m| s.contains(m) == (dims[m.index()] > 0)))
            .ok_or_else(|| GpuError::Validation(format!("check: GRU case with no modality (dims {dims:?})")))?;
        let mut cfg = ModelConfig::new(set, Attention::None, Tasks::Mtl, *dims);
        cfg.hidden = c.h;
        let mods = cfg.modalities.modalities();
        let layout = Layout::new(&cfg);
        models.push(GruModel { cfg, mods, layout, base: 0 });
    }
    let mut end = 0;
    for (k, m) in models.iter_mut().enumerate().rev() {
        m.base = end + 4 * (k + 1) + 8;
        end = m.base + m.layout.len;
    }
    Ok((models, end + 5))
}

/// The launch's shared params and problem list.
fn gru_launch(c: &GruCase, models: &[GruModel]) -> Result<(GruParams, Vec<GruProblem>), GpuError> {
    let mut problems = Vec::new();
    for m in models {
        problems.extend(gpu::gru::gru_problems(&m.layout, &m.mods, m.base).map_err(gru_err)?);
    }
    let params = GruParams::new(c.lens.len(), padded_u(&c.lens), c.h, problems.len()).map_err(gru_err)?;
    Ok((params, problems))
}

/// The members a case can run on this device (`gru::candidates`: every one the tuner can pick).
pub fn gru_members(ctx: &GpuContext, c: &GruCase) -> Result<Vec<GruMember>, GpuError> {
    let (models, _) = gru_models(c)?;
    let (params, problems) = gru_launch(c, &models)?;
    Ok(gpu::gru::candidates(&ctx.profile, &params, &problems))
}

fn gru_err(e: GruError) -> GpuError {
    match e {
        GruError::Gpu(g) => g,
        other => GpuError::Validation(format!("check: {other}")),
    }
}

/// A buffer of `v` followed by TAIL sentinels.
fn with_tail(ctx: &GpuContext, label: &str, mut v: Vec<f32>) -> Result<wgpu::Buffer, GpuError> {
    v.extend([SENTINEL; TAIL]);
    upload(ctx, label, &v)
}

/// The GRU of every branch of `c` (both directions, every model, one launch)
/// against cpu::gru per problem: gru_forward (h, r, z, n, hn of every problem
/// and the bi-GRU output), gru_backward (gi, zero at padding, completed on the
/// CPU into dx, dW_ih and db_ih, which the reference computes directly) and
/// gru_backward_weights (dW_hh, db_hh accumulated onto non-zero gradients at
/// each problem's offsets; nothing else of the arena touched). Every GPU
/// output buffer starts as NaN, with NaN past its P blocks that must stay
/// so bit for bit; the arena's gaps hold NaN weights, which a problem reading
/// at a wrong offset turns into NaN outputs. The launch is built with room for
/// 3 more problems than it runs. `member` is the member asked for (its kernel
/// runs as Scalar where the shapes do not fit it; the rows name the kernel
/// that ran).
pub fn check_gru(ctx: &GpuContext, c: &GruCase, member: GruMember) -> Result<Vec<CheckRow>, GpuError> {
    let (models, arena) = gru_models(c)?;
    let (params, problems) = gru_launch(c, &models)?;
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed + 1);
    let mut w_arena = vec![SENTINEL; arena];
    let mut wv = Vec::new();
    for (k, m) in models.iter().enumerate() {
        let mut store = ParamStore::init(&m.cfg, c.seed + k as u64);
        for s in store.layout.slices.clone() {
            if s.name.contains("bias") {
                for v in store.get_mut(&s.name) {
                    *v = rng.gen_range(-0.5..0.5);
                }
            }
        }
        w_arena[m.base..m.base + m.layout.len].copy_from_slice(&store.values);
        wv.push(store.to_f64());
    }
    let (b, u, h) = (c.lens.len(), padded_u(&c.lens), c.h);
    // Arena range of tensor `t` (dir "" or "_reverse") of model k's modality m.
    let slice = |k: usize, m: Modality, t: &str, dir: &str| {
        let name = format!("{}.gru.{t}{dir}", m.name());
        models[k].layout.get(&name).map(|s| s.range()).ok_or_else(|| GpuError::Validation(format!("check: no {name}")))
    };
    // The branches in problem order: (model, modality).
    let branches: Vec<(usize, Modality)> =
        models.iter().enumerate().flat_map(|(k, m)| m.mods.iter().map(move |&md| (k, md))).collect();
    let fused = models.len() > 1;
    let label = |k: usize, m: Modality| if fused { format!("model {k} {}", m.name()) } else { m.name().to_string() };

    // CPU: forward, a random output gradient (also at padding, which must be
    // ignored), backward into zeroed gradients.
    let mut xs = Vec::new();
    let mut caches: Vec<cpu::gru::GruCache> = Vec::new();
    let mut out_want = Vec::new();
    let mut dout = Vec::new();
    let mut grads_want = vec![0.0; arena];
    let mut dx_want = Vec::new();
    const TENSORS: [&str; 4] = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"];
    for &(k, m) in &branches {
        let dim = models[k].cfg.dim(m);
        let s = cpu::gru::GruShape { b, u, k: dim, h };
        let mut x: Vec<f64> = (0..b * u * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
        fill_padding(&mut x, &c.lens, u, dim, GARBAGE);
        let mut ranges = Vec::new();
        for dir in ["", "_reverse"] {
            let r: Vec<_> = TENSORS.iter().map(|t| slice(k, m, t, dir)).collect::<Result<_, _>>()?;
            ranges.push(r);
        }
        let wk = &wv[k];
        let weights = |d: usize| cpu::gru::GruWeights {
            w_ih: &wk[ranges[d][0].clone()],
            w_hh: &wk[ranges[d][1].clone()],
            b_ih: &wk[ranges[d][2].clone()],
            b_hh: &wk[ranges[d][3].clone()],
        };
        let fwd = cpu::gru::gru_forward(&x, &weights(0), &c.lens, s, false);
        let rev = cpu::gru::gru_forward(&x, &weights(1), &c.lens, s, true);
        out_want.extend(cpu::gru::bigru_concat(&fwd.h, &rev.h, s));
        let dm: Vec<f64> = (0..b * u * 2 * h).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let (dfwd, drev) = cpu::gru::bigru_split(&dm, s);
        let mut dx = vec![0.0; b * u * dim];
        for (d, cache, dh) in [(0, &fwd, &dfwd), (1, &rev, &drev)] {
            let mut gw: Vec<Vec<f64>> = ranges[d].iter().map(|r| vec![0.0; r.len()]).collect();
            if let [w_ih, w_hh, b_ih, b_hh] = &mut gw[..] {
                let mut grads = cpu::gru::GruGrads { w_ih, w_hh, b_ih, b_hh };
                cpu::gru::gru_backward(&mut dx, &mut grads, dh, &x, &weights(d), cache, &c.lens, s, d == 1);
            }
            let base = models[k].base;
            for (r, v) in ranges[d].iter().zip(&gw) {
                grads_want[base + r.start..base + r.end].copy_from_slice(v);
            }
        }
        xs.push(x);
        caches.push(fwd);
        caches.push(rev);
        dout.extend(dm);
        dx_want.push(dx);
    }

    // GPU.
    let len = |bytes: u64| (bytes / 4) as usize;
    let nans = |label: &str, bytes: u64| with_tail(ctx, label, vec![SENTINEL; len(bytes)]);
    let xp: Vec<f64> = caches.iter().flat_map(|c| c.xp.iter().copied()).collect();
    let lens_buf = upload(ctx, "lens", &u32s(&c.lens))?;
    let weights_buf = upload(ctx, "weights", &w_arena)?;
    let xp_buf = up(ctx, "xp", &xp)?;
    let cache_buf = nans("cache", params.cache_bytes())?;
    let out_buf = nans("out", params.out_bytes())?;
    let dout_buf = up(ctx, "dout", &dout)?;
    let gi_buf = nans("gi", params.gates_bytes())?;
    let gh_buf = nans("gh", params.gates_bytes())?;
    let carry_buf = nans("carry", params.carry_bytes())?;
    // Gradients start non-zero to check that dW_hh / db_hh accumulate.
    let grads0: Vec<f64> = f64s(&f32s(&(0..arena).map(|_| rng.gen_range(-0.1..0.1)).collect::<Vec<f64>>()));
    let grads_buf = up(ctx, "grads", &grads0)?;
    let capacity = problems.len() + 3;
    let (w, q) = (&weights_buf, &problems[..]);
    let fwd = gpu::gru::gru_forward(ctx, &out_buf, &cache_buf, &xp_buf, w, &lens_buf, &params, q, capacity, member)
        .map_err(gru_err)?;
    let (gi, gh, carry) = (&gi_buf, &gh_buf, &carry_buf);
    let bwd = gpu::gru::gru_backward(
        ctx, gi, gh, carry, &grads_buf, &dout_buf, &cache_buf, w, &lens_buf, &params, q, capacity, member,
    )
    .map_err(gru_err)?;
    run(ctx, &[&fwd, &bwd])?;

    // The launchers fall back to Scalar where the shapes do not fit the kernel.
    let ran = GruMember { kernel: fwd.kernel(), ..member };
    let sched = ran.name();
    let names: Vec<String> = branches.iter().map(|&(k, m)| label(k, m)).collect();
    let widths: Vec<usize> = branches.iter().map(|&(k, m)| models[k].cfg.dim(m)).collect();
    let shape = format!("{} H={h} K={widths:?} ({}) P={}", lens_shape(&c.lens), names.join("+"), problems.len());
    let tail =
        |t: &str, got: &[f32], n: usize| compare_bits(&format!("{t} past P blocks"), &got[n..], &[SENTINEL; TAIL]);

    // Forward: each saved tensor of each problem, and the bi-GRU output.
    let cache_got = read_f32(ctx, &cache_buf, len(params.cache_bytes()) + TAIL)?;
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
    forward.push(tail("cache", &cache_got, len(params.cache_bytes())));
    let out_got = read_f32(ctx, &out_buf, len(params.out_bytes()) + TAIL)?;
    forward.push(compare("out", &out_got[..len(params.out_bytes())], &out_want, GRU_FWD_TOL));
    forward.push(tail("out", &out_got, len(params.out_bytes())));

    // Backward: gi is zero at padding; completed on the CPU (in f64) into the
    // input-side gradients.
    let n_gates = len(params.gates_bytes());
    let gi = read_f32(ctx, &gi_buf, n_gates + TAIL)?;
    let gh = read_f32(ctx, &gh_buf, n_gates + TAIL)?;
    let g3 = 3 * h;
    let mut backward = Vec::new();
    let mut gi_pad = Vec::new();
    for p in 0..problems.len() {
        gi_pad.extend(outside(&gi[p * b * u * g3..(p + 1) * b * u * g3], &real_ranges(&c.lens, u, g3)));
    }
    backward.push(compare_exact("gi at padding", &gi_pad, &vec![0.0; gi_pad.len()]));
    backward.push(tail("gi", &gi, n_gates));
    backward.push(tail("gh", &gh, n_gates));
    for (bi, &(k, m)) in branches.iter().enumerate() {
        let dim = widths[bi];
        let mut dx = vec![0.0; b * u * dim];
        for d in 0..2 {
            let dir = ["", "_reverse"][d];
            let p = 2 * bi + d;
            let w_ih = &wv[k][slice(k, m, "weight_ih_l0", dir)?];
            let mut dw = vec![0.0; g3 * dim];
            let mut db = vec![0.0; g3];
            for (t, x) in xs[bi].chunks(dim).enumerate() {
                let gr = &gi[(p * b * u + t) * g3..][..g3];
                for row in 0..g3 {
                    let gv = f64::from(gr[row]);
                    db[row] += gv;
                    for col in 0..dim {
                        dw[row * dim + col] += gv * x[col];
                        dx[t * dim + col] += gv * w_ih[row * dim + col];
                    }
                }
            }
            for (t, v) in [("weight_ih_l0", dw), ("bias_ih_l0", db)] {
                let r = slice(k, m, t, dir)?;
                let base = models[k].base;
                backward.push(compare(
                    &format!("d {}.gru.{t}{dir} (from gi)", names[bi]),
                    &f32s(&v),
                    &grads_want[base + r.start..base + r.end],
                    GRU_BWD_TOL,
                ));
            }
        }
        backward.push(compare(&format!("d {} x (from gi)", names[bi]), &f32s(&dx), &dx_want[bi], GRU_BWD_TOL));
    }

    // gru_backward_weights added dW_hh / db_hh to grads0 at every problem's
    // offsets and nothing else (the gaps between the models included).
    let grads_got = read_f32(ctx, &grads_buf, arena)?;
    let mut weights = Vec::new();
    let mut hh = Vec::new();
    for (k, m) in models.iter().enumerate() {
        for s in m.layout.slices.iter().filter(|s| s.name.contains(".gru.") && s.name.contains("_hh")) {
            let r = m.base + s.range().start..m.base + s.range().end;
            let got: Vec<f32> = r.clone().map(|i| (f64::from(grads_got[i]) - grads0[i]) as f32).collect();
            let tensor = if fused { format!("d model {k} {}", s.name) } else { format!("d {}", s.name) };
            weights.push(compare(&tensor, &got, &grads_want[r.clone()], GRU_BWD_TOL));
            hh.push(r);
        }
    }
    weights.push(compare_exact("grads outside dW_hh, db_hh", &outside(&grads_got, &hh), &f32s(&outside(&grads0, &hh))));

    Ok(vec![
        CheckRow::new(format!("gru_forward [{sched}]"), shape.clone(), forward),
        CheckRow::new(format!("gru_backward [{sched}] (gi -> dx, dW_ih, db_ih)"), shape.clone(), backward),
        CheckRow::new(format!("gru_backward_weights [{sched}] (dW_hh, db_hh)"), shape, weights),
    ])
}
