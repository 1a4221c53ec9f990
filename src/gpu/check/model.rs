//! `cimnet check` rows for model: the GPU kernels against src/cpu.

use super::*;

// ---- The whole model (src/gpu/model.rs against cpu::model) ----

/// A dataset whose train split holds videos of `lens` (features in [-1, 1],
/// sentiment in [-3, 3], emotions zero 60% of the time), dims 6 / 4 / 3.
pub fn random_dataset(lens: &[usize], seed: u64) -> crate::data::Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dims = [6, 4, 3];
    let videos = lens
        .iter()
        .enumerate()
        .map(|(i, &len)| crate::data::Video {
            id: format!("v{i}"),
            len,
            features: dims.map(|d| Some((0..len * d).map(|_| rng.gen_range(-1.0f32..1.0)).collect())),
            sentiment: (0..len).map(|_| rng.gen_range(-3.0f32..3.0)).collect(),
            emotion: Some(
                (0..len * EMOTIONS).map(|_| if rng.gen_bool(0.6) { 0.0 } else { rng.gen_range(0.1f32..3.0) }).collect(),
            ),
        })
        .collect();
    crate::data::Dataset { source: "random".into(), dims, has_emotion: true, splits: [videos, Vec::new(), Vec::new()] }
}

/// One variant: a whole forward + backward on the GPU (with dropout) against
/// the CPU reference replaying the same masks.
fn check_model(
    opts: &gpu::GpuOptions,
    set: ModalitySet,
    attention: Attention,
    tasks: Tasks,
    hidden: usize,
) -> CheckRow {
    let kernel = format!("model {set}/{attention}/{tasks}");
    let shape = format!("B=17 U=9 H={hidden} D=5 dims 6,4,3, dropout 0.3");
    let run = || -> Result<CheckRow, String> {
        let mut cfg = ModelConfig::new(set, attention, tasks, [6, 4, 3]);
        cfg.hidden = hidden;
        cfg.dense = 5;
        let params = ParamStore::init(&cfg, 3);
        let data = random_dataset(&CHECK_LENS, 4);
        let ctx = GpuContext::new(opts).map_err(|e| e.to_string())?;
        let mut eng = gpu::model::GpuEngine::new(
            ctx,
            &params,
            &data,
            Default::default(),
            1,
            CHECK_LENS.len(),
            &Default::default(),
        )
        .map_err(|e| e.to_string())?;
        let videos: Vec<usize> = (0..CHECK_LENS.len()).collect();
        let seed = 0xBEEF;
        let g = eng.compute_gradients(&videos, Some(seed)).map_err(|e| e.to_string())?;
        let mut batch = data.batch(crate::data::SplitName::Train, &videos);
        crate::grads::restrict_to_model(&mut batch, &params);
        let masks = cpu::model::DropoutMasks::generate(&cfg, batch.b, batch.u, seed);
        let p = params.to_f64();
        let f = cpu::model::forward(&cfg, &params.layout, &p, &batch, Some(&masks)).map_err(|e| e.to_string())?;
        let want = cpu::model::backward(&cfg, &params.layout, &p, &batch, &f);
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let n = batch.real_count() as f64;
        let mut tensors = vec![compare("loss", &[(g.loss.loss / n) as f32], &[f.heads.loss], MODEL_TOL)];
        // Probabilities at real positions only (padding is undefined).
        let (mut gp, mut wp) = (Vec::new(), Vec::new());
        for (b, &l) in batch.len.iter().enumerate() {
            for i in 0..l {
                let t = b * batch.u + i;
                if let Some(sp) = &f.heads.sentiment_prob {
                    gp.extend_from_slice(&g.probs[t * 9..t * 9 + 2]);
                    wp.extend_from_slice(&sp[t * 2..t * 2 + 2]);
                }
                if let Some(ep) = &f.heads.emotion_prob {
                    gp.extend_from_slice(&g.probs[t * 9 + 2..t * 9 + 9]);
                    wp.extend_from_slice(&ep[t * 7..t * 7 + 7]);
                }
            }
        }
        tensors.push(compare("probabilities", &f32s(&gp), &wp, MODEL_TOL));
        for s in &params.layout.slices {
            tensors.push(compare(&s.name, &f32s(&g.grads[s.range()]), &want.params[s.range()], MODEL_TOL));
        }
        for m in cfg.modalities.modalities() {
            if let (Some(a), Some(b)) = (&g.inputs[m.index()], &want.inputs[m.index()]) {
                tensors.push(compare(&format!("grad_input.{}", m.name()), &f32s(a), b, MODEL_TOL));
            }
        }
        Ok(CheckRow::new(kernel.clone(), shape.clone(), tensors))
    };
    run().unwrap_or_else(|e| CheckRow::error(kernel.clone(), &e))
}

/// f32 GPU vs f64 CPU over a whole forward + backward (9 GRU steps, dot
/// products of a few hundred terms, softmax and sigmoid backward): ~1e-6
/// relative in practice; 1e-4 of each tensor's largest magnitude, the bound.
pub const MODEL_TOL: f64 = 1e-4;

pub(super) fn model_rows(ctx: &GpuContext) -> Result<Vec<CheckRow>, GpuError> {
    // The engine owns its context: open another on the same adapter.
    let opts = gpu::GpuOptions { adapter: Some(ctx.adapter_info.name.clone()), ..Default::default() };
    Ok(vec![
        check_model(&opts, ModalitySet::TAV, Attention::Cim, Tasks::Mtl, 8),
        check_model(&opts, ModalitySet::TAV, Attention::Cim, Tasks::Mtl, 7),
        check_model(&opts, ModalitySet::TAV, Attention::SelfAttn, Tasks::Sentiment, 8),
        check_model(&opts, ModalitySet::AV, Attention::None, Tasks::Emotion, 8),
        check_model(&opts, ModalitySet::T, Attention::Cim, Tasks::Mtl, 8),
    ])
}
