//! `cimnet check` rows for gru: the GPU kernels against src/cpu.

use super::*;
use crate::gpu::gru::{GruKernel, GruProblem};

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

/// A fused launch whose problems come from different batches of one B (models
/// of different seeds in one launch): branch i (in problem order, as in
/// `GruCase`) runs on `batches[branch_batch[i]]`, padded to that batch's
/// longest length q.u; the launch's U is the largest q.u. The batches' lengths
/// lie in one length buffer after 3 junk lengths, the last batch first, so
/// that every offset but none is 0 and none is in order.
#[derive(Debug, Clone)]
pub struct GruBatchCase {
    pub batches: Vec<Vec<usize>>,
    pub branch_batch: Vec<usize>,
    pub models: Vec<[usize; 3]>,
    pub h: usize,
    pub seed: u64,
}

/// The batch of every branch of a launch: its lengths, U and offset in the
/// length buffer, and the buffer's contents.
struct Batches {
    b: usize,
    u_max: usize,
    branches: Vec<BranchBatch>,
    lens: Vec<usize>,
}

struct BranchBatch {
    lens: Vec<usize>,
    u: usize,
    len_off: usize,
}

impl Batches {
    /// Every one of `branches` branches on `lens`, at offset 0 (one batch, as today).
    fn one(lens: &[usize], branches: usize) -> Batches {
        let u = padded_u(lens);
        let branch = || BranchBatch { lens: lens.to_vec(), u, len_off: 0 };
        Batches { b: lens.len(), u_max: u, branches: (0..branches).map(|_| branch()).collect(), lens: lens.to_vec() }
    }

    fn mixed(c: &GruBatchCase, branches: usize) -> Result<Batches, GpuError> {
        let bad = |why: String| GpuError::Validation(format!("check: GRU batch case: {why}"));
        let b = c.batches.first().map_or(0, Vec::len);
        if b == 0 || c.batches.iter().any(|l| l.len() != b || l.contains(&0)) {
            return Err(bad("every batch needs the same B >= 1 lengths >= 1".into()));
        }
        if c.branch_batch.len() != branches || c.branch_batch.iter().any(|&k| k >= c.batches.len()) {
            return Err(bad(format!("{} branches, batch list {:?}", branches, c.branch_batch)));
        }
        let u_max = c.branch_batch.iter().map(|&k| padded_u(&c.batches[k])).max().unwrap_or(0);
        let mut lens = vec![u_max; 3];
        let mut offsets = vec![0; c.batches.len()];
        for (k, l) in c.batches.iter().enumerate().rev() {
            offsets[k] = lens.len();
            lens.extend(l);
        }
        let branches = c
            .branch_batch
            .iter()
            .map(|&k| BranchBatch { lens: c.batches[k].clone(), u: padded_u(&c.batches[k]), len_off: offsets[k] })
            .collect();
        Ok(Batches { b, u_max, branches, lens })
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
fn gru_models(dims_of: &[[usize; 3]], h: usize) -> Result<(Vec<GruModel>, usize), GpuError> {
    let mut models = Vec::new();
    for dims in dims_of {
        let set = ModalitySet::ALL
            .into_iter()
            .find(|s| Modality::ALL.iter().all(|&m| s.contains(m) == (dims[m.index()] > 0)))
            .ok_or_else(|| GpuError::Validation(format!("check: GRU case with no modality (dims {dims:?})")))?;
        let mut cfg = ModelConfig::new(set, Attention::None, Tasks::Mtl, *dims);
        cfg.hidden = h;
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

/// The problem list of `models` (each problem's batch not yet set).
fn model_problems(models: &[GruModel]) -> Result<Vec<GruProblem>, GpuError> {
    let mut problems = Vec::new();
    for m in models {
        problems.extend(gpu::gru::gru_problems(&m.layout, &m.mods, m.base).map_err(gru_err)?);
    }
    Ok(problems)
}

/// The launch's shared params and problem list, each problem on its branch's batch.
fn gru_launch(models: &[GruModel], h: usize, batches: &Batches) -> Result<(GruParams, Vec<GruProblem>), GpuError> {
    let problems: Vec<GruProblem> = model_problems(models)?
        .into_iter()
        .enumerate()
        .map(|(p, q)| batches.branches.get(p / 2).map_or(q, |s| q.batch(s.u, s.len_off)))
        .collect();
    let params = GruParams::new(batches.b, batches.u_max, h, problems.len()).map_err(gru_err)?;
    Ok((params, problems))
}

fn branch_count(models: &[GruModel]) -> usize {
    models.iter().map(|m| m.mods.len()).sum()
}

/// The members a case can run on this device (`gru::candidates`: every one the tuner can pick).
pub fn gru_members(ctx: &GpuContext, c: &GruCase) -> Result<Vec<GruMember>, GpuError> {
    let (models, _) = gru_models(&c.models, c.h)?;
    let (params, problems) = gru_launch(&models, c.h, &Batches::one(&c.lens, branch_count(&models)))?;
    Ok(gpu::gru::candidates(&ctx.profile, &params, &problems))
}

/// The members a batch case can run on this device.
pub fn gru_batch_members(ctx: &GpuContext, c: &GruBatchCase) -> Result<Vec<GruMember>, GpuError> {
    let (models, _) = gru_models(&c.models, c.h)?;
    let (params, problems) = gru_launch(&models, c.h, &Batches::mixed(c, branch_count(&models))?)?;
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

/// A launch to check: its models in one weight arena, H, the seed of its
/// values, every branch's batch and how the rows name its shape.
struct Case {
    models: Vec<GruModel>,
    arena: usize,
    h: usize,
    seed: u64,
    batches: Batches,
    shape: String,
}

/// The GRU of every branch of `c` (both directions, every model, one launch)
/// against cpu::gru per problem: gru_forward (h, r, z, n, hn of every problem
/// and the bi-GRU output), gru_backward (gi, zero at padding, completed on the
/// CPU into dx, dW_ih and db_ih, which the reference computes directly) and
/// gru_backward_weights (dW_hh, db_hh accumulated onto non-zero gradients at
/// each problem's offsets; nothing else of the arena touched). Every GPU
/// output buffer starts as NaN, with NaN past its P blocks that must stay
/// so bit for bit; xp holds garbage at padding; the arena's gaps hold NaN
/// weights, which a problem reading at a wrong offset turns into NaN outputs.
/// The launch is built with room for 3 more problems than it runs. `member`
/// is the member asked for (its kernel runs as Scalar where the shapes do not
/// fit it; the rows name the kernel that ran).
pub fn check_gru(ctx: &GpuContext, c: &GruCase, member: GruMember) -> Result<Vec<CheckRow>, GpuError> {
    let (models, arena) = gru_models(&c.models, c.h)?;
    let batches = Batches::one(&c.lens, branch_count(&models));
    let case = Case { models, arena, h: c.h, seed: c.seed, batches, shape: lens_shape(&c.lens) };
    check_launch(ctx, &case, member, false)
}

/// `check_gru` on a launch whose problems come from different batches
/// (`GruBatchCase`): every problem against the CPU at its own (B, q.u) and
/// lengths, each block's rows past B * q.u untouched (NaN, as past the P
/// blocks), garbage in xp and dout there; and each branch bit for bit against
/// the same branch launched alone at U = q.u with its lengths at offset 0 (an
/// extra row).
pub fn check_gru_batches(ctx: &GpuContext, c: &GruBatchCase, member: GruMember) -> Result<Vec<CheckRow>, GpuError> {
    let (models, arena) = gru_models(&c.models, c.h)?;
    let batches = Batches::mixed(c, branch_count(&models))?;
    let us: Vec<usize> = batches.branches.iter().map(|s| s.u).collect();
    let offs: Vec<usize> = batches.branches.iter().map(|s| s.len_off).collect();
    let shape = format!("B={} U_max={} u={us:?} len_off={offs:?}", batches.b, batches.u_max);
    let case = Case { models, arena, h: c.h, seed: c.seed, batches, shape };
    check_launch(ctx, &case, member, true)
}

/// What one launch wrote, read back (each with TAIL sentinels after it).
struct Written {
    cache: Vec<f32>,
    out: Vec<f32>,
    gi: Vec<f32>,
    gh: Vec<f32>,
    grads: Vec<f32>,
}

/// Inputs of one launch, as uploaded.
struct Inputs<'a> {
    weights: &'a wgpu::Buffer,
    lens: &'a [usize],
    xp: &'a [f32],
    dout: &'a [f32],
    grads0: &'a [f64],
}

/// Runs the forward and backward of `problems` on fresh buffers (outputs NaN,
/// with TAIL NaN after each) and reads back what they wrote.
fn launch(
    ctx: &GpuContext,
    params: &GruParams,
    problems: &[GruProblem],
    member: GruMember,
    inputs: &Inputs,
) -> Result<(Written, GruKernel), GpuError> {
    let len = |bytes: u64| (bytes / 4) as usize;
    let nans = |label: &str, bytes: u64| with_tail(ctx, label, vec![SENTINEL; len(bytes)]);
    let lens_buf = upload(ctx, "lens", &u32s(inputs.lens))?;
    let xp_buf = upload(ctx, "xp", inputs.xp)?;
    let dout_buf = upload(ctx, "dout", inputs.dout)?;
    let cache_buf = nans("cache", params.cache_bytes())?;
    let out_buf = nans("out", params.out_bytes())?;
    let gi_buf = nans("gi", params.gates_bytes())?;
    let gh_buf = nans("gh", params.gates_bytes())?;
    let carry_buf = nans("carry", params.carry_bytes())?;
    let grads_buf = up(ctx, "grads", inputs.grads0)?;
    let capacity = problems.len() + 3;
    let (w, q) = (inputs.weights, problems);
    let fwd = gpu::gru::gru_forward(ctx, &out_buf, &cache_buf, &xp_buf, w, &lens_buf, params, q, capacity, member)
        .map_err(gru_err)?;
    let (gi, gh, carry) = (&gi_buf, &gh_buf, &carry_buf);
    let bwd = gpu::gru::gru_backward(
        ctx, gi, gh, carry, &grads_buf, &dout_buf, &cache_buf, w, &lens_buf, params, q, capacity, member,
    )
    .map_err(gru_err)?;
    run(ctx, &[&fwd, &bwd])?;
    let n_gates = len(params.gates_bytes()) + TAIL;
    let written = Written {
        cache: read_f32(ctx, &cache_buf, len(params.cache_bytes()) + TAIL)?,
        out: read_f32(ctx, &out_buf, len(params.out_bytes()) + TAIL)?,
        gi: read_f32(ctx, &gi_buf, n_gates)?,
        gh: read_f32(ctx, &gh_buf, n_gates)?,
        grads: read_f32(ctx, &grads_buf, inputs.grads0.len())?,
    };
    Ok((written, fwd.kernel()))
}

/// Block `k` of `v` (blocks of `block` elements): its first `used` elements and the rest.
fn block(v: &[f32], k: usize, block: usize, used: usize) -> (&[f32], &[f32]) {
    v[k * block..(k + 1) * block].split_at(used)
}

fn check_launch(ctx: &GpuContext, c: &Case, member: GruMember, alone: bool) -> Result<Vec<CheckRow>, GpuError> {
    let (models, arena, h) = (&c.models, c.arena, c.h);
    let (params, problems) = gru_launch(models, h, &c.batches)?;
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
    let (b, um) = (c.batches.b, c.batches.u_max);
    let g3 = 3 * h;
    // Elements of one problem's block of the gates, the cache and out (a branch's).
    let (gates_block, cache_block, out_block) = (b * um * g3, 5 * b * um * h, b * um * 2 * h);
    // Arena range of tensor `t` (dir "" or "_reverse") of model k's modality m.
    let slice = |k: usize, m: Modality, t: &str, dir: &str| {
        let name = format!("{}.gru.{t}{dir}", m.name());
        models[k].layout.get(&name).map(|s| s.range()).ok_or_else(|| GpuError::Validation(format!("check: no {name}")))
    };
    // The branches in problem order: (model, modality), each on its batch.
    let branches: Vec<(usize, Modality)> =
        models.iter().enumerate().flat_map(|(k, m)| m.mods.iter().map(move |&md| (k, md))).collect();
    let batch = |bi: usize| &c.batches.branches[bi];
    let fused = models.len() > 1;
    let label = |k: usize, m: Modality| if fused { format!("model {k} {}", m.name()) } else { m.name().to_string() };

    // CPU: forward, a random output gradient (also at padding, which must be
    // ignored), backward into zeroed gradients; each branch at its (B, q.u).
    let mut xs = Vec::new();
    let mut caches: Vec<cpu::gru::GruCache> = Vec::new();
    let mut out_want = Vec::new();
    let mut dout: Vec<f32> = Vec::new();
    let mut grads_want = vec![0.0; arena];
    let mut dx_want = Vec::new();
    const TENSORS: [&str; 4] = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"];
    for (bi, &(k, m)) in branches.iter().enumerate() {
        let (lens, u) = (&batch(bi).lens, batch(bi).u);
        let dim = models[k].cfg.dim(m);
        let s = cpu::gru::GruShape { b, u, k: dim, h };
        let mut x: Vec<f64> = (0..b * u * dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
        fill_padding(&mut x, lens, u, dim, GARBAGE);
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
        let fwd = cpu::gru::gru_forward(&x, &weights(0), lens, s, false);
        let rev = cpu::gru::gru_forward(&x, &weights(1), lens, s, true);
        out_want.push(cpu::gru::bigru_concat(&fwd.h, &rev.h, s));
        let dm: Vec<f64> = (0..b * u * 2 * h).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let (dfwd, drev) = cpu::gru::bigru_split(&dm, s);
        let mut dx = vec![0.0; b * u * dim];
        for (d, cache, dh) in [(0, &fwd, &dfwd), (1, &rev, &drev)] {
            let mut gw: Vec<Vec<f64>> = ranges[d].iter().map(|r| vec![0.0; r.len()]).collect();
            if let [w_ih, w_hh, b_ih, b_hh] = &mut gw[..] {
                let mut grads = cpu::gru::GruGrads { w_ih, w_hh, b_ih, b_hh };
                cpu::gru::gru_backward(&mut dx, &mut grads, dh, &x, &weights(d), cache, lens, s, d == 1);
            }
            let base = models[k].base;
            for (r, v) in ranges[d].iter().zip(&gw) {
                grads_want[base + r.start..base + r.end].copy_from_slice(v);
            }
        }
        // The branch's block of dout: garbage past its B * q.u rows.
        dout.extend(f32s(&dm));
        dout.resize((bi + 1) * out_block, GARBAGE as f32);
        xs.push(x);
        caches.push(fwd);
        caches.push(rev);
        dx_want.push(dx);
    }

    // GPU: xp of every problem, garbage at padding and past its B * q.u rows.
    let mut xp: Vec<f32> = Vec::new();
    for (p, cache) in caches.iter().enumerate() {
        let mut v = cache.xp.clone();
        fill_padding(&mut v, &batch(p / 2).lens, batch(p / 2).u, g3, GARBAGE);
        xp.extend(f32s(&v));
        xp.resize((p + 1) * gates_block, GARBAGE as f32);
    }
    let weights_buf = upload(ctx, "weights", &w_arena)?;
    // Gradients start non-zero to check that dW_hh / db_hh accumulate.
    let grads0: Vec<f64> = f64s(&f32s(&(0..arena).map(|_| rng.gen_range(-0.1..0.1)).collect::<Vec<f64>>()));
    let inputs = Inputs { weights: &weights_buf, lens: &c.batches.lens, xp: &xp, dout: &dout, grads0: &grads0 };
    let (got, kernel) = launch(ctx, &params, &problems, member, &inputs)?;

    // The launchers fall back to Scalar where the shapes do not fit the kernel.
    let ran = GruMember { kernel, ..member };
    let sched = ran.name();
    let names: Vec<String> = branches.iter().map(|&(k, m)| label(k, m)).collect();
    let widths: Vec<usize> = branches.iter().map(|&(k, m)| models[k].cfg.dim(m)).collect();
    let shape = format!("{} H={h} K={widths:?} ({}) P={}", c.shape, names.join("+"), problems.len());
    // Every block's rows past its B * q.u and the TAIL past the P blocks: untouched NaN.
    let untouched = |t: &str, v: &[f32], block_len: usize, used: &dyn Fn(usize) -> usize, blocks: usize| {
        let mut rest: Vec<f32> = (0..blocks).flat_map(|k| block(v, k, block_len, used(k)).1.to_vec()).collect();
        rest.extend(&v[blocks * block_len..]);
        compare_bits(
            &format!("{t} past each block's B x q.u rows and the P blocks"),
            &rest,
            &vec![SENTINEL; rest.len()],
        )
    };
    let n_problems = problems.len();
    let rows_of = |p: usize| b * batch(p / 2).u;

    // Forward: each saved tensor of each problem, and the bi-GRU output.
    let mut forward = Vec::new();
    for (p, cache) in caches.iter().enumerate() {
        let dir = ["fwd", "rev"][p % 2];
        let plane = rows_of(p) * h;
        let (real, _) = block(&got.cache, p, cache_block, 5 * plane);
        for (k, (t, want)) in [("h", &cache.h), ("r", &cache.r), ("z", &cache.z), ("n", &cache.n), ("hn", &cache.hn)]
            .into_iter()
            .enumerate()
        {
            let tensor = format!("{} {dir} {t}", names[p / 2]);
            forward.push(compare(&tensor, &real[k * plane..(k + 1) * plane], want, GRU_FWD_TOL));
        }
    }
    forward.push(untouched("cache", &got.cache, cache_block, &|p| 5 * rows_of(p) * h, n_problems));
    for (bi, want) in out_want.iter().enumerate() {
        let (real, _) = block(&got.out, bi, out_block, rows_of(2 * bi) * 2 * h);
        forward.push(compare(&format!("{} out", names[bi]), real, want, GRU_FWD_TOL));
    }
    forward.push(untouched("out", &got.out, out_block, &|bi| rows_of(2 * bi) * 2 * h, branches.len()));

    // Backward: gi is zero at padding; completed on the CPU (in f64) into the
    // input-side gradients.
    let mut backward = Vec::new();
    let mut gi_pad = Vec::new();
    for p in 0..n_problems {
        let (real, _) = block(&got.gi, p, gates_block, rows_of(p) * g3);
        gi_pad.extend(outside(real, &real_ranges(&batch(p / 2).lens, batch(p / 2).u, g3)));
    }
    backward.push(compare_exact("gi at padding", &gi_pad, &vec![0.0; gi_pad.len()]));
    backward.push(untouched("gi", &got.gi, gates_block, &|p| rows_of(p) * g3, n_problems));
    backward.push(untouched("gh", &got.gh, gates_block, &|p| rows_of(p) * g3, n_problems));
    for (bi, &(k, m)) in branches.iter().enumerate() {
        let dim = widths[bi];
        let mut dx = vec![0.0; rows_of(2 * bi) * dim];
        for d in 0..2 {
            let dir = ["", "_reverse"][d];
            let p = 2 * bi + d;
            let w_ih = &wv[k][slice(k, m, "weight_ih_l0", dir)?];
            let mut dw = vec![0.0; g3 * dim];
            let mut db = vec![0.0; g3];
            let (gi_p, _) = block(&got.gi, p, gates_block, rows_of(p) * g3);
            for (t, (x, gr)) in xs[bi].chunks(dim).zip(gi_p.chunks(g3)).enumerate() {
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
    let mut weights = Vec::new();
    let mut hh = Vec::new();
    for (k, m) in models.iter().enumerate() {
        for s in m.layout.slices.iter().filter(|s| s.name.contains(".gru.") && s.name.contains("_hh")) {
            let r = m.base + s.range().start..m.base + s.range().end;
            let got: Vec<f32> = r.clone().map(|i| (f64::from(got.grads[i]) - grads0[i]) as f32).collect();
            let tensor = if fused { format!("d model {k} {}", s.name) } else { format!("d {}", s.name) };
            weights.push(compare(&tensor, &got, &grads_want[r.clone()], GRU_BWD_TOL));
            hh.push(r);
        }
    }
    weights.push(compare_exact("grads outside dW_hh, db_hh", &outside(&got.grads, &hh), &f32s(&outside(&grads0, &hh))));

    let mut rows = vec![
        CheckRow::new(format!("gru_forward [{sched}]"), shape.clone(), forward),
        CheckRow::new(format!("gru_backward [{sched}] (gi -> dx, dW_ih, db_ih)"), shape.clone(), backward),
        CheckRow::new(format!("gru_backward_weights [{sched}] (dW_hh, db_hh)"), shape.clone(), weights),
    ];
    if !alone {
        return Ok(rows);
    }
    // Each branch alone: its 2 problems at U = q.u, lengths at offset 0, the
    // same inputs; every output equal bit for bit to the mixed launch's.
    let mut same = Vec::new();
    for (bi, &(k, m)) in branches.iter().enumerate() {
        let (lens, u) = (&batch(bi).lens, batch(bi).u);
        let pair = [problems[2 * bi].batch(u, 0), problems[2 * bi + 1].batch(u, 0)];
        let single = GruParams::new(b, u, h, 2).map_err(gru_err)?;
        let rows = b * u;
        let xp1: Vec<f32> = (0..2).flat_map(|d| block(&xp, 2 * bi + d, gates_block, rows * g3).0.to_vec()).collect();
        let dout1 = block(&dout, bi, out_block, rows * 2 * h).0;
        let inputs = Inputs { weights: &weights_buf, lens, xp: &xp1, dout: dout1, grads0: &grads0 };
        let (one, _) = launch(ctx, &single, &pair, member, &inputs)?;
        let name = &names[bi];
        for d in 0..2 {
            let p = 2 * bi + d;
            let dir = ["fwd", "rev"][d];
            for (t, v, w, width) in
                [("cache", &got.cache, &one.cache, 5 * h), ("gi", &got.gi, &one.gi, g3), ("gh", &got.gh, &one.gh, g3)]
            {
                let block_len = if t == "cache" { cache_block } else { gates_block };
                let n = rows * width;
                same.push(compare_bits(
                    &format!("{name} {dir} {t}"),
                    block(v, p, block_len, n).0,
                    &w[d * n..(d + 1) * n],
                ));
            }
        }
        let n = rows * 2 * h;
        same.push(compare_bits(&format!("{name} out"), block(&got.out, bi, out_block, n).0, &one.out[..n]));
        for dir in ["", "_reverse"] {
            for t in ["weight_hh_l0", "bias_hh_l0"] {
                let r = slice(k, m, t, dir)?;
                let r = models[k].base + r.start..models[k].base + r.end;
                same.push(compare_bits(&format!("d {name}.gru.{t}{dir}"), &got.grads[r.clone()], &one.grads[r]));
            }
        }
    }
    rows.push(CheckRow::new(format!("gru [{sched}] each branch = alone at U = q.u"), shape, same));
    Ok(rows)
}
