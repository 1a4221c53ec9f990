//! `cimnet grads`: forward, loss and backward on one batch with a weights
//! file's own configuration, written as an npz so that cimnet can be compared
//! with another framework. No dropout.

use std::path::Path;

use crate::batch::Batch;
use crate::config::{Modality, EMOTION_LABELS, SENTIMENT_CLASSES};
use crate::cpu::model::{loss_and_grads, ModelError};
use crate::npz::{NpzError, NpzOut};
use crate::params::ParamStore;

/// Everything `G.npz` holds, in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct GradsReport {
    pub loss: f64,
    pub loss_sentiment: Option<f64>,
    pub loss_emotion: Option<f64>,
    pub sentiment_prob: Option<Vec<f64>>,   // (B, U, 2)
    pub emotion_prob: Option<Vec<f64>>,     // (B, U, 7)
    pub grad_inputs: [Option<Vec<f64>>; 3], // (B, U, D_m)
    /// Flat gradient in the parameter layout.
    pub grad_params: Vec<f64>,
}

/// Run the CPU reference (f64) on one batch.
pub fn cpu_grads(params: &ParamStore, batch: &Batch) -> Result<GradsReport, ModelError> {
    let p = params.to_f64();
    let (f, g) = loss_and_grads(&params.config, &params.layout, &p, batch, None)?;
    Ok(GradsReport {
        loss: f.heads.loss,
        loss_sentiment: f.heads.loss_sentiment,
        loss_emotion: f.heads.loss_emotion,
        sentiment_prob: f.heads.sentiment_prob,
        emotion_prob: f.heads.emotion_prob,
        grad_inputs: g.inputs,
        grad_params: g.params,
    })
}

/// The batch as a one-split dataset (video b = row b), so the GPU engine can
/// upload it and gather it like any other data.
pub fn batch_dataset(batch: &Batch) -> crate::data::Dataset {
    use crate::config::EMOTIONS;
    let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let videos = (0..batch.b)
        .map(|b| {
            let (u, l) = (batch.u, batch.len[b]);
            crate::data::Video {
                id: format!("row{b}"),
                len: l,
                features: [0, 1, 2].map(|m| {
                    let d = batch.dims[m];
                    batch.features[m].as_ref().map(|f| f32s(&f[b * u * d..(b * u + l) * d]))
                }),
                sentiment: f32s(&batch.sentiment[b * u..b * u + l]),
                emotion: batch.emotion.as_ref().map(|e| f32s(&e[b * u * EMOTIONS..(b * u + l) * EMOTIONS])),
            }
        })
        .collect();
    crate::data::Dataset {
        source: "batch".into(),
        dims: batch.dims,
        has_emotion: batch.emotion.is_some(),
        splits: [videos, Vec::new(), Vec::new()],
    }
}

/// Run the GPU engine (f32) on one batch, without dropout; values widened to f64.
/// Probabilities and input gradients come back padded to the batch's own U.
pub fn gpu_grads(
    params: &ParamStore,
    batch: &Batch,
    opts: &crate::engine::EngineOptions,
) -> Result<GradsReport, crate::engine::EngineError> {
    use crate::gpu::model::GpuEngine;
    crate::cpu::model::check_batch(&params.config, batch)?;
    let ctx =
        crate::gpu::GpuContext::new(&crate::gpu::GpuOptions { adapter: opts.adapter.clone(), ..Default::default() })?;
    let data = batch_dataset(batch);
    let mut eng =
        GpuEngine::new(ctx, params, &data, crate::config::AdamConfig::default(), 0, batch.b, &Default::default())?;
    let videos: Vec<usize> = (0..batch.b).collect();
    let g = eng.compute_gradients(&videos, None)?;
    // Re-pad (B, g.u, W) to the batch's (B, U, W); g.u <= U.
    let repad = |v: &[f64], w: usize| {
        let mut out = vec![0.0; batch.b * batch.u * w];
        for b in 0..batch.b {
            for i in 0..g.u.min(batch.len[b]) {
                let (src, dst) = ((b * g.u + i) * w, (b * batch.u + i) * w);
                out[dst..dst + w].copy_from_slice(&v[src..src + w]);
            }
        }
        out
    };
    let probs = repad(&g.probs, 9);
    let tasks = params.config.tasks;
    let n = g.loss.utterances.max(1) as f64;
    let pick = |from: usize, w: usize| {
        let mut out = vec![0.0; batch.b * batch.u * w];
        for t in 0..batch.b * batch.u {
            out[t * w..(t + 1) * w].copy_from_slice(&probs[t * 9 + from..t * 9 + from + w]);
        }
        out
    };
    Ok(GradsReport {
        loss: g.loss.loss / n,
        loss_sentiment: tasks.has_sentiment().then(|| g.loss.sentiment / n),
        loss_emotion: tasks.has_emotion().then(|| g.loss.emotion / n),
        sentiment_prob: tasks.has_sentiment().then(|| pick(0, SENTIMENT_CLASSES)),
        emotion_prob: tasks.has_emotion().then(|| pick(2, EMOTION_LABELS)),
        grad_inputs: [0, 1, 2].map(|m| g.inputs[m].as_ref().map(|v| repad(v, batch.dims[m]))),
        grad_params: g.grads,
    })
}

/// Write G.npz: `loss`, `loss_sentiment` / `loss_emotion` (the model's tasks),
/// `sentiment_prob` / `emotion_prob`, `grad_input.<modality>`, and one array per
/// parameter gradient named exactly as the parameter; all float64.
pub fn write_grads(path: &Path, r: &GradsReport, params: &ParamStore, batch: &Batch) -> Result<(), NpzError> {
    let mut out = NpzOut::create(path)?;
    out.write_f64("loss", &[], &[r.loss])?;
    if let Some(l) = r.loss_sentiment {
        out.write_f64("loss_sentiment", &[], &[l])?;
    }
    if let Some(l) = r.loss_emotion {
        out.write_f64("loss_emotion", &[], &[l])?;
    }
    if let Some(p) = &r.sentiment_prob {
        out.write_f64("sentiment_prob", &[batch.b, batch.u, SENTIMENT_CLASSES], p)?;
    }
    if let Some(p) = &r.emotion_prob {
        out.write_f64("emotion_prob", &[batch.b, batch.u, EMOTION_LABELS], p)?;
    }
    for m in Modality::ALL {
        if let Some(g) = &r.grad_inputs[m.index()] {
            out.write_f64(&format!("grad_input.{}", m.name()), &[batch.b, batch.u, batch.dims[m.index()]], g)?;
        }
    }
    for s in &params.layout.slices {
        out.write_f64(&s.name, &s.shape, &r.grad_params[s.range()])?;
    }
    out.finish()
}

/// A batch's modalities must cover the model's; extra modalities are ignored.
pub fn restrict_to_model(batch: &mut Batch, params: &ParamStore) {
    for m in Modality::ALL {
        if !params.config.modalities.contains(m) {
            batch.features[m.index()] = None;
            batch.dims[m.index()] = 0;
        }
    }
}
