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
    pub sentiment_prob: Option<Vec<f64>>, // (B, U, 2)
    pub emotion_prob: Option<Vec<f64>>,   // (B, U, 7)
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
