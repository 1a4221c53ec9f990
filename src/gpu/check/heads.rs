//! `cimnet check` rows for heads: the GPU kernels against src/cpu.

use super::*;

// ---- heads.wgsl ----

/// Both heads (or one) and the masked loss on a batch of `lens`, R = 900.
#[derive(Debug, Clone)]
pub struct HeadsCase {
    pub tasks: Tasks,
    pub lens: Vec<usize>,
    pub seed: u64,
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

/// heads_forward (probabilities at real rows, the loss and its sums) and
/// heads_backward (dR, each plain block of dR added into its modality's block
/// gradient, the heads' gradients accumulated onto non-zero values, the rest of the
/// gradient buffer untouched), loss weights 0.7 and 1.3.
pub fn check_heads(ctx: &GpuContext, c: &HeadsCase) -> Result<Vec<CheckRow>, GpuError> {
    let mut cfg = ModelConfig::new(ModalitySet::TAV, Attention::Cim, c.tasks, [6, 5, 4]);
    cfg.hidden = 4;
    cfg.w_sentiment = 0.7; // not 1, so that a missing weight factor shows
    cfg.w_emotion = 1.3;
    let layout = Layout::new(&cfg);
    let rw = cfg.repr_width();
    let batch = random_labels(&c.lens, c.seed);
    let (b, u, lens) = (batch.b, batch.u, &c.lens);
    let mut rng = ChaCha8Rng::seed_from_u64(c.seed + 1);
    let mut params = vec![0.0; layout.len];
    for s in &layout.slices {
        for v in &mut params[s.range()] {
            *v = rng.gen_range(-0.1..0.1);
        }
    }
    let params = f64s(&f32s(&params));
    let r = f64s(&f32s(&random_vec(b * u * rw, c.seed + 2)));
    let grads0 = f64s(&f32s(&random_vec(layout.len, c.seed + 3)));
    let range = |n: &str| layout.get(n).map(|s| s.range());
    let head = |n: &str| {
        range(&format!("{n}.weight"))
            .zip(range(&format!("{n}.bias")))
            .map(|(w, bb)| cpu::heads::Head { w: &params[w], b: &params[bb] })
    };
    let (hs, he) = (head("sentiment"), head("emotion"));
    let out = cpu::heads::heads_forward(&r, hs, he, &batch, rw, cfg.w_sentiment, cfg.w_emotion);
    let mut want_dr = vec![0.0; b * u * rw];
    let mut want_grads = grads0.clone();
    {
        // The heads' gradient slices, accumulated onto grads0 (absent heads stay None).
        let tmp = |n: &str| {
            range(&format!("{n}.weight"))
                .zip(range(&format!("{n}.bias")))
                .map(|(w, bb)| (w.clone(), bb.clone(), grads0[w].to_vec(), grads0[bb].to_vec()))
        };
        let mut ts = tmp("sentiment");
        let mut te = tmp("emotion");
        cpu::heads::heads_backward(
            &mut want_dr,
            ts.as_mut().map(|(_, _, w, b)| cpu::heads::HeadGrads { w, b }),
            te.as_mut().map(|(_, _, w, b)| cpu::heads::HeadGrads { w, b }),
            &r,
            hs,
            he,
            &out,
            &batch,
            rw,
            cfg.w_sentiment,
            cfg.w_emotion,
        );
        for (wr, br, w, bb) in [ts, te].into_iter().flatten() {
            want_grads[wr].copy_from_slice(&w);
            want_grads[br].copy_from_slice(&bb);
        }
    }

    // Labels (B, U, 7) = [score, six intensities], as gather builds them.
    let mut labels = vec![0.0f32; b * u * gpu::gather::LABEL_WIDTH];
    let emo = batch.emotion.as_deref().unwrap_or(&[]);
    for t in 0..b * u {
        labels[t * 7] = batch.sentiment[t] as f32;
        for k in 0..EMOTIONS {
            labels[t * 7 + 1 + k] = emo.get(t * EMOTIONS + k).copied().unwrap_or(0.0) as f32;
        }
    }
    let classes = gpu::heads::CLASSES;
    let rb = up(ctx, "R", &r)?;
    let wb = up(ctx, "params", &params)?;
    let lb = upload(ctx, "labels", &labels)?;
    let len = upload(ctx, "len", &u32s(lens))?;
    let probs = upload(ctx, "probs", &vec![SENTINEL; b * u * classes])?;
    let dz = storage::<f32>(ctx, "dz", b * u * classes)?;
    let row_loss = storage::<f32>(ctx, "row loss", b * u * 2)?;
    let loss = storage::<f32>(ctx, "loss", gpu::heads::LOSS_LEN)?;
    let dr = upload(ctx, "dR", &vec![SENTINEL; b * u * rw])?;
    let grads = up(ctx, "grads", &grads0)?;
    let p = gpu::heads::HeadsParams::new(&cfg, &layout, b, u);
    let fwd = gpu::heads::heads_forward(ctx, &probs, &dz, &row_loss, &loss, &rb, &wb, &lb, &len, p)?;
    // The plain blocks' gradients, fused into heads_backward: dX_s += dR[:, plain_s ..].
    let d = cfg.dense;
    let repr = cfg.representation();
    let plain: Vec<Option<usize>> = cfg
        .modalities
        .modalities()
        .iter()
        .map(|&m| repr.iter().position(|&bk| bk == Block::Plain(m)).map(|i| i * d))
        .collect();
    let dx0: Vec<Vec<f32>> = (0..3).map(|s| f32s(&random_vec(b * u * d, c.seed + 40 + s as u64))).collect();
    let dxb = dx0.iter().map(|v| upload(ctx, "dX", v)).collect::<Result<Vec<_>, _>>()?;
    let bwd = gpu::heads::heads_backward(
        ctx,
        &dr,
        [&dxb[0], &dxb[1], &dxb[2]],
        &grads,
        &dz,
        &rb,
        &wb,
        &len,
        p.with_plain(&plain),
    )?;
    run(ctx, &[&fwd, &bwd])?;

    let got_p = read_f32(ctx, &probs, b * u * classes)?;
    let mut forward = Vec::new();
    if let Some(sp) = &out.sentiment_prob {
        let got = columns(&got_p, classes, 0, 2);
        forward.push(compare("sentiment prob", &real_rows(&got, lens, u, 2), &real_rows(sp, lens, u, 2), HEADS_TOL));
    }
    if let Some(ep) = &out.emotion_prob {
        let got = columns(&got_p, classes, 2, 7);
        forward.push(compare("emotion prob", &real_rows(&got, lens, u, 7), &real_rows(ep, lens, u, 7), HEADS_TOL));
    }
    let got_loss = read_f32(ctx, &loss, gpu::heads::LOSS_LEN)?;
    let count = batch.real_count() as f64;
    let want_loss =
        [out.loss, out.loss_sentiment.unwrap_or(0.0) * count, out.loss_emotion.unwrap_or(0.0) * count, count];
    for (i, name) in ["loss L", "loss sum CE", "loss sum BCE", "real utterances"].iter().enumerate() {
        forward.push(compare(name, &got_loss[i..=i], &want_loss[i..=i], HEADS_TOL));
    }
    let got_dr = read_f32(ctx, &dr, b * u * rw)?;
    let mut backward = vec![compare("dR", &got_dr, &want_dr, HEADS_TOL)];
    // dX_s = dX0_s + dR's plain block of slot s (one f32 add per element: exact, as
    // cpu::model's block loop), and the block gradient of a slot without one untouched.
    for (s, x0) in dx0.iter().enumerate() {
        let want: Vec<f32> = match plain.get(s).copied().flatten() {
            Some(off) => x0.iter().zip(columns(&got_dr, rw, off, d)).map(|(a, g)| a + g).collect(),
            None => x0.clone(),
        };
        backward.push(compare_exact(
            &format!("dX of modality slot {s} (+ dR's plain block)"),
            &read_f32(ctx, &dxb[s], b * u * d)?,
            &want,
        ));
    }
    let got_g = read_f32(ctx, &grads, layout.len)?;
    let mut head_ranges = Vec::new();
    for n in ["sentiment.weight", "sentiment.bias", "emotion.weight", "emotion.bias"] {
        if let Some(s) = range(n) {
            backward.push(compare(&format!("d {n}"), &got_g[s.clone()], &want_grads[s.clone()], HEADS_TOL));
            head_ranges.push(s);
        }
    }
    backward.push(compare_exact(
        "grads outside the heads",
        &outside(&got_g, &head_ranges),
        &f32s(&outside(&grads0, &head_ranges)),
    ));
    let shape = format!("{} R={rw}", lens_shape(lens));
    Ok(vec![
        CheckRow::new(format!("heads_forward ({})", c.tasks), shape.clone(), forward),
        CheckRow::new(format!("heads_backward ({})", c.tasks), shape, backward),
    ])
}
