//! `cimnet check` rows for heads: the GPU kernels against src/cpu.

use super::*;
use gpu::heads::{HeadsParams, HeadsProblem, CLASSES, LOSS_LEN};

// ---- heads.wgsl ----

/// Both heads (or one) and the masked loss for `models` (modality set, attention,
/// tasks) in one launch, as models of different seeds would give: each on its own
/// batch (one of `batches`, all of one B: its own u, lengths and labels, packed into
/// one length and one labels buffer in reverse order with garbage between), its own
/// R width, head parameters at its base in one parameter arena, output blocks
/// (sized for the launch's U_max), loss slot and plain blocks (where its
/// representation has them).
#[derive(Debug, Clone)]
pub struct HeadsCase {
    pub models: Vec<(ModalitySet, Attention, Tasks)>,
    /// Each batch's lengths (one B); a batch's u is its longest video.
    pub batches: Vec<Vec<usize>>,
    /// Model k's batch: an index into `batches`.
    pub batch_of: Vec<usize>,
    /// The dense width D of every model (R is a multiple of it).
    pub dense: usize,
    pub seed: u64,
}

impl HeadsCase {
    /// One model: TAV with CIM (R = 9D, three plain blocks) and `tasks`, on `lens`.
    pub fn single(tasks: Tasks, lens: Vec<usize>, seed: u64) -> HeadsCase {
        HeadsCase {
            models: vec![(ModalitySet::TAV, Attention::Cim, tasks)],
            batches: vec![lens],
            batch_of: vec![0],
            dense: 100,
            seed,
        }
    }

    /// Five models of mixed tasks (both, sentiment only, emotion only) and widths
    /// (R = 9D, 2D, 4D, 6D, 3D with D = 7: 63, 14, 28, 42, 21, none a multiple
    /// of heads_backward's 8 columns), plain blocks on some slots
    /// only, on the batches 0, 1, 2, 1, 0 (cycled over however many `batches`
    /// there are).
    pub fn mixed(batches: Vec<Vec<usize>>, seed: u64) -> HeadsCase {
        use Attention::*;
        let models = vec![
            (ModalitySet::TAV, Cim, Tasks::Mtl),
            (ModalitySet::TA, Attention::None, Tasks::Sentiment),
            (ModalitySet::AV, SelfAttn, Tasks::Emotion),
            (ModalitySet::TAV, SelfAttn, Tasks::Sentiment),
            (ModalitySet::TAV, Attention::None, Tasks::Emotion),
        ];
        let nb = batches.len().max(1);
        let batch_of = [0, 1, 2, 1, 0].iter().map(|&k| k % nb).collect();
        HeadsCase { models, batches, batch_of, dense: 7, seed }
    }
}

/// Labels for a batch: sentiment in [-3, 3], emotion intensities that are 0 60% of
/// the time (so the no-emotion label occurs); no features.
fn random_labels(lens: &[usize], seed: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (b, u) = (lens.len(), padded_u(lens));
    let sentiment = (0..b * u).map(|_| rng.gen_range(-3.0..3.0)).collect();
    let emotion =
        (0..b * u * EMOTIONS).map(|_| if rng.gen_bool(0.6) { 0.0 } else { rng.gen_range(0.1..3.0) }).collect();
    Batch { b, u, features: [None, None, None], dims: [0; 3], len: lens.to_vec(), sentiment, emotion: Some(emotion) }
}

/// A batch's labels (B, U, 7) = [score, six intensities], as gather builds them.
fn labels_of(batch: &Batch) -> Vec<f32> {
    let bu = batch.b * batch.u;
    let mut labels = vec![0.0f32; bu * gpu::gather::LABEL_WIDTH];
    let emo = batch.emotion.as_deref().unwrap_or(&[]);
    for t in 0..bu {
        labels[t * 7] = batch.sentiment[t] as f32;
        for k in 0..EMOTIONS {
            labels[t * 7 + 1 + k] = emo.get(t * EMOTIONS + k).copied().unwrap_or(0.0) as f32;
        }
    }
    labels
}

/// The buffers one run writes: probs, dz, row_loss, loss (NaN), dR (NaN), the
/// gradient arena (from grads0) and the dfeat arena (from dfeat0), with their lengths.
struct HeadsOutputs {
    bufs: [wgpu::Buffer; 7],
    lens: [usize; 7],
}

impl HeadsOutputs {
    fn new(ctx: &GpuContext, nan: [usize; 5], grads0: &[f64], dfeat0: &[f32]) -> Result<HeadsOutputs, GpuError> {
        // Whole vec4 quads (dz is read through a texture in the texture form,
        // which mirrors whole texels); only `len` of them are compared.
        let nans = |label: &str, len: usize| upload(ctx, label, &vec![SENTINEL; len.next_multiple_of(4)]);
        let [p, z, l, s, r] = nan;
        Ok(HeadsOutputs {
            bufs: [
                nans("probs", p)?,
                nans("dz", z)?,
                nans("row loss", l)?,
                nans("loss", s)?,
                nans("dR", r)?,
                up(ctx, "grads", grads0)?,
                upload(ctx, "dfeat", dfeat0)?,
            ],
            lens: [p, z, l, s, r, grads0.len(), dfeat0.len()],
        })
    }

    /// Every buffer read back, in the order above.
    fn read(&self, ctx: &GpuContext) -> Result<Vec<Vec<f32>>, GpuError> {
        self.bufs.iter().zip(self.lens).map(|(b, n)| read_f32(ctx, b, n)).collect()
    }
}

/// Offsets of blocks of `sizes` in one buffer, last block first, gaps of
/// different widths (`salt` varies them); and the buffer's length.
fn arena(sizes: &[usize], salt: usize) -> (Vec<usize>, usize) {
    let mut offs = vec![0; sizes.len()];
    let mut at = 0;
    for k in (0..sizes.len()).rev() {
        at += 1 + (5 * k + salt) % 9;
        offs[k] = at;
        at += sizes[k];
    }
    (offs, at + 3)
}

/// One model's config (loss weights 0.7 and 1.3, so that a missing weight factor shows).
fn model_config(set: ModalitySet, attention: Attention, tasks: Tasks, dense: usize) -> ModelConfig {
    let mut cfg = ModelConfig::new(set, attention, tasks, [6, 5, 4]);
    cfg.hidden = 4;
    cfg.dense = dense;
    cfg.w_sentiment = 0.7;
    cfg.w_emotion = 1.3;
    cfg
}

/// One model's CPU reference.
struct Reference {
    cfg: ModelConfig,
    layout: Layout,
    out: cpu::heads::HeadsOutput,
    dr: Vec<f64>,
    /// Its parameter arena slice's gradient: grads0 with the head slices accumulated.
    grads: Vec<f64>,
    /// Column of slot s's plain block.
    plain: Vec<Option<usize>>,
}

/// heads_forward over the case's models in one launch (probabilities at real rows,
/// each loss slot and its sums; every element of probs, dz, row_loss and the loss
/// buffer that no model owns untouched, each block's tail past its model's B * u
/// rows too) and heads_backward (each dR; each plain block of dR added into its
/// slot's block of the dfeat arena, every other element of it untouched; the heads'
/// gradients accumulated onto non-zero values in each model's part of the gradient
/// arena, the rest of it untouched); and every model launched alone at U = u with
/// its lengths and labels at 0 writes the same bits into every buffer.
pub fn check_heads(ctx: &GpuContext, c: &HeadsCase) -> Result<Vec<CheckRow>, GpuError> {
    let mut rows = check_heads_form(ctx, c, false)?;
    rows.extend(check_heads_form(ctx, c, true)?);
    Ok(rows)
}

/// `check_heads` for one form: storage operands, or (`textures`) the texture
/// form, which must run as such (the buffers are whole quads).
fn check_heads_form(ctx: &GpuContext, c: &HeadsCase, textures: bool) -> Result<Vec<CheckRow>, GpuError> {
    let batches: Vec<Batch> =
        c.batches.iter().enumerate().map(|(j, lens)| random_labels(lens, c.seed + 50 * j as u64)).collect();
    let n = c.models.len();
    let b = batches[0].b;
    let us: Vec<usize> = c.batch_of.iter().map(|&j| batches[j].u).collect();
    let u_max = us.iter().copied().max().unwrap_or(0);
    let bu_max = b * u_max;
    let cfgs: Vec<ModelConfig> = c.models.iter().map(|&(s, a, t)| model_config(s, a, t, c.dense)).collect();
    let d = cfgs[0].dense;
    let layouts: Vec<Layout> = cfgs.iter().map(Layout::new).collect();
    let rws: Vec<usize> = cfgs.iter().map(|cfg| cfg.repr_width()).collect();
    // Every block sized for U_max (as a launch at U_max places them); model k uses B * u_k rows.
    let (w_offs, w_len) = arena(&layouts.iter().map(|l| l.len).collect::<Vec<_>>(), 2);
    let (r_offs, r_len) = arena(&rws.iter().map(|rw| bu_max * rw).collect::<Vec<_>>(), 1);
    let (p_offs, p_len) = arena(&vec![bu_max * CLASSES; n], 3);
    let (z_offs, z_len) = arena(&vec![bu_max * CLASSES; n], 4);
    let (l_offs, l_len) = arena(&vec![bu_max * 2; n], 5);
    let (s_offs, s_len) = arena(&vec![LOSS_LEN; n], 6);
    // Block gradients: three slots per model, laid out with gaps.
    let (f_offs, f_len) = arena(&vec![bu_max * d; 3 * n], 7);
    // Batch j's lengths and labels (B, u_j, 7) at their offsets, garbage between.
    let (len_offs, len_len) = arena(&vec![b; batches.len()], 8);
    let label_sizes: Vec<usize> = batches.iter().map(|bt| bt.b * bt.u * gpu::gather::LABEL_WIDTH).collect();
    let (lab_offs, lab_len) = arena(&label_sizes, 9);

    let mut rng = ChaCha8Rng::seed_from_u64(c.seed + 1);
    let mut params: Vec<f64> = (0..w_len).map(|_| rng.gen_range(-0.1..0.1)).collect();
    params = f64s(&f32s(&params));
    let r = f64s(&f32s(&random_vec(r_len, c.seed + 2)));
    let grads0 = f64s(&f32s(&random_vec(w_len, c.seed + 3)));
    let mut refs = Vec::with_capacity(n);
    for (k, cfg) in cfgs.iter().enumerate() {
        let batch = &batches[c.batch_of[k]];
        let bu = b * us[k];
        let layout = Layout::new(cfg);
        let (wo, rw) = (w_offs[k], rws[k]);
        let pk = &params[wo..wo + layout.len];
        let rk = &r[r_offs[k]..r_offs[k] + bu * rw];
        let range = |nm: &str| layout.get(nm).map(|s| s.range());
        let head = |nm: &str| {
            range(&format!("{nm}.weight"))
                .zip(range(&format!("{nm}.bias")))
                .map(|(w, bb)| cpu::heads::Head { w: &pk[w], b: &pk[bb] })
        };
        let (hs, he) = (head("sentiment"), head("emotion"));
        let out = cpu::heads::heads_forward(rk, hs, he, batch, rw, cfg.w_sentiment, cfg.w_emotion);
        let mut dr = vec![0.0; bu * rw];
        let mut grads = grads0[wo..wo + layout.len].to_vec();
        {
            // The heads' gradient slices, accumulated onto grads0 (absent heads stay None).
            let tmp = |nm: &str| {
                range(&format!("{nm}.weight"))
                    .zip(range(&format!("{nm}.bias")))
                    .map(|(w, bb)| (w.clone(), bb.clone(), grads[w].to_vec(), grads[bb].to_vec()))
            };
            let mut ts = tmp("sentiment");
            let mut te = tmp("emotion");
            cpu::heads::heads_backward(
                &mut dr,
                ts.as_mut().map(|(_, _, w, b)| cpu::heads::HeadGrads { w, b }),
                te.as_mut().map(|(_, _, w, b)| cpu::heads::HeadGrads { w, b }),
                rk,
                hs,
                he,
                &out,
                batch,
                rw,
                cfg.w_sentiment,
                cfg.w_emotion,
            );
            for (wr, br, w, bb) in [ts, te].into_iter().flatten() {
                grads[wr].copy_from_slice(&w);
                grads[br].copy_from_slice(&bb);
            }
        }
        let repr = cfg.representation();
        let plain: Vec<Option<usize>> = cfg
            .modalities
            .modalities()
            .iter()
            .map(|&m| repr.iter().position(|&bk| bk == Block::Plain(m)).map(|i| i * d))
            .collect();
        refs.push(Reference { cfg: cfg.clone(), layout, out, dr, grads, plain });
    }

    // Labels (B, u, 7) = [score, six intensities] per batch, as gather builds them.
    let batch_labels: Vec<Vec<f32>> = batches.iter().map(labels_of).collect();
    let mut labels = vec![GARBAGE as f32; lab_len];
    let mut len_all = vec![7777u32; len_len];
    for (j, bl) in batch_labels.iter().enumerate() {
        labels[lab_offs[j]..lab_offs[j] + bl.len()].copy_from_slice(bl);
        len_all[len_offs[j]..len_offs[j] + b].copy_from_slice(&u32s(&batches[j].len));
    }
    let mut dfeat0 = vec![SENTINEL; f_len];
    for (i, &o) in f_offs.iter().enumerate() {
        dfeat0[o..o + bu_max * d].copy_from_slice(&f32s(&random_vec(bu_max * d, c.seed + 40 + i as u64)));
    }
    let problems: Vec<HeadsProblem> = refs
        .iter()
        .enumerate()
        .map(|(k, rf)| {
            let slots: Vec<(Option<usize>, usize)> =
                rf.plain.iter().enumerate().map(|(s, &col)| (col, f_offs[3 * k + s])).collect();
            let j = c.batch_of[k];
            HeadsProblem::new(&rf.cfg, &rf.layout, w_offs[k])
                .r(r_offs[k])
                .outputs(p_offs[k], z_offs[k], l_offs[k], s_offs[k])
                .with_plain(&slots)
                .batch(us[k], len_offs[j])
                .labels(lab_offs[j])
        })
        .collect();

    // Whole vec4 quads, as the engine's arenas are (the texture form mirrors whole texels).
    let quads = |v: &[f64]| [v, &vec![0.0; v.len().next_multiple_of(4) - v.len()][..]].concat();
    let rb = up(ctx, "R", &quads(&r))?;
    let wb = up(ctx, "params", &quads(&params))?;
    let lb = upload(ctx, "labels", &labels)?;
    let len = upload(ctx, "len", &len_all)?;
    let sizes = [p_len, z_len, l_len, s_len, r_len];
    let mixed = HeadsOutputs::new(ctx, sizes, &grads0, &dfeat0)?;
    let [probs, dz, row_loss, loss, dr, grads, dfeat] = &mixed.bufs;
    let p = HeadsParams::new(b, u_max, d, false);
    // Built with room for one more model than given: the grids follow the list.
    let cap = n + 1;
    let forward_of = |outs: [&wgpu::Buffer; 4], ins: [&wgpu::Buffer; 4], p, q: &[HeadsProblem], cap| {
        gpu::heads::heads_forward_form(ctx, outs, ins, p, q, cap, textures)
    };
    let backward_of = |outs: [&wgpu::Buffer; 3], ins: [&wgpu::Buffer; 4], p, q: &[HeadsProblem], cap| {
        gpu::heads::heads_backward_form(ctx, outs, ins, p, q, cap, textures)
    };
    let fwd = forward_of([probs, dz, row_loss, loss], [&rb, &wb, &lb, &len], p, &problems, cap)?;
    let bwd = backward_of([dr, dfeat, grads], [dz, &rb, &wb, &len], p, &problems, cap)?;
    if (fwd.reads_textures(), bwd.reads_textures()) != (textures, textures) {
        return Err(GpuError::Validation(format!("heads check: the texture form ({textures}) did not run as asked")));
    }
    run(ctx, &[&fwd, &bwd])?;
    let got = mixed.read(ctx)?;

    // Each model alone (U = its u, its lengths and labels at 0), into buffers of their own.
    let alone = HeadsOutputs::new(ctx, sizes, &grads0, &dfeat0)?;
    let [probs, dz, row_loss, loss, dr, grads, dfeat] = &alone.bufs;
    for (k, q) in problems.iter().enumerate() {
        let j = c.batch_of[k];
        let lk = upload(ctx, "len alone", &u32s(&batches[j].len))?;
        let labk = upload(ctx, "labels alone", &batch_labels[j])?;
        let pk = HeadsParams::new(b, us[k], d, false);
        let qk = [q.batch(us[k], 0).labels(0)];
        let f = forward_of([probs, dz, row_loss, loss], [&rb, &wb, &labk, &lk], pk, &qk, 1)?;
        let g = backward_of([dr, dfeat, grads], [dz, &rb, &wb, &lk], pk, &qk, 1)?;
        run(ctx, &[&f, &g])?;
    }
    let got_alone = alone.read(ctx)?;
    let [got_p, got_z, got_rl, got_loss, got_dr, got_g, got_df] = [0, 1, 2, 3, 4, 5, 6].map(|i| &got[i]);

    let (mut forward, mut backward) = (Vec::new(), Vec::new());
    let mut head_ranges = Vec::new();
    let mut df_blocks = Vec::new();
    for (k, rf) in refs.iter().enumerate() {
        let (out, rw, u) = (&rf.out, rws[k], us[k]);
        let bu = b * u;
        let batch = &batches[c.batch_of[k]];
        let lens = &batch.len;
        let count = batch.real_count() as f64;
        let pk = &got_p[p_offs[k]..p_offs[k] + bu * CLASSES];
        if let Some(sp) = &out.sentiment_prob {
            let got = real_rows(&columns(pk, CLASSES, 0, 2), lens, u, 2);
            forward.push(compare(&format!("sentiment prob of model {k}"), &got, &real_rows(sp, lens, u, 2), HEADS_TOL));
        }
        if let Some(ep) = &out.emotion_prob {
            let got = real_rows(&columns(pk, CLASSES, 2, 7), lens, u, 7);
            forward.push(compare(&format!("emotion prob of model {k}"), &got, &real_rows(ep, lens, u, 7), HEADS_TOL));
        }
        let want_loss =
            [out.loss, out.loss_sentiment.unwrap_or(0.0) * count, out.loss_emotion.unwrap_or(0.0) * count, count];
        let gl = &got_loss[s_offs[k]..s_offs[k] + LOSS_LEN];
        forward.push(compare(&format!("loss slot of model {k} (u {u})"), gl, &want_loss, HEADS_TOL));
        let drk = &got_dr[r_offs[k]..r_offs[k] + bu * rw];
        backward.push(compare(&format!("dR of model {k}"), drk, &rf.dr, HEADS_TOL));
        // dX_s = dX0_s + dR's plain block of slot s (one f32 add per element: exact, as
        // cpu::model's block loop); a slot without one untouched.
        for s in 0..3 {
            let o = f_offs[3 * k + s];
            let x0 = &dfeat0[o..o + bu * d];
            let want: Vec<f32> = match rf.plain.get(s).copied().flatten() {
                Some(col) => x0.iter().zip(columns(drk, rw, col, d)).map(|(a, g)| a + g).collect(),
                None => x0.to_vec(),
            };
            backward.push(compare_exact(
                &format!("dfeat slot {s} of model {k} (+ dR's plain block)"),
                &got_df[o..o + bu * d],
                &want,
            ));
            df_blocks.push(o..o + bu * d);
        }
        let wo = w_offs[k];
        for nm in ["sentiment.weight", "sentiment.bias", "emotion.weight", "emotion.bias"] {
            if let Some(s) = rf.layout.get(nm).map(|s| s.range()) {
                let (lo, hi) = (wo + s.start, wo + s.end);
                backward.push(compare(&format!("d {nm} of model {k}"), &got_g[lo..hi], &rf.grads[s], HEADS_TOL));
                head_ranges.push(lo..hi);
            }
        }
    }
    // Each model's blocks: its B * u rows (the tails past them must stay NaN / as they were).
    let blocks =
        |offs: &[usize], width: usize| offs.iter().zip(&us).map(|(&o, &u)| o..o + b * u * width).collect::<Vec<_>>();
    let nan_gaps = |name: &str, got: &[f32], ranges: &[std::ops::Range<usize>]| {
        let g = outside(got, ranges);
        compare_bits(name, &g, &vec![SENTINEL; g.len()])
    };
    forward.push(nan_gaps("probs outside the models' rows", got_p, &blocks(&p_offs, CLASSES)));
    forward.push(nan_gaps("dz outside the models' rows", got_z, &blocks(&z_offs, CLASSES)));
    forward.push(nan_gaps("row_loss outside the models' rows", got_rl, &blocks(&l_offs, 2)));
    let slots: Vec<_> = s_offs.iter().map(|&o| o..o + LOSS_LEN).collect();
    forward.push(nan_gaps("loss outside the models' slots", got_loss, &slots));
    let r_blocks: Vec<_> = (0..n).map(|k| r_offs[k]..r_offs[k] + b * us[k] * rws[k]).collect();
    backward.push(nan_gaps("dR outside the models' rows", got_dr, &r_blocks));
    backward.push(compare_bits(
        "dfeat outside the slots' rows",
        &outside(got_df, &df_blocks),
        &outside(&dfeat0, &df_blocks),
    ));
    backward.push(compare_exact(
        "grads outside the heads",
        &outside(got_g, &head_ranges),
        &f32s(&outside(&grads0, &head_ranges)),
    ));
    // The acceptance criterion of a mixed launch: each model computes what it computes alone.
    for (i, name) in [(0, "probs"), (1, "dz"), (2, "row_loss"), (3, "loss")] {
        forward.push(compare_bits(&format!("{name}: every model alone at U = u"), &got_alone[i], &got[i]));
    }
    for (i, name) in [(4, "dR"), (5, "grads"), (6, "dfeat")] {
        backward.push(compare_bits(&format!("{name}: every model alone at U = u"), &got_alone[i], &got[i]));
    }
    let tasks: Vec<String> = c.models.iter().map(|m| m.2.to_string()).collect();
    let widths: Vec<String> = rws.iter().map(|rw| rw.to_string()).collect();
    let mut uniq = us.clone();
    uniq.sort_unstable();
    uniq.dedup();
    let u_list: Vec<String> = uniq.iter().map(|u| u.to_string()).collect();
    let shape = format!("B={b} u={} R={} models={n}", u_list.join("/"), widths.join("/"));
    let what = tasks.join(", ") + if textures { "; textures" } else { "" };
    Ok(vec![
        CheckRow::new(format!("heads_forward ({what})"), shape.clone(), forward),
        CheckRow::new(format!("heads_backward ({what})"), shape, backward),
    ])
}
